//! Agent updates: the newest agent package, read from the agent's signed apt repository
//! ([`crate::apt`]), drives each server's `update_available`; without a repository the
//! configured [`newest_agent`](super::ControllerConfig::newest_agent) does.
//!
//! `POST /api/v1/servers/{id}/update` is a job: the agent is asked to upgrade its own package
//! (`POST /v1/update`; it runs the upgrade outside its service), then followed: its upgrade's
//! state (through the agent's restart, when it does not answer for a while), then its health,
//! until it reports the version the job was for, which is recorded. A failed upgrade fails the
//! job with the end of apt's output; the old agent keeps running.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{Controller, ControllerError, Result};
use crate::apt::{DebVersion, RepoError, Repository};
use crate::domain::job::{JobWork, NewJob};
use crate::domain::{Server, ServerId};
use crate::protocol::agent::UpgradeStatus;
use crate::protocol::backup::JobView;
use crate::store::StoreError;
use crate::transport::{AgentClient, AgentEndpoint};

/// The longest an upgrade may take, from its start to the new agent's answer.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long the agent has, after its package was upgraded, to answer with the new version
/// (the old one finishes what it is applying first: up to two minutes).
const RESTART_GRACE: Duration = Duration::from_secs(180);

/// What the controller knows of the agent's repository.
#[derive(Debug, Default)]
pub(super) struct AgentRelease {
    repo: Option<Arc<Repository>>,
    /// The newest package version last read from it (kept when a later read fails).
    newest: RwLock<Option<DebVersion>>,
    /// Held while an update job is checked for and recorded, so that two requests at once
    /// for one server do not both record one.
    starting: tokio::sync::Mutex<()>,
}

impl AgentRelease {
    fn newest(&self) -> Option<DebVersion> {
        // A poisoned lock only means a writer panicked between two assignments of a whole
        // value: the value is still one that was written.
        match self.newest.read() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, v: Option<DebVersion>) {
        match self.newest.write() {
            Ok(mut n) => *n = v,
            Err(poisoned) => *poisoned.into_inner() = v,
        }
    }
}

impl Controller {
    /// Reads the newest agent version from `repo` (see [`refresh_agent_release`]) instead of
    /// taking the configured one.
    ///
    /// [`refresh_agent_release`]: Controller::refresh_agent_release
    pub fn with_agent_repository(mut self, repo: Repository) -> Self {
        self.release = Arc::new(AgentRelease {
            repo: Some(Arc::new(repo)),
            ..AgentRelease::default()
        });
        self
    }

    /// The agent repository, when one is configured.
    pub fn agent_repository(&self) -> Option<&Repository> {
        self.release.repo.as_deref()
    }

    /// The newest agent package the repository held when last read.
    pub fn newest_agent_package(&self) -> Option<DebVersion> {
        self.release.newest()
    }

    /// Reads the repository's signed index again. A repository that cannot be read or is not
    /// trusted leaves the version known before in place (and says why): a broken mirror does
    /// not make every server look up to date, nor offer what it claims.
    pub async fn refresh_agent_release(&self) -> Result<Option<DebVersion>, RepoError> {
        let Some(repo) = &self.release.repo else {
            return Ok(None);
        };
        let newest = repo
            .newest(crate::protocol::agent::AGENT_PACKAGE, self.now())
            .await?;
        if newest != self.release.newest() {
            tracing::info!(version = ?newest.as_ref().map(ToString::to_string), "newest agent package");
        }
        self.release.set(newest.clone());
        Ok(newest)
    }

    /// Reads the repository every `every` until `shutdown` completes.
    pub async fn watch_agent_release(&self, every: Duration, shutdown: impl Future<Output = ()>) {
        if self.release.repo.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.refresh_agent_release().await {
                        tracing::warn!(error = %e, "the agent repository could not be read");
                    }
                }
                () = &mut shutdown => break,
            }
        }
    }

    /// `POST /api/v1/servers/{id}/update`: a job that has the server's agent upgrade itself to
    /// the newest version known. Refused (`409 up_to_date`) when the agent is at that version
    /// or newer (no downgrade), `409 job_running` while an update of the server runs, `503`
    /// when the agent is offline.
    pub async fn update_server(&self, id: ServerId) -> Result<JobView> {
        let server = self.store.server(id).await?;
        Self::require_online(&server)?;
        let target = self.update_target(&server).await?;
        let _starting = self.release.starting.lock().await;
        if let Some(running) = self
            .store
            .unfinished_jobs()
            .await?
            .into_iter()
            .find(|j| j.server_id == Some(id) && matches!(j.work, JobWork::Update { .. }))
        {
            return Err(StoreError::JobRunning { job: running.id }.into());
        }
        let job = self
            .start_job(NewJob {
                account_id: None,
                server_id: Some(id),
                work: JobWork::Update {
                    target: target.to_string(),
                },
            })
            .await?;
        Ok(JobView::from(&job))
    }

    /// The version `server`'s agent should be upgraded to, read again from the repository.
    async fn update_target(&self, server: &Server) -> Result<DebVersion> {
        let agent = server.health.agent_version.as_ref();
        if let Err(e) = self.refresh_agent_release().await {
            tracing::warn!(error = %e, "the agent repository could not be read: the version known before is used");
        }
        let newest = self
            .newest_known()
            .ok_or_else(|| ControllerError::Upgrade {
                server: server.id,
                reason: "the agent repository has not been read yet".into(),
            })?;
        if crate::apt::update_available(agent, &newest) {
            return Ok(newest);
        }
        Err(ControllerError::UpToDate {
            server: server.id,
            agent: agent.map_or_else(|| "an unknown version".into(), ToString::to_string),
            newest: newest.to_string(),
        })
    }

    /// Runs an update job: starts the agent's upgrade (unless it runs, or the agent is there
    /// already: a job resumed after a restart of the controller) and follows it.
    pub(super) async fn run_update(&self, id: ServerId, target: &str) -> Result<()> {
        let target: DebVersion = target
            .parse()
            .map_err(|_| ControllerError::Internal(format!("an update job's target {target:?}")))?;
        // Reached once the agent reports a version, and it is not older than the target.
        let reached = |s: &Server| {
            s.health.agent_version.is_some()
                && !crate::apt::update_available(s.health.agent_version.as_ref(), &target)
        };
        let server = self.check(self.store.server(id).await?).await?;
        if server.health.reachable && reached(&server) {
            return Ok(());
        }
        Self::require_online(&server)?;
        let endpoint = AgentEndpoint::from(&server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        let state = client
            .upgrade_state()
            .await
            .map_err(|e| Self::agent_error(id, e))?;
        if state.status != UpgradeStatus::Running {
            client
                .start_upgrade()
                .await
                .map_err(|e| Self::agent_error(id, e))?;
            tracing::info!(server = %id, target = %target, "agent upgrade started");
        }
        let failed = |reason: String| ControllerError::Upgrade { server: id, reason };
        let deadline = Instant::now() + UPGRADE_TIMEOUT;
        let mut upgraded: Option<Instant> = None;
        loop {
            tokio::time::sleep(self.config.job_poll).await;
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "the agent did not come back at {target} within {} minutes",
                    UPGRADE_TIMEOUT.as_secs() / 60
                )));
            }
            // The URL or token may have been edited meanwhile: read them again.
            let server = self.store.server(id).await?;
            let endpoint = AgentEndpoint::from(&server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            let state = match client.upgrade_state().await {
                Ok(state) => state,
                // Restarting: the old agent has stopped, the new one is not listening yet.
                Err(e) if e.is_offline() => {
                    tracing::debug!(server = %id, error = %e, "agent not answering during its upgrade");
                    continue;
                }
                Err(e) => return Err(Self::agent_error(id, e)),
            };
            match state.status {
                UpgradeStatus::Running | UpgradeStatus::Idle => {}
                UpgradeStatus::Failed => {
                    return Err(failed(format!(
                        "the upgrade failed; the agent keeps its version. {}",
                        state.output.unwrap_or_default().trim()
                    )));
                }
                UpgradeStatus::Succeeded => {
                    let checked = self.check(server).await?;
                    if checked.health.reachable && reached(&checked) {
                        tracing::info!(server = %id, version = ?checked.health.agent_version.as_ref().map(ToString::to_string), "agent upgraded");
                        return Ok(());
                    }
                    let since = *upgraded.get_or_insert_with(Instant::now);
                    if since.elapsed() > RESTART_GRACE {
                        return Err(failed(format!(
                            "the package was upgraded, but the agent still reports {}: is its service running?",
                            checked
                                .health
                                .agent_version
                                .as_ref()
                                .map_or_else(|| "no version".into(), ToString::to_string)
                        )));
                    }
                }
            }
        }
    }

    /// Whether `server`'s agent is older than the newest agent: the repository's package by
    /// Debian ordering when a repository is configured (nothing before it was first read),
    /// else the configured version.
    pub(super) fn update_available(&self, server: &Server) -> bool {
        self.newest_known().is_some_and(|newest| {
            crate::apt::update_available(server.health.agent_version.as_ref(), &newest)
        })
    }

    /// The newest agent known, in Debian form: the repository's package when a repository
    /// is configured (none before its first read), else the configured version. The badge
    /// and the update jobs read it here, so they follow one rule.
    fn newest_known(&self) -> Option<DebVersion> {
        match &self.release.repo {
            Some(_) => self.release.newest(),
            None => crate::apt::debian_upstream(&self.config.newest_agent),
        }
    }
}
