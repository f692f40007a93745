//! The backup role on the backup server: the account's line in the password file of the
//! append-only REST endpoint (`rclone serve restic --append-only --private-repos
//! --htpasswd <file>`, see [`crate::backup`]), which re-reads the file when it changes. The
//! line is the account's user name and the bcrypt hash the controller sent; with
//! `--private-repos` that password opens only `/<user>/`, the account's repository.
//!
//! The repository itself is not removed with the account: it holds the account's final
//! backup, kept by the retention policy.

use enconf_core::domain::{AccountSpec, Role};

use super::{AccountRole, Installed, RoleStatus, status_of};
use crate::executor::{ApplyError, Executor, Plan};
use crate::system::System;

/// The backup role.
#[derive(Debug, Default)]
pub struct Backup;

/// The password file with `user`'s line set to `hash` (`None`: removed); other lines kept in
/// their order.
fn with_line(current: &[u8], user: &str, hash: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8_lossy(current);
    let mut out = String::with_capacity(text.len() + 80);
    let mut placed = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.split_once(':').map(|(u, _)| u) == Some(user) {
            if let Some(hash) = hash
                && !placed
            {
                out.push_str(&format!("{user}:{hash}\n"));
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(hash) = hash
        && !placed
    {
        out.push_str(&format!("{user}:{hash}\n"));
    }
    out.into_bytes()
}

/// The password file as the plan leaves it so far (a batch edits it once per account).
fn current<S: System>(exec: &Executor<S>, plan: &Plan) -> Result<Vec<u8>, ApplyError> {
    let path = &exec.layout().backup_htpasswd;
    Ok(match plan.content(path) {
        Some(pending) => pending.to_vec(),
        None => exec.system().read(path)?.unwrap_or_default(),
    })
}

impl<S: System> AccountRole<S> for Backup {
    fn role(&self) -> Role {
        Role::Backup
    }

    fn plan_put(
        &self,
        exec: &Executor<S>,
        account: &AccountSpec,
        _installed: Option<&Installed>,
        plan: &mut Plan,
    ) -> Result<bool, ApplyError> {
        let Some(backup) = &account.backup else {
            // An account put without its hash (an older controller): nothing to serve yet.
            return Ok(false);
        };
        let before = current(exec, plan)?;
        let after = with_line(
            &before,
            account.username.as_str(),
            Some(&backup.access_hash),
        );
        if after == before {
            return Ok(false);
        }
        // Read by rclone, which runs as root beside the agent: no one else reads it.
        plan.write(exec.layout().backup_htpasswd.clone(), after, 0o600);
        Ok(true)
    }

    fn plan_remove(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        plan: &mut Plan,
    ) -> Result<(), ApplyError> {
        let before = current(exec, plan)?;
        let after = with_line(&before, installed.spec.username.as_str(), None);
        if after != before {
            plan.write(exec.layout().backup_htpasswd.clone(), after, 0o600);
        }
        Ok(())
    }

    fn status(&self, exec: &Executor<S>) -> RoleStatus {
        status_of(exec, Role::Backup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_account_others_kept() {
        let file = b"a:$2y$h1\nshop:$2y$old\nb:$2y$h2\n";
        let set = with_line(file, "shop", Some("$2y$new"));
        assert_eq!(set, b"a:$2y$h1\nshop:$2y$new\nb:$2y$h2\n");
        let added = with_line(b"", "shop", Some("$2y$new"));
        assert_eq!(added, b"shop:$2y$new\n");
        let gone = with_line(file, "shop", None);
        assert_eq!(gone, b"a:$2y$h1\nb:$2y$h2\n");
        // A user whose name starts another's is another user.
        let other = with_line(b"shopx:$2y$x\n", "shop", None);
        assert_eq!(other, b"shopx:$2y$x\n");
    }
}
