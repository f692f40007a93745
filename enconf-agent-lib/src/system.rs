//! The agent's only way to touch the machine: files, users and programs, behind [`System`].
//!
//! [`RealSystem`] does it for real. [`Sandbox`] keeps every file under a root directory and
//! records the commands it would run (for unit tests and the quick-start).

use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use enconf_core::domain::UserName;

/// A failure to touch the machine.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    Command {
        program: String,
        status: String,
        /// What it printed (stderr, then stdout), trimmed to the last few kilobytes.
        output: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SystemError + '_ {
    move |source| SystemError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Files, users and programs. Paths are absolute. Implementations must be safe to call from
/// several threads, but the agent serializes changes itself.
pub trait System: Send + Sync + fmt::Debug + 'static {
    /// The file's bytes, or `None` when it does not exist.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, SystemError>;
    /// Where a path of the layout is for programs that read and write data themselves
    /// (backups): the path itself, or under the sandbox's root.
    fn data_path(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
    /// Whether the machine's users are the ones this system manages (not in the sandbox,
    /// whose users live in its own `etc`): programs may be told to give files to them.
    fn owns_users(&self) -> bool {
        true
    }
    /// Replaces the file atomically (temporary file, fsync, rename, fsync of the directory),
    /// creating missing parent directories. `mode` is the file's permission bits.
    fn write_atomic(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError>;
    /// Replaces the file atomically (temporary file, rename) without waiting for the disk: the
    /// new content is durable after the next [`System::sync`]. For writing many files at once;
    /// the caller keeps a durable record of what it replaced (the journal) until then.
    fn write_unsynced(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError>;
    /// Makes every write and removal before it durable, on the filesystems holding `dirs`.
    fn sync(&self, dirs: &[&Path]) -> Result<(), SystemError>;
    /// A file's modification time in whole seconds since the epoch; `None` when absent.
    fn modified_secs(&self, path: &Path) -> Result<Option<i64>, SystemError>;
    /// Sets a file's modification time (whole seconds since the epoch).
    fn set_modified_secs(&self, path: &Path, secs: i64) -> Result<(), SystemError>;
    /// Removes a file; `false` when it was not there.
    fn remove(&self, path: &Path) -> Result<bool, SystemError>;
    /// Removes a directory and everything in it (nothing there: fine).
    fn remove_tree(&self, path: &Path) -> Result<(), SystemError>;
    /// The names of the files in a directory, sorted; empty when it does not exist.
    fn list(&self, dir: &Path) -> Result<Vec<String>, SystemError>;
    /// Runs a program and returns what it printed; a non-zero exit is an error.
    fn run(&self, program: &Path, args: &[&str]) -> Result<String, SystemError>;
    /// Runs statements in order on the local MariaDB (its unix `socket`, as `user`), stopping
    /// at the first error; each statement's rows ([`crate::sql`]).
    fn sql(
        &self,
        socket: &Path,
        user: &str,
        statements: &[crate::sql::Sql],
    ) -> Result<Vec<crate::sql::Rows>, SystemError>;
    /// The user of that name in the machine's user database, if there is one.
    fn user(&self, user: &UserName) -> Result<Option<SystemUser>, SystemError>;
    /// Whether a group of that name exists.
    fn group_exists(&self, group: &str) -> Result<bool, SystemError>;
    /// Creates login-less users, each with its own group and the given home (not created), in
    /// one step. `record` is told the id each user will get (in order) before any is created,
    /// while no other program can take those ids; when it fails, no user is created.
    fn add_users(
        &self,
        users: &[(UserName, PathBuf)],
        record: &dyn Fn(&[u32]) -> Result<(), SystemError>,
    ) -> Result<(), SystemError>;
    /// Removes a user, its own group, its memberships and its home. Only for users the agent
    /// created (see `crate::owners`).
    fn remove_user(&self, user: &UserName, home: &Path) -> Result<(), SystemError>;
    /// Runs a program with `input` on its standard input; what it printed.
    fn run_with_input(
        &self,
        program: &Path,
        args: &[&str],
        input: &[u8],
    ) -> Result<String, SystemError>;
    /// Gives a file to `owner:group`.
    fn chown(&self, path: &Path, owner: &str, group: &str) -> Result<(), SystemError>;
    /// Replaces a file with one already owned by `owner:group` (not durable, as
    /// [`System::write_unsynced`]): no reader ever sees it with another owner.
    fn write_owned_unsynced(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        (owner, group): (&str, &str),
    ) -> Result<(), SystemError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.enconf-owned"));
        self.write_unsynced(&tmp, bytes, mode)?;
        self.chown(&tmp, owner, group)?;
        self.rename(&tmp, path).map(drop)
    }
    /// Moves a file or directory within its filesystem; `false` when `from` is not there.
    fn rename(&self, from: &Path, to: &Path) -> Result<bool, SystemError>;
    /// The ids of the service user `name` (`vmail`), created login-less with its own group
    /// and `home` (not created) when there is none.
    fn ensure_service_user(&self, name: &str, home: &Path) -> Result<(u32, u32), SystemError>;

    /// Each key's value in the Postfix lmdb map at `map` (the path without `.lmdb`; a map not
    /// there yet has no entries), by `postmap -q -`.
    fn map_query(
        &self,
        postmap: &Path,
        map: &Path,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, SystemError> {
        if keys.is_empty() || !self.map_exists(map)? {
            return Ok(vec![None; keys.len()]);
        }
        let arg = format!("lmdb:{}", map.display());
        let input = lines(keys.iter().map(String::as_str));
        let out = match self.run_with_input(postmap, &["-q", "-", &arg], input.as_bytes()) {
            Ok(out) => out,
            // postmap exits 1 when it found none of the keys, saying nothing.
            Err(SystemError::Command { status, output, .. }) if none_found(&status, &output) => {
                String::new()
            }
            Err(e) => return Err(e),
        };
        let found: std::collections::HashMap<&str, &str> =
            out.lines().filter_map(|l| l.split_once('\t')).collect();
        Ok(keys
            .iter()
            .map(|k| found.get(k.as_str()).map(|v| (*v).to_owned()))
            .collect())
    }

    /// Sets and deletes entries of the lmdb map at `map` in place (`postmap -i`, `postmap -d`),
    /// creating it empty when it is not there. Postfix reads the change without a reload.
    fn map_update(
        &self,
        postmap: &Path,
        map: &Path,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), SystemError> {
        let arg = format!("lmdb:{}", map.display());
        if !self.map_exists(map)? {
            self.write_atomic(map, b"", 0o644)?;
            self.run(postmap, &[&arg])?;
            self.remove(map)?;
        }
        if !set.is_empty() {
            let input = lines(set.iter().map(|(k, v)| format!("{k} {v}")));
            self.run_with_input(postmap, &["-i", &arg], input.as_bytes())?;
        }
        if !delete.is_empty() {
            let input = lines(delete.iter().map(String::as_str));
            match self.run_with_input(postmap, &["-d", "-", &arg], input.as_bytes()) {
                // postmap exits 1 when none of the keys was there: already deleted.
                Err(SystemError::Command { status, output, .. })
                    if none_found(&status, &output) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Builds the lmdb map `<source>.lmdb` from the text file `source` (`postmap`).
    fn map_build(&self, postmap: &Path, source: &Path) -> Result<(), SystemError> {
        self.run(postmap, &[&format!("lmdb:{}", source.display())])
            .map(drop)
    }

    /// Whether the lmdb map at `map` exists.
    fn map_exists(&self, map: &Path) -> Result<bool, SystemError> {
        let (Some(dir), Some(name)) = (map.parent(), map.file_name()) else {
            return Ok(false);
        };
        let file = format!("{}.lmdb", name.to_string_lossy());
        Ok(self.list(dir)?.contains(&file))
    }

    /// The range new users' ids are taken from (`UID_MIN`, `UID_MAX` of `/etc/login.defs`).
    fn uid_range(&self) -> Result<(u32, u32), SystemError> {
        let text = self.read(Path::new("/etc/login.defs"))?.unwrap_or_default();
        Ok(crate::userdb::uid_range(&String::from_utf8_lossy(&text)))
    }
    /// Creates a directory (and parents) owned by `owner:group` with `mode`.
    fn ensure_dir(
        &self,
        path: &Path,
        owner: &str,
        group: &str,
        mode: u32,
    ) -> Result<(), SystemError>;
    /// `GET path` with `Host: host` from the local web server on `port`: the status and body,
    /// or `None` when this system has no web server to ask (the sandbox). Used to see that
    /// nginx serves a change (a reload takes effect in new workers a moment later).
    fn local_http_get(
        &self,
        port: u16,
        host: &str,
        path: &str,
    ) -> Result<Option<(u16, Vec<u8>)>, SystemError> {
        use std::io::{Read, Write};
        let io = |e: std::io::Error| SystemError::Io {
            path: format!("http://127.0.0.1:{port}{path}"),
            source: e,
        };
        let timeout = Some(std::time::Duration::from_secs(2));
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream =
            std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2))
                .map_err(io)?;
        stream.set_read_timeout(timeout).map_err(io)?;
        stream.set_write_timeout(timeout).map_err(io)?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(io)?;
        let mut answer = Vec::new();
        stream.take(1 << 16).read_to_end(&mut answer).map_err(io)?;
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n");
        let status = answer
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = split.map(|i| answer[i + 4..].to_vec()).unwrap_or_default();
        Ok(Some((status, body)))
    }

    /// Whether the daemon whose pid file is given runs (in the sandbox: whether the pid file
    /// is there).
    fn daemon_running(&self, pid_file: &Path) -> Result<bool, SystemError> {
        let Ok(pid) = read_pid(self.read(pid_file)?, pid_file) else {
            return Ok(false);
        };
        Ok(Path::new("/proc").join(pid).exists())
    }

    /// The child processes of the daemon whose pid file is given (nginx's workers), or `None`
    /// when this system cannot see processes (the sandbox).
    fn children(&self, pid_file: &Path) -> Result<Option<Vec<u32>>, SystemError> {
        let pid = read_pid(self.read(pid_file)?, pid_file)?;
        let path = PathBuf::from(format!("/proc/{pid}/task/{pid}/children"));
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Ok(Some(
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
        ))
    }

    /// Sends `signal` (`HUP`, `USR2`) to the daemon whose pid file is given: how nginx and
    /// PHP-FPM are reloaded. A missing or empty pid file is an error (the daemon is not running).
    fn signal(&self, pid_file: &Path, signal: &str) -> Result<(), SystemError> {
        let pid = read_pid(self.read(pid_file)?, pid_file)?;
        self.run(Path::new("kill"), &[&format!("-{signal}"), &pid])
            .map(drop)
    }
}

/// A user as the machine's `passwd` database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
}

fn userdb_error(e: crate::userdb::UserDbError) -> SystemError {
    SystemError::Io {
        path: "/etc/passwd".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Adds `users` to the databases in `etc`, telling `record` their ids first (see
/// [`System::add_users`]).
fn add_recorded(
    etc: &Path,
    users: &[(UserName, PathBuf)],
    record: &dyn Fn(&[u32]) -> Result<(), SystemError>,
) -> Result<(), SystemError> {
    if users.is_empty() {
        return Ok(());
    }
    let pending = crate::userdb::prepare(etc, &new_users(users), crate::userdb::LOCK_WAIT)
        .map_err(userdb_error)?;
    record(pending.ids())?;
    pending.commit().map_err(userdb_error)
}

fn new_users(users: &[(UserName, PathBuf)]) -> Vec<crate::userdb::NewUser<'_>> {
    users
        .iter()
        .map(|(name, home)| crate::userdb::NewUser {
            name: name.as_str(),
            home,
            shell: crate::owners::SHELL,
        })
        .collect()
}

/// Items one a line, each line ended.
fn lines<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str(item.as_ref());
        out.push('\n');
    }
    out
}

/// The pid in a pid file's content.
fn read_pid(content: Option<Vec<u8>>, pid_file: &Path) -> Result<String, SystemError> {
    let not_running = |why: &str| SystemError::Io {
        path: pid_file.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{why}: is the service running?"),
        ),
    };
    let content = content.ok_or_else(|| not_running("no pid file"))?;
    let pid = String::from_utf8_lossy(&content).trim().to_owned();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_running("no pid in the pid file"));
    }
    Ok(pid)
}

const MAX_OUTPUT: usize = 4096;

fn trim_output(stderr: &[u8], stdout: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(stderr).trim().to_owned();
    let out = String::from_utf8_lossy(stdout);
    if !out.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(out.trim());
    }
    if text.len() > MAX_OUTPUT {
        let mut cut = text.len() - MAX_OUTPUT;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = format!("…{}", &text[cut..]);
    }
    text
}

/// The machine itself.
///
/// User and group ids are looked up in `/etc/passwd` and `/etc/group` (the local databases
/// `useradd` writes), parsed once and parsed again only when a file's modification time
/// changes, so a batch of thousands of accounts does not spawn a lookup per account.
#[derive(Debug, Default)]
pub struct RealSystem {
    ids: Mutex<IdCache>,
}

impl RealSystem {
    pub fn new() -> Self {
        Self::default()
    }

    fn cache(&self) -> Result<std::sync::MutexGuard<'_, IdCache>, SystemError> {
        self.ids.lock().map_err(|_| SystemError::Io {
            path: "/etc/passwd".into(),
            source: std::io::Error::other("id cache poisoned"),
        })
    }

    /// The uid of `owner` and gid of `group`, for giving them `path`; an error naming the
    /// one that does not exist.
    fn ids(&self, path: &Path, owner: &str, group: &str) -> Result<(u32, u32), SystemError> {
        let unknown = |what: &str, name: &str| SystemError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no such {what}: {name}"),
            ),
        };
        let uid = self.uid(owner)?.ok_or_else(|| unknown("user", owner))?;
        let gid = self.gid(group)?.ok_or_else(|| unknown("group", group))?;
        Ok((uid, gid))
    }

    fn uid(&self, name: &str) -> Result<Option<u32>, SystemError> {
        Ok(self.cache()?.users()?.get(name).map(|u| u.uid))
    }

    fn gid(&self, name: &str) -> Result<Option<u32>, SystemError> {
        Ok(self.cache()?.groups()?.get(name).copied())
    }
}

/// `/etc/passwd` and `/etc/group`, parsed, with the modification time they were read at.
#[derive(Debug, Default)]
struct IdCache {
    passwd: (
        Option<std::time::SystemTime>,
        std::collections::HashMap<String, SystemUser>,
    ),
    group: (
        Option<std::time::SystemTime>,
        std::collections::HashMap<String, u32>,
    ),
}

impl IdCache {
    /// The file's text when it changed since `seen`.
    fn changed(
        path: &Path,
        seen: &mut Option<std::time::SystemTime>,
    ) -> Result<Option<String>, SystemError> {
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(io(path))?;
        if *seen == Some(modified) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        *seen = Some(modified);
        Ok(Some(text))
    }

    fn users(&mut self) -> Result<&std::collections::HashMap<String, SystemUser>, SystemError> {
        let (seen, map) = &mut self.passwd;
        if let Some(text) = Self::changed(Path::new("/etc/passwd"), seen)? {
            *map = crate::userdb::parse_passwd(&text);
        }
        Ok(map)
    }

    fn groups(&mut self) -> Result<&std::collections::HashMap<String, u32>, SystemError> {
        let (seen, map) = &mut self.group;
        if let Some(text) = Self::changed(Path::new("/etc/group"), seen)? {
            *map = crate::userdb::parse_group(&text);
        }
        Ok(map)
    }
}

impl System for RealSystem {
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, SystemError> {
        fs::read(path)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError> {
        fs::write_atomic(path, bytes, mode)
    }

    fn write_unsynced(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError> {
        fs::write_replacing(path, bytes, mode, None, false)
    }

    fn modified_secs(&self, path: &Path) -> Result<Option<i64>, SystemError> {
        fs::modified_secs(path)
    }

    fn set_modified_secs(&self, path: &Path, secs: i64) -> Result<(), SystemError> {
        fs::set_modified_secs(path, secs)
    }

    fn sync(&self, dirs: &[&Path]) -> Result<(), SystemError> {
        fs::sync(dirs)
    }

    fn remove_tree(&self, path: &Path) -> Result<(), SystemError> {
        fs::remove_tree(path)
    }

    fn remove(&self, path: &Path) -> Result<bool, SystemError> {
        fs::remove(path)
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, SystemError> {
        fs::list(dir)
    }

    fn run(&self, program: &Path, args: &[&str]) -> Result<String, SystemError> {
        let shown = program.display().to_string();
        let out = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| SystemError::Spawn {
                program: shown.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(SystemError::Command {
                program: shown,
                status: out.status.to_string(),
                output: trim_output(&out.stderr, &out.stdout),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn sql(
        &self,
        socket: &Path,
        user: &str,
        statements: &[crate::sql::Sql],
    ) -> Result<Vec<crate::sql::Rows>, SystemError> {
        crate::sql::run(socket, user, statements)
    }

    fn user(&self, user: &UserName) -> Result<Option<SystemUser>, SystemError> {
        Ok(self.cache()?.users()?.get(user.as_str()).cloned())
    }

    fn group_exists(&self, group: &str) -> Result<bool, SystemError> {
        Ok(self.gid(group)?.is_some())
    }

    fn add_users(
        &self,
        users: &[(UserName, PathBuf)],
        record: &dyn Fn(&[u32]) -> Result<(), SystemError>,
    ) -> Result<(), SystemError> {
        add_recorded(Path::new("/etc"), users, record)
    }

    fn remove_user(&self, user: &UserName, home: &Path) -> Result<(), SystemError> {
        crate::userdb::remove_users(Path::new("/etc"), &[user.as_str()]).map_err(userdb_error)?;
        fs::remove_tree(home)
    }

    fn run_with_input(
        &self,
        program: &Path,
        args: &[&str],
        input: &[u8],
    ) -> Result<String, SystemError> {
        let shown = program.display().to_string();
        let spawn = |source| SystemError::Spawn {
            program: shown.clone(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        // Written from another thread: a program that answers as it reads would otherwise
        // block on a full stdout pipe while we block on its full stdin pipe.
        let mut stdin = child.stdin.take();
        let out = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> std::io::Result<()> {
                if let Some(stdin) = stdin.as_mut() {
                    stdin.write_all(input)?;
                }
                Ok(())
            });
            let out = child.wait_with_output();
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("writer panicked")));
            (out, written)
        });
        let out = out.0.map_err(spawn)?;
        if !out.status.success() {
            return Err(SystemError::Command {
                program: shown,
                status: out.status.to_string(),
                output: trim_output(&out.stderr, &out.stdout),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn chown(&self, path: &Path, owner: &str, group: &str) -> Result<(), SystemError> {
        let (uid, gid) = self.ids(path, owner, group)?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io(path))
    }

    fn write_owned_unsynced(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        (owner, group): (&str, &str),
    ) -> Result<(), SystemError> {
        let ids = self.ids(path, owner, group)?;
        fs::write_replacing(path, bytes, mode, Some(ids), false)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<bool, SystemError> {
        fs::rename(from, to)
    }

    fn ensure_service_user(&self, name: &str, home: &Path) -> Result<(u32, u32), SystemError> {
        if let Some(u) = self.cache()?.users()?.get(name) {
            return Ok((u.uid, u.gid));
        }
        let user = crate::userdb::NewUser {
            name,
            home,
            shell: crate::owners::SHELL,
        };
        crate::userdb::add_users(Path::new("/etc"), &[user]).map_err(userdb_error)?;
        let found = self.cache()?.users()?.get(name).map(|u| (u.uid, u.gid));
        found.ok_or_else(|| userdb_error(crate::userdb::UserDbError::Missing(name.to_owned())))
    }

    fn ensure_dir(
        &self,
        path: &Path,
        owner: &str,
        group: &str,
        mode: u32,
    ) -> Result<(), SystemError> {
        use std::os::unix::fs::PermissionsExt;
        let (uid, gid) = self.ids(path, owner, group)?;
        std::fs::create_dir_all(path).map_err(io(path))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
    }
}

/// The file under a sandbox's root that lists the commands it recorded, one a line.
pub const COMMANDS_LOG: &str = "commands.log";

/// A stand-in machine: files under `root` (users too, in `root/etc/passwd` and friends, written
/// by the same code as on a real server), commands recorded (in [`COMMANDS_LOG`] under the
/// root, and in the log) and answered by a hook (success by default).
pub struct Sandbox {
    root: PathBuf,
    commands: Mutex<Vec<String>>,
    /// Decides a command's outcome: `Err(output)` makes it fail.
    #[allow(clippy::type_complexity)]
    hook: Mutex<Option<Box<dyn Fn(&str) -> Result<String, String> + Send>>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            commands: Mutex::default(),
            hook: Mutex::default(),
        }
    }

    /// The entries of a sandbox map (see [`System::map_query`]).
    fn sandbox_map(
        &self,
        map: &Path,
    ) -> Result<std::collections::BTreeMap<String, String>, SystemError> {
        let text = self.read(&lmdb_path(map))?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    fn write_sandbox_map(
        &self,
        path: &Path,
        entries: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), SystemError> {
        let text = lines(entries.iter().map(|(k, v)| format!("{k} {v}")));
        self.write_atomic(path, text.as_bytes(), 0o644)
    }

    /// Where `path` lives inside the sandbox.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        let mut out = self.root.clone();
        for c in path.components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    /// The commands run so far, each as one line (`program arg arg`).
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn clear_commands(&self) {
        if let Ok(mut c) = self.commands.lock() {
            c.clear();
        }
    }

    /// Sets what commands answer: the hook gets the command line.
    pub fn on_command(&self, hook: impl Fn(&str) -> Result<String, String> + Send + 'static) {
        if let Ok(mut h) = self.hook.lock() {
            *h = Some(Box::new(hook));
        }
    }

    fn record(&self, line: String) -> Result<String, SystemError> {
        let outcome = match self.hook.lock() {
            Ok(h) => h.as_ref().map_or(Ok(String::new()), |hook| hook(&line)),
            Err(_) => Ok(String::new()),
        };
        let program = line.split(' ').next().unwrap_or_default().to_owned();
        // What a real server would have run, where a person can read it.
        tracing::info!(command = %line, "sandbox: recorded, not run");
        let log = self.root.join(COMMANDS_LOG);
        if let Err(e) = std::fs::create_dir_all(&self.root).and_then(|()| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            writeln!(f, "{line}")
        }) {
            tracing::warn!(path = %log.display(), error = %e, "cannot write the sandbox's command log");
        }
        if let Ok(mut c) = self.commands.lock() {
            c.push(line);
        }
        outcome.map_err(|output| SystemError::Command {
            program,
            status: "exit status: 1".into(),
            output,
        })
    }
}

impl System for Sandbox {
    fn data_path(&self, path: &Path) -> PathBuf {
        self.host_path(path)
    }

    fn owns_users(&self) -> bool {
        false
    }

    fn daemon_running(&self, pid_file: &Path) -> Result<bool, SystemError> {
        Ok(self.read(pid_file)?.is_some())
    }

    fn children(&self, _pid_file: &Path) -> Result<Option<Vec<u32>>, SystemError> {
        Ok(None)
    }

    fn local_http_get(
        &self,
        _port: u16,
        _host: &str,
        _path: &str,
    ) -> Result<Option<(u16, Vec<u8>)>, SystemError> {
        Ok(None)
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, SystemError> {
        fs::read(&self.host_path(path))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError> {
        fs::write_atomic(&self.host_path(path), bytes, mode)
    }

    fn write_unsynced(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError> {
        fs::write_replacing(&self.host_path(path), bytes, mode, None, false)
    }

    fn modified_secs(&self, path: &Path) -> Result<Option<i64>, SystemError> {
        fs::modified_secs(&self.host_path(path))
    }

    fn set_modified_secs(&self, path: &Path, secs: i64) -> Result<(), SystemError> {
        fs::set_modified_secs(&self.host_path(path), secs)
    }

    fn sync(&self, dirs: &[&Path]) -> Result<(), SystemError> {
        let host: Vec<PathBuf> = dirs.iter().map(|d| self.host_path(d)).collect();
        fs::sync(&host.iter().map(PathBuf::as_path).collect::<Vec<_>>())
    }

    fn remove_tree(&self, path: &Path) -> Result<(), SystemError> {
        self.record(format!("rm -rf {}", path.display()))?;
        fs::remove_tree(&self.host_path(path))
    }

    fn remove(&self, path: &Path) -> Result<bool, SystemError> {
        fs::remove(&self.host_path(path))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, SystemError> {
        fs::list(&self.host_path(dir))
    }

    fn run(&self, program: &Path, args: &[&str]) -> Result<String, SystemError> {
        let mut line = program.display().to_string();
        for a in args {
            line.push(' ');
            line.push_str(a);
        }
        self.record(line)
    }

    fn sql(
        &self,
        socket: &Path,
        _user: &str,
        statements: &[crate::sql::Sql],
    ) -> Result<Vec<crate::sql::Rows>, SystemError> {
        statements
            .iter()
            .map(|s| {
                self.record(format!("mariadb --socket={} {s}", socket.display()))
                    .map(|_| Vec::new())
            })
            .collect()
    }

    fn user(&self, user: &UserName) -> Result<Option<SystemUser>, SystemError> {
        let text = self.read(Path::new("/etc/passwd"))?.unwrap_or_default();
        Ok(crate::userdb::parse_passwd(&String::from_utf8_lossy(&text)).remove(user.as_str()))
    }

    fn group_exists(&self, group: &str) -> Result<bool, SystemError> {
        let text = self.read(Path::new("/etc/group"))?.unwrap_or_default();
        Ok(crate::userdb::parse_group(&String::from_utf8_lossy(&text)).contains_key(group))
    }

    fn add_users(
        &self,
        users: &[(UserName, PathBuf)],
        record: &dyn Fn(&[u32]) -> Result<(), SystemError>,
    ) -> Result<(), SystemError> {
        let etc = self.host_path(Path::new("/etc"));
        for file in ["passwd", "shadow", "group", "gshadow"] {
            let path = etc.join(file);
            if !path.exists() {
                fs::write_atomic(&path, b"", 0o644)?;
            }
        }
        for (user, home) in users {
            self.record(format!("useradd --home-dir {} {user}", home.display()))?;
        }
        add_recorded(&etc, users, record)
    }

    fn remove_user(&self, user: &UserName, home: &Path) -> Result<(), SystemError> {
        self.record(format!("userdel --remove {user}"))?;
        crate::userdb::remove_users(&self.host_path(Path::new("/etc")), &[user.as_str()])
            .map_err(userdb_error)?;
        fs::remove_tree(&self.host_path(home))
    }

    fn run_with_input(
        &self,
        program: &Path,
        args: &[&str],
        _input: &[u8],
    ) -> Result<String, SystemError> {
        self.run(program, args)
    }

    fn chown(&self, path: &Path, owner: &str, group: &str) -> Result<(), SystemError> {
        self.record(format!("chown {owner}:{group} {}", path.display()))
            .map(drop)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<bool, SystemError> {
        self.record(format!("mv {} {}", from.display(), to.display()))?;
        fs::rename(&self.host_path(from), &self.host_path(to))
    }

    fn ensure_service_user(&self, name: &str, home: &Path) -> Result<(u32, u32), SystemError> {
        let etc = self.host_path(Path::new("/etc"));
        let find = || -> Result<Option<(u32, u32)>, SystemError> {
            let text = self.read(Path::new("/etc/passwd"))?.unwrap_or_default();
            Ok(crate::userdb::parse_passwd(&String::from_utf8_lossy(&text))
                .get(name)
                .map(|u| (u.uid, u.gid)))
        };
        if let Some(ids) = find()? {
            return Ok(ids);
        }
        for file in ["passwd", "shadow", "group", "gshadow"] {
            let path = etc.join(file);
            if !path.exists() {
                fs::write_atomic(&path, b"", 0o644)?;
            }
        }
        self.record(format!("useradd --home-dir {} {name}", home.display()))?;
        let user = crate::userdb::NewUser {
            name,
            home,
            shell: crate::owners::SHELL,
        };
        crate::userdb::add_users(&etc, &[user]).map_err(userdb_error)?;
        find()?.ok_or_else(|| userdb_error(crate::userdb::UserDbError::Missing(name.to_owned())))
    }

    /// A sandbox map is a text file `<map>.lmdb` of `key value` lines, sorted.
    fn map_query(
        &self,
        _postmap: &Path,
        map: &Path,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, SystemError> {
        let entries = self.sandbox_map(map)?;
        Ok(keys.iter().map(|k| entries.get(k).cloned()).collect())
    }

    fn map_update(
        &self,
        postmap: &Path,
        map: &Path,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), SystemError> {
        let arg = format!("lmdb:{}", map.display());
        let mut entries = self.sandbox_map(map)?;
        if !set.is_empty() {
            self.run(postmap, &["-i", &arg])?;
        }
        if !delete.is_empty() {
            self.run(postmap, &["-d", "-", &arg])?;
        }
        for (k, v) in set {
            entries.insert(k.clone(), v.clone());
        }
        for k in delete {
            entries.remove(k);
        }
        self.write_sandbox_map(&lmdb_path(map), &entries)
    }

    fn map_build(&self, postmap: &Path, source: &Path) -> Result<(), SystemError> {
        self.run(postmap, &[&format!("lmdb:{}", source.display())])?;
        let text = self.read(source)?.unwrap_or_default();
        let entries = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.trim_start().to_owned()))
            .collect();
        self.write_sandbox_map(&lmdb_path(source), &entries)
    }

    /// A sandbox has no daemons: with a pid file (tests write one) the `kill` is recorded as
    /// usual; without one the signal is recorded against the pid file and succeeds.
    fn signal(&self, pid_file: &Path, signal: &str) -> Result<(), SystemError> {
        match self.read(pid_file)? {
            Some(content) => {
                let pid = read_pid(Some(content), pid_file)?;
                self.record(format!("kill -{signal} {pid}")).map(drop)
            }
            None => self
                .record(format!("kill -{signal} $(cat {})", pid_file.display()))
                .map(drop),
        }
    }

    fn ensure_dir(
        &self,
        path: &Path,
        owner: &str,
        group: &str,
        mode: u32,
    ) -> Result<(), SystemError> {
        let host = self.host_path(path);
        std::fs::create_dir_all(&host).map_err(io(&host))?;
        self.record(format!(
            "install -d -o {owner} -g {group} -m {mode:o} {}",
            path.display()
        ))
        .map(drop)
    }
}

/// The file of the lmdb map at `map`.
fn lmdb_path(map: &Path) -> PathBuf {
    let mut name = map.as_os_str().to_owned();
    name.push(".lmdb");
    PathBuf::from(name)
}

/// File operations shared by [`RealSystem`] and [`Sandbox`].
/// Whether `postmap -q` / `postmap -d` failed only because none of the keys was there: exit
/// status 1 with nothing said but warnings (an administrator's `main.cf` may draw some).
fn none_found(status: &str, output: &str) -> bool {
    status.ends_with("status: 1")
        && output
            .lines()
            .all(|l| l.trim().is_empty() || l.contains(": warning: "))
}

mod fs {
    use super::*;

    pub(super) fn read(path: &Path) -> Result<Option<Vec<u8>>, SystemError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SystemError> {
        write_replacing(path, bytes, mode, None, true)
    }

    /// Temporary file, then rename; with `durable`, the file and its directory are fsynced.
    /// Replaces `path` by renaming a temporary file over it: written, given `mode` exactly (and
    /// `owner`'s uid and gid, when given) through its descriptor, and fsynced when `durable`.
    pub(super) fn write_replacing(
        path: &Path,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
        durable: bool,
    ) -> Result<(), SystemError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.enconf-tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io(&tmp))?;
        }
        // The mode given to open() is filtered by the umask; set it exactly (after the owner:
        // a change of owner may clear set-id bits).
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io(&tmp))?;
        if durable {
            f.sync_all().map_err(io(&tmp))?;
        }
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if durable {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(())
    }

    /// `syncfs` once per filesystem holding one of `dirs`.
    pub(super) fn sync(dirs: &[&Path]) -> Result<(), SystemError> {
        use std::os::unix::fs::MetadataExt;
        let mut done = std::collections::HashSet::new();
        for dir in dirs {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue; // nothing was written there
            };
            if done.insert(meta.dev()) {
                let handle = std::fs::File::open(dir).map_err(io(dir))?;
                rustix::fs::syncfs(&handle).map_err(|e| io(dir)(e.into()))?;
            }
        }
        Ok(())
    }

    pub(super) fn modified_secs(path: &Path) -> Result<Option<i64>, SystemError> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.mtime())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    pub(super) fn set_modified_secs(path: &Path, secs: i64) -> Result<(), SystemError> {
        let time = u64::try_from(secs)
            .ok()
            .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
            .ok_or_else(|| {
                io(path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("no such time: {secs}"),
                ))
            })?;
        let file = std::fs::File::open(path).map_err(io(path))?;
        file.set_modified(time).map_err(io(path))
    }

    pub(super) fn rename(from: &Path, to: &Path) -> Result<bool, SystemError> {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        match std::fs::rename(from, to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(from)(e)),
        }
    }

    pub(super) fn remove(path: &Path) -> Result<bool, SystemError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(path)(e)),
        }
    }

    pub(super) fn list(dir: &Path) -> Result<Vec<String>, SystemError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Removes a directory tree (symbolic links inside are removed, not followed); nothing to
    /// do when it is not there.
    pub(super) fn remove_tree(path: &Path) -> Result<(), SystemError> {
        match std::fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::none_found;

    #[test]
    fn postmap_finding_nothing_is_told_from_postmap_failing() {
        assert!(none_found("exit status: 1", ""));
        assert!(none_found(
            "exit status: 1",
            "postmap: warning: /etc/postfix/main.cf, line 50: overriding earlier entry: x=y\n"
        ));
        assert!(!none_found(
            "exit status: 1",
            "postmap: fatal: open /etc/postfix/enconf/aliases.lmdb: Permission denied"
        ));
        assert!(!none_found("exit status: 75", ""));
    }
}
