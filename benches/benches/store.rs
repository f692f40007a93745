//! Account creates per second, in one report: on the embedded redb store (the baseline), on
//! PostgreSQL from one controller, and from two controllers sharing the database. Each
//! iteration creates 32 accounts at once (split between the controllers when there are two),
//! each create one write transaction: placement, uniqueness and counts checked and recorded.
//! PostgreSQL runs privately on loopback (`initdb` as the `postgres` user) with `fsync` on, as
//! redb syncs each commit too; without PostgreSQL installed only redb is measured.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

#[path = "../../enconf-core/tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enconf_core::secret::SecretKey;
use enconf_core::store::conformance::{account, online_server};
use enconf_core::store::{Engine, Store};
use time::OffsetDateTime;

/// Creates in flight in one iteration.
const BATCH: u64 = 32;

fn open(rt: &tokio::runtime::Runtime, engine: Engine) -> Arc<dyn Store> {
    let key = SecretKey::from_hex(&"1f".repeat(32)).unwrap();
    rt.block_on(rt.spawn_blocking(move || engine.open(&key)))
        .unwrap()
        .unwrap()
}

/// One iteration: `BATCH` creates of new accounts, spread over `stores`, all at once.
async fn creates(stores: &[Arc<dyn Store>], next: &AtomicU64) {
    let now = OffsetDateTime::now_utc();
    let mut tasks = Vec::new();
    for i in 0..BATCH {
        let store = Arc::clone(&stores[usize::try_from(i).unwrap() % stores.len()]);
        let n = next.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let name = format!("u{n}");
            store
                .create_account(account(&name, &[&format!("{name}.example")], None), now)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pg = postgres::Postgres::start_durable();
    let mut setups: Vec<(&str, Vec<Arc<dyn Store>>)> = Vec::new();
    setups.push((
        "redb",
        vec![open(&rt, Engine::Redb(dir.path().join("bench.redb")))],
    ));
    if let Some(pg) = &pg {
        let one = open(&rt, Engine::Postgres(pg.database()));
        let shared = pg.database();
        let two = vec![
            open(&rt, Engine::Postgres(shared.clone())),
            open(&rt, Engine::Postgres(shared)),
        ];
        setups.push(("postgres, 1 controller", vec![one]));
        setups.push(("postgres, 2 controllers", two));
    } else {
        eprintln!("PostgreSQL is not installed: only redb is measured");
    }
    for (_, stores) in &setups {
        rt.block_on(online_server(&*stores[0], "web1", "web"));
    }

    let mut group = c.benchmark_group("account_creates");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    let next = AtomicU64::new(0);
    for (name, stores) in &setups {
        group.bench_function(*name, |b| b.iter(|| rt.block_on(creates(stores, &next))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
