//! SSL certificates for a server's own names: the panel (its hostname) and mail (its mail
//! hostname).
//!
//! - [`cert`] (feature `certs`): checking an uploaded chain and key, reading a certificate,
//!   making a self-signed one. The agent uses it too, to check what it is asked to install.
//! - [`ca`] (feature `controller`): the controller's private authority for its agents' HTTPS.
//! - [`issue`] (feature `controller`): the [`Issuer`](issue::Issuer) trait and its three
//!   implementations — self-signed, custom upload, and ACME (Let's Encrypt) with HTTP-01
//!   challenges answered by the server's agent.

#[cfg(feature = "controller")]
pub mod ca;
pub mod cert;
#[cfg(feature = "controller")]
pub mod issue;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which of a server's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// The server's hostname: the panel and the agent's own HTTPS.
    Panel,
    /// The server's mail hostname: SMTP, IMAP and POP3.
    Mail,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Panel => "panel",
            CertKind::Mail => "mail",
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "panel" => Ok(CertKind::Panel),
            "mail" => Ok(CertKind::Mail),
            _ => Err(()),
        }
    }
}
