//! The agent API (controller → agent), version 1. Every path needs
//! `Authorization: Bearer <AGENT_TOKEN>`; errors have the shape of [`super::ErrorBody`].
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `GET /v1/health` | — | 200 [`AgentHealth`](super::AgentHealth) |
//! | `GET /v1/accounts` | — | 200 [`AccountList`] |
//! | `PUT /v1/accounts/{username}` | [`AccountPut`] (without `username`) | 200 [`Applied`] |
//! | `PUT /v1/accounts` | [`AccountBatch`] | 200 [`BatchApplied`] |
//! | `DELETE /v1/accounts/{username}` | — | 200 [`Applied`] (`changed: false` when absent) |
//! | `PUT /v1/certificates/{panel\|mail}` | [`CertificatePut`] | 200 [`Applied`] |
//! | `PUT /v1/acme-challenge/{token}` | [`ChallengePut`] | 200 [`Applied`] |
//! | `DELETE /v1/acme-challenge/{token}` | — | 200 [`Applied`] |
//! | `GET /v1/mail/{username}` | — | 200 [`AgentMail`](super::mail::AgentMail) |
//! | `PUT /v1/mail/{username}` | [`MailPut`](super::mail::MailPut) | 200 [`Applied`] |
//! | `PUT /v1/mail/{username}/mailboxes/{address}` | [`MailboxPut`](super::mail::MailboxPut) | 200 [`Applied`] |
//! | `DELETE /v1/mail/{username}/mailboxes/{address}` | — | 200 [`Applied`] |
//! | `PUT /v1/mail/{username}/aliases/{address}` | [`AliasPut`](super::mail::AliasPut) | 200 [`Applied`] |
//! | `DELETE /v1/mail/{username}/aliases/{address}` | — | 200 [`Applied`] |
//! | `PUT /v1/webmail` | [`WebmailPut`](super::mail::WebmailPut) | 200 [`Applied`] |
//! | `GET /v1/mail/{username}/dkim` | — | 200 `[`[`DkimRecord`](super::mail::DkimRecord)`]` |
//! | `GET /v1/dns/{username}` | — | 200 [`AgentZones`](super::dns::AgentZones) |
//!
//! A put is idempotent: the same account put twice answers `{"changed": false}` the second time
//! and touches nothing. A batch is applied with one validation and one reload; when any item is
//! invalid the whole batch is refused with `422` naming it (`accounts[3].domains[0]`) and nothing
//! changes. When nginx or PHP-FPM rejects the rendered configuration, the previous files are
//! restored and the answer is `422 config_rejected` with the validator's message.

use serde::{Deserialize, Serialize};

/// The largest body of one account put: 100 domains of 253 characters, and (dns) the zones of
/// those domains with their records (1,500 records of about 100 bytes per zone), fit.
pub const MAX_ACCOUNT_PUT_BYTES: usize = 4 * 1024 * 1024;
/// The largest body of a certificate put: a long chain and an RSA-8192 key fit.
pub const MAX_CERTIFICATE_PUT_BYTES: usize = 256 * 1024;
/// The largest body of an ACME challenge answer.
pub const MAX_CHALLENGE_PUT_BYTES: usize = 16 * 1024;

use crate::domain::{
    AccountSpec, Domains, PhpSettings, PhpSettingsRaw, PhpVersion, RoleSet, Rule, UserName,
    ValidationError,
};

/// `PUT /v1/accounts/{username}` body, and an item of a batch (which names `username`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub domains: Option<Vec<String>>,
    /// `null`: the agent's default PHP version.
    #[serde(default)]
    pub php_version: Option<String>,
    #[serde(default)]
    pub php: Option<PhpSettingsRaw>,
    /// The roles of the account this agent serves (absent: the web role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The account's zones, whole (dns role only; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<super::dns::ZonePut>>,
    /// The account's databases and database users, whole (db role only; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<super::db::DbPut>,
    /// What the backup server keeps for the account (backup role only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::domain::backup::BackupSpec>,
}

impl AccountPut {
    /// The put of an existing spec (what the controller sends).
    pub fn from_spec(spec: &AccountSpec) -> Self {
        Self {
            username: Some(spec.username.to_string()),
            domains: Some(spec.domains.iter().map(ToString::to_string).collect()),
            php_version: spec.php_version.map(|v| v.to_string()),
            php: Some(spec.php.into()),
            roles: Some(spec.roles.iter().map(|r| r.to_string()).collect()),
            zones: (!spec.zones.is_empty()).then(|| {
                spec.zones
                    .iter()
                    .map(super::dns::ZonePut::from_zone)
                    .collect()
            }),
            db: (!spec.db.is_empty()).then(|| super::db::DbPut::from_spec(&spec.db)),
            backup: spec.backup.clone(),
        }
    }

    /// Validates the body; `prefix` is put before field names (`accounts[3].`), and `username`
    /// comes from the path when the body has none.
    pub fn validate(
        &self,
        prefix: &str,
        username: Option<&str>,
    ) -> Result<AccountSpec, ValidationError> {
        let field = |name: &str| format!("{prefix}{name}");
        let username = match (self.username.as_deref(), username) {
            (Some(body), Some(path)) if body != path => {
                return Err(
                    Rule::DuplicateOf("the user name in the path".into()).at(field("username"))
                );
            }
            (Some(name), _) | (None, Some(name)) => name,
            (None, None) => return Err(Rule::Required.at(field("username"))),
        };
        let username = UserName::parse(username).map_err(|r| r.at(field("username")))?;
        let domains = self
            .domains
            .as_deref()
            .ok_or_else(|| Rule::Required.at(field("domains")))?;
        let domains = Domains::parse(&field("domains"), domains)?;
        let php_version = self
            .php_version
            .as_deref()
            .map(PhpVersion::parse)
            .transpose()
            .map_err(|r| r.at(field("php_version")))?;
        let php = PhpSettings::from_raw(self.php.unwrap_or_default(), &field("php."))?;
        let roles = match &self.roles {
            None => AccountSpec::web_only(),
            Some(names) => RoleSet::from_names(names).map_err(|(i, rule)| match i {
                Some(i) => rule.at(field(&format!("roles[{i}]"))),
                None => rule.at(field("roles")),
            })?,
        };
        let mut zones = Vec::new();
        if let Some(list) = &self.zones {
            if !roles.contains(crate::domain::Role::Dns) && !list.is_empty() {
                return Err(Rule::NoDnsRole.at(field("zones")));
            }
            let own = crate::domain::dns::zones_of(domains.iter())
                .map_err(|(i, rule)| rule.at(field(&format!("domains[{i}]"))))?;
            for (i, zone) in list.iter().enumerate() {
                let at = field(&format!("zones[{i}]."));
                let zone = zone.validate(&at)?;
                if !own.contains(&zone.name) {
                    return Err(Rule::NotAccountDomain.at(format!("{at}name")));
                }
                if zones
                    .iter()
                    .any(|z: &crate::domain::dns::ZoneData| z.name == zone.name)
                {
                    return Err(Rule::DuplicateOf(zone.name.to_string()).at(format!("{at}name")));
                }
                zones.push(zone);
            }
        }
        let db = match &self.db {
            None => crate::domain::db::DbSpec::default(),
            Some(put) => {
                if !roles.contains(crate::domain::Role::Db) && *put != super::db::DbPut::default() {
                    return Err(Rule::NoDbRole.at(field("db")));
                }
                put.validate(&field("db."), &username)?
            }
        };
        if let Some(backup) = &self.backup {
            if !roles.contains(crate::domain::Role::Backup) {
                return Err(Rule::RoleNotUsed.at(field("backup")));
            }
            backup
                .check()
                .map_err(|r| r.at(field("backup.access_hash")))?;
        }
        Ok(AccountSpec {
            username,
            domains,
            php_version,
            php,
            roles,
            zones,
            db,
            backup: self.backup.clone(),
        })
    }
}

/// `PUT /v1/accounts` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBatch {
    pub accounts: Vec<AccountPut>,
}

impl AccountBatch {
    /// Validates every item; a user name given twice is refused.
    pub fn validate(&self) -> Result<Vec<AccountSpec>, ValidationError> {
        let mut specs: Vec<AccountSpec> = Vec::with_capacity(self.accounts.len());
        let mut seen = std::collections::HashMap::with_capacity(self.accounts.len());
        for (i, item) in self.accounts.iter().enumerate() {
            let spec = item.validate(&format!("accounts[{i}]."), None)?;
            if let Some(first) = seen.insert(spec.username.clone(), i) {
                return Err(Rule::DuplicateOf(format!("accounts[{first}].username"))
                    .at(format!("accounts[{i}].username")));
            }
            specs.push(spec);
        }
        Ok(specs)
    }
}

/// `PUT /v1/certificates/{panel|mail}`: a certificate for the server's own names, installed
/// atomically (key mode 0600) and put in use (the panel server block; for mail, the mail
/// services' TLS settings), validated and reloaded with the same rollback as any apply.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatePut {
    /// The names the server answers to with it (the first is the hostname).
    pub names: Vec<String>,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for CertificatePut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificatePut")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// `PUT /v1/acme-challenge/{token}`: serve `key_authorization` at
/// `http://<name>/.well-known/acme-challenge/<token>` for each of `names`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengePut {
    pub names: Vec<String>,
    pub key_authorization: String,
}

/// An ACME challenge token or key authorization: base64url characters (and one `.` in a key
/// authorization), at most 512 of them. Nothing else may reach a file name or a served file.
pub fn check_acme_text(text: &str, dots: usize) -> Result<(), Rule> {
    if text.is_empty() {
        return Err(Rule::Empty);
    }
    if text.len() > 512 {
        return Err(Rule::TooLong { max: 512 });
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
    {
        return Err(Rule::ForbiddenChar(c));
    }
    if text.matches('.').count() > dots {
        return Err(Rule::ForbiddenChar('.'));
    }
    Ok(())
}

/// What a put or delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub changed: bool,
}

/// What a batch did, item by item, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchApplied {
    pub changed: usize,
    pub unchanged: usize,
}

/// An account as the agent has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAccount {
    pub username: String,
    pub domains: Vec<String>,
    /// The PHP version the pool runs (the agent's default filled in).
    pub php_version: String,
    pub php: PhpSettings,
    /// The roles this agent serves for the account (agents before roles: the web role).
    #[serde(default = "AccountSpec::web_only")]
    pub roles: RoleSet,
    /// The serial of each zone the agent serves for the account (dns role).
    #[serde(default)]
    pub zones: std::collections::BTreeMap<String, u32>,
    /// The fingerprint of the account's databases and users as the agent has them (db role;
    /// [`crate::domain::db::DbSpec::digest`]); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
}

/// `GET /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountList {
    pub accounts: Vec<AgentAccount>,
}

/// `PUT /v1/token`: a token the agent accepts beside the current one, until
/// `POST /v1/token/commit` (presenting it) makes it the only one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPut {
    pub token: String,
}

impl std::fmt::Debug for TokenPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenPut(<redacted>)")
    }
}

/// `PUT /v1/tls`: the certificate chain and key the agent serves HTTPS with from its next
/// handshake (a renewal by the controller's authority).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsPut {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for TlsPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPut(<redacted>)")
    }
}

/// The agent's Debian package, which `POST /v1/update` upgrades.
pub const AGENT_PACKAGE: &str = "netcell-webpanel-agent";
/// The agent's apt source on a server: the only source an upgrade reads.
pub const AGENT_SOURCES_FILE: &str = "/etc/apt/sources.list.d/netcell-webpanel-agent.sources";

/// Where the agent's self-upgrade is (`GET /v1/update`; `POST /v1/update` starts one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpgradeStatus {
    /// No upgrade was started since the agent's package was installed.
    Idle,
    Running,
    Succeeded,
    Failed,
}

/// The agent's self-upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub status: UpgradeStatus,
    /// The end of the upgrade's output (dpkg and apt-get), when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_name_the_item() {
        let batch: AccountBatch = serde_json::from_str(
            r#"{"accounts": [
                {"username": "a1", "domains": ["a1.example"]},
                {"username": "a2", "domains": ["a2.example", "x;y.example"]}
            ]}"#,
        )
        .unwrap();
        let e = batch.validate().unwrap_err();
        assert_eq!(e.field, "accounts[1].domains[1]");
        let batch: AccountBatch = serde_json::from_str(
            r#"{"accounts": [
                {"username": "a1", "domains": ["a1.example"]},
                {"username": "a1", "domains": ["a2.example"], "php": {"max_children": 900}}
            ]}"#,
        )
        .unwrap();
        let e = batch.validate().unwrap_err();
        assert_eq!(e.field, "accounts[1].php.max_children");
    }

    #[test]
    fn put_takes_the_path_user_name() {
        let put: AccountPut = serde_json::from_str(r#"{"domains": ["shop.example"]}"#).unwrap();
        let spec = put.validate("", Some("shop")).unwrap();
        assert_eq!(spec.username.as_str(), "shop");
        assert_eq!(put.validate("", None).unwrap_err().field, "username");
        let e = put.validate("", Some("www-data")).unwrap_err();
        assert_eq!((e.field.as_str(), e.rule), ("username", Rule::Reserved));
        let mut other = put.clone();
        other.username = Some("blog".into());
        assert_eq!(
            other.validate("", Some("shop")).unwrap_err().field,
            "username"
        );
        let round = AccountPut::from_spec(&spec).validate("", None).unwrap();
        assert_eq!(round, spec);
    }
}
