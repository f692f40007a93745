//! Pebble, Let's Encrypt's test CA, on loopback: its ACME listener with a certificate made
//! here, real HTTP-01 validation against a given port, and `pebble-challtestsrv` as its DNS
//! server answering 127.0.0.1 for every name. Stopped by pid when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::services::free_port;

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The certificate of Pebble's own listener, to trust for the ACME API.
    pub ca_file: PathBuf,
    ca_der: Vec<u8>,
    management_port: u16,
    children: Vec<Child>,
}

/// Starts Pebble validating HTTP-01 on `http_port`, or says why not: skipped on a
/// workstation without it, a failure under CI.
pub fn start(http_port: u16) -> Option<Pebble> {
    for bin in ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"] {
        if !Path::new(bin).exists() {
            super::services::skip_or_fail(&format!("{bin} is not installed"));
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listener =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let ca_file = d.join("pebble-listener.pem");
    std::fs::write(&ca_file, listener.cert.pem()).unwrap();
    std::fs::write(
        d.join("pebble-listener.key"),
        listener.signing_key.serialize_pem(),
    )
    .unwrap();
    let (acme_port, management_port, dns_port) = (free_port(), free_port(), free_port());
    std::fs::write(
        d.join("pebble.json"),
        serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": ca_file,
            "privateKey": d.join("pebble-listener.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }})
        .to_string(),
    )
    .unwrap();
    let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
    let dns = Command::new("/usr/bin/pebble-challtestsrv")
        .args([
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{}", free_port()),
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ])
        .stdout(log("challtestsrv.log"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pebble = Command::new("/usr/bin/pebble")
        .arg("-config")
        .arg(d.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log("pebble.log"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pebble = Pebble {
        directory: format!("https://127.0.0.1:{acme_port}/dir"),
        ca_file,
        ca_der: listener.cert.der().to_vec(),
        management_port,
        children: vec![dns, pebble],
        dir,
    };
    super::services::wait_for("pebble", || {
        TcpStream::connect(("127.0.0.1", acme_port)).is_ok()
            && TcpStream::connect(("127.0.0.1", management_port)).is_ok()
    });
    Some(pebble)
}

impl Pebble {
    /// The root that signs the certificates Pebble issues (new at every start), DER.
    pub fn issuing_root(&self) -> Vec<u8> {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn =
            rustls::ClientConnection::new(super::tls_client(&self.ca_der), name).unwrap();
        let mut sock = TcpStream::connect(("127.0.0.1", self.management_port)).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let (_, pem) = text.split_once("\r\n\r\n").unwrap();
        enconf_core::ssl::cert::parse_chain(pem).unwrap()[0].to_vec()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
