//! Uploaded certificates and keys (outside data): PEM/DER parsing, key matching, chain checks
//! certificate reading and the re-encoding of what is written never panic, every refusal names
//! a field, and a normalized pair normalizes to itself.
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
    // What would be written: only what parses, and it parses again to the same.
    match cert::normalize(chain, key) {
        Ok(bundle) => {
            let again = cert::normalize(&bundle.chain_pem, &bundle.key_pem);
            assert_eq!(again.ok().as_ref(), Some(&bundle));
        }
        Err(e) => assert!(e.field().is_some()),
    }
});
