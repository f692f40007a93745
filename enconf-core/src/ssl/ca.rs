//! The controller's private certificate authority for its agents.
//!
//! The controller issues each agent's HTTPS certificate (carried by the installation script,
//! renewed through the agent API) and trusts only this authority for agent connections, so an
//! agent needs no manual TLS step, and a certificate made by anyone else for the same name is
//! refused. The authority's key never leaves the controller's data directory.

use std::fmt;
use std::net::IpAddr;

use time::OffsetDateTime;

use super::cert::CertBundle;
use super::cert::CertError;

/// How long an agent certificate is valid.
pub const AGENT_CERT_DAYS: i64 = 365;
/// How long the authority is valid.
const CA_DAYS: i64 = 20 * 365;

/// A name an agent certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentName {
    Dns(String),
    Ip(IpAddr),
}

/// The authority: its certificate and key (PEM).
pub struct AgentCa {
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for AgentCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCa").finish_non_exhaustive()
    }
}

fn generate_error(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

impl AgentCa {
    /// A new authority, named `enconf agents <serial>` (each controller's its own).
    pub fn generate(now: OffsetDateTime) -> Result<Self, CertError> {
        let mut serial = [0u8; 8];
        getrandom::fill(&mut serial).map_err(|e| CertError::Generate(e.to_string()))?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "enconf");
        dn.push(
            rcgen::DnType::CommonName,
            format!("enconf agents {}", crate::secret::hex(&serial)),
        );
        params.distinguished_name = dn;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let key = rcgen::KeyPair::generate().map_err(generate_error)?;
        let cert = params.self_signed(&key).map_err(generate_error)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The authority of a certificate and key kept before; they must belong together (a
    /// certificate it issues is checked against its certificate).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let ca = Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        let now = OffsetDateTime::now_utc();
        let name = "ca-check.example.com";
        let probe = ca.issue(&[AgentName::Dns(name.into())], now)?;
        let host = crate::domain::DomainName::parse(name)
            .map_err(|r| CertError::Generate(r.to_string()))?;
        super::cert::check(&probe.chain_pem, &probe.key_pem, &host, now)
            .map_err(|_| CertError::KeyMismatch)?;
        Ok(ca)
    }

    /// The authority's certificate (PEM): what the controller and agents trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The authority's key (PEM), to keep (mode 0600) beside the certificate.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate and new key for an agent reached at `names`, valid [`AGENT_CERT_DAYS`];
    /// the chain is the agent's certificate, then the authority's.
    pub fn issue(&self, names: &[AgentName], now: OffsetDateTime) -> Result<CertBundle, CertError> {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
        for name in names {
            params.subject_alt_names.push(match name {
                AgentName::Dns(n) => {
                    rcgen::SanType::DnsName(n.clone().try_into().map_err(generate_error)?)
                }
                AgentName::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            });
        }
        let mut dn = rcgen::DistinguishedName::new();
        if let Some(first) = names.first() {
            let cn = match first {
                AgentName::Dns(n) => n.clone(),
                AgentName::Ip(ip) => ip.to_string(),
            };
            dn.push(rcgen::DnType::CommonName, cn);
        }
        dn.push(rcgen::DnType::OrganizationName, "enconf agent");
        params.distinguished_name = dn;
        self.sign(
            params,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            now,
            AGENT_CERT_DAYS,
        )
    }

    /// Signs a leaf certificate for `usage` with a new key, valid from an hour before `now`
    /// for `days`; the chain is the leaf, then the authority's certificate.
    fn sign(
        &self,
        mut params: rcgen::CertificateParams,
        usage: rcgen::ExtendedKeyUsagePurpose,
        now: OffsetDateTime,
        days: i64,
    ) -> Result<CertBundle, CertError> {
        let ca_key = rcgen::KeyPair::from_pem(&self.key_pem).map_err(generate_error)?;
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).map_err(generate_error)?;
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().map_err(generate_error)?;
        let cert = params.signed_by(&key, &issuer).map_err(generate_error)?;
        Ok(CertBundle {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

impl AgentCa {
    /// A certificate and new key for the controller itself, presented to agents that require
    /// a client certificate (`AGENT_TLS_CLIENT_CA`, mutual TLS). A controller makes a new one
    /// at each start and keeps it in memory only; it is valid [`CONTROLLER_CERT_DAYS`].
    pub fn issue_controller(&self, now: OffsetDateTime) -> Result<CertBundle, CertError> {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "enconf controller");
        dn.push(rcgen::DnType::OrganizationName, "enconf");
        params.distinguished_name = dn;
        self.sign(
            params,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            now,
            CONTROLLER_CERT_DAYS,
        )
    }
}

/// How long the controller's own client certificate is valid (it is made again at each start).
pub const CONTROLLER_CERT_DAYS: i64 = 5 * 365;

/// The time now, for [`AgentCa::generate`] and [`AgentCa::issue`].
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_authorities_load_and_mismatched_keys_are_refused() {
        let a = AgentCa::generate(now()).unwrap();
        let b = AgentCa::generate(now()).unwrap();
        let again = AgentCa::from_pem(a.cert_pem(), a.key_pem()).unwrap();
        assert_eq!(again.cert_pem(), a.cert_pem());
        assert!(matches!(
            AgentCa::from_pem(a.cert_pem(), b.key_pem()),
            Err(CertError::KeyMismatch)
        ));
        assert!(AgentCa::from_pem("not pem", a.key_pem()).is_err());
        assert!(AgentCa::from_pem(a.cert_pem(), "not pem").is_err());
        // What it issues is valid for the names and chains to it.
        let host = crate::domain::DomainName::parse("web1.example.com").unwrap();
        let issued = a
            .issue(
                &[
                    AgentName::Dns("web1.example.com".into()),
                    AgentName::Ip("192.0.2.7".parse().unwrap()),
                ],
                now(),
            )
            .unwrap();
        let info =
            crate::ssl::cert::check(&issued.chain_pem, &issued.key_pem, &host, now()).unwrap();
        assert!(info.not_after > now() + time::Duration::days(AGENT_CERT_DAYS - 1));
        assert!(issued.chain_pem.ends_with(a.cert_pem()));
    }
}
