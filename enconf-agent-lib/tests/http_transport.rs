//! The controller's HTTP(S) transport against a real agent listener: HTTPS trusted through a CA
//! file, a wrong token, and how each failure is classified (refused: never reached the agent;
//! silent: may have reached it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{TOKEN, sandbox_applier};
use enconf_agent_lib::server::{Agent, router, serve, tls_acceptor};
use enconf_core::domain::AgentToken;
use enconf_core::transport::http::{HttpTransport, TransportSetupError};
use enconf_core::transport::{AgentClient, AgentEndpoint, TransportError};

fn endpoint(url: String, token: &str) -> AgentEndpoint {
    AgentEndpoint {
        url: url.parse().unwrap(),
        token: AgentToken::parse(token).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_agents_and_failure_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = common::localhost_cert(dir.path());
    let agent = Agent::new(
        AgentToken::parse(TOKEN).unwrap(),
        sandbox_applier(dir.path()),
        1 << 20,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls_acceptor(&cert, &key).unwrap();
    tokio::spawn(serve(
        listener,
        router(agent),
        Some(acceptor),
        Default::default(),
        std::future::pending(),
    ));
    let url = format!("https://localhost:{port}");

    let timeout = Duration::from_secs(2);
    let trusting = HttpTransport::new(timeout, Some(&cert)).unwrap();
    let good = endpoint(url.clone(), TOKEN);
    let health = AgentClient::new(&trusting, &good).health().await.unwrap();
    assert_eq!(health.version, enconf_core::version::RELEASE);

    // A wrong token: the agent's own 401 comes back typed.
    let wrong = endpoint(url.clone(), "some-other-token-0123");
    match AgentClient::new(&trusting, &wrong).health().await {
        Err(TransportError::Agent { status: 401, body }) => {
            assert_eq!(body.error.message, "missing or wrong token")
        }
        other => panic!("{other:?}"),
    }

    // Without the CA the certificate is refused before any request is sent.
    let system_only = HttpTransport::new(timeout, None).unwrap();
    match AgentClient::new(&system_only, &good).health().await {
        Err(e @ TransportError::Unreachable(_)) => {
            assert!(!e.maybe_applied());
            assert!(e.to_string().contains("certificate"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        HttpTransport::new(timeout, Some(&key)),
        Err(TransportSetupError::CaFile { .. })
    ));

    // Nothing listening: unreachable, certainly not applied.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = endpoint(format!("http://127.0.0.1:{closed_port}"), TOKEN);
    match AgentClient::new(&trusting, &refused).health().await {
        Err(e @ TransportError::Unreachable(_)) => {
            assert!(e.to_string().contains("refused"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    // Accepts, reads, never answers: interrupted at the deadline, may have been applied.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let hanging = endpoint(format!("http://127.0.0.1:{silent_port}"), TOKEN);
    match AgentClient::new(&trusting, &hanging).health().await {
        Err(e @ TransportError::Interrupted(_)) => {
            assert!(e.maybe_applied() && e.is_offline());
            assert!(e.to_string().contains("no answer within 2 s"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
