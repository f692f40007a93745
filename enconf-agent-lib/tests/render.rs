//! Rendering: snapshots of the exact output, and the property that no accepted input changes
//! the structure of what is rendered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{layout, spec, with_memory};
use enconf_agent_lib::render::{self, shape};
use enconf_core::domain::{AccountSpec, Domains, PhpSettings, PhpSettingsRaw, UserName};
use proptest::prelude::*;

/// Compares with `tests/snapshots/<name>`; `UPDATE_SNAPSHOTS=1` rewrites the file instead.
fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from its snapshot");
}

fn shop() -> AccountSpec {
    let mut s = with_memory(
        spec(
            "shop",
            &["shop.example", "www.shop.example", "bücher.example"],
        ),
        256,
    );
    s.php_version = Some("8.3".parse().unwrap());
    s
}

#[test]
fn vhost_snapshot() {
    assert_snapshot(
        "shop.vhost.conf",
        &render::vhost(&layout(Path::new("/srv")), &shop()),
    );
}

#[test]
fn pool_snapshot() {
    assert_snapshot(
        "shop.pool.conf",
        &render::fpm_pool(&layout(Path::new("/srv")), &shop()),
    );
}

#[test]
fn http_conf_snapshot() {
    assert_snapshot("http.conf", &render::http_conf(&layout(Path::new("/srv"))));
}

#[test]
fn reference_shapes() {
    let l = layout(Path::new("/srv"));
    let vhost = shape::nginx(&render::vhost(&l, &shop())).unwrap();
    assert_eq!(
        vhost.iter().filter(|(d, _)| *d == 0).count(),
        1,
        "one top-level server block"
    );
    assert_eq!(vhost[0], (0, "server".to_owned()));
    let pool = shape::ini(&render::fpm_pool(&l, &shop())).unwrap();
    assert_eq!(
        pool.iter().filter(|k| *k == "[]").count(),
        1,
        "one pool section"
    );
    assert!(shape::nginx("server { listen 80; }}").is_err());
    assert!(shape::nginx("server { listen 80 }").is_err());
}

proptest! {
    /// Whatever the validators accept renders to exactly the template's structure.
    #[test]
    fn accepted_input_never_changes_the_structure(
        user in prop_oneof!["[a-z][a-z0-9_-]{0,12}", "[a-z;{}'\"$ \n./-]{1,12}", "\\PC{1,40}"],
        domains in proptest::collection::vec(
            prop_oneof![
                "[a-z0-9-]{1,12}\\.[a-z]{2,6}",
                "[a-zà-ÿ0-9;{}'\"$ \n\\\\.-]{1,24}",
                "\\PC{1,60}",
            ],
            1..4,
        ),
        memory in 0u32..20000,
        children in 0u32..300,
    ) {
        let Ok(username) = UserName::parse(&user) else { return Ok(()) };
        let Ok(domains) = Domains::parse("domains", &domains) else { return Ok(()) };
        let raw = PhpSettingsRaw { memory_limit_mb: Some(memory), max_children: Some(children), ..Default::default() };
        let Ok(php) = PhpSettings::from_raw(raw, "php.") else { return Ok(()) };
        let spec = AccountSpec { username, domains, php_version: None, php, roles: AccountSpec::web_only(), zones: Vec::new(), db: Default::default(), backup: None };
        let l = layout(Path::new("/srv"));
        let reference = spec_like_reference(&spec);
        prop_assert_eq!(
            shape::nginx(&render::vhost(&l, &spec)).unwrap(),
            shape::nginx(&render::vhost(&l, &reference)).unwrap()
        );
        prop_assert_eq!(
            shape::ini(&render::fpm_pool(&l, &spec)).unwrap(),
            shape::ini(&render::fpm_pool(&l, &reference)).unwrap()
        );
    }
}

/// A plain account with as many domains as `spec`.
fn spec_like_reference(spec: &AccountSpec) -> AccountSpec {
    let names: Vec<String> = (0..spec.domains.iter().count())
        .map(|i| format!("d{i}.example"))
        .collect();
    AccountSpec {
        username: UserName::parse("reference").unwrap(),
        domains: Domains::parse("domains", &names).unwrap(),
        php_version: None,
        php: PhpSettings::default(),
        roles: AccountSpec::web_only(),
        zones: Vec::new(),
        db: Default::default(),
        backup: None,
    }
}
