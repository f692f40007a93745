//! Certificates as PEM text: checking an uploaded chain and key before anything is installed,
//! reading what a certificate says, and making self-signed ones.

use std::fmt;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::domain::DomainName;

/// The API fields an upload arrives in.
pub const CERT_FIELD: &str = "certificate_pem";
pub const KEY_FIELD: &str = "private_key_pem";

/// A certificate chain (leaf first) and its private key, both PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBundle {
    pub chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What a leaf certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// DNS names of its subject alternative names (the subject's common name when it has none).
    pub subject_names: Vec<String>,
    pub issuer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl CertInfo {
    /// Whether one of its names covers `host` (exactly, or by a one-label wildcard).
    #[must_use]
    pub fn covers(&self, host: &DomainName) -> bool {
        self.subject_names.iter().any(|n| covers(n, host.as_str()))
    }
}

/// Why a certificate or key is refused. Each names the API field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("{field} holds no {what}")]
    Missing {
        field: &'static str,
        what: &'static str,
    },
    #[error("{field} may hold only {allowed} blocks, not a {found} block")]
    ForeignBlock {
        field: &'static str,
        allowed: &'static str,
        found: String,
    },
    #[error("{field} holds more than one {what}")]
    SeveralKeys {
        field: &'static str,
        what: &'static str,
    },
    #[error("{field} is not valid PEM/DER: {message}")]
    Garbage {
        field: &'static str,
        message: String,
    },
    #[error("private_key_pem is not a supported key (RSA, ECDSA P-256/P-384, Ed25519): {0}")]
    UnsupportedKey(String),
    #[error("private_key_pem does not belong to the first certificate of certificate_pem")]
    KeyMismatch,
    #[error("certificate_pem: the certificate expired at {0}")]
    Expired(String),
    #[error("certificate_pem: the certificate is not valid before {0}")]
    NotYetValid(String),
    #[error("certificate_pem: the certificate does not cover {name} (it covers: {covers})")]
    NameNotCovered { name: String, covers: String },
    #[error(
        "certificate_pem: certificate {index} is not issued by the one after it (leaf first, then each issuer)"
    )]
    ChainOrder { index: usize },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
}

impl CertError {
    /// The API field the error is about (`None` for generation failures).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            CertError::Missing { field, .. }
            | CertError::Garbage { field, .. }
            | CertError::ForeignBlock { field, .. }
            | CertError::SeveralKeys { field, .. } => Some(field),
            CertError::UnsupportedKey(_) | CertError::KeyMismatch => Some(KEY_FIELD),
            CertError::Expired(_)
            | CertError::NotYetValid(_)
            | CertError::NameNotCovered { .. }
            | CertError::ChainOrder { .. } => Some(CERT_FIELD),
            CertError::Generate(_) => None,
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The labels of the PEM blocks in `text` (`-----BEGIN <label>-----`), in order.
fn block_labels(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
    })
}

/// The certificates of a PEM chain, in order. Any block but `CERTIFICATE` (a private key
/// pasted into the wrong field, a request, anything) is refused, naming it.
pub fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if let Some(found) = block_labels(pem).find(|l| *l != "CERTIFICATE") {
        return Err(CertError::ForeignBlock {
            field: CERT_FIELD,
            allowed: "CERTIFICATE",
            found: found.chars().take(64).collect(),
        });
    }
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Garbage {
            field: CERT_FIELD,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Missing {
            field: CERT_FIELD,
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The labels a private key may come under.
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// The private key of a PEM text: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), one block and nothing
/// else.
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    if pem.trim().is_empty() {
        return Err(CertError::Missing {
            field: KEY_FIELD,
            what: "private key",
        });
    }
    let mut keys = 0;
    for label in block_labels(pem) {
        if !KEY_LABELS.contains(&label) {
            return Err(CertError::ForeignBlock {
                field: KEY_FIELD,
                allowed: "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
                found: label.chars().take(64).collect(),
            });
        }
        keys += 1;
    }
    if keys > 1 {
        return Err(CertError::SeveralKeys {
            field: KEY_FIELD,
            what: "private key",
        });
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::Missing {
            field: KEY_FIELD,
            what: "private key",
        },
        e => CertError::Garbage {
            field: KEY_FIELD,
            message: e.to_string(),
        },
    })
}

/// PEM text of DER blocks under `label`, with LF line ends.
fn encode_pem<'a>(blocks: impl IntoIterator<Item = (&'static str, &'a [u8])>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    blocks
        .into_iter()
        .map(|(label, der)| pem::encode_config(&pem::Pem::new(label, der), config))
        .collect()
}

/// An uploaded chain and key as they are written to disk: parsed, and encoded again from what
/// was parsed, so that nothing else in the upload (text around the blocks, a second key, a
/// key pasted into the chain) goes with it. Refuses what [`parse_chain`] and [`parse_key`]
/// refuse.
pub fn normalize(chain_pem: &str, key_pem: &str) -> Result<CertBundle, CertError> {
    let chain = parse_chain(chain_pem)?;
    let key = parse_key(key_pem)?;
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    Ok(CertBundle {
        chain_pem: encode_pem(chain.iter().map(|c| ("CERTIFICATE", c.as_ref()))),
        key_pem: encode_pem([(label, key.secret_der())]),
    })
}

fn x509<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, CertError> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| CertError::Garbage {
            field: CERT_FIELD,
            message: e.to_string(),
        })
}

fn timestamp(t: x509_parser::time::ASN1Time) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What the leaf (first) certificate of `chain_pem` says.
pub fn info(chain_pem: &str) -> Result<CertInfo, CertError> {
    let chain = parse_chain(chain_pem)?;
    let leaf = x509(&chain[0])?;
    Ok(leaf_info(&leaf))
}

fn leaf_info(leaf: &X509Certificate<'_>) -> CertInfo {
    let mut names: Vec<String> = match leaf.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = leaf
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    CertInfo {
        subject_names: names,
        issuer: leaf.issuer().to_string(),
        not_before: timestamp(leaf.validity().not_before),
        not_after: timestamp(leaf.validity().not_after),
    }
}

/// Whether a certificate name (`example.com`, `*.example.com`) covers `host`.
fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Whether `key` is the key of `leaf`.
fn leaf_matches(
    leaf: &x509_parser::certificate::X509Certificate<'_>,
    key: &PrivateKeyDer<'_>,
) -> Result<(), CertError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
    let public = signing
        .public_key()
        .ok_or_else(|| CertError::UnsupportedKey("its public key cannot be derived".into()))?;
    if public.as_ref() != leaf.public_key().raw {
        return Err(CertError::KeyMismatch);
    }
    Ok(())
}

/// Checks that a chain and key parse and that the key is the first certificate's, with no
/// name or date checks (an agent's own certificate, whose names it does not know); returns
/// what the leaf says.
pub fn check_pair(chain_pem: &str, key_pem: &str) -> Result<CertInfo, CertError> {
    let chain = parse_chain(chain_pem)?;
    let key = parse_key(key_pem)?;
    let leaf = x509(&chain[0])?;
    leaf_matches(&leaf, &key)?;
    Ok(leaf_info(&leaf))
}

/// Checks an uploaded chain and key for `host` at `now`: both parse, the key is supported and
/// matches the leaf, the leaf is valid now and covers `host`, and each certificate is issued
/// (name and signature) by the next one. Returns what the leaf says. Pass a bundle made by
/// [`normalize`] to install exactly what was checked.
pub fn check(
    chain_pem: &str,
    key_pem: &str,
    host: &DomainName,
    now: OffsetDateTime,
) -> Result<CertInfo, CertError> {
    let chain = parse_chain(chain_pem)?;
    let key = parse_key(key_pem)?;
    let certs = chain.iter().map(x509).collect::<Result<Vec<_>, _>>()?;
    let leaf = &certs[0];
    leaf_matches(leaf, &key)?;

    let info = leaf_info(leaf);
    if now > info.not_after {
        return Err(CertError::Expired(rfc3339(info.not_after)));
    }
    if now < info.not_before {
        return Err(CertError::NotYetValid(rfc3339(info.not_before)));
    }
    if !info.covers(host) {
        return Err(CertError::NameNotCovered {
            name: host.to_string(),
            covers: info.subject_names.join(", "),
        });
    }
    for (index, pair) in certs.windows(2).enumerate() {
        let (child, issuer) = (&pair[0], &pair[1]);
        let named = child.issuer().as_raw() == issuer.subject().as_raw();
        if !named || child.verify_signature(Some(issuer.public_key())).is_err() {
            return Err(CertError::ChainOrder { index });
        }
    }
    Ok(info)
}

/// A self-signed certificate for `names` (the first is the subject), valid from a day before
/// `now` for 90 days, with a new ECDSA P-256 key. For testing only: no client trusts it.
pub fn self_signed(names: &[DomainName], now: OffsetDateTime) -> Result<CertBundle, CertError> {
    let generate = |e: rcgen::Error| CertError::Generate(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(generate)?;
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        dn.push(rcgen::DnType::CommonName, first.as_str());
    }
    dn.push(
        rcgen::DnType::OrganizationName,
        "enconf self-signed (testing only)",
    );
    params.distinguished_name = dn;
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(90);
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(CertBundle {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "web1.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("web1.example.com", "web1.example.com"));
        assert!(!covers("web1.example.com", "web2.example.com"));
    }
}
