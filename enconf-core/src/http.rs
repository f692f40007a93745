//! HTTP plumbing the controller API and the agent API share: errors as JSON responses, bearer
//! token checks, size-limited JSON bodies, one log line per request, and serving a router (over
//! TLS when configured) with graceful shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::domain::AgentToken;
use crate::protocol::{ErrorBody, ErrorCode};

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(300);

/// An [`ErrorBody`] as a response, with the status its code calls for.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}

impl<E: Into<ErrorBody>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// The answer of a JSON handler.
pub type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// The `404` for a path no route matches.
pub async fn not_found() -> ApiError {
    ApiError(ErrorBody::new(ErrorCode::NotFound, "no such path"))
}

/// The answer for a method a path does not have.
pub async fn method_not_allowed() -> ApiError {
    ApiError(ErrorBody::new(
        ErrorCode::BadRequest,
        "method not allowed on this path",
    ))
}

/// Whether `headers` carry `Authorization: Bearer <token>` with `token`, compared in constant
/// time. The presented value is never logged.
pub fn bearer_matches(headers: &HeaderMap, token: &AgentToken) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| token.verify(presented))
}

/// The `401` answer: the same for a missing and a wrong token.
pub fn unauthorized() -> Response {
    ApiError(ErrorBody::new(
        ErrorCode::Unauthorized,
        "missing or wrong token",
    ))
    .into_response()
}

/// Middleware: one log line per request with method, path, status and duration. Never headers,
/// never bodies (they carry tokens and keys).
pub async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Reads a JSON body of at most `limit` bytes: `413` over it, `400` when it is not JSON of the
/// right shape.
pub async fn json_body<T: DeserializeOwned>(
    limit: usize,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let too_large = || {
        ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large().into());
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large().into()),
        Err(e) => {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("cannot read the body: {e}"),
            )
            .into());
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        ErrorBody::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")).into()
    })
}

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
    let resolver = ReloadingCert::new(cert.to_path_buf(), key.to_path_buf())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(format!("protocol versions: {e}")))?
        .with_no_client_auth()
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

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// stops accepting and waits for requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace period");
    }
}
