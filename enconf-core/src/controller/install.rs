//! "Generate installation script": a POSIX shell script that installs the agent package on a
//! server, writes its `config.env` (mode 0600) and starts it.
//!
//! Every value that reaches the script is single-quoted (a `'` inside becomes `'\''`), twice
//! for the token: once as it stands in `config.env` (which the agent reads with `sh` quoting
//! rules), and once more as the `printf` argument that writes that line. No token can end a
//! quote early, expand a variable or run a command.

use crate::domain::{Host, ServerSpec};

/// The agent's package and service name.
pub const PACKAGE: &str = "netcell-webpanel-agent";
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

/// The lines of `config.env` for a server's agent.
pub fn config_env(spec: &ServerSpec, token: &str) -> Vec<String> {
    let url = spec.agent_url.url();
    let mut lines = vec![
        "# Written by the enconf installation script.".to_owned(),
        format!("AGENT_TOKEN={}", sh_quote(token)),
        format!("AGENT_PORT={}", spec.agent_url.port()),
        // The server's roles are validated names (`web,mail`): nothing to quote.
        format!("AGENT_ROLES={}", spec.roles),
    ];
    let loopback = match url.host() {
        Host::Name(n) => n.as_str() == "localhost",
        Host::Ipv4(a) => a.is_loopback(),
        Host::Ipv6(a) => a.is_loopback(),
    };
    if loopback {
        // The controller reaches it on this machine only: do not listen on other interfaces.
        lines.push("AGENT_BIND=127.0.0.1".to_owned());
    }
    lines
}

/// The installation script for the agent of the server `spec`, with its `token`.
///
/// `token` may hold any characters but NUL (which no shell word can carry; agent tokens are
/// visible ASCII). Setting `ENCONF_INSTALL_ROOT` when running the script writes the
/// configuration under that directory instead of `/` (for building images).
pub fn script(spec: &ServerSpec, token: &str) -> String {
    let https = spec.agent_url.url().scheme().as_str() == "https";
    let mut s = String::with_capacity(2048);
    s.push_str("#!/bin/sh\n");
    s.push_str(&format!(
        "# Installs the enconf agent ({PACKAGE}) on {host}\n\
         # and connects it to the controller. Run it as root on that server.\n\
         # It holds the agent's secret token: do not share it or leave it on disk.\n",
        host = spec.hostname
    ));
    s.push_str("set -eu\n\n");
    s.push_str("root=\"${ENCONF_INSTALL_ROOT:-}\"\n");
    s.push_str(
        "if [ -z \"$root\" ] && [ \"$(id -u)\" -ne 0 ]; then\n    \
         echo 'run this script as root' >&2\n    exit 1\nfi\n\n",
    );
    s.push_str(&format!(
        "if command -v apt-get >/dev/null 2>&1; then\n    \
         apt-get update\n    \
         DEBIAN_FRONTEND=noninteractive apt-get install -y {PACKAGE}\n\
         elif command -v dnf >/dev/null 2>&1; then\n    \
         dnf install -y {PACKAGE}\n\
         else\n    \
         echo 'neither apt-get nor dnf found: install the {PACKAGE} package by hand' >&2\n    \
         exit 1\nfi\n\n"
    ));
    s.push_str("umask 077\n");
    s.push_str(&format!("dir=\"$root\"{}\n", sh_quote(CONFIG_DIR)));
    s.push_str("mkdir -p \"$dir\"\n");
    s.push_str("tmp=\"$dir/.config.env.$$\"\n");
    s.push_str("printf '%s\\n' \\\n");
    for line in config_env(spec, token) {
        s.push_str("    ");
        s.push_str(&sh_quote(&line));
        s.push_str(" \\\n");
    }
    s.push_str("    >\"$tmp\"\n");
    s.push_str("chmod 0600 \"$tmp\"\n");
    s.push_str("mv -f \"$tmp\" \"$dir/config.env\"\n\n");
    if https {
        s.push_str(
            "echo 'The controller reaches this agent over HTTPS: set AGENT_TLS_CERT and \
             AGENT_TLS_KEY in config.env before it can connect.' >&2\n",
        );
    }
    s.push_str(&format!("systemctl enable --now {PACKAGE}\n"));
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
