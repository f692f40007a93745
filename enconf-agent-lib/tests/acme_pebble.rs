//! Let's Encrypt's flow for real, on loopback: the controller orders a certificate from Pebble
//! (real HTTP-01 validation: Pebble resolves the name to 127.0.0.1 and fetches the answer from
//! the agent's nginx), the agent installs it, and nginx serves it over TLS to a client that
//! trusts only Pebble's root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TOKEN, pebble, services};
use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::RealSystem;
use enconf_agent_lib::transport::InProcess;
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::AgentToken;
use enconf_core::protocol::{ServerInput, SslInput, SslStatus};
use enconf_core::ssl::CertKind;
use enconf_core::ssl::issue::{Acme, AcmeConfig};
use enconf_core::store::{MemoryStore, Store};

const HOST: &str = "panel.enconf-test.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_a_certificate_that_nginx_serves() {
    let Some(svc) = services::start() else {
        return;
    };
    let Some(pebble) = pebble::start(svc.port) else {
        return;
    };
    let applier = Applier::new(svc.config(&[]).layout, RealSystem::new());
    applier.start().unwrap();
    let agent = Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 20);
    let transport = Arc::new(InProcess::new());
    let url = "http://127.0.0.1:50999";
    transport.add(url.parse().unwrap(), router(agent));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new_in_memory());
    let acme = AcmeConfig {
        directory_url: pebble.directory.clone(),
        root: Some(pebble.ca_file.clone()),
        contact: vec!["mailto:hostmaster@enconf-test.example".into()],
    };
    let controller = Controller::new(Arc::clone(&store), transport, ControllerConfig::default())
        .with_acme(Arc::new(Acme::new(acme, Arc::clone(&store))));
    let server = controller
        .add_server(&ServerInput {
            name: Some("web1".into()),
            hostname: Some(HOST.into()),
            agent_url: Some(url.into()),
            agent_token: Some(TOKEN.into()),
            roles: Some(vec!["web".into()]),
            ..ServerInput::default()
        })
        .await
        .unwrap();
    assert!(server.reachable);

    let input = SslInput {
        mode: Some("letsencrypt".into()),
        ..SslInput::default()
    };
    let state = controller
        .set_ssl(server.id, CertKind::Panel, &input)
        .await
        .unwrap();
    assert_eq!(state.status, SslStatus::Pending);
    let start = Instant::now();
    let state = loop {
        let state = controller.ssl(server.id, CertKind::Panel).await.unwrap();
        if state.status != SslStatus::Pending {
            break state;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "issuance did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        state.status,
        SslStatus::Active,
        "{state:?}\n{}",
        pebble.log()
    );
    assert_eq!(state.subject_names, [HOST]);
    assert!(
        state.issuer.as_deref().unwrap().contains("Pebble"),
        "{state:?}"
    );
    assert!(!state.testing_only);

    // nginx serves it, and a client that trusts only Pebble's root accepts it.
    let root = pebble.issuing_root();
    let port = svc.https_port;
    let served = tokio::task::spawn_blocking(move || {
        let mut served = Err(String::new());
        services::wait_for("nginx serving the issued certificate", || {
            served = services::served_certificate(port, HOST, &root);
            served.is_ok()
        });
        served
    })
    .await
    .unwrap()
    .unwrap();
    let installed = std::fs::read_to_string(svc.path("ssl/panel.crt")).unwrap();
    let leaf = enconf_core::ssl::cert::parse_chain(&installed).unwrap()[0].to_vec();
    assert_eq!(served, leaf);

    // The ACME account is kept for the next order.
    let key = format!("acme.account:{}", pebble.directory);
    assert!(store.setting(&key).await.unwrap().is_some());
}
