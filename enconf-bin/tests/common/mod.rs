//! Helpers of the binaries' integration tests: free ports, processes stopped by SIGTERM, a
//! minimal HTTP client for the Management API.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CONTROLLER: &str = env!("CARGO_BIN_EXE_enconf-controller");
pub const AGENT: &str = env!("CARGO_BIN_EXE_enconf-agent");
pub const ADMIN: &str = "e2e-admin-token-0123456789";
pub const WEB_TOKEN: &str = "web-agent-token-'$`x\"-0123";
pub const MAIL_TOKEN: &str = "mail-agent-token-0123456789";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_listening(port: u16, child: &mut Child, what: &str) {
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
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn stop(&mut self) {
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

pub fn start_agent(dir: &Path, name: &str, port: u16, token: &str) -> Proc {
    let config = dir.join(format!("{name}.env"));
    let quoted = format!("'{}'", token.replace('\'', "'\\''"));
    std::fs::write(
        &config,
        format!(
            "AGENT_TOKEN={quoted}\nAGENT_BIND=127.0.0.1\nAGENT_PORT={port}\nAGENT_MODE=sandbox\nAGENT_SANDBOX_ROOT={}\nAGENT_ROLES=web,mail,dns,db,backup\nAGENT_BACKUP_LISTEN=127.0.0.1:{backup_port}\nAGENT_BACKUP_URL=http://127.0.0.1:{backup_port}\n",
            dir.join(name).display(),
            backup_port = free_port()
        ),
    )
    .unwrap();
    let mut command = Command::new(AGENT);
    command.arg("--config").arg(&config);
    spawn(command, &dir.join(format!("{name}.log")), port, name)
}

/// Starts `command` with its stderr appended to `log` and waits until it listens on `port`.
pub fn spawn(mut command: Command, log: &Path, port: u16, what: &str) -> Proc {
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

pub fn start_controller(dir: &Path, port: u16) -> Proc {
    start_controller_with(dir, port, &[])
}

/// [`start_controller`] with more environment variables (`ENCONF_*` settings).
pub fn start_controller_with(dir: &Path, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(CONTROLLER);
    command
        .env("ENCONF_BIND", format!("127.0.0.1:{port}"))
        .env("ENCONF_DATA_DIR", dir.join("data"))
        .env("ENCONF_ADMIN_TOKEN", ADMIN)
        .env("ENCONF_HEALTH_INTERVAL_S", "1")
        .env("ENCONF_AGENT_TIMEOUT_S", "2")
        .envs(env.iter().copied());
    spawn(command, &dir.join("controller.log"), port, "controller")
}

/// One request to the controller with the admin token: status and JSON body (`null` when empty).
pub fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api_as(ADMIN, port, method, path, body)
}

pub fn api_as(
    admin: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
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

pub fn dechunk(mut text: &str) -> String {
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
pub fn until(port: u16, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
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

/// A tool a test needs is missing: skipped on a workstation, a failure under `CI=true`.
/// `true` when the test must return.
pub fn skip_or_fail(why: Option<String>) -> bool {
    let Some(why) = why else {
        return false;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: CI must provide it (.ci/run installs it)");
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("SKIPPED: {why}");
    }
    true
}
