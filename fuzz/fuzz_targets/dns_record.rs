//! DNS records as the API and the agent take them: parsing never panics; what is accepted
//! renders as one zone-file line (no line break, no `;`, `(`, `)` or `$` outside a quoted
//! string), reads back as itself, and its name stays inside the zone.
#![no_main]

use enconf_core::domain::dns::{RecordName, RecordSpec, ZoneName, zone_file};
use enconf_core::protocol::dns::RecordInput;
use libfuzzer_sys::fuzz_target;

/// The text of a zone-file line outside its quoted strings.
fn unquoted(line: &str) -> String {
    let mut out = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
        } else if c == '"' {
            quoted = true;
        } else {
            out.push(c);
        }
    }
    assert!(!quoted, "an unterminated string in {line:?}");
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let zone = ZoneName::parse("shop.example").unwrap();
    let mut fields = text.splitn(5, '\u{1f}');
    let (name, kind, content, ttl, priority) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or("A"),
        fields.next().unwrap_or(""),
        fields.next(),
        fields.next(),
    );
    let _ = ZoneName::parse(name);
    if let Ok(n) = RecordName::parse(name, &zone) {
        assert!(n.absolute(&zone).ends_with("shop.example"));
        assert!(n.as_str().bytes().all(|b| b.is_ascii_graphic()));
    }
    let input = RecordInput {
        name: Some(name.to_owned()),
        kind: Some(kind.to_owned()),
        ttl: ttl.and_then(|t| t.parse::<u64>().ok()).map(Into::into),
        content: Some(content.to_owned()),
        priority: priority.and_then(|p| p.parse::<u64>().ok()).map(Into::into),
    };
    let Ok(spec) = input.validate(&zone, "") else {
        return;
    };
    let line = spec.zone_line();
    assert_eq!(line.matches('\n').count(), 1, "{line:?}");
    assert!(line.ends_with('\n'));
    let outside = unquoted(line.trim_end());
    assert!(
        !outside.contains([';', '(', ')', '$', '\\', '\r', '\t']),
        "{line:?}"
    );
    let again: RecordSpec = RecordInput::from_spec(&spec).validate(&zone, "").unwrap();
    assert_eq!(again, spec);
    let file = zone_file(&zone, 1, std::slice::from_ref(&spec));
    assert_eq!(file.lines().count(), 3);
});
