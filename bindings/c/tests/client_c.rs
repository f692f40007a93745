//! `tests/c/client.c`, compiled against the header with AddressSanitizer (leaks included) and
//! UndefinedBehaviorSanitizer, calls a controller and a sandboxed agent running in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use enconf_bindings_testkit::{ADMIN_TOKEN, AGENT_TOKEN, Stack};

#[test]
fn a_c_program_adds_a_server_and_accounts_without_leaks() {
    let work = tempfile::tempdir().unwrap();
    let Some(program) = common::compile_sanitized("client", work.path()) else {
        return;
    };

    let stack = Stack::start().unwrap();
    let out = Command::new(&program)
        .args([
            stack.controller_url.as_str(),
            ADMIN_TOKEN,
            stack.agent_url.as_str(),
            AGENT_TOKEN,
        ])
        .envs(common::SANITIZERS)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the C program failed: {stderr}");
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    for (line, prefix) in lines.iter().zip(["server: ", "shop: ", "blog: "]) {
        assert!(
            line.starts_with(prefix) && line.ends_with(" bytes, whole"),
            "{stdout}"
        );
    }
    assert_eq!(
        lines[3],
        "again: status 5, duplicate (HTTP 409) at username"
    );
    assert_eq!(lines[4], "list: status 1, invalid (HTTP 0) at colour");
    assert!(
        lines[5].starts_with("page: ") && lines[6].starts_with("servers: "),
        "{stdout}"
    );
}
