//! The agent's self-upgrade (`POST /v1/update`): the agent's own package, from its own source,
//! run outside the agent's service.
//!
//! The upgrade stops the running agent (the package's `postinst` restarts it), so it cannot
//! be a child of the agent: [`start`] hands it to systemd as a transient unit of its own
//! (`systemd-run --unit=netcell-webpanel-agent-upgrade --collect`), which outlives the old
//! agent and whose fixed name keeps a second upgrade from starting beside the first. The
//! unit runs [`SCRIPT`]: `dpkg --configure -a` first (an upgrade interrupted before is
//! finished), then `apt-get update` and `apt-get install --only-upgrade` of the agent's
//! package with the agent's `.sources` as the only source, writing its output and its exit
//! status into the agent's state directory. The new agent reads them from there
//! ([`state`]). When apt or dpkg fails, the old package stays installed and running, and the
//! end of the output says why.

use std::path::{Path, PathBuf};

use enconf_core::protocol::agent::{
    AGENT_PACKAGE, AGENT_SOURCES_FILE, UpgradeState, UpgradeStatus,
};

use crate::system::{System, SystemError};

/// The transient unit the upgrade runs in.
pub const UNIT: &str = "netcell-webpanel-agent-upgrade";
/// systemd's tool for transient units.
pub const SYSTEMD_RUN: &str = "/usr/bin/systemd-run";
/// The most of the upgrade's output an answer carries (its end).
const OUTPUT_TAIL: usize = 4096;
/// A status file that says `running` for longer than this is of an upgrade that was killed
/// (the machine restarted under it): the next try may start.
const STALE_AFTER_S: i64 = 3600;

/// The script the unit runs: `sh -c SCRIPT sh STATUS LOG PACKAGE SOURCES`. It writes
/// `running`, then `exit N` into STATUS (each by rename), and apt's and dpkg's output into LOG.
pub const SCRIPT: &str = r#"status="$1" log="$2" package="$3" sources="$4"
printf 'running\n' >"$status.new" && mv -f "$status.new" "$status"
(
    set -e
    export DEBIAN_FRONTEND=noninteractive
    echo "+ dpkg --configure -a"
    dpkg --configure -a
    echo "+ apt-get update ($sources)"
    apt-get update --error-on=any -o "Dir::Etc::SourceList=$sources" \
        -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=false
    echo "+ apt-get install --only-upgrade $package"
    apt-get install -y --only-upgrade -o "Dir::Etc::SourceList=$sources" \
        -o Dir::Etc::SourceParts=- -o Dpkg::Options::=--force-confold "$package"
) >"$log" 2>&1
rc=$?
printf 'exit %s\n' "$rc" >"$status.new" && mv -f "$status.new" "$status"
exit "$rc"
"#;

fn status_file(state_dir: &Path) -> PathBuf {
    state_dir.join("upgrade.status")
}

fn log_file(state_dir: &Path) -> PathBuf {
    state_dir.join("upgrade.log")
}

/// Why an upgrade could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// One is running already.
    #[error("an upgrade of the agent is running already")]
    Running,
    #[error(transparent)]
    System(#[from] SystemError),
}

/// The program and arguments that start the upgrade (what [`start`] runs).
pub fn command<S: System>(system: &S, state_dir: &Path) -> (PathBuf, Vec<String>) {
    let path = |p: PathBuf| system.data_path(&p).display().to_string();
    let args = vec![
        format!("--unit={UNIT}"),
        "--collect".to_owned(),
        "--quiet".to_owned(),
        "--description=Upgrade of the enconf agent".to_owned(),
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        SCRIPT.to_owned(),
        "sh".to_owned(),
        path(status_file(state_dir)),
        path(log_file(state_dir)),
        AGENT_PACKAGE.to_owned(),
        AGENT_SOURCES_FILE.to_owned(),
    ];
    (PathBuf::from(SYSTEMD_RUN), args)
}

/// How the last upgrade went, from the files its script writes.
pub fn state<S: System>(system: &S, state_dir: &Path) -> Result<UpgradeState, SystemError> {
    let status_path = status_file(state_dir);
    let Some(raw) = system.read(&status_path)? else {
        return Ok(UpgradeState {
            status: UpgradeStatus::Idle,
            output: None,
        });
    };
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim();
    let failed = |system: &S, why: Option<&str>| -> Result<UpgradeState, SystemError> {
        let log = system.read(&log_file(state_dir))?.unwrap_or_default();
        let mut output = tail(&String::from_utf8_lossy(&log));
        if let Some(why) = why {
            output.push_str(why);
        }
        Ok(UpgradeState {
            status: UpgradeStatus::Failed,
            output: Some(output),
        })
    };
    if text == "running" {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let since = system.modified_secs(&status_path)?.unwrap_or(now);
        if now - since > STALE_AFTER_S {
            return failed(system, Some("\nthe upgrade stopped before it finished"));
        }
        return Ok(UpgradeState {
            status: UpgradeStatus::Running,
            output: None,
        });
    }
    match text.strip_prefix("exit ") {
        Some("0") => Ok(UpgradeState {
            status: UpgradeStatus::Succeeded,
            output: None,
        }),
        Some(_) => failed(system, None),
        None => failed(system, Some("\nthe upgrade's status file is unreadable")),
    }
}

/// The end of `text`, at most [`OUTPUT_TAIL`] bytes, cut at a character boundary.
fn tail(text: &str) -> String {
    let mut from = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..].to_owned()
}

/// Starts the upgrade, unless one runs. The status says `running` before the unit starts,
/// so a caller that asks at once never reads the end of an earlier upgrade.
pub fn start<S: System>(system: &S, state_dir: &Path) -> Result<UpgradeState, UpgradeError> {
    if state(system, state_dir)?.status == UpgradeStatus::Running {
        return Err(UpgradeError::Running);
    }
    let status_path = status_file(state_dir);
    system.write_atomic(&status_path, b"running\n", 0o600)?;
    let (program, args) = command(system, state_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = system.run(&program, &args) {
        // The unit did not start (systemd refused it, or one of that name runs).
        system.write_atomic(&log_file(state_dir), e.to_string().as_bytes(), 0o600)?;
        system.write_atomic(&status_path, b"exit 1\n", 0o600)?;
        tracing::warn!(error = %e, "the upgrade could not start");
        return Ok(state(system, state_dir)?);
    }
    tracing::info!(unit = UNIT, "upgrade of the agent's package started");
    Ok(UpgradeState {
        status: UpgradeStatus::Running,
        output: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_cut_at_characters() {
        let long = "é".repeat(OUTPUT_TAIL);
        let t = tail(&long);
        assert!(t.len() <= OUTPUT_TAIL && t.chars().all(|c| c == 'é'));
        assert_eq!(tail("short"), "short");
    }
}
