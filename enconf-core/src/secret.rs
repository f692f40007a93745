//! Secrets at rest: the key the controller's store encrypts secrets with, and the sealing
//! itself (ChaCha20-Poly1305 from `ring`, a random nonce per value, the value's place in the
//! store as associated data so that a sealed value cannot be moved to another record).

use std::fmt;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::domain::{RandomError, Rule};

const KEY_LEN: usize = 32;

/// The controller's key for secrets at rest: 256 bits, written as 64 hex digits. `Debug` never
/// shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, RandomError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| RandomError::new(e.to_string()))?;
        Ok(Self(key))
    }

    /// The all-zero key: only for state that never leaves the process when the system's random
    /// numbers fail.
    pub(crate) fn zero() -> Self {
        Self([0; KEY_LEN])
    }

    /// A key written as 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self, Rule> {
        let text = text.trim();
        if text.len() != KEY_LEN * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rule::SecretKeyFormat);
        }
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16)
                .map_err(|_| Rule::SecretKeyFormat)?;
        }
        Ok(Self(key))
    }

    /// The key as 64 hex digits, for the file it is kept in.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// `bytes` as lowercase hexadecimal digits.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes of hexadecimal digits (either case); `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a sealed value could not be opened: another key sealed it, or it was changed, or it
/// was moved from another record.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "a sealed value cannot be opened: the secret key is not the one it was sealed with, or the value was changed"
    )]
    Open,
    #[error("the random number generator failed: {0}")]
    Random(String),
}

/// Seals and opens values with a [`SecretKey`].
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub(crate) fn new(key: &SecretKey) -> Self {
        // Proven invariant: a 32-byte key is the length ChaCha20-Poly1305 takes.
        #[allow(clippy::expect_used)]
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key.0).expect("a 256-bit key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// `plaintext` sealed for `context` (where it is kept): hex of nonce ‖ ciphertext ‖ tag.
    pub(crate) fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut data,
            )
            .map_err(|_| SealError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(hex(&out))
    }

    /// The plaintext of a value [`Sealer::seal`] made for the same `context`.
    pub(crate) fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, SealError> {
        let bytes = unhex(sealed).ok_or(SealError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut data)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = SecretKey::generate().unwrap();
        let sealer = Sealer::new(&key);
        let sealed = sealer.seal(b"agent-token-0123456789", b"server:1").unwrap();
        assert!(!sealed.contains("agent-token"));
        assert_ne!(
            sealed,
            sealer.seal(b"agent-token-0123456789", b"server:1").unwrap()
        );
        assert_eq!(
            sealer.open(&sealed, b"server:1").unwrap(),
            b"agent-token-0123456789"
        );
        assert!(sealer.open(&sealed, b"server:2").is_err(), "moved");
        let other = Sealer::new(&SecretKey::generate().unwrap());
        assert!(other.open(&sealed, b"server:1").is_err(), "another key");
        let mut tampered = sealed.clone().into_bytes();
        tampered[40] = if tampered[40] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(sealer.open(&tampered, b"server:1").is_err());
        assert!(sealer.open("zz", b"server:1").is_err());
    }

    #[test]
    fn keys_in_hex() {
        let key = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(
            SecretKey::from_hex(&format!("  {}\n", key.to_hex())).unwrap(),
            key
        );
        assert!(SecretKey::from_hex("abc").is_err());
        assert!(SecretKey::from_hex(&"g".repeat(64)).is_err());
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
