//! The embedded store keeps what it committed: across a clean reopen, and across a process
//! killed with SIGKILL right after its commits.

#![cfg(feature = "redb")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use enconf_core::domain::{AccountStatus, Health, ServerId};
use enconf_core::store::conformance::{account, online_server, spec, token};
use enconf_core::store::{Engine, StoreError};
use time::macros::datetime;

const CRASH_ENV: &str = "ENCONF_TEST_CRASH_CHILD_DB";
const COMMITS_BEFORE_KILL: usize = 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn reopening_the_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enconf.redb");
    let now = datetime!(2026-11-25 12:00 UTC);
    let rt = runtime();

    let (web, shop) = rt.block_on(async {
        let store = Engine::Redb(path.clone()).open().unwrap();
        let web = online_server(&*store, "web1", "web,db").await;
        store
            .insert_server(spec("mail1", "mail,dns"), token("m"))
            .await
            .unwrap();
        let shop = store
            .create_account(
                account("shop", &["shop.example", "bücher.example"], None),
                now,
            )
            .await
            .unwrap();
        store
            .set_account_status(shop.id, AccountStatus::Active)
            .await
            .unwrap();
        store
            .put_setting("newest_agent", serde_json::json!("1.2.3"))
            .await
            .unwrap();
        (web, shop.id)
    });

    rt.block_on(async {
        let store = Engine::Redb(path.clone()).open().unwrap();
        let servers = store.servers().await.unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].id, web);
        assert_eq!(servers[0].accounts, 1);
        assert_eq!(servers[0].token, token("web1"), "the token is kept");
        assert!(servers[0].health.reachable);
        let a = store.account(shop).await.unwrap();
        assert_eq!(a.status, AccountStatus::Active);
        assert_eq!(a.created_at, now);
        assert_eq!(
            a.spec.domains.as_slice()[1].as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            store.setting("newest_agent").await.unwrap(),
            Some(serde_json::json!("1.2.3"))
        );
        // Uniqueness indexes and counters survived too.
        let dup = store
            .create_account(account("shop", &["x.example"], None), now)
            .await;
        assert!(matches!(dup, Err(StoreError::Duplicate { .. })), "{dup:?}");
        let next = store
            .create_account(account("blog", &["blog.example"], None), now)
            .await;
        assert_eq!(next.unwrap().id.0, shop.0 + 1);
        let third = store
            .insert_server(spec("web2", "web"), token("w"))
            .await
            .unwrap();
        assert_eq!(third.id, ServerId(3));
    });
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enconf.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(def).unwrap();
            meta.insert(&b"schema_version"[..], &99u64.to_be_bytes()[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    match Engine::Redb(path).open() {
        Err(StoreError::UnsupportedSchema {
            found: 99,
            supported: 1,
        }) => {}
        other => panic!("expected a schema refusal, got {other:?}"),
    }
}

/// Not a test of its own: the child process of `a_killed_process_loses_no_commit`. Without the
/// environment variable it returns at once.
#[test]
fn crash_child_helper() {
    let Ok(path) = std::env::var(CRASH_ENV) else {
        return;
    };
    runtime().block_on(async {
        let store = Engine::Redb(path.into()).open().unwrap();
        for i in 0.. {
            let name = format!("s{i}");
            store
                .insert_server(spec(&name, "web"), token(&name))
                .await
                .unwrap();
            // Printed only after the commit returned.
            println!("committed {i}");
        }
    });
}

#[test]
fn a_killed_process_loses_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enconf.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = 0usize;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while seen < COMMITS_BEFORE_KILL {
        let line = lines.next().expect("child ended early").unwrap();
        if line.starts_with("committed ") {
            seen += 1;
        }
    }
    // SIGKILL: no destructor, no flush, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();

    let rt = runtime();
    rt.block_on(async {
        let store = Engine::Redb(path.clone()).open().unwrap();
        let servers = store.servers().await.unwrap();
        assert!(
            servers.len() >= COMMITS_BEFORE_KILL,
            "{} servers after {COMMITS_BEFORE_KILL} acknowledged commits",
            servers.len()
        );
        for (i, s) in servers.iter().enumerate() {
            assert_eq!(
                s.spec.name.as_str(),
                format!("s{i}"),
                "no gap, no torn record"
            );
        }
        // The store is usable after the crash.
        let next = store
            .insert_server(spec("after", "web"), token("after"))
            .await
            .unwrap();
        assert_eq!(next.id.0, servers.len() as u64 + 1);
        store.record_health(&next, Health::default()).await.unwrap();
    });
}
