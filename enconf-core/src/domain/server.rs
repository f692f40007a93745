//! Servers: what an administrator enters, and what the controller observes.

use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::rule::{Rule, check_display_name, text_type};
use super::{AgentToken, AgentUrl, DomainName, HttpUrl, RoleSet, UrlPath};

/// A server's id, given by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerId(pub u64);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A server's display name: 1 to 200 characters, no control characters, no surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerName(String);

impl ServerName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(input: &str) -> Result<Self, Rule> {
        check_display_name(input, Self::MAX_CHARS)?;
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is checked on: names differing only in case are the same server.
    pub fn unique_key(&self) -> String {
        self.0.to_lowercase()
    }
}

text_type!(ServerName);

/// What an administrator sets on a server (everything of the API's `ServerInput` but the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: ServerName,
    pub hostname: DomainName,
    pub mail_hostname: Option<DomainName>,
    pub agent_url: AgentUrl,
    pub roles: RoleSet,
    /// Upper limit of accounts; `None` is no limit.
    pub max_accounts: Option<NonZeroU32>,
    pub panel_url: Option<HttpUrl>,
    pub phpmyadmin_path: Option<UrlPath>,
    pub roundcube_path: Option<UrlPath>,
    /// Whether the server takes new accounts.
    pub active: bool,
    /// The addresses its A and AAAA records point to (`None`: the ones its agent reports).
    #[serde(default)]
    pub ipv4: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<std::net::Ipv6Addr>,
}

/// What the health monitor last saw of a server's agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Health {
    pub agent_version: Option<semver::Version>,
    pub reachable: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// The identity the agent reports (made at its first start, kept in its state): the same
    /// agent under two spellings of its URL is one agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The roles the agent says it serves (`None`: an agent before roles, or never seen).
    #[serde(default)]
    pub agent_roles: Option<RoleSet>,
    /// The PHP versions the agent says the server offers (`None`: not known).
    #[serde(default)]
    pub php_versions: Option<Vec<super::PhpVersion>>,
    /// The public addresses the agent says the server has.
    #[serde(default)]
    pub addresses: Vec<std::net::IpAddr>,
    /// Health checks in a row that got no answer (0 after one that did). The monitor marks a
    /// server offline only after [`OFFLINE_AFTER`] of them.
    #[serde(default)]
    pub failures: u32,
    /// When the certificate the agent serves HTTPS with expires, as it reports.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub tls_not_after: Option<OffsetDateTime>,
}

/// How many health rounds in a row an agent must miss before the monitor marks its server
/// offline: one lost packet or one slow answer (a reload, a busy disk) does not block the
/// server's operations, while an agent that is really gone is offline within three
/// intervals. A call that finds the agent unreachable marks it offline at once.
pub const OFFLINE_AFTER: u32 = 3;

impl Health {
    /// Whether the server offers PHP `version`, as far as is known (an agent that never said
    /// is given the benefit of the doubt: it refuses by itself).
    pub fn offers_php(&self, version: super::PhpVersion) -> bool {
        self.php_versions
            .as_ref()
            .is_none_or(|versions| versions.contains(&version))
    }
}

/// A server as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: ServerId,
    pub spec: ServerSpec,
    /// The agent's shared secret (its `Debug` is redacted).
    pub token: AgentToken,
    pub health: Health,
    /// Accounts on this server, counted by the store when it reads the server.
    pub accounts: u32,
}

impl Server {
    /// The address A records point to: the administrator's, or the first the agent reports.
    pub fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.spec.ipv4.or_else(|| {
            self.health.addresses.iter().find_map(|a| match a {
                std::net::IpAddr::V4(v4) => Some(*v4),
                std::net::IpAddr::V6(_) => None,
            })
        })
    }

    /// The address AAAA records point to: the administrator's, or the first the agent reports.
    pub fn ipv6(&self) -> Option<std::net::Ipv6Addr> {
        self.spec.ipv6.or_else(|| {
            self.health.addresses.iter().find_map(|a| match a {
                std::net::IpAddr::V6(v6) => Some(*v6),
                std::net::IpAddr::V4(_) => None,
            })
        })
    }

    /// Whether the agent runs an older release than `newest`; `false` while its version is
    /// unknown.
    pub fn update_available(&self, newest: &semver::Version) -> bool {
        crate::version::update_available(self.health.agent_version.as_ref(), newest)
    }
}
