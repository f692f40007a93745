//! Server roles and sets of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::rule::Rule;

/// What a server does. An account needs servers with certain roles; a server may have several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Web,
    Mail,
    Dns,
    Db,
    Backup,
}

impl Role {
    /// Every role, in the canonical order `web,mail,dns,db,backup`.
    pub const ALL: [Role; 5] = [Role::Web, Role::Mail, Role::Dns, Role::Db, Role::Backup];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Web => "web",
            Role::Mail => "mail",
            Role::Dns => "dns",
            Role::Db => "db",
            Role::Backup => "backup",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(Rule::UnknownRole)
    }
}

/// A set of roles. Prints and parses the comma form `web,mail,dns,db,backup` (always in that
/// order); serializes as an array of role names, as the API has it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);
    /// Single-server mode: one server with every role.
    pub const SINGLE_SERVER: RoleSet = RoleSet(0b1_1111);

    pub fn with(self, role: Role) -> Self {
        Self(self.0 | role.bit())
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether every role of `other` is in `self`.
    pub fn is_superset(self, other: RoleSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The roles in either set.
    pub fn union(self, other: RoleSet) -> RoleSet {
        RoleSet(self.0 | other.0)
    }

    /// The roles of `self` that are not in `other`.
    pub fn difference(self, other: RoleSet) -> RoleSet {
        RoleSet(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Builds a non-empty set from role names, refusing unknown and repeated names. On error, the
    /// index of the offending name is returned with the rule.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, (Option<usize>, Rule)> {
        let mut set = RoleSet::EMPTY;
        for (i, name) in names.iter().enumerate() {
            let role: Role = name.as_ref().parse().map_err(|rule| (Some(i), rule))?;
            if set.contains(role) {
                return Err((Some(i), Rule::DuplicateRole));
            }
            set = set.with(role);
        }
        if set.is_empty() {
            return Err((None, Rule::Empty));
        }
        Ok(set)
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        iter.into_iter().fold(RoleSet::EMPTY, RoleSet::with)
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, role) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(role.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoleSet({self})")
    }
}

/// Parses `web,mail`: a non-empty comma-separated list of distinct roles, no spaces.
impl FromStr for RoleSet {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        if s.is_empty() {
            return Err(Rule::Empty);
        }
        let names: Vec<&str> = s.split(',').collect();
        RoleSet::from_names(&names).map_err(|(_, rule)| rule)
    }
}

impl Serialize for RoleSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        RoleSet::from_names(&names).map_err(|(_, rule)| serde::de::Error::custom(rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let all: RoleSet = "web,mail,dns,db,backup".parse().unwrap();
        assert_eq!(all, RoleSet::SINGLE_SERVER);
        assert_eq!(all.to_string(), "web,mail,dns,db,backup");
        let set: RoleSet = "db,web".parse().unwrap();
        assert_eq!(set.to_string(), "web,db");
        assert!(set.contains(Role::Web) && set.contains(Role::Db) && !set.contains(Role::Mail));
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["web","db"]"#);
        let back: RoleSet = serde_json::from_str(r#"["db","web"]"#).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn refuses_bad_sets() {
        let rule = |s: &str| s.parse::<RoleSet>().unwrap_err();
        assert_eq!(rule(""), Rule::Empty);
        assert_eq!(rule("web,"), Rule::UnknownRole);
        assert_eq!(rule("web, mail"), Rule::UnknownRole);
        assert_eq!(rule("Web"), Rule::UnknownRole);
        assert_eq!(rule("web;mail"), Rule::UnknownRole);
        assert_eq!(rule("web,web"), Rule::DuplicateRole);
        assert_eq!(rule("web\nmail"), Rule::UnknownRole);
        assert_eq!(
            RoleSet::from_names(&["web", "ftp"]),
            Err((Some(1), Rule::UnknownRole))
        );
        assert_eq!(RoleSet::from_names::<&str>(&[]), Err((None, Rule::Empty)));
        assert!(serde_json::from_str::<RoleSet>("[]").is_err());
    }

    #[test]
    fn set_algebra() {
        let web_db: RoleSet = "web,db".parse().unwrap();
        let web: RoleSet = "web".parse().unwrap();
        assert!(web_db.is_superset(web));
        assert!(!web.is_superset(web_db));
        assert_eq!(web.difference(web_db), RoleSet::EMPTY);
        assert_eq!(web_db.difference(web).to_string(), "db");
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(bits in 1u8..32) {
            let set = RoleSet(bits);
            let printed = set.to_string();
            prop_assert_eq!(printed.parse::<RoleSet>().unwrap(), set);
            let json = serde_json::to_string(&set).unwrap();
            prop_assert_eq!(serde_json::from_str::<RoleSet>(&json).unwrap(), set);
        }

        #[test]
        fn parse_print_round_trip(roles in proptest::sample::subsequence(Role::ALL.to_vec(), 1..=5)
            .prop_shuffle())
        {
            let text = roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
            let set: RoleSet = text.parse().unwrap();
            let reprinted = set.to_string();
            prop_assert_eq!(reprinted.parse::<RoleSet>().unwrap(), set);
            prop_assert_eq!(set.iter().count(), roles.len());
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<RoleSet>();
        }
    }
}
