//! The committed header is what cbindgen makes of the source now (`ENCONF_BLESS=1` rewrites it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn the_committed_header_is_the_generated_one() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut fresh);
    let fresh = String::from_utf8(fresh).unwrap();
    let committed_path = crate_dir.join("include/enconf_api.h");
    if std::env::var_os("ENCONF_BLESS").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/enconf_api.h differs from what cbindgen generates now; run \
         ENCONF_BLESS=1 cargo test -p enconf-c --test header and commit it"
    );
    let directive = |l: &&str| {
        let l = l.trim_start();
        ["#include", "#if", "#define", "#pragma", "#endif", "#else"]
            .iter()
            .any(|d| l.starts_with(d))
    };
    let found: Vec<&str> = fresh.lines().filter(directive).collect();
    assert!(
        found.is_empty(),
        "no preprocessor line (PHP's FFI parser refuses them): {found:?}"
    );
}
