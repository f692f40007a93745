//! Postfix: the mail role's settings in `main.cf`, three lmdb maps changed in place (mail
//! domains, mailboxes, aliases), and `postfix reload` for settings.
//!
//! The maps are changed entry by entry (`postmap -i`, `postmap -d`): Postfix reads an lmdb map
//! as it is without a reload, and a change costs the entries it touches, never a rebuild of a
//! map that holds every mailbox of the server. `postfix check` says nothing of a map's content,
//! so [`MapCheck`] checks what Postfix will read itself: the changed entries, built into a
//! staged map by `postmap`, must each answer as rendered.

use std::path::PathBuf;

use crate::config::Layout;
use crate::executor::{ApplyError, Check, Reload, Stage};

/// `postfix -c DIR reload`.
pub fn reload(layout: &Layout) -> Reload {
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

/// The lmdb map of the mail domains (`domain OK`).
pub fn domains_map(layout: &Layout) -> PathBuf {
    layout.postfix_map_dir.join("domains")
}

/// The lmdb map of the mailboxes (`address OK`): Postfix refuses other addresses of the mail
/// domains at RCPT time.
pub fn mailboxes_map(layout: &Layout) -> PathBuf {
    layout.postfix_map_dir.join("mailboxes")
}

/// The lmdb map of the mail domains whose mail is held back while they move to another server
/// (`domain 450 …`): Postfix answers senders "try again later", and they do, after the move.
pub fn frozen_map(layout: &Layout) -> PathBuf {
    layout.postfix_map_dir.join("frozen")
}

/// What a frozen domain answers at RCPT time.
pub const FROZEN_ANSWER: &str =
    "450 4.2.0 this mailbox is moving to another server, try again later";

/// The lmdb map of the aliases (`address destination, destination`).
pub fn aliases_map(layout: &Layout) -> PathBuf {
    layout.postfix_map_dir.join("aliases")
}

/// The `main.cf` settings of the mail role: the maps, delivery to Dovecot over LMTP, SMTP AUTH
/// through Dovecot (over TLS only), recipients refused at RCPT time when unknown (550) or over
/// quota (Dovecot's quota policy, 552) before any relay decision, and the DKIM milter when
/// `milter` is given.
pub fn mail_settings(layout: &Layout, milter: Option<&str>) -> Vec<(&'static str, String)> {
    let map = |p: PathBuf| format!("lmdb:{}", p.display());
    let mut out = vec![
        ("virtual_mailbox_domains", map(domains_map(layout))),
        ("virtual_mailbox_maps", map(mailboxes_map(layout))),
        ("virtual_alias_maps", map(aliases_map(layout))),
        (
            "virtual_transport",
            format!("lmtp:inet:127.0.0.1:{}", layout.mail_lmtp_port),
        ),
        ("smtpd_sasl_type", "dovecot".to_owned()),
        (
            "smtpd_sasl_path",
            format!("inet:127.0.0.1:{}", layout.mail_auth_port),
        ),
        ("smtpd_sasl_auth_enable", "yes".to_owned()),
        ("smtpd_tls_auth_only", "yes".to_owned()),
        (
            "smtpd_recipient_restrictions",
            format!(
                "reject_unlisted_recipient, check_recipient_access {}, check_policy_service inet:127.0.0.1:{}, permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination",
                map(frozen_map(layout)),
                layout.mail_policy_port
            ),
        ),
    ];
    if let Some(milter) = milter {
        out.push(("smtpd_milters", milter.to_owned()));
        out.push(("non_smtpd_milters", "$smtpd_milters".to_owned()));
        out.push(("milter_default_action", "accept".to_owned()));
    }
    out
}

/// Checks the plan's map entries as Postfix will read them: the entries it sets are written
/// into a staged text file, built with `postmap`, and each key must answer with the value
/// rendered for it.
#[derive(Debug, Clone, Default)]
pub struct MapCheck;

impl Check for MapCheck {
    fn absorb(&mut self, other: Box<dyn Check>) -> Option<Box<dyn Check>> {
        // One check covers every map of the plan.
        crate::executor::same_check::<MapCheck>(other).err()
    }

    fn run(&self, stage: &Stage<'_>) -> Result<(), ApplyError> {
        let layout = stage.layout();
        for (map, edits) in stage.plan().map_edits() {
            let set: Vec<(&String, &String)> = edits
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
                .collect();
            if set.is_empty() {
                continue;
            }
            let name = map
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut text = String::new();
            for (k, v) in &set {
                text.push_str(k);
                text.push(' ');
                text.push_str(v);
                text.push('\n');
            }
            stage.with_copies(|copies| {
                let source = copies.stage(&format!("postmap-{name}"), text.as_bytes())?;
                let mut built = source.clone().into_os_string();
                built.push(".lmdb");
                copies.track(PathBuf::from(built));
                stage
                    .system()
                    .map_build(&layout.postmap_bin, &source)
                    .map_err(|e| crate::executor::rejected("postmap", e))?;
                let keys: Vec<String> = set.iter().map(|(k, _)| (*k).clone()).collect();
                let found = stage
                    .system()
                    .map_query(&layout.postmap_bin, &source, &keys)?;
                for ((key, want), got) in set.iter().zip(found) {
                    if got.as_deref() != Some(want.as_str()) {
                        return Err(ApplyError::Rejected {
                            validator: "postmap".into(),
                            message: format!("{name}: {key} answers {got:?} instead of {want:?}"),
                        });
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}
