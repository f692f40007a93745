//! The table of good and hostile inputs every binding is tested with
//! (`bindings/tests/cases.txt`), and what enconf's Rust rules answer for each case.
#![allow(clippy::unwrap_used, clippy::panic)]

use enconf_core::domain::{ValidationError, field};
use enconf_core::protocol::{AccountInput, ServerInput};

/// The shared table: (kind, input bytes).
pub fn cases() -> Vec<(u8, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases.txt");
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
pub fn expected(kind: u8, input: &[u8]) -> (i32, &'static str, String, Option<String>) {
    let Ok(s) = std::str::from_utf8(input) else {
        return (3, "bad_argument", "-".into(), None);
    };
    let invalid = |e: ValidationError| (1, "invalid", e.field.clone(), Some(e.to_string()));
    let bad_request = (2, "bad_request", "-".into(), None);
    let outcome = match kind {
        b'd' => field::domain(s).map(drop),
        b'u' => field::username(s).map(drop),
        b'm' => field::mail_address(s).map(drop),
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
