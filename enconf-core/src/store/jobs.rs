//! The store's jobs and backups, over the same key-value seam.
//!
//! - A job is recorded `queued` before it runs, and each change of its status or progress is
//!   written, so a restarted controller finds every job that was not finished.
//! - An account has at most one queued or running job: an index of the account's active job
//!   is checked and set in the job's write transaction, and cleared when the job finishes.
//! - An account's repository secrets are sealed, made the first time they are asked for, and
//!   kept when the account is deleted (its final backup stays readable).
//! - The finished backup sets of an account are what the API lists as snapshots.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::logic::{KvStore, decode, decode_u64, encode, id_key, load_account, next_id};
use super::{Kind, StoreError};
use crate::domain::AccountId;
use crate::domain::backup::RepoKeys;
use crate::domain::job::{BackupSet, Job, JobId, JobStatus, NewJob};
use crate::secret::Sealer;

const JOB_COUNTER: &[u8] = b"next_job_id";

/// Jobs, and what backups keep in the store.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records a new job, `queued`. When its account already has a queued or running job,
    /// nothing is recorded: [`StoreError::JobRunning`].
    async fn insert_job(&self, job: NewJob, now: OffsetDateTime) -> Result<Job, StoreError>;
    async fn job(&self, id: JobId) -> Result<Job, StoreError>;
    /// At most `limit` jobs (of `account` only, when given) older than `before` (from the
    /// newest when `None`), newest first, read from an index.
    async fn jobs_page(
        &self,
        account: Option<AccountId>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;
    /// The queued and running jobs, oldest first (read from their own index).
    async fn unfinished_jobs(&self) -> Result<Vec<Job>, StoreError>;
    /// Writes a job's new status and progress; a finished one frees its account.
    async fn update_job(&self, job: Job) -> Result<(), StoreError>;
    /// The secrets of the account's repository, made (and sealed) the first time.
    async fn backup_keys(&self, account: AccountId) -> Result<RepoKeys, StoreError>;
    /// The account's finished backup sets, oldest first.
    async fn backup_sets(&self, account: AccountId) -> Result<Vec<BackupSet>, StoreError>;
    async fn record_backup_set(&self, account: AccountId, set: BackupSet)
    -> Result<(), StoreError>;
    /// Forgets the account's sets that are not in `kept` (what pruning left).
    async fn keep_backup_sets(&self, account: AccountId, kept: Vec<u64>) -> Result<(), StoreError>;
    /// When each of `accounts` last had a backup job recorded (`None`: never), read in one
    /// transaction from an index kept with the jobs (not by reading every job).
    async fn last_backups(
        &self,
        accounts: Vec<AccountId>,
    ) -> Result<Vec<Option<OffsetDateTime>>, StoreError>;
}

/// The key, in the meta table, of when an account's last backup job was recorded.
fn last_backup_key(account: AccountId) -> Vec<u8> {
    let mut key = b"last_backup/".to_vec();
    key.extend_from_slice(&id_key(account.0));
    key
}

/// Notes that `job` (a backup) was recorded for its account.
pub(super) fn note_backup(tx: &mut dyn WriteTxn, job: &Job) -> Result<(), StoreError> {
    if let (Some(account), crate::domain::job::JobWork::Backup { .. }) = (job.account_id, &job.work)
    {
        let at = job.created_at.unix_timestamp_nanos();
        let previous = tx
            .get(Table::Meta, &last_backup_key(account))?
            .map(|v| decode::<i128>(&v))
            .transpose()?;
        if previous.is_none_or(|p| p < at) {
            tx.put(Table::Meta, &last_backup_key(account), &encode(&at)?)?;
        }
    }
    Ok(())
}

/// Forgets when a deleted account was last backed up.
pub(super) fn forget_last_backup(
    tx: &mut dyn WriteTxn,
    account: AccountId,
) -> Result<(), StoreError> {
    tx.delete(Table::Meta, &last_backup_key(account))
}

fn account_job_key(account: AccountId, job: JobId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&id_key(account.0));
    key[8..].copy_from_slice(&id_key(job.0));
    key
}

/// Schema 8 → 9: the indexes of unfinished jobs and of each account's jobs, made from the
/// jobs.
pub(super) fn index_jobs(tx: &mut dyn WriteTxn) -> Result<(), StoreError> {
    for (key, value) in tx.scan(Table::Jobs, b"")? {
        let job = decode::<Job>(&value)?;
        if job.status.is_active() {
            tx.put(Table::UnfinishedJobs, &key, &[])?;
        }
        if let Some(account) = job.account_id {
            tx.put(Table::AccountJobs, &account_job_key(account, job.id), &[])?;
        }
    }
    Ok(())
}

/// Schema 7 → 8: the index of last backups, from the jobs.
pub(super) fn index_last_backups(tx: &mut dyn WriteTxn) -> Result<(), StoreError> {
    for (_, value) in tx.scan(Table::Jobs, b"")? {
        note_backup(tx, &decode(&value)?)?;
    }
    Ok(())
}

fn set_key(account: AccountId, set: u64) -> Vec<u8> {
    let mut key = id_key(account.0).to_vec();
    key.extend_from_slice(&set.to_be_bytes());
    key
}

fn keys_context(account: AccountId) -> Vec<u8> {
    format!("backup-keys:{}", account.0).into_bytes()
}

fn load_job(tx: &dyn ReadTxn, id: JobId) -> Result<Job, StoreError> {
    match tx.get(Table::Jobs, &id_key(id.0))? {
        Some(bytes) => decode(&bytes),
        None => Err(StoreError::NotFound {
            kind: Kind::Job,
            id: id.0,
        }),
    }
}

fn open_keys(
    tx: &dyn ReadTxn,
    sealer: &Sealer,
    account: AccountId,
) -> Result<Option<RepoKeys>, StoreError> {
    let Some(bytes) = tx.get(Table::BackupKeys, &id_key(account.0))? else {
        return Ok(None);
    };
    let sealed = String::from_utf8(bytes).map_err(StoreError::backend)?;
    let plain = sealer
        .open(&sealed, &keys_context(account))
        .map_err(StoreError::backend)?;
    decode(&plain).map(Some)
}

#[async_trait]
impl<B: Backend> JobStore for KvStore<B> {
    async fn insert_job(&self, new: NewJob, now: OffsetDateTime) -> Result<Job, StoreError> {
        self.write(move |tx: &mut dyn WriteTxn, _| {
            if let Some(account) = new.account_id {
                load_account(tx, account)?;
                if let Some(running) = tx.get(Table::ActiveJobs, &id_key(account.0))? {
                    let id = u64::from_be_bytes(
                        running
                            .as_slice()
                            .try_into()
                            .map_err(|_| StoreError::backend("corrupt store: a job id"))?,
                    );
                    return Err(StoreError::JobRunning { job: JobId(id) });
                }
            }
            let id = JobId(next_id(tx, JOB_COUNTER)?);
            let job = Job {
                id,
                account_id: new.account_id,
                server_id: new.server_id,
                work: new.work,
                status: JobStatus::Queued,
                progress: None,
                created_at: now,
                started_at: None,
                finished_at: None,
                error: None,
            };
            tx.put(Table::Jobs, &id_key(id.0), &encode(&job)?)?;
            tx.put(Table::UnfinishedJobs, &id_key(id.0), &[])?;
            if let Some(account) = job.account_id {
                tx.put(Table::AccountJobs, &account_job_key(account, id), &[])?;
                tx.put(Table::ActiveJobs, &id_key(account.0), &id_key(id.0))?;
            }
            note_backup(tx, &job)?;
            Ok(job)
        })
        .await
    }

    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        self.read(move |tx, _| load_job(tx, id)).await
    }

    async fn jobs_page(
        &self,
        account: Option<AccountId>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.read(move |tx, _| match account {
            None => {
                let end = before.map(|id| id_key(id.0));
                tx.scan_back(Table::Jobs, b"", end.as_ref().map(|k| &k[..]), limit)?
                    .into_iter()
                    .map(|(_, v)| decode::<Job>(&v))
                    .collect()
            }
            Some(account) => {
                let end = before.map(|id| account_job_key(account, id));
                let prefix = id_key(account.0);
                tx.scan_back(
                    Table::AccountJobs,
                    &prefix,
                    end.as_ref().map(|k| &k[..]),
                    limit,
                )?
                .into_iter()
                .map(|(k, _)| load_job(tx, JobId(decode_u64(k.get(8..).unwrap_or_default())?)))
                .collect()
            }
        })
        .await
    }

    async fn unfinished_jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.read(|tx, _| {
            tx.scan(Table::UnfinishedJobs, b"")?
                .into_iter()
                .map(|(k, _)| load_job(tx, JobId(decode_u64(&k)?)))
                .collect()
        })
        .await
    }

    async fn update_job(&self, job: Job) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            load_job(tx, job.id)?;
            tx.put(Table::Jobs, &id_key(job.id.0), &encode(&job)?)?;
            if !job.status.is_active() {
                tx.delete(Table::UnfinishedJobs, &id_key(job.id.0))?;
            }
            if let Some(account) = job.account_id
                && !job.status.is_active()
                && tx.get(Table::ActiveJobs, &id_key(account.0))?.as_deref()
                    == Some(&id_key(job.id.0)[..])
            {
                tx.delete(Table::ActiveJobs, &id_key(account.0))?;
            }
            Ok(())
        })
        .await
    }

    async fn backup_keys(&self, account: AccountId) -> Result<RepoKeys, StoreError> {
        if let Some(keys) = self
            .read(move |tx, sealer| open_keys(tx, sealer, account))
            .await?
        {
            return Ok(keys);
        }
        let fresh = RepoKeys::generate().map_err(StoreError::backend)?;
        self.write(move |tx, sealer| {
            // Another request may have made them in between: the first ones stay.
            if let Some(keys) = open_keys(tx, sealer, account)? {
                return Ok(keys);
            }
            load_account(tx, account)?;
            let sealed = sealer
                .seal(&encode(&fresh)?, &keys_context(account))
                .map_err(StoreError::backend)?;
            tx.put(Table::BackupKeys, &id_key(account.0), sealed.as_bytes())?;
            Ok(fresh)
        })
        .await
    }

    async fn backup_sets(&self, account: AccountId) -> Result<Vec<BackupSet>, StoreError> {
        self.read(move |tx, _| {
            tx.scan(Table::BackupSets, &id_key(account.0))?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn record_backup_set(
        &self,
        account: AccountId,
        set: BackupSet,
    ) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            tx.put(
                Table::BackupSets,
                &set_key(account, set.set),
                &encode(&set)?,
            )
        })
        .await
    }

    async fn keep_backup_sets(&self, account: AccountId, kept: Vec<u64>) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            for (key, value) in tx.scan(Table::BackupSets, &id_key(account.0))? {
                let set: BackupSet = decode(&value)?;
                if !kept.contains(&set.set) {
                    tx.delete(Table::BackupSets, &key)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn last_backups(
        &self,
        accounts: Vec<AccountId>,
    ) -> Result<Vec<Option<OffsetDateTime>>, StoreError> {
        self.read(move |tx, _| {
            accounts
                .iter()
                .map(|a| {
                    tx.get(Table::Meta, &last_backup_key(*a))?
                        .map(|v| {
                            let at: i128 = decode(&v)?;
                            OffsetDateTime::from_unix_timestamp_nanos(at)
                                .map_err(StoreError::backend)
                        })
                        .transpose()
                })
                .collect()
        })
        .await
    }
}
