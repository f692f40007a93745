//! Whatever validation accepts renders to exactly the template's structure: one server block,
//! balanced braces, the same directives; one pool section with the same keys.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use enconf_agent_lib::config::{AgentConfig, Layout};
use enconf_agent_lib::render::{self, shape};
use enconf_core::domain::{AccountSpec, PhpSettingsRaw};
use enconf_core::protocol::agent::AccountPut;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    username: String,
    domains: Vec<String>,
    php_version: Option<String>,
    memory_limit_mb: Option<u32>,
    upload_max_mb: Option<u32>,
    max_execution_time_s: Option<u32>,
    max_children: Option<u32>,
}

fn layout() -> Layout {
    let values: BTreeMap<String, String> = [("AGENT_TOKEN", "0123456789abcdef")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    AgentConfig::from_values(&values)
        .expect("default config")
        .layout
}

fn reference(spec: &AccountSpec) -> AccountSpec {
    let domains: Vec<String> = (0..spec.domains.iter().count())
        .map(|i| format!("d{i}.example"))
        .collect();
    AccountPut {
        username: Some("reference".into()),
        domains: Some(domains),
        ..AccountPut::default()
    }
    .validate("", None)
    .expect("reference spec")
}

fuzz_target!(|input: Input| {
    let put = AccountPut {
        username: Some(input.username),
        domains: Some(input.domains),
        php_version: input.php_version,
        roles: None,
        php: Some(PhpSettingsRaw {
            memory_limit_mb: input.memory_limit_mb,
            upload_max_mb: input.upload_max_mb,
            max_execution_time_s: input.max_execution_time_s,
            max_children: input.max_children,
        }),
        ..AccountPut::default()
    };
    let Ok(spec) = put.validate("", None) else {
        return;
    };
    let layout = layout();
    let reference = reference(&spec);
    let vhost = render::vhost(&layout, &spec);
    assert_eq!(
        shape::nginx(&vhost).expect("vhost parses"),
        shape::nginx(&render::vhost(&layout, &reference)).expect("reference parses"),
        "{vhost}"
    );
    let pool = render::fpm_pool(&layout, &spec);
    assert_eq!(
        shape::ini(&pool).expect("pool parses"),
        shape::ini(&render::fpm_pool(&layout, &reference)).expect("reference parses"),
        "{pool}"
    );
});
