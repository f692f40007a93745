//! Placement: which server gets a new account. A pure function of the servers' state, so the
//! store can run it inside the transaction that records the account.

use std::fmt;
use std::num::NonZeroU32;

use crate::domain::{RoleSet, Server, ServerId};

/// What placement needs to know of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: ServerId,
    pub roles: RoleSet,
    pub active: bool,
    pub reachable: bool,
    pub max_accounts: Option<NonZeroU32>,
    pub accounts: u32,
}

impl From<&Server> for Candidate {
    fn from(s: &Server) -> Self {
        Self {
            id: s.id,
            roles: s.spec.roles,
            active: s.spec.active,
            reachable: s.health.reachable,
            max_accounts: s.spec.max_accounts,
            accounts: s.accounts,
        }
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
}

/// How many servers were turned down, and why (each counted once, for its first reason in the
/// order inactive, missing roles, full, unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejections {
    pub inactive: usize,
    pub missing_roles: usize,
    pub full: usize,
    pub unreachable: usize,
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.inactive, "inactive"),
            (self.missing_roles, "without the needed roles"),
            (self.full, "full"),
            (self.unreachable, "unreachable"),
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

/// No server can take the account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no server is configured")]
    NoServers,
    #[error("no server can take the account (roles needed: {needed}): {rejected}")]
    NoneFits {
        needed: RoleSet,
        rejected: Rejections,
    },
    #[error("server {server} cannot take the account: {reason}")]
    Unfit { server: ServerId, reason: Unfit },
}

/// Whether `c` can take one more account that needs `needed`.
pub fn check(c: &Candidate, needed: RoleSet) -> Result<(), Unfit> {
    if !c.active {
        return Err(Unfit::Inactive);
    }
    let missing = needed.difference(c.roles);
    if !missing.is_empty() {
        return Err(Unfit::MissingRoles(missing));
    }
    if let Some(max) = c.max_accounts
        && c.accounts >= max.get()
    {
        return Err(Unfit::Full { max: max.get() });
    }
    if !c.reachable {
        return Err(Unfit::Unreachable);
    }
    Ok(())
}

/// Picks the server for a new account: among the active, reachable servers with the needed
/// roles and room under their limit, the one with the fewest accounts; ties go to the lowest id,
/// so the choice is deterministic.
pub fn place<'a>(
    candidates: impl IntoIterator<Item = &'a Candidate>,
    needed: RoleSet,
) -> Result<ServerId, PlacementError> {
    let mut rejected = Rejections::default();
    let mut best: Option<&Candidate> = None;
    let mut seen = 0usize;
    for c in candidates {
        seen += 1;
        match check(c, needed) {
            Ok(()) => {
                if best.is_none_or(|b| (c.accounts, c.id) < (b.accounts, b.id)) {
                    best = Some(c);
                }
            }
            Err(Unfit::Inactive) => rejected.inactive += 1,
            Err(Unfit::MissingRoles(_)) => rejected.missing_roles += 1,
            Err(Unfit::Full { .. }) => rejected.full += 1,
            Err(Unfit::Unreachable) => rejected.unreachable += 1,
        }
    }
    match best {
        Some(c) => Ok(c.id),
        None if seen == 0 => Err(PlacementError::NoServers),
        None => Err(PlacementError::NoneFits { needed, rejected }),
    }
}

/// Checks a server the administrator named for a new account.
pub fn check_named(c: &Candidate, needed: RoleSet) -> Result<ServerId, PlacementError> {
    check(c, needed)
        .map(|()| c.id)
        .map_err(|reason| PlacementError::Unfit {
            server: c.id,
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use proptest::prelude::*;

    fn web() -> RoleSet {
        RoleSet::EMPTY.with(Role::Web)
    }

    fn cand(id: u64, roles: &str, accounts: u32) -> Candidate {
        Candidate {
            id: ServerId(id),
            roles: roles.parse().unwrap(),
            active: true,
            reachable: true,
            max_accounts: None,
            accounts,
        }
    }

    #[test]
    fn picks_the_least_loaded_fitting_server() {
        let cs = [
            cand(1, "web,db", 10),
            cand(2, "mail,dns", 0),
            cand(3, "web", 4),
            cand(4, "web,mail,dns,db,backup", 4),
        ];
        assert_eq!(
            place(&cs, web()),
            Ok(ServerId(3)),
            "ties go to the lowest id"
        );
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
        assert_eq!(place(&all, web()), Ok(ServerId(5)));

        let err = place(&all[..4], web()).unwrap_err();
        let rejected = Rejections {
            inactive: 1,
            missing_roles: 1,
            full: 1,
            unreachable: 1,
        };
        assert_eq!(
            err,
            PlacementError::NoneFits {
                needed: web(),
                rejected
            }
        );
        assert_eq!(
            err.to_string(),
            "no server can take the account (roles needed: web): \
             1 inactive, 1 without the needed roles, 1 full, 1 unreachable"
        );
        assert_eq!(place(&[], web()), Err(PlacementError::NoServers));
    }

    #[test]
    fn named_servers_get_the_same_checks() {
        let mut c = cand(7, "web", 2);
        assert_eq!(check_named(&c, web()), Ok(ServerId(7)));
        c.max_accounts = NonZeroU32::new(2);
        assert_eq!(
            check_named(&c, web()),
            Err(PlacementError::Unfit {
                server: ServerId(7),
                reason: Unfit::Full { max: 2 }
            })
        );
        let dns = cand(8, "dns", 0);
        let needed: RoleSet = "web,db".parse().unwrap();
        assert_eq!(
            check(&dns, needed),
            Err(Unfit::MissingRoles(needed)),
            "names every missing role"
        );
    }

    fn arb_candidate() -> impl Strategy<Value = Candidate> {
        (
            Just(0u64),
            0u8..32,
            any::<bool>(),
            any::<bool>(),
            0u32..20,
            0u32..20,
        )
            .prop_map(|(id, roles, active, reachable, max, accounts)| Candidate {
                id: ServerId(id),
                roles: RoleSet::from_iter(
                    Role::ALL
                        .into_iter()
                        .filter(|r| roles & (1 << *r as u8) != 0),
                ),
                active,
                reachable,
                max_accounts: NonZeroU32::new(max),
                accounts,
            })
    }

    proptest! {
        /// The chosen server fits, and no fitting server has fewer accounts.
        #[test]
        fn placement_is_sound_and_minimal(mut cs in proptest::collection::vec(arb_candidate(), 0..12)) {
            // Server ids are unique, as the store hands them out.
            for (i, c) in cs.iter_mut().enumerate() {
                c.id = ServerId(i as u64 + 1);
            }
            match place(&cs, web()) {
                Ok(id) => {
                    let chosen = cs.iter().find(|c| c.id == id).unwrap();
                    prop_assert!(check(chosen, web()).is_ok());
                    for c in cs.iter().filter(|c| check(c, web()).is_ok()) {
                        prop_assert!(c.accounts >= chosen.accounts);
                    }
                }
                Err(_) => prop_assert!(cs.iter().all(|c| check(c, web()).is_err())),
            }
        }
    }
}
