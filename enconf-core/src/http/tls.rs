//! HTTPS for both servers: an acceptor whose certificate is read again when its files change.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

/// A failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Builds an HTTPS acceptor from a PEM certificate chain and a PEM private key.
///
/// The files are read again when either changes (checked at each handshake by modification
/// time), so a renewed certificate — the panel certificate the agent installs, for one — is
/// used without a restart. A replacement that cannot be loaded is logged and the previous pair
/// stays in use.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    acceptor(cert, key, None)
}

/// [`tls_acceptor`] that also requires each client to present a certificate issued by an
/// authority in `client_ca` (PEM): mutual TLS, on top of whatever the requests present. A
/// client without one, or with one from another authority, fails the handshake.
pub fn tls_acceptor_requiring_clients(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<TlsAcceptor, ServeError> {
    acceptor(cert, key, Some(client_ca))
}

fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor, ServeError> {
    let resolver = ReloadingCert::new(cert.to_path_buf(), key.to_path_buf())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(format!("protocol versions: {e}")))?;
    let config = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let tls =
                |e: &dyn std::fmt::Display| ServeError::Tls(format!("{}: {e}", path.display()));
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls(&e))? {
                roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
            }
            if roots.is_empty() {
                return Err(tls(&"no certificate"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| tls(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_cert_resolver(Arc::new(resolver));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

type Stamp = (Option<std::time::SystemTime>, Option<std::time::SystemTime>);

/// A certificate and key read from files, read again when they change.
#[derive(Debug)]
struct ReloadingCert {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: std::sync::RwLock<(Stamp, Arc<rustls::sign::CertifiedKey>)>,
}

impl ReloadingCert {
    fn new(cert: std::path::PathBuf, key: std::path::PathBuf) -> Result<Self, ServeError> {
        let stamp = Self::stamp(&cert, &key);
        let loaded = Self::load(&cert, &key)?;
        Ok(Self {
            cert,
            key,
            current: std::sync::RwLock::new((stamp, Arc::new(loaded))),
        })
    }

    fn stamp(cert: &Path, key: &Path) -> Stamp {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (modified(cert), modified(key))
    }

    fn load(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, ServeError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls = |what: &Path, e: &dyn std::fmt::Display| {
            ServeError::Tls(format!("{}: {e}", what.display()))
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls(cert, &e))?;
        if certs.is_empty() {
            return Err(tls(cert, &"no certificate"));
        }
        let der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(key, &e))?;
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| tls(key, &e))?;
        let pair = rustls::sign::CertifiedKey::new(certs, signing);
        pair.keys_match()
            .map_err(|e| ServeError::Tls(format!("certificate and key: {e}")))?;
        Ok(pair)
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let stamp = Self::stamp(&self.cert, &self.key);
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.0 == stamp {
                return Some(Arc::clone(&current.1));
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match Self::load(&self.cert, &self.key) {
            Ok(pair) => {
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                *current = (stamp, Arc::new(pair));
            }
            Err(e) => {
                // Keep serving the previous pair; try again when the files change again.
                tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded");
                current.0 = stamp;
            }
        }
        Some(Arc::clone(&current.1))
    }
}
