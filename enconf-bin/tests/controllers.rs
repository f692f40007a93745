//! Several controller processes on one PostgreSQL store (a private instance on a loopback
//! port): what one records the other serves, the health monitor runs on one of them and moves
//! when that one is killed, a lost database is a 503 and the controller recovers by itself;
//! and `copy-store` moves a redb store into PostgreSQL and back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../enconf-core/tests/common/postgres.rs"]
mod postgres;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CONTROLLER, Proc, api, free_port, start_agent, start_controller_with, until};
use postgres::Postgres;
use serde_json::json;

const TOKEN: &str = "shared-agent-token-0123456789";

/// A secret key file (mode 0600) for controllers that share a store.
fn key_file(dir: &Path) -> String {
    let path = dir.join("secret-key");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, "3c".repeat(32).as_bytes()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn controller(dir: &Path, name: &str, store: &str, key: &str) -> (Proc, u16) {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let proc = start_controller_with(
        &dir,
        port,
        &[("ENCONF_STORE", store), ("ENCONF_SECRET_KEY_FILE", key)],
    );
    (proc, port)
}

/// `url` with a password (the test server trusts loopback and ignores it): it must show in
/// no log.
fn with_password(url: &str) -> String {
    url.replace("postgres://enconf@", "postgres://enconf:s3cret@")
}

fn monitor_holder(pg: &Postgres, db: &str) -> Option<u32> {
    let holder = pg.psql(
        db,
        "SELECT holder FROM enconf_leases WHERE name = 'monitor'",
    );
    // host:pid:random
    holder.trim().split(':').nth(1)?.parse().ok()
}

#[test]
fn two_controllers_share_a_store_and_one_runs_the_monitor() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let url = with_password(&pg.database());
    let db = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let agent_port = free_port();
    let _agent = start_agent(dir.path(), "agent", agent_port, TOKEN);
    let (mut a, a_port) = controller(dir.path(), "a", &url, &key);
    let (mut b, b_port) = controller(dir.path(), "b", &url, &key);

    // What one records, the other serves.
    let (status, server) = api(
        a_port,
        "POST",
        "/api/v1/servers",
        Some(
            json!({"name": "web1", "hostname": "web1.example.com", "agent_url": format!("http://127.0.0.1:{agent_port}"), "agent_token": TOKEN, "roles": ["web"]}),
        ),
    );
    assert_eq!(status, 201, "{server}");
    let id = server["id"].as_u64().unwrap();
    let (status, account) = api(
        b_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "alice", "domains": ["alice.example"]})),
    );
    assert_eq!(status, 201, "{account}");
    let (_, list) = api(a_port, "GET", "/api/v1/accounts", None);
    assert_eq!(list[0]["username"], "alice", "{list}");

    // One of them holds the monitor lease; kill it without a word.
    let start = Instant::now();
    let holder = loop {
        if let Some(pid) = monitor_holder(&pg, &db) {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no controller took the monitor"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (dead, survivor_port, survivor) = if holder == a.child.id() {
        (&mut a, b_port, &mut b)
    } else {
        assert_eq!(holder, b.child.id(), "the holder is one of the two");
        (&mut b, a_port, &mut a)
    };
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed = Instant::now();
    let path = format!("/api/v1/servers/{id}");
    let seen_at_kill = api(survivor_port, "GET", &path, None).1["last_seen"].clone();
    // The survivor runs a round within the lease (3 intervals of 1 s) and one interval more.
    until(
        survivor_port,
        &path,
        "a health round by the survivor",
        |s| s["last_seen"] != seen_at_kill,
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4 + 2),
        "taken over after {took:?}"
    );
    assert_eq!(monitor_holder(&pg, &db), Some(survivor.child.id()));

    // The database goes away: the API answers 503 and recovers by itself when it is back.
    pg.stop();
    let (status, body) = api(survivor_port, "GET", "/api/v1/servers", None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    let (status, _) = api(
        survivor_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "bob", "domains": ["bob.example"]})),
    );
    assert_eq!(status, 503);
    pg.resume();
    let (status, body) = api(survivor_port, "GET", "/api/v1/servers", None);
    assert_eq!(status, 200, "{body}");
    survivor.stop();
    let log = std::fs::read_to_string(&survivor.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("s3cret") && !log.contains(TOKEN),
        "no secret in the log"
    );
}

fn copy_store(dir: &Path, from: &str, to: &str, key: &str) -> String {
    let out = Command::new(CONTROLLER)
        .env("ENCONF_DATA_DIR", dir)
        .env("ENCONF_STORE", from)
        .env("ENCONF_SECRET_KEY_FILE", key)
        .args(["copy-store", "--to", to])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "copy-store {from} → {to}: {log}");
    log
}

#[test]
fn copy_store_moves_redb_into_postgresql_and_back() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let agent_port = free_port();
    let _agent = start_agent(dir.path(), "agent", agent_port, TOKEN);
    let first = format!("redb:{}", dir.path().join("first.redb").display());
    let (mut c, port) = controller(dir.path(), "c", &first, &key);
    let (status, body) = api(
        port,
        "POST",
        "/api/v1/servers",
        Some(
            json!({"name": "web1", "hostname": "web1.example.com", "agent_url": format!("http://127.0.0.1:{agent_port}"), "agent_token": TOKEN, "roles": ["web", "mail", "dns", "db", "backup"]}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    for user in ["alice", "bob", "carol"] {
        let (status, body) = api(
            port,
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": user, "domains": [format!("{user}.example")]})),
        );
        assert_eq!(status, 201, "{body}");
    }
    let view = |port| {
        let servers = api(port, "GET", "/api/v1/servers", None).1;
        let accounts = api(port, "GET", "/api/v1/accounts", None).1;
        let strip = |mut v: serde_json::Value| {
            for item in v.as_array_mut().unwrap() {
                // What the health monitor writes changes from one round to the next.
                for volatile in ["last_seen", "reachable", "last_error", "uptime_s"] {
                    item.as_object_mut().unwrap().remove(volatile);
                }
            }
            v
        };
        (strip(servers), strip(accounts))
    };
    let before = view(port);
    c.stop();

    let url = with_password(&pg.database());
    let log = copy_store(dir.path(), &first, &url, &key);
    assert!(
        log.contains("store copied and counted") && log.contains("accounts 3"),
        "{log}"
    );
    assert!(
        !log.contains("s3cret") && log.contains("enconf:***@"),
        "{log}"
    );
    // A copy into a store that holds something is refused.
    let out = Command::new(CONTROLLER)
        .env("ENCONF_DATA_DIR", dir.path())
        .env("ENCONF_STORE", &first)
        .args(["copy-store", "--to", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    let (mut c, port) = controller(dir.path(), "on-pg", &url, &key);
    assert_eq!(view(port), before, "PostgreSQL serves what redb held");
    c.stop();

    let back = format!("redb:{}", dir.path().join("back.redb").display());
    copy_store(dir.path(), &url, &back, &key);
    let (mut c, port) = controller(dir.path(), "back", &back, &key);
    assert_eq!(view(port), before, "and back again");
    c.stop();
}
