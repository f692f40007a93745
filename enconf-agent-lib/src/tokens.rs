//! The tokens the agent accepts, and their rotation without a moment in which the controller
//! cannot reach it.
//!
//! The controller rotates a token in three steps: `PUT /v1/token` (with the old token) makes
//! the agent accept a new one beside it; the controller then records and uses the new one; and
//! `POST /v1/token/commit` (with the new token) makes it the only one. Health checks in flight
//! use one of the two accepted tokens at every moment.
//!
//! Only SHA-256 digests are kept, in `AGENT_STATE_DIR/tokens` (mode 0600), with the digest of
//! the `config.env` token they replaced: when the administrator writes another token into
//! `config.env` (an installation script run again), that one counts and the file is dropped.
//! Presented tokens are compared with every accepted digest in constant time.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use enconf_core::domain::AgentToken;
use enconf_core::http::BearerSecret;
use subtle::ConstantTimeEq;

use crate::system::{System, SystemError};

type Digest = [u8; 32];

fn digest(bytes: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn unhex(s: &str) -> Option<Digest> {
    enconf_core::secret::unhex(s)?.try_into().ok()
}

/// The accepted tokens (their digests).
#[derive(Debug)]
pub struct Tokens {
    file: PathBuf,
    /// The digest of `config.env`'s token.
    configured: Digest,
    accepted: RwLock<Vec<Digest>>,
}

/// `configured <hex>` then `accept <hex>` lines; `None` when it is not such a file.
fn parse(text: &str) -> Option<(Digest, Vec<Digest>)> {
    let mut lines = text.lines();
    let configured = unhex(lines.next()?.strip_prefix("configured ")?)?;
    let accepted = lines
        .map(|l| l.strip_prefix("accept ").and_then(unhex))
        .collect::<Option<Vec<_>>>()?;
    (!accepted.is_empty()).then_some((configured, accepted))
}

impl Tokens {
    /// The tokens of the state directory, or `configured` alone when the file is missing,
    /// unreadable, or from before `config.env`'s token changed.
    pub fn load<S: System>(system: &S, state_dir: &Path, configured: &AgentToken) -> Self {
        let file = state_dir.join("tokens");
        let configured = digest(configured.expose_secret().as_bytes());
        let kept = match system.read(&file) {
            Ok(Some(bytes)) => parse(&String::from_utf8_lossy(&bytes))
                .filter(|(c, _)| *c == configured)
                .map(|(_, accepted)| accepted),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the rotated tokens cannot be read: config.env's token counts");
                None
            }
        };
        Self {
            file,
            configured,
            accepted: RwLock::new(kept.unwrap_or_else(|| vec![configured])),
        }
    }

    fn current(&self) -> Vec<Digest> {
        match self.accepted.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store<S: System>(&self, system: &S, accepted: Vec<Digest>) -> Result<(), SystemError> {
        let mut text = format!(
            "configured {}\n",
            enconf_core::secret::hex(&self.configured)
        );
        for d in &accepted {
            text.push_str(&format!("accept {}\n", enconf_core::secret::hex(d)));
        }
        system.write_atomic(&self.file, text.as_bytes(), 0o600)?;
        match self.accepted.write() {
            Ok(mut a) => *a = accepted,
            Err(poisoned) => *poisoned.into_inner() = accepted,
        }
        Ok(())
    }

    /// Accepts `new` too (at most the presented one and the new one stay: a rotation that was
    /// never committed does not leave its token behind).
    pub fn add<S: System>(
        &self,
        system: &S,
        presented: &[u8],
        new: &AgentToken,
    ) -> Result<bool, SystemError> {
        let new = digest(new.expose_secret().as_bytes());
        let presented = digest(presented);
        let current = self.current();
        if current == [presented, new] || current == [presented] && presented == new {
            return Ok(false);
        }
        let accepted = if presented == new {
            vec![new]
        } else {
            vec![presented, new]
        };
        self.store(system, accepted)?;
        Ok(true)
    }

    /// Accepts only `presented` from now on.
    pub fn keep_only<S: System>(&self, system: &S, presented: &[u8]) -> Result<bool, SystemError> {
        let presented = digest(presented);
        if self.current() == [presented] {
            return Ok(false);
        }
        self.store(system, vec![presented])?;
        Ok(true)
    }
}

impl BearerSecret for Tokens {
    fn verify(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        // Every accepted digest is compared, in constant time each.
        self.current()
            .iter()
            .fold(false, |found, d| found | bool::from(d.ct_eq(&presented)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_only_as_written() {
        let d = digest(b"x");
        let h = enconf_core::secret::hex(&d);
        let text = format!("configured {h}\naccept {h}\n");
        assert_eq!(parse(&text), Some((d, vec![d])));
        assert_eq!(parse(&format!("configured {h}\n")), None);
        assert_eq!(parse("accept 00\n"), None);
        assert_eq!(parse(""), None);
    }
}
