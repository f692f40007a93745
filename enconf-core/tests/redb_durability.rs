//! The embedded store keeps what it committed: across a clean reopen, and across a process
//! killed with SIGKILL right after its commits.

#![cfg(feature = "redb")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use enconf_core::domain::{AccountStatus, Health, ServerId};
use enconf_core::secret::SecretKey;
use enconf_core::store::conformance::{account, online_server, spec, token};
use enconf_core::store::{Engine, StoreError};
use time::macros::datetime;

const CRASH_ENV: &str = "ENCONF_TEST_CRASH_CHILD_DB";
const COMMITS_BEFORE_KILL: usize = 20;

/// The key the test stores are sealed with.
fn key() -> SecretKey {
    SecretKey::from_hex(&"5a".repeat(32)).unwrap()
}

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
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
        let web = online_server(&*store, "web1", "web,db").await;
        store
            .insert_server(spec("mail1", "mail,dns"), token("m"), Health::default())
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
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
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
            .insert_server(spec("web2", "web"), token("w"), Health::default())
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
    match Engine::Redb(path).open(&key()) {
        Err(StoreError::UnsupportedSchema {
            found: 99,
            supported: enconf_core::store::SCHEMA_VERSION,
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
        let store = Engine::Redb(path.into()).open(&key()).unwrap();
        for i in 0.. {
            let name = format!("s{i}");
            store
                .insert_server(spec(&name, "web"), token(&name), Health::default())
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
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
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
            .insert_server(spec("after", "web"), token("after"), Health::default())
            .await
            .unwrap();
        assert_eq!(next.id.0, servers.len() as u64 + 1);
        store.record_health(&next, Health::default()).await.unwrap();
    });
}

#[test]
fn the_file_is_private_and_tokens_in_it_are_sealed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("enconf.redb");
    // A file someone made readable to all is made private again when opened.
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = "agent-secret-token-that-must-not-be-seen";
    runtime().block_on(async {
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
        store
            .insert_server(spec("web1", "web"), token(secret), Health::default())
            .await
            .unwrap();
        assert_eq!(
            store
                .server(ServerId(1))
                .await
                .unwrap()
                .token
                .expose_secret(),
            token(secret).expose_secret()
        );
    });
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(secret), "a token in clear in the store file");
    assert!(text.contains("web1"), "the file holds the server");

    // Another key is refused at once, not when a token is first read.
    let other = SecretKey::from_hex(&"a5".repeat(32)).unwrap();
    assert!(matches!(
        Engine::Redb(path).open(&other),
        Err(StoreError::WrongKey)
    ));
}

#[test]
fn a_schema_1_file_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enconf.redb");
    let secret = "plain-token-of-schema-one-0123";
    let mut web = spec("web1", "web");
    web.mail_hostname = Some("mail.web1.example.com".parse().unwrap());
    {
        // What release 0.1 wrote: the token in clear, no index of mail hostnames.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table = |name| redb::TableDefinition::<&[u8], &[u8]>::new(name);
            let mut meta = txn.open_table(table("meta")).unwrap();
            meta.insert(&b"schema_version"[..], &1u64.to_be_bytes()[..])
                .unwrap();
            meta.insert(&b"next_server_id"[..], &1u64.to_be_bytes()[..])
                .unwrap();
            let record = serde_json::json!({
                "spec": web, "token": secret,
                "health": {"agent_version": null, "reachable": false, "last_seen": null, "last_error": null},
            });
            let mut servers = txn.open_table(table("servers")).unwrap();
            servers
                .insert(&1u64.to_be_bytes()[..], record.to_string().as_bytes())
                .unwrap();
            let mut names = txn.open_table(table("server_names")).unwrap();
            names.insert(&b"web1"[..], &1u64.to_be_bytes()[..]).unwrap();
            let mut hosts = txn.open_table(table("server_hostnames")).unwrap();
            hosts
                .insert(web.hostname.as_str().as_bytes(), &1u64.to_be_bytes()[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    runtime().block_on(async {
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
        let server = store.server(ServerId(1)).await.unwrap();
        assert_eq!(server.token.expose_secret(), secret);
        // The mail hostname is a name of the server now: no account can take it.
        let taken = store
            .create_account(
                account("shop", &["mail.web1.example.com"], None),
                datetime!(2026-12-01 0:00 UTC),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(taken, StoreError::Duplicate { ref field, .. } if field == "domains[0]"),
            "{taken}"
        );
    });
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(
        !text.contains(secret),
        "the token was sealed when the file was opened"
    );
}

#[test]
fn a_schema_7_file_gets_its_role_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enconf.redb");
    let shop = runtime().block_on(async {
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
        let web = online_server(&*store, "web1", "web").await;
        let shop = store
            .create_account(
                account("shop", &["shop.example"], Some(web)),
                datetime!(2026-12-01 0:00 UTC),
            )
            .await
            .unwrap()
            .id;
        let job = enconf_core::domain::job::NewJob {
            account_id: Some(shop),
            server_id: None,
            work: enconf_core::domain::job::JobWork::Backup {
                cause: enconf_core::domain::job::BackupCause::Scheduled,
            },
        };
        store
            .insert_job(job, datetime!(2026-12-02 2:00 UTC))
            .await
            .unwrap();
        shop
    });
    {
        // What schema 7 had: no role index, no index of last backups.
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table = |name| redb::TableDefinition::<&[u8], &[u8]>::new(name);
            txn.delete_table(table("role_accounts")).unwrap();
            let mut meta = txn.open_table(table("meta")).unwrap();
            meta.insert(&b"schema_version"[..], &7u64.to_be_bytes()[..])
                .unwrap();
            let mut key = b"last_backup/".to_vec();
            key.extend_from_slice(&shop.0.to_be_bytes());
            assert!(meta.remove(&key[..]).unwrap().is_some());
        }
        txn.commit().unwrap();
    }
    runtime().block_on(async {
        let store = Engine::Redb(path).open(&key()).unwrap();
        let query = enconf_core::store::AccountQuery {
            role: Some(enconf_core::domain::Role::Web),
            ..Default::default()
        };
        let page = store.accounts_page(&query, None, 10).await.unwrap();
        assert_eq!(page.iter().map(|a| a.id).collect::<Vec<_>>(), [shop]);
        assert_eq!(
            store.last_backups(vec![shop]).await.unwrap(),
            [Some(datetime!(2026-12-02 2:00 UTC))]
        );
    });
}

#[test]
fn a_schema_8_file_gets_placement_summaries_with_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enconf.redb");
    let web = runtime().block_on(async {
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
        let web = online_server(&*store, "web1", "web").await;
        store
            .create_account(
                account("shop", &["shop.example"], None),
                datetime!(2026-12-01 0:00 UTC),
            )
            .await
            .unwrap();
        web
    });
    {
        // What schema 8 had: the count in the meta table, no summaries.
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table = |name| redb::TableDefinition::<&[u8], &[u8]>::new(name);
            txn.delete_table(table("placement")).unwrap();
            let mut meta = txn.open_table(table("meta")).unwrap();
            meta.insert(&b"schema_version"[..], &8u64.to_be_bytes()[..])
                .unwrap();
            let key = [&b"accounts_on:"[..], &web.0.to_be_bytes()].concat();
            meta.insert(&key[..], &1u64.to_be_bytes()[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    runtime().block_on(async {
        let store = Engine::Redb(path.clone()).open(&key()).unwrap();
        assert_eq!(store.server(web).await.unwrap().accounts, 1);
        // Placement reads the summary: the server is online and takes the next account.
        let blog = store
            .create_account(
                account("blog", &["blog.example"], None),
                datetime!(2026-12-01 0:00 UTC),
            )
            .await
            .unwrap();
        assert_eq!(blog.servers.one(enconf_core::domain::Role::Web), Some(web));
        assert_eq!(store.server(web).await.unwrap().accounts, 2);
    });
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn
        .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("meta"))
        .unwrap();
    let old: Vec<_> = redb::ReadableTable::range(&meta, &b"accounts_on:"[..]..&b"accounts_on;"[..])
        .unwrap()
        .collect();
    assert!(old.is_empty(), "the old counts are gone");
}
