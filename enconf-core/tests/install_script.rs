//! The installation script, run for real by `sh` (dash here) and `bash --posix` with stand-ins
//! for `apt-get` and `systemctl`: whatever the token holds, the script parses, writes
//! `config.env` with mode 0600, and that file gives back the token byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use enconf_core::controller::install;
use enconf_core::store::conformance::spec;

const HOSTILE: &[&str] = &[
    "plain-token-0123456789",
    "it's-a-token",
    "'",
    "''\\''",
    "$HOME$(id -u)${PATH}",
    "`touch /tmp/enconf-pwned`",
    "$(touch /tmp/enconf-pwned)",
    "a\nb\n\nc",
    "trailing newline\n",
    "\"double\" \\ back\\slash",
    "; rm -rf / ; # && || | > <",
    "%s %d %n \\n \\0",
    "-n",
    "*?[a-z]~",
    "  leading and trailing  ",
    "ünïcödé-tøken-✓",
    "EOF\nENCONF_EOF\n'\nexit 1",
];

fn stub(dir: &Path, name: &str) {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name} $*\" >> \"$STUB_LOG\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `script` with `shell` under a fresh root; returns the root's config.env path.
fn run(shell: &[&str], script: &str, dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    stub(&bin, "apt-get");
    stub(&bin, "systemctl");
    let root = dir.join("root");
    let file = dir.join("install.sh");
    std::fs::write(&file, script).unwrap();
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg(&file)
        .env("ENCONF_INSTALL_ROOT", &root)
        .env("STUB_LOG", dir.join("calls"))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("etc/netcell-webpanel-agent/config.env")
}

/// What `sh` reads from `config.env` for `key`.
fn sourced(config: &Path, key: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". \"$1\" && printf '%s' \"${key}\""))
        .arg("sh")
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn any_token_is_quoted_safely() {
    let _ = std::fs::remove_file("/tmp/enconf-pwned");
    for token in HOSTILE {
        for shell in [&["sh"][..], &["bash", "--posix"][..]] {
            let dir = tempfile::tempdir().unwrap();
            let script = install::script(&spec("web1", "web,db"), token);
            let check = Command::new(shell[0])
                .args(&shell[1..])
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .status()
                .unwrap();
            assert!(
                check.success(),
                "{shell:?} -n refuses the script for {token:?}"
            );

            let config = run(shell, &script, dir.path());
            let mode = std::fs::metadata(&config).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{token:?}");
            assert_eq!(
                sourced(&config, "AGENT_TOKEN"),
                token.as_bytes(),
                "{shell:?} {token:?}"
            );
            assert_eq!(sourced(&config, "AGENT_PORT"), b"50000");
            let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
            assert_eq!(
                calls,
                "apt-get update\napt-get install -y netcell-webpanel-agent\nsystemctl enable --now netcell-webpanel-agent\n"
            );
            // No temporary file is left beside it.
            let files = std::fs::read_dir(config.parent().unwrap()).unwrap().count();
            assert_eq!(files, 1);
        }
    }
    assert!(
        !Path::new("/tmp/enconf-pwned").exists(),
        "no token ran a command"
    );
}

#[test]
fn the_port_and_bind_come_from_the_agent_url() {
    let mut s = spec("web1", "web");
    s.agent_url = "https://web1.example.com:50443".parse().unwrap();
    let lines = install::config_env(&s, "t");
    assert!(lines.contains(&"AGENT_PORT=50443".to_owned()));
    assert!(!lines.iter().any(|l| l.starts_with("AGENT_BIND")));
    assert!(install::script(&s, "t").contains("AGENT_TLS_CERT"));
    s.agent_url = "http://127.0.0.1:50000".parse().unwrap();
    assert!(install::config_env(&s, "t").contains(&"AGENT_BIND=127.0.0.1".to_owned()));
}
