//! Hosting accounts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::rule::{Rule, ValidationError};
use super::{DomainName, PhpSettings, PhpVersion, Role, RoleSet, ServerId, UserName};

/// An account's id, given by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub u64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The domains of an account: at least one, at most [`Domains::MAX`], no name twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<DomainName>", into = "Vec<DomainName>")]
pub struct Domains(Vec<DomainName>);

impl Domains {
    pub const MAX: usize = 100;

    /// Validates a list of domain names as given at the API; errors name the item at fault
    /// (`domains[2]`).
    pub fn parse<S: AsRef<str>>(field: &str, inputs: &[S]) -> Result<Self, ValidationError> {
        let names = inputs
            .iter()
            .enumerate()
            .map(|(i, s)| DomainName::parse(s.as_ref()).map_err(|r| r.at(format!("{field}[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_names(names).map_err(|(i, rule)| match i {
            Some(i) => rule.at(format!("{field}[{i}]")),
            None => rule.at(field),
        })
    }

    fn from_names(names: Vec<DomainName>) -> Result<Self, (Option<usize>, Rule)> {
        if names.is_empty() {
            return Err((None, Rule::Empty));
        }
        if names.len() > Self::MAX {
            return Err((None, Rule::TooMany { max: Self::MAX }));
        }
        for (i, name) in names.iter().enumerate() {
            if let Some(first) = names[..i].iter().position(|n| n == name) {
                return Err((Some(i), Rule::DuplicateOf(format!("domains[{first}]"))));
            }
        }
        Ok(Self(names))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, DomainName> {
        self.0.iter()
    }

    /// The first domain, the account's main site.
    pub fn primary(&self) -> &DomainName {
        // Proven invariant: the constructor refuses an empty list.
        &self.0[0]
    }

    pub fn as_slice(&self) -> &[DomainName] {
        &self.0
    }
}

impl TryFrom<Vec<DomainName>> for Domains {
    type Error = Rule;
    fn try_from(names: Vec<DomainName>) -> Result<Self, Rule> {
        Self::from_names(names).map_err(|(_, rule)| rule)
    }
}

impl From<Domains> for Vec<DomainName> {
    fn from(d: Domains) -> Self {
        d.0
    }
}

impl<'a> IntoIterator for &'a Domains {
    type Item = &'a DomainName;
    type IntoIter = std::slice::Iter<'a, DomainName>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Where an account is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Recorded; the agent has not confirmed it yet.
    Provisioning,
    /// The agent has it.
    Active,
    /// An agent operation on it failed; it is not serving as recorded.
    Failed,
}

/// What an account is: the fields an administrator gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSpec {
    pub username: UserName,
    pub domains: Domains,
    /// `None`: the server's default PHP.
    pub php_version: Option<PhpVersion>,
    /// PHP limits of the account's pool.
    #[serde(default)]
    pub php: PhpSettings,
    /// The roles the account uses (records before roles existed used the web role only).
    #[serde(default = "AccountSpec::web_only")]
    pub roles: RoleSet,
    /// The zones a dns server serves for the account (what the controller sends it; the
    /// controller keeps them in a table of their own, so its records leave this empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<super::dns::ZoneData>,
    /// The databases and database users a db server keeps for the account (what the
    /// controller sends it; the controller keeps them in a table of their own).
    #[serde(default, skip_serializing_if = "super::db::DbSpec::is_empty")]
    pub db: super::db::DbSpec,
    /// What a backup server keeps for the account (sent by the controller; not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::backup::BackupSpec>,
}

impl AccountSpec {
    /// The roles of an account that does not say: the web role.
    pub fn web_only() -> RoleSet {
        RoleSet::EMPTY.with(Role::Web)
    }

    /// The roles the account uses, each needing a server that has it.
    pub fn required_roles(&self) -> RoleSet {
        self.roles
    }
}

/// An account to create: its spec, and the servers some of its roles must go on (the rest are
/// placed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub spec: AccountSpec,
    pub pins: BTreeMap<Role, ServerId>,
}

/// Where each role of an account is served: one server per role, every dns server for `dns`.
/// Serializes as the API's `servers` object: `{"web": 1, "dns": [2, 5]}`, a role the account
/// does not use absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleServers(BTreeMap<Role, Vec<ServerId>>);

impl RoleServers {
    /// The servers of `role` (empty when the account does not use it).
    pub fn of(&self, role: Role) -> &[ServerId] {
        self.0.get(&role).map_or(&[], Vec::as_slice)
    }

    /// The one server of a single-server role (all but `dns`).
    pub fn one(&self, role: Role) -> Option<ServerId> {
        self.of(role).first().copied()
    }

    pub fn set(&mut self, role: Role, servers: Vec<ServerId>) {
        if servers.is_empty() {
            self.0.remove(&role);
        } else {
            self.0.insert(role, servers);
        }
    }

    /// Every server the account uses, each once, in id order.
    pub fn servers(&self) -> BTreeSet<ServerId> {
        self.0.values().flatten().copied().collect()
    }

    /// The roles the account has on `server`.
    pub fn roles_on(&self, server: ServerId) -> RoleSet {
        self.0
            .iter()
            .filter(|(_, servers)| servers.contains(&server))
            .map(|(role, _)| *role)
            .collect()
    }

    /// Each server the account uses with the roles it has there.
    pub fn by_server(&self) -> BTreeMap<ServerId, RoleSet> {
        self.servers()
            .into_iter()
            .map(|s| (s, self.roles_on(s)))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Role, &[ServerId])> {
        self.0.iter().map(|(r, s)| (*r, s.as_slice()))
    }
}

impl Serialize for RoleServers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (role, servers) in &self.0 {
            match role {
                Role::Dns => map.serialize_entry(role, servers)?,
                _ => map.serialize_entry(role, &servers.first())?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RoleServers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(ServerId),
            Many(Vec<ServerId>),
        }
        let raw = BTreeMap::<Role, OneOrMany>::deserialize(d)?;
        Ok(Self(
            raw.into_iter()
                .map(|(role, v)| {
                    let servers = match v {
                        OneOrMany::One(id) => vec![id],
                        OneOrMany::Many(ids) => ids,
                    };
                    (role, servers)
                })
                .filter(|(_, s)| !s.is_empty())
                .collect(),
        ))
    }
}

/// A hosting account as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub spec: AccountSpec,
    /// Where each of its roles is served.
    pub servers: RoleServers,
    pub status: AccountStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Account {
    /// The server of its web role (`None` without one).
    pub fn web_server(&self) -> Option<ServerId> {
        self.servers.one(Role::Web)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_lists() {
        let d = Domains::parse("domains", &["Example.com", "www.example.com"]).unwrap();
        assert_eq!(d.primary().as_str(), "example.com");
        assert_eq!(d.iter().count(), 2);

        let err = Domains::parse::<&str>("domains", &[]).unwrap_err();
        assert_eq!(err, Rule::Empty.at("domains"));
        let err = Domains::parse("domains", &["example.com", "EXAMPLE.com."]).unwrap_err();
        assert_eq!(err, Rule::DuplicateOf("domains[0]".into()).at("domains[1]"));
        let err = Domains::parse("domains", &["example.com", "bad;name.com"]).unwrap_err();
        assert_eq!(err, Rule::ForbiddenChar(';').at("domains[1]"));
        assert_eq!(
            err.to_string(),
            "domains[1] must not contain the character ';'"
        );
        let many: Vec<String> = (0..101).map(|i| format!("d{i}.example")).collect();
        let err = Domains::parse("domains", &many).unwrap_err();
        assert_eq!(err, Rule::TooMany { max: 100 }.at("domains"));
    }

    #[test]
    fn stored_lists_are_checked_again() {
        assert!(serde_json::from_str::<Domains>(r#"["a.example","a.example"]"#).is_err());
        assert!(serde_json::from_str::<Domains>(r#"[]"#).is_err());
        assert!(serde_json::from_str::<Domains>(r#"["a.example;"]"#).is_err());
    }
}
