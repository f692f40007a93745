//! End to end on loopback, real processes: one `enconf-controller` (redb store) and two
//! `enconf-agent`s in sandbox mode. Servers are added and checked, an account is placed and
//! provisioned, an agent goes down and comes back, deletes are refused and then done, and a
//! restarted controller still has everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_enconf-controller");
const AGENT: &str = env!("CARGO_BIN_EXE_enconf-agent");
const ADMIN: &str = "e2e-admin-token-0123456789";
const WEB_TOKEN: &str = "web-agent-token-'$`x\"-0123";
const MAIL_TOKEN: &str = "mail-agent-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A process stopped by SIGTERM when dropped; its stderr goes to a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn stop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .unwrap();
            let status = self.child.wait().unwrap();
            assert!(status.success(), "{}: {status}", self.log.display());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path, name: &str, port: u16, token: &str) -> Proc {
    let config = dir.join(format!("{name}.env"));
    let quoted = format!("'{}'", token.replace('\'', "'\\''"));
    std::fs::write(
        &config,
        format!(
            "AGENT_TOKEN={quoted}\nAGENT_BIND=127.0.0.1\nAGENT_PORT={port}\nAGENT_MODE=sandbox\nAGENT_SANDBOX_ROOT={}\n",
            dir.join(name).display()
        ),
    )
    .unwrap();
    let mut command = Command::new(AGENT);
    command.arg("--config").arg(&config);
    spawn(command, &dir.join(format!("{name}.log")), port, name)
}

/// Starts `command` with its stderr appended to `log` and waits until it listens on `port`.
fn spawn(mut command: Command, log: &Path, port: u16, what: &str) -> Proc {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = command.stdout(Stdio::null()).stderr(file).spawn().unwrap();
    wait_listening(port, &mut child, what);
    Proc {
        child,
        log: log.to_path_buf(),
    }
}

fn start_controller(dir: &Path, port: u16) -> Proc {
    let mut command = Command::new(CONTROLLER);
    command
        .env("ENCONF_BIND", format!("127.0.0.1:{port}"))
        .env("ENCONF_DATA_DIR", dir.join("data"))
        .env("ENCONF_ADMIN_TOKEN", ADMIN)
        .env("ENCONF_HEALTH_INTERVAL_S", "1")
        .env("ENCONF_AGENT_TIMEOUT_S", "2");
    spawn(command, &dir.join("controller.log"), port, "controller")
}

/// One request to the controller with the admin token: status and JSON body (`null` when empty).
fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api_as(ADMIN, port, method, path, body)
}

fn api_as(admin: &str, port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status: u16 = raw[9..12].parse().unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    assert_ne!(status, 500, "no 500 anywhere: {raw}");
    assert!(
        !raw.contains(WEB_TOKEN) && !raw.contains(MAIL_TOKEN),
        "a token in an answer"
    );
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(text)
    } else {
        text.to_owned()
    };
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, json)
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = text.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        text = &rest[size + 2..];
    }
}

/// Polls `GET path` until `done` holds for the answer; returns it.
fn until(port: u16, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = api(port, "GET", path, None);
        if status == 200 && done(&body) {
            return body;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn controller_and_two_agents_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (web_port, mail_port, api_port) = (free_port(), free_port(), free_port());
    let mut web = start_agent(d, "web", web_port, WEB_TOKEN);
    let mut mail = start_agent(d, "mail", mail_port, MAIL_TOKEN);
    let mut controller = start_controller(d, api_port);

    // Add both servers; each is checked at once.
    let (status, web_server) = api(
        api_port,
        "POST",
        "/api/v1/servers",
        Some(json!({
            "name": "Web 1", "hostname": "web1.example.com",
            "agent_url": format!("http://127.0.0.1:{web_port}"), "agent_token": WEB_TOKEN,
            "roles": ["web", "db"], "max_accounts": 100
        })),
    );
    assert_eq!(status, 201, "{web_server}");
    let (status, mail_server) = api(
        api_port,
        "POST",
        "/api/v1/servers",
        Some(json!({
            "name": "Mail 1", "hostname": "mail1.example.com", "mail_hostname": "mx.example.com",
            "agent_url": format!("http://127.0.0.1:{mail_port}"), "agent_token": MAIL_TOKEN,
            "roles": ["mail", "dns"]
        })),
    );
    assert_eq!(status, 201, "{mail_server}");
    let (web_id, mail_id) = (
        web_server["id"].as_u64().unwrap(),
        mail_server["id"].as_u64().unwrap(),
    );
    let (_, servers) = api(api_port, "GET", "/api/v1/servers", None);
    for s in servers.as_array().unwrap() {
        assert_eq!(s["reachable"], true, "{s}");
        assert_eq!(s["agent_version"], env!("CARGO_PKG_VERSION"), "{s}");
        assert_eq!(s["update_available"], false);
        assert!(
            s["last_seen"].is_string() && s["last_error"].is_null(),
            "{s}"
        );
        assert!(s.get("agent_token").is_none());
    }

    // An account goes to the web server (the only one with the web role) and is provisioned.
    let (status, account) = api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "shop", "domains": ["shop.example", "bücher.example"]})),
    );
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["server_id"], web_id);
    assert_eq!(account["status"], "active");
    assert_eq!(account["domains"][1], "xn--bcher-kva.example");
    let account_id = account["id"].as_u64().unwrap();
    let vhost = d.join("web/etc/nginx/sites-enabled/enconf-shop.conf");
    assert!(
        std::fs::read_to_string(&vhost)
            .unwrap()
            .contains("server_name shop.example xn--bcher-kva.example;")
    );
    assert!(
        !d.join("mail/etc/nginx/sites-enabled/enconf-shop.conf")
            .exists()
    );
    let (_, web_view) = api(api_port, "GET", &format!("/api/v1/servers/{web_id}"), None);
    assert_eq!(web_view["accounts"], 1);

    // The web agent stops: the monitor sees it within an interval, and operations on it are
    // refused with 503 and change nothing.
    web.stop();
    let offline = until(
        api_port,
        &format!("/api/v1/servers/{web_id}"),
        "web goes offline",
        |s| s["reachable"] == false,
    );
    assert!(
        offline["last_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{offline}"
    );
    assert_eq!(
        offline["agent_version"],
        env!("CARGO_PKG_VERSION"),
        "the last known version stays"
    );
    let (status, err) = api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "blog", "domains": ["blog.example"], "server_id": web_id})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (503, Some("agent_offline")),
        "{err}"
    );
    let (status, err) = api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "blog", "domains": ["blog.example"]})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (503, Some("agent_offline")),
        "{err}"
    );
    let (status, err) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/accounts/{account_id}"),
        None,
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (503, Some("agent_offline")),
        "{err}"
    );
    let (_, accounts) = api(api_port, "GET", "/api/v1/accounts", None);
    assert_eq!(
        accounts.as_array().unwrap().len(),
        1,
        "nothing recorded: {accounts}"
    );
    assert_eq!(accounts[0]["status"], "active");
    assert!(vhost.exists());

    // It comes back.
    let _web = start_agent(d, "web", web_port, WEB_TOKEN);
    until(
        api_port,
        &format!("/api/v1/servers/{web_id}"),
        "web comes back",
        |s| s["reachable"] == true && s["last_error"].is_null(),
    );

    // A server with an account cannot be deleted; the account goes first, then the server.
    let (status, err) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/servers/{web_id}"),
        None,
    );
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "server_has_accounts");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 account(s) (shop)"),
        "{err}"
    );
    let (status, _) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/accounts/{account_id}"),
        None,
    );
    assert_eq!(status, 204);
    assert!(!vhost.exists(), "the agent removed the site");
    let (status, _) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/servers/{web_id}"),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = api(api_port, "GET", &format!("/api/v1/servers/{web_id}"), None);
    assert_eq!(status, 404);

    // A restarted controller on the same data directory has everything.
    let (_, before) = api(api_port, "GET", "/api/v1/servers", None);
    controller.stop();
    let controller = start_controller(d, api_port);
    let (_, after) = api(api_port, "GET", "/api/v1/servers", None);
    let strip = |v: &Value| {
        let mut v = v.clone();
        for s in v.as_array_mut().unwrap() {
            let s = s.as_object_mut().unwrap();
            s.remove("last_seen");
        }
        v
    };
    assert_eq!(strip(&before), strip(&after));
    assert_eq!(after[0]["id"], mail_id);
    assert_eq!(after[0]["mail_hostname"], "mx.example.com");

    // No token was ever logged.
    drop(controller);
    mail.stop();
    for log in [
        d.join("controller.log"),
        d.join("web.log"),
        d.join("mail.log"),
    ] {
        let text = std::fs::read_to_string(&log).unwrap();
        for secret in [ADMIN, WEB_TOKEN, MAIL_TOKEN] {
            assert!(!text.contains(secret), "{} holds a token", log.display());
        }
    }
    let log = std::fs::read_to_string(d.join("controller.log")).unwrap();
    assert!(
        log.contains("path=\"/api/v1/accounts\" status=201"),
        "one line per request: {log}"
    );
}

#[test]
fn the_admin_token_is_generated_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let start = || {
        let mut command = Command::new(CONTROLLER);
        command
            .env_remove("ENCONF_ADMIN_TOKEN")
            .env("ENCONF_BIND", format!("127.0.0.1:{port}"))
            .env("ENCONF_DATA_DIR", &data);
        spawn(
            command,
            &dir.path().join("controller.log"),
            port,
            "controller",
        )
    };
    let mut controller = start();
    let file = data.join("admin-token");
    let token = std::fs::read_to_string(&file).unwrap();
    let token = token.trim_end();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        api_as(token, port, "GET", "/api/v1/servers", None),
        (200, json!([]))
    );
    assert_eq!(
        api_as(
            "not-the-admin-token-0123",
            port,
            "GET",
            "/api/v1/servers",
            None
        )
        .0,
        401
    );
    controller.stop();
    let _again = start();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim_end(),
        token,
        "kept across restarts"
    );
    assert_eq!(api_as(token, port, "GET", "/api/v1/servers", None).0, 200);
    let log = std::fs::read_to_string(dir.path().join("controller.log")).unwrap();
    assert!(
        log.contains("admin-token"),
        "the log says where the token is"
    );
    assert!(!log.contains(token), "but never the token");

    // A configured token that is not a valid one stops start-up without echoing it.
    let out = Command::new(CONTROLLER)
        .env("ENCONF_ADMIN_TOKEN", "short secret")
        .env("ENCONF_DATA_DIR", &data)
        .env("ENCONF_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENCONF_ADMIN_TOKEN"), "{stderr}");
    assert!(!stderr.contains("short secret"), "{stderr}");
}
