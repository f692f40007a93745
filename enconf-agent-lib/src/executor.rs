//! The one executor every change goes through, whatever role or module planned it.
//!
//! A module turns its part of a request into a [`Plan`]: files to write or remove, entries of
//! Postfix lmdb maps to set or delete (in place: a change costs the entries it touches, not the
//! size of the map), users and directories that must exist first, [`Check`]s to run on staged
//! copies, services to [`Reload`]. [`Executor::execute`] runs any plan:
//!
//! 1. users and directories are made (not rolled back: an unused user with empty directories
//!    serves nothing, and a pool whose user does not exist would not validate);
//! 2. the journal (every touched path, its previous content and mode, the previous value of
//!    every touched map entry, the reloads) is written and fsynced;
//! 3. every check runs at once, each on staged copies of the plan's new files, before anything
//!    live changes: a refused configuration never reaches the live files, so a reload still
//!    under way from an earlier apply cannot read one;
//! 4. the live files are replaced (rename; not yet fsynced: the journal covers a crash), then
//!    the map entries are set and deleted;
//! 5. each service is reloaded once; where the plan asks to settle, the answer waits until the
//!    daemon's old workers are gone;
//! 6. `syncfs`, then the journal is removed.
//!
//! A refusal in 3 changes nothing and answers with the validator's message; a failure in 4 or
//! 5 restores every file and map entry from the journal (and reloads again if a reload was
//! sent); a crash anywhere is undone by [`Executor::recover`] at the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use enconf_core::domain::UserName;
use serde::{Deserialize, Serialize};

use crate::config::Layout;
use crate::owners::Owners;
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
    /// A value this server cannot take (a PHP version it does not have); nothing was changed.
    #[error(transparent)]
    Invalid(#[from] enconf_core::domain::ValidationError),
    /// A request for a role this agent does not serve (`AGENT_ROLES`), or that the account
    /// does not have here.
    #[error("this agent does not serve the role {role}")]
    RoleNotServed { role: enconf_core::domain::Role },
    /// A zone the account asks for is served here for another account.
    #[error("the zone {zone} is served here for the account {owner}")]
    ZoneTaken { zone: String, owner: String },
    /// A database or user the account asks for exists here and is not the account's.
    #[error("{name}: {reason}")]
    DbTaken { name: String, reason: String },
    /// The account is not on this agent.
    #[error("no account {0} on this server")]
    UnknownAccount(UserName),
}

/// How a service reads changed files again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reload {
    /// A signal to the daemon whose pid file is given (`HUP` for nginx, `USR2` for PHP-FPM).
    Signal { pid_file: PathBuf, signal: String },
    /// A program to run (`postfix -c DIR reload`); `validator` names it in errors.
    Run {
        program: PathBuf,
        args: Vec<String>,
        validator: String,
    },
    /// PowerDNS made to serve a zone as its zone file says (or not at all, without one):
    /// [`crate::services::pdns::sync`]. It reads the files only, so it is the same forward,
    /// in a rollback and after a crash.
    Zone { zone: String },
    /// MariaDB made to hold the databases and users the account's record says:
    /// [`crate::services::mariadb::sync`]. It reads the files only, like `Zone`.
    Database { user: String },
}

/// A validation of a plan's new files, run before anything live changes. Implemented by the
/// modules that know a service (`nginx -t`, `php-fpm -t`, `doveconf -n`).
pub trait Check: Send + Sync + fmt::Debug + std::any::Any {
    fn run(&self, stage: &Stage<'_>) -> Result<(), ApplyError>;

    /// Takes `other` into this check when it is the same check over other files (one
    /// `nginx -t` for a whole batch of accounts), or gives it back.
    fn absorb(&mut self, other: Box<dyn Check>) -> Option<Box<dyn Check>> {
        Some(other)
    }
}

/// `other` as a `T`, when it is one (for [`Check::absorb`]); given back otherwise.
pub fn same_check<T: Check>(other: Box<dyn Check>) -> Result<Box<T>, Box<dyn Check>> {
    let any: &dyn std::any::Any = &*other;
    if !any.is::<T>() {
        return Err(other);
    }
    let any: Box<dyn std::any::Any> = other;
    any.downcast::<T>()
        .map_err(|_| -> Box<dyn Check> { unreachable_check() })
}

/// Sleeps until the wall clock has entered the next second (at most one second).
fn wait_for_next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let rest = 1_000_000_000u32.saturating_sub(now.subsec_nanos());
    std::thread::sleep(std::time::Duration::from_nanos(u64::from(rest) + 2_000_000));
}

/// Never called: `same_check` tested the type before converting.
#[allow(clippy::panic)]
fn unreachable_check() -> Box<dyn Check> {
    panic!("a check that was a T is not a T")
}

/// A directory that must exist before the plan is validated: path, owner, group, mode.
pub type Dir = (PathBuf, String, String, u32);

/// One change, as a module planned it.
#[derive(Debug, Default)]
pub struct Plan {
    /// New contents (`None`: remove), with the file mode.
    files: BTreeMap<PathBuf, Option<(Vec<u8>, u32)>>,
    users: Vec<(UserName, PathBuf)>,
    dirs: Vec<Dir>,
    checks: Vec<Box<dyn Check>>,
    reloads: BTreeSet<Reload>,
    /// Daemons (by pid file) whose old workers must be gone before the answer.
    settle: Vec<PathBuf>,
    /// The owner and group a written file is given (root's otherwise).
    owners: BTreeMap<PathBuf, (String, String)>,
    /// Files whose readers notice a change by modification time and size (in seconds), with
    /// the pid file of that reader: each new version's time is made later than the old one's.
    watched: BTreeMap<PathBuf, PathBuf>,
    /// Postfix lmdb maps (by path, without `.lmdb`): each key's new value (`None`: delete).
    maps: BTreeMap<PathBuf, BTreeMap<String, Option<String>>>,
}

impl Plan {
    pub fn write(&mut self, path: PathBuf, bytes: Vec<u8>, mode: u32) {
        self.files.insert(path, Some((bytes, mode)));
    }

    /// Writes a file owned by `owner:group` (a key a daemon reads as its own user).
    pub fn write_owned(&mut self, path: PathBuf, bytes: Vec<u8>, mode: u32, owner: (&str, &str)) {
        self.owners
            .insert(path.clone(), (owner.0.to_owned(), owner.1.to_owned()));
        self.write(path, bytes, mode);
    }

    /// Marks a written file as watched by modification time by the daemon of `pid_file`, which
    /// re-reads it when its time (whole seconds) or size changed, looking at most once a second
    /// (Dovecot's passwd-files):
    /// - its new time is made at least one second later than the old one's, or a second
    ///   version of the same size written within the same second would go unseen;
    /// - when that daemon runs, the plan's map entries go live only once the second of the
    ///   write has passed: from then on the daemon reads the new version, so Postfix never
    ///   accepts an address that Dovecot does not know yet (it would bounce the message).
    pub fn watched(&mut self, path: PathBuf, pid_file: PathBuf) {
        self.watched.insert(path, pid_file);
    }

    pub fn remove(&mut self, path: PathBuf) {
        self.owners.remove(&path);
        self.files.insert(path, None);
    }

    /// Sets `key` to `value` in the lmdb map at `map` (the path without `.lmdb`).
    pub fn map_set(&mut self, map: PathBuf, key: String, value: String) {
        self.maps.entry(map).or_default().insert(key, Some(value));
    }

    /// Deletes `key` from the lmdb map at `map`.
    pub fn map_delete(&mut self, map: PathBuf, key: String) {
        self.maps.entry(map).or_default().insert(key, None);
    }

    /// The map entries the plan sets or deletes, by map.
    pub fn map_edits(&self) -> &BTreeMap<PathBuf, BTreeMap<String, Option<String>>> {
        &self.maps
    }

    /// The new content the plan gives `path` (`None`: untouched or removed).
    pub fn content(&self, path: &Path) -> Option<&[u8]> {
        match self.files.get(path) {
            Some(Some((bytes, _))) => Some(bytes),
            _ => None,
        }
    }

    /// Whether the plan writes or removes `path`.
    pub fn touches(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// A login-less user (with its own group) the agent creates before validation, recorded
    /// as the agent's (see `crate::owners`).
    pub fn add_user(&mut self, user: UserName, home: PathBuf) {
        self.users.push((user, home));
    }

    pub fn dir(&mut self, dir: Dir) {
        self.dirs.push(dir);
    }

    /// Adds a check, merged into one of the same kind when there is one.
    pub fn check(&mut self, check: impl Check + 'static) {
        self.add_check(Box::new(check));
    }

    fn add_check(&mut self, mut check: Box<dyn Check>) {
        for existing in &mut self.checks {
            match existing.absorb(check) {
                None => return,
                Some(back) => check = back,
            }
        }
        self.checks.push(check);
    }

    pub fn reload(&mut self, reload: Reload) {
        self.reloads.insert(reload);
    }

    /// Answer only once the old workers of the daemon with this pid file are gone.
    pub fn settle(&mut self, pid_file: PathBuf) {
        if !self.settle.contains(&pid_file) {
            self.settle.push(pid_file);
        }
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.maps.is_empty()
            && self.users.is_empty()
            && self.dirs.is_empty()
    }

    /// Adds `other` to this plan.
    pub fn merge(&mut self, other: Plan) {
        self.files.extend(other.files);
        self.owners.extend(other.owners);
        self.watched.extend(other.watched);
        for (map, edits) in other.maps {
            self.maps.entry(map).or_default().extend(edits);
        }
        self.users.extend(other.users);
        self.dirs.extend(other.dirs);
        for check in other.checks {
            self.add_check(check);
        }
        self.reloads.extend(other.reloads);
        for s in other.settle {
            self.settle(s);
        }
    }
}

/// What a [`Check`] sees: the plan's new files and a place to stage copies of them.
pub struct Stage<'a> {
    system: &'a dyn System,
    layout: &'a Layout,
    plan: &'a Plan,
}

impl fmt::Debug for Stage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage").finish_non_exhaustive()
    }
}

impl Stage<'_> {
    pub fn layout(&self) -> &Layout {
        self.layout
    }

    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// The machine, for checks that run a program with input or look a map up.
    pub fn system(&self) -> &dyn System {
        self.system
    }

    /// The live file's content.
    pub fn read_live(&self, path: &Path) -> Result<Option<Vec<u8>>, SystemError> {
        self.system.read(path)
    }

    /// The directory checks work in (`<state_dir>/check`).
    pub fn dir(&self) -> PathBuf {
        check_dir(self.layout)
    }

    /// Writes a file into the check directory (its configuration for a validator).
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, SystemError> {
        let path = self.dir().join(name);
        self.system.write_atomic(&path, bytes, 0o600)?;
        Ok(path)
    }

    /// Runs a validator; a refusal is [`ApplyError::Rejected`] with what it printed.
    pub fn run(&self, validator: &str, program: &Path, args: &[&str]) -> Result<(), ApplyError> {
        self.system
            .run(program, args)
            .map(drop)
            .map_err(|e| rejected(validator, e))
    }

    /// Runs `f`, which may stage copies (keys among them), then removes every copy it made,
    /// whatever `f` returned.
    pub fn with_copies<T>(
        &self,
        f: impl FnOnce(&mut Copies<'_>) -> Result<T, ApplyError>,
    ) -> Result<T, ApplyError> {
        let mut copies = Copies {
            stage: self,
            made: Vec::new(),
        };
        let result = f(&mut copies);
        let mut removed = Ok(());
        for copy in copies.made {
            if let Err(e) = self.system.remove(&copy) {
                removed = Err(e);
            }
        }
        let value = result?;
        removed?;
        Ok(value)
    }
}

/// Copies staged for one check, removed when it is done.
pub struct Copies<'a> {
    stage: &'a Stage<'a>,
    made: Vec<PathBuf>,
}

impl fmt::Debug for Copies<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Copies").field("made", &self.made).finish()
    }
}

impl Copies<'_> {
    /// Stages `bytes` as `stage/<name>` (mode 0600) and returns its path.
    pub fn stage(&mut self, name: &str, bytes: &[u8]) -> Result<PathBuf, ApplyError> {
        let copy = self.stage.dir().join("stage").join(name);
        self.stage.system.write_unsynced(&copy, bytes, 0o600)?;
        self.made.push(copy.clone());
        Ok(copy)
    }

    /// Removes `path` with the copies (a file a validator made from one, such as a built map).
    pub fn track(&mut self, path: PathBuf) {
        self.made.push(path);
    }

    /// Stages the plan's new certificates and keys (names prefixed with `prefix`), so that a
    /// validator reads the new pair: [`StagedCerts::point`] turns a configuration text's live
    /// paths into the copies'.
    pub fn certs(&mut self, prefix: &str) -> Result<StagedCerts, ApplyError> {
        let plan = self.stage.plan;
        let cert_dir = &self.stage.layout.cert_dir;
        let mut renames = Vec::new();
        for (live, content) in &plan.files {
            if let (true, Some((bytes, _))) = (live.starts_with(cert_dir), content) {
                let name = live
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                let copy = self.stage(&format!("{prefix}{name}"), bytes)?;
                renames.push((live.display().to_string(), copy.display().to_string()));
            }
        }
        Ok(StagedCerts { renames })
    }
}

/// Staged copies of a plan's certificates and keys, by the live paths they replace.
#[derive(Debug)]
pub struct StagedCerts {
    renames: Vec<(String, String)>,
}

impl StagedCerts {
    pub fn is_empty(&self) -> bool {
        self.renames.is_empty()
    }

    /// `text` with each live certificate or key path replaced by its staged copy's.
    pub fn point(&self, text: &[u8]) -> Vec<u8> {
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

fn check_dir(layout: &Layout) -> PathBuf {
    layout.state_dir.join("check")
}

/// Turns a validator's failure into a refusal with its output.
pub fn rejected(validator: &str, e: SystemError) -> ApplyError {
    match e {
        SystemError::Command { output, .. } => ApplyError::Rejected {
            validator: validator.to_owned(),
            message: output,
        },
        other => ApplyError::System(other),
    }
}

/// The journal of an apply under way.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// Each touched path and its content before the apply.
    previous: Vec<Previous>,
    #[serde(default)]
    reloads: Vec<Reload>,
    /// Releases before the seam recorded reloads per service.
    #[serde(default)]
    reload_nginx: bool,
    #[serde(default)]
    reload_php: BTreeSet<enconf_core::domain::PhpVersion>,
    /// Each touched map entry and its value before the apply.
    #[serde(default)]
    maps: Vec<MapPrevious>,
}

/// A map entry as it was before an apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MapPrevious {
    map: PathBuf,
    key: String,
    /// `None`: it was not there.
    value: Option<String>,
}

/// A file as it was before an apply.
#[derive(Debug, Serialize, Deserialize)]
struct Previous {
    path: PathBuf,
    /// `None`: it did not exist.
    content: Option<String>,
    /// The permission bits to put it back with (a file keeps its mode across versions).
    mode: u32,
    /// The owner to put it back with (root's when absent).
    #[serde(default)]
    owner: Option<(String, String)>,
}

/// Runs plans against a [`System`] laid out as [`Layout`] says.
#[derive(Debug)]
pub struct Executor<S> {
    layout: Layout,
    system: S,
}

impl<S: System> Executor<S> {
    pub fn new(layout: Layout, system: S) -> Self {
        Self { layout, system }
    }

    pub fn system(&self) -> &S {
        &self.system
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The users the agent created.
    pub(crate) fn owners(&self) -> Owners<'_, S> {
        Owners::new(&self.system, &self.layout.state_dir)
    }

    fn journal_path(&self) -> PathBuf {
        self.layout.state_dir.join("journal.json")
    }

    /// Runs `plan` (see the module documentation). A plan that changes nothing does nothing.
    pub fn execute(&self, mut plan: Plan) -> Result<(), ApplyError> {
        if plan.is_empty() {
            return Ok(());
        }
        self.prepare(&mut plan)?;
        if plan.files.is_empty() && plan.maps.is_empty() {
            return Ok(());
        }
        let journaling = Instant::now();
        let reloads: Vec<Reload> = plan.reloads.iter().cloned().collect();
        let mut journal = Journal {
            previous: Vec::with_capacity(plan.files.len()),
            reloads: reloads.clone(),
            ..Journal::default()
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
                owner: plan.owners.get(path).cloned(),
            });
        }
        let postmap = &self.layout.postmap_bin;
        for (map, edits) in &plan.maps {
            let keys: Vec<String> = edits.keys().cloned().collect();
            let values = self.system.map_query(postmap, map, &keys)?;
            journal.maps.extend(
                keys.into_iter()
                    .zip(values)
                    .map(|(key, value)| MapPrevious {
                        map: map.clone(),
                        key,
                        value,
                    }),
            );
        }
        let journal_bytes =
            serde_json::to_vec(&journal).map_err(|e| ApplyError::State(e.to_string()))?;
        self.system
            .write_atomic(&self.journal_path(), &journal_bytes, 0o600)?;

        let journaled = journaling.elapsed();
        let (mut touched, mut reloading) = (false, false);
        let outcome =
            self.check_write_reload(&plan, &reloads, journaled, &mut touched, &mut reloading);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "apply failed; the previous files stay or are restored");
        }
        if outcome.is_err() && touched {
            self.restore(&journal.previous)?;
            self.restore_maps(&journal.maps)?;
            // Before the reload step the services never read the new files: nothing to undo.
            // After it, some may have: reload them onto the restored files. A failure here is
            // logged; the journal goes because the files are back.
            if reloading && let Err(reload) = self.reload(&reloads) {
                tracing::warn!(error = %reload, "reload after rollback failed");
            }
        }
        self.system.remove(&self.journal_path())?;
        outcome
    }

    /// Users first (a pool whose user does not exist does not validate), then directories.
    fn prepare(&self, plan: &mut Plan) -> Result<(), ApplyError> {
        let started = Instant::now();
        let users = std::mem::take(&mut plan.users);
        let recorded = std::cell::Cell::new(started.elapsed());
        if !users.is_empty() {
            let owners = self.owners();
            // The records go in before the users, with the uids they will get.
            let outcome = self.system.add_users(&users, &|ids| {
                owners.record_new(&users, ids)?;
                recorded.set(started.elapsed());
                Ok(())
            });
            if let Err(e) = outcome {
                for (user, _) in &users {
                    if let Err(forget) = owners.forget(user) {
                        tracing::warn!(%user, error = %forget, "could not drop a user record");
                    }
                }
                return Err(e.into());
            }
        }
        let users_done = started.elapsed();
        let dirs = std::mem::take(&mut plan.dirs);
        // Any order gives the same result: a directory made for a child before its own turn
        // gets its owner and mode when its turn comes.
        crate::parallel::each(&dirs, |(path, owner, group, mode)| {
            self.system.ensure_dir(path, owner, group, *mode)
        })?;
        if !users.is_empty() || !dirs.is_empty() {
            tracing::info!(
                new_users = users.len(),
                dirs = dirs.len(),
                users_ms = users_done.as_millis(),
                record_ms = recorded.get().as_millis(),
                dirs_ms = (started.elapsed() - users_done).as_millis(),
                "prepared"
            );
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
            map_entries = journal.maps.len(),
            "undoing an interrupted apply"
        );
        self.restore(&journal.previous)?;
        self.restore_maps(&journal.maps)?;
        let mut reloads = journal.reloads;
        if journal.reload_nginx {
            reloads.push(crate::services::nginx::reload(&self.layout));
        }
        for v in &journal.reload_php {
            reloads.push(crate::services::php_fpm::reload(&self.layout, *v));
        }
        self.reload(&reloads)?;
        self.system.remove(&self.journal_path())?;
        Ok(true)
    }

    /// Puts every journaled file back, durably.
    fn restore(&self, previous: &[Previous]) -> Result<(), SystemError> {
        for p in previous {
            match &p.content {
                Some(c) => {
                    // A restored version is a change too for who watches the time (a
                    // passwd-file): it must not keep the time of the version it replaces.
                    let before = self.system.modified_secs(&p.path)?;
                    match &p.owner {
                        Some((owner, group)) => self.system.write_owned_unsynced(
                            &p.path,
                            c.as_bytes(),
                            p.mode,
                            (owner, group),
                        )?,
                        None => self.system.write_unsynced(&p.path, c.as_bytes(), p.mode)?,
                    }
                    if let (Some(before), Some(now)) = (before, self.system.modified_secs(&p.path)?)
                        && now <= before
                    {
                        self.system.set_modified_secs(&p.path, before + 1)?;
                    }
                }
                None => {
                    self.system.remove(&p.path)?;
                }
            }
        }
        self.sync_parents(previous.iter().map(|p| &p.path))
    }

    /// Puts every journaled map entry back.
    fn restore_maps(&self, previous: &[MapPrevious]) -> Result<(), SystemError> {
        let mut by_map: BTreeMap<&PathBuf, BTreeMap<String, Option<String>>> = BTreeMap::new();
        for p in previous {
            by_map
                .entry(&p.map)
                .or_default()
                .insert(p.key.clone(), p.value.clone());
        }
        for (map, entries) in by_map {
            self.update_map(map, &entries)?;
        }
        Ok(())
    }

    /// Sets and deletes the entries of one map.
    fn update_map(
        &self,
        map: &Path,
        entries: &BTreeMap<String, Option<String>>,
    ) -> Result<(), SystemError> {
        let mut set = Vec::new();
        let mut delete = Vec::new();
        for (k, v) in entries {
            match v {
                Some(v) => set.push((k.clone(), v.clone())),
                None => delete.push(k.clone()),
            }
        }
        self.system
            .map_update(&self.layout.postmap_bin, map, &set, &delete)
    }

    /// Makes the writes to `paths` durable: one `sync` over their distinct directories.
    fn sync_parents<'a>(
        &self,
        paths: impl Iterator<Item = &'a PathBuf>,
    ) -> Result<(), SystemError> {
        let dirs: BTreeSet<&Path> = paths.filter_map(|p| p.parent()).collect();
        self.system.sync(&dirs.into_iter().collect::<Vec<_>>())
    }

    /// Writes (or removes) one file of `plan`, not durably.
    fn put_file(
        &self,
        plan: &Plan,
        path: &Path,
        content: &Option<(Vec<u8>, u32)>,
    ) -> Result<(), ApplyError> {
        let Some((bytes, mode)) = content else {
            self.system.remove(path)?;
            return Ok(());
        };
        let before = if plan.watched.contains_key(path) {
            self.system.modified_secs(path)?
        } else {
            None
        };
        match plan.owners.get(path) {
            Some((owner, group)) => {
                self.system
                    .write_owned_unsynced(path, bytes, *mode, (owner, group))?
            }
            None => self.system.write_unsynced(path, bytes, *mode)?,
        }
        if let (Some(before), Some(now)) = (before, self.system.modified_secs(path)?)
            && now <= before
        {
            self.system.set_modified_secs(path, before + 1)?;
        }
        Ok(())
    }

    /// Validates, writes and reloads. `touched` turns true once live files may have changed,
    /// `reloading` once a reload may have been sent.
    fn check_write_reload(
        &self,
        plan: &Plan,
        reloads: &[Reload],
        journaled: std::time::Duration,
        touched: &mut bool,
        reloading: &mut bool,
    ) -> Result<(), ApplyError> {
        let started = Instant::now();
        let stage = Stage {
            system: &self.system,
            layout: &self.layout,
            plan,
        };
        // Every check at once (nginx and PHP-FPM over thousands of files take seconds each);
        // a panic (a crash, in tests) is not caught.
        let results: Vec<Result<(), ApplyError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = plan
                .checks
                .iter()
                .map(|check| scope.spawn(|| check.run(&stage)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.into_iter().collect::<Result<(), ApplyError>>()?;
        let checked = started.elapsed();
        // The journal is durable: the files need not be, until it is removed (sync below).
        // Each file is its own: they are written in any order.
        *touched = true;
        let files: Vec<_> = plan.files.iter().collect();
        crate::parallel::each(&files, |(path, content)| self.put_file(plan, path, content))?;
        if !plan.maps.is_empty()
            && plan.watched.iter().any(|(path, pid_file)| {
                plan.files.contains_key(path)
                    && self.system.daemon_running(pid_file).unwrap_or(false)
            })
        {
            wait_for_next_second();
        }
        for (map, edits) in &plan.maps {
            self.update_map(map, edits)?;
        }
        let written = started.elapsed();
        *reloading = true;
        let workers: Vec<(PathBuf, Vec<u32>)> = plan
            .settle
            .iter()
            .filter_map(|pid_file| Some((pid_file.clone(), self.workers(pid_file)?)))
            .collect();
        self.reload(reloads)?;
        for (pid_file, before) in &workers {
            self.await_old_workers_gone(pid_file, before);
        }
        let reloaded = started.elapsed();
        self.sync_parents(plan.files.keys())?;
        tracing::info!(
            files = plan.files.len(),
            map_entries = plan.maps.values().map(BTreeMap::len).sum::<usize>(),
            checks = plan.checks.len(),
            journal_ms = journaled.as_millis(),
            check_ms = checked.as_millis(),
            write_ms = (written - checked).as_millis(),
            reload_ms = (reloaded - written).as_millis(),
            sync_ms = (started.elapsed() - reloaded).as_millis(),
            "applied"
        );
        Ok(())
    }

    fn reload(&self, reloads: &[Reload]) -> Result<(), ApplyError> {
        for r in reloads {
            match r {
                Reload::Signal { pid_file, signal } => self.system.signal(pid_file, signal)?,
                Reload::Run {
                    program,
                    args,
                    validator,
                } => {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    self.system
                        .run(program, &args)
                        .map_err(|e| rejected(validator, e))?;
                }
                Reload::Zone { zone } => {
                    crate::services::pdns::sync(&self.system, &self.layout, zone)?
                }
                Reload::Database { user } => {
                    crate::services::mariadb::sync(&self.system, &self.layout, user)?
                }
            }
        }
        Ok(())
    }

    /// A daemon's worker processes now, where they can be seen (not in the sandbox).
    fn workers(&self, pid_file: &Path) -> Option<Vec<u32>> {
        self.system.children(pid_file).ok().flatten()
    }

    /// Waits (up to 30 s) until the workers in `before` are gone: from then on every answer
    /// comes from the new configuration. Only where that matters (an ACME CA must not ask an
    /// old nginx worker): with many thousands of vhosts nginx takes seconds to read a new
    /// configuration, and an account put does not wait for that.
    fn await_old_workers_gone(&self, pid_file: &Path, before: &[u32]) {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = self.workers(pid_file).unwrap_or_default();
            let old_left = now.iter().filter(|p| before.contains(p)).count();
            if old_left == 0 && !now.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    pid_file = %pid_file.display(),
                    old_workers = old_left,
                    "workers of the old configuration are still running"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
