//! The mail role: an account's mail domains, mailboxes and aliases in Postfix and Dovecot, and
//! a DKIM key per domain for OpenDKIM.
//!
//! What the agent keeps, per mail domain (a domain has one account):
//! - Dovecot's passwd-file of the domain (`AGENT_MAIL_USERS_DIR/<domain>`, one line per
//!   mailbox: address, password hash, quota). It is what Dovecot reads, and what the agent
//!   reads back: there is no second copy to drift.
//! - The domain's aliases (`<state>/mail/aliases/<domain>`, `address destination,…` lines).
//! - Entries in Postfix's lmdb maps (`domains`, `mailboxes`, `aliases`), changed in place.
//! - A DKIM key (`AGENT_OPENDKIM_DIR/keys/<domain>.private`) and its lines in OpenDKIM's tables.
//!
//! A change of one mailbox rewrites its domain's passwd-file and one map entry. Mail stored
//! in Maildirs is never removed by the agent: a deleted mailbox's or domain's Maildir is moved
//! under `AGENT_VMAIL_DIR/.deleted/` and kept (until a backup of it exists, which is the backup
//! role's to say).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use enconf_core::domain::{
    AccountSpec, Alias, Destinations, DomainName, MailAddress, PasswordHash, QuotaMb, Role, Rule,
    UserName, alias_loop,
};
use enconf_core::protocol::mail::{AgentMail, AgentMailbox, AliasView, DkimRecord, MailPut};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

use super::{AccountRole, DataFate, Installed, RoleStatus};
use crate::config::Layout;
use crate::executor::{ApplyError, Executor, Plan};
use crate::services::dovecot::{self, DovecotCheck};
use crate::services::opendkim;
use crate::services::postfix::{self, MapCheck};
use crate::settings::{self, Syntax};
use crate::system::System;

/// The mail role.
#[derive(Debug, Default)]
pub struct Mail;

/// The mail of one domain as the agent holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DomainMail {
    mailboxes: BTreeMap<MailAddress, (PasswordHash, Option<QuotaMb>)>,
    aliases: BTreeMap<MailAddress, Destinations>,
}

fn alias_source(layout: &Layout, domain: &DomainName) -> PathBuf {
    layout
        .state_dir
        .join("mail")
        .join("aliases")
        .join(domain.as_str())
}

/// An alias's value in Postfix's map: its destinations, comma-separated.
fn alias_value(destinations: &Destinations) -> String {
    destinations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_domain<S: System>(
    exec: &Executor<S>,
    domain: &DomainName,
) -> Result<DomainMail, ApplyError> {
    let layout = exec.layout();
    let mut out = DomainMail::default();
    let path = dovecot::passwd_file(layout, domain);
    if let Some(bytes) = exec.system().read(&path)? {
        for (address, hash, quota) in dovecot::parse_passwd(&path, &String::from_utf8_lossy(&bytes))
        {
            out.mailboxes.insert(address, (hash, quota));
        }
    }
    let path = alias_source(layout, domain);
    if let Some(bytes) = exec.system().read(&path)? {
        for line in String::from_utf8_lossy(&bytes).lines() {
            let parsed = line.split_once(' ').and_then(|(a, d)| {
                let list: Vec<&str> = d.split(',').collect();
                Some((
                    MailAddress::parse(a).ok()?,
                    Destinations::parse("destinations", &list).ok()?,
                ))
            });
            match parsed {
                Some((a, d)) => {
                    out.aliases.insert(a, d);
                }
                None => {
                    tracing::warn!(file = %path.display(), "an alias line the agent did not write is skipped")
                }
            }
        }
    }
    Ok(out)
}

/// Adds to `plan` what takes `domain` from `old` to `new`: its passwd-file, its alias source
/// and the map entries that differ. `false` when nothing does.
fn plan_domain<S: System>(
    exec: &Executor<S>,
    domain: &DomainName,
    old: &DomainMail,
    new: &DomainMail,
    plan: &mut Plan,
) -> bool {
    if old == new {
        return false;
    }
    let layout = exec.layout();
    if old.mailboxes != new.mailboxes {
        let path = dovecot::passwd_file(layout, domain);
        if new.mailboxes.is_empty() {
            plan.remove(path);
        } else {
            let mut text = String::new();
            for (address, (hash, quota)) in &new.mailboxes {
                text.push_str(&dovecot::passwd_line(address, hash, *quota));
            }
            plan.write_owned(
                path.clone(),
                text.into_bytes(),
                0o640,
                ("root", layout.dovecot_group.as_str()),
            );
            // Dovecot re-reads it when its time or size changed.
            plan.watched(path, layout.dovecot_pid_file.clone());
        }
        let map = postfix::mailboxes_map(layout);
        for address in new
            .mailboxes
            .keys()
            .filter(|a| !old.mailboxes.contains_key(*a))
        {
            plan.map_set(map.clone(), address.to_string(), "OK".into());
        }
        for address in old
            .mailboxes
            .keys()
            .filter(|a| !new.mailboxes.contains_key(*a))
        {
            plan.map_delete(map.clone(), address.to_string());
        }
    }
    if old.aliases != new.aliases {
        let path = alias_source(layout, domain);
        if new.aliases.is_empty() {
            plan.remove(path);
        } else {
            let mut text = String::new();
            for (address, destinations) in &new.aliases {
                let list: Vec<String> = destinations.iter().map(ToString::to_string).collect();
                text.push_str(&format!("{address} {}\n", list.join(",")));
            }
            plan.write(path, text.into_bytes(), 0o600);
        }
        let map = postfix::aliases_map(layout);
        for (address, destinations) in &new.aliases {
            if old.aliases.get(address) != Some(destinations) {
                plan.map_set(map.clone(), address.to_string(), alias_value(destinations));
            }
        }
        for address in old.aliases.keys().filter(|a| !new.aliases.contains_key(*a)) {
            plan.map_delete(map.clone(), address.to_string());
        }
    }
    plan.check(MapCheck);
    true
}

/// The services of the role as installed on this server.
struct Installation {
    main_cf: String,
    /// `opendkim.conf`, when OpenDKIM is installed.
    opendkim: Option<String>,
}

/// Postfix's and Dovecot's configuration must be there; OpenDKIM's may be.
fn installation<S: System>(exec: &Executor<S>) -> Result<Installation, ApplyError> {
    let layout = exec.layout();
    let system = exec.system();
    let main_cf = system.read(&layout.postfix_config_dir.join("main.cf"))?;
    let dovecot = system.read(&layout.dovecot_config)?;
    let (Some(main_cf), Some(_)) = (main_cf, dovecot) else {
        return Err(ApplyError::Rejected {
            validator: "mail".into(),
            message: "Postfix and Dovecot are not both installed on this server (main.cf and dovecot.conf)".into(),
        });
    };
    let text = |bytes: Vec<u8>, path: &Path| {
        String::from_utf8(bytes)
            .map_err(|_| ApplyError::State(format!("{} is not text", path.display())))
    };
    let main_cf = text(main_cf, &layout.postfix_config_dir.join("main.cf"))?;
    let opendkim = system
        .read(&layout.opendkim_config)?
        .map(|b| text(b, &layout.opendkim_config))
        .transpose()?;
    Ok(Installation { main_cf, opendkim })
}

/// Whether Postfix's master runs (its pid file is under the queue directory `main.cf` names).
fn postfix_running<S: System>(exec: &Executor<S>, main_cf: &str) -> bool {
    let queue = settings::get(main_cf, Syntax::Postfix, "queue_directory")
        .unwrap_or_else(|| "/var/spool/postfix".into());
    let pid_file = Path::new(&queue).join("pid").join("master.pid");
    exec.system().daemon_running(&pid_file).unwrap_or(false)
}

/// Makes the server ready for the role, idempotently: the vmail user and directories, the three
/// maps, Dovecot's settings file, Postfix's settings and OpenDKIM's tables' settings. A
/// service that does not run is not reloaded (it reads the new settings when it starts).
pub fn setup<S: System>(exec: &Executor<S>) -> Result<(), ApplyError> {
    let install = installation(exec)?;
    let layout = exec.layout();
    let system = exec.system();
    let (uid, gid) = system.ensure_service_user(&layout.vmail_user, &layout.vmail_dir)?;
    let mut plan = Plan::default();
    let vmail = layout.vmail_user.clone();
    plan.dir((layout.vmail_dir.clone(), vmail.clone(), vmail, 0o750));
    plan.dir((
        layout.mail_users_dir.clone(),
        "root".into(),
        layout.dovecot_group.clone(),
        0o750,
    ));
    plan.dir((
        layout.state_dir.join("mail").join("aliases"),
        "root".into(),
        "root".into(),
        0o700,
    ));
    for map in [
        postfix::domains_map(layout),
        postfix::mailboxes_map(layout),
        postfix::aliases_map(layout),
        postfix::frozen_map(layout),
    ] {
        // Postfix must find the maps before it reads settings naming them.
        system.map_update(&layout.postmap_bin, &map, &[], &[])?;
    }

    let snippet = layout.dovecot_conf_d.join(dovecot::MAIL_FILE);
    let text = dovecot::mail_conf(layout, uid, gid).into_bytes();
    if system.read(&snippet)?.as_deref() != Some(&text[..]) {
        plan.write(snippet.clone(), text, 0o644);
        plan.check(DovecotCheck { snippet });
        if system
            .daemon_running(&layout.dovecot_pid_file)
            .unwrap_or(false)
        {
            plan.reload(dovecot::reload(layout));
        }
    }

    let milter = install.opendkim.as_deref().and_then(opendkim::milter);
    let main_cf = settings::set(
        &install.main_cf,
        Syntax::Postfix,
        &postfix::mail_settings(layout, milter.as_deref()),
        "the mail role",
    );
    if main_cf != install.main_cf {
        plan.write(
            layout.postfix_config_dir.join("main.cf"),
            main_cf.into_bytes(),
            0o644,
        );
        if postfix_running(exec, &install.main_cf) {
            plan.reload(postfix::reload(layout));
        }
    }

    if let Some(conf) = &install.opendkim {
        let user = layout.opendkim_user.clone();
        plan.dir((layout.opendkim_dir.join("keys"), user.clone(), user, 0o700));
        let new = opendkim::conf(layout, conf);
        if &new != conf {
            plan.write(layout.opendkim_config.clone(), new.into_bytes(), 0o644);
            plan_tables(exec, &mut plan, &BTreeSet::new(), &BTreeSet::new())?;
        }
    }
    exec.execute(plan)
}

/// The domains with a DKIM key on this server.
fn keyed_domains<S: System>(exec: &Executor<S>) -> Result<BTreeSet<DomainName>, ApplyError> {
    Ok(exec
        .system()
        .list(&exec.layout().opendkim_dir.join("keys"))?
        .iter()
        .filter_map(|name| DomainName::parse(name.strip_suffix(".private")?).ok())
        .collect())
}

/// OpenDKIM's tables for the keyed domains with `added` and without `removed`, and the signal
/// to read them (when it runs).
fn plan_tables<S: System>(
    exec: &Executor<S>,
    plan: &mut Plan,
    added: &BTreeSet<DomainName>,
    removed: &BTreeSet<DomainName>,
) -> Result<(), ApplyError> {
    let layout = exec.layout();
    let mut domains = keyed_domains(exec)?;
    domains.extend(added.iter().cloned());
    domains.retain(|d| !removed.contains(d));
    let (keys, signing) = opendkim::tables(layout, &domains.into_iter().collect::<Vec<_>>());
    plan.write(opendkim::key_table_path(layout), keys.into_bytes(), 0o644);
    plan.write(
        opendkim::signing_table_path(layout),
        signing.into_bytes(),
        0o644,
    );
    if exec
        .system()
        .daemon_running(&layout.opendkim_pid_file)
        .unwrap_or(false)
    {
        plan.reload(opendkim::reload(layout));
    }
    Ok(())
}

/// A new DKIM key: RSA 2048, PKCS#8 PEM.
fn new_key() -> Result<String, ApplyError> {
    let failed = |e: &dyn std::fmt::Display| ApplyError::State(format!("DKIM key: {e}"));
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| failed(&e))?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| failed(&e))?;
    Ok(pem.to_string())
}

/// The TXT record value of a DKIM key.
fn public_record(key_pem: &str) -> Result<String, ApplyError> {
    let failed = |e: &dyn std::fmt::Display| ApplyError::State(format!("DKIM key: {e}"));
    let key = rsa::PrivateKey::from_pkcs8_pem(key_pem).map_err(|e| failed(&e))?;
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| failed(&e))?;
    let p = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
    Ok(format!("v=DKIM1; k=rsa; p={p}"))
}

/// The mail domains of `spec` on this server (none when it does not have the role here).
fn mail_domains(spec: &AccountSpec) -> BTreeSet<DomainName> {
    if spec.roles.contains(Role::Mail) {
        spec.domains.iter().cloned().collect()
    } else {
        BTreeSet::new()
    }
}

/// Adds to `plan` what takes the account's mail domains from `old` to `new`: the domains map,
/// the mail of domains that go, and a DKIM key for each new domain. `false` when they are the
/// same.
fn plan_domains<S: System>(
    exec: &Executor<S>,
    old: &BTreeSet<DomainName>,
    new: &BTreeSet<DomainName>,
    plan: &mut Plan,
) -> Result<bool, ApplyError> {
    let install = installation(exec)?;
    let layout = exec.layout();
    let map = postfix::domains_map(layout);
    let gone: BTreeSet<DomainName> = old.difference(new).cloned().collect();
    // A domain is in the map when it should be (also after a crash between two steps).
    let listed = exec.system().map_query(
        &layout.postmap_bin,
        &map,
        &new.iter().map(ToString::to_string).collect::<Vec<_>>(),
    )?;
    let mut changed = false;
    for (d, found) in new.iter().zip(listed) {
        if found.is_none() {
            plan.map_set(map.clone(), d.to_string(), "OK".into());
            plan.check(MapCheck);
            changed = true;
        }
    }
    for d in &gone {
        plan.map_delete(map.clone(), d.to_string());
        let old_mail = load_domain(exec, d)?;
        plan_domain(exec, d, &old_mail, &DomainMail::default(), plan);
        changed = true;
    }
    // Postfix's address resolver (trivial-rewrite) keeps the domains it has read while it is
    // busy: a reload makes a domain that goes stop being this server's at once (mail for it
    // is then refused, not accepted and bounced by Dovecot later).
    if !gone.is_empty() && postfix_running(exec, &install.main_cf) {
        plan.reload(postfix::reload(layout));
    }
    if install.opendkim.is_some() {
        let keyed = keyed_domains(exec)?;
        let to_key: BTreeSet<DomainName> = new.difference(&keyed).cloned().collect();
        let to_drop: BTreeSet<DomainName> = gone.intersection(&keyed).cloned().collect();
        let user = layout.opendkim_user.as_str();
        for d in &to_key {
            plan.write_owned(
                opendkim::key_path(layout, d),
                new_key()?.into_bytes(),
                0o600,
                (user, user),
            );
        }
        for d in &to_drop {
            plan.remove(opendkim::key_path(layout, d));
        }
        if !to_key.is_empty() || !to_drop.is_empty() {
            plan_tables(exec, plan, &to_key, &to_drop)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Where the agent notes the domains it froze for an account (one per line).
fn frozen_note(layout: &Layout, user: &UserName) -> PathBuf {
    layout
        .state_dir
        .join("mail")
        .join("frozen")
        .join(user.as_str())
}

/// Adds to `plan` what holds back the mail of the account's domains for the last pass of a
/// migration: Postfix answers senders 450 (they try again later, after the move) and nothing
/// new lands in the Maildirs. The next put or removal of the account's mail lets it in again.
/// `false` when the account has no mail here.
pub fn plan_freeze<S: System>(
    exec: &Executor<S>,
    installed: &Installed,
    plan: &mut Plan,
) -> Result<bool, ApplyError> {
    let domains = mail_domains(&installed.spec);
    if domains.is_empty() {
        return Ok(false);
    }
    let layout = exec.layout();
    let map = postfix::frozen_map(layout);
    let mut note = String::new();
    for d in &domains {
        plan.map_set(map.clone(), d.to_string(), postfix::FROZEN_ANSWER.into());
        note.push_str(d.as_str());
        note.push('\n');
    }
    plan.check(MapCheck);
    plan.dir((
        layout.state_dir.join("mail").join("frozen"),
        "root".into(),
        "root".into(),
        0o700,
    ));
    plan.write(
        frozen_note(layout, &installed.spec.username),
        note.into_bytes(),
        0o600,
    );
    Ok(true)
}

/// Adds to `plan` what lets the mail of domains frozen for `user` in again; `false` when none
/// is.
fn plan_thaw<S: System>(
    exec: &Executor<S>,
    user: &UserName,
    plan: &mut Plan,
) -> Result<bool, ApplyError> {
    let layout = exec.layout();
    let path = frozen_note(layout, user);
    let Some(note) = exec.system().read(&path)? else {
        return Ok(false);
    };
    let map = postfix::frozen_map(layout);
    for d in String::from_utf8_lossy(&note).lines() {
        // Only names this agent wrote; anything else in the file is not a key of ours.
        if let Ok(d) = DomainName::parse(d) {
            plan.map_delete(map.clone(), d.to_string());
        }
    }
    plan.remove(path);
    Ok(true)
}

/// Moves the Maildir at `from` under `.deleted/` with the time, and says where it is kept.
fn keep_aside<S: System>(exec: &Executor<S>, from: &Path, name: &str) -> Result<(), ApplyError> {
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let to = exec
        .layout()
        .vmail_dir
        .join(".deleted")
        .join(format!("{name}-{stamp}"));
    if exec.system().rename(from, &to)? {
        tracing::info!(from = %from.display(), kept = %to.display(), "mail kept: the stored mail is not removed until a backup of it exists");
    }
    Ok(())
}

impl<S: System> AccountRole<S> for Mail {
    fn role(&self) -> Role {
        Role::Mail
    }

    fn plan_put(
        &self,
        exec: &Executor<S>,
        account: &AccountSpec,
        installed: Option<&Installed>,
        plan: &mut Plan,
    ) -> Result<bool, ApplyError> {
        setup(exec)?;
        let old = installed.map(|i| mail_domains(&i.spec)).unwrap_or_default();
        let thawed = plan_thaw(exec, &account.username, plan)?;
        Ok(plan_domains(exec, &old, &mail_domains(account), plan)? || thawed)
    }

    fn plan_remove(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        plan: &mut Plan,
    ) -> Result<(), ApplyError> {
        if installation(exec).is_err() {
            return Ok(()); // nothing of the role can be there
        }
        plan_thaw(exec, &installed.spec.username, plan)?;
        plan_domains(exec, &mail_domains(&installed.spec), &BTreeSet::new(), plan).map(drop)
    }

    fn put_applied(
        &self,
        exec: &Executor<S>,
        account: &AccountSpec,
        installed: Option<&Installed>,
    ) -> Result<(), ApplyError> {
        let old = installed.map(|i| mail_domains(&i.spec)).unwrap_or_default();
        for d in old.difference(&mail_domains(account)) {
            keep_aside(exec, &exec.layout().vmail_dir.join(d.as_str()), d.as_str())?;
        }
        Ok(())
    }

    fn removed(
        &self,
        exec: &Executor<S>,
        installed: &Installed,
        data: DataFate,
    ) -> Result<(), ApplyError> {
        for d in mail_domains(&installed.spec) {
            let dir = exec.layout().vmail_dir.join(d.as_str());
            match data {
                DataFate::Keep => keep_aside(exec, &dir, d.as_str())?,
                DataFate::Remove => {
                    exec.system().remove_tree(&dir)?;
                    tracing::info!(domain = %d, "mail removed: a final backup of it exists");
                }
            }
        }
        Ok(())
    }

    fn status(&self, exec: &Executor<S>) -> RoleStatus {
        let layout = exec.layout();
        let running = |pid: &Path| exec.system().daemon_running(pid).unwrap_or(false);
        let mut services = vec![("dovecot".to_owned(), running(&layout.dovecot_pid_file))];
        if let Ok(install) = installation(exec) {
            services.push((
                "postfix".to_owned(),
                postfix_running(exec, &install.main_cf),
            ));
            if install.opendkim.is_some() {
                services.push(("opendkim".to_owned(), running(&layout.opendkim_pid_file)));
            }
        }
        RoleStatus {
            ok: services.iter().all(|(_, ok)| *ok),
            services,
        }
    }
}

/// The account's mail as it is: a mail operation needs the account here with the mail role,
/// and an address on one of its domains.
fn check_address(spec: &AccountSpec, address: &MailAddress) -> Result<(), ApplyError> {
    if !spec.roles.contains(Role::Mail) {
        return Err(ApplyError::RoleNotServed { role: Role::Mail });
    }
    if !spec.domains.iter().any(|d| d == address.domain()) {
        return Err(Rule::NotAccountDomain.at("address").into());
    }
    Ok(())
}

/// Every alias of the account with `changed` in place of its address's: no loop allowed.
fn check_loops<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    changed: &BTreeMap<DomainName, DomainMail>,
) -> Result<(), ApplyError> {
    let mut all = Vec::new();
    for d in mail_domains(spec) {
        let mail = match changed.get(&d) {
            Some(m) => m.clone(),
            None => load_domain(exec, &d)?,
        };
        all.extend(
            mail.aliases
                .into_iter()
                .map(|(address, destinations)| Alias {
                    address,
                    destinations,
                }),
        );
    }
    if let Some(cycle) = alias_loop(&all) {
        let path = cycle
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" -> ");
        return Err(Rule::AliasLoop(path).at("destinations").into());
    }
    Ok(())
}

/// Applies a change of one domain's mail made by `change`.
fn change_domain<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    address: &MailAddress,
    change: impl FnOnce(&mut DomainMail) -> Result<(), ApplyError>,
) -> Result<bool, ApplyError> {
    check_address(spec, address)?;
    setup(exec)?;
    let domain = address.domain().clone();
    let old = load_domain(exec, &domain)?;
    let mut new = old.clone();
    change(&mut new)?;
    if new.aliases != old.aliases {
        check_loops(exec, spec, &BTreeMap::from([(domain.clone(), new.clone())]))?;
    }
    let mut plan = Plan::default();
    if !plan_domain(exec, &domain, &old, &new, &mut plan) {
        return Ok(false);
    }
    exec.execute(plan)?;
    Ok(true)
}

/// Creates or changes a mailbox. An alias of that address is refused.
pub fn put_mailbox<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    address: &MailAddress,
    hash: PasswordHash,
    quota: Option<QuotaMb>,
) -> Result<bool, ApplyError> {
    change_domain(exec, spec, address, |mail| {
        if mail.aliases.contains_key(address) {
            return Err(Rule::DuplicateOf("an alias".into()).at("address").into());
        }
        mail.mailboxes.insert(address.clone(), (hash, quota));
        Ok(())
    })
}

/// Deletes a mailbox (its Maildir is kept aside). `false` when there is none.
pub fn delete_mailbox<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    address: &MailAddress,
) -> Result<bool, ApplyError> {
    let changed = change_domain(exec, spec, address, |mail| {
        mail.mailboxes.remove(address);
        Ok(())
    })?;
    if changed {
        let home = exec
            .layout()
            .vmail_dir
            .join(address.domain().as_str())
            .join(address.local());
        keep_aside(
            exec,
            &home,
            &format!("{}@{}", address.local(), address.domain()),
        )?;
    }
    Ok(changed)
}

/// Creates or changes an alias. A mailbox of that address, a destination that is the alias
/// itself, or a loop with the account's other aliases is refused.
pub fn put_alias<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    address: &MailAddress,
    destinations: Destinations,
) -> Result<bool, ApplyError> {
    change_domain(exec, spec, address, |mail| {
        if mail.mailboxes.contains_key(address) {
            return Err(Rule::DuplicateOf("a mailbox".into()).at("address").into());
        }
        if destinations.contains(address) {
            return Err(Rule::AliasToItself.at("destinations").into());
        }
        mail.aliases.insert(address.clone(), destinations);
        Ok(())
    })
}

/// Deletes an alias. `false` when there is none.
pub fn delete_alias<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    address: &MailAddress,
) -> Result<bool, ApplyError> {
    change_domain(exec, spec, address, |mail| {
        mail.aliases.remove(address);
        Ok(())
    })
}

/// Makes the account's mail exactly `put`, in one apply (what is not listed goes).
pub fn put_all<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
    put: MailPut,
) -> Result<bool, ApplyError> {
    let domains = mail_domains(spec);
    if domains.is_empty() {
        return Err(ApplyError::RoleNotServed { role: Role::Mail });
    }
    let mut new: BTreeMap<DomainName, DomainMail> = domains
        .iter()
        .map(|d| (d.clone(), DomainMail::default()))
        .collect();
    for (i, m) in put.mailboxes.into_iter().enumerate() {
        let Some(mail) = new.get_mut(m.address.domain()) else {
            return Err(Rule::NotAccountDomain
                .at(format!("mailboxes[{i}].address"))
                .into());
        };
        if mail
            .mailboxes
            .insert(m.address.clone(), (m.password_hash, m.quota_mb))
            .is_some()
        {
            return Err(Rule::DuplicateOf(m.address.to_string())
                .at(format!("mailboxes[{i}].address"))
                .into());
        }
    }
    for (i, a) in put.aliases.into_iter().enumerate() {
        let field = format!("aliases[{i}].address");
        let Some(mail) = new.get_mut(a.address.domain()) else {
            return Err(Rule::NotAccountDomain.at(field).into());
        };
        if mail.mailboxes.contains_key(&a.address) || mail.aliases.contains_key(&a.address) {
            return Err(Rule::DuplicateOf(a.address.to_string()).at(field).into());
        }
        if a.destinations.contains(&a.address) {
            return Err(Rule::AliasToItself
                .at(format!("aliases[{i}].destinations"))
                .into());
        }
        mail.aliases.insert(a.address, a.destinations);
    }
    check_loops(exec, spec, &new)?;
    setup(exec)?;
    let mut plan = Plan::default();
    let mut changed = false;
    let mut gone = Vec::new();
    for (domain, mail) in &new {
        let old = load_domain(exec, domain)?;
        gone.extend(
            old.mailboxes
                .keys()
                .filter(|a| !mail.mailboxes.contains_key(*a))
                .cloned(),
        );
        changed |= plan_domain(exec, domain, &old, mail, &mut plan);
    }
    if !changed {
        return Ok(false);
    }
    exec.execute(plan)?;
    for address in gone {
        let home = exec
            .layout()
            .vmail_dir
            .join(address.domain().as_str())
            .join(address.local());
        keep_aside(exec, &home, &address.to_string())?;
    }
    Ok(true)
}

/// The megabytes (rounded up) a mailbox's messages take, from the sizes Dovecot writes into
/// Maildir file names (`…,S=1234…`) in `cur` and `new` of the inbox and of each folder;
/// `None` when the Maildir cannot be read or a name carries no size.
fn used_mb<S: System>(exec: &Executor<S>, address: &MailAddress) -> Option<u64> {
    let maildir = exec
        .layout()
        .vmail_dir
        .join(address.domain().as_str())
        .join(address.local())
        .join("Maildir");
    let system = exec.system();
    let mut folders = vec![maildir.clone()];
    for name in system.list(&maildir).ok()? {
        if name.starts_with('.') && name != "." && name != ".." {
            folders.push(maildir.join(name));
        }
    }
    let mut bytes: u64 = 0;
    for folder in folders {
        for sub in ["cur", "new"] {
            for file in system.list(&folder.join(sub)).ok()? {
                let size = file
                    .split(',')
                    .find_map(|part| part.strip_prefix("S="))
                    .map(|n| n.split(':').next().unwrap_or(n))?;
                bytes = bytes.saturating_add(size.parse::<u64>().ok()?);
            }
        }
    }
    Some(bytes.div_ceil(1 << 20))
}

/// The account's mailboxes (without hashes) and aliases.
pub fn list<S: System>(exec: &Executor<S>, spec: &AccountSpec) -> Result<AgentMail, ApplyError> {
    let mut out = AgentMail::default();
    for d in mail_domains(spec) {
        let mail = load_domain(exec, &d)?;
        out.mailboxes.extend(
            mail.mailboxes
                .iter()
                .map(|(address, (_, quota))| AgentMailbox {
                    address: address.to_string(),
                    quota_mb: quota.map(QuotaMb::get),
                    used_mb: used_mb(exec, address),
                }),
        );
        out.aliases
            .extend(mail.aliases.iter().map(|(address, destinations)| {
                AliasView::from(&Alias {
                    address: address.clone(),
                    destinations: destinations.clone(),
                })
            }));
    }
    Ok(out)
}

/// The DKIM records of the account's mail domains that have a key.
pub fn dkim<S: System>(
    exec: &Executor<S>,
    spec: &AccountSpec,
) -> Result<Vec<DkimRecord>, ApplyError> {
    let layout = exec.layout();
    let mut out = Vec::new();
    for d in mail_domains(spec) {
        let Some(pem) = exec.system().read(&opendkim::key_path(layout, &d))? else {
            continue;
        };
        out.push(DkimRecord {
            domain: d.to_string(),
            selector: layout.dkim_selector.clone(),
            name: opendkim::record_name(layout, &d),
            value: public_record(&String::from_utf8_lossy(&pem))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dkim_key_gives_its_public_record() {
        let pem = new_key().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let record = public_record(&pem).unwrap();
        assert!(record.starts_with("v=DKIM1; k=rsa; p=MII"), "{record}");
        // RSA 2048: the SubjectPublicKeyInfo is 294 bytes, 392 base64 characters.
        assert_eq!(record.len(), "v=DKIM1; k=rsa; p=".len() + 392);
    }
}
