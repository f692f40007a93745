//! Jobs: long work the controller runs off the request (backups, restores), recorded in the
//! store so that a restart finds them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::backup::Part;
use super::{AccountId, ServerId};

/// A job's id, given by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Restore,
    Migrate,
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// Queued or running: the account has a job.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// How far a running job is: bytes (and files) done of the total known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub files_done: u64,
    pub files_total: u64,
}

/// Why a backup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupCause {
    /// Asked for through the API.
    Asked,
    /// The nightly schedule.
    Scheduled,
    /// Before the account is deleted.
    Final,
}

/// What a job does, with what it needs to run again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "lowercase")]
pub enum JobWork {
    Backup {
        cause: BackupCause,
    },
    Restore {
        /// The backup set (its job's id).
        set: u64,
        parts: Vec<Part>,
        /// Only this database (with `databases` among the parts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
        /// Only this mailbox (with `mail` among the parts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mailbox: Option<String>,
    },
    /// Roles of the account (web, mail, db), with their data, each to another server.
    Migrate {
        targets: std::collections::BTreeMap<super::Role, ServerId>,
    },
    /// The server's agent upgrades its package; `target` is the newest package version known
    /// when the job was asked for (Debian form, e.g. `1.10.0-1`).
    Update {
        target: String,
    },
}

impl JobWork {
    pub fn kind(&self) -> JobKind {
        match self {
            JobWork::Backup { .. } => JobKind::Backup,
            JobWork::Restore { .. } => JobKind::Restore,
            JobWork::Migrate { .. } => JobKind::Migrate,
            JobWork::Update { .. } => JobKind::Update,
        }
    }
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub account_id: Option<AccountId>,
    pub server_id: Option<ServerId>,
    pub work: JobWork,
    pub status: JobStatus,
    pub progress: Option<Progress>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub error: Option<String>,
}

/// A job to record (the store gives it its id, `queued`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub account_id: Option<AccountId>,
    pub server_id: Option<ServerId>,
    pub work: JobWork,
}

/// A finished backup set of an account, as the controller records it: what `GET
/// /api/v1/accounts/{id}/backups` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSet {
    /// The id of the job that made it (the snapshots' tag).
    pub set: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What the snapshots hold, as read (before deduplication).
    pub size_bytes: u64,
    pub contents: Vec<Part>,
    /// The databases dumped into it.
    #[serde(default)]
    pub databases: Vec<String>,
}
