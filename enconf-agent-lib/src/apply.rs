//! Applying: turn account specs into files, validate them in isolation, reload, and roll back
//! when anything fails. Journaled, so an agent killed half-way repairs itself on restart.
//!
//! One apply is a [`Plan`]: files to write or remove, the vhosts and pools to validate, the
//! services to reload. [`Applier::execute`] runs it:
//!
//! 1. write the journal (every touched path, its previous content and mode), fsynced;
//! 2. validate only what changed, before anything live changes: one `nginx -t` over a test
//!    config including staged copies of the changed vhosts (and of the http-level file when it
//!    changes), alongside one `php-fpm -t` per PHP version over the changed pools. The cost
//!    grows with the size of the change, not with the number of sites, and the live files never
//!    hold a refused configuration that a reload still under way could read;
//! 3. replace the live files (rename; not yet fsynced: the journal covers a crash);
//! 4. reload nginx (SIGHUP) and each touched PHP-FPM (SIGUSR2) once;
//! 5. `syncfs`, then remove the journal.
//!
//! A refusal in 2 changes nothing and answers with the validator's message; a failure in 3 or
//! 4 restores every file from the journal (and reloads again if a reload was sent); a crash
//! anywhere is undone by [`Applier::recover`] at the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use enconf_core::domain::{AccountSpec, DomainName, PhpVersion, UserName};
use enconf_core::protocol::agent::AgentAccount;
use enconf_core::ssl::CertKind;
use serde::{Deserialize, Serialize};

use crate::config::Layout;
use crate::owners::{Claim, Owners};
use crate::render::{self, AccountPaths, HTTP_CONF_FILE, PANEL_CONF_FILE, PanelSite, Renderer};
use crate::system::{System, SystemError};

/// Why an apply did not happen. In every case the files are as they were before it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{validator} rejected the configuration: {message}")]
    Rejected { validator: String, message: String },
    #[error(transparent)]
    System(#[from] SystemError),
    #[error("agent state is damaged: {0}")]
    State(String),
    /// The account's user name belongs to a user or group the agent did not create.
    #[error("{reason}")]
    UserTaken { user: UserName, reason: String },
}

/// What the agent records of an installed account, in `<state_dir>/accounts/<user>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Installed {
    spec: AccountSpec,
    /// The version the pool runs (the spec's, or the default when it was installed).
    php_version: PhpVersion,
}

/// The journal of an apply under way.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// Each touched path and its content before the apply.
    previous: Vec<Previous>,
    reload_nginx: bool,
    reload_php: BTreeSet<PhpVersion>,
    #[serde(default)]
    reload_mail: MailReload,
}

/// Which mail services an apply reloads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct MailReload {
    postfix: bool,
    dovecot: bool,
}

/// A file as it was before an apply.
#[derive(Debug, Serialize, Deserialize)]
struct Previous {
    path: PathBuf,
    /// `None`: it did not exist.
    content: Option<String>,
    /// The permission bits to put it back with (a file keeps its mode across versions).
    mode: u32,
}

/// One apply.
#[derive(Debug, Default)]
struct Plan {
    /// New contents (`None`: remove), with the file mode.
    files: BTreeMap<PathBuf, Option<(Vec<u8>, u32)>>,
    /// Directories to create first: (path, owner, group, mode).
    dirs: Vec<(PathBuf, String, String, u32)>,
    check_vhosts: Vec<PathBuf>,
    /// The pools to validate, by PHP version (their new content is in `files`).
    check_pools: BTreeMap<PhpVersion, Vec<PathBuf>>,
    reload_nginx: bool,
    reload_php: BTreeSet<PhpVersion>,
    /// The Dovecot settings file to validate (its new content is in `files`).
    check_dovecot: Option<PathBuf>,
    reload_mail: MailReload,
    /// Answer only once nginx's old workers are gone (see `await_old_workers_gone`).
    settle: bool,
}

/// The engine behind the agent's operations.
#[derive(Debug)]
pub struct Applier<S> {
    layout: Layout,
    renderer: Renderer,
    system: S,
}

impl<S: System> Applier<S> {
    pub fn new(layout: Layout, system: S) -> Self {
        Self {
            renderer: Renderer::new(&layout),
            layout,
            system,
        }
    }

    pub fn system(&self) -> &S {
        &self.system
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn owners(&self) -> Owners<'_, S> {
        Owners::new(&self.system, &self.layout.state_dir)
    }

    fn journal_path(&self) -> PathBuf {
        self.layout.state_dir.join("journal.json")
    }

    fn accounts_dir(&self) -> PathBuf {
        self.layout.state_dir.join("accounts")
    }

    fn record_path(&self, user: &UserName) -> PathBuf {
        self.accounts_dir().join(format!("{user}.json"))
    }

    fn check_dir(&self) -> PathBuf {
        self.layout.state_dir.join("check")
    }

    fn panel_record_path(&self) -> PathBuf {
        self.layout.state_dir.join("panel.json")
    }

    fn challenge_path(&self, token: &str) -> PathBuf {
        self.layout
            .acme_root
            .join(".well-known/acme-challenge")
            .join(token)
    }

    /// The server's own names as installed (none before the first certificate or challenge).
    pub fn panel(&self) -> Result<PanelSite, ApplyError> {
        match self.system.read(&self.panel_record_path())? {
            None => Ok(PanelSite::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ApplyError::State(format!("panel record: {e}"))),
        }
    }

    /// Adds to `plan` the panel server blocks for `site` and their record, if they differ
    /// from what is installed.
    fn plan_panel(&self, plan: &mut Plan, site: &PanelSite) -> Result<(), ApplyError> {
        let vhost_path = self.layout.nginx_sites_dir.join(PANEL_CONF_FILE);
        let vhost = render::panel_vhost(&self.layout, site).into_bytes();
        let record =
            serde_json::to_vec_pretty(site).map_err(|e| ApplyError::State(e.to_string()))?;
        let record_path = self.panel_record_path();
        if self.system.read(&vhost_path)?.as_deref() != Some(&vhost[..])
            || self.system.read(&record_path)?.as_deref() != Some(&record[..])
        {
            plan.check_vhosts.push(vhost_path.clone());
            plan.files.insert(vhost_path, Some((vhost, 0o644)));
            plan.files.insert(record_path, Some((record, 0o600)));
            plan.reload_nginx = true;
        }
        Ok(())
    }

    /// Installs a certificate and key for the server's own `names` (the first is the
    /// hostname): the key mode 0600, the panel's HTTPS server block pointed at them, checked
    /// by `nginx -t` before any live file changes, reloaded, rolled back on failure. A mail
    /// certificate is written to `mail.crt` / `mail.key` for the mail services. `false` when
    /// the same certificate is already installed.
    pub fn put_certificate(
        &self,
        kind: CertKind,
        names: &[DomainName],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<bool, ApplyError> {
        let (cert_path, key_path) = render::cert_paths(&self.layout, kind.as_str());
        let mut plan = Plan::default();
        if self.system.read(&cert_path)?.as_deref() != Some(chain_pem.as_bytes())
            || self.system.read(&key_path)?.as_deref() != Some(key_pem.as_bytes())
        {
            plan.files
                .insert(cert_path, Some((chain_pem.as_bytes().to_vec(), 0o644)));
            plan.files
                .insert(key_path, Some((key_pem.as_bytes().to_vec(), 0o600)));
        }
        if kind == CertKind::Mail {
            self.plan_mail_tls(&mut plan)?;
        }
        if kind == CertKind::Panel {
            let site = PanelSite {
                names: names.to_vec(),
                tls: true,
            };
            self.plan_panel(&mut plan, &site)?;
            if !plan.files.is_empty() && !plan.reload_nginx {
                // A new certificate under the same server blocks: nginx must read it.
                let vhost = self.layout.nginx_sites_dir.join(PANEL_CONF_FILE);
                plan.check_vhosts.push(vhost);
                plan.reload_nginx = true;
            }
        }
        if plan.files.is_empty() {
            return Ok(false);
        }
        self.execute(plan)?;
        Ok(true)
    }

    /// Points the installed mail services at `mail.crt` / `mail.key`: Postfix's `main.cf`
    /// (the `smtpd_tls_*` settings the agent manages, the rest kept as it is) and a Dovecot
    /// settings file. A service whose configuration is not there is not installed and is
    /// skipped; with neither, the certificate is refused.
    fn plan_mail_tls(&self, plan: &mut Plan) -> Result<(), ApplyError> {
        let (cert, key) = render::cert_paths(&self.layout, CertKind::Mail.as_str());
        let main_cf = self.layout.postfix_config_dir.join("main.cf");
        let postfix = self.system.read(&main_cf)?;
        let dovecot = self.system.read(&self.layout.dovecot_config)?.is_some();
        if postfix.is_none() && !dovecot {
            return Err(ApplyError::Rejected {
                validator: "mail".into(),
                message: "neither Postfix nor Dovecot is installed on this server".into(),
            });
        }
        // The pair is in the plan only when it changed.
        let cert_changed = !plan.files.is_empty();
        if let Some(old) = postfix {
            let old = String::from_utf8(old)
                .map_err(|_| ApplyError::State(format!("{} is not text", main_cf.display())))?;
            let new = render::postfix_tls(&old, &cert, &key);
            let cf_changed = new != old;
            if cf_changed {
                plan.files.insert(main_cf, Some((new.into_bytes(), 0o644)));
            }
            plan.reload_mail.postfix = cert_changed || cf_changed;
        }
        if dovecot {
            let path = self.layout.dovecot_conf_d.join(render::DOVECOT_TLS_FILE);
            let text = render::dovecot_tls(&cert, &key).into_bytes();
            let changed = self.system.read(&path)?.as_deref() != Some(&text[..]);
            if changed || cert_changed {
                // In the plan even when the same, so that the new pair is validated with it.
                plan.files.insert(path.clone(), Some((text, 0o644)));
                plan.check_dovecot = Some(path);
                plan.reload_mail.dovecot = true;
            }
        }
        Ok(())
    }

    /// Serves an ACME HTTP-01 answer for `names` at
    /// `/.well-known/acme-challenge/<token>` (adding the names to the panel server block on
    /// the HTTP port when they are new there). `token` and `key_authorization` are checked
    /// base64url text.
    pub fn put_challenge(
        &self,
        names: &[DomainName],
        token: &str,
        key_authorization: &str,
    ) -> Result<bool, ApplyError> {
        let mut site = self.panel()?;
        let mut plan = Plan::default();
        for name in names {
            if !site.names.contains(name) {
                site.names.push(name.clone());
            }
        }
        self.plan_panel(&mut plan, &site)?;
        if !plan.files.is_empty() {
            plan.settle = true;
            self.execute(plan)?;
        }
        let path = self.challenge_path(token);
        let changed = self.system.read(&path)?.as_deref() != Some(key_authorization.as_bytes());
        if changed {
            self.system
                .write_atomic(&path, key_authorization.as_bytes(), 0o644)?;
        }
        self.await_served(names, token, key_authorization)?;
        Ok(changed)
    }

    /// Waits (up to 15 s) until nginx serves the answer for every name: a reload reaches new
    /// workers a moment after the signal, and the CA must not ask an old one.
    fn await_served(
        &self,
        names: &[DomainName],
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ApplyError> {
        let path = format!("/.well-known/acme-challenge/{token}");
        let deadline = Instant::now() + std::time::Duration::from_secs(15);
        for name in names {
            loop {
                let last =
                    match self
                        .system
                        .local_http_get(self.layout.http_port, name.as_str(), &path)
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
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Stops serving an ACME answer. `false` when it was not served.
    pub fn delete_challenge(&self, token: &str) -> Result<bool, ApplyError> {
        Ok(self.system.remove(&self.challenge_path(token))?)
    }

    /// Start-up: undo an apply a crash interrupted, then make sure the http-level file is
    /// current.
    pub fn start(&self) -> Result<(), ApplyError> {
        self.recover()?;
        self.adopt_legacy_users()?;
        let path = self.layout.nginx_sites_dir.join(HTTP_CONF_FILE);
        let wanted = render::http_conf(&self.layout).into_bytes();
        if self.system.read(&path)?.as_deref() != Some(&wanted[..]) {
            let mut plan = Plan::default();
            plan.files.insert(path, Some((wanted, 0o644)));
            // Validated with no vhost: the file must parse on its own.
            plan.reload_nginx = true;
            self.execute(plan)?;
        }
        Ok(())
    }

    /// Records as the agent's the users of accounts installed by releases that kept no record
    /// of the users they created, when they have the shape the agent gives its users.
    fn adopt_legacy_users(&self) -> Result<(), ApplyError> {
        let owners = self.owners();
        for name in self.system.list(&self.accounts_dir())? {
            let Some(user) = name
                .strip_suffix(".json")
                .and_then(|u| UserName::parse(u).ok())
            else {
                continue;
            };
            let Some((_, installed)) = self.load_installed(&user)? else {
                continue;
            };
            let home = AccountPaths::new(&self.layout, &user, installed.php_version).home;
            if !owners.adopt_legacy(&user, &home)? {
                tracing::warn!(%user, "the account's user was not created by enconf: it is left alone");
            }
        }
        Ok(())
    }

    /// Restores the files of an interrupted apply, if the journal says there was one.
    pub fn recover(&self) -> Result<bool, ApplyError> {
        let Some(bytes) = self.system.read(&self.journal_path())? else {
            return Ok(false);
        };
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| ApplyError::State(format!("unreadable journal: {e}")))?;
        tracing::warn!(
            files = journal.previous.len(),
            "undoing an interrupted apply"
        );
        self.restore(&journal.previous)?;
        self.reload(
            journal.reload_nginx,
            &journal.reload_php,
            journal.reload_mail,
        )?;
        self.system.remove(&self.journal_path())?;
        Ok(true)
    }

    /// Puts every journaled file back, durably.
    fn restore(&self, previous: &[Previous]) -> Result<(), SystemError> {
        for p in previous {
            match &p.content {
                Some(c) => self.system.write_unsynced(&p.path, c.as_bytes(), p.mode)?,
                None => {
                    self.system.remove(&p.path)?;
                }
            }
        }
        self.sync_parents(previous.iter().map(|p| &p.path))
    }

    /// Makes the writes to `paths` durable: one `sync` over their distinct directories.
    fn sync_parents<'a>(
        &self,
        paths: impl Iterator<Item = &'a PathBuf>,
    ) -> Result<(), SystemError> {
        let dirs: BTreeSet<&std::path::Path> = paths.filter_map(|p| p.parent()).collect();
        self.system.sync(&dirs.into_iter().collect::<Vec<_>>())
    }

    fn load_installed(&self, user: &UserName) -> Result<Option<(Vec<u8>, Installed)>, ApplyError> {
        let Some(bytes) = self.system.read(&self.record_path(user))? else {
            return Ok(None);
        };
        let installed = serde_json::from_slice(&bytes)
            .map_err(|e| ApplyError::State(format!("record of {user}: {e}")))?;
        Ok(Some((bytes, installed)))
    }

    /// Creates or updates accounts, all in one apply. Returns, per spec, whether anything
    /// changed.
    pub fn put(&self, specs: &[AccountSpec]) -> Result<Vec<bool>, ApplyError> {
        let mut plan = Plan::default();
        let mut changed = Vec::with_capacity(specs.len());
        let mut new_users = Vec::new();
        for spec in specs {
            let php = self.renderer.php_version(spec);
            let paths = AccountPaths::new(&self.layout, &spec.username, php);
            let record = serde_json::to_vec_pretty(&Installed {
                spec: spec.clone(),
                php_version: php,
            })
            .map_err(|e| ApplyError::State(e.to_string()))?;
            let mut vhost = String::with_capacity(1024);
            self.renderer.vhost_into(&mut vhost, spec);
            let mut pool = String::with_capacity(1024);
            self.renderer.pool_into(&mut pool, spec);
            let (vhost, pool) = (vhost.into_bytes(), pool.into_bytes());
            let old = self.load_installed(&spec.username)?;
            let user_exists = match self.owners().claim(&spec.username)? {
                Claim::Free => false,
                Claim::Ours(_) => true,
                Claim::Foreign(reason) => {
                    return Err(ApplyError::UserTaken {
                        user: spec.username.clone(),
                        reason,
                    });
                }
            };
            let same = user_exists
                && old.as_ref().is_some_and(|(bytes, _)| *bytes == record)
                && self.system.read(&paths.vhost)?.as_deref() == Some(&vhost[..])
                && self.system.read(&paths.pool)?.as_deref() == Some(&pool[..]);
            changed.push(!same);
            if same {
                continue;
            }
            if let Some((_, old)) = &old
                && old.php_version != php
            {
                let old_paths = AccountPaths::new(&self.layout, &spec.username, old.php_version);
                plan.files.insert(old_paths.pool, None);
                plan.reload_php.insert(old.php_version);
            }
            if !user_exists {
                new_users.push((spec.username.clone(), paths.home.clone()));
            }
            plan.dirs.extend(paths.directories(&spec.username));
            plan.check_vhosts.push(paths.vhost.clone());
            plan.check_pools
                .entry(php)
                .or_default()
                .push(paths.pool.clone());
            plan.files.insert(paths.vhost, Some((vhost, 0o644)));
            plan.files.insert(paths.pool, Some((pool, 0o644)));
            plan.files
                .insert(self.record_path(&spec.username), Some((record, 0o600)));
            plan.reload_nginx = true;
            plan.reload_php.insert(php);
        }
        if !plan.files.is_empty() {
            // Users and directories first: PHP-FPM refuses a pool whose user does not exist.
            // They are not rolled back: an unused user with empty directories serves nothing.
            let started = Instant::now();
            self.add_users(&new_users)?;
            let users = started.elapsed();
            for (path, owner, group, mode) in std::mem::take(&mut plan.dirs) {
                self.system.ensure_dir(&path, &owner, &group, mode)?;
            }
            tracing::info!(
                accounts = specs.len(),
                new_users = new_users.len(),
                users_ms = users.as_millis(),
                dirs_ms = (started.elapsed() - users).as_millis(),
                "accounts prepared"
            );
            self.execute(plan)?;
        }
        Ok(changed)
    }

    /// Creates users, recording them as the agent's first (see [`crate::owners`]).
    fn add_users(&self, users: &[(UserName, PathBuf)]) -> Result<(), ApplyError> {
        let owners = self.owners();
        for (user, home) in users {
            owners.reserve(user, home)?;
        }
        if let Err(e) = self.system.add_users(users) {
            for (user, _) in users {
                if let Err(forget) = owners.forget(user) {
                    tracing::warn!(%user, error = %forget, "could not drop a user reservation");
                }
            }
            return Err(e.into());
        }
        for (user, _) in users {
            owners.confirm(user)?;
        }
        Ok(())
    }

    /// Deletes an account: its vhost and pool go, the services reload, then its user (and home)
    /// goes when the agent created it, and last its record. `false` when the agent does not
    /// have it.
    pub fn delete(&self, user: &UserName) -> Result<bool, ApplyError> {
        let Some((_, installed)) = self.load_installed(user)? else {
            return Ok(false);
        };
        let paths = AccountPaths::new(&self.layout, user, installed.php_version);
        let mut plan = Plan::default();
        plan.files.insert(paths.vhost, None);
        plan.files.insert(paths.pool, None);
        plan.reload_nginx = true;
        plan.reload_php.insert(installed.php_version);
        self.execute(plan)?;
        let owners = self.owners();
        match owners.claim(user)? {
            Claim::Ours(found) => self.system.remove_user(user, &found.home)?,
            Claim::Free => {}
            Claim::Foreign(reason) => {
                tracing::warn!(%user, "{reason}: the user, its group and its home are left alone");
            }
        }
        owners.forget(user)?;
        self.system.remove(&self.record_path(user))?;
        Ok(true)
    }

    /// The accounts the agent has.
    pub fn list(&self) -> Result<Vec<AgentAccount>, ApplyError> {
        let mut out = Vec::new();
        for name in self.system.list(&self.accounts_dir())? {
            let Some(user) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(user) = UserName::parse(user) else {
                tracing::warn!(file = name, "ignoring a record with an invalid user name");
                continue;
            };
            if let Some((_, i)) = self.load_installed(&user)? {
                out.push(AgentAccount {
                    username: i.spec.username.to_string(),
                    domains: i.spec.domains.iter().map(ToString::to_string).collect(),
                    php_version: i.php_version.to_string(),
                    php: i.spec.php,
                });
            }
        }
        Ok(out)
    }

    fn execute(&self, plan: Plan) -> Result<(), ApplyError> {
        let mut journal = Journal {
            previous: Vec::with_capacity(plan.files.len()),
            reload_nginx: plan.reload_nginx,
            reload_php: plan.reload_php.clone(),
            reload_mail: plan.reload_mail,
        };
        for (path, new) in &plan.files {
            let previous = self
                .system
                .read(path)?
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|_| ApplyError::State(format!("{} is not text", path.display())))
                })
                .transpose()?;
            journal.previous.push(Previous {
                path: path.clone(),
                content: previous,
                mode: new.as_ref().map_or(0o644, |(_, mode)| *mode),
            });
        }
        let journal_bytes =
            serde_json::to_vec(&journal).map_err(|e| ApplyError::State(e.to_string()))?;
        self.system
            .write_atomic(&self.journal_path(), &journal_bytes, 0o600)?;

        let (mut touched, mut reloading) = (false, false);
        let outcome = self.check_write_reload(&plan, &mut touched, &mut reloading);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "apply failed; the previous files stay or are restored");
        }
        if outcome.is_err() && touched {
            self.restore(&journal.previous)?;
            // Before the reload step the services never read the new files: nothing to undo.
            // After it, some may have: reload them onto the restored files. A failure here is
            // logged; the journal goes because the files are back.
            if reloading
                && let Err(reload) =
                    self.reload(plan.reload_nginx, &plan.reload_php, plan.reload_mail)
            {
                tracing::warn!(error = %reload, "reload after rollback failed");
            }
        }
        self.system.remove(&self.journal_path())?;
        outcome
    }

    /// Validates, writes and reloads. `touched` turns true once live files may have changed,
    /// `reloading` once a reload may have been sent.
    fn check_write_reload(
        &self,
        plan: &Plan,
        touched: &mut bool,
        reloading: &mut bool,
    ) -> Result<(), ApplyError> {
        let started = Instant::now();
        // Validate first, on staged copies: the live files never hold a configuration that is
        // refused, so a reload still under way from an earlier apply cannot read one.
        // nginx and PHP-FPM validate side by side; a panic (a crash, in tests) is not caught.
        let (nginx, fpm) = std::thread::scope(|scope| {
            let nginx = scope.spawn(|| {
                let t = Instant::now();
                // Only new content needs checking: a delete only removes server blocks.
                let http = self.layout.nginx_sites_dir.join(HTTP_CONF_FILE);
                let result = match plan.check_vhosts.is_empty() && !plan.files.contains_key(&http) {
                    true => Ok(()),
                    false => self.check_nginx(plan),
                };
                (result, t.elapsed())
            });
            let t = Instant::now();
            let fpm = plan
                .check_pools
                .iter()
                .try_for_each(|(version, pools)| self.check_fpm(plan, *version, pools));
            let nginx = nginx
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (nginx, (fpm, t.elapsed()))
        });
        nginx.0?;
        fpm.0?;
        if let Some(snippet) = &plan.check_dovecot {
            self.check_dovecot(plan, snippet)?;
        }
        let checked = started.elapsed();
        // The journal is durable: the files need not be, until it is removed (sync below).
        *touched = true;
        for (path, content) in &plan.files {
            match content {
                Some((bytes, mode)) => self.system.write_unsynced(path, bytes, *mode)?,
                None => {
                    self.system.remove(path)?;
                }
            }
        }
        let written = started.elapsed();
        *reloading = true;
        let workers = match plan.settle && plan.reload_nginx {
            true => self.nginx_workers(),
            false => None,
        };
        self.reload(plan.reload_nginx, &plan.reload_php, plan.reload_mail)?;
        if let Some(before) = workers {
            self.await_old_workers_gone(&before);
        }
        let reloaded = started.elapsed();
        self.sync_parents(plan.files.keys())?;
        tracing::info!(
            files = plan.files.len(),
            write_ms = (written - checked).as_millis(),
            nginx_check_ms = nginx.1.as_millis(),
            fpm_check_ms = fpm.1.as_millis(),
            reload_ms = (reloaded - written).as_millis(),
            sync_ms = (started.elapsed() - reloaded).as_millis(),
            "applied"
        );
        Ok(())
    }

    /// `nginx -t` over the http-level file and the plan's vhosts only, as staged copies of
    /// their new content. A certificate or key of the plan is staged too, and the staged
    /// vhosts name the copy, so the new pair is what gets checked.
    fn check_nginx(&self, plan: &Plan) -> Result<(), ApplyError> {
        let dir = self.check_dir();
        let stage = dir.join("stage");
        let http = self.layout.nginx_sites_dir.join(HTTP_CONF_FILE);
        self.with_staged(|staged| {
            let certs = self.stage_certs(plan, "nginx-", staged)?;
            let mut include = |live: &PathBuf| -> Result<String, ApplyError> {
                // The new content, or (when certificates change under it) the live one.
                let bytes = match plan.files.get(live) {
                    Some(Some((bytes, _))) => Some(bytes.clone()),
                    _ if !certs.is_empty() => self.system.read(live)?,
                    _ => None,
                };
                let Some(bytes) = bytes else {
                    return Ok(live.display().to_string());
                };
                let copy = stage.join(live.file_name().unwrap_or_default());
                self.system
                    .write_unsynced(&copy, &certs.point(&bytes), 0o600)?;
                let shown = copy.display().to_string();
                staged.push(copy);
                Ok(shown)
            };
            let mut conf = format!(
                "pid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\nevents {{}}\nhttp {{\n    include {http};\n",
                dir = dir.display(),
                http = include(&http)?,
            );
            for v in &plan.check_vhosts {
                conf.push_str("    include ");
                conf.push_str(&include(v)?);
                conf.push_str(";\n");
            }
            conf.push_str("}\n");
            let conf_path = dir.join("nginx.conf");
            self.system
                .write_atomic(&conf_path, conf.as_bytes(), 0o600)?;
            let conf_arg = conf_path.display().to_string();
            let err_arg = dir.join("nginx-error.log").display().to_string();
            self.system
                .run(
                    &self.layout.nginx_bin,
                    &["-t", "-q", "-e", &err_arg, "-c", &conf_arg],
                )
                .map(drop)
                .map_err(|e| rejected("nginx", e))
        })
    }

    /// Runs `f`, which may put copies into the check directory (keys among them), then
    /// removes every copy it made, whatever `f` returned.
    fn with_staged<T>(
        &self,
        f: impl FnOnce(&mut Vec<PathBuf>) -> Result<T, ApplyError>,
    ) -> Result<T, ApplyError> {
        let mut staged = Vec::new();
        let result = f(&mut staged);
        let mut removed = Ok(());
        for copy in staged {
            if let Err(e) = self.system.remove(&copy) {
                removed = Err(e);
            }
        }
        let value = result?;
        removed?;
        Ok(value)
    }

    /// Copies the plan's new certificates and keys into the check directory (names prefixed
    /// with `prefix`), so that a validator reads the new pair: [`StagedCerts::point`] turns a
    /// configuration text's live paths into the copies'.
    fn stage_certs(
        &self,
        plan: &Plan,
        prefix: &str,
        staged: &mut Vec<PathBuf>,
    ) -> Result<StagedCerts, ApplyError> {
        let stage = self.check_dir().join("stage");
        let mut renames = Vec::new();
        for (live, content) in &plan.files {
            if let (true, Some((bytes, _))) = (live.starts_with(&self.layout.cert_dir), content) {
                let name = live
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                let copy = stage.join(format!("{prefix}{name}"));
                self.system.write_unsynced(&copy, bytes, 0o600)?;
                renames.push((live.display().to_string(), copy.display().to_string()));
                staged.push(copy);
            }
        }
        Ok(StagedCerts { renames })
    }

    /// `php-fpm -t` over `pools` only.
    fn check_fpm(
        &self,
        plan: &Plan,
        version: PhpVersion,
        pools: &[PathBuf],
    ) -> Result<(), ApplyError> {
        let dir = self.check_dir();
        let mut conf = format!(
            "[global]\npid = {dir}/php{version}-fpm.pid\nerror_log = {dir}/php{version}-fpm.log\n",
            dir = dir.display()
        );
        for p in pools {
            if let Some(Some((bytes, _))) = plan.files.get(p) {
                conf.push_str(&String::from_utf8_lossy(bytes));
            }
        }
        let conf_path = dir.join(format!("php{version}-fpm.conf"));
        self.system
            .write_atomic(&conf_path, conf.as_bytes(), 0o600)?;
        let conf_arg = conf_path.display().to_string();
        self.system
            .run(&self.layout.php_fpm_bin(version), &["-t", "-y", &conf_arg])
            .map(drop)
            .map_err(|e| rejected("php-fpm", e))
    }

    fn reload(
        &self,
        nginx: bool,
        php: &BTreeSet<PhpVersion>,
        mail: MailReload,
    ) -> Result<(), ApplyError> {
        if nginx {
            self.system.signal(&self.layout.nginx_pid_file, "HUP")?;
        }
        for v in php {
            self.system
                .signal(&self.layout.php_fpm_pid_file(*v), "USR2")?;
        }
        if mail.postfix {
            let dir = self.layout.postfix_config_dir.display().to_string();
            self.system
                .run(&self.layout.postfix_bin, &["-c", &dir, "reload"])
                .map_err(|e| rejected("postfix reload", e))?;
        }
        if mail.dovecot {
            self.system.signal(&self.layout.dovecot_pid_file, "HUP")?;
        }
        Ok(())
    }

    /// `doveconf -n` over the live configuration followed by the staged settings file (later
    /// settings win in Dovecot, so this is the configuration the reload will read).
    fn check_dovecot(&self, plan: &Plan, snippet: &PathBuf) -> Result<(), ApplyError> {
        let Some(Some((bytes, _))) = plan.files.get(snippet) else {
            return Ok(());
        };
        self.with_staged(|staged| {
            let certs = self.stage_certs(plan, "dovecot-", staged)?;
            let dir = self.check_dir();
            let mut conf =
                format!("!include {}\n", self.layout.dovecot_config.display()).into_bytes();
            conf.extend_from_slice(&certs.point(bytes));
            let conf_path = dir.join("dovecot.conf");
            self.system.write_atomic(&conf_path, &conf, 0o600)?;
            let conf_arg = conf_path.display().to_string();
            self.system
                .run(&self.layout.doveconf_bin, &["-c", &conf_arg, "-n"])
                .map(drop)
                .map_err(|e| rejected("doveconf", e))
        })
    }
}

/// Staged copies of a plan's certificates and keys, by the live paths they replace.
struct StagedCerts {
    renames: Vec<(String, String)>,
}

impl StagedCerts {
    fn is_empty(&self) -> bool {
        self.renames.is_empty()
    }

    /// `text` with each live certificate or key path replaced by its staged copy's.
    fn point(&self, text: &[u8]) -> Vec<u8> {
        if self.renames.is_empty() {
            return text.to_vec();
        }
        let mut text = String::from_utf8_lossy(text).into_owned();
        for (from, to) in &self.renames {
            text = text.replace(from, to);
        }
        text.into_bytes()
    }
}

impl<S: System> Applier<S> {
    /// nginx's worker processes now, where they can be seen (not in the sandbox).
    fn nginx_workers(&self) -> Option<Vec<u32>> {
        self.system
            .children(&self.layout.nginx_pid_file)
            .ok()
            .flatten()
    }

    /// Waits (up to 30 s) until the workers in `before` are gone: from then on every answer
    /// comes from the new configuration. Only where that matters (an ACME CA must not ask an
    /// old worker): with many thousands of vhosts nginx takes seconds to read a new
    /// configuration, and an account put does not wait for that.
    fn await_old_workers_gone(&self, before: &[u32]) {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = self.nginx_workers().unwrap_or_default();
            let old_left = now.iter().filter(|p| before.contains(p)).count();
            if old_left == 0 && !now.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    old_workers = old_left,
                    "nginx workers of the old configuration are still running"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn rejected(validator: &str, e: SystemError) -> ApplyError {
    match e {
        SystemError::Command { output, .. } => ApplyError::Rejected {
            validator: validator.to_owned(),
            message: output,
        },
        other => ApplyError::System(other),
    }
}

impl AccountPaths {
    /// The directories of an account: (path, owner, group, mode). The home is traversable by
    /// the web server; `public` is readable by it; `tmp` and `logs` are the account's own.
    fn directories(&self, user: &UserName) -> Vec<(PathBuf, String, String, u32)> {
        let u = user.to_string();
        vec![
            (self.home.clone(), u.clone(), u.clone(), 0o711),
            (self.docroot.clone(), u.clone(), u.clone(), 0o755),
            (self.tmp.clone(), u.clone(), u.clone(), 0o700),
            (self.logs.clone(), u.clone(), u.clone(), 0o750),
        ]
    }
}
