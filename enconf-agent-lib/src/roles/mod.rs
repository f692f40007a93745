//! What each role does for a hosting account on this server. A role is a module implementing
//! [`AccountRole`]: it turns its part of an account into a [`Plan`](crate::executor::Plan), and
//! the [`Applier`](crate::apply::Applier) runs the plans of every role of a request through the
//! one [`Executor`].
//!
//! Adding a role is adding a module here and a line in [`modules`]; see ARCHITECTURE.md.

pub mod backup;
pub mod db;
pub mod dns;
pub mod mail;
pub mod web;

use enconf_core::domain::{AccountSpec, PhpVersion, Role, RoleSet};
use serde::{Deserialize, Serialize};

use crate::executor::{ApplyError, Executor, Plan};
use crate::system::System;

/// What the agent records of an installed account, in `<state_dir>/accounts/<user>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The account as last put (its `roles` are those this server serves for it).
    pub spec: AccountSpec,
    /// The version the pool runs (the spec's, or the default when it was installed).
    pub php_version: PhpVersion,
}

/// Where the records of installed accounts are.
pub fn accounts_dir(layout: &crate::config::Layout) -> std::path::PathBuf {
    layout.state_dir.join("accounts")
}

/// The record of the installed account `user` ([`Installed`], JSON).
pub fn record_path(layout: &crate::config::Layout, user: &str) -> std::path::PathBuf {
    accounts_dir(layout).join(format!("{user}.json"))
}

/// What becomes of an account's data (Maildirs, databases) when a role goes from a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFate {
    /// Kept (mail aside, databases with their users locked) until a backup of it exists.
    Keep,
    /// Removed: a final backup of it exists (the controller made one first).
    Remove,
}

/// Whether a role's services answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    /// Every service of the role runs.
    pub ok: bool,
    /// Each service the role needs, and whether it runs.
    pub services: Vec<(String, bool)>,
}

/// One role of an account on this server.
pub trait AccountRole<S: System>: Send + Sync + std::fmt::Debug {
    fn role(&self) -> Role;

    /// Adds to `plan` what `account` needs for this role, given what is installed for it
    /// (`None`: nothing yet). `false` when what is installed is already that.
    fn plan_put(
        &self,
        exec: &Executor<S>,
        account: &AccountSpec,
        installed: Option<&Installed>,
        plan: &mut Plan,
    ) -> Result<bool, ApplyError>;

    /// Adds to `plan` the removal of the role's configuration for an installed account.
    fn plan_remove(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        plan: &mut Plan,
    ) -> Result<(), ApplyError>;

    /// After a put went live: what may only change once the services no longer use it (the
    /// mail role keeps aside the Maildirs of domains the account no longer has).
    fn put_applied(
        &self,
        _exec: &Executor<S>,
        _account: &AccountSpec,
        _installed: Option<&Installed>,
    ) -> Result<(), ApplyError> {
        Ok(())
    }

    /// After a removal went live: what may only go once nothing uses it any more (the web
    /// role's system user and home); the account's stored data goes or stays as `data` says.
    fn removed(
        &self,
        _exec: &Executor<S>,
        _installed: &Installed,
        _data: DataFate,
    ) -> Result<(), ApplyError> {
        Ok(())
    }

    /// Whether the role's services answer.
    fn status(&self, exec: &Executor<S>) -> RoleStatus;
}

/// The roles an agent can serve, each with its module.
pub fn modules<S: System>(exec: &Executor<S>, served: RoleSet) -> Vec<Box<dyn AccountRole<S>>> {
    let mut out: Vec<Box<dyn AccountRole<S>>> = Vec::new();
    for role in served.iter() {
        match role {
            Role::Web => out.push(Box::new(web::Web::new(exec.layout()))),
            Role::Mail => out.push(Box::new(mail::Mail)),
            Role::Dns => out.push(Box::new(dns::Dns)),
            Role::Db => out.push(Box::new(db::Db)),
            Role::Backup => out.push(Box::new(backup::Backup)),
        }
    }
    out
}

/// The daemons a role runs on, by pid file, and whether each runs.
pub fn status_of<S: System>(exec: &Executor<S>, role: Role) -> RoleStatus {
    let layout = exec.layout();
    let daemons: Vec<(&str, &std::path::Path)> = match role {
        Role::Web => vec![("nginx", &layout.nginx_pid_file)],
        Role::Mail => vec![("dovecot", &layout.dovecot_pid_file)],
        Role::Dns => vec![("pdns", &layout.pdns_pid_file)],
        Role::Db => vec![("mariadb", &layout.mariadb_pid_file)],
        Role::Backup => Vec::new(),
    };
    let mut services: Vec<(String, bool)> = daemons
        .into_iter()
        .map(|(name, pid_file)| {
            let running = exec.system().daemon_running(pid_file).unwrap_or(false);
            (name.to_owned(), running)
        })
        .collect();
    if role == Role::Web {
        let v = layout.php_default_version;
        let running = exec
            .system()
            .daemon_running(&layout.php_fpm_pid_file(v))
            .unwrap_or(false);
        services.push((format!("php-fpm{v}"), running));
    }
    RoleStatus {
        ok: services.iter().all(|(_, ok)| *ok),
        services,
    }
}
