//! A health round over 1,000 agents on loopback: 1,000 fake agents (HTTP listeners in this
//! process answering `GET /v1/health`) and a controller reaching them over its real HTTP
//! transport. Measured on the embedded redb store (each commit synced) against the memory store
//! as the baseline, with the checks' start spread off (the round's own cost) and on (the
//! default 500 ms window); and the cost the round had before its answers were recorded in
//! groups: 1,000 single-server commits on redb.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::Health;
use enconf_core::secret::SecretKey;
use enconf_core::store::conformance::{spec, token};
use enconf_core::store::{Engine, Store};
use enconf_core::transport::http::HttpTransport;

const AGENTS: usize = 1_000;

/// Starts one fake agent; its URL.
async fn fake_agent(n: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body =
        format!(r#"{{"version":"0.1.0","hostname":"fake{n}","uptime_s":1,"agent_id":"{n:032x}"}}"#);
    let app = axum::Router::new().route(
        "/v1/health",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

/// A store of `engine` holding a server for each of `urls`.
async fn store_with(engine: Engine, urls: &[String]) -> Arc<dyn Store> {
    let key = SecretKey::from_hex(&"1f".repeat(32)).unwrap();
    let store = tokio::task::spawn_blocking(move || engine.open(&key))
        .await
        .unwrap()
        .unwrap();
    for (i, url) in urls.iter().enumerate() {
        let mut server = spec(&format!("web{i}"), "web");
        server.agent_url = url.parse().unwrap();
        store
            .insert_server(server, token(&format!("web{i}")), Health::default())
            .await
            .unwrap();
    }
    store
}

fn controller(store: Arc<dyn Store>, spread: Duration) -> Controller {
    let transport = HttpTransport::new(Duration::from_secs(5), None).unwrap();
    Controller::new(
        store,
        Arc::new(transport),
        ControllerConfig {
            health_timeout: Duration::from_secs(5),
            health_spread: spread,
            ..ControllerConfig::default()
        },
    )
}

fn bench(c: &mut Criterion) {
    enconf_benches::raise_open_files();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (memory, redb) = rt.block_on(async {
        let mut urls = Vec::new();
        for n in 0..AGENTS {
            urls.push(fake_agent(n).await);
        }
        let memory = store_with(Engine::Memory, &urls).await;
        let redb = store_with(Engine::Redb(dir.path().join("enconf.redb")), &urls).await;
        (memory, redb)
    });
    let mut group = c.benchmark_group("health_round_1000_agents");
    group.sample_size(10);
    for (name, store, spread) in [
        ("memory (baseline)", &memory, Duration::ZERO),
        ("redb", &redb, Duration::ZERO),
        ("redb, spread 500 ms", &redb, Duration::from_millis(500)),
    ] {
        let controller = controller(Arc::clone(store), spread);
        group.bench_function(name, |b| {
            b.iter(|| {
                let round = rt.block_on(controller.check_all());
                assert_eq!(round.reachable, AGENTS, "{round:?}");
            });
        });
    }
    // What recording cost before the round's answers were grouped: one commit per server.
    let servers = rt.block_on(redb.servers()).unwrap();
    group.bench_function("redb, one commit per server (before)", |b| {
        b.iter(|| {
            rt.block_on(async {
                for server in &servers {
                    redb.record_health(server, server.health.clone())
                        .await
                        .unwrap();
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
