//! A C program compiled against the header and linked to the library (built with
//! AddressSanitizer, leaks included) answers every case of `bindings/tests/cases.txt` as
//! enconf's Rust rules do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::process::Command;

use enconf_bindings_testkit::cases::{cases, expected};

#[test]
fn a_c_program_gets_the_rust_answers_for_every_case_without_a_leak() {
    let work = tempfile::tempdir().unwrap();
    let Some(program) = common::compile_sanitized("table", work.path()) else {
        return;
    };

    let cases = cases();
    let mut file = Vec::new();
    for (kind, input) in &cases {
        file.push(*kind);
        file.extend_from_slice(&u32::try_from(input.len()).unwrap().to_le_bytes());
        file.extend_from_slice(input);
    }
    let table = work.path().join("cases.bin");
    std::fs::write(&table, file).unwrap();
    let out = Command::new(&program)
        .arg(&table)
        .envs(common::SANITIZERS)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the C program failed: {stderr}");
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{stdout}");

    let mut statuses = [0usize; 5];
    for ((kind, input), line) in cases.iter().zip(&lines) {
        let got: Vec<&str> = line.splitn(4, '\t').collect();
        let (status, code, field, message) = expected(*kind, input);
        let shown = String::from_utf8_lossy(input);
        assert_eq!(got[0], status.to_string(), "status of {shown:?}: {line}");
        assert_eq!(got[1], code, "code of {shown:?}: {line}");
        assert_eq!(got[2], field, "field of {shown:?}: {line}");
        if let Some(message) = message {
            assert_eq!(got[3], message, "message of {shown:?}");
        }
        statuses[usize::try_from(status).unwrap()] += 1;
    }
    // The table holds every kind of answer but the library's own failure.
    assert!(statuses[..4].iter().all(|n| *n > 0), "{statuses:?}");
}
