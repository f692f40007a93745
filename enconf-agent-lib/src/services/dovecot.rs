//! Dovecot: the mail role's settings file and one passwd-file per mail domain (the mailboxes:
//! address, password hash, quota), `doveconf -n` over the live configuration with a staged
//! settings file, and `SIGHUP`. Dovecot re-reads a passwd-file when it changes: adding or
//! changing a mailbox needs no reload.

use std::path::{Path, PathBuf};

use enconf_core::domain::{DomainName, MailAddress, PasswordHash, QuotaMb};

use crate::config::Layout;
use crate::executor::{ApplyError, Check, Reload, Stage};

/// The settings file of the mail role, in `conf.d`.
pub const MAIL_FILE: &str = "90-enconf-mail.conf";

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

/// `SIGHUP` to Dovecot's master.
pub fn reload(layout: &Layout) -> Reload {
    Reload::Signal {
        pid_file: layout.dovecot_pid_file.clone(),
        signal: "HUP".into(),
    }
}

/// The passwd-file of a mail domain.
pub fn passwd_file(layout: &Layout, domain: &DomainName) -> PathBuf {
    layout.mail_users_dir.join(domain.as_str())
}

/// The mail role's settings: passwd-file passdb and userdb (one file per domain, found by the
/// login's domain), Maildirs under the vmail base owned by `uid`/`gid` (the only ids mail
/// processes may run as), quota with its policy service for Postfix, LMTP for delivery and the
/// auth service for Postfix's SMTP AUTH, all on loopback.
pub fn mail_conf(layout: &Layout, uid: u32, gid: u32) -> String {
    format!(
        "# Managed by enconf: the mail role. Do not edit: the agent rewrites this file.\n\
         mail_location = maildir:~/Maildir\n\
         first_valid_uid = {uid}\nlast_valid_uid = {uid}\n\
         first_valid_gid = {gid}\nlast_valid_gid = {gid}\n\
         mail_plugins = $mail_plugins quota\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=ARGON2ID username_format=%Lu {users}/%Ld\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = username_format=%Lu {users}/%Ld\n  \
         default_fields = uid={uid} gid={gid} home={vmail}/%Ld/%Ln\n}}\n\
         plugin {{\n  quota = count:User quota\n  quota_rule = *:storage={quota}M\n  \
         quota_vsizes = yes\n  quota_status_success = DUNNO\n  quota_status_nouser = DUNNO\n  \
         quota_status_overquota = \"552 5.2.2 Mailbox is full\"\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp}\n  }}\n}}\n\
         service quota-status {{\n  executable = quota-status -p postfix\n  inet_listener {{\n    \
         address = 127.0.0.1\n    port = {policy}\n  }}\n  client_limit = 1\n}}\n\
         service auth {{\n  inet_listener {{\n    address = 127.0.0.1\n    port = {auth}\n  }}\n}}\n",
        users = layout.mail_users_dir.display(),
        vmail = layout.vmail_dir.display(),
        quota = layout.mail_default_quota_mb,
        lmtp = layout.mail_lmtp_port,
        policy = layout.mail_policy_port,
        auth = layout.mail_auth_port,
    )
}

/// One mailbox as a passwd-file line: `address:hash::::::[userdb_quota_rule=*:storage=NM]`.
/// Every field is a checked type: none can hold `:` or a line break.
pub fn passwd_line(address: &MailAddress, hash: &PasswordHash, quota: Option<QuotaMb>) -> String {
    match quota {
        Some(q) => format!(
            "{address}:{hash}::::::userdb_quota_rule=*:storage={}M\n",
            q.get()
        ),
        None => format!("{address}:{hash}::::::\n"),
    }
}

/// A passwd-file's mailboxes, as [`passwd_line`] wrote them; lines that are not are skipped
/// with a warning.
pub fn parse_passwd(path: &Path, text: &str) -> Vec<(MailAddress, PasswordHash, Option<QuotaMb>)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.splitn(8, ':').collect();
        let parsed = (|| {
            let address = MailAddress::parse(fields.first()?).ok()?;
            let hash = PasswordHash::parse(fields.get(1)?).ok()?;
            let quota = match fields.get(7).map(|f| f.trim()).unwrap_or_default() {
                "" => None,
                extra => {
                    let mb = extra
                        .strip_prefix("userdb_quota_rule=*:storage=")?
                        .strip_suffix('M')?;
                    Some(QuotaMb::new(mb.parse().ok()?).ok()?)
                }
            };
            Some((address, hash, quota))
        })();
        match parsed {
            Some(entry) => out.push(entry),
            None => {
                tracing::warn!(file = %path.display(), "a passwd-file line the agent did not write is skipped")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_round_trip() {
        let a = MailAddress::parse("info@example.com").unwrap();
        let h =
            PasswordHash::parse("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").unwrap();
        let q = QuotaMb::new(250).unwrap();
        let text = format!(
            "{}{}",
            passwd_line(&a, &h, Some(q)),
            passwd_line(&a, &h, None)
        );
        assert_eq!(
            text.lines().next().unwrap(),
            "info@example.com:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA::::::userdb_quota_rule=*:storage=250M"
        );
        let parsed = parse_passwd(Path::new("/x"), &format!("{text}junk line\n"));
        assert_eq!(parsed, vec![(a.clone(), h.clone(), Some(q)), (a, h, None)]);
    }
}
