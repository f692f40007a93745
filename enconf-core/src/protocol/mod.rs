//! Wire types of both HTTP APIs (controller Management API and agent API): what crosses a process
//! boundary, kept apart from the domain types that the code works with.
//!
//! Inputs arrive as plain strings and are turned into domain values by `validate`, so that a bad
//! value is answered with `422 invalid` naming its field rather than a JSON shape error.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{
    Account, AccountSpec, AccountStatus, AgentToken, AgentUrl, DomainName, Domains, HttpUrl,
    NewAccount, PhpSettings, PhpSettingsRaw, PhpVersion, Role, RoleServers, RoleSet, Rule, Server,
    ServerId, ServerName, ServerSpec, UrlPath, UserName, ValidationError,
};
use crate::placement::{PlacementError, Unfit};
use crate::store::StoreError;

pub mod admin;
pub mod agent;
pub mod backup;
pub mod db;
pub mod dns;
pub mod list;
pub mod mail;

/// Error codes of both APIs.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Duplicate,
    ServerHasAccounts,
    RolesInUse,
    NoServerAvailable,
    PayloadTooLarge,
    Invalid,
    /// nginx or PHP-FPM rejected the rendered configuration; nothing was changed.
    ConfigRejected,
    /// The agent does not serve a role the request is for; nothing was changed.
    RoleNotServed,
    /// A domain an account change would drop still has mailboxes or aliases.
    DomainInUse,
    /// The account (or, for an update, the server) has a job that is not finished.
    JobRunning,
    /// The server's agent is at the newest version known (or newer): nothing to update.
    UpToDate,
    /// The administrator's role may not do this.
    Forbidden,
    /// Too many failed sign-ins from this address: wait (`Retry-After`) and try again.
    TooManyRequests,
    AgentError,
    AgentOffline,
    /// The controller's store cannot be reached now; try again.
    StoreUnavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Forbidden => 403,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Duplicate
            | ErrorCode::ServerHasAccounts
            | ErrorCode::RolesInUse
            | ErrorCode::NoServerAvailable
            | ErrorCode::RoleNotServed
            | ErrorCode::DomainInUse
            | ErrorCode::JobRunning
            | ErrorCode::UpToDate => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Invalid | ErrorCode::ConfigRejected => 422,
            ErrorCode::AgentError => 502,
            ErrorCode::AgentOffline | ErrorCode::StoreUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// An API error: `{"error": {"code": …, "message": …, "field": …}}`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", error.message)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }

    pub fn status(&self) -> u16 {
        self.error.code.status()
    }
}

impl From<ValidationError> for ErrorBody {
    fn from(e: ValidationError) -> Self {
        ErrorBody::new(ErrorCode::Invalid, e.to_string()).with_field(e.field)
    }
}

impl From<PlacementError> for ErrorBody {
    fn from(e: PlacementError) -> Self {
        // Offline when the only thing keeping the account off a server is its agent being
        // unreachable (placement counts each server for its first reason, unreachable last).
        // A server without the PHP version asked for is the version's fault.
        let php = match &e {
            PlacementError::Unfit {
                reason: Unfit::NoPhp,
                ..
            } => true,
            PlacementError::NoneFits { rejected, .. } => rejected.only_php(),
            _ => false,
        };
        if php {
            return ErrorBody::new(ErrorCode::Invalid, e.to_string()).with_field("php_version");
        }
        let code = match e {
            PlacementError::Unfit {
                reason: Unfit::Unreachable,
                ..
            } => ErrorCode::AgentOffline,
            PlacementError::NoneFits { ref rejected, .. } if rejected.unreachable > 0 => {
                ErrorCode::AgentOffline
            }
            // A dns server is never pinned: one that cannot take the account is a lack of room.
            PlacementError::Unfit {
                role: Role::Dns, ..
            } => ErrorCode::NoServerAvailable,
            PlacementError::DnsPinned | PlacementError::Unfit { .. } => ErrorCode::Invalid,
            _ => ErrorCode::NoServerAvailable,
        };
        let body = ErrorBody::new(code, e.to_string());
        match e {
            PlacementError::Unfit { role, .. } if role != Role::Dns => {
                body.with_field(format!("servers.{role}"))
            }
            PlacementError::DnsPinned => body.with_field("servers.dns"),
            _ => body,
        }
    }
}

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ErrorBody::new(ErrorCode::NotFound, e.to_string()),
            StoreError::Duplicate { ref field, .. } => {
                let field = field.clone();
                ErrorBody::new(ErrorCode::Duplicate, e.to_string()).with_field(field)
            }
            StoreError::ServerHasAccounts { .. } => {
                ErrorBody::new(ErrorCode::ServerHasAccounts, e.to_string())
            }
            StoreError::RoleNotUsed { .. } => ErrorBody::new(ErrorCode::Invalid, e.to_string()),
            StoreError::RolesInUse { .. } => {
                ErrorBody::new(ErrorCode::RolesInUse, e.to_string()).with_field("roles")
            }
            StoreError::SameAgent { .. } => {
                ErrorBody::new(ErrorCode::Duplicate, e.to_string()).with_field("agent_url")
            }
            StoreError::Placement(p) => p.into(),
            StoreError::AddressNotFound { .. } => {
                ErrorBody::new(ErrorCode::NotFound, e.to_string())
            }
            StoreError::Invalid(v) => v.into(),
            StoreError::DomainInUse { .. } => {
                ErrorBody::new(ErrorCode::DomainInUse, e.to_string()).with_field("domains")
            }
            StoreError::JobRunning { .. } => ErrorBody::new(ErrorCode::JobRunning, e.to_string()),
            StoreError::Unavailable(_) => ErrorBody::new(
                ErrorCode::StoreUnavailable,
                "the store is unavailable: try again",
            ),
            // Never leak backend details (paths, internals) to a client; they are logged.
            StoreError::Backend(_)
            | StoreError::UnsupportedSchema { .. }
            | StoreError::WrongKey => ErrorBody::new(ErrorCode::Internal, "storage failure"),
        }
    }
}

/// A number as a JSON body gives it for an integer field: `180` and `180.0` are the same
/// integer (JSON Schema counts both as one); `180.5` is refused when the field is validated
/// (`422` naming it), not when the body is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Integer(Repr);

#[derive(Debug, Clone, Copy)]
enum Repr {
    Int(i128),
    Float(f64),
}

impl Integer {
    /// The whole number, or [`Rule::NotWhole`].
    pub fn whole(self) -> Result<i128, Rule> {
        match self.0 {
            Repr::Int(n) => Ok(n),
            // Beyond 2^100 nothing is a valid id or count: a range error, not a conversion.
            Repr::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e30 =>
            {
                #[allow(clippy::cast_possible_truncation)]
                Ok(f as i128)
            }
            Repr::Float(f) if f.is_finite() && f.fract() == 0.0 => Ok(i128::MAX),
            Repr::Float(_) => Err(Rule::NotWhole),
        }
    }
}

impl PartialEq for Integer {
    fn eq(&self, other: &Self) -> bool {
        match (self.0, other.0) {
            (Repr::Int(a), Repr::Int(b)) => a == b,
            (Repr::Float(a), Repr::Float(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

impl Eq for Integer {}

impl From<i64> for Integer {
    fn from(n: i64) -> Self {
        Self(Repr::Int(i128::from(n)))
    }
}

impl From<u64> for Integer {
    fn from(n: u64) -> Self {
        Self(Repr::Int(i128::from(n)))
    }
}

impl Serialize for Integer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Repr::Int(n) => s.serialize_i128(n),
            Repr::Float(f) => s.serialize_f64(f),
        }
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Integer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, n: i64) -> Result<Integer, E> {
                Ok(Integer(Repr::Int(i128::from(n))))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Integer, E> {
                Ok(Integer(Repr::Int(i128::from(n))))
            }
            fn visit_i128<E>(self, n: i128) -> Result<Integer, E> {
                Ok(Integer(Repr::Int(n)))
            }
            fn visit_u128<E>(self, n: u128) -> Result<Integer, E> {
                Ok(Integer(Repr::Int(i128::try_from(n).unwrap_or(i128::MAX))))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Integer, E> {
                Ok(Integer(Repr::Float(f)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An optional id in a body: a whole number naming a server that exists, or
/// [`Rule::UnknownServer`] at `field`.
fn server_ref(value: Option<Integer>, field: &str) -> Result<Option<ServerId>, ValidationError> {
    value
        .map(|n| {
            let n = n.whole().map_err(|r| r.at(field))?;
            u64::try_from(n)
                .map(ServerId)
                .map_err(|_| Rule::UnknownServer.at(field))
        })
        .transpose()
}

/// A required field: present, or `Rule::Required` at `field`.
fn required<T>(value: Option<T>, field: &str) -> Result<T, ValidationError> {
    value.ok_or_else(|| Rule::Required.at(field))
}

/// Parses an optional field with `parse`, naming `field` on error.
fn optional<T>(
    value: Option<&str>,
    field: &str,
    parse: impl FnOnce(&str) -> Result<T, Rule>,
) -> Result<Option<T>, ValidationError> {
    value.map(parse).transpose().map_err(|r| r.at(field))
}

/// `ServerInput` of the contract. Every field is optional on the wire so that a missing one is
/// answered with `422` naming it.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInput {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub mail_hostname: Option<String>,
    pub agent_url: Option<String>,
    pub agent_token: Option<String>,
    pub roles: Option<Vec<String>>,
    #[cfg_attr(feature = "controller", schema(value_type = Option<i64>))]
    pub max_accounts: Option<Integer>,
    pub panel_url: Option<String>,
    pub phpmyadmin_path: Option<String>,
    pub roundcube_path: Option<String>,
    pub active: Option<bool>,
    /// The address the server's A records point to; absent or null: the one its agent
    /// reports.
    #[cfg_attr(feature = "controller", schema(example = "192.0.2.10"))]
    #[serde(default)]
    pub ipv4: Option<String>,
    /// The address the server's AAAA records point to; absent or null: the one its agent
    /// reports.
    #[serde(default)]
    pub ipv6: Option<String>,
}

impl ServerInput {
    /// Validates a new server: every required field, the token included.
    pub fn validate(&self) -> Result<(ServerSpec, AgentToken), ValidationError> {
        let spec = self.validate_spec()?;
        let token = required(self.agent_token.as_deref(), "agent_token")?;
        let token = AgentToken::parse(token).map_err(|r| r.at("agent_token"))?;
        Ok((spec, token))
    }

    /// Validates every field but the token.
    fn validate_spec(&self) -> Result<ServerSpec, ValidationError> {
        let name = required(self.name.as_deref(), "name")?;
        let name = ServerName::parse(name).map_err(|r| r.at("name"))?;
        let hostname = required(self.hostname.as_deref(), "hostname")?;
        let hostname = DomainName::parse(hostname).map_err(|r| r.at("hostname"))?;
        let mail_hostname = optional(
            self.mail_hostname.as_deref(),
            "mail_hostname",
            DomainName::parse,
        )?;
        let agent_url = required(self.agent_url.as_deref(), "agent_url")?;
        let agent_url = AgentUrl::parse(agent_url).map_err(|r| r.at("agent_url"))?;
        let roles = required(self.roles.as_deref(), "roles")?;
        let roles = RoleSet::from_names(roles).map_err(|(i, rule)| match i {
            Some(i) => rule.at(format!("roles[{i}]")),
            None => rule.at("roles"),
        })?;
        let max_accounts = self
            .max_accounts
            .map(|n| {
                let n = n.whole().map_err(|r| r.at("max_accounts"))?;
                u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| Rule::NotPositive.at("max_accounts"))
            })
            .transpose()?;
        let panel_url = optional(self.panel_url.as_deref(), "panel_url", HttpUrl::parse)?;
        let phpmyadmin_path = optional(
            self.phpmyadmin_path.as_deref(),
            "phpmyadmin_path",
            UrlPath::parse,
        )?;
        let roundcube_path = optional(
            self.roundcube_path.as_deref(),
            "roundcube_path",
            UrlPath::parse,
        )?;
        let ipv4 = optional(self.ipv4.as_deref(), "ipv4", |s| {
            s.parse::<std::net::Ipv4Addr>()
                .map_err(|_| Rule::BadAddress)
        })?;
        let ipv6 = optional(self.ipv6.as_deref(), "ipv6", |s| {
            s.parse::<std::net::Ipv6Addr>()
                .map_err(|_| Rule::BadAddress)
        })?;
        Ok(ServerSpec {
            ipv4,
            ipv6,
            name,
            hostname,
            mail_hostname,
            agent_url,
            roles,
            max_accounts,
            panel_url,
            phpmyadmin_path,
            roundcube_path,
            active: self.active.unwrap_or(true),
        })
    }

    /// The input that describes `spec` (without a token).
    fn from_spec(spec: &ServerSpec) -> Self {
        Self {
            name: Some(spec.name.to_string()),
            hostname: Some(spec.hostname.to_string()),
            mail_hostname: spec.mail_hostname.as_ref().map(ToString::to_string),
            agent_url: Some(spec.agent_url.to_string()),
            agent_token: None,
            roles: Some(spec.roles.iter().map(|r| r.to_string()).collect()),
            max_accounts: spec.max_accounts.map(|n| Integer::from(i64::from(n.get()))),
            panel_url: spec.panel_url.as_ref().map(ToString::to_string),
            phpmyadmin_path: spec.phpmyadmin_path.as_ref().map(ToString::to_string),
            roundcube_path: spec.roundcube_path.as_ref().map(ToString::to_string),
            active: Some(spec.active),
            ipv4: spec.ipv4.map(|a| a.to_string()),
            ipv6: spec.ipv6.map(|a| a.to_string()),
        }
    }
}

/// Reads a field that may be absent (outer `None`: leave unchanged) or `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `PATCH /api/v1/servers/{id}`: some `ServerInput` fields. An absent field is left as it is;
/// `null` clears an optional field (and is refused for a required one). The token changes only
/// when one is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerPatch {
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub hostname: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub mail_hostname: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub agent_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub agent_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<Vec<String>>))]
    pub roles: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<i64>))]
    pub max_accounts: Option<Option<Integer>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub panel_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub phpmyadmin_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub roundcube_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<bool>))]
    pub active: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub ipv4: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub ipv6: Option<Option<String>>,
}

impl ServerPatch {
    /// The spec `current` becomes with this patch, and the new token if one is given.
    pub fn apply(
        &self,
        current: &ServerSpec,
    ) -> Result<(ServerSpec, Option<AgentToken>), ValidationError> {
        fn set<T: Clone>(field: &mut Option<T>, patch: &Option<Option<T>>) {
            if let Some(value) = patch {
                field.clone_from(value);
            }
        }
        let mut input = ServerInput::from_spec(current);
        set(&mut input.name, &self.name);
        set(&mut input.hostname, &self.hostname);
        set(&mut input.mail_hostname, &self.mail_hostname);
        set(&mut input.agent_url, &self.agent_url);
        set(&mut input.roles, &self.roles);
        set(&mut input.max_accounts, &self.max_accounts);
        set(&mut input.panel_url, &self.panel_url);
        set(&mut input.phpmyadmin_path, &self.phpmyadmin_path);
        set(&mut input.roundcube_path, &self.roundcube_path);
        set(&mut input.ipv4, &self.ipv4);
        set(&mut input.ipv6, &self.ipv6);
        if let Some(active) = self.active {
            input.active = Some(active.ok_or_else(|| Rule::Required.at("active"))?);
        }
        let spec = input.validate_spec()?;
        let token = match &self.agent_token {
            None => None,
            Some(None) => return Err(Rule::Required.at("agent_token")),
            Some(Some(t)) => Some(AgentToken::parse(t).map_err(|r| r.at("agent_token"))?),
        };
        Ok((spec, token))
    }
}

/// `Server` of the contract: what the API shows of a server. It has no token field, so no
/// endpoint can return one.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    #[cfg_attr(feature = "controller", schema(value_type = u64))]
    pub id: ServerId,
    pub name: String,
    pub hostname: String,
    pub mail_hostname: Option<String>,
    pub agent_url: String,
    #[cfg_attr(feature = "controller", schema(value_type = Vec<String>, example = json!(["web", "db"])))]
    pub roles: RoleSet,
    pub max_accounts: Option<u32>,
    pub panel_url: Option<String>,
    pub phpmyadmin_path: Option<String>,
    pub roundcube_path: Option<String>,
    pub active: bool,
    pub agent_version: Option<String>,
    pub reachable: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>, format = DateTime))]
    pub last_seen: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub update_available: bool,
    pub accounts: u32,
    /// The address A records point to: the administrator's, or the one the agent reports.
    pub ipv4: Option<String>,
    /// The address AAAA records point to: the administrator's, or the one the agent reports.
    pub ipv6: Option<String>,
    /// What the administrator should know about how the agent is reached (a plain-HTTP agent
    /// across the network), or null.
    pub warning: Option<String>,
}

impl ServerView {
    /// The view of `server`, flagging an update when its agent is older than `newest_agent`.
    pub fn new(server: &Server, newest_agent: &semver::Version) -> Self {
        let spec = &server.spec;
        Self {
            id: server.id,
            name: spec.name.to_string(),
            hostname: spec.hostname.to_string(),
            mail_hostname: spec.mail_hostname.as_ref().map(ToString::to_string),
            agent_url: spec.agent_url.to_string(),
            roles: spec.roles,
            max_accounts: spec.max_accounts.map(NonZeroU32::get),
            panel_url: spec.panel_url.as_ref().map(ToString::to_string),
            phpmyadmin_path: spec.phpmyadmin_path.as_ref().map(ToString::to_string),
            roundcube_path: spec.roundcube_path.as_ref().map(ToString::to_string),
            active: spec.active,
            agent_version: server
                .health
                .agent_version
                .as_ref()
                .map(ToString::to_string),
            reachable: server.health.reachable,
            last_seen: server.health.last_seen,
            last_error: server.health.last_error.clone(),
            update_available: server.update_available(newest_agent),
            accounts: server.accounts,
            ipv4: server.ipv4().map(|a| a.to_string()),
            ipv6: server.ipv6().map(|a| a.to_string()),
            warning: spec.agent_url.is_plain_over_network().then(|| {
                "the agent is reached over plain HTTP: its secret crosses the network in clear \
                 (use an https agent URL)"
                    .to_owned()
            }),
        }
    }
}

/// `AccountInput` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub username: Option<String>,
    pub domains: Option<Vec<String>>,
    pub php_version: Option<String>,
    /// Pins the web role to a server (the same as `servers.web`).
    #[cfg_attr(feature = "controller", schema(value_type = Option<u64>))]
    pub server_id: Option<Integer>,
    /// The roles the account uses (default `["web"]`).
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Pins roles to servers by hand: `{"mail": 3}` (not `dns`: every dns server serves it).
    #[serde(default)]
    #[cfg_attr(feature = "controller", schema(value_type = Option<std::collections::BTreeMap<String, u64>>))]
    pub servers: Option<std::collections::BTreeMap<String, Integer>>,
    /// PHP limits (absent fields take the defaults).
    #[serde(default)]
    pub php: Option<PhpInput>,
}

impl AccountInput {
    pub fn validate(&self) -> Result<NewAccount, ValidationError> {
        let username = required(self.username.as_deref(), "username")?;
        let username = UserName::parse(username).map_err(|r| r.at("username"))?;
        let domains = required(self.domains.as_deref(), "domains")?;
        let domains = Domains::parse("domains", domains)?;
        let php_version = optional(
            self.php_version.as_deref(),
            "php_version",
            PhpVersion::parse,
        )?;
        let roles = match &self.roles {
            None => AccountSpec::web_only(),
            Some(names) => RoleSet::from_names(names).map_err(|(i, rule)| match i {
                Some(i) => rule.at(format!("roles[{i}]")),
                None => rule.at("roles"),
            })?,
        };
        let mut pins = std::collections::BTreeMap::new();
        for (name, id) in self.servers.iter().flatten() {
            let field = format!("servers.{name}");
            let role: Role = name.parse().map_err(|r: Rule| r.at(&field))?;
            if !roles.contains(role) {
                return Err(Rule::RoleNotUsed.at(field));
            }
            if role == Role::Dns {
                return Err(Rule::DnsNotPinned.at(field));
            }
            if let Some(id) = server_ref(Some(*id), &field)? {
                pins.insert(role, id);
            }
        }
        if let Some(web) = server_ref(self.server_id, "server_id")? {
            if !roles.contains(Role::Web) {
                return Err(Rule::RoleNotUsed.at("server_id"));
            }
            if pins.get(&Role::Web).is_some_and(|pinned| *pinned != web) {
                return Err(
                    Rule::DuplicateOf("servers.web, with another server".into()).at("server_id")
                );
            }
            pins.insert(Role::Web, web);
        }
        let php = match &self.php {
            None => PhpSettings::default(),
            Some(php) => php.apply(PhpSettings::default())?,
        };
        Ok(NewAccount {
            spec: AccountSpec {
                username,
                domains,
                php_version,
                php,
                roles,
                zones: Vec::new(),
                db: Default::default(),
                backup: None,
            },
            pins,
        })
    }

    /// The input field that pins `role` (`server_id` for web when it was given that way).
    pub fn pin_field(&self, role: Role) -> String {
        match (role, &self.server_id) {
            (Role::Web, Some(_)) => "server_id".to_owned(),
            _ => format!("servers.{role}"),
        }
    }
}

/// An account's PHP limits at the Management API; an absent field takes the default (on
/// create) or keeps its value (on change).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhpInput {
    /// `memory_limit` in MiB, 16 to 16,384 (default 128).
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub memory_limit_mb: Option<Integer>,
    /// `upload_max_filesize` and `post_max_size` in MiB, 1 to 10,240 (default 64).
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub upload_max_mb: Option<Integer>,
    /// `max_execution_time` in seconds, 1 to 3,600 (default 30).
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub max_execution_time_s: Option<Integer>,
    /// `pm.max_children`, 1 to 200 (default 5).
    #[cfg_attr(feature = "controller", schema(value_type = Option<u32>))]
    pub max_children: Option<Integer>,
}

impl PhpInput {
    /// `base` with the given fields changed, each checked against its bounds (`php.<name>`).
    pub fn apply(&self, base: PhpSettings) -> Result<PhpSettings, ValidationError> {
        let field =
            |v: Option<Integer>, current: u32, name: &str| -> Result<u32, ValidationError> {
                let Some(v) = v else {
                    return Ok(current);
                };
                let n = v.whole().map_err(|r| r.at(format!("php.{name}")))?;
                // Out of u32: out of every range; from_raw names the bounds.
                Ok(u32::try_from(n).unwrap_or(if n < 0 { 0 } else { u32::MAX }))
            };
        let raw = PhpSettingsRaw {
            memory_limit_mb: Some(field(
                self.memory_limit_mb,
                base.memory_limit_mb(),
                "memory_limit_mb",
            )?),
            upload_max_mb: Some(field(
                self.upload_max_mb,
                base.upload_max_mb(),
                "upload_max_mb",
            )?),
            max_execution_time_s: Some(field(
                self.max_execution_time_s,
                base.max_execution_time_s(),
                "max_execution_time_s",
            )?),
            max_children: Some(field(
                self.max_children,
                base.max_children(),
                "max_children",
            )?),
        };
        PhpSettings::from_raw(raw, "php.")
    }
}

/// `PATCH /api/v1/accounts/{id}`: an absent field is left as it is. `domains` replaces the
/// list (add or remove names; each new one must be free), `php_version` (`null`: the server's
/// default), `php` changes the limits it names.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    /// `null` is refused: an account always has domains.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Vec<String>, required = false))]
    pub domains: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub php_version: Option<Option<String>>,
    /// `null` is refused: leave it out to keep the limits.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = PhpInput, required = false))]
    pub php: Option<Option<PhpInput>>,
}

impl AccountPatch {
    /// The spec `current` becomes with this patch.
    pub fn apply(&self, current: &AccountSpec) -> Result<AccountSpec, ValidationError> {
        let mut spec = current.clone();
        match &self.domains {
            None => {}
            Some(None) => return Err(Rule::Required.at("domains")),
            Some(Some(domains)) => spec.domains = Domains::parse("domains", domains)?,
        }
        if let Some(version) = &self.php_version {
            spec.php_version = optional(version.as_deref(), "php_version", PhpVersion::parse)?;
        }
        match &self.php {
            None => {}
            Some(None) => return Err(Rule::Required.at("php")),
            Some(Some(php)) => spec.php = php.apply(spec.php)?,
        }
        Ok(spec)
    }
}

/// `Account` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub id: u64,
    pub username: String,
    pub domains: Vec<String>,
    pub php_version: Option<String>,
    /// The web role's server (`null` when the account has no web role).
    #[cfg_attr(feature = "controller", schema(value_type = Option<u64>))]
    pub server_id: Option<ServerId>,
    #[cfg_attr(feature = "controller", schema(value_type = Vec<String>, example = json!(["web", "mail", "dns"])))]
    pub roles: RoleSet,
    /// Where each role is served: one server id per role, a list for `dns`.
    #[cfg_attr(feature = "controller", schema(value_type = Object, example = json!({"web": 1, "mail": 2, "dns": [2, 5]})))]
    pub servers: RoleServers,
    /// The PHP limits of the account's pool.
    #[cfg_attr(feature = "controller", schema(value_type = PhpInput))]
    pub php: PhpSettings,
    pub status: AccountStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "controller", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.0,
            username: a.spec.username.to_string(),
            domains: a.spec.domains.iter().map(ToString::to_string).collect(),
            php_version: a.spec.php_version.map(|v| v.to_string()),
            server_id: a.web_server(),
            roles: a.spec.roles,
            servers: a.servers.clone(),
            php: a.spec.php,
            status: a.status,
            created_at: a.created_at,
        }
    }
}

/// `POST /api/v1/accounts/{id}/migrate`: `target_server_id` moves the web role;
/// `targets` moves any of the web, mail and db roles, each to its own server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateInput {
    #[cfg_attr(feature = "controller", schema(value_type = Option<u64>))]
    #[serde(default)]
    pub target_server_id: Option<Integer>,
    /// Role name (`web`, `mail`, `db`) to the server it moves to.
    #[cfg_attr(feature = "controller", schema(value_type = Option<BTreeMap<String, u64>>))]
    #[serde(default)]
    pub targets: Option<BTreeMap<String, Integer>>,
}

impl MigrateInput {
    /// The server each moving role goes to (at least one).
    pub fn validate(&self) -> Result<BTreeMap<Role, ServerId>, ValidationError> {
        let Some(targets) = &self.targets else {
            let id = required(self.target_server_id, "target_server_id")?;
            let id = required(
                server_ref(Some(id), "target_server_id")?,
                "target_server_id",
            )?;
            return Ok(BTreeMap::from([(Role::Web, id)]));
        };
        if self.target_server_id.is_some() {
            return Err(Rule::EitherTarget.at("targets"));
        }
        if targets.is_empty() {
            return Err(Rule::Empty.at("targets"));
        }
        let mut out = BTreeMap::new();
        for (name, id) in targets {
            let field = format!("targets.{name}");
            let role: Role = name.parse().map_err(|_| Rule::UnknownRole.at(&field))?;
            if !matches!(role, Role::Web | Role::Mail | Role::Db) {
                return Err(Rule::NotMovable.at(field));
            }
            out.insert(role, required(server_ref(Some(*id), &field)?, &field)?);
        }
        Ok(out)
    }
}

/// `POST /api/v1/servers/{id}/reconcile`: how the accounts an agent reports compare with what
/// the controller recorded for its server (user names, sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
pub struct Reconciliation {
    /// Recorded and on the agent as recorded (now `active`).
    pub in_sync: Vec<String>,
    /// Recorded, but the agent does not have them (now `failed`).
    pub missing_on_agent: Vec<String>,
    /// Recorded, but the agent has them with other domains or PHP settings, or (on their mail
    /// server) other mailboxes, quotas or aliases, or (on their db server) other databases,
    /// users, grants or passwords (now `failed`; `resend_mail` repairs mail).
    pub differing: Vec<String>,
    /// On the agent, but not recorded for this server. Left in place: never deleted by a
    /// reconciliation.
    pub unknown_to_controller: Vec<String>,
    /// Accounts whose zones this dns server did not serve as recorded: sent to it again, and
    /// now in sync (also listed in `in_sync`).
    #[serde(default)]
    pub repaired: Vec<String>,
}

/// How a server's certificate is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SslMode {
    /// Issued by an ACME CA (Let's Encrypt), renewed before expiry.
    Letsencrypt,
    /// Uploaded by the administrator.
    Custom,
    /// Made by the controller; no client trusts it: for testing only.
    Selfsigned,
}

/// Where a certificate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SslStatus {
    /// Installed and in use.
    Active,
    /// Being issued or installed.
    Pending,
    /// Never set up: no mode chosen yet.
    NotConfigured,
    /// The last attempt failed and no valid certificate is installed.
    Failed,
}

/// `PUT /api/v1/servers/{id}/ssl/{panel|mail}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SslInput {
    /// `letsencrypt`, `custom` or `selfsigned`.
    pub mode: Option<String>,
    /// With `custom`: the leaf certificate first, then its chain.
    pub certificate_pem: Option<String>,
    /// With `custom`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: Option<String>,
}

/// What an [`SslInput`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslRequest {
    Letsencrypt,
    Custom { chain_pem: String, key_pem: String },
    Selfsigned,
}

impl SslInput {
    pub fn validate(&self) -> Result<SslRequest, ValidationError> {
        let mode = required(self.mode.as_deref(), "mode")?;
        let request = match mode {
            "letsencrypt" => SslRequest::Letsencrypt,
            "selfsigned" => SslRequest::Selfsigned,
            "custom" => {
                let chain = required(self.certificate_pem.as_deref(), "certificate_pem")?;
                let key = required(self.private_key_pem.as_deref(), "private_key_pem")?;
                return Ok(SslRequest::Custom {
                    chain_pem: chain.to_owned(),
                    key_pem: key.to_owned(),
                });
            }
            _ => return Err(Rule::UnknownMode.at("mode")),
        };
        if self.certificate_pem.is_some() {
            return Err(Rule::OnlyWithCustom.at("certificate_pem"));
        }
        if self.private_key_pem.is_some() {
            return Err(Rule::OnlyWithCustom.at("private_key_pem"));
        }
        Ok(request)
    }
}

/// `SslState` of the contract: a server's panel or mail certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
pub struct SslState {
    /// `null` until a mode is chosen.
    pub mode: Option<SslMode>,
    pub subject_names: Vec<String>,
    pub issuer: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>, format = DateTime))]
    pub not_before: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>, format = DateTime))]
    pub not_after: Option<OffsetDateTime>,
    pub status: SslStatus,
    pub last_error: Option<String>,
    /// True for a self-signed certificate: browsers warn, mail clients refuse.
    pub testing_only: bool,
}

impl SslState {
    /// The state of a certificate never set up.
    pub fn unset() -> Self {
        Self {
            mode: None,
            subject_names: Vec::new(),
            issuer: None,
            not_before: None,
            not_after: None,
            status: SslStatus::NotConfigured,
            last_error: None,
            testing_only: false,
        }
    }
}

/// Agent API: `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub version: String,
    pub hostname: String,
    pub uptime_s: u64,
    /// The agent's identity: 32 hex digits made at its first start and kept in its state
    /// directory, so that one agent is one server however its URL is spelled. Agents before
    /// 0.2 do not send it.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The roles the agent serves (`AGENT_ROLES`) and whether each one's services run.
    /// Agents before roles do not send it.
    #[serde(default)]
    pub roles: Option<std::collections::BTreeMap<Role, RoleHealth>>,
    /// The PHP versions the server offers (its default first among equals), when it serves
    /// the web role.
    #[serde(default)]
    pub php_versions: Option<Vec<String>>,
    /// The addresses the server is reached at, as the agent sees them (the source address of
    /// its outgoing IPv4 and IPv6 routes). Agents before the dns role do not send it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// When the certificate the agent serves HTTPS with expires (RFC 3339), when it serves
    /// HTTPS; the controller renews it through `PUT /v1/tls` before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_not_after: Option<String>,
}

/// Whether a role's services run on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleHealth {
    /// Every service of the role runs.
    pub ok: bool,
    pub services: Vec<ServiceStatus>,
}

/// One service of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub running: bool,
}

impl AgentHealth {
    /// Whether `id` has the form of an agent identity (what is not is ignored).
    pub fn valid_agent_id(id: &str) -> bool {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_server() -> ServerInput {
        ServerInput {
            name: Some("Web 1".into()),
            hostname: Some("web1.example.com".into()),
            mail_hostname: Some("mail.example.com".into()),
            agent_url: Some("https://web1.example.com:50000".into()),
            agent_token: Some("0123456789abcdef0123".into()),
            roles: Some(vec!["web".into(), "db".into()]),
            max_accounts: Some(500_i64.into()),
            panel_url: Some("https://panel.example.com".into()),
            phpmyadmin_path: Some("/phpmyadmin".into()),
            roundcube_path: Some("/webmail".into()),
            active: None,
            ipv4: Some("192.0.2.10".into()),
            ipv6: None,
        }
    }

    fn field_of(input: ServerInput) -> (String, Rule) {
        let e = input.validate().unwrap_err();
        (e.field, e.rule)
    }

    #[test]
    fn a_valid_server_input() {
        let (spec, token) = valid_server().validate().unwrap();
        assert!(spec.active, "active defaults to true");
        assert_eq!(spec.roles.to_string(), "web,db");
        assert_eq!(token.expose_secret(), "0123456789abcdef0123");
    }

    #[test]
    fn every_server_field_is_named_on_error() {
        type Case = (fn(&mut ServerInput), &'static str, Rule);
        let cases: Vec<Case> = vec![
            (|i| i.name = None, "name", Rule::Required),
            (|i| i.name = Some(String::new()), "name", Rule::Empty),
            (|i| i.name = Some("a\nb".into()), "name", Rule::ControlChar),
            (
                |i| i.name = Some(" a".into()),
                "name",
                Rule::SurroundingSpace,
            ),
            (
                |i| i.name = Some("web1 \u{202E}lmth.exe".into()),
                "name",
                Rule::InvisibleChar(0x202E),
            ),
            (
                |i| i.name = Some("web\u{200B}1".into()),
                "name",
                Rule::InvisibleChar(0x200B),
            ),
            (
                |i| i.name = Some("\u{2066}web1\u{2069}".into()),
                "name",
                Rule::InvisibleChar(0x2066),
            ),
            (
                |i| i.name = Some("web\u{FEFF}1".into()),
                "name",
                Rule::InvisibleChar(0xFEFF),
            ),
            (
                |i| i.name = Some("x".repeat(201)),
                "name",
                Rule::TooLong { max: 200 },
            ),
            (|i| i.hostname = None, "hostname", Rule::Required),
            (
                |i| i.hostname = Some("a;b.com".into()),
                "hostname",
                Rule::ForbiddenChar(';'),
            ),
            (
                |i| i.mail_hostname = Some("mail".into()),
                "mail_hostname",
                Rule::NotFullyQualified,
            ),
            (|i| i.agent_url = None, "agent_url", Rule::Required),
            (
                |i| i.agent_url = Some("http://h".into()),
                "agent_url",
                Rule::MissingPort,
            ),
            (|i| i.agent_token = None, "agent_token", Rule::Required),
            (
                |i| i.agent_token = Some("x".into()),
                "agent_token",
                Rule::TooShort { min: 16 },
            ),
            (|i| i.roles = None, "roles", Rule::Required),
            (|i| i.roles = Some(vec![]), "roles", Rule::Empty),
            (
                |i| i.roles = Some(vec!["web".into(), "ftp".into()]),
                "roles[1]",
                Rule::UnknownRole,
            ),
            (
                |i| i.roles = Some(vec!["web".into(), "web".into()]),
                "roles[1]",
                Rule::DuplicateRole,
            ),
            (
                |i| i.max_accounts = Some(0_i64.into()),
                "max_accounts",
                Rule::NotPositive,
            ),
            (
                |i| i.max_accounts = Some((-3_i64).into()),
                "max_accounts",
                Rule::NotPositive,
            ),
            (
                |i| i.max_accounts = Some((1_i64 << 40).into()),
                "max_accounts",
                Rule::NotPositive,
            ),
            (
                |i| i.panel_url = Some("panel".into()),
                "panel_url",
                Rule::Scheme,
            ),
            (
                |i| i.phpmyadmin_path = Some("/a/../b".into()),
                "phpmyadmin_path",
                Rule::DotSegment,
            ),
            (
                |i| i.roundcube_path = Some("webmail".into()),
                "roundcube_path",
                Rule::NotAbsolute,
            ),
        ];
        for (change, field, rule) in cases {
            let mut input = valid_server();
            change(&mut input);
            assert_eq!(field_of(input), (field.to_owned(), rule), "{field}");
        }
    }

    #[test]
    fn validation_errors_become_api_errors() {
        let mut input = valid_server();
        input.hostname = Some("bad host.com".into());
        let body = ErrorBody::from(input.validate().unwrap_err());
        assert_eq!(body.status(), 422);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "code": "invalid",
                "message": "hostname must not contain the character ' '",
                "field": "hostname"
            }})
        );
    }

    #[test]
    fn unknown_fields_are_a_bad_request() {
        assert!(serde_json::from_str::<ServerInput>(r#"{"nmae": "x"}"#).is_err());
        assert!(serde_json::from_str::<AccountInput>(r#"{"user": "x"}"#).is_err());
    }

    #[test]
    fn account_input() {
        let input = AccountInput {
            username: Some("shop".into()),
            domains: Some(vec!["Shop.Example".into(), "bücher.example".into()]),
            php_version: Some("8.2".into()),
            ..AccountInput::default()
        };
        let new = input.validate().unwrap();
        assert_eq!(
            new.spec.domains.as_slice()[1].as_str(),
            "xn--bcher-kva.example"
        );
        let err = |f: fn(&mut AccountInput)| {
            let mut i = input.clone();
            f(&mut i);
            let e = i.validate().unwrap_err();
            (e.field, e.rule)
        };
        assert_eq!(
            err(|i| i.username = Some("root".into())),
            ("username".into(), Rule::Reserved)
        );
        assert_eq!(
            err(|i| i.username = None),
            ("username".into(), Rule::Required)
        );
        assert_eq!(
            err(|i| i.domains = Some(vec![])),
            ("domains".into(), Rule::Empty)
        );
        assert_eq!(
            err(|i| i.domains = Some(vec!["a.example".into(), "a.exam\nple".into()])),
            ("domains[1]".into(), Rule::ForbiddenChar('\n'))
        );
        assert_eq!(
            err(|i| i.php_version = Some("8".into())),
            ("php_version".into(), Rule::PhpVersionFormat)
        );
    }

    #[test]
    fn account_roles_and_pins() {
        let input = |json: serde_json::Value| serde_json::from_value::<AccountInput>(json).unwrap();
        let base = serde_json::json!({"username": "shop", "domains": ["shop.example"]});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            input(v).validate()
        };
        let plain = with(serde_json::json!({})).unwrap();
        assert_eq!(plain.spec.roles.to_string(), "web");
        assert!(plain.pins.is_empty());
        let full = with(serde_json::json!({"roles": ["web", "mail", "dns"], "servers": {"mail": 3}, "server_id": 1}))
            .unwrap();
        assert_eq!(full.spec.roles.to_string(), "web,mail,dns");
        assert_eq!(
            full.pins,
            std::collections::BTreeMap::from([(Role::Web, ServerId(1)), (Role::Mail, ServerId(3))])
        );
        let err = |extra: serde_json::Value| {
            let e = with(extra).unwrap_err();
            (e.field, e.rule)
        };
        assert_eq!(
            err(serde_json::json!({"roles": ["web"], "servers": {"mail": 3}})),
            ("servers.mail".into(), Rule::RoleNotUsed)
        );
        assert_eq!(
            err(serde_json::json!({"roles": ["dns"], "servers": {"dns": 3}})),
            ("servers.dns".into(), Rule::DnsNotPinned)
        );
        assert_eq!(
            err(serde_json::json!({"servers": {"ftp": 3}})),
            ("servers.ftp".into(), Rule::UnknownRole)
        );
        assert_eq!(
            err(serde_json::json!({"roles": ["mail"], "server_id": 3})),
            ("server_id".into(), Rule::RoleNotUsed)
        );
        assert_eq!(
            err(serde_json::json!({"server_id": 1, "servers": {"web": 2}})).0,
            "server_id"
        );
        assert_eq!(
            err(serde_json::json!({"roles": []})),
            ("roles".into(), Rule::Empty)
        );
        assert_eq!(
            err(serde_json::json!({"roles": ["web", "web"]})),
            ("roles[1]".into(), Rule::DuplicateRole)
        );
    }

    #[test]
    fn a_migration_names_one_target_or_one_per_movable_role() {
        let parse = |v: serde_json::Value| {
            serde_json::from_value::<MigrateInput>(v)
                .unwrap()
                .validate()
                .map_err(|e| (e.field, e.rule))
        };
        assert_eq!(
            parse(serde_json::json!({"target_server_id": 3})),
            Ok(BTreeMap::from([(Role::Web, ServerId(3))]))
        );
        assert_eq!(
            parse(serde_json::json!({"targets": {"web": 3, "mail": 4, "db": 5}})),
            Ok(BTreeMap::from([
                (Role::Web, ServerId(3)),
                (Role::Mail, ServerId(4)),
                (Role::Db, ServerId(5)),
            ]))
        );
        for (input, field, rule) in [
            (serde_json::json!({}), "target_server_id", Rule::Required),
            (
                serde_json::json!({"target_server_id": 3, "targets": {"web": 3}}),
                "targets",
                Rule::EitherTarget,
            ),
            (serde_json::json!({"targets": {}}), "targets", Rule::Empty),
            (
                serde_json::json!({"targets": {"dns": 3}}),
                "targets.dns",
                Rule::NotMovable,
            ),
            (
                serde_json::json!({"targets": {"backup": 3}}),
                "targets.backup",
                Rule::NotMovable,
            ),
            (
                serde_json::json!({"targets": {"web;x": 3}}),
                "targets.web;x",
                Rule::UnknownRole,
            ),
            (
                serde_json::json!({"targets": {"db": -1}}),
                "targets.db",
                Rule::UnknownServer,
            ),
            (
                serde_json::json!({"targets": {"db": 1.5}}),
                "targets.db",
                Rule::NotWhole,
            ),
        ] {
            assert_eq!(parse(input), Err((field.to_owned(), rule)));
        }
    }
}
