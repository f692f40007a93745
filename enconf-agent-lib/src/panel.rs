//! The server's own names in nginx: the panel's server blocks (ACME answers on the HTTP port;
//! with a certificate, HTTPS proxying to the panel), shared by the certificate and ACME
//! modules, and their record in `<state_dir>/panel.json`.

use std::path::PathBuf;

use crate::executor::{ApplyError, Executor, Plan};
use crate::render::{self, PANEL_CONF_FILE, PanelSite};
use crate::services::nginx::{self, NginxCheck};
use crate::system::System;

fn record_path<S: System>(exec: &Executor<S>) -> PathBuf {
    exec.layout().state_dir.join("panel.json")
}

/// The server block file of the server's own names.
pub fn vhost_path<S: System>(exec: &Executor<S>) -> PathBuf {
    exec.layout().nginx_sites_dir.join(PANEL_CONF_FILE)
}

/// The server's own names as installed (none before the first certificate or challenge).
pub fn site<S: System>(exec: &Executor<S>) -> Result<PanelSite, ApplyError> {
    match exec.system().read(&record_path(exec))? {
        None => Ok(PanelSite::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApplyError::State(format!("panel record: {e}"))),
    }
}

/// Adds to `plan` the server blocks for `site` and their record, checked by nginx, when they
/// differ from what is installed. `true` when they do.
pub fn plan<S: System>(
    exec: &Executor<S>,
    plan: &mut Plan,
    site: &PanelSite,
) -> Result<bool, ApplyError> {
    let vhost_path = vhost_path(exec);
    let vhost = render::panel_vhost(exec.layout(), site).into_bytes();
    let record = serde_json::to_vec_pretty(site).map_err(|e| ApplyError::State(e.to_string()))?;
    let record_path = record_path(exec);
    let system = exec.system();
    if system.read(&vhost_path)?.as_deref() == Some(&vhost[..])
        && system.read(&record_path)?.as_deref() == Some(&record[..])
    {
        return Ok(false);
    }
    plan.check(NginxCheck {
        vhosts: [vhost_path.clone()].into(),
    });
    plan.write(vhost_path, vhost, 0o644);
    plan.write(record_path, record, 0o600);
    plan.reload(nginx::reload(exec.layout()));
    Ok(true)
}

/// Adds to `plan` the PHP-FPM pool `file` of a server-wide application served in the panel's
/// HTTPS block (webmail, phpMyAdmin) as `text`, or its removal (`None`), checked and reloaded.
pub fn plan_app_pool<S: System>(
    exec: &Executor<S>,
    plan: &mut Plan,
    file: &str,
    text: Option<String>,
) -> Result<(), ApplyError> {
    let layout = exec.layout();
    let version = layout.php_default_version;
    let pool = layout.php_fpm_pool_dir(version).join(file);
    let installed = exec.system().read(&pool)?;
    match text {
        Some(text) => {
            let text = text.into_bytes();
            if installed.as_deref() != Some(&text[..]) {
                plan.write(pool.clone(), text, 0o644);
                plan.check(crate::services::php_fpm::FpmCheck {
                    version,
                    pools: vec![pool],
                });
                plan.reload(crate::services::php_fpm::reload(layout, version));
            }
        }
        None if installed.is_some() => {
            plan.remove(pool);
            plan.reload(crate::services::php_fpm::reload(layout, version));
        }
        None => {}
    }
    Ok(())
}
