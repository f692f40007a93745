//! OpenDKIM: one RSA key per mail domain (made here, kept on this server, mode 0600 and owned
//! by OpenDKIM's user), the key and signing tables that name them, the two settings of
//! `opendkim.conf` that point at the tables, and `SIGUSR1`, on which OpenDKIM reads its
//! configuration and tables again.

use std::path::PathBuf;

use enconf_core::domain::DomainName;

use crate::config::Layout;
use crate::executor::Reload;
use crate::settings::{self, Syntax};

/// `SIGUSR1` to OpenDKIM.
pub fn reload(layout: &Layout) -> Reload {
    Reload::Signal {
        pid_file: layout.opendkim_pid_file.clone(),
        signal: "USR1".into(),
    }
}

pub fn key_path(layout: &Layout, domain: &DomainName) -> PathBuf {
    layout
        .opendkim_dir
        .join("keys")
        .join(format!("{domain}.private"))
}

pub fn key_table_path(layout: &Layout) -> PathBuf {
    layout.opendkim_dir.join("key.table")
}

pub fn signing_table_path(layout: &Layout) -> PathBuf {
    layout.opendkim_dir.join("signing.table")
}

/// The record name of a domain's key: `selector._domainkey.domain`.
pub fn record_name(layout: &Layout, domain: &DomainName) -> String {
    format!("{}._domainkey.{domain}", layout.dkim_selector)
}

/// The key table and the signing table for `domains` (each with its key).
pub fn tables(layout: &Layout, domains: &[DomainName]) -> (String, String) {
    let mut keys = String::new();
    let mut signing = String::new();
    for d in domains {
        let name = record_name(layout, d);
        keys.push_str(&format!(
            "{name} {d}:{}:{}\n",
            layout.dkim_selector,
            key_path(layout, d).display()
        ));
        signing.push_str(&format!("*@{d} {name}\n"));
    }
    (keys, signing)
}

/// `opendkim.conf` pointing at the agent's tables, the rest kept.
pub fn conf(layout: &Layout, text: &str) -> String {
    settings::set(
        text,
        Syntax::Opendkim,
        &[
            (
                "KeyTable",
                format!("file:{}", key_table_path(layout).display()),
            ),
            (
                "SigningTable",
                format!("refile:{}", signing_table_path(layout).display()),
            ),
        ],
        "the DKIM keys of the mail domains",
    )
}

/// Postfix's name for the milter socket `opendkim.conf` sets (`inet:8891@127.0.0.1` →
/// `inet:127.0.0.1:8891`, `local:/run/opendkim/opendkim.sock` → `unix:/run/…`); `None` when
/// there is none or it holds characters a `main.cf` value must not.
pub fn milter(text: &str) -> Option<String> {
    let socket = settings::get(text, Syntax::Opendkim, "Socket")?;
    if !socket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-' | ':' | '@'))
    {
        return None;
    }
    if let Some(path) = socket.strip_prefix("local:") {
        return path.starts_with('/').then(|| format!("unix:{path}"));
    }
    let rest = socket
        .strip_prefix("inet:")
        .or_else(|| socket.strip_prefix("inet4:"))?;
    let (port, host) = match rest.split_once('@') {
        Some((port, host)) => (port, host),
        None => (rest, "127.0.0.1"),
    };
    port.parse::<u16>().ok()?;
    Some(format!("inet:{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milter_sockets_in_postfix_terms() {
        assert_eq!(
            milter("Socket inet:8891@127.0.0.1\n").as_deref(),
            Some("inet:127.0.0.1:8891")
        );
        assert_eq!(
            milter("Socket inet:12301\n").as_deref(),
            Some("inet:127.0.0.1:12301")
        );
        assert_eq!(
            milter("Socket local:/run/opendkim/opendkim.sock\n").as_deref(),
            Some("unix:/run/opendkim/opendkim.sock")
        );
        assert_eq!(milter("Syslog yes\n"), None);
        assert_eq!(milter("Socket inet:8891@host, evil\n"), None);
    }
}
