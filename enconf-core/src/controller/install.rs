//! "Generate installation script": a POSIX shell script that adds the agent's apt source to a
//! server, installs the agent package, writes its `config.env` (mode 0600) and starts it.
//!
//! Every value that reaches the script is single-quoted (a `'` inside becomes `'\''`), twice
//! for the token: once as it stands in `config.env` (which the agent reads with `sh` quoting
//! rules), and once more as the `printf` argument that writes that line. No token can end a
//! quote early, expand a variable or run a command.

use crate::domain::{Role, ServerSpec};

/// The agent's package and service name.
pub const PACKAGE: &str = crate::protocol::agent::AGENT_PACKAGE;
/// Where the agent reads its configuration.
pub const CONFIG_DIR: &str = "/etc/netcell-webpanel-agent";

/// `s` as one `sh` word, quoted so that nothing in it is special.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Where the agent's HTTPS certificate, key and the controller's authority are written.
pub const TLS_DIR: &str = "/etc/netcell-webpanel-agent/tls";

/// The agent's HTTPS files, issued by the controller's authority
/// ([`AgentCa`](crate::ssl::ca::AgentCa)), that the script writes to [`TLS_DIR`].
pub struct AgentTlsFiles<'a> {
    /// The agent's certificate, then the authority's.
    pub chain_pem: &'a str,
    pub key_pem: &'a str,
    /// The authority's certificate.
    pub ca_pem: &'a str,
    /// Whether the agent requires the controller's client certificate (mutual TLS): the
    /// script sets `AGENT_TLS_CLIENT_CA` to the authority's certificate.
    pub mutual: bool,
}

impl std::fmt::Debug for AgentTlsFiles<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTlsFiles").finish_non_exhaustive()
    }
}

/// The lines of `config.env` for a server's agent; with `tls`, it serves HTTPS with the
/// certificate and key the script writes to [`TLS_DIR`].
pub fn config_env(spec: &ServerSpec, token: &str, tls: bool) -> Vec<String> {
    let mut lines = vec![
        "# Written by the enconf installation script.".to_owned(),
        format!("AGENT_TOKEN={}", sh_quote(token)),
        format!("AGENT_PORT={}", spec.agent_url.port()),
        // The server's roles are validated names (`web,mail`): nothing to quote.
        format!("AGENT_ROLES={}", spec.roles),
    ];
    if spec.agent_url.is_loopback() {
        // The controller reaches it on this machine only: do not listen on other interfaces.
        lines.push("AGENT_BIND=127.0.0.1".to_owned());
    }
    if tls {
        lines.push(format!("AGENT_TLS_CERT={TLS_DIR}/agent.pem"));
        lines.push(format!("AGENT_TLS_KEY={TLS_DIR}/agent.key"));
    }
    lines
}

/// Where the agent's apt source is written on a server.
pub const SOURCES_FILE: &str = crate::protocol::agent::AGENT_SOURCES_FILE;

/// The Debian packages of a role's services (the agent package `Suggests` them all; a server
/// gets those of its roles).
pub fn role_packages(role: Role) -> &'static [&'static str] {
    match role {
        Role::Web => &["nginx", "php-fpm"],
        Role::Mail => &[
            "postfix",
            "postfix-lmdb",
            "dovecot-imapd",
            "dovecot-lmtpd",
            "opendkim",
            "opendkim-tools",
        ],
        Role::Dns => &["pdns-server", "pdns-backend-sqlite3"],
        Role::Db => &["mariadb-server"],
        Role::Backup => &["restic", "rclone", "rsync"],
    }
}

/// Lines of `sh` that write `lines` to `$path` (a variable the caller set) through a
/// temporary file in the same directory, with `mode`, only when the content differs; they set
/// `changed=yes` when they wrote.
fn write_if_changed(s: &mut String, path_var: &str, mode: &str, lines: &[String]) {
    s.push_str(&format!("tmp=\"${path_var}.new.$$\"\n"));
    s.push_str("printf '%s\\n' \\\n");
    for line in lines {
        s.push_str("    ");
        s.push_str(&sh_quote(line));
        s.push_str(" \\\n");
    }
    s.push_str("    >\"$tmp\"\n");
    s.push_str(&format!(
        "if cmp -s \"$tmp\" \"${path_var}\" 2>/dev/null; then\n    rm -f \"$tmp\"\n\
         else\n    chmod {mode} \"$tmp\"\n    mv -f \"$tmp\" \"${path_var}\"\n    changed=yes\nfi\n"
    ));
}

/// The installation script for the agent of the server `spec`, with its `token`, for
/// apt-based systems (Debian, Ubuntu).
///
/// With `sources` (the agent repository's deb822 `.sources` text, keys inline), the script
/// adds that source first; without, the package must come from a source the server already
/// has. Then it installs the package and the services of the server's roles
/// ([`role_packages`]) that are not installed, writes `config.env` (mode
/// 0600), and enables and starts the service, restarting it when its configuration changed.
/// Run again, it changes nothing that is already as it should be.
///
/// `token` may hold any characters but NUL (which no shell word can carry; agent tokens are
/// visible ASCII). Setting `ENCONF_INSTALL_ROOT` when running the script writes the files
/// under that directory instead of `/` (for building images).
pub fn script(
    spec: &ServerSpec,
    token: &str,
    sources: Option<&str>,
    tls: Option<&AgentTlsFiles<'_>>,
) -> String {
    let https = spec.agent_url.url().scheme().as_str() == "https";
    let mut s = String::with_capacity(4096);
    s.push_str("#!/bin/sh\n");
    s.push_str(&format!(
        "# Installs the enconf agent ({PACKAGE}) on {host}\n\
         # and connects it to the controller. Run it as root on that server; running it again\n\
         # changes nothing that is already in place.\n\
         # It holds the agent's secret token: do not share it or leave it on disk.\n",
        host = spec.hostname
    ));
    s.push_str("set -eu\n\n");
    s.push_str("root=\"${ENCONF_INSTALL_ROOT:-}\"\n");
    s.push_str(
        "if [ -z \"$root\" ] && [ \"$(id -u)\" -ne 0 ]; then\n    \
         echo 'run this script as root' >&2\n    exit 1\nfi\n",
    );
    s.push_str(&format!(
        "if ! command -v apt-get >/dev/null 2>&1; then\n    \
         echo 'apt-get not found: the {PACKAGE} package is for Debian and Ubuntu' >&2\n    \
         exit 1\nfi\n\n"
    ));
    if let Some(text) = sources {
        s.push_str("# The agent's apt repository, its signing keys inline.\n");
        s.push_str(&format!("sources=\"$root\"{}\n", sh_quote(SOURCES_FILE)));
        s.push_str("mkdir -p \"${sources%/*}\"\n");
        s.push_str("changed=no\n");
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        write_if_changed(&mut s, "sources", "0644", &lines);
        s.push('\n');
    }
    // The agent and its roles' services, those not installed yet (installed ones are left as
    // they are: no upgrade behind the administrator's back).
    let mut packages = vec![PACKAGE];
    for role in Role::ALL {
        if spec.roles.contains(role) {
            packages.extend(role_packages(role));
        }
    }
    s.push_str("missing=\n");
    s.push_str(&format!("for p in {}; do\n", packages.join(" ")));
    s.push_str(
        "    dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q ' installed$' || \
         missing=\"$missing $p\"\n\
         done\n",
    );
    s.push_str(
        "if [ -n \"$missing\" ]; then\n    \
         apt-get update\n    \
         # shellcheck disable=SC2086 # one word per package\n    \
         DEBIAN_FRONTEND=noninteractive apt-get install -y $missing\n\
         fi\n\n",
    );
    s.push_str("umask 077\n");
    s.push_str(&format!("dir=\"$root\"{}\n", sh_quote(CONFIG_DIR)));
    s.push_str("mkdir -p \"$dir\"\n");
    s.push_str("config=\"$dir/config.env\"\n");
    s.push_str("changed=no\n");
    let mut config = config_env(spec, token, tls.is_some());
    if tls.as_ref().is_some_and(|f| f.mutual) {
        config.push(format!("AGENT_TLS_CLIENT_CA={TLS_DIR}/ca.pem"));
    }
    write_if_changed(&mut s, "config", "0600", &config);
    if let Some(files) = tls {
        s.push_str("# The agent's HTTPS certificate and key, issued by the controller.\n");
        s.push_str(&format!("tls=\"$root\"{}\n", sh_quote(TLS_DIR)));
        s.push_str("mkdir -p \"$tls\"\n");
        for (name, mode, pem) in [
            ("agent.pem", "0644", files.chain_pem),
            ("agent.key", "0600", files.key_pem),
            ("ca.pem", "0644", files.ca_pem),
        ] {
            s.push_str(&format!("file=\"$tls/{name}\"\n"));
            let lines: Vec<String> = pem.lines().map(str::to_owned).collect();
            write_if_changed(&mut s, "file", mode, &lines);
        }
    }
    s.push('\n');
    if https && tls.is_none() {
        s.push_str(
            "echo 'The controller reaches this agent over HTTPS: set AGENT_TLS_CERT and \
             AGENT_TLS_KEY in config.env before it can connect.' >&2\n",
        );
    }
    s.push_str(&format!(
        "if [ \"$changed\" = yes ]; then\n    \
         systemctl enable {PACKAGE}\n    \
         systemctl restart {PACKAGE}\n\
         else\n    \
         systemctl enable --now {PACKAGE}\n\
         fi\n"
    ));
    s.push_str(&format!("echo '{PACKAGE} is installed and running.'\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("abc"), "'abc'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(x)`y`\n"), "'$(x)`y`\n'");
    }
}
