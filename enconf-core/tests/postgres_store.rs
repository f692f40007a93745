//! The PostgreSQL store against a real PostgreSQL (a private instance on a loopback port):
//! the whole conformance suite, two stores sharing one database written at once, leases,
//! a newer layout refused, a lost connection answered as unavailable, and copies between redb
//! and PostgreSQL.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::postgres::{Postgres, key, open};
use enconf_core::domain::Health;
use enconf_core::store::conformance::{self, account, online_server, spec, token};
use enconf_core::store::{Engine, StoreError};
use time::macros::datetime;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_on_postgresql() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    for (name, check) in conformance::CHECKS {
        let store = open(&pg.database()).await;
        eprintln!("conformance: {name}");
        check(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_controllers_writing_at_once_keep_every_rule() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let url = pg.database();
    let (a, b) = (open(&url).await, open(&url).await);
    let web = online_server(&*a, "web1", "web").await;
    let mut limited = spec("web1", "web");
    limited.max_accounts = std::num::NonZeroU32::new(10);
    a.update_server(web, limited, None).await.unwrap();
    let now = datetime!(2026-12-01 12:00 UTC);

    // The same names from both at once: exactly one create of each wins.
    let mut tasks = Vec::new();
    for i in 0..40 {
        for store in [&a, &b] {
            let store = Arc::clone(store);
            let name = format!("same{}", i % 5);
            tasks.push(tokio::spawn(async move {
                store
                    .create_account(account(&name, &[&format!("{name}.example")], None), now)
                    .await
            }));
        }
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Duplicate { .. } | StoreError::Placement(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 5, "one create of each of the five names");

    // Many different accounts onto the server with room for 10: never more than 10.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            let name = format!("user{i}");
            store
                .create_account(
                    account(&name, &[&format!("{name}.example")], Some(web)),
                    now,
                )
                .await
        }));
    }
    let created = futures_count(tasks).await;
    assert_eq!(
        created, 5,
        "the five from before and five more fill the ten places"
    );
    assert_eq!(a.server(web).await.unwrap().accounts, 10);
    assert_eq!(b.accounts_on(web).await.unwrap().len(), 10);
    // And a server with accounts is not deleted by either.
    assert!(matches!(
        b.delete_server(web).await,
        Err(StoreError::ServerHasAccounts { count: 10, .. })
    ));
}

async fn futures_count(
    tasks: Vec<tokio::task::JoinHandle<Result<enconf_core::domain::Account, StoreError>>>,
) -> usize {
    let mut n = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_held_by_one_and_taken_over_once_it_expires() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let url = pg.database();
    let (a, b) = (open(&url).await, open(&url).await);
    let ttl = Duration::from_secs(2);
    assert!(a.lease("monitor", "a", ttl).await.unwrap());
    assert!(!b.lease("monitor", "b", ttl).await.unwrap(), "a holds it");
    assert!(
        a.lease("monitor", "a", ttl).await.unwrap(),
        "renewed by its holder"
    );
    assert!(
        b.lease("other", "b", ttl).await.unwrap(),
        "leases are by name"
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(
        b.lease("monitor", "b", ttl).await.unwrap(),
        "taken over once expired"
    );
    assert!(!a.lease("monitor", "a", ttl).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_layout_is_refused_and_a_lost_database_is_unavailable() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let url = pg.database();
    let store = open(&url).await;
    online_server(&*store, "web1", "web").await;
    let db = url.rsplit('/').next().unwrap().to_owned();
    pg.psql(&db, "INSERT INTO enconf_migrations (version) VALUES (99)");
    let engine = Engine::Postgres(url.clone());
    let refused = tokio::task::spawn_blocking(move || engine.open(&key()))
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            Err(StoreError::UnsupportedSchema { found: 99, .. })
        ),
        "{refused:?}"
    );

    // The database goes away: an error the API answers with 503, not a panic, for reads and
    // writes; the store reconnects by itself once the database is back. Stopped as for
    // maintenance, then as in a crash.
    pg.stop_fast();
    match store.servers().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    match store.put_setting("k", serde_json::json!(1)).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    pg.resume();
    assert_eq!(store.servers().await.unwrap().len(), 1);
    store.put_setting("k", serde_json::json!(2)).await.unwrap();
    pg.stop();
    match store.accounts().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    pg.resume();
    store.put_setting("k", serde_json::json!(3)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_to_postgresql_and_back_copies_everything() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::Redb(dir.path().join("a.redb"));
    let store = {
        let e = first.clone();
        tokio::task::spawn_blocking(move || e.open(&key()))
            .await
            .unwrap()
            .unwrap()
    };
    let web = online_server(&*store, "web1", "web,db").await;
    store
        .insert_server(spec("mail1", "mail,dns"), token("m"), Health::default())
        .await
        .unwrap();
    for i in 0..20 {
        let name = format!("user{i}");
        store
            .create_account(
                account(&name, &[&format!("{name}.example")], Some(web)),
                datetime!(2026-12-01 12:00 UTC),
            )
            .await
            .unwrap();
    }
    store
        .put_setting("ssl:1:panel", serde_json::json!({"mode": "selfsigned"}))
        .await
        .unwrap();
    drop(store);

    let pg_engine = Engine::Postgres(pg.database());
    let back = Engine::Redb(dir.path().join("b.redb"));
    let (copied, copied_back) = {
        let (first, pg_engine, back) = (first.clone(), pg_engine.clone(), back.clone());
        tokio::task::spawn_blocking(move || {
            let there = first.copy_to(&pg_engine).unwrap();
            let again = pg_engine.copy_to(&back).unwrap();
            // A copy into a store that is not empty is refused.
            assert!(first.copy_to(&pg_engine).is_err());
            (there, again)
        })
        .await
        .unwrap()
    };
    assert_eq!(copied, copied_back);
    assert!(
        copied.iter().any(|(t, n)| *t == "accounts" && *n == 20),
        "{copied:?}"
    );

    // Every copy opens with the same key and says the same.
    let mut views = Vec::new();
    for engine in [first, pg_engine, back] {
        let store = tokio::task::spawn_blocking(move || engine.open(&key()))
            .await
            .unwrap()
            .unwrap();
        let servers = store.servers().await.unwrap();
        let accounts = store.accounts().await.unwrap();
        let setting = store.setting("ssl:1:panel").await.unwrap();
        assert_eq!(
            servers[0].token.expose_secret(),
            token("web1").expose_secret()
        );
        views.push((
            format!(
                "{:?}",
                servers
                    .iter()
                    .map(|s| (s.id, s.spec.name.to_string(), s.accounts))
                    .collect::<Vec<_>>()
            ),
            accounts,
            setting,
        ));
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    assert_eq!(views[0].1.len(), 20);
}
