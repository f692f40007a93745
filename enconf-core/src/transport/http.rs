//! The real transport: HTTP/1.1 or HTTPS (rustls with ring) to the agent's URL, with a deadline
//! per request and a cap on the answer's size.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};

pub use crate::client::https::TransportSetupError;
use crate::client::https::{HttpsClient, chain};

use super::{AgentEndpoint, AgentRequest, AgentResponse, AgentTransport, Method, TransportError};

/// The largest answer read from an agent (a list of tens of thousands of accounts fits).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why an agent whose certificate does not chain to a trusted authority is offline.
pub const NOT_OURS: &str = "certificate not issued by this controller";

/// Whether a request failed because the agent's certificate is not issued by an authority
/// the client trusts (or its signature does not verify).
fn foreign_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::CertificateError as C;
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature)
            );
        }
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// The HTTP(S) client to agents. Cheap to share: one connection pool for every agent.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: HttpsClient,
    timeout: Duration,
}

impl HttpTransport {
    /// A client that gives up on a request after `timeout` (half of it at most for connecting)
    /// and trusts the system's CA certificates plus those in `extra_ca` (PEM), for agents whose
    /// certificates come from a private CA.
    pub fn new(timeout: Duration, extra_ca: Option<&Path>) -> Result<Self, TransportSetupError> {
        let client = crate::client::https::client(timeout / 2, extra_ca)?;
        Ok(Self { client, timeout })
    }

    /// A client to agents that trusts only the controller's agent authority (`ca_pem`, from
    /// [`AgentCa`](crate::ssl::ca::AgentCa)) and the certificates in `extra_ca` (PEM), not
    /// the system's: an agent certificate anyone else issued for the same name is refused,
    /// with the reason [`NOT_OURS`].
    pub fn for_agents(
        timeout: Duration,
        ca_pem: &str,
        extra_ca: Option<&Path>,
    ) -> Result<Self, TransportSetupError> {
        Self::for_agents_as(timeout, ca_pem, extra_ca, None)
    }

    /// [`Self::for_agents`] presenting `identity` (a certificate chain and key, PEM: the
    /// controller's, from [`AgentCa::issue_controller`](crate::ssl::ca::AgentCa)) to agents
    /// that require a client certificate (mutual TLS).
    pub fn for_agents_as(
        timeout: Duration,
        ca_pem: &str,
        extra_ca: Option<&Path>,
        identity: Option<(&str, &str)>,
    ) -> Result<Self, TransportSetupError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| TransportSetupError::Tls(format!("the agent CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| TransportSetupError::Tls(format!("the agent CA: {e}")))?;
        }
        if let Some(path) = extra_ca {
            crate::client::https::add_pem_file(&mut roots, path)?;
        }
        let client = crate::client::https::client_with_roots(timeout / 2, roots, identity)?;
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
            if foreign_certificate(&e) {
                TransportError::Unreachable(format!("{NOT_OURS} ({})", chain(&e)))
            } else if e.is_connect() {
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
