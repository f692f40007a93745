//! A real MariaDB on a loopback port and a unix socket, its data in a temporary directory;
//! stopped by pid when dropped. Customers connect with the `mariadb` client, from any
//! loopback address (`--bind-address`): a web server "at 127.0.0.3" is a client bound there.
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

pub struct MariaDb {
    pub root: tempfile::TempDir,
    pub port: u16,
    server: Child,
    /// Relays whose connections to MariaDB come from a given loopback address, by address.
    relays: std::sync::Mutex<std::collections::HashMap<String, u16>>,
}

/// A customer's connection failed: MariaDB's error number and message.
#[derive(Debug)]
pub struct Refused(pub String);

impl MariaDb {
    /// Starts one, or says why not (a failure under `CI=true`).
    pub fn start() -> Option<Self> {
        let missing = [
            "/usr/sbin/mariadbd",
            "/usr/bin/mariadb-install-db",
            "/usr/bin/mariadb",
        ]
        .into_iter()
        .find(|p| !Path::new(p).exists());
        if let Some(p) = missing {
            skip_or_fail(&format!("{p} is missing (mariadb-server)"));
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // The socket is reached by phpMyAdmin's pool too, which runs as the web server's user.
        std::fs::set_permissions(r, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let data = r.join("data");
        // Its own temporary directory, for the bootstrap server too (install-db passes options
        // it does not know on to it): internal temporary tables never share /tmp with other
        // instances or tests. In /tmp, a bootstrap once lost its `tmp_user_sys` table's file.
        let tmp = r.join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let out = Command::new("/usr/bin/mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=socket"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--user=root", "--skip-test-db"])
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let server = Command::new("/usr/sbin/mariadbd")
            .args(["--no-defaults", "--user=root"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", r.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", r.join("mysqld.pid").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--log-error={}", r.join("error.log").display()))
            .args(["--skip-name-resolve", "--innodb-buffer-pool-size=32M"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let host = Self {
            root,
            port,
            server,
            relays: Default::default(),
        };
        wait_for("mariadbd", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && host.socket().exists()
                && host.root.path().join("mysqld.pid").exists()
        });
        Some(host)
    }

    pub fn socket(&self) -> PathBuf {
        self.root.path().join("mysqld.sock")
    }

    /// What the agent's configuration needs to drive this instance.
    pub fn agent_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AGENT_ROLES", "db".to_owned()),
            ("AGENT_DB_SOCKET", self.socket().display().to_string()),
            (
                "AGENT_MARIADB_PID_FILE",
                self.root.path().join("mysqld.pid").display().to_string(),
            ),
        ]
    }

    /// Runs `sql` as root over the socket; the rows, tab-separated.
    pub fn admin(&self, sql: &str) -> Vec<String> {
        let out = Command::new("/usr/bin/mariadb")
            .arg(format!("--socket={}", self.socket().display()))
            .args([
                "-uroot",
                "--batch",
                "--raw",
                "--skip-column-names",
                "-e",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every database and every user@host, for "nothing changed" checks.
    pub fn inventory(&self) -> (Vec<String>, Vec<String>) {
        (
            self.admin("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1"),
            self.admin("SELECT CONCAT(User, '@', Host) FROM mysql.user ORDER BY 1"),
        )
    }

    /// The `mariadb` client as a customer: over TCP from `from` (a loopback address, bound
    /// as the connection's source) or over the socket (`None`). `--skip-reconnect`: a killed
    /// session stays dead.
    pub fn client(&self, from: Option<&str>, user: &str, password: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/mariadb");
        cmd.args([
            "--no-defaults",
            "--batch",
            "--unbuffered",
            "--skip-column-names",
            "--skip-reconnect",
        ])
        .arg(format!("--user={user}"))
        // Test passwords only; the environment keeps them off the command line.
        .env("MYSQL_PWD", password);
        match from {
            Some(ip) => cmd
                .args(["--protocol=TCP", "--host=127.0.0.1"])
                .arg(format!("--port={}", self.relay(ip))),
            None => cmd.arg(format!("--socket={}", self.socket().display())),
        };
        cmd
    }

    /// A port on 127.0.0.1 whose connections reach MariaDB from `from` (the `mariadb` client
    /// cannot bind a source address itself).
    fn relay(&self, from: &str) -> u16 {
        let mut relays = self.relays.lock().unwrap();
        if let Some(port) = relays.get(from) {
            return *port;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let source: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
        let target: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let upstream =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .unwrap();
                upstream.bind(&source.into()).unwrap();
                if upstream.connect(&target.into()).is_err() {
                    continue;
                }
                let upstream: std::net::TcpStream = upstream.into();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        relays.insert(from.to_owned(), port);
        port
    }

    /// Runs `sql` as a customer (see [`MariaDb::client`]).
    pub fn customer(
        &self,
        from: Option<&str>,
        user: &str,
        password: &str,
        sql: &str,
    ) -> Result<(), Refused> {
        let out = self
            .client(from, user, password)
            .args(["-e", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(Refused(String::from_utf8_lossy(&out.stderr).into_owned()))
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // Its data is thrown away with the directory: no need for a clean shutdown.
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
