//! The listener: HTTPS with a configured certificate, and graceful shutdown that finishes the
//! operation in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{TOKEN, sandbox_applier};
use enconf_agent_lib::server::{Agent, ServeError, router, serve, tls_acceptor};
use enconf_core::domain::AgentToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ck, cert, key) = common::localhost_cert(dir.path());

    assert!(matches!(
        tls_acceptor(&cert, &dir.path().join("missing.pem")),
        Err(ServeError::Tls(_))
    ));
    assert!(
        matches!(tls_acceptor(&key, &key), Err(ServeError::Tls(_))),
        "a key is not a certificate"
    );

    let acceptor = tls_acceptor(&cert, &key).unwrap();
    let agent = Agent::new(
        AgentToken::parse(TOKEN).unwrap(),
        sandbox_applier(dir.path()),
        1 << 20,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router(agent),
        Some(acceptor),
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let connector = tokio_rustls::TlsConnector::from(common::tls_client(ck.cert.der()));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(
        format!("GET /v1/health HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
    assert!(response.contains(enconf_core::version::RELEASE));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /v1/health HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"));

    // A renewed certificate is picked up without a restart; a broken replacement is not.
    let handshake = |root: Vec<u8>| async move {
        let connector = tokio_rustls::TlsConnector::from(common::tls_client(&root));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.map(drop)
    };
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&key, renewed.signing_key.serialize_pem()).unwrap();
    std::fs::write(&cert, renewed.cert.pem()).unwrap();
    handshake(renewed.cert.der().to_vec()).await.unwrap();
    assert!(
        handshake(ck.cert.der().to_vec()).await.is_err(),
        "the old one is gone"
    );
    std::fs::write(&cert, "not a certificate").unwrap();
    handshake(renewed.cert.der().to_vec()).await.unwrap();

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[test]
fn shutdown_finishes_the_operation_in_flight() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let applier = sandbox_applier(dir.path());
    // Validation is slow, and tells the test when it has started.
    let (entered, in_validation) = mpsc::channel::<()>();
    let entered = Mutex::new(entered);
    applier.system().on_command(move |line| {
        if line.contains("nginx -t") {
            let _ = entered.lock().unwrap().send(());
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(String::new())
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent =
        runtime.block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 20) });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(
        listener,
        router(Arc::clone(&agent)),
        None,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = r#"{"domains": ["shop.example"]}"#;
        write!(
            s,
            "PUT /v1/accounts/shop HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    });
    in_validation.recv_timeout(Duration::from_secs(15)).unwrap();
    stop.send(()).unwrap(); // SIGTERM arrives while the put is being validated
    let response = client.join().unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
    assert!(response.ends_with(r#"{"changed":true}"#), "{response}");
    runtime.block_on(server).unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer listening"
    );
    assert_eq!(agent.applier().list().unwrap().len(), 1);
}
