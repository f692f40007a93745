//! The real transport: HTTP/1.1 or HTTPS (rustls with ring) to the agent's URL, with a deadline
//! per request and a cap on the answer's size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{AgentEndpoint, AgentRequest, AgentResponse, AgentTransport, Method, TransportError};

/// The largest answer read from an agent (a list of tens of thousands of accounts fits).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why the HTTP transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportSetupError {
    #[error("CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// The HTTP(S) client to agents. Cheap to share: one connection pool for every agent.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpTransport {
    /// A client that gives up on a request after `timeout` (half of it at most for connecting)
    /// and trusts the system's CA certificates plus those in `extra_ca` (PEM), for agents whose
    /// certificates come from a private CA.
    pub fn new(timeout: Duration, extra_ca: Option<&Path>) -> Result<Self, TransportSetupError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be loaded");
        }
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_ca {
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
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportSetupError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout / 2));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Self { client, timeout })
    }

    async fn exchange(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError> {
        let uri = format!("{}{}", agent.url, request.path);
        let method = match request.method {
            Method::Get => hyper::Method::GET,
            Method::Put => hyper::Method::PUT,
            Method::Post => hyper::Method::POST,
            Method::Delete => hyper::Method::DELETE,
        };
        // The token is validated visible ASCII, so it always makes a header value.
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", agent.token.expose_secret()))
            .map_err(|_| TransportError::Protocol("the token cannot travel in a header".into()))?;
        auth.set_sensitive(true);
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json");
        if request.body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let http_request = builder
            .body(Full::new(Bytes::from(request.body.unwrap_or_default())))
            .map_err(|e| TransportError::Protocol(format!("cannot build the request: {e}")))?;
        let response = self.client.request(http_request).await.map_err(|e| {
            if e.is_connect() {
                TransportError::Unreachable(chain(&e))
            } else {
                TransportError::Interrupted(chain(&e))
            }
        })?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| TransportError::Interrupted(format!("reading the answer: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(AgentResponse { status, body })
    }
}

#[async_trait]
impl AgentTransport for HttpTransport {
    async fn send(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError> {
        match tokio::time::timeout(self.timeout, self.exchange(agent, request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Interrupted(format!(
                "no answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }
}

/// An error and its causes on one line: `client error (Connect): tcp connect error: Connection
/// refused (os error 111)`.
fn chain(e: &dyn std::error::Error) -> String {
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
