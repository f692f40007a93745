//! Migration: roles of an account (web, mail, db) to other servers, each with its data.
//!
//! 1. **Checks** that answer at once (before a job is queued): the account uses each role,
//!    each target exists, is online and can take its role, the servers it leaves answer, and
//!    (with the backup role) the backup server answers.
//! 2. **The targets** get the account with the roles they will serve (added to what they
//!    already serve of it; nothing is taken away yet), the mail target its mailboxes.
//! 3. **The data**, when the account has the backup role, goes through its repository in two
//!    passes: a first copy of the web root and Maildirs while everything serves; then writes
//!    stop where the data is (the site's PHP stops, its mail is held back with "try again
//!    later"), and the second pass sends what changed since the first and each database (a
//!    dump, then a load into the target's database that replaces it only once whole). Without
//!    the backup role only the web role moves, as configuration only (the site's files stay
//!    behind for the company to copy); mail and db are refused, their data would be left.
//! 4. **The switch**: the record moves every role at once (one store transaction, with the
//!    servers' account counts), the zones and the database users' hosts follow.
//! 5. **The sources** lose the roles (and the data that was copied); every server touched is
//!    sent the account as recorded, which also lets the site's PHP and mail run again.
//!
//! A failure before the switch undoes the steps done: the account stays served by its
//! sources as recorded, and the job says why. After the switch the account is served by its
//! targets; a source that cannot be cleaned is logged and shows in its reconciliation.

use std::collections::{BTreeMap, BTreeSet};

use super::accounts::DataFate;
use super::backup::Plus as _;
use super::{Controller, ControllerError, Result};
use crate::domain::job::{Job, JobWork, NewJob, Progress};
use crate::domain::{Account, AccountId, Role, RoleServers, RoleSet, Server, ServerId};
use crate::placement::Candidate;
use crate::protocol::backup::{BackupRun, JobView, Repository, RestoreRun};
use crate::protocol::{AccountView, MigrateInput};
use crate::transport::{AgentClient, AgentEndpoint};

/// One role that changes server.
#[derive(Debug, Clone)]
struct Step {
    role: Role,
    source: Server,
    target: Server,
}

/// A checked migration: the account as recorded and the roles that move.
#[derive(Debug, Clone)]
struct Migration {
    account: Account,
    steps: Vec<Step>,
    /// The servers whose writes stop for the last pass: where the site runs when its files
    /// or its databases move (its PHP writes both), and where the mail is when it moves.
    writers: Vec<Server>,
}

impl Migration {
    fn before(&self) -> &RoleServers {
        &self.account.servers
    }

    /// Where each role is once moved.
    fn after(&self) -> RoleServers {
        let mut after = self.account.servers.clone();
        for step in &self.steps {
            after.set(step.role, vec![step.target.id]);
        }
        after
    }

    fn targets(&self) -> BTreeMap<Role, ServerId> {
        self.steps.iter().map(|s| (s.role, s.target.id)).collect()
    }

    fn step(&self, role: Role) -> Option<&Step> {
        self.steps.iter().find(|s| s.role == role)
    }

    /// Every server the migration touches, once each, by id.
    fn servers(&self) -> Vec<&Server> {
        let mut seen = BTreeSet::new();
        self.steps
            .iter()
            .flat_map(|s| [&s.source, &s.target])
            .filter(|s| seen.insert(s.id))
            .collect()
    }
}

/// The API field naming a role's target.
fn target_field(role: Role, single: bool) -> &'static str {
    match (role, single) {
        (Role::Web, true) => "target_server_id",
        (Role::Web, false) => "targets.web",
        (Role::Mail, _) => "targets.mail",
        (Role::Db, _) => "targets.db",
        (Role::Dns, _) => "targets.dns",
        (Role::Backup, _) => "targets.backup",
    }
}

impl Controller {
    /// Moves roles of an account, with their data, to other servers (see the module's
    /// documentation). Waits for the whole move; the API runs it as a job
    /// ([`Self::start_migrate`]).
    pub async fn migrate_account(
        &self,
        id: AccountId,
        input: &MigrateInput,
    ) -> Result<AccountView> {
        let targets = input.validate()?;
        let single = input.targets.is_none();
        self.migrate(id, &targets, single, None).await
    }

    /// `POST /api/v1/accounts/{id}/migrate`: what can be checked at once is, then the move runs
    /// as a job (its `server_id` is the web role's target, or the first target).
    pub async fn start_migrate(&self, id: AccountId, input: &MigrateInput) -> Result<JobView> {
        let targets = input.validate()?;
        self.migration(id, &targets, input.targets.is_none())
            .await?;
        let server = targets
            .get(&Role::Web)
            .or_else(|| targets.values().next())
            .copied();
        let job = self
            .start_job(NewJob {
                account_id: Some(id),
                server_id: server,
                work: JobWork::Migrate { targets },
            })
            .await?;
        Ok(JobView::from(&job))
    }

    /// The account and the roles that move, checked; `None` when every role is already where
    /// it should go.
    async fn migration(
        &self,
        id: AccountId,
        targets: &BTreeMap<Role, ServerId>,
        single: bool,
    ) -> Result<Option<Migration>> {
        let account = self.store.account(id).await?;
        let mut steps = Vec::new();
        for (&role, &target_id) in targets {
            let field = target_field(role, single);
            if !account.spec.roles.contains(role) {
                return Err(crate::domain::Rule::RoleNotUsed.at(field).into());
            }
            let Some(source_id) = account.servers.one(role) else {
                return Err(crate::domain::Rule::RoleNotUsed.at(field).into());
            };
            if source_id == target_id {
                continue;
            }
            // Without a repository the Maildirs and databases would stay behind while the
            // account points at empty ones (a site's files alone move as configuration only,
            // for companies that copy them by their own means).
            if matches!(role, Role::Mail | Role::Db) && !account.spec.roles.contains(Role::Backup) {
                return Err(crate::domain::Rule::DataNeedsBackup.at(field).into());
            }
            let source = self.store.server(source_id).await?;
            let target = self.named_server(target_id, field).await?;
            Self::require_online(&source)?;
            crate::placement::check_move(
                &Candidate::of(&target, account.spec.php_version),
                role,
                &account.servers,
            )
            .map_err(|error| ControllerError::Unfit { field, error })?;
            steps.push(Step {
                role,
                source,
                target,
            });
        }
        if steps.is_empty() {
            return Ok(None);
        }
        if account.spec.roles.contains(Role::Backup) {
            self.backup_server(&account).await?;
        }
        let moves = |role| steps.iter().any(|s: &Step| s.role == role);
        let mut writers: Vec<Server> = Vec::new();
        if (moves(Role::Web) || moves(Role::Db))
            && let Some(web) = account.servers.one(Role::Web)
        {
            writers.push(self.store.server(web).await?);
        }
        if let Some(mail) = steps.iter().find(|s| s.role == Role::Mail)
            && !writers.iter().any(|w| w.id == mail.source.id)
        {
            writers.push(mail.source.clone());
        }
        Ok(Some(Migration {
            account,
            steps,
            writers,
        }))
    }

    /// Runs a migration (the job's work, or [`Self::migrate_account`]'s).
    pub(super) async fn migrate(
        &self,
        id: AccountId,
        targets: &BTreeMap<Role, ServerId>,
        single: bool,
        job: Option<&mut Job>,
    ) -> Result<AccountView> {
        let Some(m) = self.migration(id, targets, single).await? else {
            return Ok(AccountView::from(&self.store.account(id).await?));
        };
        let account = &m.account;
        let after = m.after();
        let copied = account.spec.roles.contains(Role::Backup);

        // Onto the targets: the roles they take, and what they already serve of the account.
        let mut touched: Vec<&Server> = Vec::new();
        for step in &m.steps {
            let target = &step.target;
            if touched.iter().any(|s| s.id == target.id) {
                continue;
            }
            touched.push(target);
            let roles = m
                .before()
                .roles_on(target.id)
                .union(after.roles_on(target.id));
            if let Err(e) = self.put_roles(target, account, roles, DataFate::Keep).await {
                if !e.maybe_applied() {
                    touched.pop();
                }
                self.undo(&m, &touched, &[]).await;
                return Err(Self::agent_error(target.id, e));
            }
        }
        if let Some(step) = m.step(Role::Mail)
            && let Err(e) = self.send_mail_to(account, &step.target).await
        {
            self.undo(&m, &touched, &[]).await;
            return Err(e);
        }

        // The data, through the repository.
        let mut frozen = Vec::new();
        if copied {
            let set = match job.as_deref() {
                Some(j) => j.id.0,
                // A move made without a job: a number no job has, from the time.
                None => u64::try_from(self.now().unix_timestamp_nanos()).unwrap_or(u64::MAX),
            };
            if let Err(e) = self.move_data(&m, set, job, &mut frozen).await {
                self.undo(&m, &touched, &frozen).await;
                return Err(e);
            }
        }

        // The switch.
        let moved = match self.store.move_roles(id, &m.targets()).await {
            Ok(moved) => moved,
            Err(e) => {
                self.undo(&m, &touched, &frozen).await;
                return Err(e.into());
            }
        };
        for step in &m.steps {
            tracing::info!(account = %id, role = %step.role, from = %step.source.id, to = %step.target.id, "role migrated");
        }
        // The zones' records follow the site and the mail (a moved mail domain is signed with
        // its new server's DKIM key, whose record the zones then publish).
        match m.step(Role::Mail) {
            Some(_) => self.follow_mail(&moved).await,
            None => {
                let followed = async {
                    if self.refresh_managed(&moved, None).await? {
                        self.push_zones(id).await?;
                    }
                    Ok::<(), ControllerError>(())
                }
                .await;
                if let Err(e) = followed {
                    tracing::warn!(account = %id, error = %e, "the zones could not follow the migration; a reconciliation of the dns servers brings them up to date");
                }
            }
        }
        // The database users' grants name the web server's address: they follow too.
        self.db_follow_web(&moved).await;

        // Every server touched gets the account as now recorded: the sources lose the roles
        // (and the copied data), the writers run again.
        let data = match copied {
            true => DataFate::Remove,
            false => DataFate::Keep,
        };
        let mut last: Vec<&Server> = m.servers();
        for writer in &m.writers {
            if !last.iter().any(|s| s.id == writer.id) {
                last.push(writer);
            }
        }
        for server in last {
            let roles = moved.servers.roles_on(server.id);
            if let Err(e) = self.put_roles(server, &moved, roles, data).await {
                tracing::error!(account = %id, server = %server.id, error = %e,
                    "the account moved, but this server could not be brought to what is recorded; its reconciliation shows what is left");
            }
        }
        Ok(AccountView::from(&moved))
    }

    /// Copies the data of the moving roles through the account's repository in two passes
    /// (see the module's documentation); the servers whose writes it stopped are added to
    /// `frozen`.
    async fn move_data(
        &self,
        m: &Migration,
        set: u64,
        mut job: Option<&mut Job>,
        frozen: &mut Vec<ServerId>,
    ) -> Result<()> {
        let account = &m.account;
        let (_, repository, _) = self.repository(account).await?;
        let databases = match m.step(Role::Db) {
            Some(_) => self.database_names(account).await?,
            None => Vec::new(),
        };
        let mut base = Progress::default();
        for pass in 1..=2 {
            // Databases only once writes stopped: a dump is sent whole each time.
            let databases = match pass {
                1 => &[][..],
                _ => &databases[..],
            };
            for (server, run) in backups(m, &repository, set, databases) {
                let endpoint = AgentEndpoint::from(server);
                let task = AgentClient::new(&*self.transport, &endpoint)
                    .start_backup(&account.spec.username, &run)
                    .await
                    .map_err(|e| Self::agent_error(server.id, e))?;
                let done = self.follow(job.as_deref_mut(), server, task, base).await?;
                base = base.plus(&done);
            }
            for (server, run) in restores(m, &repository, set, databases) {
                let endpoint = AgentEndpoint::from(server);
                let task = AgentClient::new(&*self.transport, &endpoint)
                    .start_restore(&account.spec.username, &run)
                    .await
                    .map_err(|e| Self::agent_error(server.id, e))?;
                let done = self.follow(job.as_deref_mut(), server, task, base).await?;
                base = base.plus(&done);
            }
            tracing::info!(account = %account.id, pass, "data copied");
            if pass == 1 {
                for server in &m.writers {
                    let id = server.id;
                    frozen.push(id);
                    let endpoint = AgentEndpoint::from(server);
                    AgentClient::new(&*self.transport, &endpoint)
                        .freeze(&account.spec.username)
                        .await
                        .map_err(|e| Self::agent_error(id, e))?;
                }
            }
        }
        Ok(())
    }

    /// Undoes a migration that did not reach the switch: the targets in `touched` lose what
    /// they were given (copies: their data goes too), the servers in `frozen` get the account
    /// as recorded again (their PHP and mail run again). Best effort: logged when it cannot.
    async fn undo(&self, m: &Migration, touched: &[&Server], frozen: &[ServerId]) {
        let account = &m.account;
        for target in touched {
            let roles = m.before().roles_on(target.id);
            if let Err(e) = self
                .put_roles(target, account, roles, DataFate::Remove)
                .await
            {
                tracing::error!(account = %account.id, server = %target.id, error = %e,
                    "could not undo a partial migration; the next reconciliation reports it");
            }
        }
        let frozen = m
            .writers
            .iter()
            .filter(|w| frozen.contains(&w.id) && !touched.iter().any(|t| t.id == w.id));
        for server in frozen {
            if let Err(e) = self
                .put_roles(
                    server,
                    account,
                    m.before().roles_on(server.id),
                    DataFate::Keep,
                )
                .await
            {
                tracing::error!(account = %account.id, server = %server.id, error = %e,
                    "could not let the account's site and mail run again after a failed migration; the next put of the account does");
            }
        }
    }
}

/// The backups of one pass: each source, once, with what moves from it.
fn backups<'a>(
    m: &'a Migration,
    repository: &Repository,
    set: u64,
    databases: &[String],
) -> Vec<(&'a Server, BackupRun)> {
    let mut out = per_server(
        m,
        |s| &s.source,
        |roles| BackupRun {
            repository: repository.clone(),
            set,
            files: roles.contains(Role::Web),
            mail: roles.contains(Role::Mail),
            databases: match roles.contains(Role::Db) {
                true => databases.to_vec(),
                false => Vec::new(),
            },
        },
    );
    out.retain(|(_, r)| r.files || r.mail || !r.databases.is_empty());
    out
}

/// The restores of one pass: each target, once, with what moves to it.
fn restores<'a>(
    m: &'a Migration,
    repository: &Repository,
    set: u64,
    databases: &[String],
) -> Vec<(&'a Server, RestoreRun)> {
    let mut out = per_server(
        m,
        |s| &s.target,
        |roles| RestoreRun {
            repository: repository.clone(),
            set,
            files: roles.contains(Role::Web),
            mail: roles.contains(Role::Mail),
            mailbox: None,
            databases: match roles.contains(Role::Db) {
                true => databases.to_vec(),
                false => Vec::new(),
            },
        },
    );
    out.retain(|(_, r)| r.files || r.mail || !r.databases.is_empty());
    out
}

/// One `T` per server on the `side` of the steps (sources or targets), made from the roles
/// moving from or to it.
fn per_server<'a, T>(
    m: &'a Migration,
    side: impl Fn(&'a Step) -> &'a Server,
    make: impl Fn(RoleSet) -> T,
) -> Vec<(&'a Server, T)> {
    let mut servers: Vec<(&Server, RoleSet)> = Vec::new();
    for step in &m.steps {
        let server = side(step);
        match servers.iter_mut().find(|(s, _)| s.id == server.id) {
            Some((_, roles)) => *roles = roles.with(step.role),
            None => servers.push((server, RoleSet::EMPTY.with(step.role))),
        }
    }
    servers
        .into_iter()
        .map(|(server, roles)| (server, make(roles)))
        .collect()
}
