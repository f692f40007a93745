//! Mail addresses, passwords, hashes and alias destinations as the APIs take them: parsing never
//! panics, and what is accepted can only hold what a Postfix map key or a Dovecot passwd-file
//! field may (no `:`, space, line break or control character; the local part from the
//! allowlist), and reads back as itself.
#![no_main]

use enconf_core::domain::{Destinations, MailAddress, MailPassword, PasswordHash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = MailAddress::parse(text) {
        let shown = address.to_string();
        let local = address.local();
        assert!(!local.is_empty() && local.len() <= 64, "{shown}");
        assert!(
            local.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'-' | b'_' | b'+')),
            "{shown}"
        );
        assert!(
            !local.starts_with('.') && !local.ends_with('.') && !local.contains(".."),
            "{shown}"
        );
        assert!(
            shown.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
            "{shown}"
        );
        assert_eq!(MailAddress::parse(&shown).ok(), Some(address));
    }
    if let Ok(hash) = PasswordHash::parse(text) {
        let s = hash.as_str();
        assert!(s.bytes().all(|b| b.is_ascii_graphic() && b != b':'), "{s}");
    }
    let _ = MailPassword::parse(text);
    let parts: Vec<String> = text.split(',').map(str::to_owned).collect();
    if let Ok(list) = Destinations::parse("destinations", &parts) {
        for d in list.iter() {
            assert!(
                d.to_string()
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b':' && b != b',')
            );
        }
    }
});
