//! The installation script, run for real by `sh` (dash here) and `bash --posix` with stand-ins
//! for `apt-get` and `systemctl`: whatever the token holds, the script parses, writes
//! `config.env` with mode 0600, and that file gives back the token byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// A stand-in that records its call; `apt-get install` marks the package installed, which
/// `dpkg-query` then reports.
fn stub(dir: &Path, name: &str) {
    let path = dir.join(name);
    let body = match name {
        "dpkg-query" => "[ -e \"$STUB_LOG.installed\" ] && printf 'install ok installed'\nexit 0\n",
        "apt-get" => "case \"$*\" in install*) touch \"$STUB_LOG.installed\" ;; esac\n",
        _ => "",
    };
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name} $*\" >> \"$STUB_LOG\"\n{body}"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `script` with `shell` under a fresh root; returns the root's config.env path.
fn run(shell: &[&str], script: &str, dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["apt-get", "systemctl", "dpkg-query"] {
        stub(&bin, name);
    }
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

/// The calls of the script asking dpkg whether each package is installed.
fn queried(packages: &[&str]) -> String {
    packages
        .iter()
        .map(|p| format!("dpkg-query -W -f=${{Status}} {p}\n"))
        .collect()
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
            let script = install::script(&spec("web1", "web,db"), token, None, None);
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
            let packages = [
                "netcell-webpanel-agent",
                "nginx",
                "php-fpm",
                "mariadb-server",
            ];
            assert_eq!(
                calls,
                format!(
                    "{}apt-get update\napt-get install -y {}\n\
                     systemctl enable netcell-webpanel-agent\nsystemctl restart netcell-webpanel-agent\n",
                    queried(&packages),
                    packages.join(" ")
                )
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
fn each_role_brings_its_services() {
    let script = install::script(&spec("all", "web,mail,dns,db,backup"), "t", None, None);
    let line = script.lines().find(|l| l.starts_with("for p in ")).unwrap();
    assert_eq!(
        line,
        "for p in netcell-webpanel-agent nginx php-fpm postfix postfix-lmdb dovecot-imapd \
         dovecot-lmtpd opendkim opendkim-tools pdns-server pdns-backend-sqlite3 mariadb-server \
         restic rclone rsync; do"
    );
    let script = install::script(&spec("dns1", "dns"), "t", None, None);
    assert!(
        script.contains("for p in netcell-webpanel-agent pdns-server pdns-backend-sqlite3; do")
    );
}

#[test]
fn the_port_and_bind_come_from_the_agent_url() {
    let mut s = spec("web1", "web");
    s.agent_url = "https://web1.example.com:50443".parse().unwrap();
    let lines = install::config_env(&s, "t", false);
    assert!(lines.contains(&"AGENT_PORT=50443".to_owned()));
    assert!(!lines.iter().any(|l| l.starts_with("AGENT_BIND")));
    assert!(install::script(&s, "t", None, None).contains("AGENT_TLS_CERT"));
    s.agent_url = "http://127.0.0.1:50000".parse().unwrap();
    assert!(install::config_env(&s, "t", false).contains(&"AGENT_BIND=127.0.0.1".to_owned()));
}

const SOURCES: &str = "Types: deb\nURIs: https://repo.example.com/agent\nSuites: stable\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n bWRhdGE=\n -----END PGP PUBLIC KEY BLOCK-----\n";

#[test]
fn the_source_is_added_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec("web1", "web");
    let script = install::script(&spec, "token-0123456789abcdef", Some(SOURCES), None);
    let config = run(&["sh"], &script, dir.path());
    let root = dir.path().join("root");
    let sources = root.join(install::SOURCES_FILE.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(&sources).unwrap(), SOURCES);
    let mode = std::fs::metadata(&sources).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let calls = dir.path().join("calls");
    let packages = ["netcell-webpanel-agent", "nginx", "php-fpm"];
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!(
            "{}apt-get update\napt-get install -y {}\nsystemctl enable netcell-webpanel-agent\n\
             systemctl restart netcell-webpanel-agent\n",
            queried(&packages),
            packages.join(" ")
        )
    );

    // Again: the package is installed, the files are as they should be: nothing is written,
    // installed or restarted.
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.modified().unwrap())
    };
    let before = (stamp(&sources), stamp(&config));
    std::fs::remove_file(&calls).unwrap();
    run(&["sh"], &script, dir.path());
    assert_eq!((stamp(&sources), stamp(&config)), before);
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!(
            "{}systemctl enable --now netcell-webpanel-agent\n",
            queried(&packages)
        )
    );
    let entries = |p: &Path| std::fs::read_dir(p.parent().unwrap()).unwrap().count();
    assert_eq!(
        (entries(&sources), entries(&config)),
        (1, 1),
        "no temporary file left"
    );

    // A new token (the server's record changed): the config is rewritten and the agent restarted.
    std::fs::remove_file(&calls).unwrap();
    let script = install::script(&spec, "token-new-0123456789ab", Some(SOURCES), None);
    run(&["sh"], &script, dir.path());
    assert_eq!(stamp(&sources), before.0);
    assert_eq!(sourced(&config, "AGENT_TOKEN"), b"token-new-0123456789ab");
    assert!(
        std::fs::read_to_string(&calls)
            .unwrap()
            .ends_with("systemctl restart netcell-webpanel-agent\n")
    );
}
