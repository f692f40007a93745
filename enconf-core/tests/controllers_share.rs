//! Two controllers sharing one PostgreSQL store (a private instance on a loopback port): the
//! health monitor runs on one of them at a time and is taken over when its holder dies, and a
//! certificate due for renewal is renewed once, not once per controller.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::postgres::{Postgres, open};
use enconf_core::controller::{Controller, ControllerConfig, once};
use enconf_core::protocol::SslInput;
use enconf_core::ssl::CertKind;
use enconf_core::store::Store;
use enconf_core::store::conformance::online_server;
use enconf_core::transport::{
    AgentEndpoint, AgentRequest, AgentResponse, AgentTransport, Method, TransportError,
};
use serde_json::json;
use time::OffsetDateTime;

/// An agent that answers every call, counting health checks and certificate installs.
#[derive(Debug, Default)]
struct Counting {
    health: AtomicUsize,
    installs: Mutex<HashMap<String, usize>>,
}

#[async_trait]
impl AgentTransport for Counting {
    async fn send(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError> {
        let body = match (request.method, request.path.as_str()) {
            (Method::Get, "/v1/health") => {
                self.health.fetch_add(1, Ordering::SeqCst);
                json!({"version": "0.1.0", "hostname": "fake", "uptime_s": 1})
            }
            (Method::Put, path) if path.starts_with("/v1/certificates/") => {
                *self
                    .installs
                    .lock()
                    .unwrap()
                    .entry(agent.url.to_string())
                    .or_default() += 1;
                json!({"changed": true})
            }
            _ => json!({"changed": true}),
        };
        Ok(AgentResponse {
            status: 200,
            body: body.to_string().into_bytes(),
        })
    }
}

/// A controller on `store` whose clock runs `ahead` of the real one.
fn controller(
    store: &Arc<dyn Store>,
    transport: &Arc<Counting>,
    ahead: time::Duration,
) -> Controller {
    let config = ControllerConfig {
        health_timeout: Duration::from_secs(2),
        renew_before: Duration::from_secs(30 * 24 * 3600),
        ..ControllerConfig::default()
    };
    Controller::new(
        Arc::clone(store),
        Arc::clone(transport) as Arc<dyn AgentTransport>,
        config,
    )
    .with_clock(Arc::new(move || OffsetDateTime::now_utc() + ahead))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_due_is_renewed_by_one_controller_only() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let url = pg.database();
    let (sa, sb) = (open(&url).await, open(&url).await);
    let agent = Arc::new(Counting::default());
    let mut servers = Vec::new();
    for name in ["web1", "web2", "web3"] {
        servers.push(online_server(&*sa, name, "web").await);
    }
    let today = controller(&sa, &agent, time::Duration::ZERO);
    let selfsigned = SslInput {
        mode: Some("selfsigned".into()),
        ..SslInput::default()
    };
    for id in &servers {
        today
            .set_ssl(*id, CertKind::Panel, &selfsigned)
            .await
            .unwrap();
    }
    let installs = |agent: &Counting| agent.installs.lock().unwrap().values().sum::<usize>();
    assert_eq!(installs(&agent), 3);

    // 70 days on, the 90-day certificates are within 30 days of expiry: both controllers see
    // all three due at once, and each is renewed by one of them.
    let later = time::Duration::days(70);
    let (a, b) = (
        controller(&sa, &agent, later),
        controller(&sb, &agent, later),
    );
    let mut ran = 0;
    for _ in 0..5 {
        let (x, y) = tokio::join!(a.renew_due(), b.renew_due());
        ran += x + y;
    }
    assert_eq!(ran, 3, "one renewal of each certificate");
    assert_eq!(installs(&agent), 6);
    for id in &servers {
        let state = a.ssl(*id, CertKind::Panel).await.unwrap();
        assert!(state.not_after.unwrap() > OffsetDateTime::now_utc() + time::Duration::days(150));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_monitor_runs_on_one_controller_and_moves_when_it_dies() {
    let Some(pg) = Postgres::shared() else {
        return;
    };
    let url = pg.database();
    let (sa, sb) = (open(&url).await, open(&url).await);
    online_server(&*sa, "web1", "web").await;
    let interval = Duration::from_millis(200);
    let (ta, tb) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let (a, b) = (
        controller(&sa, &ta, time::Duration::ZERO),
        controller(&sb, &tb, time::Duration::ZERO),
    );
    assert_ne!(a.instance(), b.instance());
    let run = |c: &Controller| {
        let c = c.clone();
        tokio::spawn(async move { c.monitor(interval, std::future::pending()).await })
    };
    let (ma, mb) = (run(&a), run(&b));
    tokio::time::sleep(interval * 8).await;
    let (ha, hb) = (
        ta.health.load(Ordering::SeqCst),
        tb.health.load(Ordering::SeqCst),
    );
    assert!(
        (ha >= 4 && hb == 0) || (hb >= 4 && ha == 0),
        "one controller runs the rounds: {ha} and {hb}"
    );
    // The holder dies without a word (its lease stays until it expires).
    let (holder, survivor, other) = if ha > 0 { (ma, mb, &tb) } else { (mb, ma, &ta) };
    holder.abort();
    let died = Instant::now();
    let deadline = once::monitor_lease(interval) + interval + Duration::from_secs(2);
    while other.health.load(Ordering::SeqCst) == 0 {
        assert!(died.elapsed() < deadline, "no round within the lease time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    survivor.abort();
}
