//! Placement: which server serves each role of a new account. Pure functions of the servers'
//! state, so the store can run them inside the transaction that records the account.
//!
//! The rules, each role on its own:
//!
//! - a server can take a role of an account when it is active, has the role, its agent is
//!   reachable, and it has room under `max_accounts` (an account counts once per server,
//!   whatever roles it has there: a server already chosen for another role of the account
//!   needs no more room);
//! - `dns` goes to every active dns server (a zone is served by all of them): each must be
//!   able to take it;
//! - each other role goes to one server: a pinned one when the administrator named it, else
//!   among those that can take it the one already chosen for the account, then the one with
//!   the most of the account's roles (fewer machines per account; a single server keeps
//!   everything together), then the least loaded, then the lowest id.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use crate::domain::{Role, RoleServers, RoleSet, Server, ServerId};

/// What placement needs to know of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: ServerId,
    pub roles: RoleSet,
    pub active: bool,
    pub reachable: bool,
    pub max_accounts: Option<NonZeroU32>,
    pub accounts: u32,
    /// Whether it offers the PHP version the account asks for (true when it asks for none,
    /// or the server never said which it offers).
    pub php_ok: bool,
}

impl Candidate {
    /// `server` as a candidate for an account asking for PHP `php` (`None`: the default).
    pub fn of(s: &Server, php: Option<crate::domain::PhpVersion>) -> Self {
        Self {
            id: s.id,
            roles: s.spec.roles,
            active: s.spec.active,
            reachable: s.health.reachable,
            max_accounts: s.spec.max_accounts,
            accounts: s.accounts,
            php_ok: php.is_none_or(|v| s.health.offers_php(v)),
        }
    }
}

impl From<&Server> for Candidate {
    fn from(s: &Server) -> Self {
        Self::of(s, None)
    }
}

/// Why a server cannot take an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("it is not active (takes no new accounts)")]
    Inactive,
    #[error("its agent is unreachable")]
    Unreachable,
    #[error("it lacks the role(s) {0}")]
    MissingRoles(RoleSet),
    #[error("it is full ({max} accounts)")]
    Full { max: u32 },
    #[error("it does not offer the PHP version asked for")]
    NoPhp,
}

/// How many servers were turned down, and why (each counted once, for its first reason in the
/// order inactive, missing roles, full, unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejections {
    pub inactive: usize,
    pub missing_roles: usize,
    pub full: usize,
    pub unreachable: usize,
    pub no_php: usize,
}

impl Rejections {
    fn count(&mut self, reason: Unfit) {
        match reason {
            Unfit::Inactive => self.inactive += 1,
            Unfit::MissingRoles(_) => self.missing_roles += 1,
            Unfit::Full { .. } => self.full += 1,
            Unfit::Unreachable => self.unreachable += 1,
            Unfit::NoPhp => self.no_php += 1,
        }
    }

    /// Whether the only servers that have the role were turned down for their PHP versions.
    pub fn only_php(&self) -> bool {
        self.no_php > 0 && self.inactive == 0 && self.full == 0 && self.unreachable == 0
    }
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.inactive, "inactive"),
            (self.missing_roles, "without the needed roles"),
            (self.full, "full"),
            (self.unreachable, "unreachable"),
            (self.no_php, "without the PHP version asked for"),
        ];
        let mut first = true;
        for (n, what) in parts.into_iter().filter(|(n, _)| *n > 0) {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{n} {what}")?;
            first = false;
        }
        Ok(())
    }
}

/// A role of the account cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no server is configured")]
    NoServers,
    #[error("no server can take the account's {role} role: {rejected}{}", offline_list(.offline))]
    NoneFits {
        role: Role,
        rejected: Rejections,
        /// The servers that could take it if their agents answered.
        offline: Vec<ServerId>,
    },
    #[error("server {server} cannot take the account's {role} role: {reason}")]
    Unfit {
        role: Role,
        server: ServerId,
        reason: Unfit,
    },
    #[error("the dns role is served by every active dns server: it cannot be pinned")]
    DnsPinned,
}

impl PlacementError {
    /// The role the error is about.
    pub fn role(&self) -> Option<Role> {
        match self {
            PlacementError::NoneFits { role, .. } | PlacementError::Unfit { role, .. } => {
                Some(*role)
            }
            PlacementError::DnsPinned => Some(Role::Dns),
            PlacementError::NoServers => None,
        }
    }
}

fn offline_list(offline: &[ServerId]) -> String {
    if offline.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = offline.iter().map(|s| format!("server {s}")).collect();
    format!(" (offline: {})", ids.join(", "))
}

/// Whether `c` can take one more account that needs `needed`; `room_needed` is false for a
/// server the account already uses (it counts once per server).
pub fn check(c: &Candidate, needed: RoleSet, room_needed: bool) -> Result<(), Unfit> {
    if !c.active {
        return Err(Unfit::Inactive);
    }
    let missing = needed.difference(c.roles);
    if !missing.is_empty() {
        return Err(Unfit::MissingRoles(missing));
    }
    if room_needed
        && let Some(max) = c.max_accounts
        && c.accounts >= max.get()
    {
        return Err(Unfit::Full { max: max.get() });
    }
    if needed.contains(Role::Web) && !c.php_ok {
        return Err(Unfit::NoPhp);
    }
    if !c.reachable {
        return Err(Unfit::Unreachable);
    }
    Ok(())
}

/// Places every role of `needed` (see the module documentation); `pins` names the server of
/// some roles.
pub fn place(
    candidates: &[Candidate],
    needed: RoleSet,
    pins: &BTreeMap<Role, ServerId>,
) -> Result<RoleServers, PlacementError> {
    let mut placed = RoleServers::default();
    if needed.contains(Role::Dns) {
        if pins.contains_key(&Role::Dns) {
            return Err(PlacementError::DnsPinned);
        }
        let dns: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.active && c.roles.contains(Role::Dns))
            .collect();
        if dns.is_empty() {
            return Err(none_fits(candidates, Role::Dns, &placed));
        }
        for c in &dns {
            check(c, RoleSet::EMPTY.with(Role::Dns), true).map_err(|reason| {
                PlacementError::Unfit {
                    role: Role::Dns,
                    server: c.id,
                    reason,
                }
            })?;
        }
        placed.set(Role::Dns, dns.iter().map(|c| c.id).collect());
    }
    let single: Vec<Role> = needed.iter().filter(|r| *r != Role::Dns).collect();
    // Pinned roles first: the others then prefer the servers the pins chose.
    for role in &single {
        if let Some(&id) = pins.get(role) {
            let c = candidates
                .iter()
                .find(|c| c.id == id)
                .ok_or(PlacementError::NoServers)?;
            let room = !placed.servers().contains(&id);
            check(c, RoleSet::EMPTY.with(*role), room).map_err(|reason| PlacementError::Unfit {
                role: *role,
                server: id,
                reason,
            })?;
            placed.set(*role, vec![id]);
        }
    }
    for role in single.iter().filter(|r| !pins.contains_key(r)) {
        let chosen = placed.servers();
        let best = candidates
            .iter()
            .filter(|c| check(c, RoleSet::EMPTY.with(*role), !chosen.contains(&c.id)).is_ok())
            .max_by_key(|c| {
                let covers = c.roles.iter().filter(|r| needed.contains(*r)).count();
                (
                    chosen.contains(&c.id),
                    covers,
                    std::cmp::Reverse(c.accounts),
                    std::cmp::Reverse(c.id),
                )
            });
        match best {
            Some(c) => placed.set(*role, vec![c.id]),
            None => return Err(none_fits(candidates, *role, &placed)),
        }
    }
    Ok(placed)
}

/// The error when no server can take `role`, counting why each was turned down.
fn none_fits(candidates: &[Candidate], role: Role, placed: &RoleServers) -> PlacementError {
    if candidates.is_empty() {
        return PlacementError::NoServers;
    }
    let chosen = placed.servers();
    let mut rejected = Rejections::default();
    let mut offline = Vec::new();
    for c in candidates {
        if let Err(reason) = check(c, RoleSet::EMPTY.with(role), !chosen.contains(&c.id)) {
            rejected.count(reason);
            if reason == Unfit::Unreachable {
                offline.push(c.id);
            }
        }
    }
    PlacementError::NoneFits {
        role,
        rejected,
        offline,
    }
}

/// Checks that the server `target` can take `role` of an account that uses `current` (moving
/// the role there).
pub fn check_move(
    target: &Candidate,
    role: Role,
    current: &RoleServers,
) -> Result<(), PlacementError> {
    let room = !current.servers().contains(&target.id);
    check(target, RoleSet::EMPTY.with(role), room).map_err(|reason| PlacementError::Unfit {
        role,
        server: target.id,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roles(s: &str) -> RoleSet {
        s.parse().unwrap()
    }

    fn web() -> RoleSet {
        roles("web")
    }

    fn cand(id: u64, roles: &str, accounts: u32) -> Candidate {
        Candidate {
            id: ServerId(id),
            roles: roles.parse().unwrap(),
            active: true,
            reachable: true,
            max_accounts: None,
            accounts,
            php_ok: true,
        }
    }

    fn no_pins() -> BTreeMap<Role, ServerId> {
        BTreeMap::new()
    }

    fn on(p: &RoleServers, role: Role) -> Vec<u64> {
        p.of(role).iter().map(|s| s.0).collect()
    }

    #[test]
    fn picks_the_least_loaded_fitting_server() {
        let cs = [
            cand(1, "web,db", 10),
            cand(2, "mail,dns", 0),
            cand(3, "web", 4),
            cand(5, "web", 4),
        ];
        let p = place(&cs, web(), &no_pins()).unwrap();
        assert_eq!(on(&p, Role::Web), [3], "ties go to the lowest id");
    }

    #[test]
    fn each_role_goes_to_its_own_server_preferring_those_with_more_roles() {
        // The seed's split: web,db / mail,dns / backup, plus a second web server, emptier.
        let cs = [
            cand(1, "web,db", 10),
            cand(2, "mail,dns", 3),
            cand(3, "backup", 0),
            cand(4, "web", 0),
        ];
        let p = place(&cs, RoleSet::SINGLE_SERVER, &no_pins()).unwrap();
        assert_eq!(on(&p, Role::Web), [1], "the server that also has db");
        assert_eq!(on(&p, Role::Db), [1]);
        assert_eq!(on(&p, Role::Mail), [2]);
        assert_eq!(on(&p, Role::Dns), [2]);
        assert_eq!(on(&p, Role::Backup), [3]);
        // Web alone goes to the least loaded web server.
        assert_eq!(on(&place(&cs, web(), &no_pins()).unwrap(), Role::Web), [4]);
    }

    #[test]
    fn a_single_server_keeps_everything() {
        let cs = [cand(1, "web,mail,dns,db,backup", 7)];
        let p = place(&cs, RoleSet::SINGLE_SERVER, &no_pins()).unwrap();
        for role in Role::ALL {
            assert_eq!(on(&p, role), [1], "{role}");
        }
        assert_eq!(p.servers().len(), 1);
    }

    #[test]
    fn dns_goes_to_every_active_dns_server() {
        let mut inactive = cand(3, "dns", 0);
        inactive.active = false;
        let cs = [cand(1, "dns", 0), cand(2, "mail,dns", 5), inactive];
        let p = place(&cs, roles("dns"), &no_pins()).unwrap();
        assert_eq!(on(&p, Role::Dns), [1, 2]);
        // One of them offline or full: the account cannot be placed (naming it).
        let mut offline = cs;
        offline[1].reachable = false;
        assert_eq!(
            place(&offline, roles("dns"), &no_pins()),
            Err(PlacementError::Unfit {
                role: Role::Dns,
                server: ServerId(2),
                reason: Unfit::Unreachable
            })
        );
        let pins = BTreeMap::from([(Role::Dns, ServerId(1))]);
        assert_eq!(
            place(&cs, roles("dns"), &pins),
            Err(PlacementError::DnsPinned)
        );
        assert!(matches!(
            place(&[cand(1, "web", 0)], roles("dns"), &no_pins()),
            Err(PlacementError::NoneFits {
                role: Role::Dns,
                ..
            })
        ));
    }

    #[test]
    fn pins_are_checked_and_preferred_by_the_other_roles() {
        let mut full = cand(5, "mail", 3);
        full.max_accounts = NonZeroU32::new(3);
        let cs = [cand(1, "web,db", 0), cand(2, "web,db", 9), full];
        let pins = BTreeMap::from([(Role::Web, ServerId(2))]);
        let p = place(&cs, roles("web,db"), &pins).unwrap();
        assert_eq!((on(&p, Role::Web), on(&p, Role::Db)), (vec![2], vec![2]));
        let wrong = BTreeMap::from([(Role::Web, ServerId(5))]);
        assert_eq!(
            place(&cs, roles("web"), &wrong),
            Err(PlacementError::Unfit {
                role: Role::Web,
                server: ServerId(5),
                reason: Unfit::MissingRoles(roles("web"))
            })
        );
        let into_full = BTreeMap::from([(Role::Mail, ServerId(5))]);
        assert_eq!(
            place(&cs, roles("mail"), &into_full),
            Err(PlacementError::Unfit {
                role: Role::Mail,
                server: ServerId(5),
                reason: Unfit::Full { max: 3 }
            })
        );
    }

    #[test]
    fn an_account_counts_once_per_server() {
        // Room for one more account: the account's second role there needs no more.
        let mut one_left = cand(1, "web,db", 4);
        one_left.max_accounts = NonZeroU32::new(5);
        let p = place(&[one_left], roles("web,db"), &no_pins()).unwrap();
        assert_eq!((on(&p, Role::Web), on(&p, Role::Db)), (vec![1], vec![1]));
    }

    #[test]
    fn skips_inactive_unreachable_full_and_wrong_roles() {
        let mut inactive = cand(1, "web", 0);
        inactive.active = false;
        let mut offline = cand(2, "web", 0);
        offline.reachable = false;
        let mut full = cand(3, "web", 5);
        full.max_accounts = NonZeroU32::new(5);
        let mail = cand(4, "mail", 0);
        let mut roomy = cand(5, "web", 50);
        roomy.max_accounts = NonZeroU32::new(51);
        let all = [inactive, offline, full, mail, roomy];
        assert_eq!(on(&place(&all, web(), &no_pins()).unwrap(), Role::Web), [5]);

        let err = place(&all[..4], web(), &no_pins()).unwrap_err();
        let rejected = Rejections {
            inactive: 1,
            missing_roles: 1,
            full: 1,
            unreachable: 1,
            no_php: 0,
        };
        assert_eq!(
            err,
            PlacementError::NoneFits {
                role: Role::Web,
                rejected,
                offline: vec![ServerId(2)],
            }
        );
        assert_eq!(
            err.to_string(),
            "no server can take the account's web role: \
             1 inactive, 1 without the needed roles, 1 full, 1 unreachable (offline: server 2)"
        );
        assert_eq!(
            place(&[], web(), &no_pins()),
            Err(PlacementError::NoServers)
        );
    }

    #[test]
    fn moves_get_the_same_checks() {
        let mut c = cand(7, "web", 2);
        let none = RoleServers::default();
        assert_eq!(check_move(&c, Role::Web, &none), Ok(()));
        c.max_accounts = NonZeroU32::new(2);
        assert_eq!(
            check_move(&c, Role::Web, &none),
            Err(PlacementError::Unfit {
                role: Role::Web,
                server: ServerId(7),
                reason: Unfit::Full { max: 2 }
            })
        );
        // A server the account already uses has room for another of its roles.
        let mut there = RoleServers::default();
        there.set(Role::Db, vec![ServerId(7)]);
        let mut both = c;
        both.roles = roles("web,db");
        assert_eq!(check_move(&both, Role::Web, &there), Ok(()));
        let dns = cand(8, "dns", 0);
        let needed: RoleSet = "web,db".parse().unwrap();
        assert_eq!(
            check(&dns, needed, true),
            Err(Unfit::MissingRoles(needed)),
            "names every missing role"
        );
    }

    fn arb_candidate() -> impl Strategy<Value = Candidate> {
        (0u8..32, any::<bool>(), any::<bool>(), 0u32..20, 0u32..20).prop_map(
            |(roles, active, reachable, max, accounts)| Candidate {
                id: ServerId(0),
                roles: RoleSet::from_iter(
                    Role::ALL
                        .into_iter()
                        .filter(|r| roles & (1 << *r as u8) != 0),
                ),
                active,
                reachable,
                max_accounts: NonZeroU32::new(max),
                accounts,
                php_ok: true,
            },
        )
    }

    fn arb_roles() -> impl Strategy<Value = RoleSet> {
        (1u8..32).prop_map(|bits| {
            RoleSet::from_iter(
                Role::ALL
                    .into_iter()
                    .filter(|r| bits & (1 << *r as u8) != 0),
            )
        })
    }

    proptest! {
        /// Placement never picks a server that is inactive, unreachable, full or without the
        /// role; every needed role is placed; dns is on every active dns server; and a
        /// single-server role goes to one of the least loaded among the servers that could
        /// take it and cover as many of the account's roles.
        #[test]
        fn placement_is_sound(
            mut cs in proptest::collection::vec(arb_candidate(), 0..10),
            needed in arb_roles(),
        ) {
            // Server ids are unique, as the store hands them out.
            for (i, c) in cs.iter_mut().enumerate() {
                c.id = ServerId(i as u64 + 1);
            }
            match place(&cs, needed, &BTreeMap::new()) {
                Ok(p) => {
                    for role in needed.iter() {
                        prop_assert!(!p.of(role).is_empty(), "{} placed", role);
                        for id in p.of(role) {
                            let c = cs.iter().find(|c| c.id == *id).unwrap();
                            prop_assert!(c.active && c.reachable && c.roles.contains(role));
                            prop_assert!(c.max_accounts.is_none_or(|m| c.accounts < m.get()));
                        }
                    }
                    let dns: Vec<ServerId> = cs.iter()
                        .filter(|c| c.active && c.roles.contains(Role::Dns))
                        .map(|c| c.id)
                        .collect();
                    if needed.contains(Role::Dns) {
                        prop_assert_eq!(p.of(Role::Dns), &dns[..]);
                    }
                    for (role, ids) in p.iter() {
                        prop_assert!(needed.contains(role));
                        if role != Role::Dns {
                            prop_assert_eq!(ids.len(), 1);
                        }
                    }
                }
                Err(PlacementError::NoServers) => prop_assert!(cs.is_empty()),
                Err(PlacementError::NoneFits { role, .. }) => {
                    // No server could take that role.
                    let fits = |c: &&Candidate| c.active && c.reachable && c.roles.contains(role)
                        && c.max_accounts.is_none_or(|m| c.accounts < m.get());
                    if role == Role::Dns {
                        prop_assert!(!cs.iter().any(|c| c.active && c.roles.contains(Role::Dns)));
                    } else {
                        prop_assert!(!cs.iter().any(|c| fits(&c)));
                    }
                }
                Err(PlacementError::Unfit { role, server, .. }) => {
                    // Only dns refuses a named server unasked: an active dns server that
                    // cannot take the account.
                    prop_assert_eq!(role, Role::Dns);
                    let c = cs.iter().find(|c| c.id == server).unwrap();
                    prop_assert!(c.active && c.roles.contains(Role::Dns));
                }
                Err(PlacementError::DnsPinned) => prop_assert!(false, "nothing was pinned"),
            }
        }
    }
}
