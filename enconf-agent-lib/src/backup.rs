//! Backups and restores of an account's data with restic, and the backup server's side.
//!
//! This is data, not configuration: nothing here goes through the executor. What runs:
//!
//! - **On a server holding some of the account** (web, mail, db): `restic backup` of the web
//!   root and the Maildirs of the account's domains (one snapshot), and of each database a
//!   `mariadb-dump --single-transaction` streamed into `restic backup --stdin` (one snapshot
//!   each, no copy of the dump on disk). A dump that fails kills restic before its input ends,
//!   so no snapshot of a broken dump is ever written. Every snapshot is tagged with the set
//!   (`enconf-set-<n>`) and what it holds (`files`, `mail`, `db:<name>`). restic reads the
//!   repository URL (with the account's HTTP password) and the key from its environment,
//!   never from its command line.
//! - **A restore** reads each part into a staging directory beside the live one and puts it
//!   in place with `rsync -a --delete` (files, Maildirs; one mailbox alone when asked); a
//!   database is loaded from `restic dump` into a fresh database first, and only when the
//!   whole dump loaded are its tables swapped in with one atomic `RENAME TABLE`.
//! - **On the backup server**: `rclone serve restic --append-only --private-repos` serves the
//!   repositories (supervised by the agent: started with it, started again when it stops);
//!   pruning (`restic forget --prune` by the retention policy) runs here, on the local
//!   directory, the only place deleting is allowed.
//!
//! The work runs on a thread of its own per task; the controller follows it through
//! `GET /v1/tasks/{id}` ([`Tasks`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use enconf_core::domain::UserName;
use enconf_core::protocol::backup::{
    BackupRun, PruneRun, Repository, RestoreRun, SetsKept, TaskStatus, TaskView,
};

use crate::config::Layout;

/// Why a backup step failed: what the task reports (never a secret).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{program} could not start: {reason}")]
    Start { program: String, reason: String },
    #[error("{program} failed: {output}")]
    Failed { program: String, output: String },
    #[error("{0}")]
    Io(String),
    #[error("the snapshot set {set} has no {what}")]
    Missing { set: u64, what: String },
}

type Result<T, E = BackupError> = std::result::Result<T, E>;

/// The tasks this agent runs or ran since it started (the last 256 finished ones kept).
#[derive(Debug, Default)]
pub struct Tasks {
    inner: Mutex<TaskTable>,
}

#[derive(Debug, Default)]
struct TaskTable {
    next: u64,
    tasks: HashMap<u64, Arc<Mutex<TaskView>>>,
}

const KEPT_TASKS: usize = 256;

impl Tasks {
    /// Starts `work` on a thread of its own; the answer is the task as it starts.
    pub fn start(
        &self,
        work: impl FnOnce(&Progress) -> Result<()> + Send + 'static,
    ) -> Result<TaskView> {
        let mut table = self
            .inner
            .lock()
            .map_err(|_| BackupError::Io("the task table is poisoned".into()))?;
        table.next += 1;
        let id = table.next;
        if table.tasks.len() >= KEPT_TASKS {
            let mut done: Vec<u64> = table
                .tasks
                .iter()
                .filter(|(_, t)| t.lock().is_ok_and(|t| t.status != TaskStatus::Running))
                .map(|(id, _)| *id)
                .collect();
            done.sort_unstable();
            for old in done.iter().take(table.tasks.len() + 1 - KEPT_TASKS) {
                table.tasks.remove(old);
            }
        }
        let view = TaskView {
            id,
            status: TaskStatus::Running,
            done: 0,
            total: 0,
            files_done: 0,
            files_total: 0,
            error: None,
            size_bytes: 0,
            bytes_added: 0,
        };
        let shared = Arc::new(Mutex::new(view.clone()));
        table.tasks.insert(id, Arc::clone(&shared));
        drop(table);
        std::thread::Builder::new()
            .name(format!("task-{id}"))
            .spawn(move || {
                let progress = Progress {
                    view: Arc::clone(&shared),
                    base: Mutex::new(Base::default()),
                };
                let result = work(&progress);
                if let Ok(mut v) = shared.lock() {
                    match result {
                        Ok(()) => {
                            v.status = TaskStatus::Succeeded;
                            v.done = v.total.max(v.done);
                        }
                        Err(e) => {
                            tracing::warn!(task = id, error = %e, "task failed");
                            v.status = TaskStatus::Failed;
                            v.error = Some(e.to_string());
                        }
                    }
                }
            })
            .map_err(|e| BackupError::Io(format!("cannot start a thread: {e}")))?;
        Ok(view)
    }

    pub fn get(&self, id: u64) -> Option<TaskView> {
        let table = self.inner.lock().ok()?;
        let task = table.tasks.get(&id)?;
        task.lock().ok().map(|t| t.clone())
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Base {
    done: u64,
    total: u64,
    files_done: u64,
    files_total: u64,
}

/// A running task's progress, as its steps report it (each step's figures add to those of
/// the steps before).
#[derive(Debug)]
pub struct Progress {
    view: Arc<Mutex<TaskView>>,
    base: Mutex<Base>,
}

impl Progress {
    fn step(&self, done: u64, total: u64, files_done: u64, files_total: u64) {
        let base = self.base.lock().map(|b| *b).unwrap_or_default();
        if let Ok(mut v) = self.view.lock() {
            v.done = base.done + done;
            v.total = base.total + total.max(done);
            v.files_done = base.files_done + files_done;
            v.files_total = base.files_total + files_total.max(files_done);
        }
    }

    /// Ends a step that read `size` bytes in `files` files and added `added` to the
    /// repository: the step counts as whole, and is the base of the next.
    fn finish_step(&self, size: u64, files: u64, added: u64) {
        let (Ok(mut v), Ok(mut base)) = (self.view.lock(), self.base.lock()) else {
            return;
        };
        let bytes = (v.total - base.total.min(v.total)).max(size);
        let count = (v.files_total - base.files_total.min(v.files_total)).max(files);
        base.done += bytes;
        base.total += bytes;
        base.files_done += count;
        base.files_total += count;
        v.done = base.done;
        v.total = base.total;
        v.files_done = base.files_done;
        v.files_total = base.files_total;
        v.size_bytes += size;
        v.bytes_added += added;
    }
}

/// Where the account's data is on this server, as the host sees it (`host` maps the
/// layout's paths: the identity on a real system, under the root in the sandbox).
#[derive(Debug, Clone)]
pub struct Places {
    pub web_root: PathBuf,
    /// The Maildir directory of each of the account's domains.
    pub mail_domains: Vec<PathBuf>,
    pub vmail_dir: PathBuf,
    /// Who owns the web root's files (the account's user) and the Maildirs (the mail
    /// user); `None` where the machine's users are not the agent's (the sandbox).
    pub owner: Option<String>,
    pub mail_owner: Option<String>,
}

/// The programs and places a backup or restore uses.
#[derive(Debug, Clone)]
pub struct Tools {
    pub restic: PathBuf,
    pub mariadb: PathBuf,
    pub mariadb_dump: PathBuf,
    pub rsync: PathBuf,
    pub db_socket: PathBuf,
    pub db_admin_user: String,
    /// restic's cache and the staging directories of restores.
    pub work_dir: PathBuf,
    pub vmail_user: String,
}

impl Tools {
    pub fn of(layout: &Layout, host: impl Fn(&Path) -> PathBuf) -> Self {
        Self {
            restic: layout.restic_bin.clone(),
            mariadb: layout.mariadb_bin.clone(),
            mariadb_dump: layout.mariadb_dump_bin.clone(),
            rsync: layout.rsync_bin.clone(),
            db_socket: layout.db_socket.clone(),
            db_admin_user: layout.db_admin_user.clone(),
            work_dir: host(&layout.state_dir.join("backup-work")),
            vmail_user: layout.vmail_user.clone(),
        }
    }

    /// restic for the account's repository: the URL (with the HTTP password) and the key in
    /// its environment, nothing else of ours.
    fn restic(&self, repo: &Repository, user: &UserName) -> Command {
        restic_command(
            &self.restic,
            std::ffi::OsStr::new(&repo.url_with_access(user)),
            repo.key.expose_secret(),
            &self.work_dir,
        )
    }
}

/// restic for one repository: its location and key in the environment (never on the command
/// line), its cache under `work_dir`, nothing else of the agent's environment.
fn restic_command(
    restic: &Path,
    repository: &std::ffi::OsStr,
    key: &str,
    work_dir: &Path,
) -> Command {
    let mut cmd = Command::new(restic);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", work_dir)
        .env("RESTIC_REPOSITORY", repository)
        .env("RESTIC_PASSWORD", key)
        .env("RESTIC_CACHE_DIR", work_dir.join("cache"));
    cmd
}

fn set_tag(set: u64) -> String {
    format!("enconf-set-{set}")
}

fn spawn(cmd: &mut Command, program: &str) -> Result<Child> {
    cmd.spawn().map_err(|e| BackupError::Start {
        program: program.to_owned(),
        reason: e.to_string(),
    })
}

/// Runs `cmd` to its end; its output when it succeeds.
fn output(cmd: &mut Command, program: &str) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BackupError::Start {
            program: program.to_owned(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(failed(program, &out.stderr, &out.stdout))
    }
}

fn failed(program: &str, stderr: &[u8], stdout: &[u8]) -> BackupError {
    let text = if stderr.is_empty() { stdout } else { stderr };
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() > 6 {
        lines.drain(..lines.len() - 6);
    }
    BackupError::Failed {
        program: program.to_owned(),
        output: lines.join(" / "),
    }
}

/// Makes the repository when it does not exist yet (`restic cat config` fails).
fn ensure_repository(tools: &Tools, repo: &Repository, user: &UserName) -> Result<()> {
    std::fs::create_dir_all(&tools.work_dir).map_err(|e| BackupError::Io(e.to_string()))?;
    let probe = tools
        .restic(repo, user)
        .args(["cat", "config"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BackupError::Start {
            program: "restic".into(),
            reason: e.to_string(),
        })?;
    if probe.status.success() {
        return Ok(());
    }
    output(tools.restic(repo, user).args(["init"]), "restic init").map(drop)
}

/// What restic's summary says: bytes read, files read, bytes added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub size: u64,
    pub files: u64,
    pub added: u64,
}

/// One line of `restic backup --json` as far as a task cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResticLine {
    /// Bytes done, bytes in all, files done, files in all (so far).
    Status {
        done: u64,
        total: u64,
        files_done: u64,
        files_total: u64,
    },
    Summary(Summary),
}

/// Reads one line of restic's `--json` output (anything else, or a line that is not JSON,
/// is `None`; a missing or negative figure is 0).
pub fn restic_line(line: &str) -> Option<ResticLine> {
    let value = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let n = |k: &str| {
        value
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    match value.get("message_type").and_then(|v| v.as_str()) {
        Some("status") => Some(ResticLine::Status {
            done: n("bytes_done"),
            total: n("total_bytes"),
            files_done: n("files_done"),
            files_total: n("total_files"),
        }),
        Some("summary") => Some(ResticLine::Summary(Summary {
            size: n("total_bytes_processed"),
            files: n("total_files_processed"),
            added: n("data_added"),
        })),
        _ => None,
    }
}

/// Reads restic's `--json` lines: progress into `progress`, the summary returned.
fn follow_restic(stdout: std::process::ChildStdout, progress: &Progress) -> Summary {
    let mut summary = Summary::default();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match restic_line(&line) {
            Some(ResticLine::Status {
                done,
                total,
                files_done,
                files_total,
            }) => progress.step(done, total, files_done, files_total),
            Some(ResticLine::Summary(s)) => summary = s,
            None => {}
        }
    }
    summary
}

fn wait_restic(mut child: Child, program: &str) -> Result<()> {
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    let status = child.wait().map_err(|e| BackupError::Io(e.to_string()))?;
    match status.success() {
        true => Ok(()),
        false => Err(failed(program, &stderr, b"")),
    }
}

/// Backs up what `run` asks of the account into its repository.
pub fn backup(
    tools: &Tools,
    places: &Places,
    host: &str,
    user: &UserName,
    run: &BackupRun,
    progress: &Progress,
) -> Result<()> {
    ensure_repository(tools, &run.repository, user)?;
    let tag = set_tag(run.set);
    let mut paths: Vec<(&Path, &str)> = Vec::new();
    if run.files && places.web_root.exists() {
        paths.push((&places.web_root, "files"));
    }
    if run.mail {
        for dir in places.mail_domains.iter().filter(|d| d.exists()) {
            paths.push((dir, "mail"));
        }
    }
    if !paths.is_empty() {
        let mut cmd = tools.restic(&run.repository, user);
        cmd.args(["backup", "--json", "--host", host, "--tag", &tag]);
        let mut kinds: Vec<&str> = paths.iter().map(|(_, k)| *k).collect();
        kinds.dedup();
        for kind in kinds {
            cmd.args(["--tag", kind]);
        }
        cmd.args(paths.iter().map(|(p, _)| p.as_os_str()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(&mut cmd, "restic backup")?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(BackupError::Io("restic has no output".into()));
        };
        let summary = follow_restic(stdout, progress);
        wait_restic(child, "restic backup")?;
        progress.finish_step(summary.size, summary.files, summary.added);
    }
    for db in &run.databases {
        backup_database(tools, host, user, run, db, progress)?;
    }
    Ok(())
}

/// `mariadb-dump --single-transaction <db> | restic backup --stdin`, streamed; a failed dump
/// kills restic before its input ends, so no snapshot of it is written.
fn backup_database(
    tools: &Tools,
    host: &str,
    user: &UserName,
    run: &BackupRun,
    db: &str,
    progress: &Progress,
) -> Result<()> {
    check_db_name(user, db)?;
    let mut dump = spawn(
        Command::new(&tools.mariadb_dump)
            .arg(format!("--socket={}", tools.db_socket.display()))
            .arg(format!("--user={}", tools.db_admin_user))
            .args([
                "--single-transaction",
                "--quick",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--default-character-set=utf8mb4",
                "--",
                db,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "mariadb-dump",
    )?;
    let mut restic = spawn(
        tools
            .restic(&run.repository, user)
            .args(["backup", "--json", "--host", host, "--stdin"])
            .arg(format!("--stdin-filename={db}.sql"))
            .args(["--tag", &set_tag(run.set), "--tag", &format!("db:{db}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "restic backup",
    )?;
    let (Some(mut from), Some(to), Some(out), Some(mut dump_err)) = (
        dump.stdout.take(),
        restic.stdin.take(),
        restic.stdout.take(),
        dump.stderr.take(),
    ) else {
        let _ = dump.kill();
        let _ = restic.kill();
        return Err(BackupError::Io(
            "no pipe between the dump and restic".into(),
        ));
    };
    std::thread::scope(|s| {
        let follower = s.spawn(|| follow_restic(out, progress));
        let errors = s.spawn(move || {
            let mut err = Vec::new();
            let _ = dump_err.read_to_end(&mut err);
            err
        });
        let mut to = to;
        let copied = std::io::copy(&mut from, &mut to);
        let status = dump.wait();
        let err = errors.join().unwrap_or_default();
        let dumped = matches!(&status, Ok(s) if s.success()) && copied.is_ok();
        if !dumped {
            // restic has not seen the end of its input: killed now, it writes no snapshot.
            let _ = restic.kill();
            drop(to);
            let _ = follower.join();
            let _ = restic.wait();
            return Err(match copied {
                Err(e) if status.as_ref().is_ok_and(|s| s.success()) => {
                    BackupError::Io(format!("streaming the dump of {db}: {e}"))
                }
                _ => failed("mariadb-dump", &err, b""),
            });
        }
        drop(to);
        let summary = follower.join().unwrap_or_default();
        wait_restic(restic, "restic backup")?;
        progress.finish_step(summary.size, summary.files, summary.added);
        Ok(())
    })
}

/// A database of the account `user`: its full name, with the account's prefix (one account's
/// request never dumps or replaces another's database).
fn check_db_name(user: &UserName, db: &str) -> Result<()> {
    match enconf_core::domain::db::DbName::parse_full(db) {
        Ok(name) if name.belongs_to(user) => Ok(()),
        _ => Err(BackupError::Io(format!(
            "{db:?} is not a database of the account {user}"
        ))),
    }
}

#[derive(Debug, serde::Deserialize)]
struct SnapshotInfo {
    id: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    time: String,
}

/// The set's snapshots (newest last).
fn snapshots_of(
    tools: &Tools,
    repo: &Repository,
    user: &UserName,
    set: u64,
) -> Result<Vec<SnapshotInfo>> {
    let out = output(
        tools
            .restic(repo, user)
            .args(["snapshots", "--json", "--tag", &set_tag(set)]),
        "restic snapshots",
    )?;
    let mut list: Vec<SnapshotInfo> =
        serde_json::from_slice(&out).map_err(|e| BackupError::Io(e.to_string()))?;
    list.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(list)
}

/// Restores what `run` asks of the account from the set.
pub fn restore(
    tools: &Tools,
    places: &Places,
    user: &UserName,
    run: &RestoreRun,
    progress: &Progress,
) -> Result<()> {
    let snapshots = snapshots_of(tools, &run.repository, user, run.set)?;
    // The newest snapshot with `tag` holding a directory named as `live` is (the web root is
    // named after the user, a domain's Maildirs after the domain), and that directory's path
    // in it: the server that made it may keep it elsewhere (a migration).
    let latest = |tag: &str, live: &Path| {
        snapshots.iter().rev().find_map(|s| {
            if !s.tags.iter().any(|t| t == tag) {
                return None;
            }
            s.paths
                .iter()
                .find(|p| Path::new(p).file_name() == live.file_name())
                .map(|p| (s.id.clone(), PathBuf::from(p)))
        })
    };
    if run.files {
        let (id, saved) = latest("files", &places.web_root).ok_or(BackupError::Missing {
            set: run.set,
            what: "files".into(),
        })?;
        let owner = places.owner.as_ref().map(|u| (u.as_str(), u.as_str()));
        let tree = Tree {
            saved: &saved,
            live: &places.web_root,
            only: None,
            owner,
        };
        restore_tree(tools, &run.repository, user, &id, &tree)?;
        progress.finish_step(0, 0, 0);
    }
    if run.mail {
        for dir in &places.mail_domains {
            let Some((id, saved)) = latest("mail", dir) else {
                continue;
            };
            let only = match &run.mailbox {
                Some(address) => match address.split_once('@') {
                    Some((local, domain)) if dir.ends_with(domain) => Some(local.to_owned()),
                    _ => continue,
                },
                None => None,
            };
            let owner = places.mail_owner.as_ref().map(|u| (u.as_str(), u.as_str()));
            let tree = Tree {
                saved: &saved,
                live: dir,
                only: only.as_deref(),
                owner,
            };
            restore_tree(tools, &run.repository, user, &id, &tree)?;
            progress.finish_step(0, 0, 0);
        }
    }
    for db in &run.databases {
        check_db_name(user, db)?;
        let tag = format!("db:{db}");
        let id = snapshots
            .iter()
            .rev()
            .find(|s| s.tags.contains(&tag))
            .map(|s| s.id.clone())
            .ok_or(BackupError::Missing {
                set: run.set,
                what: format!("dump of {db}"),
            })?;
        restore_database(tools, &run.repository, user, &id, db)?;
        progress.finish_step(0, 0, 0);
    }
    Ok(())
}

/// A directory to put back: where the snapshot has it, where it goes here, optionally only
/// one entry of it (a mailbox), and who owns what is put there.
struct Tree<'a> {
    saved: &'a Path,
    live: &'a Path,
    only: Option<&'a str>,
    owner: Option<(&'a str, &'a str)>,
}

/// Restores a directory from a snapshot: into a staging directory, then `rsync -a --delete`
/// into place (owned by the account's user when given), so the live tree is never
/// half-extracted.
fn restore_tree(
    tools: &Tools,
    repo: &Repository,
    user: &UserName,
    snapshot: &str,
    tree: &Tree<'_>,
) -> Result<()> {
    let (saved, live) = match tree.only {
        Some(entry) => (tree.saved.join(entry), tree.live.join(entry)),
        None => (tree.saved.to_path_buf(), tree.live.to_path_buf()),
    };
    let stage = tools
        .work_dir
        .join(format!("restore-{user}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).map_err(|e| BackupError::Io(e.to_string()))?;
    let result = (|| {
        output(
            tools
                .restic(repo, user)
                .args(["restore", snapshot, "--target"])
                .arg(&stage)
                .arg("--include")
                .arg(&saved),
            "restic restore",
        )?;
        let staged = stage.join(saved.strip_prefix("/").unwrap_or(&saved));
        if !staged.exists() {
            return Err(BackupError::Missing {
                set: 0,
                what: saved.display().to_string(),
            });
        }
        std::fs::create_dir_all(&live).map_err(|e| BackupError::Io(e.to_string()))?;
        let mut from = staged.into_os_string();
        from.push("/");
        let mut to = live.as_os_str().to_owned();
        to.push("/");
        let mut rsync = Command::new(&tools.rsync);
        rsync.args(["-a", "--delete"]);
        if let Some((owner, group)) = tree.owner {
            rsync.arg(format!("--chown={owner}:{group}"));
        }
        output(rsync.arg("--").arg(from).arg(to), "rsync").map(drop)
    })();
    let _ = std::fs::remove_dir_all(&stage);
    result
}

/// Runs SQL as the admin over the socket; the rows, tab-separated.
fn sql(tools: &Tools, statement: &str) -> Result<Vec<String>> {
    let out = output(
        Command::new(&tools.mariadb)
            .arg(format!("--socket={}", tools.db_socket.display()))
            .arg(format!("--user={}", tools.db_admin_user))
            .args(["--batch", "--skip-column-names", "-e", statement]),
        "mariadb",
    )?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A table name as an identifier (backticks doubled).
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn tables(tools: &Tools, db: &str) -> Result<Vec<String>> {
    sql(
        tools,
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' AND table_type = 'BASE TABLE' ORDER BY table_name"
        ),
    )
}

/// Loads the dump into a fresh database, then swaps its tables in with one `RENAME TABLE`
/// (atomic); the old tables go. A dump that does not load changes nothing.
fn restore_database(
    tools: &Tools,
    repo: &Repository,
    user: &UserName,
    snapshot: &str,
    db: &str,
) -> Result<()> {
    // Restores of several accounts may run at once in this process: each has its own names.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stamp = format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let fresh = format!("enconf_restore_{stamp}");
    let old = format!("enconf_replaced_{stamp}");
    sql(
        tools,
        &format!("DROP DATABASE IF EXISTS {fresh}; CREATE DATABASE {fresh}"),
    )?;
    let loaded = (|| {
        let mut dump = spawn(
            tools
                .restic(repo, user)
                .args(["dump", snapshot, &format!("/{db}.sql")])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "restic dump",
        )?;
        let mut load = spawn(
            Command::new(&tools.mariadb)
                .arg(format!("--socket={}", tools.db_socket.display()))
                .arg(format!("--user={}", tools.db_admin_user))
                .args(["--batch", &fresh])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "mariadb",
        )?;
        if let (Some(mut from), Some(mut to)) = (dump.stdout.take(), load.stdin.take()) {
            let copied = std::io::copy(&mut from, &mut to);
            drop(to);
            if let Err(e) = copied {
                let _ = load.kill();
                let _ = dump.kill();
                return Err(BackupError::Io(format!("loading the dump: {e}")));
            }
        }
        wait_restic(dump, "restic dump")?;
        wait_restic(load, "mariadb (loading the dump)")
    })();
    if let Err(e) = loaded {
        let _ = sql(tools, &format!("DROP DATABASE IF EXISTS {fresh}"));
        return Err(e);
    }
    let current = tables(tools, db)?;
    let restored = tables(tools, &fresh)?;
    let mut renames: Vec<String> = Vec::new();
    if !current.is_empty() {
        sql(tools, &format!("CREATE DATABASE IF NOT EXISTS {old}"))?;
    }
    for t in &current {
        renames.push(format!("{db}.{0} TO {old}.{0}", ident(t)));
    }
    for t in &restored {
        renames.push(format!("{fresh}.{0} TO {db}.{0}", ident(t)));
    }
    if !renames.is_empty() {
        sql(tools, &format!("RENAME TABLE {}", renames.join(", ")))?;
    }
    sql(
        tools,
        &format!("DROP DATABASE IF EXISTS {fresh}; DROP DATABASE IF EXISTS {old}"),
    )?;
    Ok(())
}

/// Prunes an account's repository by the retention policy (on the backup server, where the
/// repository is a local directory) and answers the sets it still holds.
pub fn prune(restic: &Path, repo_dir: &Path, run: &PruneRun) -> Result<SetsKept> {
    if !repo_dir.join("config").exists() {
        return Ok(SetsKept { sets: Vec::new() });
    }
    let work_dir = repo_dir.with_extension("work");
    let restic = || {
        restic_command(
            restic,
            repo_dir.as_os_str(),
            run.key.expose_secret(),
            &work_dir,
        )
    };
    let mut forget = restic();
    forget
        .args(["forget", "--prune"])
        .arg(format!("--keep-daily={}", run.retention.daily))
        .arg(format!("--keep-weekly={}", run.retention.weekly))
        .arg(format!("--keep-monthly={}", run.retention.monthly));
    output(&mut forget, "restic forget")?;
    let mut list = restic();
    list.args(["snapshots", "--json"]);
    let out = output(&mut list, "restic snapshots")?;
    let snapshots: Vec<SnapshotInfo> =
        serde_json::from_slice(&out).map_err(|e| BackupError::Io(e.to_string()))?;
    let mut sets: Vec<u64> = snapshots
        .iter()
        .flat_map(|s| s.tags.iter())
        .filter_map(|t| t.strip_prefix("enconf-set-")?.parse().ok())
        .collect();
    sets.sort_unstable();
    sets.dedup();
    Ok(SetsKept { sets })
}

/// Keeps `rclone serve restic --append-only --private-repos` running (the backup server's
/// endpoint); started again a few seconds after it stops. Ends with the runtime.
pub fn serve_repositories(layout: &Layout, host: impl Fn(&Path) -> PathBuf) {
    // setpriv makes rclone die with the agent, also when the agent is killed outright: an
    // endpoint no agent watches over must not outlive it.
    let setpriv = Path::new("/usr/bin/setpriv");
    let mut cmd = match setpriv.exists() {
        true => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"])
                .arg(&layout.rclone_bin);
            c
        }
        false => tokio::process::Command::new(&layout.rclone_bin),
    };
    let dir = host(&layout.backup_dir);
    let htpasswd = host(&layout.backup_htpasswd);
    cmd.args(["serve", "restic", "--append-only", "--private-repos"])
        .arg("--htpasswd")
        .arg(&htpasswd)
        .arg("--addr")
        .arg(layout.backup_listen.to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::spawn(async move {
        loop {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot make the backup directory");
            }
            // rclone refuses to start without its password file: an empty one lets no one in.
            if !htpasswd.exists() {
                let _ = std::fs::write(&htpasswd, b"");
            }
            match cmd.spawn() {
                Ok(mut child) => {
                    tracing::info!(
                        pid = child.id(),
                        "backup endpoint started (rclone serve restic --append-only)"
                    );
                    let mut err = Vec::new();
                    if let Some(mut stderr) = child.stderr.take() {
                        use tokio::io::AsyncReadExt;
                        let _ = stderr.read_to_end(&mut err).await;
                    }
                    let status = child.wait().await;
                    tracing::warn!(?status, output = %String::from_utf8_lossy(&err).lines().last().unwrap_or(""), "backup endpoint stopped; starting it again");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start rclone for the backup endpoint")
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
    });
}

/// The URL of an account's repository as its servers reach it.
pub fn repository_url(layout: &Layout, hostname: &str, user: &UserName) -> String {
    let base = layout
        .backup_url
        .clone()
        .unwrap_or_else(|| format!("http://{hostname}:{}", layout.backup_listen.port()));
    format!("rest:{base}/{user}/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_accounts_own_databases() {
        let shop = UserName::parse("shop").unwrap();
        assert!(check_db_name(&shop, "shop_wp").is_ok());
        for other in [
            "blog_wp",
            "shop",
            "shopx_wp",
            "shop_wp;drop",
            "SHOP_WP",
            "",
            "mysql",
        ] {
            assert!(check_db_name(&shop, other).is_err(), "{other}");
        }
    }

    #[test]
    fn restic_lines_are_read_or_skipped() {
        assert_eq!(
            restic_line(
                r#"{"message_type":"status","total_bytes":300,"bytes_done":100,"total_files":3,"files_done":1}"#
            ),
            Some(ResticLine::Status {
                done: 100,
                total: 300,
                files_done: 1,
                files_total: 3
            })
        );
        assert_eq!(
            restic_line(
                r#"{"message_type":"summary","total_bytes_processed":5,"total_files_processed":2,"data_added":4}"#
            ),
            Some(ResticLine::Summary(Summary {
                size: 5,
                files: 2,
                added: 4
            }))
        );
        for skipped in [
            "",
            "not json",
            r#"{"message_type":"verbose_status"}"#,
            "[1]",
        ] {
            assert_eq!(restic_line(skipped), None, "{skipped}");
        }
        // A negative or missing figure is 0, never a panic.
        assert_eq!(
            restic_line(r#"{"message_type":"status","total_bytes":-1}"#),
            Some(ResticLine::Status {
                done: 0,
                total: 0,
                files_done: 0,
                files_total: 0
            })
        );
    }
}
