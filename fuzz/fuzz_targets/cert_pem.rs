//! Uploaded certificates and keys (outside data): PEM/DER parsing, key matching, chain checks
//! and certificate reading never panic, and every refusal names a field.
#![no_main]

use enconf_core::domain::DomainName;
use enconf_core::ssl::cert;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (chain, key) = input;
    let Ok(host) = DomainName::parse("web1.example.com") else {
        return;
    };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    if let Err(e) = cert::check(chain, key, &host, now) {
        assert!(e.field().is_some());
    }
    let _ = cert::info(chain);
    let _ = cert::parse_key(key);
});
