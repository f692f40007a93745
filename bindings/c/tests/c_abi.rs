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

use enconf_core::domain::{DomainName, MailAddress, UserName, ValidationError};
use enconf_core::protocol::{AccountInput, ServerInput};

/// The shared table: (kind, input bytes).
fn cases() -> Vec<(u8, Vec<u8>)> {
    let path = common::bindings().join("tests/cases.txt");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (kind, input) = l.split_once('\t').unwrap();
            assert_eq!(kind.len(), 1, "{l}");
            (kind.as_bytes()[0], unescape(input))
        })
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next().unwrap() {
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            '\\' => out.push(b'\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap();
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            other => panic!("unknown escape \\{other}"),
        }
    }
    out
}

/// What the Rust rules answer, as the C program prints it: status, code, field, message
/// (messages only where the rules make them).
fn expected(kind: u8, input: &[u8]) -> (i32, &'static str, String, Option<String>) {
    let Ok(s) = std::str::from_utf8(input) else {
        return (3, "bad_argument", "-".into(), None);
    };
    let invalid = |e: ValidationError| (1, "invalid", e.field.clone(), Some(e.to_string()));
    let bad_request = (2, "bad_request", "-".into(), None);
    let outcome = match kind {
        b'd' => DomainName::parse(s).map(drop).map_err(|r| r.at("domain")),
        b'u' => UserName::parse(s).map(drop).map_err(|r| r.at("username")),
        b'm' => MailAddress::parse(s).map(drop).map_err(|r| r.at("address")),
        b's' => match serde_json::from_str::<ServerInput>(s) {
            Ok(i) => i.validate().map(drop),
            Err(_) => return bad_request,
        },
        b'a' => match serde_json::from_str::<AccountInput>(s) {
            Ok(i) => i.validate().map(drop),
            Err(_) => return bad_request,
        },
        _ => panic!("unknown kind"),
    };
    match outcome {
        Ok(()) => (0, "-", "-".into(), Some("-".into())),
        Err(e) => invalid(e),
    }
}

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
