//! The PHP examples run against the library: on the command line (`FFI::cdef`) and the way a
//! web SAPI loads it (`ffi.preload`, then `FFI::scope`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

fn php() -> Option<PathBuf> {
    common::tool("/usr/bin/php")
}

fn library() -> PathBuf {
    common::library_dir().join("libenconf.so")
}

use common::bindings;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {stderr}");
    assert!(!stderr.contains("Warning"), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_php_example_validates_through_ffi() {
    let Some(php) = php() else { return };
    let out = run(Command::new(php)
        .args(["-n", "-d", "extension=ffi", "-d", "ffi.enable=1"])
        .arg(bindings().join("php/validate.php"))
        .arg(library())
        .arg(bindings().join("c/include/enconf_api.h")));
    assert_eq!(
        out,
        format!(
            "enconf {}\n\"shop.example\" is valid\n\
             \"shop.example;\\nserver_name evil\" is refused: domain domain must not contain the character '\\n'\n\
             account: invalid at domains[1]: domains[1] must not contain the character ' '\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn a_web_sapi_gets_the_library_from_ffi_preload() {
    let Some(php) = php() else { return };
    let header = run(Command::new(&php)
        .arg("-n")
        .arg(bindings().join("php/preload-header.php"))
        .arg(library()));
    let dir = tempfile::tempdir().unwrap();
    let preload = dir.path().join("enconf.h");
    std::fs::write(&preload, header).unwrap();
    let out = run(Command::new(&php)
        .args(["-n", "-d", "extension=ffi", "-d", "ffi.enable=preload"])
        .arg("-d")
        .arg(format!("ffi.preload={}", preload.display()))
        .arg(bindings().join("php/scoped.php")));
    assert_eq!(
        out,
        "refused: domain domain must not contain the character '\\n'\n"
    );
}

/// The fenced block of the README after `<!-- example: {name} -->`.
fn readme_example(name: &str) -> String {
    let readme = std::fs::read_to_string(bindings().join("../README.md")).unwrap();
    let marker = format!("<!-- example: {name} -->\n```{name}\n");
    let start = readme.find(&marker).expect("the README holds the example") + marker.len();
    let end = start + readme[start..].find("```\n").unwrap();
    readme[start..end].to_owned()
}

#[test]
fn the_readme_php_example_runs() {
    let Some(php) = php() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("example.php");
    std::fs::write(&script, readme_example("php")).unwrap();
    let stack = enconf_bindings_testkit::Stack::start().unwrap();
    let out = run(Command::new(php)
        .args(["-n", "-d", "extension=ffi", "-d", "ffi.enable=1"])
        .arg(&script)
        .arg(library())
        .arg(bindings().join("c/include/enconf_api.h"))
        .arg(bindings().join("php/Enconf.php"))
        .env("ENCONF_URL", &stack.controller_url)
        .env("ENCONF_ADMIN_TOKEN", enconf_bindings_testkit::ADMIN_TOKEN));
    assert_eq!(
        out,
        "domains[1]: domains[1] must not contain the character ' '\n0 servers\n"
    );
}

#[test]
fn the_readme_c_example_runs() {
    let Some(cc) = common::tool("/usr/bin/cc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("example.c");
    std::fs::write(&source, readme_example("c")).unwrap();
    let program = dir.path().join("example");
    let libs = library().parent().unwrap().to_path_buf();
    run(Command::new(cc)
        .args(["-std=c11", "-Wall", "-Werror", "-fsanitize=address"])
        .arg("-I")
        .arg(bindings().join("c/include"))
        .arg(&source)
        .arg("-o")
        .arg(&program)
        .arg(format!("-L{}", libs.display()))
        .arg(format!("-Wl,-rpath,{}", libs.display()))
        .arg("-lenconf"));
    let out = run(&mut Command::new(&program));
    assert_eq!(out, "domain: domain must not contain the character '\\n'\n");
}

#[test]
fn the_php_panel_example_calls_a_running_controller() {
    let Some(php) = php() else { return };
    let stack = enconf_bindings_testkit::Stack::start().unwrap();
    let out = run(Command::new(php)
        .args(["-n", "-d", "extension=ffi", "-d", "ffi.enable=1"])
        .arg(bindings().join("php/panel.php"))
        .arg(library())
        .arg(bindings().join("c/include/enconf_api.h"))
        .env("ENCONF_URL", &stack.controller_url)
        .env("ENCONF_ADMIN_TOKEN", enconf_bindings_testkit::ADMIN_TOKEN)
        .env("AGENT_URL", &stack.agent_url)
        .env("AGENT_TOKEN", enconf_bindings_testkit::AGENT_TOKEN));
    assert_eq!(
        out,
        "form: domains[1]: domains[1] must not contain the character ';'\n\
         server 1 web1: reachable\n\
         account shop on server 1\n\
         account blog on server 1\n\
         account wiki on server 1\n\
         controller: duplicate (409) at username\n\
         page: shop, blog\n\
         page: wiki\n"
    );
}
