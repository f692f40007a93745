//! Wire types of backups and jobs: the Management API's `Job`, `Snapshot` and restore body,
//! and what the controller sends agents to back up, restore and prune (repository secrets go
//! only in these bodies; agents keep none of them).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::backup::{Part, RepoSecret, Retention};
use crate::domain::job::{BackupSet, Job, JobKind, JobStatus, JobWork};
use crate::domain::{AccountId, MailAddress, Rule, ServerId, UserName, ValidationError};

/// `Job` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub id: u64,
    /// `backup`, `restore`, `migrate` or `update`.
    #[cfg_attr(feature = "controller", schema(value_type = String))]
    pub kind: JobKind,
    #[cfg_attr(feature = "controller", schema(value_type = Option<u64>))]
    pub account_id: Option<AccountId>,
    #[cfg_attr(feature = "controller", schema(value_type = Option<u64>))]
    pub server_id: Option<ServerId>,
    /// `queued`, `running`, `succeeded` or `failed`.
    #[cfg_attr(feature = "controller", schema(value_type = String))]
    pub status: JobStatus,
    pub progress: Option<ProgressView>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "controller", schema(value_type = String))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "controller", schema(value_type = Option<String>))]
    pub finished_at: Option<OffsetDateTime>,
    /// Why it failed (null unless `failed`).
    pub error: Option<String>,
    /// For a restore: the snapshot and what of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<String>,
    /// For an update: the agent package version it upgrades to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `progress` of a Job: bytes done of the total (and files).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressView {
    pub done: u64,
    pub total: u64,
    /// Always `bytes`.
    pub unit: String,
    pub files_done: u64,
    pub files_total: u64,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        let (snapshot, what) = match &job.work {
            JobWork::Restore { set, parts, .. } => (
                Some(set.to_string()),
                parts.iter().map(|p| p.to_string()).collect(),
            ),
            JobWork::Backup { .. } | JobWork::Migrate { .. } | JobWork::Update { .. } => {
                (None, Vec::new())
            }
        };
        let version = match &job.work {
            JobWork::Update { target } => Some(target.clone()),
            _ => None,
        };
        Self {
            id: job.id.0,
            kind: job.work.kind(),
            account_id: job.account_id,
            server_id: job.server_id,
            status: job.status,
            progress: job.progress.map(|p| ProgressView {
                done: p.done,
                total: p.total,
                unit: "bytes".into(),
                files_done: p.files_done,
                files_total: p.files_total,
            }),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            error: job.error.clone(),
            snapshot,
            what,
            version,
        }
    }
}

/// `Snapshot` of the contract: one backup set.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    /// What restore takes in its path.
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "controller", schema(value_type = String))]
    pub time: OffsetDateTime,
    /// Bytes read to make it (before deduplication and compression).
    pub size_bytes: u64,
    /// `files`, `databases`, `mail`: what it holds.
    pub contents: Vec<String>,
    /// The databases it holds a dump of.
    pub databases: Vec<String>,
}

impl From<&BackupSet> for SnapshotView {
    fn from(set: &BackupSet) -> Self {
        Self {
            id: set.set.to_string(),
            time: set.time,
            size_bytes: set.size_bytes,
            contents: set.contents.iter().map(|p| p.to_string()).collect(),
            databases: set.databases.clone(),
        }
    }
}

/// `POST /api/v1/accounts/{id}/backups/{snapshot}/restore`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreInput {
    /// What to restore: any of `files`, `databases`, `mail` (absent: all three).
    #[serde(default)]
    pub what: Option<Vec<String>>,
    /// Only this database (full name), with `databases`.
    #[serde(default)]
    pub database: Option<String>,
    /// Only this mailbox (an address), with `mail`.
    #[serde(default)]
    pub mailbox: Option<String>,
}

/// A restore as validated: parts, and the one database or mailbox when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub parts: Vec<Part>,
    pub database: Option<String>,
    pub mailbox: Option<MailAddress>,
}

impl RestoreInput {
    pub fn validate(&self, account: &UserName) -> Result<Restore, ValidationError> {
        let mut parts = Vec::new();
        match &self.what {
            None => parts.extend(Part::ALL),
            Some(list) => {
                for (i, p) in list.iter().enumerate() {
                    let part = Part::parse(p).map_err(|r| r.at(format!("what[{i}]")))?;
                    if parts.contains(&part) {
                        return Err(Rule::Repeated.at(format!("what[{i}]")));
                    }
                    parts.push(part);
                }
                if parts.is_empty() {
                    return Err(Rule::Required.at("what"));
                }
            }
        }
        let database = match &self.database {
            None => None,
            Some(name) => {
                if !parts.contains(&Part::Databases) {
                    return Err(Rule::RoleNotUsed.at("database"));
                }
                let db = crate::domain::db::DbName::parse(account, name)
                    .map_err(|r| r.at("database"))?;
                Some(db.to_string())
            }
        };
        let mailbox = match &self.mailbox {
            None => None,
            Some(address) => {
                if !parts.contains(&Part::Mail) {
                    return Err(Rule::RoleNotUsed.at("mailbox"));
                }
                Some(MailAddress::parse(address).map_err(|r| r.at("mailbox"))?)
            }
        };
        parts.sort();
        Ok(Restore {
            parts,
            database,
            mailbox,
        })
    }
}

/// An account's repository as an account server reaches it: the backup server's REST URL for
/// it (no credentials in it) and the two secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// `rest:http://host:port/<user>/` (or `https`).
    pub url: String,
    pub access: RepoSecret,
    pub key: RepoSecret,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// The URL is `rest:http(s)://…/<user>/` of visible ASCII, without user information.
    pub fn check(&self, user: &UserName) -> Result<(), ValidationError> {
        let rest = self
            .url
            .strip_prefix("rest:http://")
            .or_else(|| self.url.strip_prefix("rest:https://"));
        let ok = rest.is_some_and(|r| {
            let host = r.split('/').next().unwrap_or("");
            !host.is_empty()
                && !r.contains('@')
                && r.ends_with(&format!("/{user}/"))
                && r.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'\\' | b'`'))
        });
        match ok {
            true => Ok(()),
            false => Err(Rule::RecordFormat("rest:http://host:port/<user>/").at("repository.url")),
        }
    }

    /// The URL with the account's credentials in it (what restic reads from its
    /// environment, never from its command line).
    pub fn url_with_access(&self, user: &UserName) -> String {
        let (scheme, rest) = match self.url.strip_prefix("rest:https://") {
            Some(rest) => ("rest:https://", rest),
            None => (
                "rest:http://",
                self.url.strip_prefix("rest:http://").unwrap_or(&self.url),
            ),
        };
        format!("{scheme}{user}:{}@{rest}", self.access.expose_secret())
    }
}

/// `POST /v1/backup/{user}/run` on a server that holds some of the account: back up what it
/// holds of it into the repository, as snapshots tagged with the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRun {
    pub repository: Repository,
    pub set: u64,
    /// The web root (web role).
    #[serde(default)]
    pub files: bool,
    /// The Maildirs of the account's domains (mail role).
    #[serde(default)]
    pub mail: bool,
    /// The databases to dump (db role), full names.
    #[serde(default)]
    pub databases: Vec<String>,
}

/// `POST /v1/backup/{user}/restore`: put back from the set what this server holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRun {
    pub repository: Repository,
    pub set: u64,
    #[serde(default)]
    pub files: bool,
    #[serde(default)]
    pub mail: bool,
    /// Only this mailbox's Maildir, with `mail`.
    #[serde(default)]
    pub mailbox: Option<String>,
    #[serde(default)]
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Running,
    Succeeded,
    Failed,
}

/// A backup or restore running on an agent (`GET /v1/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: u64,
    pub status: TaskStatus,
    pub done: u64,
    pub total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub error: Option<String>,
    /// What the task read (a backup: every snapshot's bytes, before deduplication).
    pub size_bytes: u64,
    /// Bytes a backup added to the repository (after deduplication and compression).
    pub bytes_added: u64,
}

/// `GET /v1/backup/{user}` on the backup server: where the account's servers reach its
/// repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryInfo {
    pub url: String,
}

/// `POST /v1/backup/{user}/prune` on the backup server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRun {
    pub key: RepoSecret,
    pub retention: Retention,
}

impl std::fmt::Debug for PruneRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PruneRun")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// What the backup server's repository holds after a prune: the sets still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetsKept {
    pub sets: Vec<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::backup::RepoKeys;

    fn user() -> UserName {
        UserName::parse("shop").unwrap()
    }

    #[test]
    fn restore_input_names_the_field() {
        let ok = RestoreInput::default().validate(&user()).unwrap();
        assert_eq!(ok.parts, Part::ALL);
        let one = RestoreInput {
            what: Some(vec!["databases".into()]),
            database: Some("wp".into()),
            mailbox: None,
        }
        .validate(&user())
        .unwrap();
        assert_eq!(one.database.as_deref(), Some("shop_wp"));
        let cases = [
            (
                RestoreInput {
                    what: Some(vec!["files".into(), "files".into()]),
                    ..Default::default()
                },
                "what[1]",
            ),
            (
                RestoreInput {
                    what: Some(vec!["logs".into()]),
                    ..Default::default()
                },
                "what[0]",
            ),
            (
                RestoreInput {
                    what: Some(vec![]),
                    ..Default::default()
                },
                "what",
            ),
            (
                RestoreInput {
                    what: Some(vec!["files".into()]),
                    database: Some("wp".into()),
                    ..Default::default()
                },
                "database",
            ),
            (
                RestoreInput {
                    mailbox: Some("a@b@c".into()),
                    ..Default::default()
                },
                "mailbox",
            ),
            (
                RestoreInput {
                    database: Some("x;drop".into()),
                    ..Default::default()
                },
                "database",
            ),
        ];
        for (input, field) in cases {
            let e = input.validate(&user()).unwrap_err();
            assert_eq!(e.field, field, "{input:?}");
        }
    }

    #[test]
    fn repository_url_is_checked_and_secrets_stay_out_of_debug() {
        let keys = RepoKeys::generate().unwrap();
        let repo = Repository {
            url: "rest:http://backup.example:50001/shop/".into(),
            access: keys.access.clone(),
            key: keys.key.clone(),
        };
        repo.check(&user()).unwrap();
        let debug = format!("{repo:?}");
        assert!(!debug.contains(keys.access.expose_secret()));
        assert!(!debug.contains(keys.key.expose_secret()));
        assert_eq!(
            repo.url_with_access(&user()),
            format!(
                "rest:http://shop:{}@backup.example:50001/shop/",
                keys.access.expose_secret()
            )
        );
        for bad in [
            "http://backup.example/shop/",
            "rest:http://u:p@backup.example/shop/",
            "rest:http://backup.example/other/",
            "rest:http:///shop/",
            "rest:http://backup.example/shop/\n",
            "rest:http://backup.example/'shop/",
        ] {
            let r = Repository {
                url: bad.into(),
                ..repo.clone()
            };
            assert!(r.check(&user()).is_err(), "{bad}");
        }
    }
}
