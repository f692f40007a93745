//! The HTTP(S) client both outgoing connections use (the controller to its agents, a panel to
//! the controller): HTTP/1.1 over TCP or rustls with ring, trusting the system's CA
//! certificates plus an optional PEM file of private ones.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The pooled client: one per caller, shared by every request it makes.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportSetupError {
    #[error("CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
    /// The blocking client's runtime could not start (no thread or file descriptor left).
    #[error("cannot start the client's runtime: {0}")]
    Runtime(String),
}

/// A client that connects within `connect_timeout` and trusts the system's CA certificates
/// plus those in `extra_ca` (PEM).
pub(crate) fn client(
    connect_timeout: Duration,
    extra_ca: Option<&Path>,
) -> Result<HttpsClient, TransportSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "a system CA certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        add_pem_file(&mut roots, path)?;
    }
    client_with_roots(connect_timeout, roots, None)
}

/// Adds the certificates of the PEM file at `path` to `roots`; a file without one is an error.
pub(crate) fn add_pem_file(
    roots: &mut RootCertStore,
    path: &Path,
) -> Result<(), TransportSetupError> {
    let ca_error = |message: String| TransportSetupError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_error("no certificate in the file".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    Ok(())
}

/// A client that connects within `connect_timeout` and trusts `roots` only.
pub(crate) fn client_with_roots(
    connect_timeout: Duration,
    roots: RootCertStore,
    // A client certificate chain and its key (PEM), for servers that ask for one.
    identity: Option<(&str, &str)>,
) -> Result<HttpsClient, TransportSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some((chain_pem, key_pem)) => {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let bad = |e: &dyn std::fmt::Display| {
                TransportSetupError::Tls(format!("the client certificate: {e}"))
            };
            let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&e))?
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

/// An error and its causes on one line: `client error (Connect): tcp connect error: Connection
/// refused (os error 111)`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
