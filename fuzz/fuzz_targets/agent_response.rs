//! What the controller reads back from an agent (status and body, outside data): decoding never
//! panics, a success status never passes an error body off as a result, and the version a
//! health answer reports is parsed without panicking.
#![no_main]

use enconf_core::protocol::AgentHealth;
use enconf_core::protocol::agent::{AccountList, Applied};
use enconf_core::transport::{AgentResponse, TransportError, decode};
use libfuzzer_sys::fuzz_target;

fn check<T>(result: Result<T, TransportError>, status: u16) -> Option<T> {
    let ok = (200..300).contains(&status);
    match result {
        Ok(v) => {
            assert!(ok);
            Some(v)
        }
        Err(TransportError::Agent { status: s, .. }) => {
            assert!(!ok && s == status);
            None
        }
        Err(_) => None,
    }
}

fuzz_target!(|input: (u16, Vec<u8>)| {
    let (status, body) = input;
    let response = AgentResponse { status, body };
    check(decode::<Applied>(response.clone()), status);
    check(decode::<AccountList>(response.clone()), status);
    if let Some(health) = check(decode::<AgentHealth>(response), status) {
        let _ = semver::Version::parse(&health.version);
    }
});
