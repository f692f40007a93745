//! The PostgreSQL backend (feature `postgres`): the store's tables as rows of one table, for
//! several controllers sharing one database.
//!
//! - **Layout**: `enconf_kv (tbl smallint, key bytea, value bytea, primary key (tbl, key))`;
//!   `bytea` orders like the other backends' byte keys, so a prefix scan is a range scan of
//!   the primary key. `enconf_leases` holds the leases of work that must run once. The layout
//!   is created and migrated at start under an advisory lock (versioned in
//!   `enconf_migrations`); a database with a newer version than this build knows is refused.
//! - **Writes** run under READ COMMITTED and first take one transaction-scoped advisory lock,
//!   so they run one at a time across every controller, as redb's single writer does in one
//!   process. Under READ COMMITTED each statement sees what was committed before it started,
//!   and the lock is taken before the transaction's first read, so every read-check-write
//!   (uniqueness, `max_accounts`, a server with accounts) sees the last committed state and no
//!   other write can commit between its check and its write. (REPEATABLE READ would fix the
//!   snapshot before the lock, and read stale data; SERIALIZABLE would abort unrelated writes
//!   and need retries.) The lock is released at commit or rollback, also when a controller
//!   dies mid-write, and works behind a transaction-mode connection pooler.
//! - **Reads** run in READ ONLY REPEATABLE READ transactions: one consistent snapshot, and they
//!   never wait for a write.
//! - The pool (deadpool) reconnects by itself; a database that cannot be reached is
//!   [`StoreError::Unavailable`] (`503`), never a panic.
//!
//! The backend's calls block: the store runs them on tokio's blocking threads, where they wait
//! on the runtime with [`Handle::block_on`](tokio::runtime::Handle::block_on).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::StoreError;
use super::kv::{Backend, Entries, ReadTxn, Table, WriteTxn, upper_bound};

/// The advisory lock every write takes (an arbitrary 64-bit constant: "enconf w").
const WRITE_LOCK: i64 = 0x656e_636f_6e66_2077;
/// The advisory lock migrations take.
const MIGRATE_LOCK: i64 = 0x656e_636f_6e66_206d;
/// The layout versions this build knows, in order.
const MIGRATIONS: &[&str] = &[
    // 1: the key-value rows and the leases.
    "CREATE TABLE enconf_kv (
        tbl smallint NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    CREATE TABLE enconf_leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        expires_at timestamptz NOT NULL
    );",
];

/// How long a write waits for a connection from the pool.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Several controllers' shared store.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    /// Connections for reads: never taken by a write waiting for the write lock, so reads
    /// do not wait for writes.
    reads: Pool,
    /// Connections for writes (and leases); they run one at a time anyway.
    writes: Pool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn db(e: tokio_postgres::Error) -> StoreError {
    // A lost connection, a server shutting down or starting, or one out of connections is
    // the database being away for now; anything else is a fault.
    let away = match e.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") // connection exception
                || code.starts_with("57P") // admin or crash shutdown, cannot connect now
                || code == "53300" // too many connections
        }
    };
    if e.is_closed() || away {
        unavailable(e)
    } else {
        StoreError::backend(e)
    }
}

fn handle() -> Result<Handle, StoreError> {
    Handle::try_current()
        .map_err(|_| StoreError::backend("the PostgreSQL store runs inside a tokio runtime"))
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user@host:port/db`; `?sslmode=require` for TLS, checked
    /// against the system's roots by rustls), creates or migrates the layout, and keeps a pool
    /// of `size` connections for reads and a quarter as many (at least two) for writes.
    /// Blocking: call it from a blocking thread of a tokio runtime.
    pub fn connect(url: &str, size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::backend(format!("ENCONF_STORE is not a PostgreSQL URL: {e}"))
        })?;
        let backend = Self {
            reads: pool(config.clone(), size.max(2))?,
            writes: pool(config, (size / 4).max(2))?,
        };
        backend.migrate()?;
        Ok(backend)
    }

    fn client(pool: &Pool, rt: &Handle) -> Result<deadpool_postgres::Object, StoreError> {
        rt.block_on(pool.get()).map_err(unavailable)
    }

    /// Creates the layout or brings it up to this build's version, one controller at a time;
    /// refuses a newer one.
    fn migrate(&self) -> Result<(), StoreError> {
        let rt = handle()?;
        let mut client = Self::client(&self.writes, &rt)?;
        rt.block_on(async {
            let tx = client.transaction().await.map_err(db)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                .await
                .map_err(db)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS enconf_migrations (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(db)?;
            let row = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM enconf_migrations",
                    &[],
                )
                .await
                .map_err(db)?;
            let found: i32 = row.get(0);
            let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
            if found > known {
                return Err(StoreError::UnsupportedSchema {
                    found: u64::try_from(found).unwrap_or(0),
                    supported: u64::try_from(known).unwrap_or(0),
                });
            }
            for (i, sql) in MIGRATIONS
                .iter()
                .enumerate()
                .skip(usize::try_from(found).unwrap_or(0))
            {
                tx.batch_execute(sql).await.map_err(db)?;
                let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
                tx.execute(
                    "INSERT INTO enconf_migrations (version) VALUES ($1)",
                    &[&version],
                )
                .await
                .map_err(db)?;
                tracing::info!(version, "PostgreSQL store layout migrated");
            }
            tx.commit().await.map_err(db)
        })
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`, on the database's clock: `true`
    /// when `holder` has it now (it was free, expired, or already its own).
    pub fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let rt = handle()?;
        // One statement on its own, which never waits for the write lock: a read connection,
        // so a burst of writes does not delay a renewal past its expiry.
        let client = Self::client(&self.reads, &rt)?;
        let seconds = ttl.as_secs_f64();
        let row = rt
            .block_on(client.query_opt(
                "INSERT INTO enconf_leases (name, holder, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE
                   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                   WHERE enconf_leases.holder = EXCLUDED.holder
                      OR enconf_leases.expires_at < now()
                 RETURNING holder",
                &[&name, &holder, &seconds],
            ))
            .map_err(db)?;
        Ok(row.is_some())
    }

    /// Gives up the lease `name` if `holder` has it.
    pub fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let rt = handle()?;
        let client = Self::client(&self.reads, &rt)?;
        rt.block_on(client.execute(
            "DELETE FROM enconf_leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        ))
        .map_err(db)?;
        Ok(())
    }
}

/// A pool of up to `size` connections that reconnects by itself: a connection found broken
/// when taken is replaced.
fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        }
        _ => Manager::from_config(config, tls()?, manager_config),
    };
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .recycle_timeout(Some(POOL_WAIT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(StoreError::backend)
}

/// TLS to the database with rustls (ring), trusting the system's roots.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(StoreError::backend)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn tbl(table: Table) -> i16 {
    table as i16
}

/// Reads and writes through one database transaction.
struct Txn<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    rt: &'a Handle,
}

impl Txn<'_> {
    /// Runs `sql` as a statement prepared once per connection.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.rt
            .block_on(async {
                let statement = self.tx.prepare_cached(sql).await?;
                self.tx.query(&statement, params).await
            })
            .map_err(db)
    }
}

impl ReadTxn for Txn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(
            "SELECT value FROM enconf_kv WHERE tbl = $1 AND key = $2",
            &[&tbl(table), &key],
        )?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let start = start.max(prefix);
        // No limit is the whole range (a LIMIT beyond i64 means none).
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match upper_bound(prefix) {
            Some(end) => self.query(
                "SELECT key, value FROM enconf_kv WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                &[&tbl(table), &start, &end, &limit],
            )?,
            None => self.query(
                "SELECT key, value FROM enconf_kv WHERE tbl = $1 AND key >= $2 ORDER BY key LIMIT $3",
                &[&tbl(table), &start, &limit],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
            .collect())
    }

    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        use std::ops::Bound;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let Some((_, hi)) = super::kv::back_range(prefix, end) else {
            return Ok(Vec::new());
        };
        let rows = match hi {
            Bound::Excluded(hi) => self.query(
                "SELECT key, value FROM enconf_kv WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4",
                &[&tbl(table), &prefix, &hi, &limit],
            )?,
            _ => self.query(
                "SELECT key, value FROM enconf_kv WHERE tbl = $1 AND key >= $2 ORDER BY key DESC LIMIT $3",
                &[&tbl(table), &prefix, &limit],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
            .collect())
    }
}

impl WriteTxn for Txn<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.query(
            "INSERT INTO enconf_kv (tbl, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
            &[&tbl(table), &key, &value],
        )
        .map(drop)
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.query(
            "DELETE FROM enconf_kv WHERE tbl = $1 AND key = $2",
            &[&tbl(table), &key],
        )
        .map(drop)
    }
}

impl Backend for PostgresBackend {
    fn read<R>(
        &self,
        f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let rt = handle()?;
        let mut client = Self::client(&self.reads, &rt)?;
        let tx = rt
            .block_on(
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )
            .map_err(db)?;
        let txn = Txn { tx, rt: &rt };
        let value = f(&txn)?;
        rt.block_on(txn.tx.commit()).map_err(db)?;
        Ok(value)
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let rt = handle()?;
        let mut client = Self::client(&self.writes, &rt)?;
        let tx = rt
            .block_on(
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::ReadCommitted)
                    .start(),
            )
            .map_err(db)?;
        let mut txn = Txn { tx, rt: &rt };
        txn.query("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        match f(&mut txn) {
            Ok(value) => {
                rt.block_on(txn.tx.commit()).map_err(db)?;
                Ok(value)
            }
            Err(e) => {
                // Dropping the transaction rolls it back; say so to the server at once.
                if let Err(rollback) = rt.block_on(txn.tx.rollback()) {
                    tracing::warn!(error = %rollback, "rollback failed (the connection is gone, and the transaction with it)");
                }
                Err(e)
            }
        }
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        PostgresBackend::lease(self, name, holder, ttl)
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        PostgresBackend::release(self, name, holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(upper_bound(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(upper_bound(&[0xFF, 0xFF]), None);
        assert_eq!(upper_bound(b""), None);
    }
}
