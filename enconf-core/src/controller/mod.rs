//! The controller: what the Management API does, as a library.
//!
//! [`Controller`] ties the [`Store`] (what is recorded) to the agents (what is done, through an
//! [`AgentTransport`]). Its rules:
//!
//! - **Offline agents block.** An operation on a server whose agent is unreachable is refused
//!   with `503 agent_offline` before anything is recorded or sent.
//! - **Recorded before done, never done-and-forgotten.** A new account is recorded
//!   `provisioning` (placement and uniqueness in the same transaction), then sent to its agent,
//!   then marked `active`. When the agent refuses, or the call breaks off after the request may
//!   have reached it, the account is marked `failed`. When the request certainly never reached
//!   the agent (connection refused), the record is removed again and nothing remains.
//! - **Deleted when the agent has deleted.** An account leaves the store only after its agent
//!   confirmed the delete.
//!
//! The [`api`] module serves all of this over HTTP; [`health`] keeps servers' health current;
//! [`install`] writes agent installation scripts.
//!
//! See the crate documentation for a controller embedded in a program of one's own.

mod accounts;
mod admins;
mod agent_tls;
pub mod api;
pub mod backup;
pub mod db;
pub mod dns;
pub mod health;
pub mod install;
pub mod jobs;
pub mod mail;
mod migrate;
pub mod once;
mod roles;
pub mod ssl;
mod tokens;
pub mod updates;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::{Health, Server, ServerId, ValidationError};
use crate::protocol::{AgentHealth, ErrorBody, ErrorCode, ServerInput, ServerPatch, ServerView};
use crate::store::{Store, StoreError};
use crate::transport::{AgentClient, AgentEndpoint, AgentTransport, TransportError};

/// How the controller behaves; [`ControllerConfig::default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The newest agent version known; agents older than it show `update_available`.
    pub newest_agent: semver::Version,
    /// The longest a health check of one agent may take.
    pub health_timeout: Duration,
    /// How many agents are checked at the same time at most.
    pub health_concurrency: usize,
    /// The window over which a health round's checks start, each agent at its own offset
    /// (from its id), so that a thousand agents are not all asked at the same instant.
    pub health_spread: Duration,
    /// How long before expiry an ACME or self-signed certificate is renewed.
    pub renew_before: Duration,
    /// How many snapshots an account's repository keeps.
    pub retention: crate::domain::backup::Retention,
    /// The nightly window of scheduled backups: its start (seconds after midnight UTC) and
    /// length; each account's backup starts at its own offset in it.
    pub backup_window: (u32, u32),
    /// How often a running job asks its agent how far it is.
    pub job_poll: Duration,
    /// Whether a server's agent may be reached over plain HTTP on an address other than
    /// loopback (its token then crosses the network in clear; such servers show a `warning`).
    /// `true` here for programs embedding the library; the `enconf-controller` binary refuses
    /// it unless `ENCONF_ALLOW_PLAIN_HTTP_AGENTS` is set.
    pub allow_plain_http_agents: bool,
    /// Whether installation scripts make agents require the controller's client certificate
    /// on top of the token (mutual TLS, `ENCONF_AGENT_MTLS`); the controller presents one to
    /// every agent either way.
    pub agent_mtls: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            newest_agent: crate::version::release(),
            health_timeout: Duration::from_secs(10),
            health_concurrency: 256,
            health_spread: Duration::from_millis(500),
            renew_before: Duration::from_secs(30 * 24 * 3600),
            retention: crate::domain::backup::Retention::default(),
            backup_window: (3600, 4 * 3600),
            job_poll: Duration::from_secs(1),
            allow_plain_http_agents: true,
            agent_mtls: false,
        }
    }
}

/// Why a controller operation failed. Each maps to one API error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The named server cannot take the account; `field` names it at the API.
    #[error("{error}")]
    Unfit {
        field: &'static str,
        error: crate::placement::PlacementError,
    },
    /// An uploaded certificate or key is not acceptable.
    #[error(transparent)]
    Certificate(#[from] crate::ssl::cert::CertError),
    /// A certificate could not be issued.
    #[error("certificate issuance failed: {0}")]
    Issue(String),
    /// The server's agent is unreachable: nothing was done.
    #[error("server {server} is offline: {reason}")]
    Offline { server: ServerId, reason: String },
    /// The agent failed or refused the operation.
    #[error("the agent of server {server} failed: {source}")]
    Agent {
        server: ServerId,
        #[source]
        source: TransportError,
    },
    /// The agent is at the newest version known, or newer: no update (never a downgrade).
    #[error("server {server}: the agent is at {agent}, the newest known is {newest}")]
    UpToDate {
        server: ServerId,
        agent: String,
        newest: String,
    },
    /// An agent's upgrade failed or could not start.
    #[error("server {server}: {reason}")]
    Upgrade { server: ServerId, reason: String },
    /// A fault of the controller itself (not the request's): logged, answered `500`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ControllerError> for ErrorBody {
    fn from(e: ControllerError) -> Self {
        match e {
            ControllerError::Invalid(v) => v.into(),
            ControllerError::Store(StoreError::Backend(ref inner)) => {
                tracing::error!(error = %inner, "storage failure");
                ErrorBody::new(ErrorCode::Internal, "storage failure")
            }
            ControllerError::Store(s) => s.into(),
            ControllerError::Unfit { field, error } => {
                let mut body = ErrorBody::from(error);
                body.error.field = Some(field.to_owned());
                body
            }
            ControllerError::Certificate(c) => match c.field() {
                Some(field) => ErrorBody::new(ErrorCode::Invalid, c.to_string()).with_field(field),
                None => {
                    tracing::error!(error = %c, "certificate generation failed");
                    ErrorBody::new(ErrorCode::Internal, "certificate generation failed")
                }
            },
            ControllerError::Issue(_) => ErrorBody::new(ErrorCode::AgentError, e.to_string()),
            ControllerError::Internal(ref what) => {
                tracing::error!(error = %what, "internal error");
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
            ControllerError::Offline { .. } => {
                ErrorBody::new(ErrorCode::AgentOffline, e.to_string())
            }
            ControllerError::UpToDate { .. } => ErrorBody::new(ErrorCode::UpToDate, e.to_string()),
            ControllerError::Upgrade { .. } => ErrorBody::new(ErrorCode::AgentError, e.to_string()),
            ControllerError::Agent { server, ref source } if source.conflict().is_some() => {
                let mut body = source.conflict().cloned().unwrap_or_else(|| {
                    ErrorBody::new(ErrorCode::Duplicate, "the agent refused a conflict")
                });
                body.error.message = format!("server {server}: {}", body.error.message);
                body
            }
            ControllerError::Agent { ref source, .. } => {
                let code = if source.is_offline() {
                    ErrorCode::AgentOffline
                } else {
                    ErrorCode::AgentError
                };
                ErrorBody::new(code, e.to_string())
            }
        }
    }
}

type Result<T, E = ControllerError> = std::result::Result<T, E>;

/// What time it is, for certificate checks and renewals (a test sets its own).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The controller's operations over a store and a transport to agents.
#[derive(Clone)]
pub struct Controller {
    store: Arc<dyn Store>,
    transport: Arc<dyn AgentTransport>,
    config: ControllerConfig,
    /// The issuer of `letsencrypt` certificates; `None`: ACME is not configured.
    acme: Option<Arc<dyn crate::ssl::issue::Issuer>>,
    clock: Clock,
    /// Who is issuing and installing which certificate now.
    ssl_work: Arc<ssl::SslWork>,
    /// This controller's name in leases (see [`once`]).
    instance: Arc<str>,
    /// The agent's repository and the newest version read from it.
    release: Arc<updates::AgentRelease>,
    /// The authority that issues agents' HTTPS certificates, when configured.
    agent_ca: Option<Arc<crate::ssl::ca::AgentCa>>,
    /// Held by a token rotation until its agent dropped the old token.
    rotations: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("store", &self.store)
            .field("transport", &self.transport)
            .field("config", &self.config)
            .field("acme", &self.acme)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        transport: Arc<dyn AgentTransport>,
        config: ControllerConfig,
    ) -> Self {
        Self {
            store,
            transport,
            config,
            acme: None,
            clock: Arc::new(OffsetDateTime::now_utc),
            ssl_work: Arc::default(),
            instance: once::instance_name().into(),
            release: Arc::default(),
            agent_ca: None,
            rotations: Arc::default(),
        }
    }

    /// Issues `letsencrypt` certificates with `issuer` (an [`Acme`](crate::ssl::issue::Acme)
    /// in production).
    pub fn with_acme(mut self, issuer: Arc<dyn crate::ssl::issue::Issuer>) -> Self {
        self.acme = Some(issuer);
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    fn view(&self, server: &Server) -> ServerView {
        let mut view = ServerView::new(server, &self.config.newest_agent);
        view.update_available = self.update_available(server);
        view
    }

    /// Every server, by id.
    pub async fn servers(&self) -> Result<Vec<ServerView>> {
        let servers = self.store.servers().await?;
        Ok(servers.iter().map(|s| self.view(s)).collect())
    }

    /// One page of the servers (`GET /api/v1/servers`), by id.
    pub async fn servers_page(
        &self,
        query: &crate::protocol::list::ListQuery,
    ) -> Result<crate::protocol::list::Page<ServerView>> {
        let paging = query.paging()?;
        query.unfiltered()?;
        let servers = self
            .store
            .servers_page(paging.after.map(ServerId), paging.limit + 1)
            .await?;
        let views = servers.iter().map(|s| self.view(s)).collect();
        Ok(crate::protocol::list::Page::of(
            views,
            paging.limit,
            |s: &ServerView| s.id.0,
        ))
    }

    pub async fn server(&self, id: ServerId) -> Result<ServerView> {
        Ok(self.view(&self.store.server(id).await?))
    }

    /// Adds a server, with what a check of its agent sees at once (a server is added whether or
    /// not its agent answers yet: the install script comes from the server's record). An agent
    /// that is already another server's, under any spelling of its URL, is refused (`409`
    /// naming `agent_url`).
    pub async fn add_server(&self, input: &ServerInput) -> Result<ServerView> {
        let (spec, token) = input.validate()?;
        self.check_transport(&spec)?;
        let endpoint = AgentEndpoint {
            url: spec.agent_url.clone(),
            token: token.clone(),
        };
        let health = self.probe(&endpoint, &Health::default(), false).await;
        let server = self.store.insert_server(spec, token, health).await?;
        tracing::info!(server = %server.id, name = %server.spec.name, reachable = server.health.reachable, "server added");
        if server.spec.roundcube_path.is_some()
            && server.spec.roles.contains(crate::domain::Role::Mail)
            && server.health.reachable
            && let Err(e) = self.send_webmail(&server).await
        {
            tracing::warn!(server = %server.id, error = %e, "webmail is not served: change the server's roundcube_path to try again");
        }
        if server.spec.phpmyadmin_path.is_some()
            && server.spec.roles.contains(crate::domain::Role::Db)
            && server.health.reachable
            && let Err(e) = self.send_phpmyadmin(&server).await
        {
            tracing::warn!(server = %server.id, error = %e, "phpMyAdmin is not served: change the server's phpmyadmin_path to try again");
        }
        Ok(self.view(&server))
    }

    /// Changes some of a server's fields. A new agent URL or token is used from the next call
    /// on; the agent is checked at once when either changed, and one that is another server's
    /// is refused (`409` naming `agent_url`) with nothing changed.
    pub async fn patch_server(&self, id: ServerId, patch: &ServerPatch) -> Result<ServerView> {
        let current = self.store.server(id).await?;
        let (spec, token) = patch.apply(&current.spec)?;
        if spec.agent_url != current.spec.agent_url {
            self.check_transport(&spec)?;
        }
        let reach_changed = spec.agent_url != current.spec.agent_url || token.is_some();
        if reach_changed {
            let endpoint = AgentEndpoint {
                url: spec.agent_url.clone(),
                token: token.clone().unwrap_or_else(|| current.token.clone()),
            };
            let seen = self.probe(&endpoint, &current.health, false).await;
            if let Some(agent) = &seen.agent_id
                && let Some(other) = self
                    .store
                    .servers()
                    .await?
                    .iter()
                    .find(|s| s.id != id && s.health.agent_id.as_ref() == Some(agent))
            {
                return Err(StoreError::SameAgent { server: other.id }.into());
            }
        }
        // Webmail (mail role) and phpMyAdmin (db role) change on the agent first: a path it
        // cannot serve is not recorded. A role the server loses takes its application along.
        if current.health.reachable {
            use crate::domain::Role;
            let either = |role| spec.roles.contains(role) || current.spec.roles.contains(role);
            let mut next = current.clone();
            next.spec = spec.clone();
            if let Some(t) = &token {
                next.token = t.clone();
            }
            if !next.spec.roles.contains(Role::Mail) {
                next.spec.roundcube_path = None;
            }
            if !next.spec.roles.contains(Role::Db) {
                next.spec.phpmyadmin_path = None;
            }
            if spec.roundcube_path != current.spec.roundcube_path && either(Role::Mail) {
                self.send_webmail(&next).await?;
            }
            if spec.phpmyadmin_path != current.spec.phpmyadmin_path && either(Role::Db) {
                self.send_phpmyadmin(&next).await?;
            }
        }
        let dns = crate::domain::Role::Dns;
        let joins_dns = spec.active
            && spec.roles.contains(dns)
            && !(current.spec.active && current.spec.roles.contains(dns));
        let names_changed = spec.hostname != current.spec.hostname
            || spec.mail_hostname != current.spec.mail_hostname
            || spec.ipv4 != current.spec.ipv4
            || spec.ipv6 != current.spec.ipv6;
        let server = self.store.update_server(id, spec, token).await?;
        tracing::info!(server = %id, "server changed");
        let server = if reach_changed {
            self.check(server).await?
        } else {
            server
        };
        // Off the request: zones follow what changed (a dns server made active serves every
        // account's zones; a changed address or host name changes the records naming it), and
        // so do the grants of database users who connect from this server.
        if (joins_dns || names_changed) && server.health.reachable {
            let controller = self.clone();
            tokio::spawn(async move { controller.follow_server(id, joins_dns).await });
        }
        Ok(self.view(&server))
    }

    /// Brings the zones of the accounts using server `id` in step with it (and, with `join`,
    /// makes it serve every account's zones): best effort, logged.
    async fn follow_server(&self, id: ServerId, join: bool) {
        if join && let Err(e) = self.reconcile(id).await {
            tracing::warn!(server = %id, error = %e, "the dns server does not serve every zone yet");
        }
        let accounts = match self.store.accounts_on(id).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(server = %id, error = %e, "zones not brought in step with the server");
                return;
            }
        };
        for account in accounts
            .iter()
            .filter(|a| a.spec.roles.contains(crate::domain::Role::Dns))
        {
            let followed = async {
                if self.refresh_managed(account, None).await? {
                    self.push_zones(account.id).await?;
                }
                Ok::<(), ControllerError>(())
            }
            .await;
            if let Err(e) = followed {
                tracing::warn!(account = %account.id, server = %id, error = %e, "the zones could not follow the server; a reconciliation of the dns servers brings them up to date");
            }
        }
        for account in accounts.iter().filter(|a| {
            a.servers.one(crate::domain::Role::Web) == Some(id)
                && a.servers
                    .one(crate::domain::Role::Db)
                    .is_some_and(|db| db != id)
        }) {
            self.db_follow_web(account).await;
        }
    }

    /// Deletes a server that hosts no accounts (`409 server_has_accounts` otherwise).
    /// Tells a db server where to serve phpMyAdmin (its `phpmyadmin_path`, or nowhere).
    async fn send_phpmyadmin(&self, server: &Server) -> Result<()> {
        let put = crate::protocol::db::PhpMyAdminPut {
            path: server.spec.phpmyadmin_path.clone(),
        };
        self.send_server_app(server, async |c| c.put_phpmyadmin(&put).await)
            .await
    }

    /// Sends a server-wide setting (webmail, phpMyAdmin) to a server's agent.
    async fn send_server_app(
        &self,
        server: &Server,
        call: impl AsyncFnOnce(
            AgentClient<'_>,
        )
            -> std::result::Result<crate::protocol::agent::Applied, TransportError>,
    ) -> Result<()> {
        let endpoint = AgentEndpoint::from(server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        match call(client).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if e.is_offline() {
                    self.mark_unreachable(server, &e).await;
                }
                Err(Self::agent_error(server.id, e))
            }
        }
    }

    /// Tells a mail server where to serve Roundcube (its `roundcube_path`, or nowhere).
    async fn send_webmail(&self, server: &Server) -> Result<()> {
        let put = crate::protocol::mail::WebmailPut {
            path: server.spec.roundcube_path.clone(),
        };
        self.send_server_app(server, async |c| c.put_webmail(&put).await)
            .await
    }

    pub async fn delete_server(&self, id: ServerId) -> Result<()> {
        self.store.delete_server(id).await?;
        self.forget_ssl(id).await;
        tracing::info!(server = %id, "server deleted");
        Ok(())
    }

    /// Checks a server's agent now and records what was seen.
    pub async fn check_server(&self, id: ServerId) -> Result<ServerView> {
        let server = self.check(self.store.server(id).await?).await?;
        Ok(self.view(&server))
    }

    /// The installation script for a server's agent.
    ///
    /// For an `https` agent, and with the controller's agent authority, it carries a new
    /// certificate and key for the server's hostname and the agent URL's host.
    pub async fn install_script(&self, id: ServerId) -> Result<String> {
        let server = self.store.server(id).await?;
        let url = server.spec.agent_url.url();
        let issued = match &self.agent_ca {
            Some(ca) if url.scheme().as_str() == "https" => {
                Some(ca.issue(&agent_names(&server.spec), self.now())?)
            }
            _ => None,
        };
        let tls = issued
            .as_ref()
            .zip(self.agent_ca.as_ref())
            .map(|(bundle, ca)| install::AgentTlsFiles {
                chain_pem: &bundle.chain_pem,
                key_pem: &bundle.key_pem,
                ca_pem: ca.cert_pem(),
                mutual: self.config.agent_mtls,
            });
        Ok(install::script(
            &server.spec,
            server.token.expose_secret(),
            self.agent_repository().map(|r| r.source().text.as_str()),
            tls.as_ref(),
        ))
    }

    /// Issues agent certificates with `ca` (and the transport should trust only it).
    pub fn with_agent_ca(mut self, ca: Arc<crate::ssl::ca::AgentCa>) -> Self {
        self.agent_ca = Some(ca);
        self
    }

    /// What the agent at `endpoint` says of itself (within the configured timeout), not
    /// recorded anywhere.
    pub async fn agent_health(
        &self,
        endpoint: &AgentEndpoint,
    ) -> std::result::Result<AgentHealth, TransportError> {
        let client = AgentClient::new(&*self.transport, endpoint);
        tokio::time::timeout(self.config.health_timeout, client.health())
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Interrupted(format!(
                    "no answer within {} s",
                    self.config.health_timeout.as_secs_f64()
                )))
            })
    }

    /// Asks the agent for its health (within the configured timeout) and records the result.
    pub(crate) async fn check(&self, server: Server) -> Result<Server> {
        let health = self.probed(&server, false).await;
        let recorded = self.store.record_health(&server, health).await?;
        self.after_check(&server, &recorded);
        Ok(recorded)
    }

    /// What a check of `server`'s agent sees (`tolerant`: a miss leaves a reachable server
    /// reachable until [`OFFLINE_AFTER`](crate::domain::OFFLINE_AFTER) in a row, as the
    /// health monitor records it).
    pub(crate) async fn probed(&self, server: &Server, tolerant: bool) -> Health {
        let mut health = self
            .probe(&AgentEndpoint::from(server), &server.health, tolerant)
            .await;
        // Reachable, but not serving every role the server is recorded with: said where the
        // admin looks (the agent refuses those roles' requests).
        if let Some(served) = health.agent_roles
            && health.reachable
            && health.last_error.is_none()
        {
            let missing = server.spec.roles.difference(served);
            if !missing.is_empty() {
                health.last_error = Some(format!(
                    "the agent does not serve {missing} (its AGENT_ROLES is {served})"
                ));
            }
        }
        health
    }

    /// After a check was recorded (not recorded when the URL or token was edited while it ran:
    /// the store compares them in the recording transaction): a dns server back online may
    /// have missed zone changes, and is brought up to date at once, off the health round.
    pub(crate) fn after_check(&self, checked: &Server, recorded: &Server) {
        if recorded.health.reachable != checked.health.reachable {
            tracing::info!(
                server = %recorded.id,
                reachable = recorded.health.reachable,
                error = recorded.health.last_error.as_deref().unwrap_or(""),
                "agent reachability changed"
            );
        }
        let back = recorded.health.reachable && !checked.health.reachable;
        if back && recorded.spec.roles.contains(crate::domain::Role::Dns) {
            let controller = self.clone();
            let id = recorded.id;
            tokio::spawn(async move {
                match controller.reconcile(id).await {
                    Ok(report) => {
                        tracing::info!(server = %id, repaired = report.repaired.len(), "dns server back online: zones brought up to date")
                    }
                    Err(e) => {
                        tracing::warn!(server = %id, error = %e, "dns server back online: zones not brought up to date")
                    }
                }
            });
        }
    }

    /// What the agent at `endpoint` says of itself now (within the configured timeout);
    /// `previous` is what was known of it, kept when it does not answer.
    async fn probe(&self, endpoint: &AgentEndpoint, previous: &Health, tolerant: bool) -> Health {
        let client = AgentClient::new(&*self.transport, endpoint);
        let answer = tokio::time::timeout(self.config.health_timeout, client.health()).await;
        let now = OffsetDateTime::now_utc();
        match answer {
            Ok(Ok(h)) => {
                let agent_id = h.agent_id.filter(|id| AgentHealth::valid_agent_id(id));
                let agent_roles = h.roles.as_ref().map(|r| r.keys().copied().collect());
                let php_versions = h.php_versions.as_ref().map(|versions| {
                    versions
                        .iter()
                        .filter_map(|v| crate::domain::PhpVersion::parse(v).ok())
                        .collect()
                });
                let (agent_version, last_error) = match semver::Version::parse(&h.version) {
                    Ok(version) => (Some(version), None),
                    Err(e) => (
                        None,
                        Some(format!("the agent reports version {:?}: {e}", h.version)),
                    ),
                };
                let addresses = h
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
                    .filter(|a| !a.is_loopback() && !a.is_unspecified() && !a.is_multicast())
                    .take(8)
                    .collect();
                let tls_not_after = h.tls_not_after.as_deref().and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                });
                Health {
                    addresses,
                    agent_version,
                    reachable: true,
                    last_seen: Some(now),
                    last_error,
                    agent_id,
                    agent_roles,
                    php_versions,
                    failures: 0,
                    tls_not_after,
                }
            }
            Ok(Err(e)) => Self::missed(previous, e.to_string(), tolerant),
            Err(_) => Self::missed(
                previous,
                format!(
                    "no answer within {} s",
                    self.config.health_timeout.as_secs_f64()
                ),
                tolerant,
            ),
        }
    }

    /// The health of an agent that did not answer a check: what was known stays, the error
    /// is new; with `tolerant`, a reachable server stays so until
    /// [`OFFLINE_AFTER`](crate::domain::OFFLINE_AFTER) misses in a row.
    fn missed(previous: &Health, error: String, tolerant: bool) -> Health {
        let failures = previous.failures.saturating_add(1);
        Health {
            reachable: tolerant && previous.reachable && failures < crate::domain::OFFLINE_AFTER,
            last_error: Some(error),
            failures,
            ..previous.clone()
        }
    }

    /// The health of an agent a call found unreachable: offline at once.
    fn unreachable(previous: &Health, error: String) -> Health {
        Self::missed(previous, error, false)
    }

    /// Records that a call found the agent unreachable, so placement and the table see it at
    /// once rather than at the next health check.
    async fn mark_unreachable(&self, server: &Server, error: &TransportError) {
        let health = Self::unreachable(&server.health, error.to_string());
        if let Err(e) = self.store.record_health(server, health).await {
            tracing::warn!(server = %server.id, error = %e, "could not record the agent as offline");
        }
    }

    /// A server named in a request body: one that does not exist is the input's fault (`422`
    /// naming `field`), not a missing path (`404`).
    async fn named_server(&self, id: ServerId, field: &str) -> Result<Server> {
        match self.store.server(id).await {
            Err(StoreError::NotFound { .. }) => {
                Err(crate::domain::Rule::UnknownServer.at(field).into())
            }
            other => Ok(other?),
        }
    }

    /// Refuses a plain-HTTP agent across the network unless the configuration allows it.
    fn check_transport(&self, spec: &crate::domain::ServerSpec) -> Result<()> {
        if spec.agent_url.is_plain_over_network() && !self.config.allow_plain_http_agents {
            return Err(crate::domain::Rule::PlainHttp.at("agent_url").into());
        }
        Ok(())
    }

    /// Refuses when the server's agent is known to be offline.
    fn require_online(server: &Server) -> Result<()> {
        if server.health.reachable {
            return Ok(());
        }
        Err(ControllerError::Offline {
            server: server.id,
            reason: server
                .health
                .last_error
                .clone()
                .unwrap_or_else(|| "its agent has not answered yet".into()),
        })
    }
}

/// The names an agent's certificate is for: the server's hostname and its agent URL's host.
fn agent_names(spec: &crate::domain::ServerSpec) -> Vec<crate::ssl::ca::AgentName> {
    use crate::domain::Host;
    use crate::ssl::ca::AgentName;
    let mut names = vec![AgentName::Dns(spec.hostname.to_string())];
    let host = match spec.agent_url.url().host() {
        Host::Name(n) => AgentName::Dns(n.to_string()),
        Host::Ipv4(a) => AgentName::Ip((*a).into()),
        Host::Ipv6(a) => AgentName::Ip((*a).into()),
    };
    if !names.contains(&host) {
        names.push(host);
    }
    names
}
