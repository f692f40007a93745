//! PHP-FPM: `php-fpm -t` over the changed pools of one PHP version only, and `SIGUSR2` (a
//! graceful reload) to the master of that version.

use std::path::PathBuf;

use enconf_core::domain::PhpVersion;

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
        for p in &self.pools {
            if let Some(bytes) = stage.plan().content(p) {
                conf.push_str(&String::from_utf8_lossy(bytes));
            }
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

/// `SIGUSR2` to the master of PHP `version`.
pub fn reload(layout: &Layout, version: PhpVersion) -> Reload {
    Reload::Signal {
        pid_file: layout.php_fpm_pid_file(version),
        signal: "USR2".into(),
    }
}
