//! The backup role on the controller's side: an account's repository on its backup server,
//! backups and restores as jobs, pruning by the retention policy, and the nightly schedule.
//!
//! - **The repository** is restic's, one per account, on the account's backup server, which
//!   serves it append-only over HTTP (`rclone serve restic --append-only --private-repos`):
//!   an account's servers can add snapshots but never delete or rewrite one. Its two secrets
//!   (the encryption key and the HTTP password, [`RepoKeys`]) are made and sealed by the
//!   store; the backup server is sent only the password's bcrypt hash with the account, and
//!   the account's servers get both secrets in each backup or restore request, never to keep.
//! - **A backup** asks each server holding some of the account to back up what it holds
//!   (web root, Maildirs, a dump of each database) as snapshots tagged with the job's id (the
//!   *set*); then the backup server prunes by the retention policy, locally (where deleting
//!   is allowed), and the sets it no longer has are forgotten.
//! - **A restore** asks the same servers to put back what they hold from one set.
//! - **The schedule**: each account with the backup role gets one backup a day, at its own
//!   offset in the nightly window (spread by its id), so that not every account starts at
//!   once.

use super::{Controller, ControllerError, Result};
use crate::domain::backup::{BackupSpec, Part, RepoKeys};
use crate::domain::job::{BackupCause, BackupSet, Job, JobWork, NewJob, Progress};
use crate::domain::{Account, AccountId, Role, Rule, Server};
use crate::protocol::backup::{
    BackupRun, JobView, PruneRun, Repository, RestoreInput, RestoreRun, SnapshotView, TaskStatus,
    TaskView,
};
use crate::transport::{AgentClient, AgentEndpoint};

/// bcrypt's cost for the access password: the password is 256 random bits, so a slow hash
/// adds no protection, while the backup server checks it on every request of a backup.
const ACCESS_HASH_COST: u32 = 5;

/// The bcrypt hash of `keys.access`, with a salt derived from the secret itself: the same
/// every time, so an unchanged account sends the backup server an unchanged line.
fn access_hash(keys: &RepoKeys) -> Result<BackupSpec> {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("enconf-backup-salt:{}", keys.access.expose_secret()).as_bytes(),
    );
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&digest.as_ref()[..16]);
    let hash = bcrypt::hash_with_salt(keys.access.expose_secret(), ACCESS_HASH_COST, salt)
        .map_err(|e| ControllerError::Internal(format!("bcrypt: {e}")))?;
    Ok(BackupSpec {
        access_hash: hash.format_for_version(bcrypt::Version::TwoY),
    })
}

/// What one server holds of an account, to back up or restore.
#[derive(Debug)]
struct Holder {
    server: Server,
    files: bool,
    mail: bool,
    databases: Vec<String>,
}

impl Controller {
    /// What the backup server is sent for `account` (its repository's access hash).
    pub(super) async fn backup_spec(&self, account: &Account) -> Result<BackupSpec> {
        let keys = self.store.backup_keys(account.id).await?;
        access_hash(&keys)
    }

    /// The account's finished backups, oldest first.
    pub async fn backups(&self, id: AccountId) -> Result<Vec<SnapshotView>> {
        self.store.account(id).await?;
        Ok(self
            .store
            .backup_sets(id)
            .await?
            .iter()
            .map(SnapshotView::from)
            .collect())
    }

    /// `POST /api/v1/accounts/{id}/backups`: a backup job. The account must have the backup
    /// role and its backup server must answer now; a second job of the account is `409`.
    pub async fn start_backup(&self, id: AccountId) -> Result<JobView> {
        let account = self.store.account(id).await?;
        self.backup_server(&account).await?;
        let job = self.start_backup_job(id, BackupCause::Asked).await?;
        Ok(JobView::from(&job))
    }

    /// `POST /api/v1/accounts/{id}/backups/{snapshot}/restore`: a restore job.
    pub async fn start_restore(
        &self,
        id: AccountId,
        snapshot: &str,
        input: &RestoreInput,
    ) -> Result<JobView> {
        let account = self.store.account(id).await?;
        let restore = input.validate(&account.spec.username)?;
        let set = self.find_set(id, snapshot).await?;
        if let Some(db) = &restore.database
            && !set.databases.contains(db)
        {
            return Err(Rule::NotInSnapshot.at("database").into());
        }
        if let Some(i) = restore.parts.iter().position(|p| !set.contents.contains(p)) {
            return Err(Rule::NotInSnapshot.at(format!("what[{i}]")).into());
        }
        self.backup_server(&account).await?;
        let job = self
            .start_job(NewJob {
                account_id: Some(id),
                server_id: None,
                work: JobWork::Restore {
                    set: set.set,
                    parts: restore.parts,
                    database: restore.database,
                    mailbox: restore.mailbox.map(|m| m.to_string()),
                },
            })
            .await?;
        Ok(JobView::from(&job))
    }

    async fn find_set(&self, id: AccountId, snapshot: &str) -> Result<BackupSet> {
        let wanted: Option<u64> = snapshot.parse().ok();
        self.store
            .backup_sets(id)
            .await?
            .into_iter()
            .find(|s| Some(s.set) == wanted)
            .ok_or_else(|| {
                crate::store::StoreError::NotFound {
                    kind: crate::store::Kind::Snapshot,
                    id: wanted.unwrap_or(0),
                }
                .into()
            })
    }

    /// The account's backup server, online.
    pub(super) async fn backup_server(&self, account: &Account) -> Result<Server> {
        let Some(id) = account.servers.one(Role::Backup) else {
            return Err(Rule::NoBackupRole.at("roles").into());
        };
        let server = self.store.server(id).await?;
        Self::require_online(&server)?;
        Ok(server)
    }

    /// The account's repository as its servers reach it (asked of the backup server).
    pub(super) async fn repository(
        &self,
        account: &Account,
    ) -> Result<(Server, Repository, RepoKeys)> {
        let server = self.backup_server(account).await?;
        let keys = self.store.backup_keys(account.id).await?;
        let endpoint = AgentEndpoint::from(&server);
        let info = AgentClient::new(&*self.transport, &endpoint)
            .backup_repository(&account.spec.username)
            .await
            .map_err(|e| Self::agent_error(server.id, e))?;
        let repository = Repository {
            url: info.url,
            access: keys.access.clone(),
            key: keys.key.clone(),
        };
        repository
            .check(&account.spec.username)
            .map_err(|e| ControllerError::Agent {
                server: server.id,
                source: crate::transport::TransportError::Protocol(e.to_string()),
            })?;
        Ok((server, repository, keys))
    }

    /// The names of the account's databases (none without the db role).
    pub(super) async fn database_names(&self, account: &Account) -> Result<Vec<String>> {
        Ok(match account.spec.roles.contains(Role::Db) {
            true => self
                .store
                .db(account.id)
                .await?
                .databases
                .iter()
                .map(|d| d.name.to_string())
                .collect(),
            false => Vec::new(),
        })
    }

    /// The servers holding the account's web root, Maildirs and databases, each online.
    async fn holders(&self, account: &Account) -> Result<Vec<Holder>> {
        let databases = self.database_names(account).await?;
        let mut out = Vec::new();
        for (id, roles) in account.servers.by_server() {
            let holder = Holder {
                files: roles.contains(Role::Web),
                mail: roles.contains(Role::Mail),
                databases: match roles.contains(Role::Db) {
                    true => databases.clone(),
                    false => Vec::new(),
                },
                server: self.store.server(id).await?,
            };
            if holder.files || holder.mail || !holder.databases.is_empty() {
                Self::require_online(&holder.server)?;
                out.push(holder);
            }
        }
        Ok(out)
    }

    pub(super) async fn run_backup(&self, job: &mut Job, cause: BackupCause) -> Result<()> {
        let Some(id) = job.account_id else {
            return Err(ControllerError::Internal(
                "a backup job without an account".into(),
            ));
        };
        let account = self.store.account(id).await?;
        let (backup_server, repository, keys) = self.repository(&account).await?;
        let holders = self.holders(&account).await?;
        let user = &account.spec.username;
        let mut base = Progress::default();
        let mut size = 0;
        let mut contents = Vec::new();
        let mut databases = Vec::new();
        for holder in &holders {
            let run = BackupRun {
                repository: repository.clone(),
                set: job.id.0,
                files: holder.files,
                mail: holder.mail,
                databases: holder.databases.clone(),
            };
            let endpoint = AgentEndpoint::from(&holder.server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            let task = client
                .start_backup(user, &run)
                .await
                .map_err(|e| Self::agent_error(holder.server.id, e))?;
            let done = self
                .follow(Some(&mut *job), &holder.server, task, base)
                .await?;
            base = base.plus(&done);
            size += done.size_bytes;
            if holder.files {
                contents.push(Part::Files);
            }
            if holder.mail {
                contents.push(Part::Mail);
            }
            if !holder.databases.is_empty() {
                contents.push(Part::Databases);
                databases.extend(holder.databases.iter().cloned());
            }
        }
        contents.sort();
        contents.dedup();
        self.store
            .record_backup_set(
                id,
                BackupSet {
                    set: job.id.0,
                    time: self.now(),
                    size_bytes: size,
                    contents,
                    databases,
                },
            )
            .await?;
        tracing::info!(account = %id, set = %job.id, ?cause, bytes = size, "backup made");
        // Pruning runs where deleting is allowed: on the backup server itself.
        let endpoint = AgentEndpoint::from(&backup_server);
        let kept = AgentClient::new(&*self.transport, &endpoint)
            .prune(
                user,
                &PruneRun {
                    key: keys.key.clone(),
                    retention: self.config.retention,
                },
            )
            .await
            .map_err(|e| Self::agent_error(backup_server.id, e))?;
        self.store.keep_backup_sets(id, kept.sets).await?;
        Ok(())
    }

    pub(super) async fn run_restore(
        &self,
        job: &mut Job,
        set: u64,
        parts: &[Part],
        database: Option<String>,
        mailbox: Option<String>,
    ) -> Result<()> {
        let Some(id) = job.account_id else {
            return Err(ControllerError::Internal(
                "a restore job without an account".into(),
            ));
        };
        let account = self.store.account(id).await?;
        let recorded = self.find_set(id, &set.to_string()).await?;
        let (_, repository, _) = self.repository(&account).await?;
        let holders = self.holders(&account).await?;
        let mut base = Progress::default();
        for holder in &holders {
            let databases: Vec<String> = match parts.contains(&Part::Databases) {
                false => Vec::new(),
                true => holder
                    .databases
                    .iter()
                    .filter(|d| recorded.databases.contains(d))
                    .filter(|d| database.as_ref().is_none_or(|one| one == *d))
                    .cloned()
                    .collect(),
            };
            let run = RestoreRun {
                repository: repository.clone(),
                set,
                files: holder.files && parts.contains(&Part::Files),
                mail: holder.mail && parts.contains(&Part::Mail),
                mailbox: mailbox.clone(),
                databases,
            };
            if !run.files && !run.mail && run.databases.is_empty() {
                continue;
            }
            let endpoint = AgentEndpoint::from(&holder.server);
            let task = AgentClient::new(&*self.transport, &endpoint)
                .start_restore(&account.spec.username, &run)
                .await
                .map_err(|e| Self::agent_error(holder.server.id, e))?;
            let done = self
                .follow(Some(&mut *job), &holder.server, task, base)
                .await?;
            base = base.plus(&done);
        }
        tracing::info!(account = %id, set, ?parts, "restore done");
        Ok(())
    }

    /// Follows an agent's task to its end, recording the job's progress (`base` is what the
    /// job's earlier tasks did). A task the agent no longer knows (it restarted) fails the job.
    pub(super) async fn follow(
        &self,
        mut job: Option<&mut Job>,
        server: &Server,
        mut task: TaskView,
        base: Progress,
    ) -> Result<TaskView> {
        let endpoint = AgentEndpoint::from(server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        let mut failures = 0;
        loop {
            if let Some(job) = job.as_deref_mut() {
                self.progress(job, base.plus(&task)).await;
            }
            match task.status {
                TaskStatus::Succeeded => return Ok(task),
                TaskStatus::Failed => {
                    return Err(ControllerError::Agent {
                        server: server.id,
                        source: crate::transport::TransportError::Protocol(
                            task.error.unwrap_or_else(|| "the task failed".into()),
                        ),
                    });
                }
                TaskStatus::Running => {}
            }
            tokio::time::sleep(self.config.job_poll).await;
            match client.task(task.id).await {
                Ok(next) => {
                    task = next;
                    failures = 0;
                }
                // The agent no longer knows the task: it restarted and the work stopped.
                Err(crate::transport::TransportError::Agent { status: 404, .. }) => {
                    return Err(ControllerError::Agent {
                        server: server.id,
                        source: crate::transport::TransportError::Protocol(
                            "the agent lost the task (it restarted); run the job again".into(),
                        ),
                    });
                }
                // A missed answer or two is not the end of the task.
                Err(e) if failures < 5 => {
                    tracing::debug!(server = %server.id, error = %e, "no answer about a task");
                    failures += 1;
                }
                Err(e) => return Err(Self::agent_error(server.id, e)),
            }
        }
    }

    /// Starts the scheduled backups that are due: each account with the backup role once a
    /// day, at its offset in the nightly window. An account busy with another job, or whose
    /// backup already ran since its slot, is skipped. The accounts are read a page at a time
    /// and their last backups from an index, so memory does not grow with the accounts or the
    /// jobs. Returns how many started.
    pub async fn schedule_backups(&self) -> Result<usize> {
        let now = self.now();
        let (start, length) = self.config.backup_window;
        let midnight = now.replace_time(time::Time::MIDNIGHT);
        let mut started = 0;
        // The accounts with the backup role, a page at a time from the role index.
        let query = crate::store::AccountQuery {
            role: Some(Role::Backup),
            ..Default::default()
        };
        let mut after = None;
        loop {
            let page = self
                .store
                .accounts_page(&query, after, SCHEDULE_PAGE)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.id);
            let mut due = Vec::new();
            for account in &page {
                let offset = spread(account.id, length);
                let mut slot = midnight + time::Duration::seconds(i64::from(start + offset));
                if slot > now {
                    slot -= time::Duration::days(1);
                }
                // Only within the window's length after the slot (a controller that was down
                // all night does not start every account's backup at once at noon).
                if now - slot > time::Duration::seconds(i64::from(length.max(3600)))
                    || account.created_at >= slot
                {
                    continue;
                }
                due.push((account.id, slot));
            }
            let last_backups = self
                .store
                .last_backups(due.iter().map(|(id, _)| *id).collect())
                .await?;
            for ((account, slot), last) in due.into_iter().zip(last_backups) {
                if last.is_some_and(|at| at >= slot) {
                    continue;
                }
                match self.start_backup_job(account, BackupCause::Scheduled).await {
                    Ok(_) => started += 1,
                    Err(ControllerError::Store(crate::store::StoreError::JobRunning {
                        ..
                    })) => {}
                    Err(e) => {
                        tracing::warn!(account = %account, error = %e, "could not start a scheduled backup")
                    }
                }
            }
            if page.len() < SCHEDULE_PAGE {
                break;
            }
        }
        Ok(started)
    }

    /// Records and starts a backup job of the account.
    async fn start_backup_job(&self, account: AccountId, cause: BackupCause) -> Result<Job> {
        self.start_job(NewJob {
            account_id: Some(account),
            server_id: None,
            work: JobWork::Backup { cause },
        })
        .await
    }

    /// The final backup of an account about to be deleted: runs it and waits for it.
    pub(super) async fn final_backup(&self, account: &Account) -> Result<()> {
        let job = self
            .start_backup_job(account.id, BackupCause::Final)
            .await?;
        let done = self.wait_job(job.id).await?;
        match done.error {
            None => Ok(()),
            Some(reason) => Err(ControllerError::Issue(format!(
                "the final backup failed, so the account is kept: {reason}"
            ))),
        }
    }
}

/// How many accounts the schedule reads at a time.
const SCHEDULE_PAGE: usize = 1_000;

pub(super) trait Plus {
    /// This progress with what a task did added.
    fn plus(self, task: &TaskView) -> Progress;
}

impl Plus for Progress {
    fn plus(self, task: &TaskView) -> Progress {
        Progress {
            done: self.done + task.done,
            total: self.total + task.total,
            files_done: self.files_done + task.files_done,
            files_total: self.files_total + task.files_total,
        }
    }
}

/// An account's offset in a window of `length` seconds: spread evenly by a hash of its id.
fn spread(id: AccountId, length: u32) -> u32 {
    // Fibonacci hashing: consecutive ids land far apart.
    let h = id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(h) * u128::from(length.max(1))) >> 64) as u32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_access_hash_is_stable_and_verifies() {
        let keys = RepoKeys::generate().unwrap();
        let a = access_hash(&keys).unwrap();
        assert_eq!(a, access_hash(&keys).unwrap());
        a.check().unwrap();
        assert!(bcrypt::verify(keys.access.expose_secret(), &a.access_hash).unwrap());
        assert!(!bcrypt::verify(keys.key.expose_secret(), &a.access_hash).unwrap());
    }

    #[test]
    fn accounts_are_spread_over_the_window() {
        let length = 4 * 3600;
        let mut offsets: Vec<u32> = (1..=1000).map(|i| spread(AccountId(i), length)).collect();
        assert!(offsets.iter().all(|o| *o < length));
        offsets.sort_unstable();
        // No quarter of the window holds more than a third of the accounts.
        for q in 0..4 {
            let n = offsets.iter().filter(|o| **o / (length / 4) == q).count();
            assert!(n < 334, "quarter {q}: {n}");
        }
    }
}
