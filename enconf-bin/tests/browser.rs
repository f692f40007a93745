//! The web page in a real browser: `tests/browser/servers.mjs` drives headless Chromium
//! (playwright-core) against a controller and a sandbox agent on loopback. Screenshots go to
//! `target/browser-screenshots/`. Skipped on a workstation without node, Chromium or
//! `tests/browser/node_modules` (`npm ci` there); a failure under `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const AGENT_TOKEN: &str = "browser-agent-token-0123456789";
const NEWEST_AGENT_VERSION: &str = "999.0.0";

fn missing() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        return Some("node is not installed".into());
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed (npm ci in {})",
            dir.display()
        ));
    }
    None
}

#[test]
fn settings_servers_in_headless_chromium() {
    if skip_or_fail(missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (agent_port, api_port) = (free_port(), free_port());
    let agent = start_agent(d, "web", agent_port, AGENT_TOKEN);
    // A newest agent release above the agent's own: its row shows the update badge.
    let _controller = start_controller_with(
        d,
        api_port,
        &[("ENCONF_NEWEST_AGENT_VERSION", NEWEST_AGENT_VERSION)],
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/servers.mjs"))
        .env("BASE_URL", format!("http://127.0.0.1:{api_port}"))
        .env("ADMIN_TOKEN", ADMIN)
        .env("AGENT_URL", format!("http://127.0.0.1:{agent_port}"))
        .env("AGENT_TOKEN", AGENT_TOKEN)
        .env("AGENT_PID", agent.child.id().to_string())
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}\ncontroller log:\n{}",
        std::fs::read_to_string(d.join("controller.log")).unwrap_or_default()
    );
    assert!(stdout.contains("browser tests passed"), "{stdout}");
    for shot in [
        "server-table.png",
        "add-server-form-error.png",
        "server-table-offline.png",
    ] {
        assert!(shots.join(shot).exists(), "{shot}");
    }
}

#[test]
fn accounts_in_headless_chromium() {
    if skip_or_fail(missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _agents: Vec<Proc> = ["web", "mail", "web2"]
        .iter()
        .zip(&ports)
        .map(|(name, port)| start_agent(d, name, *port, AGENT_TOKEN))
        .collect();
    let api_port = free_port();
    let _controller = start_controller(d, api_port);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/accounts.mjs"))
        .env("BASE_URL", format!("http://127.0.0.1:{api_port}"))
        .env("ADMIN_TOKEN", ADMIN)
        .env("AGENT_URLS", urls.join(" "))
        .env("AGENT_TOKEN", AGENT_TOKEN)
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}\ncontroller log:\n{}",
        std::fs::read_to_string(d.join("controller.log")).unwrap_or_default()
    );
    assert!(stdout.contains("browser tests passed"), "{stdout}");
    for shot in [
        "accounts.png",
        "account-form-error.png",
        "accounts-narrow.png",
        "backups.png",
    ] {
        assert!(shots.join(shot).exists(), "{shot}");
    }
}
