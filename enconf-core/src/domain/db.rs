//! The db role's values: database and database-user names, their passwords and hashes, and the
//! hosts a user may connect from.
//!
//! Names are built so that no quoting is needed anywhere they go (and they are quoted all the
//! same): the account's prefix `<username>_`, then lowercase letters, digits and `_`, at most
//! 64 characters in all. MariaDB takes 64 for a database and 128 for a user; 64 for both keeps
//! every name printable in full by every client. `_` is a wildcard in a GRANT's database name:
//! [`DbName::grant_pattern`] escapes it.

use std::fmt;
use std::net::IpAddr;

use super::mail::MailPassword;
use super::rule::{Rule, string_serde};
use super::user::UserName;

/// Longest database or database-user name, prefix included.
pub const MAX_DB_NAME_LEN: usize = 64;
/// Most databases an account has.
pub const MAX_DATABASES: usize = 100;
/// Most database users an account has.
pub const MAX_DB_USERS: usize = 100;

/// The part after the prefix: lowercase letters, digits and `_`, not empty.
fn check_rest(prefix: &str, rest: &str) -> Result<(), Rule> {
    if rest.is_empty() {
        return Err(Rule::EmptyAfterPrefix(prefix.to_owned()));
    }
    if let Some(c) = rest
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(if c.is_control() {
            Rule::ControlChar
        } else {
            Rule::DbNameChar(c)
        });
    }
    if prefix.len() + rest.len() > MAX_DB_NAME_LEN {
        return Err(Rule::TooLong {
            max: MAX_DB_NAME_LEN,
        });
    }
    Ok(())
}

/// `input` as a full name of `account`'s: given with or without the prefix.
fn full_name(account: &UserName, input: &str) -> Result<String, Rule> {
    let prefix = format!("{account}_");
    let rest = input.strip_prefix(&prefix).unwrap_or(input);
    check_rest(&prefix, rest)?;
    Ok(format!("{prefix}{rest}"))
}

/// A full name read back (from the store or the wire): a user name, `_`, the rest.
fn any_full_name(input: &str) -> Result<(), Rule> {
    if input.len() > MAX_DB_NAME_LEN {
        return Err(Rule::TooLong {
            max: MAX_DB_NAME_LEN,
        });
    }
    // The account's user name may hold `_` itself: some split must give a valid pair.
    let valid = input.match_indices('_').any(|(i, _)| {
        let (user, rest) = input.split_at(i);
        UserName::parse(user).is_ok() && check_rest(&input[..=i], &rest[1..]).is_ok()
    });
    if valid {
        Ok(())
    } else {
        Err(input
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
            .map_or(Rule::EmptyAfterPrefix(String::new()), |c| {
                if c.is_control() {
                    Rule::ControlChar
                } else {
                    Rule::DbNameChar(c)
                }
            }))
    }
}

macro_rules! db_ident {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// `input` (with or without the prefix `<account>_`) as a name of `account`'s.
            pub fn parse(account: &UserName, input: &str) -> Result<Self, Rule> {
                full_name(account, input).map(Self)
            }

            /// A full name as recorded or sent (its account not known here).
            pub fn parse_full(input: &str) -> Result<Self, Rule> {
                any_full_name(input)?;
                Ok(Self(input.to_owned()))
            }

            /// Whether the name carries `account`'s prefix.
            pub fn belongs_to(&self, account: &UserName) -> bool {
                self.0
                    .strip_prefix(account.as_str())
                    .is_some_and(|rest| rest.starts_with('_'))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = Rule;
            fn from_str(s: &str) -> Result<Self, Rule> {
                Self::parse_full(s)
            }
        }

        string_serde!($ty);
    };
}

db_ident!(
    /// A database of an account: `<username>_<name>`.
    DbName
);
db_ident!(
    /// A database user of an account: `<username>_<name>`.
    DbUserName
);

impl DbName {
    /// The name as a quoted identifier (`` `shop_data` ``). The allowlist leaves nothing to
    /// escape; a backtick would be doubled.
    pub fn quoted(&self) -> String {
        format!("`{}`", self.0.replace('`', "``"))
    }

    /// The name as a GRANT's database pattern, as MariaDB keeps it in `mysql.db`: `_` and `%`
    /// are wildcards there, so each is escaped (`shop\_data`): a grant on `shop_data` must not
    /// open `shopxdata`.
    pub fn grant_key(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            if matches!(c, '_' | '%' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// [`DbName::grant_key`] quoted, for a GRANT statement (`` `shop\_data` ``).
    pub fn grant_pattern(&self) -> String {
        format!("`{}`", self.grant_key().replace('`', "``"))
    }
}

/// A database user's password as given at the API: the mail rules (8 to 1,024 characters, no
/// control characters). It only lives to be hashed; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct DbPassword(MailPassword);

impl DbPassword {
    pub fn parse(input: &str) -> Result<Self, Rule> {
        MailPassword::parse(input).map(Self)
    }

    /// The password's `mysql_native_password` hash.
    pub fn hash(&self) -> NativeHash {
        NativeHash::of(self.0.expose_secret())
    }
}

impl fmt::Debug for DbPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DbPassword(***)")
    }
}

/// A `mysql_native_password` hash: `*` and the uppercase hex of SHA1(SHA1(password)). MariaDB
/// takes it as `IDENTIFIED BY PASSWORD '*…'`, so the password itself never leaves the
/// controller. It is as good as the password against anyone who also sees a login on the wire:
/// kept sealed in the store and never answered. `Debug` and `Display` do not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct NativeHash(String);

impl NativeHash {
    /// The hash of `password`.
    pub fn of(password: &str) -> Self {
        use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
        let stage1 = digest(&SHA1, password.as_bytes());
        let stage2 = digest(&SHA1, stage1.as_ref());
        let mut out = String::with_capacity(41);
        out.push('*');
        for b in stage2.as_ref() {
            out.push_str(&format!("{b:02X}"));
        }
        Self(out)
    }

    pub fn parse(input: &str) -> Result<Self, Rule> {
        match input.strip_prefix('*') {
            Some(hex)
                if hex.len() == 40
                    && hex
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)) =>
            {
                Ok(Self(input.to_owned()))
            }
            _ => Err(Rule::NativeHash),
        }
    }

    /// The hash, for the statement that sets it (never for a log).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NativeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NativeHash(***)")
    }
}

impl serde::Serialize for NativeHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for NativeHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a database user may connect from: the db server itself (`localhost`: its unix
/// socket, and so phpMyAdmin there) or one address (the account's web server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DbHost {
    Localhost,
    Ip(IpAddr),
}

impl DbHost {
    pub fn parse(input: &str) -> Result<Self, Rule> {
        if input == "localhost" {
            return Ok(Self::Localhost);
        }
        input.parse().map(Self::Ip).map_err(|_| Rule::DbHost)
    }

    /// The host as a quoted string literal (`'127.0.0.1'`): nothing in it needs escaping.
    pub fn quoted(&self) -> String {
        format!("'{self}'")
    }
}

impl fmt::Display for DbHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Localhost => f.write_str("localhost"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl std::str::FromStr for DbHost {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Self::parse(s)
    }
}

string_serde!(DbHost);

/// A database user as its db server is sent it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DbUserSpec {
    pub name: DbUserName,
    pub hash: NativeHash,
    /// The databases it has all privileges on (and nothing else).
    pub databases: Vec<DbName>,
    /// Where it may connect from.
    pub hosts: Vec<DbHost>,
}

/// An account's databases and users, whole, as its db server is sent them.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DbSpec {
    #[serde(default)]
    pub databases: Vec<DbName>,
    #[serde(default)]
    pub users: Vec<DbUserSpec>,
}

impl DbSpec {
    pub fn is_empty(&self) -> bool {
        self.databases.is_empty() && self.users.is_empty()
    }

    /// A fingerprint of the whole part (names, grants, hosts and hashes): what an agent
    /// reports of it, so that a reconciliation compares without the hashes travelling back.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every name belongs to `account`, every grant is on one of its databases, nothing twice:
    /// what an agent checks before it touches its MariaDB. `at` prefixes the field names
    /// (`db.`).
    pub fn check(&self, account: &UserName, at: &str) -> Result<(), super::ValidationError> {
        if self.databases.len() > MAX_DATABASES {
            return Err(Rule::TooMany { max: MAX_DATABASES }.at(format!("{at}databases")));
        }
        if self.users.len() > MAX_DB_USERS {
            return Err(Rule::TooMany { max: MAX_DB_USERS }.at(format!("{at}users")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, db) in self.databases.iter().enumerate() {
            if !db.belongs_to(account) {
                return Err(
                    Rule::EmptyAfterPrefix(format!("{account}_")).at(format!("{at}databases[{i}]"))
                );
            }
            if !seen.insert(db.as_str()) {
                return Err(Rule::DuplicateOf(db.to_string()).at(format!("{at}databases[{i}]")));
            }
        }
        let mut users = std::collections::BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if !user.name.belongs_to(account) {
                return Err(Rule::EmptyAfterPrefix(format!("{account}_"))
                    .at(format!("{at}users[{i}].name")));
            }
            if !users.insert(user.name.as_str()) {
                return Err(
                    Rule::DuplicateOf(user.name.to_string()).at(format!("{at}users[{i}].name"))
                );
            }
            if let Some(j) = user
                .databases
                .iter()
                .position(|d| !self.databases.contains(d))
            {
                return Err(Rule::NotAccountDatabase.at(format!("{at}users[{i}].databases[{j}]")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> UserName {
        UserName::parse("shop").unwrap()
    }

    #[test]
    fn names_take_the_prefix_once() {
        assert_eq!(
            DbName::parse(&shop(), "data").unwrap().as_str(),
            "shop_data"
        );
        assert_eq!(
            DbName::parse(&shop(), "shop_data").unwrap().as_str(),
            "shop_data"
        );
        assert_eq!(
            DbUserName::parse(&shop(), "wp_1").unwrap().as_str(),
            "shop_wp_1"
        );
        assert_eq!(
            DbName::parse(&shop(), "shop_"),
            Err(Rule::EmptyAfterPrefix("shop_".into()))
        );
        assert_eq!(
            DbName::parse(&shop(), ""),
            Err(Rule::EmptyAfterPrefix("shop_".into()))
        );
        let long = "a".repeat(MAX_DB_NAME_LEN - 5);
        assert!(DbName::parse(&shop(), &long).is_ok());
        assert_eq!(
            DbName::parse(&shop(), &format!("{long}a")),
            Err(Rule::TooLong { max: 64 })
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        for (input, rule) in [
            ("da`ta", Rule::DbNameChar('`')),
            ("da'ta", Rule::DbNameChar('\'')),
            ("da\"ta", Rule::DbNameChar('"')),
            ("da%ta", Rule::DbNameChar('%')),
            ("da/ta", Rule::DbNameChar('/')),
            ("da\\ta", Rule::DbNameChar('\\')),
            ("da ta", Rule::DbNameChar(' ')),
            ("da\nta", Rule::ControlChar),
            ("da\0ta", Rule::ControlChar),
            ("Data", Rule::DbNameChar('D')),
            ("da-ta", Rule::DbNameChar('-')),
            ("da.ta", Rule::DbNameChar('.')),
            ("dätä", Rule::DbNameChar('ä')),
        ] {
            assert_eq!(
                DbName::parse(&shop(), input),
                Err(rule.clone()),
                "{input:?}"
            );
            assert_eq!(DbUserName::parse(&shop(), input), Err(rule), "{input:?}");
        }
    }

    #[test]
    fn full_names_read_back() {
        for ok in ["shop_data", "a_b_c", "site-1_db", "shop_42"] {
            assert!(DbName::parse_full(ok).is_ok(), "{ok}");
        }
        for bad in [
            "shop_",
            "shop",
            "_data",
            "Shop_data",
            "shop_da`ta",
            "1shop_x",
            "root_x",
        ] {
            assert!(DbName::parse_full(bad).is_err(), "{bad}");
        }
        let name = DbName::parse_full("site-1_db").unwrap();
        assert!(name.belongs_to(&UserName::parse("site-1").unwrap()));
        assert!(!name.belongs_to(&UserName::parse("site").unwrap()));
    }

    #[test]
    fn grants_escape_the_wildcards() {
        let db = DbName::parse(&shop(), "my_data").unwrap();
        assert_eq!(db.quoted(), "`shop_my_data`");
        assert_eq!(db.grant_pattern(), "`shop\\_my\\_data`");
        assert_eq!(db.grant_key(), "shop\\_my\\_data");
    }

    #[test]
    fn the_native_hash_is_mariadbs() {
        // SELECT PASSWORD('secret-password') on MariaDB 10.11.
        assert_eq!(
            NativeHash::of("secret-password").expose_secret(),
            NativeHash::of("secret-password").0
        );
        assert_eq!(
            NativeHash::of("password").expose_secret(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        assert!(NativeHash::parse("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").is_ok());
        assert!(NativeHash::parse("*2470c0c06dee42fd1618bb99005adca2ec9d1e19").is_err());
        assert!(NativeHash::parse("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").is_err());
        assert!(NativeHash::parse("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1'").is_err());
        assert_eq!(
            format!("{:?}", NativeHash::of("password")),
            "NativeHash(***)"
        );
        assert_eq!(
            format!("{:?}", DbPassword::parse("password").unwrap()),
            "DbPassword(***)"
        );
    }

    #[test]
    fn hosts_are_localhost_or_addresses() {
        assert_eq!(DbHost::parse("localhost"), Ok(DbHost::Localhost));
        assert_eq!(DbHost::parse("192.0.2.7").unwrap().quoted(), "'192.0.2.7'");
        assert_eq!(
            DbHost::parse("2001:db8::1").unwrap().to_string(),
            "2001:db8::1"
        );
        for bad in ["%", "example.com", "1.2.3.4'", ""] {
            assert_eq!(DbHost::parse(bad), Err(Rule::DbHost));
        }
    }

    #[test]
    fn a_spec_holds_only_the_accounts_names() {
        let db = |s: &str| DbName::parse_full(s).unwrap();
        let mut spec = DbSpec {
            databases: vec![db("shop_a")],
            users: vec![DbUserSpec {
                name: DbUserName::parse_full("shop_u").unwrap(),
                hash: NativeHash::of("password"),
                databases: vec![db("shop_a")],
                hosts: vec![DbHost::Localhost],
            }],
        };
        assert!(spec.check(&shop(), "db.").is_ok());
        spec.users[0].databases.push(db("other_a"));
        assert_eq!(
            spec.check(&shop(), "db.").unwrap_err().field,
            "db.users[0].databases[1]"
        );
        spec.databases.push(db("other_a"));
        assert_eq!(
            spec.check(&shop(), "db.").unwrap_err().field,
            "db.databases[1]"
        );
    }
}
