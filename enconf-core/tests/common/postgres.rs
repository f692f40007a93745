//! A private PostgreSQL on a loopback port for the tests: `initdb` into a temporary directory
//! (as the `postgres` user: the server refuses to run as root), started with `pg_ctl`,
//! stopped by it when dropped. Skipped on a workstation without PostgreSQL; a failure under
//! `CI=true`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The key the tests' stores are sealed with.
pub fn key() -> enconf_core::secret::SecretKey {
    enconf_core::secret::SecretKey::from_hex(&"7c".repeat(32)).unwrap()
}

/// Opens (creating its tables) the PostgreSQL store at `url`, sealed with [`key`].
pub async fn open(url: &str) -> Arc<dyn enconf_core::store::Store> {
    let engine = enconf_core::store::Engine::Postgres(url.to_owned());
    tokio::task::spawn_blocking(move || engine.open(&key()))
        .await
        .unwrap()
        .unwrap()
}

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// `fsync` on, as in production (benches); off for the tests, which need no durability.
    durable: bool,
}

fn skip_or_fail(why: &str) -> Option<Postgres> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: CI must provide it (.ci/run installs it)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// The newest PostgreSQL server programs installed (`/usr/lib/postgresql/<v>/bin`).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Runs a program as the `postgres` user.
fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).arg(program);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// One server for the tests of this binary that run at the same time (each works in
    /// databases of its own); stopped when the last of them is done.
    pub fn shared() -> Option<Arc<Self>> {
        static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pg) = slot.upgrade() {
            return Some(pg);
        }
        let pg = Arc::new(Self::start()?);
        *slot = Arc::downgrade(&pg);
        Some(pg)
    }

    /// A server of the caller's own (to stop and start).
    pub fn start() -> Option<Self> {
        Self::launch(false)
    }

    /// A server that syncs its commits to disk, as a production one does (for benches).
    pub fn start_durable() -> Option<Self> {
        Self::launch(true)
    }

    fn launch(durable: bool) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            return skip_or_fail("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)");
        };
        if !Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return skip_or_fail("there is no postgres user");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "enconf",
                "--auth=trust",
                "-E",
                "UTF8",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Self {
            dir,
            bin,
            port: free_port(),
            durable,
        };
        pg.resume();
        Some(pg)
    }

    /// Starts the server (again), on the same port and data.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.port,
            self.dir.path().display(),
            if self.durable { "on" } else { "off" }
        );
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", self.data().to_str().unwrap(), "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Stops the server at once, as a crash would (open connections are cut).
    pub fn stop(&self) {
        self.stop_with("immediate");
    }

    /// Stops the server as an administrator does for maintenance (sessions are told
    /// `57P01 admin_shutdown`).
    pub fn stop_fast(&self) {
        self.stop_with("fast");
    }

    fn stop_with(&self, mode: &str) {
        let data = self.data();
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", mode, "-w", "stop"])
            .output();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://enconf@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database.
    pub fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs SQL against database `db`; its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "enconf",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
