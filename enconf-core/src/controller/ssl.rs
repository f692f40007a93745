//! SSL per server: the panel certificate (hostname) and the mail certificate (mail hostname),
//! issued by one of the [`Issuer`]s, installed by the server's agent, recorded in the store,
//! and renewed before expiry when they come from ACME.
//!
//! - `custom` and `selfsigned` are done within the request: the certificate is checked (or
//!   made), installed by the agent, then recorded. A refused upload is a `422` naming the
//!   field, and nothing is installed or recorded.
//! - `letsencrypt` is recorded `pending` and issued in the background (the CA's checks take
//!   time); `GET` shows how it went. A failure is recorded with its error and retried with
//!   back-off; the certificate installed before stays in use.
//! - Renewal: [`Controller::renew_due`] (run by the monitor every round) renews ACME and
//!   self-signed certificates [`renew_before`](super::ControllerConfig::renew_before) their
//!   expiry, or at once when the server's hostname no longer matches them.
//! - An installed certificate that has expired, or does not cover the server's name now,
//!   shows `failed` whatever its mode; an upload stays so until the admin replaces it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Controller, ControllerError, Result};
use crate::domain::{DomainName, Rule, Server, ServerId};
use crate::protocol::agent::ChallengePut;
use crate::protocol::{SslInput, SslMode, SslRequest, SslState, SslStatus};
use crate::ssl::CertKind;
use crate::ssl::cert::{self, CertBundle, CertInfo};
use crate::ssl::issue::{ChallengeResponder, Custom, IssueError, IssueRequest, Issuer, SelfSigned};
use crate::store::StoreError;
use crate::transport::{AgentClient, AgentEndpoint, AgentTransport};

/// The longest wait between two attempts at a failing ACME certificate.
const MAX_BACKOFF: time::Duration = time::Duration::hours(24);
/// The wait after the first failure; doubled after each further one.
const FIRST_BACKOFF: time::Duration = time::Duration::minutes(30);
/// How long one issuance may hold its certificate's lease (an ACME order is given 90 s per
/// wait); a controller that dies mid-issuance lets another try after this.
const ATTEMPT_LEASE: std::time::Duration = std::time::Duration::from_secs(600);

/// Where certificate records are kept in the store's settings.
const SETTING_PREFIX: &str = "ssl:";

fn setting_key(server: ServerId, kind: CertKind) -> String {
    format!("{SETTING_PREFIX}{server}:{kind}")
}

/// A stored record; `null` is how releases before `delete_setting` forgot one.
fn parse_record(value: serde_json::Value) -> Result<Option<SslRecord>> {
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| StoreError::Backend(Box::new(e)).into())
}

/// A certificate as the controller keeps it (with its key: the store is private).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SslRecord {
    mode: SslMode,
    status: SslStatus,
    last_error: Option<String>,
    /// What is installed on the agent.
    bundle: Option<CertBundle>,
    info: Option<CertInfo>,
    /// Failed attempts in a row.
    failures: u32,
    /// When to try a failing ACME certificate again.
    #[serde(with = "time::serde::rfc3339::option")]
    next_attempt: Option<OffsetDateTime>,
}

impl SslRecord {
    /// What the API shows at `now` for a server whose certificate must cover `names`: an
    /// installed certificate past its expiry, or not covering a name the server has now (its
    /// hostname was edited since), is `failed`, whatever the mode (an upload nobody replaced,
    /// a renewal that could not run or has not run yet).
    fn state(&self, now: OffsetDateTime, names: &[DomainName]) -> SslState {
        let info = self.info.as_ref();
        let fault = info
            .filter(|_| self.status == SslStatus::Active)
            .and_then(|i| {
                if i.not_after <= now {
                    return Some(format!("the certificate expired at {}", rfc3339(i.not_after)));
                }
                let missing = self.uncovered(names)?;
                Some(format!(
                    "the certificate does not cover {missing}, the server's name now (it covers: {})",
                    i.subject_names.join(", ")
                ))
            });
        let (status, last_error) = match fault {
            Some(fault) => (
                SslStatus::Failed,
                Some(self.last_error.clone().unwrap_or(fault)),
            ),
            None => (self.status, self.last_error.clone()),
        };
        SslState {
            mode: Some(self.mode),
            subject_names: info.map(|i| i.subject_names.clone()).unwrap_or_default(),
            issuer: info.map(|i| i.issuer.clone()),
            not_before: info.map(|i| i.not_before),
            not_after: info.map(|i| i.not_after),
            status,
            last_error,
            testing_only: self.mode == SslMode::Selfsigned,
        }
    }

    /// The first of `names` the installed certificate does not cover (a hostname edited since
    /// it was made); `None` when it covers them all or nothing is installed.
    fn uncovered<'n>(&self, names: &'n [DomainName]) -> Option<&'n DomainName> {
        let info = self.info.as_ref()?;
        names.iter().find(|n| !info.covers(n))
    }

    fn installed(mode: SslMode, bundle: CertBundle, info: CertInfo) -> Self {
        Self {
            mode,
            status: SslStatus::Active,
            last_error: None,
            bundle: Some(bundle),
            info: Some(info),
            failures: 0,
            next_attempt: None,
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Doubles from [`FIRST_BACKOFF`] with each failure, up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> time::Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2_i32.pow(doublings)).min(MAX_BACKOFF)
}

/// Certificate attempts that may run at once (an ACME one holds an order open at the CA and
/// challenge answers on an agent); rounds with more due certificates queue for a slot.
const ATTEMPT_SLOTS: usize = 8;

type CertId = (ServerId, CertKind);

/// Who is issuing and installing which certificate now.
#[derive(Debug)]
pub(super) struct SslWork {
    /// Certificates with an attempt under way, so that one is not issued twice at once.
    issuing: std::sync::Mutex<HashSet<CertId>>,
    /// One lock per certificate, held from reading its record to saving it, around the install
    /// on the agent: a mode switch and a finishing ACME attempt cannot cross.
    installs: std::sync::Mutex<HashMap<CertId, Arc<tokio::sync::Mutex<()>>>>,
    attempt_slots: tokio::sync::Semaphore,
}

impl Default for SslWork {
    fn default() -> Self {
        Self {
            issuing: std::sync::Mutex::default(),
            installs: std::sync::Mutex::default(),
            attempt_slots: tokio::sync::Semaphore::new(ATTEMPT_SLOTS),
        }
    }
}

impl SslWork {
    /// Marks `cert` as being issued until the claim is dropped (also when the attempt panics
    /// or is cancelled); `None` if it already is.
    fn claim(self: &Arc<Self>, cert: CertId) -> Option<IssuingClaim> {
        let mut issuing = self
            .issuing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        issuing.insert(cert).then(|| IssuingClaim {
            work: Arc::clone(self),
            cert,
        })
    }

    /// Waits for the install lock of `cert`.
    async fn lock(&self, cert: CertId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut installs = self
                .installs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(installs.entry(cert).or_default())
        };
        lock.lock_owned().await
    }

    /// Drops the install locks of a deleted server.
    fn forget(&self, server: ServerId) {
        self.installs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(id, _), _| *id != server);
    }
}

/// See [`SslWork::claim`].
struct IssuingClaim {
    work: Arc<SslWork>,
    cert: CertId,
}

impl Drop for IssuingClaim {
    fn drop(&mut self) {
        self.work
            .issuing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.cert);
    }
}

/// Answers HTTP-01 challenges through the server's agent.
#[derive(Debug)]
struct AgentChallenges {
    transport: Arc<dyn AgentTransport>,
    endpoint: AgentEndpoint,
}

#[async_trait]
impl ChallengeResponder for AgentChallenges {
    async fn publish(
        &self,
        names: &[DomainName],
        token: &str,
        key_authorization: &str,
    ) -> std::result::Result<(), String> {
        let put = ChallengePut {
            names: names.iter().map(ToString::to_string).collect(),
            key_authorization: key_authorization.to_owned(),
        };
        AgentClient::new(&*self.transport, &self.endpoint)
            .put_challenge(token, &put)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn withdraw(&self, token: &str) {
        let client = AgentClient::new(&*self.transport, &self.endpoint);
        if let Err(e) = client.delete_challenge(token).await {
            tracing::warn!(error = %e, "could not withdraw an ACME challenge answer");
        }
    }
}

impl Controller {
    async fn load_ssl(&self, id: ServerId, kind: CertKind) -> Result<Option<SslRecord>> {
        match self.store.setting(&setting_key(id, kind)).await? {
            Some(value) => parse_record(value),
            None => Ok(None),
        }
    }

    async fn save_ssl(&self, id: ServerId, kind: CertKind, record: &SslRecord) -> Result<()> {
        let value = serde_json::to_value(record).map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(self
            .store
            .put_setting(&setting_key(id, kind), value)
            .await?)
    }

    /// Forgets a deleted server's certificates.
    pub(super) async fn forget_ssl(&self, id: ServerId) {
        for kind in [CertKind::Panel, CertKind::Mail] {
            let _install = self.ssl_work.lock((id, kind)).await;
            if let Err(e) = self.store.delete_setting(&setting_key(id, kind)).await {
                tracing::warn!(server = %id, error = %e, "could not forget a certificate");
            }
        }
        self.ssl_work.forget(id);
    }

    /// The names a certificate of `kind` covers on `server`.
    fn cert_names(server: &Server, kind: CertKind) -> Result<Vec<DomainName>> {
        match kind {
            CertKind::Panel => Ok(vec![server.spec.hostname.clone()]),
            CertKind::Mail => match &server.spec.mail_hostname {
                Some(mail) => Ok(vec![mail.clone()]),
                None => Err(Rule::Required.at("mail_hostname").into()),
            },
        }
    }

    /// A server's panel or mail certificate.
    pub async fn ssl(&self, id: ServerId, kind: CertKind) -> Result<SslState> {
        let server = self.store.server(id).await?;
        // A mail certificate kept after the mail hostname was cleared has nothing to cover.
        let names = Self::cert_names(&server, kind).unwrap_or_default();
        Ok(self
            .load_ssl(id, kind)
            .await?
            .map_or_else(SslState::unset, |r| r.state(self.now(), &names)))
    }

    /// Sets how a server's certificate is obtained, and obtains it (see the module's text).
    pub async fn set_ssl(
        &self,
        id: ServerId,
        kind: CertKind,
        input: &SslInput,
    ) -> Result<SslState> {
        let request = input.validate()?;
        let server = self.store.server(id).await?;
        let names = Self::cert_names(&server, kind)?;
        Self::require_online(&server)?;
        let issuer: Arc<dyn Issuer> = match request {
            SslRequest::Custom { chain_pem, key_pem } => Arc::new(Custom::new(chain_pem, key_pem)),
            SslRequest::Selfsigned => Arc::new(SelfSigned),
            SslRequest::Letsencrypt => {
                let acme = self
                    .acme
                    .clone()
                    .ok_or_else(|| Rule::AcmeNotConfigured.at("mode"))?;
                let _install = self.ssl_work.lock((id, kind)).await;
                let previous = self.load_ssl(id, kind).await?;
                let record = SslRecord {
                    mode: SslMode::Letsencrypt,
                    status: SslStatus::Pending,
                    last_error: None,
                    bundle: previous.as_ref().and_then(|r| r.bundle.clone()),
                    info: previous.and_then(|r| r.info),
                    failures: 0,
                    next_attempt: None,
                };
                self.save_ssl(id, kind, &record).await?;
                let controller = self.clone();
                tokio::spawn(async move { controller.attempt(id, kind, acme).await });
                return Ok(record.state(self.now(), &names));
            }
        };
        let (bundle, info) = self.issue(&server, &names, &*issuer).await?;
        let _install = self.ssl_work.lock((id, kind)).await;
        self.install(&server, kind, &names, &bundle).await?;
        let record = SslRecord::installed(issuer.mode(), bundle, info);
        self.save_ssl(id, kind, &record).await?;
        tracing::info!(server = %id, %kind, mode = ?record.mode, "certificate installed");
        Ok(record.state(self.now(), &names))
    }

    /// Has `issuer` issue (or check) a certificate for `names`, answering challenges through
    /// the server's agent.
    async fn issue(
        &self,
        server: &Server,
        names: &[DomainName],
        issuer: &dyn Issuer,
    ) -> Result<(CertBundle, CertInfo)> {
        let challenges = AgentChallenges {
            transport: Arc::clone(&self.transport),
            endpoint: AgentEndpoint::from(server),
        };
        let request = IssueRequest {
            names,
            now: self.now(),
            challenges: &challenges,
        };
        let bundle = issuer.issue(request).await?;
        let info = cert::info(&bundle.chain_pem).map_err(IssueError::from)?;
        Ok((bundle, info))
    }

    /// Has the server's agent install a certificate; the caller holds its install lock.
    async fn install(
        &self,
        server: &Server,
        kind: CertKind,
        names: &[DomainName],
        bundle: &CertBundle,
    ) -> Result<()> {
        let endpoint = AgentEndpoint::from(server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        if let Err(e) = client.put_certificate(kind, names, bundle).await {
            if e.is_offline() {
                self.mark_unreachable(server, &e).await;
            }
            return Err(Self::agent_error(server.id, e));
        }
        Ok(())
    }

    /// One attempt by `issuer` (ACME: first issuance or renewal; self-signed: renewal),
    /// recorded whatever its outcome; `false` when it did not run (under way here or at
    /// another controller, or no longer due). A failure keeps the installed certificate and
    /// schedules the next attempt. The certificate is installed only if, once issued, the
    /// record still asks for the issuer's mode and the server still has the names it was
    /// issued for.
    async fn attempt(&self, id: ServerId, kind: CertKind, issuer: Arc<dyn Issuer>) -> bool {
        let Some(_claim) = self.ssl_work.claim((id, kind)) else {
            return false;
        };
        let Ok(_slot) = self.ssl_work.attempt_slots.acquire().await else {
            return false; // never closed
        };
        // Across controllers: one issuance of a certificate at a time, and only while it is
        // still due (another controller may have renewed it since this one looked).
        let lease = format!("{SETTING_PREFIX}{id}:{kind}");
        if !self.hold(&lease, ATTEMPT_LEASE).await {
            tracing::debug!(server = %id, %kind, "certificate: another controller is at it");
            return false;
        }
        let ran = self.attempt_held(id, kind, issuer).await;
        self.let_go(&lease).await;
        ran
    }

    /// [`attempt`](Self::attempt) once its lease is held.
    async fn attempt_held(&self, id: ServerId, kind: CertKind, issuer: Arc<dyn Issuer>) -> bool {
        let due = async {
            let server = self.store.server(id).await?;
            let record = self.load_ssl(id, kind).await?;
            Ok::<_, ControllerError>(record.is_some_and(|r| {
                r.mode == issuer.mode() && self.due(&server, kind, &r, self.now())
            }))
        };
        match due.await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::debug!(server = %id, %kind, error = %e, "certificate: not attempted");
                return false;
            }
        }
        let issued = async {
            let server = self.store.server(id).await?;
            let names = Self::cert_names(&server, kind)?;
            Self::require_online(&server)?;
            let (bundle, info) = self.issue(&server, &names, &*issuer).await?;
            Ok((names, bundle, info))
        }
        .await;
        if let Err(e) = self.finish_attempt(id, kind, issuer.mode(), issued).await {
            tracing::error!(server = %id, %kind, error = %e, "could not record a certificate attempt");
        }
        true
    }

    /// Whether the certificate `record` of `server` is due for an attempt at `now`: waiting
    /// for its first issuance (`pending`), within `renew_before` of its expiry or never issued,
    /// or not covering the server's names since an edit; and past its back-off.
    fn due(
        &self,
        server: &Server,
        kind: CertKind,
        record: &SslRecord,
        now: OffsetDateTime,
    ) -> bool {
        let renew_before =
            time::Duration::try_from(self.config.renew_before).unwrap_or(time::Duration::days(30));
        let expiring = record
            .info
            .as_ref()
            .is_none_or(|i| i.not_after - renew_before <= now);
        // A hostname edited since: the certificate is for a name the server left.
        let stale =
            Self::cert_names(server, kind).is_ok_and(|names| record.uncovered(&names).is_some());
        let pending = record.status == SslStatus::Pending;
        let waited = record.next_attempt.is_none_or(|t| t <= now);
        (expiring || stale || pending) && waited
    }

    /// Installs and records what an attempt issued, or records why it failed.
    async fn finish_attempt(
        &self,
        id: ServerId,
        kind: CertKind,
        mode: SslMode,
        issued: Result<(Vec<DomainName>, CertBundle, CertInfo)>,
    ) -> Result<()> {
        let _install = self.ssl_work.lock((id, kind)).await;
        let Some(mut record) = self.load_ssl(id, kind).await? else {
            return Ok(()); // the server was deleted meanwhile
        };
        if record.mode != mode {
            tracing::info!(server = %id, %kind, ?mode, "certificate dropped: the mode was switched meanwhile");
            return Ok(());
        }
        let outcome = match issued {
            Ok((names, bundle, info)) => match self.store.server(id).await {
                Ok(server) if Self::cert_names(&server, kind).ok().as_ref() == Some(&names) => self
                    .install(&server, kind, &names, &bundle)
                    .await
                    .map(|()| (bundle, info)),
                Ok(_) => Err(ControllerError::Issue(
                    "the server's names changed while the certificate was issued".into(),
                )),
                Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        let now = self.now();
        match outcome {
            Ok((bundle, info)) => {
                tracing::info!(server = %id, %kind, ?mode, not_after = %info.not_after, "certificate renewed");
                record = SslRecord::installed(mode, bundle, info);
            }
            Err(e) => {
                record.failures += 1;
                record.last_error = Some(e.to_string());
                record.next_attempt = Some(now + backoff(record.failures));
                let working = record.info.as_ref().is_some_and(|i| i.not_after > now)
                    && record.bundle.is_some();
                // A first issuance in this mode that failed while another certificate still
                // serves stays `pending`, so that it is tried again after its back-off.
                record.status = match (working, record.status) {
                    (false, _) => SslStatus::Failed,
                    (true, SslStatus::Pending) => SslStatus::Pending,
                    (true, _) => SslStatus::Active,
                };
                tracing::warn!(server = %id, %kind, failures = record.failures, next = ?record.next_attempt, error = %e, "certificate attempt failed");
            }
        }
        self.save_ssl(id, kind, &record).await
    }

    /// Starts an attempt for every ACME or self-signed certificate that is [due](Self::due),
    /// on reachable servers only. An uploaded one is the admin's to replace: its state turns
    /// `failed` once it has expired. Waits for them and returns how many ran (one under way
    /// already, here or at another controller sharing the store, is not counted).
    pub async fn renew_due(&self) -> usize {
        let servers = match self.store.servers().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "renewal: cannot list servers");
                return 0;
            }
        };
        let now = self.now();
        let mut records: HashMap<String, serde_json::Value> =
            match self.store.settings_with_prefix(SETTING_PREFIX).await {
                Ok(r) => r.into_iter().collect(),
                Err(e) => {
                    tracing::error!(error = %e, "renewal: cannot read the certificates");
                    return 0;
                }
            };
        let mut attempts = tokio::task::JoinSet::new();
        for server in servers.iter().filter(|s| s.health.reachable) {
            for kind in [CertKind::Panel, CertKind::Mail] {
                let Some(value) = records.remove(&setting_key(server.id, kind)) else {
                    continue;
                };
                let record = match parse_record(value) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(server = %server.id, error = %e, "renewal: cannot read a certificate");
                        continue;
                    }
                };
                let issuer: Arc<dyn Issuer> = match (record.mode, &self.acme) {
                    (SslMode::Letsencrypt, Some(acme)) => Arc::clone(acme),
                    (SslMode::Selfsigned, _) => Arc::new(SelfSigned),
                    // An upload is the admin's to replace; ACME no longer configured.
                    (SslMode::Custom | SslMode::Letsencrypt, _) => continue,
                };
                if self.due(server, kind, &record, now) {
                    let controller = self.clone();
                    let id = server.id;
                    attempts.spawn(async move { controller.attempt(id, kind, issuer).await });
                }
            }
        }
        let mut ran = 0;
        while let Some(done) = attempts.join_next().await {
            if done.unwrap_or(false) {
                ran += 1;
            }
        }
        ran
    }
}

impl From<IssueError> for ControllerError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Cert(c) => ControllerError::Certificate(c),
            IssueError::Store(s) => ControllerError::Store(s),
            other => ControllerError::Issue(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_day() {
        assert_eq!(backoff(1), time::Duration::minutes(30));
        assert_eq!(backoff(2), time::Duration::hours(1));
        assert_eq!(backoff(3), time::Duration::hours(2));
        assert_eq!(backoff(7), time::Duration::hours(24));
        assert_eq!(backoff(40), time::Duration::hours(24));
    }
}
