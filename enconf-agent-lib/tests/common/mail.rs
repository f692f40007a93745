//! A private Postfix and Dovecot on loopback ports, each with its own configuration in a
//! temporary directory, for the mail certificate. Stopped when dropped; its directory, listed
//! in `/etc/postfix/main.cf` (Postfix only runs a configuration directory listed there), is
//! taken out again.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::services::{free_port, skip_or_fail, wait_for};

pub struct Mail {
    pub dir: tempfile::TempDir,
    pub smtp_port: u16,
    pub imap_port: u16,
    postfix: Child,
    dovecot: Child,
    /// The directory listed in the system's `main.cf` for this instance.
    system_main_cf: String,
}

pub fn start() -> Option<Mail> {
    for bin in [
        "/usr/sbin/postfix",
        "/usr/sbin/dovecot",
        "/usr/bin/doveconf",
    ] {
        if !Path::new(bin).exists() {
            skip_or_fail(&format!("{bin} is not installed"));
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (smtp_port, imap_port) = (free_port(), free_port());
    let dd = d.display();

    // Postfix.
    let pf = d.join("postfix");
    super::mailhost::private_postfix(&pf, smtp_port, "");
    let pf_arg = pf.display().to_string();
    super::mailhost::edit_system_main_cf(|dirs| dirs.push(pf_arg.clone()));
    let system_main_cf = pf_arg.clone();
    let postfix = Command::new("postfix")
        .args(["-c", &pf_arg, "start-fg"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Dovecot.
    let dv = d.join("dovecot");
    for sub in ["conf.d", "run", "state"] {
        std::fs::create_dir_all(dv.join(sub)).unwrap();
    }
    std::fs::write(
        dv.join("dovecot.conf"),
        format!(
            "base_dir = {dd}/dovecot/run\nstate_dir = {dd}/dovecot/state\n\
             log_path = {dd}/dovecot/dovecot.log\nprotocols = imap\nlisten = 127.0.0.1\n\
             ssl = no\nssl_dh = </usr/share/dovecot/dh.pem\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             passdb {{\n  driver = static\n  args = password=unused\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={dd}/home\n}}\n\
             !include_try {dd}/dovecot/conf.d/*.conf\n"
        ),
    )
    .unwrap();
    let dovecot = Command::new("dovecot")
        .arg("-F")
        .arg("-c")
        .arg(dv.join("dovecot.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mail = Mail {
        dir,
        smtp_port,
        imap_port,
        postfix,
        dovecot,
        system_main_cf,
    };
    wait_for("postfix and dovecot", || {
        TcpStream::connect(("127.0.0.1", smtp_port)).is_ok()
            && TcpStream::connect(("127.0.0.1", imap_port)).is_ok()
            && mail.dir.path().join("dovecot/run/master.pid").exists()
    });
    Some(mail)
}

impl Mail {
    /// The agent settings that point at these services.
    pub fn agent_settings(&self) -> Vec<(&'static str, String)> {
        let d = self.dir.path().display();
        vec![
            ("AGENT_POSTFIX_CONFIG_DIR", format!("{d}/postfix")),
            ("AGENT_DOVECOT_CONFIG", format!("{d}/dovecot/dovecot.conf")),
            ("AGENT_DOVECOT_CONF_D", format!("{d}/dovecot/conf.d")),
            (
                "AGENT_DOVECOT_PID_FILE",
                format!("{d}/dovecot/run/master.pid"),
            ),
        ]
    }

    pub fn main_cf(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix/main.cf")).unwrap()
    }

    /// The certificate Postfix presents after `STARTTLS` for `name`, trusting only `root`.
    pub fn smtp_certificate(&self, name: &str, root: &[u8]) -> Result<Vec<u8>, String> {
        smtp_certificate(self.smtp_port, name, root)
    }

    /// The certificate Dovecot presents after IMAP `STARTTLS` for `name`, trusting only `root`.
    pub fn imap_certificate(&self, name: &str, root: &[u8]) -> Result<Vec<u8>, String> {
        imap_certificate(self.imap_port, name, root)
    }
}

/// The certificate the SMTP server on `port` presents after `STARTTLS` for `name`, trusting
/// only `root`.
pub fn smtp_certificate(port: u16, name: &str, root: &[u8]) -> Result<Vec<u8>, String> {
    let stream = connect(port)?;
    {
        let mut reader = BufReader::new(&stream);
        read_reply(&mut reader, "220 ")?;
        (&stream)
            .write_all(b"EHLO test.example\r\n")
            .map_err(|e| e.to_string())?;
        read_reply(&mut reader, "250 ")?;
        (&stream)
            .write_all(b"STARTTLS\r\n")
            .map_err(|e| e.to_string())?;
        read_reply(&mut reader, "220 ")?;
    }
    handshake(stream, name, root)
}

/// The certificate the IMAP server on `port` presents after `STARTTLS` for `name`, trusting
/// only `root`.
pub fn imap_certificate(port: u16, name: &str, root: &[u8]) -> Result<Vec<u8>, String> {
    let stream = connect(port)?;
    {
        let mut reader = BufReader::new(&stream);
        read_reply(&mut reader, "* OK")?;
        (&stream)
            .write_all(b"a STARTTLS\r\n")
            .map_err(|e| e.to_string())?;
        read_reply(&mut reader, "a OK")?;
    }
    handshake(stream, name, root)
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let timeout = Some(std::time::Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads lines until one starts with `last`; an error when the server says something else
/// final (STARTTLS not offered, for one).
fn read_reply(reader: &mut impl BufRead, last: &str) -> Result<(), String> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with(last) {
            return Ok(());
        }
        let is_final = line.get(3..4) == Some(" ") || line.starts_with("a ");
        if is_final {
            return Err(format!("unexpected answer: {line}"));
        }
    }
}

fn handshake(mut stream: TcpStream, name: &str, root: &[u8]) -> Result<Vec<u8>, String> {
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(super::tls_client(root), server_name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).map_err(|e| e.to_string())?;
    }
    let chain = conn.peer_certificates().ok_or("no certificate")?;
    Ok(chain[0].as_ref().to_vec())
}

impl Drop for Mail {
    fn drop(&mut self) {
        let pf = self.dir.path().join("postfix").display().to_string();
        let _ = Command::new("postfix")
            .args(["-c", &pf, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.postfix.wait();
        let dir = self.system_main_cf.clone();
        super::mailhost::edit_system_main_cf(|dirs| dirs.retain(|d| *d != dir));
        let _ = self.dovecot.kill();
        let _ = self.dovecot.wait();
    }
}
