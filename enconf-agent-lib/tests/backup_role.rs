//! The backup role end to end: the controller (in process) backs up an account whose site
//! and mail are on a sandbox-rooted web+mail agent and whose database is on a real MariaDB,
//! into a restic repository served append-only by the backup agent's `rclone serve restic`;
//! then everything is destroyed and restored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::TOKEN;
use common::mariadb::MariaDb;
use common::services::{free_port, skip_or_fail, wait_for};
use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::{RealSystem, Sandbox};
use enconf_agent_lib::transport::InProcess;
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::job::{Job, JobId, JobStatus, JobWork, NewJob};
use enconf_core::domain::{AccountId, AgentToken, AgentUrl, Role, ServerId};
use enconf_core::protocol::backup::{JobView, RestoreInput};
use enconf_core::protocol::db::DatabaseInput;
use enconf_core::protocol::mail::MailboxInput;
use enconf_core::protocol::{ErrorBody, ErrorCode};
use serde_json::json;

struct Cluster {
    controller: Controller,
    runtime: tokio::runtime::Runtime,
    db: Arc<MariaDb>,
    /// The web+mail agent's sandbox root.
    web_root: PathBuf,
    /// The backup agent's sandbox root.
    backup_root: PathBuf,
    backup_port: u16,
    transport: Arc<InProcess>,
    /// Two web and mail servers, with their roots.
    web1: ServerId,
    web2: ServerId,
    web2_root: PathBuf,
    /// The db server, on the shared MariaDB.
    db1: ServerId,
    _dirs: Vec<tempfile::TempDir>,
}

fn tools_present() -> bool {
    for p in ["/usr/bin/restic", "/usr/bin/rclone", "/usr/bin/rsync"] {
        if !Path::new(p).exists() {
            skip_or_fail(&format!("{p} is missing (restic, rclone, rsync)"));
            return false;
        }
    }
    true
}

/// One MariaDB for the tests that run at the same time (their accounts' names differ).
fn shared_mariadb() -> Option<Arc<MariaDb>> {
    static SHARED: std::sync::Mutex<std::sync::Weak<MariaDb>> =
        std::sync::Mutex::new(std::sync::Weak::new());
    let mut slot = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(db) = slot.upgrade() {
        return Some(db);
    }
    let db = Arc::new(MariaDb::start()?);
    *slot = Arc::downgrade(&db);
    Some(db)
}

/// Serves `applier` as an agent at `port` (in process) and adds it as a server.
fn register<S: enconf_agent_lib::system::System>(
    runtime: &tokio::runtime::Runtime,
    controller: &Controller,
    transport: &InProcess,
    applier: Applier<S>,
    port: u16,
    server: serde_json::Value,
) -> ServerId {
    let agent =
        runtime.block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 22) });
    let url: AgentUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
    transport.add(url.clone(), router(agent));
    let mut input = server;
    input["agent_url"] = json!(url.to_string());
    input["agent_token"] = json!(TOKEN);
    let input = serde_json::from_value(input).unwrap();
    let server = runtime.block_on(controller.add_server(&input)).unwrap();
    assert!(server.reachable, "{server:?}");
    server.id
}

/// A db agent driving the real MariaDB `db`, served at `port` and added as the server `name`.
fn db_agent(
    runtime: &tokio::runtime::Runtime,
    controller: &Controller,
    transport: &InProcess,
    db: &MariaDb,
    port: u16,
    name: &str,
) -> (ServerId, tempfile::TempDir) {
    let db_dir = tempfile::tempdir().unwrap();
    let settings = db.agent_settings();
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = common::config(db_dir.path(), &extra);
    std::fs::create_dir(db_dir.path().join("mariadb")).unwrap();
    let applier = Applier::new(config.layout, RealSystem::new()).with_roles(config.roles);
    applier.start().unwrap();
    let id = register(
        runtime,
        controller,
        transport,
        applier,
        port,
        json!({"name": name, "hostname": format!("{name}.host.example"), "roles": ["db"]}),
    );
    (id, db_dir)
}

fn cluster() -> Option<Cluster> {
    cluster_with(None)
}

/// A cluster whose controller reads the time from `clock` when given.
fn cluster_with(clock: Option<enconf_core::controller::Clock>) -> Option<Cluster> {
    if !tools_present() {
        return None;
    }
    let db = shared_mariadb()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let transport = Arc::new(InProcess::new());
    let mut controller = Controller::new(
        Arc::new(enconf_core::store::MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig {
            job_poll: Duration::from_millis(100),
            ..Default::default()
        },
    );
    if let Some(clock) = clock {
        controller = controller.with_clock(clock);
    }
    let mut dirs = Vec::new();
    // Web and mail: a sandbox-rooted agent.
    let web_dir = tempfile::tempdir().unwrap();
    let applier = common::sandbox_applier(web_dir.path()).with_roles("web,mail".parse().unwrap());
    let web_root = web_dir.path().join("box");
    let web1 = register(
        &runtime,
        &controller,
        &transport,
        applier,
        50090,
        json!({"name": "web1", "hostname": "web1.host.example", "roles": ["web", "mail"],
            "mail_hostname": "mail.web1.host.example"}),
    );
    dirs.push(web_dir);
    let web2_dir = tempfile::tempdir().unwrap();
    let applier = common::sandbox_applier(web2_dir.path()).with_roles("web,mail".parse().unwrap());
    let web2_root = web2_dir.path().join("box");
    let web2 = register(
        &runtime,
        &controller,
        &transport,
        applier,
        50093,
        json!({"name": "web2", "hostname": "web2.host.example", "roles": ["web", "mail"],
            "mail_hostname": "mail.web2.host.example"}),
    );
    dirs.push(web2_dir);

    // The backup server: a sandbox-rooted agent whose rclone serves its repositories.
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_port = free_port();
    let listen = format!("127.0.0.1:{backup_port}");
    let url = format!("http://127.0.0.1:{backup_port}");
    let config = common::config(
        Path::new("/srv"),
        &[
            ("AGENT_BACKUP_LISTEN", listen.as_str()),
            ("AGENT_BACKUP_URL", url.as_str()),
        ],
    );
    let sandbox = Sandbox::new(backup_dir.path().join("box"));
    let applier = Applier::new(config.layout, sandbox).with_roles("backup".parse().unwrap());
    applier.start().unwrap();
    let backup_root = backup_dir.path().join("box");
    register(
        &runtime,
        &controller,
        &transport,
        applier,
        50091,
        json!({"name": "backup1", "hostname": "backup1.host.example", "roles": ["backup"]}),
    );
    dirs.push(backup_dir);
    wait_for("the backup endpoint", || {
        std::net::TcpStream::connect(("127.0.0.1", backup_port)).is_ok()
    });

    // The database server: a real MariaDB.
    let (db1, db_dir) = db_agent(&runtime, &controller, &transport, &db, 50092, "db1");
    dirs.push(db_dir);
    Some(Cluster {
        controller,
        runtime,
        db,
        web_root,
        backup_root,
        backup_port,
        transport,
        web1,
        web2,
        web2_root,
        db1,
        _dirs: dirs,
    })
}

impl Cluster {
    fn account(&self, user: &str) -> AccountId {
        let input = serde_json::from_value(json!({
            "username": user, "domains": [format!("{user}.example")],
            "roles": ["web", "mail", "db", "backup"],
        }))
        .unwrap();
        let account = self
            .runtime
            .block_on(self.controller.create_account(&input))
            .unwrap();
        let id = AccountId(account.id);
        let input: DatabaseInput = serde_json::from_value(json!({ "name": "wp" })).unwrap();
        self.runtime
            .block_on(self.controller.create_database(id, &input))
            .unwrap();
        let input: MailboxInput = serde_json::from_value(json!({
            "address": format!("info@{user}.example"), "password": "a mailbox password",
        }))
        .unwrap();
        self.runtime
            .block_on(self.controller.create_mailbox(id, &input))
            .unwrap();
        id
    }

    fn site_file(&self, user: &str) -> PathBuf {
        self.web_root
            .join(format!("srv/www/{user}/public_html/index.html"))
    }

    fn message(&self, user: &str) -> PathBuf {
        self.web_root.join(format!(
            "var/vmail/{user}.example/info/Maildir/cur/1700000000.M1P1.host:2,S"
        ))
    }

    fn wait(&self, job: &JobView) -> JobView {
        let mut seen = job.clone();
        for _ in 0..600 {
            seen = self
                .runtime
                .block_on(self.controller.job(JobId(job.id)))
                .unwrap();
            if !matches!(seen.status, JobStatus::Queued | JobStatus::Running) {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the job did not finish: {seen:?}");
    }

    fn backup(&self, id: AccountId) -> JobView {
        let job = self
            .runtime
            .block_on(self.controller.start_backup(id))
            .unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        let done = self.wait(&job);
        assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
        done
    }

    /// One request to the backup endpoint with the account's access password; the status.
    fn http(&self, id: AccountId, user: &str, method: &str, path: &str) -> u16 {
        use base64::Engine;
        use std::io::{Read, Write};
        let keys = self
            .runtime
            .block_on(self.controller.store().backup_keys(id))
            .unwrap();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", keys.access.expose_secret()));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.backup_port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// restic against the account's repository with the access a web server is given.
    fn restic(&self, id: AccountId, user: &str, args: &[&str]) -> std::process::Output {
        let keys = self
            .runtime
            .block_on(self.controller.store().backup_keys(id))
            .unwrap();
        Command::new("/usr/bin/restic")
            .env(
                "RESTIC_REPOSITORY",
                format!(
                    "rest:http://{user}:{}@127.0.0.1:{}/{user}/",
                    keys.access.expose_secret(),
                    self.backup_port
                ),
            )
            .env("RESTIC_PASSWORD", keys.key.expose_secret())
            .env("RESTIC_CACHE_DIR", self.backup_root.join("test-cache"))
            .args(args)
            .output()
            .unwrap()
    }
}

#[test]
fn back_up_destroy_restore_and_append_only() {
    let Some(c) = cluster() else { return };
    let id = c.account("shop");
    // A site, rows in a database, a message in a mailbox.
    let site = c.site_file("shop");
    std::fs::create_dir_all(site.parent().unwrap()).unwrap();
    let page: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&site, &page).unwrap();
    c.db.admin(
        "CREATE TABLE shop_wp.posts (id INT PRIMARY KEY, title TEXT); \
         INSERT INTO shop_wp.posts VALUES (1, 'hello'), (2, 'world')",
    );
    let message = c.message("shop");
    std::fs::create_dir_all(message.parent().unwrap()).unwrap();
    std::fs::write(&message, b"Subject: kept\r\n\r\nthe message\r\n").unwrap();

    let job = c.backup(id);
    let progress = job.progress.clone().unwrap();
    assert!(progress.total >= page.len() as u64, "{progress:?}");
    assert_eq!(progress.done, progress.total, "{progress:?}");
    let snapshots = c.runtime.block_on(c.controller.backups(id)).unwrap();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0].contents, ["files", "databases", "mail"]);
    assert_eq!(snapshots[0].databases, ["shop_wp"]);
    assert!(snapshots[0].size_bytes >= page.len() as u64);

    // A second job of the account while one runs: 409 job_running.
    let running = c.runtime.block_on(c.controller.start_backup(id)).unwrap();
    let again = c
        .runtime
        .block_on(c.controller.start_backup(id))
        .map_err(ErrorBody::from)
        .unwrap_err();
    assert_eq!(again.error.code, ErrorCode::JobRunning, "{again:?}");
    assert_eq!(c.wait(&running).status, JobStatus::Succeeded);
    // Pruning by the default policy (7 daily, 4 weekly, 6 monthly) keeps the newest of the
    // day: the first set is gone from the repository and from the list.
    let snapshots = c.runtime.block_on(c.controller.backups(id)).unwrap();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0].id, running.id.to_string());

    // Destroy all three.
    std::fs::remove_file(&site).unwrap();
    std::fs::write(site.with_file_name("intruder.php"), b"<?php evil();").unwrap();
    c.db.admin("DELETE FROM shop_wp.posts; INSERT INTO shop_wp.posts VALUES (9, 'defaced')");
    std::fs::remove_file(&message).unwrap();

    // Restore from the first snapshot.
    let input = RestoreInput::default();
    let job = c
        .runtime
        .block_on(c.controller.start_restore(id, &snapshots[0].id, &input))
        .unwrap();
    let done = c.wait(&job);
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    assert_eq!(std::fs::read(&site).unwrap(), page);
    assert!(!site.with_file_name("intruder.php").exists());
    assert_eq!(
        c.db.admin("SELECT id, title FROM shop_wp.posts ORDER BY id"),
        ["1\thello", "2\tworld"]
    );
    assert_eq!(
        std::fs::read(&message).unwrap(),
        b"Subject: kept\r\n\r\nthe message\r\n"
    );
    // Nothing of the restore's scratch databases is left.
    let left = c.db.admin("SHOW DATABASES LIKE 'enconf\\_%'");
    assert!(left.is_empty(), "{left:?}");

    // One database alone, from a snapshot that has it; a snapshot that does not exist is 404.
    c.db.admin("DROP TABLE shop_wp.posts");
    let one: RestoreInput =
        serde_json::from_value(json!({"what": ["databases"], "database": "wp"})).unwrap();
    let job = c
        .runtime
        .block_on(c.controller.start_restore(id, &snapshots[0].id, &one))
        .unwrap();
    assert_eq!(c.wait(&job).status, JobStatus::Succeeded);
    assert_eq!(c.db.admin("SELECT COUNT(*) FROM shop_wp.posts"), ["2"]);
    let missing = c
        .runtime
        .block_on(c.controller.start_restore(id, "999999", &one))
        .map_err(ErrorBody::from)
        .unwrap_err();
    assert_eq!(missing.error.code, ErrorCode::NotFound);

    // The credentials a web server gets cannot delete or rewrite history.
    let listed = c.restic(id, "shop", &["snapshots", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let before: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    // The kept set: one snapshot of the files and mail, one of the dump.
    assert_eq!(before.len(), 2, "{before:?}");
    // What `restic forget` would send: DELETE of a snapshot file (restic itself retries a
    // refused delete for a long while, so the request is made directly).
    let first = before[0]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/shop/snapshots/{first}"),
        "/shop/config".to_owned(),
        "/shop/keys/".to_owned() + before[0]["id"].as_str().unwrap(),
    ] {
        assert_eq!(c.http(id, "shop", "DELETE", &path), 403, "DELETE {path}");
    }
    // Writing over an existing snapshot is refused too.
    assert_ne!(
        c.http(id, "shop", "POST", &format!("/shop/snapshots/{first}")) / 100,
        2
    );
    let after: Vec<serde_json::Value> =
        serde_json::from_slice(&c.restic(id, "shop", &["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(after.len(), before.len());
    // Another account's password does not open this repository.
    let other = c.account("blog");
    let keys = c
        .runtime
        .block_on(c.controller.store().backup_keys(other))
        .unwrap();
    let foreign = Command::new("/usr/bin/restic")
        .env(
            "RESTIC_REPOSITORY",
            format!(
                "rest:http://blog:{}@127.0.0.1:{}/shop/",
                keys.access.expose_secret(),
                c.backup_port
            ),
        )
        .env("RESTIC_PASSWORD", keys.key.expose_secret())
        .args(["snapshots", "--no-cache"])
        .output()
        .unwrap();
    assert!(!foreign.status.success(), "{foreign:?}");
    // No secret reached the job's record or the backup server's password file in clear.
    let htpasswd = std::fs::read_to_string(
        c.backup_root
            .join("etc/netcell-webpanel-agent/backup.htpasswd"),
    )
    .unwrap();
    let shop_keys = c
        .runtime
        .block_on(c.controller.store().backup_keys(id))
        .unwrap();
    assert!(htpasswd.contains("shop:$2y$05$"), "{htpasswd}");
    assert!(!htpasswd.contains(shop_keys.access.expose_secret()));
    let jobs = serde_json::to_string(
        &c.runtime
            .block_on(c.controller.jobs_page(&Default::default()))
            .unwrap()
            .items,
    )
    .unwrap();
    assert!(!jobs.contains(shop_keys.access.expose_secret()));
    assert!(!jobs.contains(shop_keys.key.expose_secret()));

    // Deleting the account makes a final backup, then its site, mail and databases go.
    let sets_before = c
        .runtime
        .block_on(c.controller.store().backup_sets(id))
        .unwrap();
    let kept = c.runtime.block_on(c.controller.delete_account(id)).unwrap();
    assert!(kept.is_none(), "nothing is kept behind: {kept:?}");
    let sets_after = c
        .runtime
        .block_on(c.controller.store().backup_sets(id))
        .unwrap();
    let last = sets_after.last().unwrap();
    assert!(last.set > sets_before.last().unwrap().set, "{sets_after:?}");
    assert_eq!(last.databases, ["shop_wp"]);
    assert!(!site.exists());
    assert!(!c.web_root.join("var/vmail/shop.example").exists());
    assert!(
        !c.web_root.join("var/vmail/.deleted").exists()
            || std::fs::read_dir(c.web_root.join("var/vmail/.deleted"))
                .unwrap()
                .next()
                .is_none(),
        "no mail kept aside"
    );
    assert!(c.db.admin("SHOW DATABASES LIKE 'shop\\_wp'").is_empty());
    // Its password no longer opens the endpoint; its snapshots stay on the backup server,
    // readable with the key the store keeps.
    assert_eq!(c.http(id, "shop", "GET", "/shop/config"), 401);
    let local = Command::new("/usr/bin/restic")
        .env(
            "RESTIC_REPOSITORY",
            c.backup_root
                .join("var/lib/netcell-webpanel-agent/backups/shop"),
        )
        .env("RESTIC_PASSWORD", shop_keys.key.expose_secret())
        .args(["snapshots", "--json", "--no-cache"])
        .output()
        .unwrap();
    assert!(local.status.success(), "{local:?}");
    let left: Vec<serde_json::Value> = serde_json::from_slice(&local.stdout).unwrap();
    let tag = format!("enconf-set-{}", last.set);
    assert!(
        left.iter()
            .any(|s| s["tags"].as_array().unwrap().iter().any(|t| t == &tag)),
        "{left:?}"
    );
}

#[test]
fn an_unfinished_job_is_run_again_after_a_restart() {
    let Some(c) = cluster() else { return };
    let id = c.account("resume");
    // What a controller killed in the middle of a backup leaves: the job `running`.
    let store = c.controller.store().clone();
    let job: Job = c
        .runtime
        .block_on(store.insert_job(
            NewJob {
                account_id: Some(id),
                server_id: None,
                work: JobWork::Backup {
                    cause: enconf_core::domain::job::BackupCause::Asked,
                },
            },
            time::OffsetDateTime::now_utc(),
        ))
        .unwrap();
    let mut running = job.clone();
    running.status = JobStatus::Running;
    c.runtime.block_on(store.update_job(running)).unwrap();
    // The account stays busy until the job ends.
    let busy = c
        .runtime
        .block_on(c.controller.start_backup(id))
        .map_err(ErrorBody::from)
        .unwrap_err();
    assert_eq!(busy.error.code, ErrorCode::JobRunning);
    // A controller starting on that store runs it again.
    let resumed = c.runtime.block_on(c.controller.resume_jobs()).unwrap();
    assert_eq!(resumed, 1);
    let done = c.wait(&JobView::from(&job));
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    assert_eq!(
        c.runtime.block_on(c.controller.backups(id)).unwrap().len(),
        1
    );
}

#[test]
fn each_account_is_backed_up_once_a_night_in_its_slot() {
    use std::sync::atomic::{AtomicI64, Ordering};
    // Midnight UTC of some day, then the clock moves as the test says.
    let day = time::macros::datetime!(2030-01-10 00:00 UTC).unix_timestamp();
    let now = Arc::new(AtomicI64::new(day - 3600));
    let seen = Arc::clone(&now);
    let clock: enconf_core::controller::Clock = Arc::new(move || {
        time::OffsetDateTime::from_unix_timestamp(seen.load(Ordering::SeqCst)).unwrap()
    });
    let Some(c) = cluster_with(Some(clock)) else {
        return;
    };
    let id = c.account("nightly");
    let schedule = || c.runtime.block_on(c.controller.schedule_backups()).unwrap();
    // Before the window (01:00-05:00 UTC): nothing is due.
    now.store(day + 30 * 60, Ordering::SeqCst);
    assert_eq!(schedule(), 0);
    // At the end of the window every account's slot has come: one backup, once.
    now.store(day + 5 * 3600, Ordering::SeqCst);
    assert_eq!(schedule(), 1);
    assert_eq!(
        schedule(),
        0,
        "a second round the same night starts nothing"
    );
    let jobs = c
        .runtime
        .block_on(c.controller.jobs_page(&Default::default()))
        .unwrap()
        .items;
    let done = c.wait(&jobs[0]);
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    assert_eq!(schedule(), 0);
    // A controller that was down all night does not start the night's backups at noon.
    now.store(day + 86_400 + 12 * 3600, Ordering::SeqCst);
    assert_eq!(schedule(), 0);
    // The next night: once again.
    now.store(day + 2 * 86_400 + 5 * 3600, Ordering::SeqCst);
    assert_eq!(schedule(), 1);
    let jobs = c
        .runtime
        .block_on(c.controller.jobs_page(&Default::default()))
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 2);
    assert_eq!(c.wait(&jobs[0]).status, JobStatus::Succeeded);
    assert!(
        !c.runtime
            .block_on(c.controller.backups(id))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn migration_moves_the_site_and_a_failure_leaves_it_on_the_source() {
    let Some(c) = cluster() else { return };
    let id = c.account("moving");
    let account = c.runtime.block_on(c.controller.account(id)).unwrap();
    assert_eq!(account.server_id, Some(c.web1));
    // A site of a few files in directories, one of them large.
    let docroot = c.web_root.join("srv/www/moving/public");
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let size = if i == 0 { 3 << 20 } else { 100 + i * 37 };
            let bytes: Vec<u8> = (0..size).map(|b| ((b * 7 + i) % 251) as u8).collect();
            (format!("dir{}/page{i}.html", i % 3), bytes)
        })
        .collect();
    for (name, bytes) in &files {
        let path = docroot.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let input: enconf_core::protocol::MigrateInput =
        serde_json::from_value(json!({ "target_server_id": c.web2.0 })).unwrap();
    let job = c
        .runtime
        .block_on(c.controller.start_migrate(id, &input))
        .unwrap();
    assert_eq!(job.kind, enconf_core::domain::job::JobKind::Migrate);
    assert_eq!(job.server_id, Some(c.web2));
    let done = c.wait(&job);
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    assert!(done.progress.unwrap().total >= 3 << 20);
    // Everything is on the target, nothing on the source; the record follows.
    let moved = c.web2_root.join("srv/www/moving/public");
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(moved.join(name)).unwrap(), bytes, "{name}");
    }
    assert!(!c.web_root.join("srv/www/moving").exists());
    let account = c.runtime.block_on(c.controller.account(id)).unwrap();
    assert_eq!(account.server_id, Some(c.web2));
    for (server, count) in [(c.web1, 1), (c.web2, 1)] {
        // web1 keeps the account's mail.
        assert_eq!(
            c.runtime
                .block_on(c.controller.server(server))
                .unwrap()
                .accounts,
            count
        );
    }

    // Back again, with the target lost in the middle: the job fails saying why, and the
    // account stays where it was, with its files.
    let url: AgentUrl = "http://127.0.0.1:50090".parse().unwrap();
    let back: enconf_core::protocol::MigrateInput =
        serde_json::from_value(json!({ "target_server_id": c.web1.0 })).unwrap();
    let job = c
        .runtime
        .block_on(c.controller.start_migrate(id, &back))
        .unwrap();
    c.transport.set_offline(&url, true);
    let failed = c.wait(&job);
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    let reason = failed.error.unwrap();
    assert!(reason.contains("server 1"), "{reason}");
    c.transport.set_offline(&url, false);
    let account = c.runtime.block_on(c.controller.account(id)).unwrap();
    assert_eq!(account.server_id, Some(c.web2));
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(moved.join(name)).unwrap(), bytes, "{name}");
    }
    // The site still runs PHP there (a pool stopped for a last pass is put back).
    assert!(
        c.web2_root
            .join("srv/php/8.2/pool.d/enconf-moving.conf")
            .exists()
    );
}

#[test]
fn migration_moves_site_mail_and_databases_while_the_site_is_read() {
    let Some(c) = cluster() else { return };
    let Some(db2) = MariaDb::start() else { return };
    let (db2_id, _db2_dir) = db_agent(&c.runtime, &c.controller, &c.transport, &db2, 50094, "db2");
    let id = c.account("travel");
    let page: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let site = c.site_file("travel");
    std::fs::create_dir_all(site.parent().unwrap()).unwrap();
    std::fs::write(&site, &page).unwrap();
    c.db.admin(
        "CREATE TABLE travel_wp.trips (id INT PRIMARY KEY, place TEXT); \
         INSERT INTO travel_wp.trips VALUES (1, 'Lisbon'), (2, 'Oslo')",
    );
    let message = c.message("travel");
    std::fs::create_dir_all(message.parent().unwrap()).unwrap();
    std::fs::write(&message, b"Subject: moved\r\n\r\nthe message\r\n").unwrap();
    let relative = |root: &Path, path: &Path| root.join(path.strip_prefix(&c.web_root).unwrap());

    // A reader keeps fetching the page from the server the record names (as a visitor does
    // through the zone), with its server block there, during the whole move.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (reads, failures, done) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let root_of = |server: Option<ServerId>| match server == Some(c.web1) {
                true => c.web_root.clone(),
                false => c.web2_root.clone(),
            };
            let (mut reads, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let named = c
                    .runtime
                    .block_on(c.controller.account(id))
                    .unwrap()
                    .server_id;
                let root = root_of(named);
                let served = root.join("srv/sites/enconf-travel.conf").exists()
                    && std::fs::read(relative(&root, &site)).ok().as_ref() == Some(&page);
                let now = c
                    .runtime
                    .block_on(c.controller.account(id))
                    .unwrap()
                    .server_id;
                // A read that raced the switch is a visitor who looked the name up just before.
                if !served && now == named {
                    failures.push(format!("{named:?} after {reads} reads"));
                }
                reads += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (reads, failures)
        });
        let input: enconf_core::protocol::MigrateInput = serde_json::from_value(
            json!({ "targets": {"web": c.web2.0, "mail": c.web2.0, "db": db2_id.0} }),
        )
        .unwrap();
        let job = c
            .runtime
            .block_on(c.controller.start_migrate(id, &input))
            .unwrap();
        assert_eq!(job.server_id, Some(c.web2));
        let done = c.wait(&job);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (reads, failures) = reader.join().unwrap();
        (reads, failures, done)
    });
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    assert!(reads > 10, "{reads} reads");
    assert!(failures.is_empty(), "the site was missing: {failures:?}");

    // Everything is on the targets, nothing on the sources; the record and counts follow.
    let account = c.runtime.block_on(c.controller.account(id)).unwrap();
    assert_eq!(account.server_id, Some(c.web2));
    assert_eq!(account.servers.one(Role::Mail), Some(c.web2));
    assert_eq!(account.servers.one(Role::Db), Some(db2_id));
    assert_eq!(std::fs::read(relative(&c.web2_root, &site)).unwrap(), page);
    assert_eq!(
        std::fs::read(relative(&c.web2_root, &message)).unwrap(),
        b"Subject: moved\r\n\r\nthe message\r\n"
    );
    assert_eq!(
        db2.admin("SELECT id, place FROM travel_wp.trips ORDER BY id"),
        ["1\tLisbon", "2\tOslo"]
    );
    assert!(!c.web_root.join("srv/www/travel").exists());
    assert!(!c.web_root.join("var/vmail/travel.example").exists());
    let deleted = c.web_root.join("var/vmail/.deleted");
    let aside = std::fs::read_dir(&deleted).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("travel.example")
            })
            .count()
    });
    assert_eq!(aside, 0, "the copied mail is not kept aside on the source");
    assert!(c.db.admin("SHOW DATABASES LIKE 'travel\\_%'").is_empty());
    assert!(
        c.db.admin("SELECT user FROM mysql.user WHERE user LIKE 'travel%'")
            .is_empty()
    );
    // The mail that was held back for the last pass is let in again on the target.
    assert!(!c.web2_root.join("srv/state/mail/frozen/travel").exists());
    for (server, count) in [(c.web1, 0), (c.web2, 1), (db2_id, 1)] {
        let view = c.runtime.block_on(c.controller.server(server)).unwrap();
        assert_eq!(view.accounts, count, "{server:?}");
    }

    // Back to the first servers, with the mail target lost in the middle: the job fails saying
    // why; the account is served where it was, with its data, its PHP and its mail.
    let back: enconf_core::protocol::MigrateInput = serde_json::from_value(
        json!({ "targets": {"web": c.web1.0, "mail": c.web1.0, "db": c.db1.0} }),
    )
    .unwrap();
    let job = c
        .runtime
        .block_on(c.controller.start_migrate(id, &back))
        .unwrap();
    // Once the first copy is under way.
    common::services::wait_for("the migration's first copy", || {
        let seen = c.runtime.block_on(c.controller.job(JobId(job.id))).unwrap();
        seen.progress.is_some_and(|p| p.done > 0)
    });
    let url: AgentUrl = "http://127.0.0.1:50090".parse().unwrap();
    c.transport.set_offline(&url, true);
    let failed = c.wait(&job);
    c.transport.set_offline(&url, false);
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    assert!(
        failed.error.as_deref().unwrap().contains("server 1"),
        "{failed:?}"
    );
    let account = c.runtime.block_on(c.controller.account(id)).unwrap();
    assert_eq!(
        (account.server_id, account.servers.one(Role::Db)),
        (Some(c.web2), Some(db2_id))
    );
    assert_eq!(std::fs::read(relative(&c.web2_root, &site)).unwrap(), page);
    assert_eq!(db2.admin("SELECT COUNT(*) FROM travel_wp.trips"), ["2"]);
    assert!(
        c.db.admin("SHOW DATABASES LIKE 'travel\\_%'").is_empty(),
        "the copy went"
    );
    assert!(
        c.web2_root
            .join("srv/php/8.2/pool.d/enconf-travel.conf")
            .exists()
    );
    assert!(!c.web2_root.join("srv/state/mail/frozen/travel").exists());
}
