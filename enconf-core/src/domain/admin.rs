//! Administrators of the Management API, their roles, and the audit log of what they changed.
//!
//! An administrator's token is shown once, when the administrator is made; the store keeps only
//! its SHA-256 digest (the token is 256 random bits, so a digest is as hard to reverse as the
//! token is to guess, and a lookup by digest reveals nothing about other tokens).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::rule::{Rule, check_display_name};

/// An administrator's id. `0` is the token in the controller's configuration, which is always
/// an `owner` and is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdminId(pub u64);

impl AdminId {
    /// The configured admin token.
    pub const CONFIGURED: AdminId = AdminId(0);
}

impl fmt::Display for AdminId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an administrator may do, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
pub enum AdminRole {
    /// Everything, including managing administrators.
    Owner,
    /// Servers and accounts, and reading the audit log.
    Admin,
    /// Accounts (and what they hold: mailboxes, zones, databases, backups) only.
    Operator,
    /// Reads only.
    Viewer,
}

impl AdminRole {
    pub const ALL: [AdminRole; 4] = [
        AdminRole::Owner,
        AdminRole::Admin,
        AdminRole::Operator,
        AdminRole::Viewer,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AdminRole::Owner => "owner",
            AdminRole::Admin => "admin",
            AdminRole::Operator => "operator",
            AdminRole::Viewer => "viewer",
        }
    }

    /// Whether this role may do what `permission` covers.
    pub const fn may(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => true,
            Permission::Accounts => !matches!(self, AdminRole::Viewer),
            Permission::Servers | Permission::Audit => {
                matches!(self, AdminRole::Owner | AdminRole::Admin)
            }
            Permission::Admins => matches!(self, AdminRole::Owner),
        }
    }
}

impl fmt::Display for AdminRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminRole {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        AdminRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(Rule::UnknownAdminRole)
    }
}

/// What an API operation needs. Every route has exactly one (see the controller's route
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Reading servers, accounts, jobs and what accounts hold (secrets are never readable).
    Read,
    /// Changing accounts and what they hold.
    Accounts,
    /// Changing servers (and reading what carries their secrets: install scripts).
    Servers,
    /// Reading the audit log.
    Audit,
    /// Managing administrators.
    Admins,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Accounts,
        Permission::Servers,
        Permission::Audit,
        Permission::Admins,
    ];
}

/// An administrator's name: 1 to 64 characters of plain text (no control or invisible
/// characters, no surrounding space).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AdminName(String);

impl AdminName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(input: &str) -> Result<Self, Rule> {
        check_display_name(input, Self::MAX_CHARS)?;
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AdminName {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        Self::parse(&s)
    }
}

impl From<AdminName> for String {
    fn from(n: AdminName) -> String {
        n.0
    }
}

impl fmt::Display for AdminName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 digest of an administrator's token: what the store keeps instead of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

impl TryFrom<String> for TokenDigest {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        let bytes = crate::secret::unhex(&s).ok_or(Rule::HashFormat)?;
        bytes.try_into().map(Self).map_err(|_| Rule::HashFormat)
    }
}

impl From<TokenDigest> for String {
    fn from(d: TokenDigest) -> String {
        crate::secret::hex(&d.0)
    }
}

/// A stored administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admin {
    pub id: AdminId,
    pub name: AdminName,
    pub role: AdminRole,
    pub token: TokenDigest,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Who made a request: a stored administrator, or the configured token ([`AdminId::CONFIGURED`],
/// an owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: AdminId,
    pub name: String,
    pub role: AdminRole,
}

impl Actor {
    /// The name the configured token goes by in the audit log.
    pub const CONFIGURED_NAME: &'static str = "configured admin token";

    pub fn configured() -> Self {
        Self {
            id: AdminId::CONFIGURED,
            name: Self::CONFIGURED_NAME.to_owned(),
            role: AdminRole::Owner,
        }
    }

    pub fn of(admin: &Admin) -> Self {
        Self {
            id: admin.id,
            name: admin.name.as_str().to_owned(),
            role: admin.role,
        }
    }
}

/// What a secret field's value is replaced with in the audit log.
pub const CHANGED: &str = "changed";

/// One change, as the audit log keeps it. Entries are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "controller", schema(value_type = String))]
    pub time: OffsetDateTime,
    /// The administrator's id (`0`: the configured admin token).
    pub admin: u64,
    /// Their name when they made the change.
    pub admin_name: String,
    /// What was done: `server.create`, `account.patch`, `admin.delete`…
    pub action: String,
    /// What it was done to: `server:3`, `account:12`, `admin:2` (empty when the change made
    /// nothing, for example a refused create).
    pub object: String,
    /// The fields the request set, each with its value, or `"changed"` for a secret.
    #[cfg_attr(feature = "controller", schema(value_type = Object))]
    pub changes: BTreeMap<String, serde_json::Value>,
    /// `ok`, or the error code the API answered with (`invalid`, `forbidden`…).
    pub result: String,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// An entry to add: everything but its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub time: OffsetDateTime,
    pub admin: AdminId,
    pub admin_name: String,
    pub action: String,
    pub object: String,
    pub changes: BTreeMap<String, serde_json::Value>,
    pub result: String,
    pub status: u16,
}

impl NewAuditEntry {
    pub fn with_id(self, id: u64) -> AuditEntry {
        AuditEntry {
            id,
            time: self.time,
            admin: self.admin.0,
            admin_name: self.admin_name,
            action: self.action,
            object: self.object,
            changes: self.changes,
            result: self.result,
            status: self.status,
        }
    }
}

/// An audit entry's object (`server:3`): a kind of letters and `-`, a colon, an id.
pub fn parse_object(text: &str) -> Result<(String, u64), Rule> {
    let (kind, id) = text.split_once(':').ok_or(Rule::ObjectFormat)?;
    if kind.is_empty()
        || kind.len() > 32
        || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        return Err(Rule::ObjectFormat);
    }
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|n| id == n.to_string())
        .ok_or(Rule::ObjectFormat)?;
    Ok((kind.to_owned(), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_say() {
        use AdminRole::*;
        use Permission::*;
        let table = [
            (Owner, [true, true, true, true, true]),
            (Admin, [true, true, true, true, false]),
            (Operator, [true, true, false, false, false]),
            (Viewer, [true, false, false, false, false]),
        ];
        for (role, allowed) in table {
            for (p, want) in [Read, Accounts, Servers, Audit, Admins]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(role.may(p), want, "{role} {p:?}");
            }
        }
        for role in AdminRole::ALL {
            assert_eq!(role.as_str().parse::<AdminRole>(), Ok(role));
        }
        assert_eq!("Owner".parse::<AdminRole>(), Err(Rule::UnknownAdminRole));
    }

    #[test]
    fn names_are_plain_text() {
        assert!(AdminName::parse("Ana Pérez").is_ok());
        assert_eq!(AdminName::parse(""), Err(Rule::Empty));
        assert_eq!(AdminName::parse("a\nb"), Err(Rule::ControlChar));
        assert_eq!(AdminName::parse(" a"), Err(Rule::SurroundingSpace));
        assert!(AdminName::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn digests_round_trip_and_hide() {
        let d = TokenDigest::of(b"token");
        let text = String::from(d);
        assert_eq!(text.len(), 64);
        assert_eq!(TokenDigest::try_from(text), Ok(d));
        assert_eq!(format!("{d:?}"), "TokenDigest(..)");
    }

    #[test]
    fn objects_parse() {
        assert_eq!(parse_object("server:3"), Ok(("server".into(), 3)));
        assert_eq!(
            parse_object("database-user:12"),
            Ok(("database-user".into(), 12))
        );
        for bad in [
            "server",
            "server:",
            ":3",
            "Server:3",
            "server:03",
            "server:-1",
            "a b:1",
        ] {
            assert_eq!(parse_object(bad), Err(Rule::ObjectFormat), "{bad}");
        }
    }
}
