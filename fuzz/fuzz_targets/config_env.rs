//! The config.env parser never panics, and what it accepts builds a configuration or a typed
//! error.
#![no_main]

use enconf_agent_lib::config::{AgentConfig, parse_env_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(values) = parse_env_file("fuzz", text) {
        for v in values.values() {
            assert!(!v.contains('\n'), "a value spans lines");
        }
        let _ = AgentConfig::from_values(&values);
    }
});
