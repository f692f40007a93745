//! Storage: the [`Store`] trait the controller keeps its state behind, and its backends.
//!
//! The store's rules (ids, uniqueness of names, domains and user names, account counts,
//! placement of a new account) are written once, in [`KvStore`], over a small transactional
//! key-value seam that each backend implements: [`redb`](RedbBackend) (the embedded default: one
//! file, ACID) and [`memory`](MemoryBackend) (for tests and throw-away controllers). Every
//! read-check-write happens inside one backend transaction, so two concurrent requests cannot
//! both take the last place on a server or the same domain.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use enconf_core::store::{Engine, Store};
//! let key = enconf_core::secret::SecretKey::generate().unwrap();
//! let store = Engine::Memory.open(&key).unwrap();
//! assert!(store.servers().await.unwrap().is_empty());
//! # });
//! ```

mod admins;
mod db;
mod dns;
mod group;
mod jobs;
mod kv;
mod logic;
mod mail;
mod memory;
mod pages;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redb")]
mod redb;
mod summary;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{
    Account, AccountId, AccountSpec, AccountStatus, AgentToken, Health, NewAccount, Role, RoleSet,
    Server, ServerId, ServerSpec, UserName,
};
use crate::placement::PlacementError;
use crate::secret::SecretKey;

pub use admins::{AdminStore, AuditFilter};
pub use db::{Database, DbRecord, DbStore, DbUser};
pub use dns::{DnsStore, ZoneRow, ZoneWithKey};
pub use jobs::JobStore;
pub use kv::Backend;
pub use logic::KvStore;
pub use mail::MailStore;
pub use memory::MemoryBackend;
pub use pages::{AccountQuery, PageStore};
#[cfg(feature = "postgres")]
pub use postgres::PostgresBackend;
#[cfg(feature = "redb")]
pub use redb::RedbBackend;

/// The in-memory store.
pub type MemoryStore = KvStore<MemoryBackend>;
/// The embedded single-file store.
#[cfg(feature = "redb")]
pub type RedbStore = KvStore<RedbBackend>;
/// The store several controllers share.
#[cfg(feature = "postgres")]
pub type PostgresStore = KvStore<PostgresBackend>;

/// The version of the data layout this build writes. A file with a newer one is refused.
pub const SCHEMA_VERSION: u64 = 9;

/// What the controller keeps: servers, accounts, counters and settings.
///
/// Methods that change state are atomic: they either happen whole or not at all. Methods that
/// read a [`Server`] fill in its account count from the same transaction.
#[async_trait]
pub trait Store:
    MailStore + DnsStore + DbStore + JobStore + PageStore + AdminStore + Send + Sync + fmt::Debug
{
    /// Adds a server with what a first check of its agent saw. Its name (ignoring case) must
    /// be unused; its hostname and mail hostname must not be another server's names or an
    /// account's domain; its agent (by the identity in `health`) must not be another
    /// server's.
    async fn insert_server(
        &self,
        spec: ServerSpec,
        token: AgentToken,
        health: Health,
    ) -> Result<Server, StoreError>;
    async fn server(&self, id: ServerId) -> Result<Server, StoreError>;
    /// Every server, by id.
    async fn servers(&self) -> Result<Vec<Server>, StoreError>;
    /// Replaces a server's spec and, when `token` is given, its token. Refuses to drop a role
    /// that accounts on the server need.
    async fn update_server(
        &self,
        id: ServerId,
        spec: ServerSpec,
        token: Option<AgentToken>,
    ) -> Result<Server, StoreError>;
    /// Records what a check of `checked` (the server as read before the check) saw. When the
    /// server's agent URL or token changed since, the result is about an endpoint that is no
    /// longer the server's: nothing is recorded and the server is returned as it is. An agent
    /// that is another server's (the same identity) is recorded unreachable, saying so.
    async fn record_health(&self, checked: &Server, health: Health) -> Result<Server, StoreError>;
    /// [`Self::record_health`] for a whole health round, in one transaction (one durable
    /// commit for a thousand servers). A server deleted meanwhile gets its own error; a
    /// failure of the store fails the whole round.
    async fn record_healths(
        &self,
        checks: Vec<(Server, Health)>,
    ) -> Result<Vec<Result<Server, StoreError>>, StoreError>;
    /// Deletes a server that hosts no accounts.
    async fn delete_server(&self, id: ServerId) -> Result<(), StoreError>;

    /// Places (or checks the named server for) and records a new account, status
    /// `provisioning`, in one transaction. Its user name and domains must be unused, and no
    /// domain may be a server's hostname or mail hostname.
    async fn create_account(
        &self,
        new: NewAccount,
        now: OffsetDateTime,
    ) -> Result<Account, StoreError>;
    async fn account(&self, id: AccountId) -> Result<Account, StoreError>;
    /// Every account, by id.
    async fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// The accounts that use one server for any role, by id.
    async fn accounts_on(&self, server: ServerId) -> Result<Vec<Account>, StoreError>;
    async fn set_account_status(
        &self,
        id: AccountId,
        status: AccountStatus,
    ) -> Result<Account, StoreError>;
    /// Moves roles of an account, each to its server in `targets` if that server can take it
    /// (the placement rule for a named server): all of them or none, in one transaction with
    /// the index and the account counts.
    async fn move_roles(
        &self,
        id: AccountId,
        targets: &std::collections::BTreeMap<Role, ServerId>,
    ) -> Result<Account, StoreError>;
    /// Replaces an account's domains and PHP settings (its user name and roles stay); new
    /// domains are checked like a create's; a domain that still has mailboxes or aliases is
    /// not taken away.
    async fn update_account(&self, id: AccountId, spec: AccountSpec)
    -> Result<Account, StoreError>;
    /// Deletes an account (with its mailboxes and aliases) and frees its user name and
    /// domains; returns what was deleted.
    async fn delete_account(&self, id: AccountId) -> Result<Account, StoreError>;

    /// A setting (ACME account, admin token location, newest agent version…), as JSON.
    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError>;
    async fn put_setting(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError>;
    /// Removes a setting; removing one that is not there is not an error.
    async fn delete_setting(&self, key: &str) -> Result<(), StoreError>;
    /// Every setting whose key starts with `prefix`, in key order, read in one transaction.
    async fn settings_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError>;

    /// Takes or renews the lease `name` for `holder` for `ttl` (work that must run once across
    /// controllers sharing a store: the health monitor, renewals): `true` when `holder` has it
    /// now. It is free again once `ttl` has passed without a renewal, on the store's clock.
    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Gives up the lease `name` if `holder` has it, so another may take it at once.
    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// What kind of object a [`StoreError::NotFound`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Account,
    Mailbox,
    Alias,
    Zone,
    Record,
    Database,
    DbUser,
    Job,
    Snapshot,
    Admin,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Server => "server",
            Kind::Account => "account",
            Kind::Mailbox => "mailbox",
            Kind::Alias => "alias",
            Kind::Zone => "zone",
            Kind::Record => "record",
            Kind::Database => "database",
            Kind::DbUser => "database user",
            Kind::Job => "job",
            Kind::Snapshot => "snapshot",
            Kind::Admin => "administrator",
        })
    }
}

/// How many user names a [`StoreError::ServerHasAccounts`] lists at most.
pub const LISTED_ACCOUNTS: usize = 20;

/// Errors of a [`Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{kind} {id} does not exist")]
    NotFound { kind: Kind, id: u64 },
    /// A unique value is taken. `field` is the API field (`hostname`, `domains[1]`).
    #[error("{field} {value:?} is already in use")]
    Duplicate { field: String, value: String },
    #[error("the server hosts {count} account(s) ({}): migrate or delete them first", list_names(.accounts, *.count))]
    ServerHasAccounts {
        count: u64,
        /// The first [`LISTED_ACCOUNTS`] of them, with the roles they use the server for.
        accounts: Vec<(UserName, RoleSet)>,
    },
    /// The account does not use that role (or it is `dns`, which no move takes).
    #[error("the account has no {role} role to move")]
    RoleNotUsed { role: Role },
    #[error("the server hosts {accounts} account(s) that need the role(s) {missing}")]
    RolesInUse { missing: RoleSet, accounts: u64 },
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The agent is already registered as another server (under another spelling of its URL).
    #[error("this agent is already registered as server {server}")]
    SameAgent { server: ServerId },
    #[error("the secret key is not the one this store was created with")]
    WrongKey,
    #[error("the data file has schema version {found}; this build reads up to {supported}")]
    UnsupportedSchema { found: u64, supported: u64 },
    #[error("storage failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store cannot be reached now (a database connection lost); try again.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// No mailbox or alias of the account has that address.
    #[error("the account has no {kind} {address}")]
    AddressNotFound { kind: Kind, address: String },
    /// A value the store checks against what it holds (an address outside the account's
    /// domains, an alias loop).
    #[error(transparent)]
    Invalid(#[from] crate::domain::ValidationError),
    /// A domain the update would take from an account still has its mailboxes or aliases.
    #[error("{domain} still has {count} mailbox(es) or alias(es): delete them first")]
    DomainInUse { domain: String, count: u64 },
    /// The account already has a queued or running job.
    #[error("job {job} of this account is not finished yet")]
    JobRunning { job: crate::domain::job::JobId },
}

impl StoreError {
    pub(crate) fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Backend(e.into())
    }
}

fn list_names(accounts: &[(UserName, RoleSet)], count: u64) -> String {
    let mut out = accounts
        .iter()
        .map(|(user, roles)| format!("{user}: {roles}"))
        .collect::<Vec<_>>()
        .join("; ");
    if (accounts.len() as u64) < count {
        out.push_str(", …");
    }
    out
}

/// Which backend to open, as configuration names it. Shown (`Display`, `Debug`) without the
/// password of a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Engine {
    /// The embedded store in one file (created when missing).
    Redb(PathBuf),
    /// State kept in memory only, lost at exit.
    Memory,
    /// A PostgreSQL database several controllers share (`postgres://…`).
    Postgres(String),
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Redb(path) => write!(f, "redb:{}", path.display()),
            Engine::Memory => f.write_str("memory"),
            Engine::Postgres(url) => f.write_str(&Engine::redact(url)),
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Engine({self})")
    }
}

impl Engine {
    /// The engine `ENCONF_STORE` names: `redb` (the file at `default_redb`), `redb:PATH`,
    /// `memory`, or a `postgres://` / `postgresql://` URL.
    pub fn from_setting(value: &str, default_redb: PathBuf) -> Result<Self, String> {
        match value {
            "redb" => Ok(Engine::Redb(default_redb)),
            "memory" => Ok(Engine::Memory),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Engine::Postgres(url.to_owned()))
            }
            other => match other.strip_prefix("redb:") {
                Some(path) if !path.is_empty() => Ok(Engine::Redb(PathBuf::from(path))),
                _ => Err(format!(
                    "unknown store {:?}: redb, redb:PATH, memory or a postgres:// URL",
                    Engine::redact(other)
                )),
            },
        }
    }

    /// `text` with the password of a URL's `user:password@` replaced by `***`.
    fn redact(text: &str) -> String {
        let Some((scheme, rest)) = text.split_once("://") else {
            return text.to_owned();
        };
        let Some((userinfo, host)) = rest.rsplit_once('@') else {
            return text.to_owned();
        };
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => text.to_owned(),
        }
    }

    /// Copies this store, as it is, into the empty store `to` (for a company moving from redb
    /// to PostgreSQL, or back), and checks that `to` holds as many entries of each table as
    /// were copied. Sealed secrets are copied sealed: `to` opens with the same key. Blocking,
    /// like [`Engine::open`]. Returns the number of entries per table.
    #[cfg_attr(
        not(any(feature = "redb", feature = "postgres")),
        allow(unused_variables)
    )]
    pub fn copy_to(&self, to: &Engine) -> Result<Vec<(&'static str, usize)>, StoreError> {
        match self {
            #[cfg(feature = "redb")]
            Engine::Redb(path) => to.copy_from(&RedbBackend::open(path)?),
            #[cfg(feature = "postgres")]
            Engine::Postgres(url) => to.copy_from(&PostgresBackend::connect(url, 2)?),
            Engine::Memory => Err(StoreError::backend(
                "an in-memory store has nothing to copy",
            )),
            #[allow(unreachable_patterns)]
            _ => Err(StoreError::backend("that backend is not compiled in")),
        }
    }

    #[cfg_attr(
        not(any(feature = "redb", feature = "postgres")),
        allow(unused_variables, dead_code)
    )]
    fn copy_from(&self, from: &impl Backend) -> Result<Vec<(&'static str, usize)>, StoreError> {
        match self {
            #[cfg(feature = "redb")]
            Engine::Redb(path) => kv::copy_tables(from, &RedbBackend::open(path)?),
            #[cfg(feature = "postgres")]
            Engine::Postgres(url) => kv::copy_tables(from, &PostgresBackend::connect(url, 2)?),
            Engine::Memory => Err(StoreError::backend("a copy into memory would be lost")),
            #[allow(unreachable_patterns)]
            _ => Err(StoreError::backend("that backend is not compiled in")),
        }
    }

    /// Opens the store, whose secrets (agent tokens) are sealed with `key`. Blocking (redb
    /// opens and checks its file, PostgreSQL connects and migrates): call it at start-up on a
    /// blocking thread of the tokio runtime (`spawn_blocking`).
    pub fn open(&self, key: &SecretKey) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            #[cfg(feature = "redb")]
            Engine::Redb(path) => Ok(Arc::new(RedbStore::open(path, key)?)),
            #[cfg(not(feature = "redb"))]
            Engine::Redb(_) => Err(StoreError::backend(
                "the redb backend is not compiled in (feature \"redb\")",
            )),
            Engine::Memory => Ok(Arc::new(MemoryStore::with_backend(
                MemoryBackend::new(),
                key,
            )?)),
            #[cfg(feature = "postgres")]
            Engine::Postgres(url) => Ok(Arc::new(PostgresStore::with_backend(
                PostgresBackend::connect(url, 16)?,
                key,
            )?)),
            #[cfg(not(feature = "postgres"))]
            Engine::Postgres(_) => Err(StoreError::backend(
                "the PostgreSQL backend is not compiled in (feature \"postgres\")",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_all(mut new_store: impl FnMut() -> (Arc<dyn Store>, Option<tempfile::TempDir>)) {
        for (_name, check) in conformance::CHECKS {
            let (store, _dir) = new_store();
            check(store).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_backend_conforms() {
        run_all(|| (Arc::new(MemoryStore::new_in_memory()), None)).await;
    }

    #[cfg(feature = "redb")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redb_backend_conforms() {
        run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Engine::Redb(dir.path().join("enconf.redb"))
                .open(&SecretKey::generate().unwrap())
                .unwrap();
            (store, Some(dir))
        })
        .await;
    }

    #[test]
    fn store_settings_parse_and_show_no_password() {
        let default = PathBuf::from("/var/lib/enconf/enconf.redb");
        let engine = |v| Engine::from_setting(v, default.clone());
        assert_eq!(engine("redb"), Ok(Engine::Redb(default.clone())));
        assert_eq!(
            engine("redb:/srv/x.redb"),
            Ok(Engine::Redb("/srv/x.redb".into()))
        );
        assert_eq!(engine("memory"), Ok(Engine::Memory));
        let url = "postgres://enconf:s3cret@db.example:5432/enconf";
        let pg = engine(url).unwrap();
        assert_eq!(pg, Engine::Postgres(url.into()));
        assert_eq!(
            pg.to_string(),
            "postgres://enconf:***@db.example:5432/enconf"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        let bad = engine("mysql://root:s3cret@h/db").unwrap_err();
        assert!(
            bad.contains("unknown store") && !bad.contains("s3cret"),
            "{bad}"
        );
        assert!(engine("redb:").is_err());
        assert!(engine("").is_err());
    }
}
