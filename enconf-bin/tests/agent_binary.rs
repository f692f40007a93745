//! The `enconf-agent` binary: configuration errors stop it with the line named; in sandbox mode
//! it starts without root or nginx, serves the API, and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_enconf-agent");
const TOKEN: &str = "bin-test-token-0123456789";

fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_bad_config_line_stops_start_up_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.env");
    std::fs::write(&config, format!("AGENT_TOKEN={TOKEN}\nAGENT_PROT=1\n")).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("AGENT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.env:2: unknown key AGENT_PROT"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "the token is never logged");
}

#[test]
fn sandbox_agent_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.env");
    std::fs::write(
        &config,
        format!(
            "AGENT_TOKEN='{TOKEN}'\nAGENT_BIND=127.0.0.1\nAGENT_PORT={port}\nAGENT_MODE=sandbox\nAGENT_SANDBOX_ROOT={}\n",
            dir.path().join("sandbox").display()
        ),
    )
    .unwrap();
    let mut agent = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = http(port, "GET", "/v1/health", "");
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    let put = http(
        port,
        "PUT",
        "/v1/accounts/shop",
        r#"{"domains": ["shop.example"]}"#,
    );
    assert!(put.ends_with(r#"{"changed":true}"#), "{put}");
    // The sandbox holds the files a real server would.
    let vhost = dir
        .path()
        .join("sandbox/etc/nginx/sites-enabled/enconf-shop.conf");
    assert!(
        std::fs::read_to_string(vhost)
            .unwrap()
            .contains("server_name shop.example;")
    );

    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("status=200"), "one line per request: {log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
}
