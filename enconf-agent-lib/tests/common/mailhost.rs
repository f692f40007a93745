//! A private mail server for the mail role's tests: Postfix (with lmdb maps), Dovecot (IMAP
//! and LMTP) and OpenDKIM on loopback ports, each configured in a temporary directory as
//! Debian's packages would leave it, without any of the role's settings: the agent adds those
//! (`Applier::start`), then the daemons are started. Stopped by pid when dropped; the line
//! added to `/etc/postfix/main.cf` (Postfix only runs a configuration directory listed there)
//! is removed again.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::services::{free_port, skip_or_fail, wait_for};

const SYSTEM_MAIN_CF: &str = "/etc/postfix/main.cf";

pub struct MailHost {
    pub dir: tempfile::TempDir,
    pub smtp_port: u16,
    pub imap_port: u16,
    pub lmtp_port: u16,
    pub policy_port: u16,
    pub auth_port: u16,
    pub milter_port: u16,
    daemons: Vec<(&'static str, Child)>,
    /// The directory this instance listed in the system's `main.cf`.
    system_main_cf: Option<String>,
}

/// The programs the tests need; `None` (with the reason given to `skip_or_fail`) when one is
/// missing.
fn installed() -> bool {
    for path in [
        "/usr/sbin/postfix",
        "/usr/sbin/postmap",
        "/usr/lib/postfix/postfix-lmdb.so",
        "/usr/sbin/dovecot",
        "/usr/bin/doveconf",
        "/usr/lib/dovecot/lmtp",
        "/usr/lib/dovecot/imap",
        "/usr/sbin/opendkim",
    ] {
        if !Path::new(path).exists() {
            skip_or_fail(&format!("{path} is not installed"));
            return false;
        }
    }
    let dkim = Command::new("/usr/bin/python3")
        .args(["-c", "import dkim"])
        .status()
        .is_ok_and(|s| s.success());
    if !dkim {
        skip_or_fail("python3-dkim is not installed");
        return false;
    }
    true
}

/// Writes the services' own configuration (no mail role yet).
pub fn prepare() -> Option<MailHost> {
    if !installed() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let host = MailHost {
        smtp_port: free_port(),
        imap_port: free_port(),
        lmtp_port: free_port(),
        policy_port: free_port(),
        auth_port: free_port(),
        milter_port: free_port(),
        dir,
        daemons: Vec::new(),
        system_main_cf: None,
    };
    let dd = d.display();

    // Postfix, as a private instance.
    private_postfix(
        &d.join("postfix"),
        host.smtp_port,
        "mynetworks = 127.0.0.1/32\nsmtpd_tls_security_level = may\n",
    );

    // Dovecot: IMAP and LMTP, no user database (the role brings its own).
    let dv = d.join("dovecot");
    for sub in ["conf.d", "run", "state"] {
        std::fs::create_dir_all(dv.join(sub)).unwrap();
    }
    std::fs::write(
        dv.join("dovecot.conf"),
        format!(
            "base_dir = {dd}/dovecot/run\nstate_dir = {dd}/dovecot/state\n\
             log_path = {dd}/dovecot/dovecot.log\nprotocols = imap lmtp\nlisten = 127.0.0.1\n\
             ssl = no\nssl_dh = </usr/share/dovecot/dh.pem\ndisable_plaintext_auth = no\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             !include_try {dd}/dovecot/conf.d/*.conf\n",
            imap = host.imap_port,
        ),
    )
    .unwrap();

    // OpenDKIM, as a milter on a loopback port. Its keys live under /tmp here, which it calls
    // unsafe (world-writable parent) unless told otherwise.
    let dk = d.join("opendkim");
    std::fs::create_dir_all(&dk).unwrap();
    std::fs::write(
        dk.join("opendkim.conf"),
        format!(
            "Syslog no\nUMask 007\nCanonicalization relaxed/simple\nMode sv\n\
             Socket inet:{port}@127.0.0.1\nPidFile {dd}/opendkim/opendkim.pid\n\
             RequireSafeKeys false\nOversignHeaders From\n",
            port = host.milter_port,
        ),
    )
    .unwrap();
    Some(host)
}

/// Changes the directories the system's `main.cf` lists in its one
/// `alternate_config_directories` line (instances of one test binary, or of two, may overlap:
/// Postfix reads only the last of several lines). Replaced, not rewritten in place: postmap
/// reads it at any moment.
pub fn edit_system_main_cf(edit: impl FnOnce(&mut Vec<String>)) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const KEY: &str = "alternate_config_directories";
    let text = std::fs::read_to_string(SYSTEM_MAIN_CF).unwrap_or_default();
    let mut dirs = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        match line
            .strip_prefix(KEY)
            .and_then(|r| r.trim_start().strip_prefix('='))
        {
            Some(value) => dirs.extend(
                value
                    .split([' ', ','])
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
            ),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    edit(&mut dirs);
    if !dirs.is_empty() {
        out.push_str(&format!("{KEY} = {}\n", dirs.join(" ")));
    }
    let tmp = format!("{SYSTEM_MAIN_CF}.enconf-test.{}", std::process::id());
    std::fs::write(&tmp, out).unwrap();
    std::fs::rename(&tmp, SYSTEM_MAIN_CF).unwrap();
}

/// Writes the configuration of a private Postfix in `pf` (its queue and data under it, chroot
/// off, SMTP on 127.0.0.1:`smtp_port`, its log in `pf/maillog`), with `extra` settings.
pub fn private_postfix(pf: &Path, smtp_port: u16, extra: &str) {
    for sub in ["spool", "data"] {
        std::fs::create_dir_all(pf.join(sub)).unwrap();
    }
    chown("postfix", &pf.join("data"));
    let p = pf.display();
    let top = pf.parent().unwrap().display();
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {p}/spool\n\
             data_directory = {p}/data\nmail_owner = postfix\n\
             myhostname = mx.enconf-test.example\ninet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\nmaillog_file = {p}/maillog\n\
             maillog_file_prefixes = {top}\nmydestination =\n{extra}"
        ),
    )
    .unwrap();
    let master = std::fs::read_to_string("/etc/postfix/master.cf").unwrap();
    let master: String = master
        .lines()
        .map(|l| {
            if l.starts_with("smtp ") && l.contains(" inet ") {
                format!("127.0.0.1:{smtp_port} inet n - n - - smtpd\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(pf.join("master.cf"), master).unwrap();
    let status = Command::new("postconf")
        .args(["-c", &p.to_string(), "-F", "*/*/chroot = n"])
        .status()
        .unwrap();
    assert!(status.success());
}

fn chown(owner: &str, path: &Path) {
    let status = Command::new("chown").arg(owner).arg(path).status().unwrap();
    assert!(status.success());
}

impl MailHost {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The agent settings for these services.
    pub fn agent_settings(&self) -> Vec<(&'static str, String)> {
        let d = self.dir.path().display();
        vec![
            ("AGENT_ROLES", "mail".into()),
            ("AGENT_POSTFIX_CONFIG_DIR", format!("{d}/postfix")),
            ("AGENT_POSTFIX_MAP_DIR", format!("{d}/postfix/enconf")),
            ("AGENT_DOVECOT_CONFIG", format!("{d}/dovecot/dovecot.conf")),
            ("AGENT_DOVECOT_CONF_D", format!("{d}/dovecot/conf.d")),
            (
                "AGENT_DOVECOT_PID_FILE",
                format!("{d}/dovecot/run/master.pid"),
            ),
            ("AGENT_MAIL_USERS_DIR", format!("{d}/dovecot/users")),
            ("AGENT_VMAIL_DIR", format!("{d}/vmail")),
            ("AGENT_MAIL_LMTP_PORT", self.lmtp_port.to_string()),
            ("AGENT_MAIL_POLICY_PORT", self.policy_port.to_string()),
            ("AGENT_MAIL_AUTH_PORT", self.auth_port.to_string()),
            (
                "AGENT_OPENDKIM_CONFIG",
                format!("{d}/opendkim/opendkim.conf"),
            ),
            ("AGENT_OPENDKIM_DIR", format!("{d}/opendkim/enconf")),
            (
                "AGENT_OPENDKIM_PID_FILE",
                format!("{d}/opendkim/opendkim.pid"),
            ),
        ]
    }

    /// Starts the three daemons (after the agent's set-up wrote the role's settings).
    pub fn start(&mut self) {
        let d = self.dir.path().to_path_buf();
        let pf = d.join("postfix").display().to_string();
        edit_system_main_cf(|dirs| dirs.push(pf.clone()));
        self.system_main_cf = Some(pf.clone());
        let quiet = |c: &mut Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut opendkim = Command::new("opendkim");
        opendkim
            .args(["-f", "-x"])
            .arg(d.join("opendkim/opendkim.conf"));
        quiet(&mut opendkim);
        self.daemons.push(("opendkim", opendkim.spawn().unwrap()));
        let mut dovecot = Command::new("dovecot");
        dovecot
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot/dovecot.conf"));
        quiet(&mut dovecot);
        self.daemons.push(("dovecot", dovecot.spawn().unwrap()));
        let mut postfix = Command::new("postfix");
        postfix.args(["-c", &pf, "start-fg"]);
        quiet(&mut postfix);
        self.daemons.push(("postfix", postfix.spawn().unwrap()));
        let ports = [
            self.smtp_port,
            self.imap_port,
            self.lmtp_port,
            self.policy_port,
            self.auth_port,
            self.milter_port,
        ];
        wait_for("postfix, dovecot and opendkim", || {
            ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
                && d.join("dovecot/run/master.pid").exists()
                && d.join("opendkim/opendkim.pid").exists()
                && d.join("postfix/spool/pid/master.pid").exists()
        });
    }

    /// Whether each daemon still runs.
    pub fn running(&mut self) -> Vec<(&'static str, bool)> {
        self.daemons
            .iter_mut()
            .map(|(name, child)| (*name, child.try_wait().unwrap().is_none()))
            .collect()
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for log in ["postfix/maillog", "dovecot/dovecot.log"] {
            out.push_str(&format!("--- {log}\n"));
            out.push_str(&std::fs::read_to_string(self.path(log)).unwrap_or_default());
        }
        out
    }

    /// An SMTP session from the internet (a client outside `mynetworks`: 127.0.0.2).
    pub fn smtp(&self) -> Smtp {
        self.smtp_from([127, 0, 0, 2])
    }

    /// An SMTP session from `source`; 127.0.0.1 is the server's own network (it may relay,
    /// and OpenDKIM signs what it sends).
    pub fn smtp_from(&self, source: [u8; 4]) -> Smtp {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::from((source, 0)).into())
            .unwrap();
        socket
            .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], self.smtp_port)).into())
            .unwrap();
        let stream: TcpStream = socket.into();
        let timeout = Some(std::time::Duration::from_secs(10));
        stream.set_read_timeout(timeout).unwrap();
        stream.set_write_timeout(timeout).unwrap();
        let mut s = Smtp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        let (code, text) = s.reply();
        assert_eq!(code, 220, "{text}");
        let (code, text) = s.command("EHLO client.example");
        assert_eq!(code, 250, "{text}");
        s
    }

    /// Sends one message from the internet; the code and text of the first refusal, or of
    /// the final answer.
    pub fn send(&self, from: &str, to: &[&str], message: &str) -> (u16, String) {
        self.send_from([127, 0, 0, 2], from, to, message)
    }

    pub fn send_from(
        &self,
        source: [u8; 4],
        from: &str,
        to: &[&str],
        message: &str,
    ) -> (u16, String) {
        let mut s = self.smtp_from(source);
        let (code, text) = s.command(&format!("MAIL FROM:<{from}>"));
        if code != 250 {
            return (code, text);
        }
        for rcpt in to {
            let (code, text) = s.command(&format!("RCPT TO:<{rcpt}>"));
            if code != 250 {
                return (code, text);
            }
        }
        let (code, text) = s.command("DATA");
        if code != 354 {
            return (code, text);
        }
        let mut body = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                body.push('.');
            }
            body.push_str(line);
            body.push_str("\r\n");
        }
        body.push_str(".\r\n");
        (&s.stream).write_all(body.as_bytes()).unwrap();
        let answer = s.reply();
        let _ = s.command("QUIT");
        answer
    }

    /// An IMAP session; `Err` with the server's answer when the login is refused.
    pub fn imap(&self, user: &str, password: &str) -> Result<Imap, String> {
        let stream = connect(self.imap_port);
        let mut i = Imap {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
            tag: 0,
        };
        let mut greeting = String::new();
        i.reader.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let (ok, text) = i.command(&format!("LOGIN {} {}", quote(user), quote(password)));
        if ok { Ok(i) } else { Err(text) }
    }

    /// The messages of `user`'s INBOX, waiting up to 15 s for at least `count`.
    pub fn inbox(&self, user: &str, password: &str, count: usize) -> Vec<String> {
        let mut found = Vec::new();
        wait_for(&format!("{count} message(s) for {user}"), || {
            let mut imap = self.imap(user, password).unwrap();
            found = imap.messages();
            found.len() >= count
        });
        found
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let timeout = Some(std::time::Duration::from_secs(10));
    stream.set_read_timeout(timeout).unwrap();
    stream.set_write_timeout(timeout).unwrap();
    stream
}

pub struct Smtp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// The code and text of a (multi-line) reply.
    pub fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "closed");
            text.push_str(&line);
            if line.get(3..4) != Some("-") {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }

    pub fn command(&mut self, line: &str) -> (u16, String) {
        (&self.stream)
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

pub struct Imap {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    tag: u32,
}

impl Imap {
    /// Sends a command; whether it ended `OK`, and everything the server said.
    pub fn command(&mut self, line: &str) -> (bool, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        (&self.stream)
            .write_all(format!("{tag} {line}\r\n").as_bytes())
            .unwrap();
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "closed");
            // A literal {n} is followed by n octets.
            if let Some(n) = line
                .trim_end()
                .strip_suffix('}')
                .and_then(|l| l.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                text.push_str(&line);
                let mut buf = vec![0; n];
                std::io::Read::read_exact(&mut self.reader, &mut buf).unwrap();
                text.push_str(&String::from_utf8_lossy(&buf));
                continue;
            }
            text.push_str(&line);
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return (rest.starts_with("OK"), text);
            }
        }
    }

    /// Every message of INBOX, whole.
    pub fn messages(&mut self) -> Vec<String> {
        let (ok, text) = self.command("SELECT INBOX");
        assert!(ok, "{text}");
        let exists = text
            .lines()
            .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
            .unwrap_or(0usize);
        (1..=exists)
            .map(|n| {
                let (ok, text) = self.command(&format!("FETCH {n} BODY.PEEK[]"));
                assert!(ok, "{text}");
                let start = text.find("}\r\n").unwrap() + 3;
                let end = text.rfind(")\r\n").unwrap();
                text[start..end].to_owned()
            })
            .collect()
    }
}

impl Drop for MailHost {
    fn drop(&mut self) {
        let pf = self.path("postfix").display().to_string();
        if self.daemons.iter().any(|(n, _)| *n == "postfix") {
            let _ = Command::new("postfix")
                .args(["-c", &pf, "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for (name, child) in &mut self.daemons {
            if *name != "postfix" {
                // TERM, so that Dovecot stops its children too.
                let _ = Command::new("kill").arg(child.id().to_string()).status();
            }
            let _ = child.wait();
        }
        if let Some(dir) = &self.system_main_cf {
            edit_system_main_cf(|dirs| dirs.retain(|d| d != dir));
        }
    }
}
