//! The agent's operations: what a request asks, split by role and module, each planned by its
//! module and run through the one [`Executor`].
//!
//! - Accounts: each role the account has on this server ([`crate::roles`]) plans its part; a
//!   role the account no longer has here plans its removal; the plans of a whole batch run as
//!   one (one validation per service, one reload). The account's record
//!   (`<state_dir>/accounts/<user>.json`) goes in the same plan.
//! - The server's own certificates ([`crate::certs`]) and ACME answers ([`crate::acme`]).
//!
//! A request for a role this agent does not serve is refused before anything is planned.

use std::path::PathBuf;

use enconf_core::domain::MailAddress;
use enconf_core::domain::{AccountSpec, DomainName, Role, RoleSet, UserName};
use enconf_core::protocol::agent::AgentAccount;
use enconf_core::protocol::mail::{AgentMail, AliasPut, DkimRecord, MailPut, MailboxPut};
use enconf_core::ssl::CertKind;

use crate::config::Layout;
pub use crate::executor::ApplyError;
use crate::executor::{Executor, Plan};
use crate::render::{self, HTTP_CONF_FILE};
use crate::roles::{self, AccountRole, Installed, RoleStatus};
use crate::services::nginx::{self, NginxCheck};
use crate::system::System;

/// The engine behind the agent's operations.
#[derive(Debug)]
pub struct Applier<S: System> {
    exec: Executor<S>,
    served: RoleSet,
    roles: Vec<Box<dyn AccountRole<S>>>,
}

impl<S: System> Applier<S> {
    /// An applier serving the web role (see [`Applier::with_roles`]).
    pub fn new(layout: Layout, system: S) -> Self {
        let exec = Executor::new(layout, system);
        Self {
            // Every role's module, so that what a role left behind can be removed even after
            // the agent stopped serving it.
            roles: roles::modules(&exec, RoleSet::SINGLE_SERVER),
            exec,
            served: AccountSpec::web_only(),
        }
    }

    /// Serves `roles` (`AGENT_ROLES`) instead.
    pub fn with_roles(mut self, roles: RoleSet) -> Self {
        self.served = roles;
        self
    }

    pub fn system(&self) -> &S {
        self.exec.system()
    }

    pub fn layout(&self) -> &Layout {
        self.exec.layout()
    }

    /// The roles this agent serves.
    pub fn served(&self) -> RoleSet {
        self.served
    }

    /// Each served role and whether its services answer.
    pub fn status(&self) -> Vec<(Role, RoleStatus)> {
        self.roles
            .iter()
            .filter(|m| self.served.contains(m.role()))
            .map(|m| (m.role(), m.status(&self.exec)))
            .collect()
    }

    /// The PHP versions this server offers (`None` when it does not serve the web role).
    pub fn php_versions(&self) -> Option<Vec<enconf_core::domain::PhpVersion>> {
        self.served
            .contains(Role::Web)
            .then(|| roles::web::php_versions(&self.exec))
    }

    fn accounts_dir(&self) -> PathBuf {
        roles::accounts_dir(self.layout())
    }

    fn record_path(&self, user: &UserName) -> PathBuf {
        roles::record_path(self.layout(), user.as_str())
    }

    fn module(&self, role: Role) -> Result<&dyn AccountRole<S>, ApplyError> {
        self.roles
            .iter()
            .find(|m| m.role() == role)
            .map(|m| &**m)
            .ok_or(ApplyError::RoleNotServed { role })
    }

    /// Start-up: undo an apply a crash interrupted, adopt the users of records made before the
    /// agent kept ownership records, and make sure the http-level file is current.
    pub fn start(&self) -> Result<(), ApplyError> {
        self.exec.recover()?;
        self.adopt_legacy_users()?;
        if self.served.contains(Role::Mail)
            && let Err(e) = self.setup_mail()
        {
            // The agent serves its other roles; mail operations try again and say why.
            tracing::warn!(error = %e, "the mail role is not ready");
        }
        if self.served.contains(Role::Db)
            && let Err(e) = crate::services::mariadb::setup(&self.exec)
        {
            tracing::warn!(error = %e, "the db role is not ready");
        }
        let layout = self.layout();
        // The server-wide server block (ACME answers, the panel): on a web server, and on any
        // other whose nginx runs; a mail-only server without nginx starts without it.
        if !self.served.contains(Role::Web)
            && !self
                .system()
                .daemon_running(&layout.nginx_pid_file)
                .unwrap_or(false)
        {
            tracing::info!(
                "nginx does not run and the web role is not served: no server-wide server block"
            );
            return Ok(());
        }
        let path = layout.nginx_sites_dir.join(HTTP_CONF_FILE);
        let wanted = render::http_conf(layout).into_bytes();
        if self.system().read(&path)?.as_deref() != Some(&wanted[..]) {
            let mut plan = Plan::default();
            plan.write(path, wanted, 0o644);
            // Validated with no vhost: the file must parse on its own.
            plan.check(NginxCheck::default());
            plan.reload(nginx::reload(layout));
            self.exec.execute(plan)?;
        }
        Ok(())
    }

    /// Restores the files of an interrupted apply, if the journal says there was one.
    pub fn recover(&self) -> Result<bool, ApplyError> {
        self.exec.recover()
    }

    /// Records as the agent's the users of web accounts installed by releases that kept no
    /// record of the users they created, when they have the shape the agent gives its users.
    fn adopt_legacy_users(&self) -> Result<(), ApplyError> {
        let owners = self.exec.owners();
        for installed in self.installed()? {
            if !installed.spec.roles.contains(Role::Web) {
                continue;
            }
            let user = &installed.spec.username;
            let home = render::AccountPaths::new(self.layout(), user, installed.php_version).home;
            if !owners.adopt_legacy(user, &home)? {
                tracing::warn!(%user, "the account's user was not created by enconf: it is left alone");
            }
        }
        Ok(())
    }

    fn load_installed(&self, user: &UserName) -> Result<Option<(Vec<u8>, Installed)>, ApplyError> {
        let Some(bytes) = self.system().read(&self.record_path(user))? else {
            return Ok(None);
        };
        let installed = serde_json::from_slice(&bytes)
            .map_err(|e| ApplyError::State(format!("record of {user}: {e}")))?;
        Ok(Some((bytes, installed)))
    }

    /// Every installed account, by user name.
    fn installed(&self) -> Result<Vec<Installed>, ApplyError> {
        let mut out = Vec::new();
        for name in self.system().list(&self.accounts_dir())? {
            let Some(user) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(user) = UserName::parse(user) else {
                tracing::warn!(file = name, "ignoring a record with an invalid user name");
                continue;
            };
            if let Some((_, installed)) = self.load_installed(&user)? {
                out.push(installed);
            }
        }
        Ok(out)
    }

    /// Creates or updates accounts, all in one apply: each role an account has here plans its
    /// part, each role it no longer has here plans its removal. Returns, per spec, whether
    /// anything changed. A role this agent does not serve refuses the whole request.
    pub fn put(&self, specs: &[AccountSpec]) -> Result<Vec<bool>, ApplyError> {
        self.put_with(specs, roles::DataFate::Keep)
    }

    /// [`Self::put`], where the roles a put takes away from an account lose their data as
    /// `data` says (`Remove`: a migration copied it to the role's new server).
    pub fn put_with(
        &self,
        specs: &[AccountSpec],
        data: roles::DataFate,
    ) -> Result<Vec<bool>, ApplyError> {
        for spec in specs {
            if let Some(role) = spec.roles.difference(self.served).iter().next() {
                return Err(ApplyError::RoleNotServed { role });
            }
        }
        let started = std::time::Instant::now();
        let mut plan = Plan::default();
        let mut changed = Vec::with_capacity(specs.len());
        let mut gone: Vec<(Role, Installed)> = Vec::new();
        let mut olds: Vec<Option<Installed>> = Vec::with_capacity(specs.len());
        for spec in specs {
            let old = self.load_installed(&spec.username)?;
            olds.push(old.as_ref().map(|(_, i)| i.clone()));
            let old_installed = old.as_ref().map(|(_, i)| i);
            let mut any = false;
            for role in spec.roles.iter() {
                any |= self
                    .module(role)?
                    .plan_put(&self.exec, spec, old_installed, &mut plan)?;
            }
            if let Some(old) = old_installed {
                for role in old.spec.roles.difference(spec.roles).iter() {
                    self.module(role)?.plan_remove(&self.exec, old, &mut plan)?;
                    gone.push((role, old.clone()));
                    any = true;
                }
            }
            let record = serde_json::to_vec_pretty(&Installed {
                spec: spec.clone(),
                php_version: self.php_version(spec),
            })
            .map_err(|e| ApplyError::State(e.to_string()))?;
            if old.as_ref().is_none_or(|(bytes, _)| *bytes != record) {
                plan.write(self.record_path(&spec.username), record, 0o600);
                any = true;
            }
            changed.push(any);
        }
        let planned = started.elapsed();
        self.exec.execute(plan)?;
        let executed = started.elapsed();
        for (spec, old) in specs.iter().zip(&olds) {
            for role in spec.roles.iter() {
                self.module(role)?
                    .put_applied(&self.exec, spec, old.as_ref())?;
            }
        }
        for (role, old) in gone {
            self.module(role)?.removed(&self.exec, &old, data)?;
        }
        tracing::info!(
            accounts = specs.len(),
            plan_ms = planned.as_millis(),
            execute_ms = (executed - planned).as_millis(),
            after_ms = (started.elapsed() - executed).as_millis(),
            "put"
        );
        Ok(changed)
    }

    /// The PHP version an account's pool runs (the server's default when it names none).
    fn php_version(&self, spec: &AccountSpec) -> enconf_core::domain::PhpVersion {
        spec.php_version
            .unwrap_or(self.layout().php_default_version)
    }

    /// Deletes an account: each role's configuration goes and the services reload, then what
    /// only goes once nothing uses it (the web role's user and home, when the agent created
    /// them; its Maildirs and databases as `data` says), and last its record. `false` when
    /// the agent does not have it.
    pub fn delete(&self, user: &UserName, data: roles::DataFate) -> Result<bool, ApplyError> {
        let Some((_, installed)) = self.load_installed(user)? else {
            return Ok(false);
        };
        let mut plan = Plan::default();
        for role in installed.spec.roles.iter() {
            self.module(role)?
                .plan_remove(&self.exec, &installed, &mut plan)?;
        }
        self.exec.execute(plan)?;
        for role in installed.spec.roles.iter() {
            self.module(role)?.removed(&self.exec, &installed, data)?;
        }
        self.system().remove(&self.record_path(user))?;
        Ok(true)
    }

    /// The accounts the agent has.
    pub fn list(&self) -> Result<Vec<AgentAccount>, ApplyError> {
        Ok(self
            .installed()?
            .into_iter()
            .map(|i| AgentAccount {
                username: i.spec.username.to_string(),
                domains: i.spec.domains.iter().map(ToString::to_string).collect(),
                php_version: i.php_version.to_string(),
                php: i.spec.php,
                roles: i.spec.roles,
                zones: i
                    .spec
                    .zones
                    .iter()
                    .map(|z| (z.name.to_string(), z.serial))
                    .collect(),
                db: (!i.spec.db.is_empty()).then(|| i.spec.db.digest()),
            })
            .collect())
    }

    /// The account `user` as installed here (`409`-free: an unknown account is an error).
    pub fn installed_spec(&self, user: &UserName) -> Result<AccountSpec, ApplyError> {
        self.load_installed(user)?
            .map(|(_, i)| i.spec)
            .ok_or_else(|| ApplyError::UnknownAccount(user.clone()))
    }

    /// Where the account's data is on this server, as the host sees it (what a backup or a
    /// restore reads and writes).
    pub fn backup_places(&self, user: &UserName) -> Result<crate::backup::Places, ApplyError> {
        let spec = self.installed_spec(user)?;
        let layout = self.layout();
        let host = |p: &std::path::Path| self.system().data_path(p);
        Ok(crate::backup::Places {
            web_root: host(&layout.web_root_base.join(user.as_str())),
            mail_domains: spec
                .domains
                .iter()
                .map(|d| host(&layout.vmail_dir.join(d.as_str())))
                .collect(),
            vmail_dir: host(&layout.vmail_dir),
            owner: self.system().owns_users().then(|| user.as_str().to_owned()),
            mail_owner: self
                .system()
                .owns_users()
                .then(|| layout.vmail_user.clone()),
        })
    }

    /// The programs and places backups use here.
    pub fn backup_tools(&self) -> crate::backup::Tools {
        crate::backup::Tools::of(self.layout(), |p| self.system().data_path(p))
    }

    /// Makes the server ready for the mail role (see [`roles::mail::setup`]).
    pub fn setup_mail(&self) -> Result<(), ApplyError> {
        roles::mail::setup(&self.exec)
    }

    /// Creates or changes a mailbox of the account `user` (see [`roles::mail`]).
    pub fn put_mailbox(
        &self,
        user: &UserName,
        address: &MailAddress,
        put: MailboxPut,
    ) -> Result<bool, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::put_mailbox(&self.exec, &spec, address, put.password_hash, put.quota_mb)
    }

    pub fn delete_mailbox(
        &self,
        user: &UserName,
        address: &MailAddress,
    ) -> Result<bool, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::delete_mailbox(&self.exec, &spec, address)
    }

    pub fn put_alias(
        &self,
        user: &UserName,
        address: &MailAddress,
        put: AliasPut,
    ) -> Result<bool, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::put_alias(&self.exec, &spec, address, put.destinations)
    }

    pub fn delete_alias(&self, user: &UserName, address: &MailAddress) -> Result<bool, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::delete_alias(&self.exec, &spec, address)
    }

    /// Makes the mail of the account `user` exactly `put`.
    pub fn put_mail(&self, user: &UserName, put: MailPut) -> Result<bool, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::put_all(&self.exec, &spec, put)
    }

    /// The mailboxes and aliases of the account `user`.
    pub fn mail(&self, user: &UserName) -> Result<AgentMail, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::list(&self.exec, &spec)
    }

    /// The DKIM records of the account `user`'s mail domains.
    /// The serial each zone of the account `user` is served with here.
    pub fn dns_served(
        &self,
        user: &UserName,
    ) -> Result<std::collections::BTreeMap<String, u32>, ApplyError> {
        let Some((_, installed)) = self.load_installed(user)? else {
            return Err(ApplyError::UnknownAccount(user.clone()));
        };
        roles::dns::served(&self.exec, &installed)
    }

    /// What each database of the account `user` takes on disk here.
    pub fn db_sizes(
        &self,
        user: &UserName,
    ) -> Result<std::collections::BTreeMap<String, u64>, ApplyError> {
        let spec = self.installed_spec(user)?;
        crate::services::mariadb::sizes(self.system(), self.layout(), &spec.db.databases)
    }

    pub fn dkim(&self, user: &UserName) -> Result<Vec<DkimRecord>, ApplyError> {
        let spec = self.installed_spec(user)?;
        roles::mail::dkim(&self.exec, &spec)
    }

    /// Stops the writes to the account's data here for the last pass of a migration: the
    /// site's PHP stops ([`roles::web::plan_freeze`]) and its mail is held back
    /// ([`roles::mail::plan_freeze`]); the next put brings both back. `false` when the account
    /// has neither a site nor mail here.
    pub fn freeze(&self, user: &UserName) -> Result<bool, ApplyError> {
        let Some((_, installed)) = self.load_installed(user)? else {
            return Err(ApplyError::UnknownAccount(user.clone()));
        };
        let mut plan = Plan::default();
        let mut any = false;
        if installed.spec.roles.contains(Role::Web) {
            roles::web::plan_freeze(self.layout(), &installed, &mut plan);
            any = true;
        }
        if installed.spec.roles.contains(Role::Mail) && self.served.contains(Role::Mail) {
            any |= roles::mail::plan_freeze(&self.exec, &installed, &mut plan)?;
        }
        if !any {
            return Ok(false);
        }
        self.exec.execute(plan)?;
        tracing::info!(%user, "writes stopped for the last pass of a migration (PHP stopped, mail held back)");
        Ok(true)
    }

    /// The server's own names as installed (none before the first certificate or challenge).
    pub fn panel(&self) -> Result<render::PanelSite, ApplyError> {
        crate::panel::site(&self.exec)
    }

    /// Installs a certificate for the server's own `names` (see [`crate::certs::put`]).
    pub fn put_certificate(
        &self,
        kind: CertKind,
        names: &[DomainName],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<bool, ApplyError> {
        crate::certs::put(&self.exec, kind, names, chain_pem, key_pem)
    }

    /// Serves Roundcube at `path` of the panel's HTTPS server block, or nothing (see
    /// [`crate::webmail::put`]). Only on a server that serves the mail role.
    pub fn put_webmail(
        &self,
        path: Option<enconf_core::domain::UrlPath>,
    ) -> Result<bool, ApplyError> {
        if path.is_some() && !self.served.contains(Role::Mail) {
            return Err(ApplyError::RoleNotServed { role: Role::Mail });
        }
        crate::webmail::put(&self.exec, path)
    }

    /// Serves phpMyAdmin at `path` of the panel's HTTPS server block, or nothing (see
    /// [`crate::phpmyadmin::put`]). Only on a server that serves the db role.
    pub fn put_phpmyadmin(
        &self,
        path: Option<enconf_core::domain::UrlPath>,
    ) -> Result<bool, ApplyError> {
        if path.is_some() && !self.served.contains(Role::Db) {
            return Err(ApplyError::RoleNotServed { role: Role::Db });
        }
        crate::phpmyadmin::put(&self.exec, path)
    }

    /// Serves an ACME HTTP-01 answer (see [`crate::acme::put`]).
    pub fn put_challenge(
        &self,
        names: &[DomainName],
        token: &str,
        key_authorization: &str,
    ) -> Result<bool, ApplyError> {
        crate::acme::put(&self.exec, names, token, key_authorization)
    }

    /// Stops serving an ACME answer. `false` when it was not served.
    pub fn delete_challenge(&self, token: &str) -> Result<bool, ApplyError> {
        crate::acme::delete(&self.exec, token)
    }
}
