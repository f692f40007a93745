//! An account the API answered 201 for survives `kill -9` of the controller. Creates come from
//! 8 clients at once, so the store commits them in groups; the controller is killed while they
//! run, then started again on its redb file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN, WEB_TOKEN, api, free_port, start_agent, start_controller};
use serde_json::{Value, json};

/// `POST /api/v1/accounts`: the created account's id, or `None` for any other outcome (the
/// controller gone mid-request among them).
fn try_create(port: u16, user: &str) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = json!({"username": user, "domains": [format!("{user}.example")]}).to_string();
    write!(
        s,
        "POST /api/v1/accounts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    if raw.get(9..12)? != "201" {
        return None;
    }
    let (_, text) = raw.split_once("\r\n\r\n")?;
    let account: Value = serde_json::from_str(text).ok()?;
    account["id"].as_u64()
}

#[test]
fn an_account_answered_201_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (agent_port, api_port) = (free_port(), free_port());
    let _agent = start_agent(d, "web", agent_port, WEB_TOKEN);
    let mut controller = start_controller(d, api_port);
    let (status, server) = api(
        api_port,
        "POST",
        "/api/v1/servers",
        Some(json!({
            "name": "Web 1", "hostname": "web1.example.com",
            "agent_url": format!("http://127.0.0.1:{agent_port}"), "agent_token": WEB_TOKEN,
            "roles": ["web"]
        })),
    );
    assert_eq!(status, 201, "{server}");

    let answered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (answered, stop) = (Arc::clone(&answered), Arc::clone(&stop));
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let user = format!("c{c}u{i}");
                    match try_create(api_port, &user) {
                        Some(id) => answered.lock().unwrap().push((id, user)),
                        // Killed: every later request fails too.
                        None if stop.load(Ordering::SeqCst) => return,
                        None => {}
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    while answered.lock().unwrap().len() < 200 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the creates do not go on: see {}",
            controller.log.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL, while the clients send.
    controller.child.kill().unwrap();
    controller.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    let _again = start_controller(d, api_port);
    for (id, user) in &answered {
        let (status, account) = api(api_port, "GET", &format!("/api/v1/accounts/{id}"), None);
        assert_eq!(status, 200, "account {id} ({user}) answered 201, then lost");
        assert_eq!(account["username"], user.as_str());
        assert_eq!(account["status"], "active", "{account}");
    }
    eprintln!(
        "{} accounts answered 201 before the kill; all of them kept",
        answered.len()
    );
}
