//! Postfix and Dovecot: `doveconf -n` over the live configuration with a staged settings file,
//! `postfix reload`, and `SIGHUP` to Dovecot.

use std::path::PathBuf;

use crate::config::Layout;
use crate::executor::{ApplyError, Check, Reload, Stage};

/// Validates the plan's new content of a Dovecot settings file: the live configuration
/// followed by the staged file (later settings win in Dovecot, so this is the configuration
/// the reload will read), with the plan's certificates staged and pointed at.
#[derive(Debug, Clone)]
pub struct DovecotCheck {
    pub snippet: PathBuf,
}

impl Check for DovecotCheck {
    fn run(&self, stage: &Stage<'_>) -> Result<(), ApplyError> {
        let Some(bytes) = stage.plan().content(&self.snippet) else {
            return Ok(());
        };
        let layout = stage.layout();
        stage.with_copies(|copies| {
            let certs = copies.certs("dovecot-")?;
            let mut conf = format!("!include {}\n", layout.dovecot_config.display()).into_bytes();
            conf.extend_from_slice(&certs.point(bytes));
            let conf_path = stage.write("dovecot.conf", &conf)?;
            let conf_arg = conf_path.display().to_string();
            stage.run("doveconf", &layout.doveconf_bin, &["-c", &conf_arg, "-n"])
        })
    }
}

/// `postfix -c DIR reload`.
pub fn reload_postfix(layout: &Layout) -> Reload {
    Reload::Run {
        program: layout.postfix_bin.clone(),
        args: vec![
            "-c".into(),
            layout.postfix_config_dir.display().to_string(),
            "reload".into(),
        ],
        validator: "postfix reload".into(),
    }
}

/// `SIGHUP` to Dovecot's master.
pub fn reload_dovecot(layout: &Layout) -> Reload {
    Reload::Signal {
        pid_file: layout.dovecot_pid_file.clone(),
        signal: "HUP".into(),
    }
}
