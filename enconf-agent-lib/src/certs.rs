//! The server's own certificates: the panel certificate (the hostname; nginx serves it) and
//! the mail certificate (the mail hostname; Postfix and Dovecot use it). A pair is written with
//! the key 0600, the services pointed at it, checked on staged copies, reloaded, and rolled
//! back like any plan.

use enconf_core::domain::DomainName;
use enconf_core::ssl::CertKind;

use crate::executor::{ApplyError, Executor, Plan};
use crate::render::{self, PanelSite};
use crate::services::dovecot::{self, DovecotCheck};
use crate::services::nginx::{self, NginxCheck};
use crate::services::postfix;
use crate::system::System;

/// Installs a certificate and key for the server's own `names` (the first is the hostname).
/// A panel certificate goes into the panel's HTTPS server block; a mail certificate into
/// Postfix's and Dovecot's TLS settings. `false` when the same certificate is installed.
pub fn put<S: System>(
    exec: &Executor<S>,
    kind: CertKind,
    names: &[DomainName],
    chain_pem: &str,
    key_pem: &str,
) -> Result<bool, ApplyError> {
    let (cert_path, key_path) = render::cert_paths(exec.layout(), kind.as_str());
    let system = exec.system();
    let mut plan = Plan::default();
    let pair_changed = system.read(&cert_path)?.as_deref() != Some(chain_pem.as_bytes())
        || system.read(&key_path)?.as_deref() != Some(key_pem.as_bytes());
    if pair_changed {
        plan.write(cert_path, chain_pem.as_bytes().to_vec(), 0o644);
        plan.write(key_path, key_pem.as_bytes().to_vec(), 0o600);
    }
    match kind {
        CertKind::Mail => plan_mail_tls(exec, &mut plan, pair_changed)?,
        CertKind::Panel => {
            let site = PanelSite {
                names: names.to_vec(),
                tls: true,
                ..crate::panel::site(exec)?
            };
            if !crate::panel::plan(exec, &mut plan, &site)? && pair_changed {
                // A new certificate under the same server blocks: nginx must read it.
                plan.check(NginxCheck {
                    vhosts: [crate::panel::vhost_path(exec)].into(),
                });
                plan.reload(nginx::reload(exec.layout()));
            }
        }
    }
    if plan.is_empty() {
        return Ok(false);
    }
    exec.execute(plan)?;
    Ok(true)
}

/// Points the installed mail services at `mail.crt` / `mail.key`: Postfix's `main.cf` (the
/// `smtpd_tls_*` settings the agent manages, the rest kept as it is) and a Dovecot settings
/// file. A service whose configuration is not there is not installed and is skipped; with
/// neither, the certificate is refused.
fn plan_mail_tls<S: System>(
    exec: &Executor<S>,
    plan: &mut Plan,
    pair_changed: bool,
) -> Result<(), ApplyError> {
    let layout = exec.layout();
    let (cert, key) = render::cert_paths(layout, CertKind::Mail.as_str());
    let main_cf = layout.postfix_config_dir.join("main.cf");
    let postfix = exec.system().read(&main_cf)?;
    let dovecot = exec.system().read(&layout.dovecot_config)?.is_some();
    if postfix.is_none() && !dovecot {
        return Err(ApplyError::Rejected {
            validator: "mail".into(),
            message: "neither Postfix nor Dovecot is installed on this server".into(),
        });
    }
    if let Some(old) = postfix {
        let old = String::from_utf8(old)
            .map_err(|_| ApplyError::State(format!("{} is not text", main_cf.display())))?;
        let new = render::postfix_tls(&old, &cert, &key);
        let cf_changed = new != old;
        if cf_changed {
            plan.write(main_cf, new.into_bytes(), 0o644);
        }
        if pair_changed || cf_changed {
            plan.reload(postfix::reload(layout));
        }
    }
    if dovecot {
        let path = layout.dovecot_conf_d.join(render::DOVECOT_TLS_FILE);
        let text = render::dovecot_tls(&cert, &key).into_bytes();
        let changed = exec.system().read(&path)?.as_deref() != Some(&text[..]);
        if changed || pair_changed {
            // In the plan even when the same, so that the new pair is validated with it.
            plan.write(path.clone(), text, 0o644);
            plan.check(DovecotCheck { snippet: path });
            plan.reload(dovecot::reload(layout));
        }
    }
    Ok(())
}
