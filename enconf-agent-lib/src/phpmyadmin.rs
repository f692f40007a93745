//! phpMyAdmin (Debian's package) at a path of the panel's HTTPS server block, logging in to
//! this server's MariaDB over its socket. The path is the server's `phpmyadmin_path`; with
//! none, nothing is served there and the pool is gone. A module of its own, like webmail: it
//! is the server's, not an account's.

use enconf_core::domain::UrlPath;

use crate::executor::{ApplyError, Executor, Plan};
use crate::render::{PHPMYADMIN_POOL_FILE, phpmyadmin_pool};
use crate::system::System;

/// The settings file the agent writes into phpMyAdmin's `conf.d` (read after Debian's own).
pub const CONFIG_FILE: &str = "enconf.php";

/// phpMyAdmin's settings: one server, this MariaDB over `socket`, cookie logins, never root.
/// The socket path is a checked configuration value (no quote can be in it).
pub fn config(socket: &std::path::Path) -> String {
    format!(
        "<?php\n// Managed by enconf: phpMyAdmin logs in to this server's MariaDB over its socket.\n\
         // Do not edit: the agent rewrites this file.\n\
         $cfg['Servers'][1]['host'] = 'localhost';\n\
         $cfg['Servers'][1]['socket'] = '{}';\n\
         $cfg['Servers'][1]['connect_type'] = 'socket';\n\
         $cfg['Servers'][1]['auth_type'] = 'cookie';\n\
         $cfg['Servers'][1]['AllowRoot'] = false;\n\
         $cfg['Servers'][1]['AllowNoPassword'] = false;\n",
        socket.display()
    )
}

/// Serves phpMyAdmin at `path` (or nothing: `None`). `false` when that is already so.
pub fn put<S: System>(exec: &Executor<S>, path: Option<UrlPath>) -> Result<bool, ApplyError> {
    let layout = exec.layout();
    let system = exec.system();
    let mut site = crate::panel::site(exec)?;
    site.phpmyadmin = path.clone();
    let mut plan = Plan::default();
    crate::panel::plan(exec, &mut plan, &site)?;
    if path.is_some() {
        if system
            .read(&layout.phpmyadmin_dir.join("index.php"))?
            .is_none()
        {
            return Err(ApplyError::Rejected {
                validator: "phpmyadmin".into(),
                message: format!(
                    "phpMyAdmin is not installed on this server ({} is missing)",
                    layout.phpmyadmin_dir.join("index.php").display()
                ),
            });
        }
        let file = layout.phpmyadmin_conf_d.join(CONFIG_FILE);
        let wanted = config(&layout.db_socket).into_bytes();
        if system.read(&file)?.as_deref() != Some(&wanted[..]) {
            plan.write_owned(
                file,
                wanted,
                0o640,
                ("root", layout.web_server_user.as_str()),
            );
        }
    }
    crate::panel::plan_app_pool(
        exec,
        &mut plan,
        PHPMYADMIN_POOL_FILE,
        path.is_some().then(|| phpmyadmin_pool(layout)),
    )?;
    if plan.is_empty() {
        return Ok(false);
    }
    exec.execute(plan)?;
    Ok(true)
}
