//! Which system users the agent created, and so may use and remove.
//!
//! A hosting account runs as a system user of its own name. A name that is already a user on
//! the machine (`ubuntu`, `postgres`, a user some package or image made) must never become an
//! account: its site would run with that user's rights and groups, and deleting the account
//! would delete the user. The controller's reserved names cannot know every machine, so the
//! agent decides, from two facts:
//!
//! 1. **Its own record.** Before it creates a user, the agent writes
//!    `<state_dir>/users/<name>.json`: the home and the uid it will have (planned while the
//!    user database is locked, so no other program takes that uid in between). Nothing else
//!    writes there. (Records of earlier releases may hold no uid: see below.)
//! 2. **The uid range.** The agent creates users with ids from `UID_MIN`..`UID_MAX` of
//!    `/etc/login.defs`; a user outside it is not one of its own, whatever a record says.
//!
//! A user is the agent's when both agree: a record with the user's uid (or, from an earlier
//! release interrupted between its record and the user, a record without one and a user with
//! the recorded home),
//! and a uid in the range. Any other user of that name, and any group of that name when there
//! is no user, is *foreign*: the account is refused (`409` naming `username`) and nothing is
//! touched. A delete removes the user, its group and its home only when they are the agent's;
//! otherwise it removes the account's configuration and leaves the user alone.
//!
//! Accounts installed by releases that kept no record are adopted at start-up when their user
//! has exactly the shape the agent gives its users (its home under the web root, the
//! `nologin` shell, a uid in the range with a group of the same id); any other is left foreign.

use std::path::{Path, PathBuf};

use enconf_core::domain::UserName;
use serde::{Deserialize, Serialize};

use crate::system::{System, SystemError, SystemUser};

/// The shell of the users the agent creates.
pub(crate) const SHELL: &str = "/usr/sbin/nologin";

/// What the agent records of a user it creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    home: PathBuf,
    /// The uid the user gets. `None` in records of releases that wrote the record before the
    /// uid was known and added it once the user existed.
    uid: Option<u32>,
}

/// Whose a user name is on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// No user or group of that name: the agent may create it.
    Free,
    /// A user the agent created.
    Ours(SystemUser),
    /// A user or group the agent did not create; the text says what it is.
    Foreign(String),
}

/// The agent's record of the users it created, under `<state_dir>/users`.
#[derive(Debug)]
pub(crate) struct Owners<'a, S> {
    system: &'a S,
    dir: PathBuf,
}

impl<'a, S: System> Owners<'a, S> {
    pub(crate) fn new(system: &'a S, state_dir: &Path) -> Self {
        Self {
            system,
            dir: state_dir.join("users"),
        }
    }

    fn path(&self, user: &UserName) -> PathBuf {
        self.dir.join(format!("{user}.json"))
    }

    fn record(&self, user: &UserName) -> Result<Option<Record>, SystemError> {
        let Some(bytes) = self.system.read(&self.path(user))? else {
            return Ok(None);
        };
        // A record that cannot be read proves nothing: the user counts as foreign.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    fn encode(&self, user: &UserName, record: &Record) -> Result<Vec<u8>, SystemError> {
        serde_json::to_vec(record).map_err(|e| SystemError::Io {
            path: self.path(user).display().to_string(),
            source: std::io::Error::other(e),
        })
    }

    fn write(&self, user: &UserName, record: &Record) -> Result<(), SystemError> {
        let bytes = self.encode(user, record)?;
        self.system.write_atomic(&self.path(user), &bytes, 0o600)
    }

    /// Writes a record, durable after the next [`System::sync`] of the records' directory.
    fn write_unsynced(&self, user: &UserName, record: &Record) -> Result<(), SystemError> {
        let bytes = self.encode(user, record)?;
        self.system.write_unsynced(&self.path(user), &bytes, 0o600)
    }

    /// Whose `user` is now.
    pub(crate) fn claim(&self, user: &UserName) -> Result<Claim, SystemError> {
        let Some(found) = self.system.user(user)? else {
            if self.system.group_exists(user.as_str())? {
                return Ok(Claim::Foreign(format!(
                    "a group named {user} exists on this server and was not created by enconf"
                )));
            }
            return Ok(Claim::Free);
        };
        let (min, max) = self.system.uid_range()?;
        let ours = (min..=max).contains(&found.uid)
            && self.record(user)?.is_some_and(|r| match r.uid {
                Some(uid) => uid == found.uid,
                None => r.home == found.home,
            });
        if !ours {
            return Ok(Claim::Foreign(format!(
                "the user {user} (uid {}) exists on this server and was not created by enconf",
                found.uid
            )));
        }
        Ok(Claim::Ours(found))
    }

    /// Records, durably (every record written, then one sync), that the agent is about to
    /// create each of `users` with its home and the uid it will get, `ids[i]` for `users[i]`.
    /// The ids come from the user database while it is locked, so the user gets exactly that
    /// uid: one record per user, never rewritten (a batch of 10,000 users took 11 s with a sync
    /// per record, and 4 s more when each record was written again with the uid after).
    pub(crate) fn record_new(
        &self,
        users: &[(UserName, PathBuf)],
        ids: &[u32],
    ) -> Result<(), SystemError> {
        if ids.len() != users.len() {
            return Err(SystemError::Io {
                path: self.dir.display().to_string(),
                source: std::io::Error::other(format!(
                    "{} ids planned for {} users",
                    ids.len(),
                    users.len()
                )),
            });
        }
        let records: Vec<_> = users.iter().zip(ids).collect();
        crate::parallel::each(&records, |((user, home), uid)| {
            self.write_unsynced(
                user,
                &Record {
                    home: home.clone(),
                    uid: Some(**uid),
                },
            )
        })?;
        self.system.sync(&[&self.dir])
    }

    /// Forgets `user` (removed, or never created).
    pub(crate) fn forget(&self, user: &UserName) -> Result<(), SystemError> {
        self.system.remove(&self.path(user)).map(drop)
    }

    /// Adopts a user made by a release that kept no record, when it has exactly the shape the
    /// agent gives its users: `home`, the `nologin` shell, a uid in the range and a group of
    /// its own with the same id. `true` when adopted (or already recorded).
    pub(crate) fn adopt_legacy(&self, user: &UserName, home: &Path) -> Result<bool, SystemError> {
        if self.system.read(&self.path(user))?.is_some() {
            return Ok(true);
        }
        let Some(found) = self.system.user(user)? else {
            return Ok(false);
        };
        let (min, max) = self.system.uid_range()?;
        let shaped = found.home == home
            && found.shell == SHELL
            && (min..=max).contains(&found.uid)
            && found.gid == found.uid;
        if !shaped {
            return Ok(false);
        }
        self.write(
            user,
            &Record {
                home: found.home,
                uid: Some(found.uid),
            },
        )?;
        Ok(true)
    }
}
