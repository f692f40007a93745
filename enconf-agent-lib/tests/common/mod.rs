//! Helpers shared by the agent's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod dnshost;
pub mod mail;
pub mod mailhost;
pub mod mariadb;
pub mod pebble;
pub mod services;

use std::collections::BTreeMap;
use std::path::Path;

use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::config::{AgentConfig, Layout};
use enconf_agent_lib::system::Sandbox;
use enconf_core::domain::{AccountSpec, Domains, PhpSettings, PhpSettingsRaw, UserName};

pub const TOKEN: &str = "test-token-0123456789";

/// A configuration whose every directory is under `root`; `extra` overrides keys.
pub fn config(root: &Path, extra: &[(&str, &str)]) -> AgentConfig {
    let r = root.display();
    let backup_port = services::free_port();
    let mut values: BTreeMap<String, String> = [
        ("AGENT_TOKEN", TOKEN.to_owned()),
        ("AGENT_STATE_DIR", format!("{r}/state")),
        ("AGENT_NGINX_SITES_DIR", format!("{r}/sites")),
        ("AGENT_NGINX_PID_FILE", format!("{r}/nginx.pid")),
        ("AGENT_NGINX_LOG_DIR", format!("{r}/log")),
        (
            "AGENT_PHP_FPM_POOL_DIR",
            format!("{r}/php/{{version}}/pool.d"),
        ),
        (
            "AGENT_PHP_FPM_PID_FILE",
            format!("{r}/php/{{version}}/fpm.pid"),
        ),
        ("AGENT_PHP_FPM_SOCKET_DIR", format!("{r}/run")),
        ("AGENT_WEB_ROOT_BASE", format!("{r}/www")),
        ("AGENT_HTTP_PORT", "8080".to_owned()),
        ("AGENT_CERT_DIR", format!("{r}/ssl")),
        ("AGENT_ACME_ROOT", format!("{r}/acme")),
        ("AGENT_MARIADB_CONFIG", format!("{r}/mariadb/90-enconf.cnf")),
        // A backup server's endpoint on a port of its own (tests run side by side).
        ("AGENT_BACKUP_LISTEN", format!("127.0.0.1:{backup_port}")),
        (
            "AGENT_BACKUP_URL",
            format!("http://127.0.0.1:{backup_port}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    AgentConfig::from_values(&values).unwrap()
}

pub fn layout(root: &Path) -> Layout {
    config(root, &[]).layout
}

pub fn spec(user: &str, domains: &[&str]) -> AccountSpec {
    AccountSpec {
        username: UserName::parse(user).unwrap(),
        domains: Domains::parse("domains", domains).unwrap(),
        php_version: None,
        php: PhpSettings::default(),
        roles: AccountSpec::web_only(),
        zones: Vec::new(),
        db: Default::default(),
        backup: None,
    }
}

pub fn with_memory(mut spec: AccountSpec, mb: u32) -> AccountSpec {
    let raw = PhpSettingsRaw {
        memory_limit_mb: Some(mb),
        ..Default::default()
    };
    spec.php = PhpSettings::from_raw(raw, "php.").unwrap();
    spec
}

/// Every file under `dir` with its content, for before/after comparisons.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                );
            }
        }
    }
    out
}

/// A started sandbox applier for `/srv` under `dir/box`, whose nginx and PHP-FPM 8.2 and 8.3
/// are installed and "run" (their pid files exist: 100, 200, 300). Commands of the start are
/// cleared.
pub fn sandbox_applier(dir: &Path) -> Applier<Sandbox> {
    let sandbox = Sandbox::new(dir.join("box"));
    for (pid_file, pid) in [
        ("/srv/nginx.pid", "100"),
        ("/srv/php/8.2/fpm.pid", "200"),
        ("/srv/php/8.3/fpm.pid", "300"),
        // PHP-FPM 8.2 and 8.3 are installed.
        ("/usr/sbin/php-fpm8.2", ""),
        ("/usr/sbin/php-fpm8.3", ""),
    ] {
        let host = sandbox.host_path(Path::new(pid_file));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, format!("{pid}\n")).unwrap();
    }
    let layout = layout(Path::new("/srv"));
    enconf_agent_lib::stand_ins::install_mail(&sandbox, &layout).unwrap();
    let applier = Applier::new(layout, sandbox);
    applier.start().unwrap();
    applier.system().clear_commands();
    applier
}

/// A TLS client configuration that trusts only the certificate `root` (DER).
pub fn tls_client(root: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// A self-signed certificate for `localhost`, written to `dir/cert.pem` and `dir/key.pem`.
pub fn localhost_cert(
    dir: &Path,
) -> (
    rcgen::CertifiedKey<rcgen::KeyPair>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (ck, cert, key)
}
