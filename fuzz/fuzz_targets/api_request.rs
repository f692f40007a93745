//! Management API request bodies (servers, server patches, accounts, migrations): decoding and
//! validation never panic, and every refusal names a field.
#![no_main]

use enconf_core::protocol::{AccountInput, MigrateInput, ServerInput, ServerPatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = serde_json::from_slice::<ServerInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(!e.field.is_empty());
    }
    if let Ok(patch) = serde_json::from_slice::<ServerPatch>(data) {
        let current = enconf_core::store::conformance::spec("web1", "web,db");
        match patch.apply(&current) {
            Ok((spec, _)) => assert!(!spec.roles.is_empty()),
            Err(e) => assert!(!e.field.is_empty()),
        }
    }
    if let Ok(input) = serde_json::from_slice::<MigrateInput>(data)
        && let Err(e) = input.validate()
    {
        assert_eq!(e.field, "target_server_id");
    }
    if let Ok(input) = serde_json::from_slice::<AccountInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(!e.field.is_empty());
    }
});
