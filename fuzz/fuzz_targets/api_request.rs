//! Management API request bodies (servers and accounts): decoding and validation never panic,
//! and every refusal names a field.
#![no_main]

use enconf_core::protocol::{AccountInput, ServerInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = serde_json::from_slice::<ServerInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(!e.field.is_empty());
    }
    if let Ok(input) = serde_json::from_slice::<AccountInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(!e.field.is_empty());
    }
});
