//! Agent tokens: the shared secret between the controller and one agent.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::rule::Rule;

const MIN_LEN: usize = 16;
const MAX_LEN: usize = 512;
/// Random bytes in a generated token (256 bits).
const GENERATED_BYTES: usize = 32;

/// The shared secret an agent checks on every request (`Authorization: Bearer …`).
///
/// It is a secret: `Debug` prints `AgentToken(<redacted>)`, there is no `Display`, and the
/// value is reached only through [`AgentToken::expose_secret`]. It serializes as its plain value
/// because the store must keep it; API views of a server never include it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentToken(String);

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

impl RandomError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

impl AgentToken {
    /// Validates a token given by an administrator: 16 to 512 visible ASCII characters, no
    /// spaces (it travels in an HTTP header and in `config.env`).
    pub fn parse(input: &str) -> Result<Self, Rule> {
        if input.is_empty() {
            return Err(Rule::Empty);
        }
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Rule::TokenCharset);
        }
        if input.len() < MIN_LEN {
            return Err(Rule::TooShort { min: MIN_LEN });
        }
        if input.len() > MAX_LEN {
            return Err(Rule::TooLong { max: MAX_LEN });
        }
        Ok(Self(input.to_owned()))
    }

    /// A new token of 256 random bits from the operating system, as 64 hex digits.
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| RandomError::new(e.to_string()))?;
        let mut hex = String::with_capacity(GENERATED_BYTES * 2);
        for b in bytes {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Ok(Self(hex))
    }

    /// Compares a presented token with this one in time that does not depend on where they
    /// differ (only on the presented length).
    pub fn verify(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The secret itself, for the places that must send or store it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The Management API's admin token: every request but the OpenAPI document and the web page
/// presents it. A secret like an [`AgentToken`] (same rules, redacted `Debug`, constant-time
/// [`verify`](AdminToken::verify)), but its own type, so that one cannot be passed for the
/// other.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(AgentToken);

impl AdminToken {
    /// Validates a configured token: 16 to 512 visible ASCII characters, no spaces.
    pub fn parse(input: &str) -> Result<Self, Rule> {
        AgentToken::parse(input).map(Self)
    }

    /// A new token of 256 random bits from the operating system, as 64 hex digits.
    pub fn generate() -> Result<Self, RandomError> {
        AgentToken::generate().map(Self)
    }

    /// Compares a presented token with this one in constant time.
    pub fn verify(&self, presented: &[u8]) -> bool {
        self.0.verify(presented)
    }

    /// The secret itself, to write into the file it is kept in or to show once.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentToken(<redacted>)")
    }
}

impl TryFrom<String> for AgentToken {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        Self::parse(&s)
    }
}

impl From<AgentToken> for String {
    fn from(t: AgentToken) -> String {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_strong_and_distinct() {
        let a = AgentToken::generate().unwrap();
        let b = AgentToken::generate().unwrap();
        assert_eq!(a.expose_secret().len(), 64);
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(AgentToken::parse(a.expose_secret()).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = AgentToken::parse("s3cret-token-value-123").unwrap();
        let shown = format!("{t:?} {t:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn verify() {
        let t = AgentToken::parse("s3cret-token-value-123").unwrap();
        assert!(t.verify(b"s3cret-token-value-123"));
        assert!(!t.verify(b"s3cret-token-value-124"));
        assert!(!t.verify(b"s3cret-token-value-12"));
        assert!(!t.verify(b""));
    }

    #[test]
    fn validation() {
        assert_eq!(AgentToken::parse(""), Err(Rule::Empty));
        assert_eq!(AgentToken::parse("short"), Err(Rule::TooShort { min: 16 }));
        assert_eq!(
            AgentToken::parse(&"x".repeat(513)),
            Err(Rule::TooLong { max: 512 })
        );
        for bad in [
            "0123456789abcdef\n",
            "0123456789 abcdef",
            "0123456789abcdef\0",
            "0123456789abcdéf",
        ] {
            assert_eq!(AgentToken::parse(bad), Err(Rule::TokenCharset), "{bad:?}");
        }
        // Shell and config metacharacters are allowed: the install script quotes them.
        assert!(AgentToken::parse("a'b\"c$d`e;f{g}h\\i").is_ok());
    }
}
