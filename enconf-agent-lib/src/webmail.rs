//! Webmail: Roundcube (Debian's package) at a path of the panel's HTTPS server block, logging
//! in over this server's own IMAP. The path is the server's `roundcube_path`; with none, nothing
//! is served there and the pool is gone. A module of its own, like the panel's names: it is the
//! server's, not an account's.

use enconf_core::domain::UrlPath;

use crate::executor::{ApplyError, Executor, Plan};
use crate::render::{WEBMAIL_POOL_FILE, webmail_pool};
use crate::system::System;

/// The key of Roundcube's settings the agent manages: the IMAP server it logs in to.
const IMAP_HOST: &str = "$config['imap_host']";

/// Roundcube's settings with the IMAP host set to this server's own IMAP on `port`; every other
/// line kept.
pub fn roundcube_conf(text: &str, port: u16) -> String {
    let line = format!("{IMAP_HOST} = [\"127.0.0.1:{port}\"]; // enconf: this server's IMAP");
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    let mut done = false;
    for l in text.lines() {
        if l.trim_start().starts_with(IMAP_HOST) {
            if !done {
                out.push_str(&line);
                out.push('\n');
                done = true;
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Serves Roundcube at `path` (or nothing: `None`). `false` when that is already so.
pub fn put<S: System>(exec: &Executor<S>, path: Option<UrlPath>) -> Result<bool, ApplyError> {
    let layout = exec.layout();
    let system = exec.system();
    let mut site = crate::panel::site(exec)?;
    site.webmail = path.clone();
    let mut plan = Plan::default();
    crate::panel::plan(exec, &mut plan, &site)?;
    if path.is_some() {
        let Some(conf) = system.read(&layout.roundcube_config)? else {
            return Err(ApplyError::Rejected {
                validator: "webmail".into(),
                message: format!(
                    "Roundcube is not installed on this server ({} is missing)",
                    layout.roundcube_config.display()
                ),
            });
        };
        let conf = String::from_utf8(conf)
            .map_err(|_| ApplyError::State("Roundcube's settings are not text".into()))?;
        let wanted = roundcube_conf(&conf, layout.mail_imap_port);
        if wanted != conf {
            plan.write_owned(
                layout.roundcube_config.clone(),
                wanted.into_bytes(),
                0o640,
                ("root", layout.web_server_user.as_str()),
            );
        }
    }
    crate::panel::plan_app_pool(
        exec,
        &mut plan,
        WEBMAIL_POOL_FILE,
        path.is_some().then(|| webmail_pool(layout)),
    )?;
    if plan.is_empty() {
        return Ok(false);
    }
    exec.execute(plan)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_imap_host_is_set_and_the_rest_kept() {
        let debian = "<?php\n$config = [];\n$config['imap_host'] = [\"localhost:143\"];\n$config['des_key'] = 'x';\n";
        let out = roundcube_conf(debian, 10143);
        assert_eq!(
            out,
            "<?php\n$config = [];\n$config['imap_host'] = [\"127.0.0.1:10143\"]; // enconf: this server's IMAP\n$config['des_key'] = 'x';\n"
        );
        assert_eq!(roundcube_conf(&out, 10143), out);
        assert!(
            roundcube_conf("<?php\n", 143)
                .ends_with("[\"127.0.0.1:143\"]; // enconf: this server's IMAP\n")
        );
    }
}
