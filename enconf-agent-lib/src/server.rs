//! The agent's HTTP(S) server: the API of [`enconf_core::protocol::agent`], token auth, body
//! limits, a single apply worker that coalesces queued changes, and graceful shutdown.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use enconf_core::domain::{AccountSpec, AgentToken, UserName};
use enconf_core::protocol::agent::{AccountBatch, AccountList, AccountPut, Applied, BatchApplied};
use enconf_core::protocol::{AgentHealth, ErrorBody, ErrorCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::apply::{Applier, ApplyError};
use crate::system::System;

/// How many queued requests one apply takes at most.
const MAX_COALESCED: usize = 4096;
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(300);

/// Where the apply worker answers a job.
type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

/// A change waiting for the apply worker, with where to send what it did.
enum Job {
    /// Per account: whether anything changed.
    Put(Vec<AccountSpec>, Reply<Vec<bool>>),
    /// Whether the account was there.
    Delete(UserName, Reply<bool>),
}

/// The agent as a service: what the HTTP handlers share.
pub struct Agent<S> {
    token: AgentToken,
    applier: Arc<Applier<S>>,
    jobs: mpsc::Sender<Job>,
    started: Instant,
    hostname: String,
    max_body_bytes: usize,
}

impl<S> std::fmt::Debug for Agent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl<S: System> Agent<S> {
    /// Builds the agent and starts its apply worker (on the current tokio runtime). The worker
    /// ends once every handle to the agent is dropped and the queue is empty.
    pub fn new(token: AgentToken, applier: Applier<S>, max_body_bytes: usize) -> Arc<Self> {
        let applier = Arc::new(applier);
        let (jobs, rx) = mpsc::channel(MAX_COALESCED);
        tokio::spawn(worker(Arc::clone(&applier), rx));
        Arc::new(Self {
            token,
            applier,
            jobs,
            started: Instant::now(),
            hostname: hostname(),
            max_body_bytes,
        })
    }

    pub fn applier(&self) -> &Applier<S> {
        &self.applier
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, ErrorBody> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| internal("the apply worker has stopped"))?;
        answer
            .await
            .map_err(|_| internal("the apply worker has stopped"))?
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn internal(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, message)
}

/// An [`ErrorBody`] as a response.
struct ApiError(ErrorBody);

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

fn apply_error(e: ApplyError) -> ErrorBody {
    match e {
        ApplyError::Rejected { .. } => ErrorBody::new(ErrorCode::ConfigRejected, e.to_string()),
        ApplyError::System(_) | ApplyError::State(_) => {
            tracing::error!(error = %e, "apply failed");
            internal(&e.to_string())
        }
    }
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// The agent API as a router (auth and logging included).
pub fn router<S: System>(agent: Arc<Agent<S>>) -> Router {
    Router::new()
        .route("/v1/health", get(health::<S>))
        .route("/v1/accounts", get(list::<S>).put(put_batch::<S>))
        .route(
            "/v1/accounts/{username}",
            axum::routing::put(put_one::<S>).delete(delete::<S>),
        )
        .fallback(|| async { ApiError(ErrorBody::new(ErrorCode::NotFound, "no such path")) })
        .method_not_allowed_fallback(|| async {
            ApiError(ErrorBody::new(
                ErrorCode::BadRequest,
                "method not allowed on this path",
            ))
        })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&agent),
            auth::<S>,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(agent)
}

async fn log_request(req: Request, next: Next) -> Response {
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

/// Every path needs `Authorization: Bearer <token>`; compared in constant time, never logged.
async fn auth<S: System>(State(agent): State<Arc<Agent<S>>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if !presented.is_some_and(|t| agent.token.verify(t)) {
        return ApiError(ErrorBody::new(
            ErrorCode::Unauthorized,
            "missing or wrong token",
        ))
        .into_response();
    }
    next.run(req).await
}

/// Reads a JSON body of at most the configured size: 413 over it, 400 when not JSON of the
/// right shape.
async fn json_body<T: DeserializeOwned>(
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

async fn health<S: System>(State(agent): State<Arc<Agent<S>>>) -> axum::Json<AgentHealth> {
    axum::Json(AgentHealth {
        version: enconf_core::version::RELEASE.to_owned(),
        hostname: agent.hostname.clone(),
        uptime_s: agent.started.elapsed().as_secs(),
    })
}

async fn list<S: System>(State(agent): State<Arc<Agent<S>>>) -> ApiResult<AccountList> {
    let applier = Arc::clone(&agent.applier);
    let accounts = tokio::task::spawn_blocking(move || applier.list())
        .await
        .map_err(|_| internal("listing failed"))?
        .map_err(apply_error)?;
    Ok(axum::Json(AccountList { accounts }))
}

async fn put_one<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let put: AccountPut = json_body(agent.max_body_bytes, &headers, body).await?;
    let spec = put.validate("", Some(&username))?;
    let changed = agent.submit(|r| Job::Put(vec![spec], r)).await?;
    Ok(axum::Json(Applied {
        changed: changed.first().copied().unwrap_or(false),
    }))
}

async fn put_batch<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<BatchApplied> {
    let batch: AccountBatch = json_body(agent.max_body_bytes, &headers, body).await?;
    let specs = batch.validate()?;
    let changed = agent.submit(|r| Job::Put(specs, r)).await?;
    let n = changed.iter().filter(|c| **c).count();
    Ok(axum::Json(BatchApplied {
        changed: n,
        unchanged: changed.len() - n,
    }))
}

async fn delete<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
) -> ApiResult<Applied> {
    let user = UserName::parse(&username).map_err(|r| r.at("username"))?;
    let changed = agent.submit(|r| Job::Delete(user, r)).await?;
    Ok(axum::Json(Applied { changed }))
}

/// Takes queued jobs in arrival order, as many as are waiting, and applies runs of puts as one
/// apply (one validation, one reload).
async fn worker<S: System>(applier: Arc<Applier<S>>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = VecDeque::from([first]);
        while jobs.len() < MAX_COALESCED {
            match rx.try_recv() {
                Ok(job) => jobs.push_back(job),
                Err(_) => break,
            }
        }
        let applier = Arc::clone(&applier);
        if tokio::task::spawn_blocking(move || run_jobs(&applier, jobs))
            .await
            .is_err()
        {
            tracing::error!("an apply panicked; its requests were answered with an error");
        }
    }
}

fn run_jobs<S: System>(applier: &Applier<S>, mut jobs: VecDeque<Job>) {
    while let Some(job) = jobs.pop_front() {
        match job {
            Job::Delete(user, reply) => {
                let _ = reply.send(applier.delete(&user).map_err(apply_error));
            }
            Job::Put(specs, reply) => {
                // Take the following puts too, as long as no account appears twice.
                let mut users: HashSet<UserName> =
                    specs.iter().map(|s| s.username.clone()).collect();
                let mut run = vec![(specs, reply)];
                while let Some(Job::Put(next, _)) = jobs.front() {
                    if next.iter().any(|s| users.contains(&s.username)) {
                        break;
                    }
                    users.extend(next.iter().map(|s| s.username.clone()));
                    let Some(Job::Put(next, reply)) = jobs.pop_front() else {
                        break;
                    };
                    run.push((next, reply));
                }
                put_run(applier, run);
            }
        }
    }
}

type PutRequest = (Vec<AccountSpec>, Reply<Vec<bool>>);

fn put_run<S: System>(applier: &Applier<S>, run: Vec<PutRequest>) {
    if run.len() > 1 {
        let all: Vec<AccountSpec> = run.iter().flat_map(|(s, _)| s.iter().cloned()).collect();
        match applier.put(&all) {
            Ok(changed) => {
                let mut rest = &changed[..];
                for (specs, reply) in run {
                    let (mine, tail) = rest.split_at(specs.len().min(rest.len()));
                    rest = tail;
                    let _ = reply.send(Ok(mine.to_vec()));
                }
                return;
            }
            // One request's config was refused: apply each alone so the others still land.
            Err(ApplyError::Rejected { .. }) => {}
            Err(e) => {
                let body = apply_error(e);
                for (_, reply) in run {
                    let _ = reply.send(Err(body.clone()));
                }
                return;
            }
        }
    }
    for (specs, reply) in run {
        let _ = reply.send(applier.put(&specs).map_err(apply_error));
    }
}

/// A failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Builds the HTTPS acceptor from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |what: &str, e: &dyn std::fmt::Display| ServeError::Tls(format!("{what}: {e}"));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(&cert.display().to_string(), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&cert.display().to_string(), &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(&key.display().to_string(), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls("certificate and key", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
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
