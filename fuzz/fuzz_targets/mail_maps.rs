//! The agent's mail request bodies and what they render to: decoding never panics; whatever
//! validates renders passwd-file lines of exactly one line and eight fields that read back as
//! what was rendered; editing `main.cf` / `opendkim.conf` text (any text an administrator left)
//! sets exactly the agent's keys and keeps every other line.
#![no_main]

use std::path::Path;

use enconf_agent_lib::services::dovecot::{parse_passwd, passwd_line};
use enconf_agent_lib::settings::{self, Syntax};
use enconf_core::protocol::mail::MailPut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(put) = serde_json::from_slice::<MailPut>(data) {
        let mut text = String::new();
        for m in &put.mailboxes {
            let line = passwd_line(&m.address, &m.password_hash, m.quota_mb);
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with('\n'));
            assert_eq!(
                line.trim_end().split(':').count(),
                if m.quota_mb.is_some() { 9 } else { 8 },
                "{line}"
            );
            text.push_str(&line);
        }
        let back = parse_passwd(Path::new("/fuzz"), &text);
        assert_eq!(back.len(), put.mailboxes.len());
        for ((a, h, q), m) in back.iter().zip(&put.mailboxes) {
            assert_eq!((a, h, q), (&m.address, &m.password_hash, &m.quota_mb));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for syntax in [Syntax::Postfix, Syntax::Opendkim] {
        let wanted = [(
            "virtual_mailbox_maps",
            "lmdb:/etc/postfix/enconf/mailboxes".to_owned(),
        )];
        let out = settings::set(text, syntax, &wanted, "fuzz");
        assert_eq!(
            settings::get(&out, syntax, "virtual_mailbox_maps").as_deref(),
            Some("lmdb:/etc/postfix/enconf/mailboxes")
        );
        assert_eq!(
            settings::set(&out, syntax, &wanted, "fuzz"),
            out,
            "idempotent"
        );
    }
});
