//! Wire types of the mail role: the Management API's mailboxes, aliases and DKIM records, and
//! what the controller sends the mail server's agent (password hashes, never passwords).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Integer, present, required};
use crate::domain::{
    Alias, Destinations, MailAddress, MailPassword, Mailbox, PasswordHash, QuotaMb, Rule,
    ValidationError,
};

fn quota(value: Option<Integer>, field: &str) -> Result<Option<QuotaMb>, ValidationError> {
    value
        .map(|n| {
            let n = n.whole().map_err(|r| r.at(field))?;
            let n = u64::try_from(n).map_err(|_| {
                Rule::OutOfRange {
                    min: 1,
                    max: u64::from(QuotaMb::MAX),
                }
                .at(field)
            })?;
            QuotaMb::new(n).map_err(|r| r.at(field))
        })
        .transpose()
}

/// `MailboxInput` of the contract (`POST /api/v1/accounts/{id}/mailboxes`).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxInput {
    /// `local@domain`; the domain one of the account's.
    #[cfg_attr(feature = "controller", schema(example = "info@example.com"))]
    pub address: Option<String>,
    /// 8 to 1,024 characters; write-only (only its hash is kept).
    #[cfg_attr(feature = "controller", schema(write_only))]
    pub password: Option<String>,
    /// Megabytes, 1 to 1,048,576; `null` or absent: the mail server's default.
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub quota_mb: Option<Integer>,
}

/// A mailbox to create, as validated (the password still to hash).
#[derive(Debug, Clone)]
pub struct NewMailbox {
    pub address: MailAddress,
    pub password: MailPassword,
    pub quota: Option<QuotaMb>,
}

impl MailboxInput {
    pub fn validate(&self) -> Result<NewMailbox, ValidationError> {
        let address = MailAddress::parse(required(self.address.as_deref(), "address")?)
            .map_err(|r| r.at("address"))?;
        let password = MailPassword::parse(required(self.password.as_deref(), "password")?)
            .map_err(|r| r.at("password"))?;
        Ok(NewMailbox {
            address,
            password,
            quota: quota(self.quota_mb, "quota_mb")?,
        })
    }
}

/// `PATCH /api/v1/accounts/{id}/mailboxes/{address}`: a new password and/or quota.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxPatch {
    /// A new password (`null` is refused).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = String, required = false, write_only))]
    pub password: Option<Option<String>>,
    /// A new quota; `null`: the mail server's default.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub quota_mb: Option<Option<Integer>>,
}

/// A validated [`MailboxPatch`].
#[derive(Debug, Clone)]
pub struct MailboxChange {
    pub password: Option<MailPassword>,
    /// Outer `None`: unchanged.
    pub quota: Option<Option<QuotaMb>>,
}

impl MailboxPatch {
    pub fn validate(&self) -> Result<MailboxChange, ValidationError> {
        let password = match &self.password {
            None => None,
            Some(None) => return Err(Rule::Required.at("password")),
            Some(Some(p)) => Some(MailPassword::parse(p).map_err(|r| r.at("password"))?),
        };
        let quota = match self.quota_mb {
            None => None,
            Some(q) => Some(quota(q, "quota_mb")?),
        };
        Ok(MailboxChange { password, quota })
    }
}

/// `Mailbox` of the contract: no password or hash field, so no answer can carry one.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxView {
    pub address: String,
    /// `null`: the mail server's default.
    pub quota_mb: Option<u32>,
    /// `null` when not known.
    pub used_mb: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "controller", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

impl MailboxView {
    pub fn new(mailbox: &Mailbox, used_mb: Option<u64>) -> Self {
        Self {
            address: mailbox.address.to_string(),
            quota_mb: mailbox.quota.map(QuotaMb::get),
            used_mb,
            created_at: mailbox.created_at,
        }
    }
}

/// `AliasInput` of the contract (`POST …/mail-aliases`, `PUT …/mail-aliases/{address}`).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasInput {
    /// `local@domain`, the domain one of the account's (with `PUT`: the path's, or absent).
    #[cfg_attr(feature = "controller", schema(example = "sales@example.com"))]
    pub address: Option<String>,
    /// 1 to 100 addresses, inside or outside the account.
    pub destinations: Option<Vec<String>>,
}

impl AliasInput {
    /// The alias; `path` is the address of a `PUT`, which a given `address` must match.
    pub fn validate(&self, path: Option<&str>) -> Result<Alias, ValidationError> {
        let address = match (path, self.address.as_deref()) {
            (Some(p), given) => {
                let from_path = MailAddress::parse(p).map_err(|r| r.at("address"))?;
                if let Some(given) = given {
                    let given = MailAddress::parse(given).map_err(|r| r.at("address"))?;
                    if given != from_path {
                        return Err(Rule::PathMismatch.at("address"));
                    }
                }
                from_path
            }
            (None, given) => {
                MailAddress::parse(required(given, "address")?).map_err(|r| r.at("address"))?
            }
        };
        let destinations = Destinations::parse(
            "destinations",
            required(self.destinations.as_deref(), "destinations")?,
        )?;
        if destinations.contains(&address) {
            return Err(Rule::AliasToItself.at("destinations"));
        }
        Ok(Alias {
            address,
            destinations,
        })
    }
}

/// `Alias` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasView {
    pub address: String,
    pub destinations: Vec<String>,
}

impl From<&Alias> for AliasView {
    fn from(a: &Alias) -> Self {
        Self {
            address: a.address.to_string(),
            destinations: a.destinations.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The DKIM public record of a mail domain: publish `value` as a TXT record at `name`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimRecord {
    pub domain: String,
    pub selector: String,
    /// `selector._domainkey.domain`.
    pub name: String,
    /// `v=DKIM1; k=rsa; p=…`.
    pub value: String,
}

/// Agent API: `PUT /v1/mail/{username}/mailboxes/{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxPut {
    pub password_hash: PasswordHash,
    /// `None`: the mail server's default.
    pub quota_mb: Option<QuotaMb>,
}

/// Agent API: `PUT /v1/mail/{username}/aliases/{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasPut {
    pub destinations: Destinations,
}

/// Agent API: a mailbox in the full mail of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxItem {
    pub address: MailAddress,
    pub password_hash: PasswordHash,
    pub quota_mb: Option<QuotaMb>,
}

/// Agent API: `PUT /v1/mail/{username}`: every mailbox and alias of the account (what is not
/// listed goes), applied at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailPut {
    pub mailboxes: Vec<MailboxItem>,
    pub aliases: Vec<Alias>,
}

/// Agent API: a mailbox as the agent reports it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMailbox {
    pub address: String,
    pub quota_mb: Option<u32>,
    /// What the mailbox holds, when the mail server says (`null` otherwise).
    pub used_mb: Option<u64>,
}

/// Agent API: `GET /v1/mail/{username}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMail {
    pub mailboxes: Vec<AgentMailbox>,
    pub aliases: Vec<AliasView>,
}

/// Agent API: `PUT /v1/webmail`: where the server's panel HTTPS block serves Roundcube
/// (`null`: nowhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebmailPut {
    pub path: Option<crate::domain::UrlPath>,
}
