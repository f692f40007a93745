//! The OpenAPI document tells the truth: schemathesis (from PyPI; `.ci/run` installs it into
//! `target/schemathesis`) runs every one of its checks against a controller whose single
//! server is a reachable sandbox agent, so it reaches the operations that create servers and
//! accounts, and finds no difference between the document and the server. Settings and why:
//! `tests/schemathesis.toml`. Skipped on a workstation without schemathesis; a failure under
//! `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Test cases per operation, and the seed that makes a run repeatable.
const EXAMPLES: &str = "100";
const SEED: &str = "4";

fn schemathesis() -> Result<PathBuf, String> {
    let path = std::env::var_os("ENCONF_SCHEMATHESIS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis/bin/schemathesis"),
        PathBuf::from,
    );
    match path.exists() {
        true => Ok(path),
        false => Err(format!(
            "schemathesis is not installed at {} (python3 -m venv target/schemathesis && target/schemathesis/bin/pip install schemathesis)",
            path.display()
        )),
    }
}

#[test]
fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    let tool = match schemathesis() {
        Ok(tool) => tool,
        Err(why) => {
            skip_or_fail(Some(why));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (agent_port, api_port) = (free_port(), free_port());
    let _agent = start_agent(d, "local", agent_port, WEB_TOKEN);
    let token_file = d.join("agent-token");
    std::fs::write(&token_file, WEB_TOKEN).unwrap();
    let _controller = start_controller_with(
        d,
        api_port,
        &[
            (
                "ENCONF_LOCAL_AGENT_URL",
                &format!("http://127.0.0.1:{agent_port}"),
            ),
            (
                "ENCONF_LOCAL_AGENT_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
            // Servers the fuzzer adds point at agents that do not exist.
            ("ENCONF_AGENT_TIMEOUT_S", "1"),
            // Its checks send wrong tokens on purpose, far more than a person would.
            ("ENCONF_SIGN_IN_FAILURES", "1000000"),
        ],
    );
    let out = Command::new(&tool)
        .arg("--config-file")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("http://127.0.0.1:{api_port}/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
        ])
        .arg("--no-color")
        .current_dir(d)
        .output()
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(d.join("controller.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "schemathesis found differences:\n{report}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // It got past validation to the operations that create things.
    assert!(
        log.contains("server added"),
        "no server was added:\n{report}"
    );
    assert!(
        log.contains("account created"),
        "no account was created:\n{report}"
    );
}
