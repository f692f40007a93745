//! A real nginx and PHP-FPM on a loopback port, with their config, pid files and logs in a
//! temporary directory. Stopped by pid when dropped, with the test users removed.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use enconf_agent_lib::config::AgentConfig;

pub struct Services {
    pub root: tempfile::TempDir,
    pub port: u16,
    /// The port the panel's HTTPS server block listens on (free until a certificate is put).
    pub https_port: u16,
    pub php: String,
    nginx: Child,
    fpm: Child,
    users: Vec<String>,
}

/// The installed PHP-FPM version (`8.2`), if any.
fn php_version() -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir("/usr/sbin")
        .ok()?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("php-fpm")
                .map(str::to_owned)
        })
        .filter(|v| !v.is_empty())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Starts the services, or says why not: skipped on a workstation without them, a failure
/// under CI.
pub fn start() -> Option<Services> {
    let php = php_version();
    let missing = if !Path::new("/usr/sbin/nginx").exists() {
        Some("nginx is not installed")
    } else if php.is_none() {
        Some("php-fpm is not installed")
    } else if !is_root() {
        Some("not running as root (users are created)")
    } else {
        None
    };
    if let Some(why) = missing {
        skip_or_fail(why);
        return None;
    }
    let php = php.unwrap_or_default();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // The web server and the accounts' PHP workers must traverse the tree.
    std::fs::set_permissions(r, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for d in [
        "log",
        "run",
        "sites",
        "nginx-tmp",
        &format!("php/{php}/pool.d"),
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    // nginx listens on a port found free a moment before; should another test take it in
    // between, nginx exits at once: another port is tried (three times at most).
    let mut attempts = 0;
    let rd = r.display();
    let (port, nginx) = loop {
        attempts += 1;
        let port = free_port();
        std::fs::write(
            r.join("nginx.conf"),
            format!(
                "user www-data;\nworker_processes 1;\ndaemon off;\npid {rd}/nginx.pid;\n\
                 error_log {rd}/log/nginx-error.log;\nevents {{ worker_connections 512; }}\n\
                 http {{\n    include /etc/nginx/mime.types;\n    access_log off;\n\
                 client_body_temp_path {rd}/nginx-tmp/body;\n    fastcgi_temp_path {rd}/nginx-tmp/fastcgi;\n\
                 proxy_temp_path {rd}/nginx-tmp/proxy;\n    uwsgi_temp_path {rd}/nginx-tmp/uwsgi;\n\
                 scgi_temp_path {rd}/nginx-tmp/scgi;\n\
                 server {{ listen {port} default_server; return 404 \"no site\\n\"; }}\n\
                 include {rd}/sites/*.conf;\n}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            r.join("php-fpm.conf"),
            format!(
                "[global]\npid = {rd}/php/{php}/fpm.pid\nerror_log = {rd}/log/php-fpm.log\ndaemonize = no\n\
                 include = {rd}/php/{php}/pool.d/*.conf\n\
                 [enconf-test-base]\nuser = www-data\ngroup = www-data\nlisten = {rd}/run/base.sock\n\
                 pm = ondemand\npm.max_children = 1\n"
            ),
        )
        .unwrap();
        let mut nginx = Command::new("/usr/sbin/nginx")
            .args([
                "-c",
                &format!("{rd}/nginx.conf"),
                "-e",
                &format!("{rd}/log/nginx-error.log"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let ready = loop {
            // The pid file is written once nginx holds its listening sockets.
            if r.join("nginx.pid").exists() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break true;
            }
            if matches!(nginx.try_wait(), Ok(Some(_))) {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "nginx did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        if ready {
            break (port, nginx);
        }
        assert!(
            attempts < 3,
            "nginx exited at start three times (its log: {rd}/log/nginx-error.log)"
        );
    };
    let fpm = Command::new(format!("/usr/sbin/php-fpm{php}"))
        .args(["-F", "-y", &format!("{rd}/php-fpm.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let services = Services {
        root,
        port,
        https_port: free_port(),
        php: php.clone(),
        nginx,
        fpm,
        users: Vec::new(),
    };
    let r = services.root.path();
    wait_for("php-fpm", || {
        r.join(format!("php/{php}/fpm.pid")).exists() && r.join("run/base.sock").exists()
    });
    Some(services)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A missing service: skipped on a workstation (with a note), a failure under `CI=true`.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: CI must provide it (.ci/run installs it)");
    }
    eprintln!("SKIPPED: {why}");
}

/// Waits up to 15 s for `ready` (a readiness wait, not a timing assertion).
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Services {
    /// The agent configuration for these services.
    pub fn config(&self, extra: &[(&str, &str)]) -> AgentConfig {
        let port = self.port.to_string();
        let https = self.https_port.to_string();
        let mut all = vec![
            ("AGENT_HTTP_PORT", port.as_str()),
            ("AGENT_HTTPS_PORT", https.as_str()),
            ("AGENT_PHP_DEFAULT_VERSION", self.php.as_str()),
        ];
        all.extend_from_slice(extra);
        super::config(self.root.path(), &all)
    }

    /// A user name unique to this process and test, removed when the services stop.
    pub fn user(&mut self, tag: &str) -> String {
        let name = format!("enct{}{tag}", std::process::id() % 100_000);
        self.users.push(name.clone());
        name
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `GET path` with a `Host:` header: (status, body).
    pub fn get(&self, host: &str, path: &str) -> (u16, String) {
        http(self.port, "GET", path, &[("Host", host)], "")
    }

    /// Retries `get` until `want(status, body)`, for changes that reach workers asynchronously
    /// (PHP-FPM restarts its workers after a reload).
    pub fn get_until(
        &self,
        host: &str,
        path: &str,
        want: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        let start = Instant::now();
        loop {
            let (status, body) = self.get(host, path);
            if want(status, &body) || start.elapsed() > Duration::from_secs(15) {
                return (status, body);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// nginx's worker processes now.
    pub fn nginx_workers(&self) -> Vec<u32> {
        let pid = self.nginx.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Waits until the workers `before` a reload are gone. An account put returns once nginx
    /// was signalled; for about 100 ms after that the old worker still takes connections, so
    /// a test that asks twice could be answered by the new configuration, then by the old.
    pub fn wait_nginx_reloaded(&self, before: &[u32]) {
        wait_for("nginx's workers of the old configuration to go", || {
            let now = self.nginx_workers();
            !now.is_empty() && !now.iter().any(|p| before.contains(p))
        });
    }

    /// nginx's error log, for failure messages.
    pub fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.path("log/nginx-error.log")).unwrap_or_default()
    }

    /// Stops nginx (gracefully) and waits until it is gone.
    pub fn stop_nginx(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.nginx.id().to_string()])
            .status();
        let _ = self.nginx.wait();
    }

    /// `nginx -t` over the whole configuration nginx runs.
    pub fn nginx_config_ok(&self) -> Result<(), String> {
        let rd = self.root.path().display();
        let out = Command::new("/usr/sbin/nginx")
            .args([
                "-t",
                "-q",
                "-c",
                &format!("{rd}/nginx.conf"),
                "-e",
                &format!("{rd}/log/nginx-error.log"),
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for (child, signal) in [(&mut self.nginx, "-QUIT"), (&mut self.fpm, "-TERM")] {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for user in &self.users {
            let _ = Command::new("userdel")
                .args(["--force", "--remove", user])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A minimal HTTP/1.0 client: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `GET /` over TLS to nginx on `port` for `name`, trusting only `trusted` (DER): the answer
/// and the certificate presented.
pub fn https_get(port: u16, name: &str, trusted: &[u8]) -> Result<(String, Vec<u8>), String> {
    use std::io::{Read, Write};
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(super::tls_client(trusted), server_name).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(format!("GET / HTTP/1.0\r\nHost: {name}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    let chain = conn.peer_certificates().ok_or("no certificate")?;
    Ok((answer, chain[0].as_ref().to_vec()))
}

/// The certificate nginx presents for `name` on `port` (whose panel answers 404 without an
/// upstream), trusting only `trusted`.
pub fn served_certificate(port: u16, name: &str, trusted: &[u8]) -> Result<Vec<u8>, String> {
    let (answer, cert) = https_get(port, name, trusted)?;
    if !answer.starts_with("HTTP/1.1 404") {
        return Err(format!("unexpected answer: {answer}"));
    }
    Ok(cert)
}
