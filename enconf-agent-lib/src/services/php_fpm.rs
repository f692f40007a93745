//! PHP-FPM: `php-fpm -t` over the changed pools of one PHP version only, and `SIGUSR2` (a
//! graceful reload) to the master of that version.
//!
//! A large batch is read by a sample of its pools ([`super::sample`]); every pool's user and
//! group are checked to exist then, as `php-fpm -t` would for each.

use std::path::{Path, PathBuf};

use enconf_core::domain::PhpVersion;

use super::sample;
use crate::config::Layout;
use crate::executor::{ApplyError, Check, Reload, Stage, same_check};

/// Validates the plan's new content of `pools`, all of PHP `version`.
#[derive(Debug, Clone)]
pub struct FpmCheck {
    pub version: PhpVersion,
    pub pools: Vec<PathBuf>,
}

impl Check for FpmCheck {
    fn absorb(&mut self, other: Box<dyn Check>) -> Option<Box<dyn Check>> {
        match same_check::<FpmCheck>(other) {
            Ok(other) if other.version == self.version => {
                self.pools.extend(other.pools);
                None
            }
            Ok(other) => Some(other),
            Err(other) => Some(other),
        }
    }

    fn run(&self, stage: &Stage<'_>) -> Result<(), ApplyError> {
        let dir = stage.dir();
        let version = self.version;
        let mut conf = format!(
            "[global]\npid = {dir}/php{version}-fpm.pid\nerror_log = {dir}/php{version}-fpm.log\n",
            dir = dir.display()
        );
        let pools: Vec<(&Path, String)> = self
            .pools
            .iter()
            .filter_map(|p| {
                let bytes = stage.plan().content(p)?;
                Some((p.as_path(), String::from_utf8_lossy(bytes).into_owned()))
            })
            .collect();
        let read = pools_to_read(&pools)?;
        if read.len() < pools.len() {
            check_owners(stage, &pools)?;
            tracing::debug!(
                pools = pools.len(),
                read = read.len(),
                "php-fpm reads a pool of each shape; every pool checked by our rules"
            );
        }
        for i in read {
            conf.push_str(&pools[i].1);
        }
        let conf_path = stage.write(&format!("php{version}-fpm.conf"), conf.as_bytes())?;
        let conf_arg = conf_path.display().to_string();
        stage.run(
            "php-fpm",
            &stage.layout().php_fpm_bin(version),
            &["-t", "-y", &conf_arg],
        )
    }
}

fn refused(pool: &Path, message: String) -> ApplyError {
    ApplyError::Rejected {
        validator: "php-fpm".into(),
        message: format!("{}: {message}", pool.display()),
    }
}

/// Which of `pools` `php-fpm -t` reads (their indexes, in order; see [`super::sample`]), once
/// every pool is seen to have a shape.
pub fn pools_to_read(pools: &[(&Path, String)]) -> Result<Vec<usize>, ApplyError> {
    if pools.len() <= sample::FULL_CHECK_MAX {
        return Ok((0..pools.len()).collect());
    }
    let shapes = pools
        .iter()
        .map(|(path, text)| {
            crate::render::shape::ini(text)
                .map(Some)
                .map_err(|e| refused(path, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sample::to_read(&shapes))
}

/// The value of the first `key = value` line of a pool.
fn setting<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Each pool's user and group exist (what `php-fpm -t` would look up for every pool).
fn check_owners(stage: &Stage<'_>, pools: &[(&Path, String)]) -> Result<(), ApplyError> {
    let system = stage.system();
    for (path, text) in pools {
        let user = setting(text, "user").ok_or_else(|| refused(path, "no user".into()))?;
        let name = enconf_core::domain::UserName::parse(user)
            .map_err(|e| refused(path, format!("user {user:?}: {e}")))?;
        if system.user(&name)?.is_none() {
            return Err(refused(path, format!("cannot get uid for user '{user}'")));
        }
        if let Some(group) = setting(text, "group")
            && !system.group_exists(group)?
        {
            return Err(refused(path, format!("cannot get gid for group '{group}'")));
        }
    }
    Ok(())
}

/// `SIGUSR2` to the master of PHP `version`.
pub fn reload(layout: &Layout, version: PhpVersion) -> Reload {
    Reload::Signal {
        pid_file: layout.php_fpm_pid_file(version),
        signal: "USR2".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(user: &str, extra: &str) -> String {
        format!(
            "[{user}]\nuser = {user}\ngroup = {user}\nlisten = /run/{user}.sock\n{extra}pm = ondemand\n"
        )
    }

    #[test]
    fn a_small_batch_is_read_whole_and_a_large_one_by_shape() {
        let paths: Vec<PathBuf> = (0..300)
            .map(|i| PathBuf::from(format!("/p/u{i}.conf")))
            .collect();
        let texts: Vec<String> = (0..300)
            .map(|i| match i {
                // Two pools with a PHP limit: another shape.
                40 | 200 => pool(&format!("u{i}"), "php_admin_value[memory_limit] = 256M\n"),
                _ => pool(&format!("u{i}"), ""),
            })
            .collect();
        let pools: Vec<(&Path, String)> = paths
            .iter()
            .map(PathBuf::as_path)
            .zip(texts.iter().cloned())
            .collect();
        assert_eq!(
            pools_to_read(&pools[..100]).unwrap(),
            (0..100).collect::<Vec<_>>()
        );
        assert_eq!(pools_to_read(&pools).unwrap(), [0, 40, 200, 299]);
        // A pool without a shape is refused, named, whatever the batch.
        let mut bad = pools.clone();
        bad[150].1.push_str("php_admin_value[x]\n");
        let e = pools_to_read(&bad).unwrap_err().to_string();
        assert!(e.contains("/p/u150.conf") && e.contains("no '='"), "{e}");
    }

    #[test]
    fn the_settings_of_a_pool_are_read_by_key() {
        let text = pool("shop", "");
        assert_eq!(setting(&text, "user"), Some("shop"));
        assert_eq!(setting(&text, "group"), Some("shop"));
        assert_eq!(setting(&text, "listen"), Some("/run/shop.sock"));
        assert_eq!(setting(&text, "chroot"), None);
    }
}
