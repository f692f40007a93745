//! Agent API request bodies: decoding and validation never panic, and an accepted batch holds
//! only LDH domain names and safe user names.
#![no_main]

use enconf_core::protocol::agent::AccountBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<AccountBatch>(data) else {
        return;
    };
    let Ok(specs) = batch.validate() else { return };
    for spec in specs {
        assert!(
            spec.username
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        );
        for d in &spec.domains {
            assert!(
                d.as_str().bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'.')
            );
        }
    }
});
