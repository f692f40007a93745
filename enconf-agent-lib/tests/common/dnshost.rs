//! A real PowerDNS (authoritative, gsqlite3 backend with DNSSEC) on a loopback port, its
//! configuration, database and control socket in a temporary directory; stopped by pid when
//! dropped. No API or web server: the agent drives it with `pdnsutil` and `pdns_control`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::services::{free_port, skip_or_fail, wait_for};

const SCHEMA: &str = "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql";

pub struct DnsHost {
    pub root: tempfile::TempDir,
    pub port: u16,
    server: Child,
}

impl DnsHost {
    /// Starts one, or says why not (a failure under `CI=true`).
    pub fn start() -> Option<Self> {
        let missing = [
            "/usr/sbin/pdns_server",
            "/usr/bin/pdnsutil",
            "/usr/bin/dig",
            "/usr/bin/sqlite3",
            SCHEMA,
        ]
        .into_iter()
        .find(|p| !Path::new(p).exists());
        if let Some(p) = missing {
            skip_or_fail(&format!(
                "{p} is missing (PowerDNS with gsqlite3, dnsutils, sqlite3)"
            ));
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let db = r.join("pdns.sqlite3");
        let status = Command::new("sqlite3")
            .arg(&db)
            .stdin(std::fs::File::open(SCHEMA).unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "sqlite3 schema");
        let port = free_port();
        std::fs::write(
            r.join("pdns.conf"),
            format!(
                "launch=gsqlite3\ngsqlite3-database={}\ngsqlite3-dnssec=yes\n\
                 local-address=127.0.0.1\nlocal-port={port}\nsocket-dir={}\n\
                 disable-syslog=yes\nsecurity-poll-suffix=\n",
                db.display(),
                r.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(r.join("pdns.log")).unwrap();
        let server = Command::new("/usr/sbin/pdns_server")
            .arg(format!("--config-dir={}", r.display()))
            .args(["--daemon=no", "--guardian=no"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let host = Self { root, port, server };
        wait_for("pdns_server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && host.root.path().join("pdns.pid").exists()
        });
        Some(host)
    }

    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// What the agent's configuration needs to drive this instance.
    pub fn agent_settings(&self, zones: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("AGENT_ROLES", "dns".to_owned()),
            ("AGENT_PDNS_CONFIG_DIR", self.dir().display().to_string()),
            (
                "AGENT_PDNS_PID_FILE",
                self.dir().join("pdns.pid").display().to_string(),
            ),
            ("AGENT_DNS_ZONES_DIR", zones.display().to_string()),
        ]
    }

    /// `dig +short` of `name` `kind` against this instance, one answer per line, sorted.
    pub fn dig(&self, name: &str, kind: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args(["+short", "+norecurse", "+time=2", "+tries=2"])
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args([name, kind])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.starts_with(';'))
            .collect();
        lines.sort();
        lines
    }

    /// The full answer section of `name` `kind` with DNSSEC records asked for.
    pub fn dig_dnssec(&self, name: &str, kind: &str) -> String {
        let out = Command::new("dig")
            .args([
                "+dnssec",
                "+norecurse",
                "+noall",
                "+answer",
                "+time=2",
                "+tries=2",
            ])
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args([name, kind])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The SOA serial this instance answers for `zone`.
    pub fn serial(&self, zone: &str) -> Option<u32> {
        self.dig(zone, "SOA")
            .first()?
            .split_ascii_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }

    /// `pdnsutil` on this instance.
    pub fn pdnsutil(&self, args: &[&str]) -> String {
        let out = Command::new("pdnsutil")
            .arg(format!("--config-dir={}", self.dir().display()))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pdns_control` on this instance (its caches).
    pub fn control(&self, args: &[&str]) {
        let status = Command::new("pdns_control")
            .arg(format!("--config-dir={}", self.dir().display()))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pdns_control {args:?}");
    }

    pub fn log(&self) -> PathBuf {
        self.dir().join("pdns.log")
    }
}

impl Drop for DnsHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
