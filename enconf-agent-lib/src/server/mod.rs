//! The agent's HTTP(S) server: the API of [`enconf_core::protocol::agent`], token auth, body
//! limits, a single apply worker that coalesces queued changes, and graceful shutdown.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use enconf_core::domain::{AccountSpec, AgentToken, DomainName, Domains, Rule, UserName};
use enconf_core::http::{
    ApiResult, authorize, json_body, log_request, method_not_allowed, not_found,
};
use enconf_core::protocol::agent::{
    self, AccountBatch, AccountList, AccountPut, Applied, BatchApplied, CertificatePut,
    ChallengePut, check_acme_text,
};
use enconf_core::protocol::{AgentHealth, ErrorBody, ErrorCode, RoleHealth, ServiceStatus};
use enconf_core::ssl::{CertKind, cert};
use tokio::sync::{mpsc, oneshot};

pub use enconf_core::http::{
    ConnectionLimits, ServeError, serve, tls_acceptor, tls_acceptor_requiring_clients,
};

use crate::apply::{Applier, ApplyError};
use crate::system::System;

mod backup;
mod mail;
mod tls;
mod token;
mod update;

/// How many queued requests one apply takes at most.
const MAX_COALESCED: usize = 4096;

/// Where the apply worker answers a job.
type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

/// A change waiting for the apply worker, with where to send what it did.
enum Job {
    /// Per account: whether anything changed.
    Put(PutRequest),
    /// Whether the account was there.
    Delete(UserName, crate::roles::DataFate, Reply<bool>),
    /// Any other change (certificates, challenges), run in turn with the rest.
    Task(Box<dyn FnOnce() + Send>),
}

/// The agent as a service: what the HTTP handlers share.
pub struct Agent<S: System> {
    tokens: crate::tokens::Tokens,
    applier: Arc<Applier<S>>,
    jobs: mpsc::Sender<Job>,
    started: Instant,
    hostname: String,
    max_body_bytes: usize,
    agent_id: Option<String>,
    /// The backups and restores running here.
    tasks: crate::backup::Tasks,
    /// The certificate and key files it serves HTTPS with, when it does.
    tls_files: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)>,
}

impl<S: System> std::fmt::Debug for Agent<S> {
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
        let agent_id = match crate::identity::load_or_create(
            applier.system(),
            &applier.layout().state_dir,
        ) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "the agent has no identity: the controller cannot tell it from another");
                None
            }
        };
        let tokens =
            crate::tokens::Tokens::load(applier.system(), &applier.layout().state_dir, &token);
        if applier.served().contains(enconf_core::domain::Role::Backup) {
            crate::backup::serve_repositories(applier.layout(), |p| applier.system().data_path(p));
        }
        let applier = Arc::new(applier);
        let (jobs, rx) = mpsc::channel(MAX_COALESCED);
        tokio::spawn(worker(Arc::clone(&applier), rx));
        Arc::new(Self {
            tokens,
            applier,
            jobs,
            started: Instant::now(),
            hostname: hostname(),
            max_body_bytes,
            agent_id,
            tasks: crate::backup::Tasks::default(),
            tls_files: std::sync::OnceLock::new(),
        })
    }

    /// Says which certificate and key files the agent serves HTTPS with: its health reports
    /// the certificate's expiry, and `PUT /v1/tls` replaces them (the listener reads changed
    /// files at the next handshake). Set once.
    pub fn serve_tls_files(&self, cert: std::path::PathBuf, key: std::path::PathBuf) {
        let _ = self.tls_files.set((cert, key));
    }

    pub fn applier(&self) -> &Applier<S> {
        &self.applier
    }

    /// The body limit of an operation that needs at most `needed` bytes: that, or the
    /// configured limit when it is lower. Only a batch put may use the whole configured limit.
    fn limit(&self, needed: usize) -> usize {
        needed.min(self.max_body_bytes)
    }

    /// Runs `f` on the applier in turn with every other change, and answers with its result.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Applier<S>) -> Result<T, ApplyError> + Send + 'static,
    ) -> Result<T, ErrorBody> {
        let applier = Arc::clone(&self.applier);
        self.submit(move |reply: Reply<T>| {
            Job::Task(Box::new(move || {
                let _ = reply.send(f(&applier).map_err(apply_error));
            }))
        })
        .await
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

fn apply_error(e: ApplyError) -> ErrorBody {
    match e {
        ApplyError::Rejected { .. } => ErrorBody::new(ErrorCode::ConfigRejected, e.to_string()),
        ApplyError::UserTaken { .. } => {
            ErrorBody::new(ErrorCode::Duplicate, e.to_string()).with_field("username")
        }
        ApplyError::Invalid(v) => v.into(),
        ApplyError::RoleNotServed { .. } => {
            ErrorBody::new(ErrorCode::RoleNotServed, e.to_string()).with_field("roles")
        }
        ApplyError::UnknownAccount(_) => ErrorBody::new(ErrorCode::NotFound, e.to_string()),
        ApplyError::ZoneTaken { .. } => {
            ErrorBody::new(ErrorCode::Duplicate, e.to_string()).with_field("zones")
        }
        ApplyError::DbTaken { .. } => {
            ErrorBody::new(ErrorCode::Duplicate, e.to_string()).with_field("db")
        }
        ApplyError::System(_) | ApplyError::State(_) => {
            tracing::error!(error = %e, "apply failed");
            internal(&e.to_string())
        }
    }
}

/// The agent API as a router (auth and logging included).
pub fn router<S: System>(agent: Arc<Agent<S>>) -> Router {
    Router::new()
        .route("/v1/health", get(health::<S>))
        .route("/v1/tls", axum::routing::put(tls::put::<S>))
        .route("/v1/token", axum::routing::put(token::put::<S>))
        .route("/v1/token/commit", axum::routing::post(token::commit::<S>))
        .route(
            "/v1/update",
            get(update::state::<S>).post(update::start::<S>),
        )
        .route("/v1/accounts", get(list::<S>).put(put_batch::<S>))
        .route(
            "/v1/accounts/{username}",
            axum::routing::put(put_one::<S>).delete(delete::<S>),
        )
        .route(
            "/v1/certificates/{kind}",
            axum::routing::put(put_certificate::<S>),
        )
        .route(
            "/v1/acme-challenge/{token}",
            axum::routing::put(put_challenge::<S>).delete(delete_challenge::<S>),
        )
        .route("/v1/webmail", axum::routing::put(mail::put_webmail::<S>))
        .route(
            "/v1/phpmyadmin",
            axum::routing::put(mail::put_phpmyadmin::<S>),
        )
        .route(
            "/v1/mail/{username}",
            get(mail::get_mail::<S>).put(mail::put_mail::<S>),
        )
        .route("/v1/mail/{username}/dkim", get(mail::get_dkim::<S>))
        .route("/v1/dns/{username}", get(get_zones::<S>))
        .route("/v1/db/{username}", get(get_databases::<S>))
        .route(
            "/v1/accounts/{username}/freeze",
            axum::routing::post(freeze::<S>),
        )
        .route("/v1/backup/{username}", get(backup::repository::<S>))
        .route(
            "/v1/backup/{username}/prune",
            axum::routing::post(backup::prune::<S>),
        )
        .route(
            "/v1/backup/{username}/run",
            axum::routing::post(backup::run::<S>),
        )
        .route(
            "/v1/backup/{username}/restore",
            axum::routing::post(backup::restore::<S>),
        )
        .route("/v1/tasks/{id}", get(backup::task::<S>))
        .route(
            "/v1/mail/{username}/mailboxes/{address}",
            axum::routing::put(mail::put_mailbox::<S>).delete(mail::delete_mailbox::<S>),
        )
        .route(
            "/v1/mail/{username}/aliases/{address}",
            axum::routing::put(mail::put_alias::<S>).delete(mail::delete_alias::<S>),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&agent),
            auth::<S>,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(agent)
}

/// Every path needs `Authorization: Bearer <token>`; compared in constant time, never logged.
async fn auth<S: System>(State(agent): State<Arc<Agent<S>>>, req: Request, next: Next) -> Response {
    if let Err(refused) = authorize(&req, &agent.tokens) {
        return refused.into_response();
    }
    next.run(req).await
}

async fn health<S: System>(State(agent): State<Arc<Agent<S>>>) -> axum::Json<AgentHealth> {
    let applier = Arc::clone(&agent.applier);
    let (status, php_versions) =
        tokio::task::spawn_blocking(move || (applier.status(), applier.php_versions()))
            .await
            .unwrap_or_default();
    let roles = status
        .into_iter()
        .map(|(role, status)| {
            let services = status
                .services
                .into_iter()
                .map(|(name, running)| ServiceStatus { name, running })
                .collect();
            (
                role,
                RoleHealth {
                    ok: status.ok,
                    services,
                },
            )
        })
        .collect();
    axum::Json(AgentHealth {
        version: enconf_core::version::RELEASE.to_owned(),
        hostname: agent.hostname.clone(),
        uptime_s: agent.started.elapsed().as_secs(),
        agent_id: agent.agent_id.clone(),
        roles: Some(roles),
        php_versions: php_versions.map(|v| v.iter().map(ToString::to_string).collect()),
        addresses: seen_addresses(),
        tls_not_after: agent
            .tls_files
            .get()
            .and_then(|(cert, _)| tls::not_after(cert)),
    })
}

/// `GET /v1/dns/{username}`: the serial each zone of the account is served with here.
async fn get_zones<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    axum::extract::Path(username): axum::extract::Path<String>,
) -> ApiResult<enconf_core::protocol::dns::AgentZones> {
    let user = enconf_core::domain::UserName::parse(&username)
        .map_err(|r| ErrorBody::from(r.at("username")))?;
    let applier = Arc::clone(&agent.applier);
    let zones = tokio::task::spawn_blocking(move || applier.dns_served(&user))
        .await
        .map_err(|_| internal("reading the zones failed"))?
        .map_err(apply_error)?;
    Ok(axum::Json(enconf_core::protocol::dns::AgentZones { zones }))
}

/// `GET /v1/db/{username}`: what each database of the account takes on disk here.
async fn get_databases<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    axum::extract::Path(username): axum::extract::Path<String>,
) -> ApiResult<enconf_core::protocol::db::AgentDatabases> {
    let user = enconf_core::domain::UserName::parse(&username)
        .map_err(|r| ErrorBody::from(r.at("username")))?;
    let applier = Arc::clone(&agent.applier);
    let sizes = tokio::task::spawn_blocking(move || applier.db_sizes(&user))
        .await
        .map_err(|_| internal("reading the databases failed"))?
        .map_err(apply_error)?;
    Ok(axum::Json(enconf_core::protocol::db::AgentDatabases {
        sizes,
    }))
}

/// The addresses this server is reached at as far as it can tell: the source address of its
/// route to the internet, for IPv4 and IPv6 (a UDP socket is connected, nothing is sent).
/// None without such a route.
fn seen_addresses() -> Vec<String> {
    let mut out = Vec::new();
    for (bind, target) in [
        ("0.0.0.0:0", "192.0.2.1:53"),
        ("[::]:0", "[2001:db8::1]:53"),
    ] {
        let seen = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.connect(target).map(|()| s))
            .and_then(|s| s.local_addr());
        if let Ok(addr) = seen
            && !addr.ip().is_loopback()
            && !addr.ip().is_unspecified()
        {
            out.push(addr.ip().to_string());
        }
    }
    out
}

async fn list<S: System>(State(agent): State<Arc<Agent<S>>>) -> ApiResult<AccountList> {
    let applier = Arc::clone(&agent.applier);
    let accounts = tokio::task::spawn_blocking(move || applier.list())
        .await
        .map_err(|_| internal("listing failed"))?
        .map_err(apply_error)?;
    Ok(axum::Json(AccountList { accounts }))
}

/// `PUT /v1/accounts/{username}[?data=remove]`: with `data=remove`, the roles the put takes
/// away lose their data here too (a migration copied it to their new server).
async fn put_one<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    axum::extract::Query(query): axum::extract::Query<DataQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let data = query.fate()?;
    let put: AccountPut =
        json_body(agent.limit(agent::MAX_ACCOUNT_PUT_BYTES), &headers, body).await?;
    let spec = put.validate("", Some(&username))?;
    let changed = agent
        .submit(|reply| {
            Job::Put(PutRequest {
                specs: vec![spec],
                batch: false,
                data,
                reply,
            })
        })
        .await?;
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
    let changed = agent
        .submit(|reply| {
            Job::Put(PutRequest {
                specs,
                batch: true,
                data: crate::roles::DataFate::Keep,
                reply,
            })
        })
        .await?;
    let n = changed.iter().filter(|c| **c).count();
    Ok(axum::Json(BatchApplied {
        changed: n,
        unchanged: changed.len() - n,
    }))
}

/// `POST /v1/accounts/{username}/freeze`: the site's PHP stops (the last migration pass).
async fn freeze<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
) -> ApiResult<Applied> {
    let user = UserName::parse(&username).map_err(|r| r.at("username"))?;
    let changed = agent.run(move |a| a.freeze(&user)).await?;
    Ok(axum::Json(Applied { changed }))
}

/// `?data=remove`: a copy of the account's data exists elsewhere (a final backup, or the
/// server a migration moved it to), so its Maildirs and databases go too (without it they are
/// kept).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DataQuery {
    data: Option<String>,
}

impl DataQuery {
    fn fate(&self) -> Result<crate::roles::DataFate, ErrorBody> {
        match self.data.as_deref() {
            None | Some("keep") => Ok(crate::roles::DataFate::Keep),
            Some("remove") => Ok(crate::roles::DataFate::Remove),
            Some(_) => Err(
                ErrorBody::new(ErrorCode::Invalid, "data must be keep or remove")
                    .with_field("data"),
            ),
        }
    }
}

async fn delete<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    axum::extract::Query(query): axum::extract::Query<DataQuery>,
) -> ApiResult<Applied> {
    let user = UserName::parse(&username).map_err(|r| r.at("username"))?;
    let data = query.fate()?;
    let changed = agent.submit(|r| Job::Delete(user, data, r)).await?;
    Ok(axum::Json(Applied { changed }))
}

fn names(field: &str, names: &[String]) -> Result<Vec<DomainName>, ErrorBody> {
    if names.is_empty() {
        return Err(Rule::Empty.at(field).into());
    }
    Ok(Domains::parse(field, names)?.as_slice().to_vec())
}

async fn put_certificate<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(kind): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let kind: CertKind = kind
        .parse()
        .map_err(|()| ErrorBody::new(ErrorCode::NotFound, "no such certificate kind"))?;
    let put: CertificatePut = json_body(
        agent.limit(agent::MAX_CERTIFICATE_PUT_BYTES),
        &headers,
        body,
    )
    .await?;
    let names = names("names", &put.names)?;
    // Checked here as on the controller: parses, key matches, covers the first name. Expiry
    // is the controller's business (it knows the time the certificate was chosen at).
    // What is written is the parsed pair, encoded again: nothing else of the upload.
    let now = time::OffsetDateTime::now_utc();
    let invalid = |e: cert::CertError| {
        let field = e.field().unwrap_or("certificate_pem");
        ErrorBody::new(ErrorCode::Invalid, e.to_string()).with_field(field)
    };
    let bundle = cert::normalize(&put.certificate_pem, &put.private_key_pem).map_err(invalid)?;
    match cert::check(&bundle.chain_pem, &bundle.key_pem, &names[0], now) {
        Ok(_) | Err(cert::CertError::Expired(_) | cert::CertError::NotYetValid(_)) => {}
        Err(e) => return Err(invalid(e).into()),
    }
    let changed = agent
        .run(move |a| a.put_certificate(kind, &names, &bundle.chain_pem, &bundle.key_pem))
        .await?;
    Ok(axum::Json(Applied { changed }))
}

async fn put_challenge<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    check_acme_text(&token, 0).map_err(|r| r.at("token"))?;
    let put: ChallengePut =
        json_body(agent.limit(agent::MAX_CHALLENGE_PUT_BYTES), &headers, body).await?;
    let names = names("names", &put.names)?;
    check_acme_text(&put.key_authorization, 1).map_err(|r| r.at("key_authorization"))?;
    let changed = agent
        .run(move |a| a.put_challenge(&names, &token, &put.key_authorization))
        .await?;
    Ok(axum::Json(Applied { changed }))
}

async fn delete_challenge<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(token): UrlPath<String>,
) -> ApiResult<Applied> {
    check_acme_text(&token, 0).map_err(|r| r.at("token"))?;
    let changed = agent.run(move |a| a.delete_challenge(&token)).await?;
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
            Job::Delete(user, data, reply) => {
                let _ = reply.send(applier.delete(&user, data).map_err(apply_error));
            }
            Job::Task(task) => task(),
            // A put that removes data runs alone.
            Job::Put(first) if first.data == crate::roles::DataFate::Remove => {
                let result = applier
                    .put_with(&first.specs, first.data)
                    .map_err(|e| first.error(e));
                let _ = first.reply.send(result);
            }
            Job::Put(first) => {
                // Take the following puts too, as long as no account appears twice.
                let mut users: HashSet<UserName> =
                    first.specs.iter().map(|s| s.username.clone()).collect();
                let mut run = vec![first];
                while let Some(Job::Put(next)) = jobs.front() {
                    if next.data != crate::roles::DataFate::Keep
                        || next.specs.iter().any(|s| users.contains(&s.username))
                    {
                        break;
                    }
                    users.extend(next.specs.iter().map(|s| s.username.clone()));
                    let Some(Job::Put(next)) = jobs.pop_front() else {
                        break;
                    };
                    run.push(next);
                }
                put_run(applier, run);
            }
        }
    }
}

/// A put of one account or a batch, and where to answer.
struct PutRequest {
    specs: Vec<AccountSpec>,
    /// Whether it came as a batch (errors name `accounts[i].…`).
    batch: bool,
    /// What becomes of the data of roles the put takes away.
    data: crate::roles::DataFate,
    reply: Reply<Vec<bool>>,
}

impl PutRequest {
    /// The answer to a failed put: a taken user name is named as the request gave it.
    fn error(&self, e: ApplyError) -> ErrorBody {
        let field = match &e {
            ApplyError::UserTaken { user, .. } if self.batch => self
                .specs
                .iter()
                .position(|s| &s.username == user)
                .map(|i| format!("accounts[{i}].username")),
            _ => None,
        };
        let body = apply_error(e);
        match field {
            Some(field) => body.with_field(field),
            None => body,
        }
    }
}

fn put_run<S: System>(applier: &Applier<S>, run: Vec<PutRequest>) {
    if run.len() > 1 {
        let all: Vec<AccountSpec> = run.iter().flat_map(|r| r.specs.iter().cloned()).collect();
        match applier.put(&all) {
            Ok(changed) => {
                let mut rest = &changed[..];
                for request in run {
                    let (mine, tail) = rest.split_at(request.specs.len().min(rest.len()));
                    rest = tail;
                    let _ = request.reply.send(Ok(mine.to_vec()));
                }
                return;
            }
            // One request was refused: apply each alone so the others still land.
            Err(
                ApplyError::Rejected { .. }
                | ApplyError::UserTaken { .. }
                | ApplyError::ZoneTaken { .. }
                | ApplyError::DbTaken { .. }
                | ApplyError::Invalid(_)
                | ApplyError::RoleNotServed { .. },
            ) => {}
            Err(e) => {
                let body = apply_error(e);
                for request in run {
                    let _ = request.reply.send(Err(body.clone()));
                }
                return;
            }
        }
    }
    for request in run {
        let result = applier.put(&request.specs).map_err(|e| request.error(e));
        let _ = request.reply.send(result);
    }
}
