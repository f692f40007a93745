//! ACME HTTP-01 answers: served by nginx under the server's own names at
//! `/.well-known/acme-challenge/<token>`, and checked as served before the controller tells
//! the CA.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use enconf_core::domain::DomainName;

use crate::executor::{ApplyError, Executor, Plan};
use crate::system::System;

fn answer_path<S: System>(exec: &Executor<S>, token: &str) -> PathBuf {
    exec.layout()
        .acme_root
        .join(".well-known/acme-challenge")
        .join(token)
}

/// Serves an answer for `names` (adding the names to the panel server blocks on the HTTP port
/// when they are new there). `token` and `key_authorization` are checked base64url text.
pub fn put<S: System>(
    exec: &Executor<S>,
    names: &[DomainName],
    token: &str,
    key_authorization: &str,
) -> Result<bool, ApplyError> {
    let mut site = crate::panel::site(exec)?;
    for name in names {
        if !site.names.contains(name) {
            site.names.push(name.clone());
        }
    }
    let mut plan = Plan::default();
    if crate::panel::plan(exec, &mut plan, &site)? {
        // The CA may ask at once: answer only when no old worker is left.
        plan.settle(exec.layout().nginx_pid_file.clone());
        exec.execute(plan)?;
    }
    let path = answer_path(exec, token);
    let changed = exec.system().read(&path)?.as_deref() != Some(key_authorization.as_bytes());
    if changed {
        exec.system()
            .write_atomic(&path, key_authorization.as_bytes(), 0o644)?;
    }
    await_served(exec, names, token, key_authorization)?;
    Ok(changed)
}

/// Waits (up to 15 s) until nginx serves the answer for every name: a reload reaches new
/// workers a moment after the signal, and the CA must not ask an old one.
fn await_served<S: System>(
    exec: &Executor<S>,
    names: &[DomainName],
    token: &str,
    key_authorization: &str,
) -> Result<(), ApplyError> {
    let path = format!("/.well-known/acme-challenge/{token}");
    let deadline = Instant::now() + Duration::from_secs(15);
    for name in names {
        loop {
            let last =
                match exec
                    .system()
                    .local_http_get(exec.layout().http_port, name.as_str(), &path)
                {
                    Ok(None) => return Ok(()), // nothing to ask (sandbox)
                    Ok(Some((200, body))) if body == key_authorization.as_bytes() => break,
                    Ok(Some((status, _))) => format!("status {status}"),
                    Err(e) => e.to_string(),
                };
            if Instant::now() > deadline {
                return Err(ApplyError::Rejected {
                    validator: "http-01 self-check".into(),
                    message: format!("nginx does not serve the answer for {name}: {last}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Stops serving an answer. `false` when it was not served.
pub fn delete<S: System>(exec: &Executor<S>, token: &str) -> Result<bool, ApplyError> {
    Ok(exec.system().remove(&answer_path(exec, token))?)
}
