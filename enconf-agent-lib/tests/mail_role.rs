//! The mail role end to end: the controller (in process) drives an agent whose Postfix,
//! Dovecot and OpenDKIM are real daemons on loopback ports. Mail is sent over SMTP and read
//! over IMAP. One mail server serves every test of this file (each uses its own account and
//! domain).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use common::TOKEN;
use common::mailhost::MailHost;
use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::RealSystem;
use enconf_agent_lib::transport::InProcess;
use enconf_core::controller::{Controller, ControllerConfig, ControllerError};
use enconf_core::domain::{AccountId, AgentToken, AgentUrl, ServerId};
use enconf_core::protocol::ErrorBody;
use enconf_core::protocol::mail::{AliasInput, MailboxInput, MailboxPatch};
use serde_json::json;

struct Fixture {
    controller: Controller,
    server: ServerId,
    runtime: tokio::runtime::Runtime,
    agent: Arc<Agent<RealSystem>>,
    /// The agent as the controller reaches it (requests queue like the controller's).
    transport: Arc<InProcess>,
    host: Mutex<MailHost>,
    root: tempfile::TempDir,
    /// The mail certificate (DER), put once for the tests that need it.
    certificate: Mutex<Option<Vec<u8>>>,
}

/// The mail server shared by the tests that run at the same time.
fn fixture() -> Option<Arc<Fixture>> {
    static SHARED: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    let mut slot = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(f) = slot.upgrade() {
        return Some(f);
    }
    let mut host = common::mailhost::prepare()?;
    let root = tempfile::tempdir().unwrap();
    let settings = host.agent_settings();
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = common::config(root.path(), &extra);
    let applier = Applier::new(config.layout, RealSystem::new()).with_roles(config.roles);
    // The start runs the role's set-up, which writes its settings into the services' files
    // before they start (a mail-only server without nginx starts without its server block).
    applier.start().unwrap();
    host.start();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let transport = Arc::new(InProcess::new());
    let agent =
        runtime.block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 20) });
    let url: AgentUrl = "http://127.0.0.1:50098".parse().unwrap();
    transport.add(url.clone(), router(Arc::clone(&agent)));
    let controller = Controller::new(
        Arc::new(enconf_core::store::MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let input = serde_json::from_value(json!({
        "name": "mail", "hostname": "mx.enconf-test.example",
        "mail_hostname": "mx.enconf-test.example", "agent_url": url.to_string(),
        "agent_token": TOKEN, "roles": ["mail"],
    }))
    .unwrap();
    let server = runtime.block_on(controller.add_server(&input)).unwrap();
    assert!(server.reachable, "{server:?}");
    let fixture = Arc::new(Fixture {
        controller,
        server: server.id,
        runtime,
        agent,
        transport,
        host: Mutex::new(host),
        root,
        certificate: Mutex::new(None),
    });
    *slot = Arc::downgrade(&fixture);
    Some(fixture)
}

impl Fixture {
    /// Puts a self-signed mail certificate through the controller, once: the tests that use it
    /// run at the same time, and a second one would replace the first under the other's feet.
    fn mail_certificate(&self) -> Vec<u8> {
        let mut slot = self
            .certificate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(der) = &*slot {
            return der.clone();
        }
        let input = serde_json::from_value(json!({"mode": "selfsigned"})).unwrap();
        let state = self
            .runtime
            .block_on(self.controller.set_ssl(
                self.server,
                enconf_core::ssl::CertKind::Mail,
                &input,
            ))
            .unwrap();
        assert_eq!(state.subject_names, ["mx.enconf-test.example"]);
        let cert = std::fs::read_to_string(self.root.path().join("ssl/mail.crt")).unwrap();
        let der = enconf_core::ssl::cert::parse_chain(&cert).unwrap()[0].to_vec();
        *slot = Some(der.clone());
        der
    }

    fn host(&self) -> std::sync::MutexGuard<'_, MailHost> {
        self.host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new account with the mail role for `domain`.
    fn account(&self, user: &str, domain: &str) -> AccountId {
        let input = serde_json::from_value(json!({
            "username": user, "domains": [domain], "roles": ["mail"],
        }))
        .unwrap();
        let account = self
            .runtime
            .block_on(self.controller.create_account(&input))
            .unwrap();
        AccountId(account.id)
    }

    fn mailbox(&self, id: AccountId, address: &str, password: &str, quota: Option<u32>) {
        let input: MailboxInput = serde_json::from_value(json!({
            "address": address, "password": password, "quota_mb": quota,
        }))
        .unwrap();
        let view = self
            .runtime
            .block_on(self.controller.create_mailbox(id, &input))
            .unwrap();
        assert_eq!(view.address, address);
    }

    fn alias(&self, id: AccountId, address: &str, destinations: &[&str]) {
        let input: AliasInput = serde_json::from_value(json!({
            "address": address, "destinations": destinations,
        }))
        .unwrap();
        self.runtime
            .block_on(self.controller.put_alias(id, None, &input))
            .unwrap();
    }
}

/// A user name and a domain unique to this process and test.
fn names(tag: &str) -> (String, String) {
    let n = std::process::id() % 100_000;
    (
        format!("encm{n}{tag}"),
        format!("{tag}-{n}.mail-test.example"),
    )
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\nMessage-ID: <{subject}@client.example>\n\
         Date: Wed, 02 Dec 2026 12:00:00 +0000\n\n{subject}: the body.\n"
    )
}

fn refusal(e: ControllerError) -> (u16, Option<String>) {
    let body = ErrorBody::from(e);
    (body.status(), body.error.field)
}

/// Every file under `dir`, with its content.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::snapshot(dir)
}

/// What the services and the agent hold of `domain`: its passwd-file, its entries in the
/// three maps and the agent's alias source (other tests change other domains meanwhile).
fn domain_state(f: &Fixture, domain: &str) -> Vec<String> {
    let host = f.host();
    let mut out = vec![
        std::fs::read_to_string(host.path(&format!("dovecot/users/{domain}"))).unwrap_or_default(),
        std::fs::read_to_string(f.root.path().join(format!("state/mail/aliases/{domain}")))
            .unwrap_or_default(),
    ];
    for map in ["domains", "mailboxes", "aliases"] {
        let arg = format!(
            "lmdb:{}",
            host.path(&format!("postfix/enconf/{map}")).display()
        );
        let dump = std::process::Command::new("postmap")
            .args(["-s", &arg])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&dump.stdout)
            .lines()
            .filter(|l| l.contains(domain))
            .map(str::to_owned)
            .collect();
        lines.sort();
        out.push(format!("{map}: {}", lines.join(" | ")));
    }
    out
}

#[test]
fn a_mailbox_receives_reads_forwards_is_held_to_its_quota_and_goes() {
    let Some(f) = fixture() else {
        return;
    };
    let (user, domain) = names("a");
    let id = f.account(&user, &domain);
    let info = format!("info@{domain}");
    let sales = format!("sales@{domain}");
    f.mailbox(id, &info, "correct horse 1", None);
    f.mailbox(id, &sales, "battery staple 2", Some(1));
    let host = f.host();

    // The password is kept by the controller and the agent as an Argon2id hash only.
    let passwd = std::fs::read_to_string(host.path(&format!("dovecot/users/{domain}"))).unwrap();
    assert!(
        passwd.contains(&format!("{info}:{{ARGON2ID}}$argon2id$")),
        "{passwd}"
    );
    assert!(!passwd.contains("correct horse"), "{passwd}");

    // Delivered over SMTP, read over IMAP with the password.
    let (code, text) = host.send(
        "someone@elsewhere.example",
        &[&info],
        &message("someone@elsewhere.example", &info, "first"),
    );
    assert_eq!(code, 250, "{text}\n{}", host.logs());
    let inbox = host.inbox(&info, "correct horse 1", 1);
    assert!(inbox[0].contains("Subject: first"), "{inbox:?}");
    let refused = host.imap(&info, "wrong horse 1").err();
    assert!(
        refused.is_some_and(|t| t.contains("NO")),
        "a wrong password"
    );
    let maildir = host.path(&format!("vmail/{domain}/info/Maildir"));
    assert!(maildir.is_dir(), "one Maildir per mailbox");
    let meta = std::fs::metadata(&maildir).unwrap();
    let vmail = std::os::unix::fs::MetadataExt::uid(&meta);
    assert_ne!(vmail, 0, "the Maildir belongs to the vmail user");

    // An alias delivers to each destination.
    let team = format!("team@{domain}");
    drop(host);
    f.alias(id, &team, &[&info, &sales]);
    let host = f.host();
    let (code, text) = host.send(
        "someone@elsewhere.example",
        &[&team],
        &message("someone@elsewhere.example", &team, "to-the-team"),
    );
    assert_eq!(code, 250, "{text}");
    let inbox = host.inbox(&info, "correct horse 1", 2);
    assert!(inbox.iter().any(|m| m.contains("Subject: to-the-team")));
    let inbox = host.inbox(&sales, "battery staple 2", 1);
    assert!(inbox[0].contains("Subject: to-the-team"));
    // The list says how full each mailbox is (megabytes, rounded up: a few small messages).
    let boxes = f.runtime.block_on(f.controller.mailboxes(id)).unwrap();
    let used: Vec<_> = boxes
        .iter()
        .map(|b| (b.address.as_str(), b.used_mb))
        .collect();
    assert_eq!(used, [(info.as_str(), Some(1)), (sales.as_str(), Some(1))]);

    // A message that would exceed the quota (1 MB) is refused at RCPT time.
    let mut smtp = host.smtp();
    let (code, _) = smtp.command("MAIL FROM:<someone@elsewhere.example> SIZE=2000000");
    assert_eq!(code, 250);
    let (code, text) = smtp.command(&format!("RCPT TO:<{sales}>"));
    assert_eq!(code, 552, "{text}\n{}", host.logs());
    let (code, text) = smtp.command(&format!("RCPT TO:<{info}>"));
    assert_eq!(code, 250, "the other mailbox has room: {text}");
    drop(smtp);

    // A changed password is the one that logs in.
    let old_passwd =
        std::fs::read_to_string(host.path(&format!("dovecot/users/{domain}"))).unwrap();
    drop(host);
    let patch: MailboxPatch = serde_json::from_value(json!({"password": "new horse 3"})).unwrap();
    f.runtime
        .block_on(f.controller.change_mailbox(id, &info, &patch))
        .unwrap();
    let host = f.host();
    let passwd = std::fs::read_to_string(host.path(&format!("dovecot/users/{domain}"))).unwrap();
    assert_ne!(old_passwd, passwd);
    // Dovecot looks at a passwd-file at most once a second.
    common::services::wait_for("the new password", || {
        host.imap(&info, "new horse 3").is_ok()
    });
    assert!(host.imap(&info, "correct horse 1").is_err());

    // A deleted mailbox's address is refused at RCPT time; its mail is kept aside.
    drop(host);
    f.runtime
        .block_on(f.controller.delete_mailbox(id, &sales))
        .unwrap();
    let host = f.host();
    let mut smtp = host.smtp();
    smtp.command("MAIL FROM:<someone@elsewhere.example>");
    let (code, text) = smtp.command(&format!("RCPT TO:<{sales}>"));
    assert!((500..600).contains(&code), "{code} {text}");
    let home = host.path(&format!("vmail/{domain}/sales"));
    assert!(
        !home.exists(),
        "{:?}\n{}",
        files(&home).keys().collect::<Vec<_>>(),
        host.logs()
    );
    let kept = std::fs::read_dir(host.path("vmail/.deleted"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("sales"));
    assert!(kept, "the Maildir is kept until a backup of it exists");

    // Deleting the account removes its mail configuration; the stored mail stays aside.
    drop(host);
    f.runtime.block_on(f.controller.delete_account(id)).unwrap();
    let host = f.host();
    assert!(!host.path(&format!("dovecot/users/{domain}")).exists());
    let mut smtp = host.smtp();
    smtp.command("MAIL FROM:<someone@elsewhere.example>");
    let (code, text) = smtp.command(&format!("RCPT TO:<{info}>"));
    // The domain is no longer this server's: Postfix's relay rule answers (its default,
    // `defer_unauth_destination`, says so with a 4xx).
    assert!(
        (400..600).contains(&code) && text.contains("Relay access denied"),
        "{code} {text}"
    );
    assert!(host.imap(&info, "new horse 3").is_err());
    let vmail = host.path("vmail/.deleted");
    drop(host);
    assert_eq!(
        domain_state(&f, &domain)[2..],
        ["domains: ", "mailboxes: ", "aliases: "],
        "no entry of the domain is left in the maps"
    );
    let kept = std::fs::read_dir(vmail)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{domain}-"))
        });
    assert!(kept, "the domain's mail is kept aside");
}

#[test]
fn mail_sent_through_the_server_is_dkim_signed_with_the_published_key() {
    let Some(f) = fixture() else {
        return;
    };
    let (user, domain) = names("d");
    let id = f.account(&user, &domain);
    let info = format!("info@{domain}");
    f.mailbox(id, &info, "correct horse 1", None);
    let records = f.runtime.block_on(f.controller.dkim(id)).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.domain, domain);
    assert_eq!(
        record.name,
        format!("{}._domainkey.{domain}", record.selector)
    );
    assert!(
        record.value.starts_with("v=DKIM1; k=rsa; p="),
        "{}",
        record.value
    );
    let key = f
        .host()
        .path(&format!("opendkim/enconf/keys/{domain}.private"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the private key");

    let host = f.host();
    // From the server's own network, as a web application on it sends.
    let (code, text) = host.send_from(
        [127, 0, 0, 1],
        &info,
        &[&info],
        &message(&info, &info, "signed"),
    );
    assert_eq!(code, 250, "{text}");
    let inbox = host.inbox(&info, "correct horse 1", 1);
    let signed = &inbox[0];
    assert!(
        signed.contains("DKIM-Signature:"),
        "{signed}\n{}",
        host.logs()
    );

    // dkimpy checks the signature against the record the API gave.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("message"), signed.replace("\r\n", "\n")).unwrap();
    let verify = |txt: &str| {
        std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(
                "import sys, dkim\n\
                 name, txt = sys.argv[2].encode(), sys.argv[3].encode()\n\
                 def dns(q, timeout=5):\n    return txt if q.rstrip(b'.') == name else None\n\
                 msg = open(sys.argv[1], 'rb').read()\n\
                 sys.exit(0 if dkim.verify(msg, dnsfunc=dns) else 1)\n",
            )
            .arg(dir.path().join("message"))
            .arg(&record.name)
            .arg(txt)
            .status()
            .unwrap()
            .success()
    };
    assert!(verify(&record.value), "the signature verifies");
    // And not against another key: the check can fail.
    let (head, key) = record.value.split_once("p=").unwrap();
    let mut key = key.as_bytes().to_vec();
    let middle = key.len() / 2;
    key[middle] = if key[middle] == b'A' { b'B' } else { b'A' };
    let other = format!("{head}p={}", String::from_utf8(key).unwrap());
    assert!(!verify(&other));
}

#[test]
fn starttls_on_smtp_and_imap_presents_the_mail_certificate() {
    let Some(f) = fixture() else {
        return;
    };
    let der = f.mail_certificate();
    let host = f.host();
    let name = "mx.enconf-test.example";
    let mut smtp = Err(String::new());
    common::services::wait_for("postfix presenting the certificate", || {
        smtp = common::mail::smtp_certificate(host.smtp_port, name, &der);
        smtp.is_ok()
    });
    assert_eq!(smtp.unwrap(), der);
    let mut imap = Err(String::new());
    common::services::wait_for("dovecot presenting the certificate", || {
        imap = common::mail::imap_certificate(host.imap_port, name, &der);
        imap.is_ok()
    });
    assert_eq!(imap.unwrap(), der);
}

#[test]
fn hostile_addresses_are_refused_and_the_services_keep_serving() {
    let Some(f) = fixture() else {
        return;
    };
    let (user, domain) = names("h");
    let id = f.account(&user, &domain);
    let info = format!("info@{domain}");
    f.mailbox(id, &info, "correct horse 1", None);
    let before = domain_state(&f, &domain);

    let mailbox = |address: &str, password: &str, quota: serde_json::Value| {
        let input: MailboxInput = serde_json::from_value(json!({
            "address": address, "password": password, "quota_mb": quota,
        }))
        .unwrap();
        f.runtime
            .block_on(f.controller.create_mailbox(id, &input))
            .map(drop)
            .map_err(refusal)
    };
    let long = format!("{}@{domain}", "a".repeat(65));
    for address in [
        format!("a:b@{domain}"),
        format!("a b@{domain}"),
        format!("a\nb@{domain}"),
        format!("a;b@{domain}"),
        format!("a\"b@{domain}"),
        format!("a{{b}}@{domain}"),
        format!(".a@{domain}"),
        format!("a.@{domain}"),
        format!("a..b@{domain}"),
        long,
        format!("info@{domain}\nx"),
        format!("info@{domain}:x"),
        "info@not-this-account.example".to_owned(),
        "info@".to_owned(),
        format!("@{domain}"),
    ] {
        assert_eq!(
            mailbox(&address, "correct horse 1", json!(null)),
            Err((422, Some("address".into()))),
            "{address:?}"
        );
    }
    for password in ["short", "correct\nhorse", "correct:horse\u{7}"] {
        assert_eq!(
            mailbox(&format!("new@{domain}"), password, json!(null)),
            Err((422, Some("password".into()))),
            "{password:?}"
        );
    }
    for quota in [json!(0), json!(-1), json!(1_048_577), json!(1.5)] {
        assert_eq!(
            mailbox(&format!("new@{domain}"), "correct horse 1", quota.clone()),
            Err((422, Some("quota_mb".into()))),
            "{quota}"
        );
    }
    let alias = |address: String, destinations: Vec<String>| {
        let input: AliasInput = serde_json::from_value(json!({
            "address": address, "destinations": destinations,
        }))
        .unwrap();
        f.runtime
            .block_on(f.controller.put_alias(id, None, &input))
            .map(drop)
            .map_err(refusal)
    };
    let (a, b) = (format!("a@{domain}"), format!("b@{domain}"));
    assert_eq!(
        alias(a.clone(), vec![a.clone()]),
        Err((422, Some("destinations".into())))
    );
    assert_eq!(
        alias(a.clone(), vec![format!("x@{domain}\nrelay")]),
        Err((422, Some("destinations[0]".into())))
    );
    alias(a.clone(), vec![b.clone()]).unwrap();
    assert_eq!(
        alias(b.clone(), vec![a.clone()]),
        Err((422, Some("destinations".into()))),
        "a loop"
    );
    assert_eq!(
        alias(info.clone(), vec![b.clone()]).map_err(|e| e.0),
        Err(409),
        "an address is a mailbox or an alias"
    );
    f.runtime
        .block_on(f.controller.delete_alias(id, &a))
        .unwrap();

    // Nothing of it reached the services' files; they run and deliver as before.
    assert_eq!(domain_state(&f, &domain), before);
    let mut host = f.host();
    assert!(
        host.running().iter().all(|(_, up)| *up),
        "{:?}",
        host.running()
    );
    let (code, text) = host.send(
        "someone@elsewhere.example",
        &[&info],
        &message("someone@elsewhere.example", &info, "still"),
    );
    assert_eq!(code, 250, "{text}");
    let inbox = host.inbox(&info, "correct horse 1", 1);
    assert!(inbox[0].contains("Subject: still"));

    // A mail server that lost its files gets the account's mail again from the record.
    let passwd = host.path(&format!("dovecot/users/{domain}"));
    std::fs::remove_file(&passwd).unwrap();
    drop(host);
    let report = f
        .runtime
        .block_on(f.controller.reconcile(f.server))
        .unwrap();
    assert!(report.differing.contains(&user), "{report:?}");
    assert!(f.runtime.block_on(f.controller.resend_mail(id)).unwrap());
    assert!(!f.runtime.block_on(f.controller.resend_mail(id)).unwrap());
    let report = f
        .runtime
        .block_on(f.controller.reconcile(f.server))
        .unwrap();
    assert!(report.in_sync.contains(&user), "{report:?}");
    let host = f.host();
    assert!(passwd.exists());
    common::services::wait_for("the mailbox back", || {
        host.imap(&info, "correct horse 1").is_ok()
    });
}

/// Sends to `to` over port 25's stand-in from the internet (127.0.0.2): STARTTLS, then AUTH
/// when `login` is given. The SMTP code of the answer to the mail, or of the login.
fn submit(port: u16, login: Option<(&str, &str)>, from: &str, to: &str) -> String {
    const SCRIPT: &str = r#"
import smtplib, ssl, sys
port, user, password, sender, rcpt = sys.argv[1:6]
s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="client.example", source_address=("127.0.0.2", 0), timeout=20)
s.ehlo()
s.starttls(context=ssl._create_unverified_context())
s.ehlo()
try:
    if user:
        s.login(user, password)
    s.sendmail(sender, [rcpt], f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: submitted\r\n\r\nsubmitted\r\n")
    print("250")
except smtplib.SMTPAuthenticationError as e:
    print(f"login {e.smtp_code}")
except smtplib.SMTPRecipientsRefused as e:
    print(" ".join(str(code) for code, _ in e.recipients.values()))
"#;
    let (user, password) = login.unwrap_or(("", ""));
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT, &port.to_string(), user, password, from, to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_mailbox_sends_through_the_server_after_logging_in_over_tls() {
    let Some(f) = fixture() else {
        return;
    };
    // SMTP AUTH is offered over TLS only: the server needs its mail certificate.
    f.mail_certificate();
    let (user, domain) = names("s");
    let id = f.account(&user, &domain);
    let info = format!("info@{domain}");
    f.mailbox(id, &info, "correct horse 1", None);
    let port = f.host().smtp_port;
    let outside = "someone@elsewhere.example";
    let mut answer = String::new();
    // Dovecot's auth looks at the passwd-file at most once a second.
    common::services::wait_for("SMTP AUTH with the mailbox's password", || {
        answer = submit(port, Some((&info, "correct horse 1")), &info, outside);
        answer == "250"
    });
    assert_eq!(
        submit(port, Some((&info, "wrong horse 1")), &info, outside),
        "login 535"
    );
    assert_eq!(
        submit(port, None, &info, outside),
        "454",
        "no relaying without a login"
    );
}

#[test]
fn a_moving_domain_answers_try_again_later_until_the_next_put() {
    let Some(f) = fixture() else {
        return;
    };
    let (user, domain) = names("m");
    let id = f.account(&user, &domain);
    let info = format!("info@{domain}");
    f.mailbox(id, &info, "correct horse 7", None);
    let rcpt = |f: &Fixture| {
        let host = f.host();
        let mut smtp = host.smtp();
        smtp.command("MAIL FROM:<someone@elsewhere.example>");
        smtp.command(&format!("RCPT TO:<{info}>"))
    };
    assert_eq!(rcpt(&f).0, 250);

    // The last pass of a migration: senders are told to try again later, nothing is lost.
    let user_name = enconf_core::domain::UserName::parse(&user).unwrap();
    let server = f
        .runtime
        .block_on(f.controller.store().server(f.server))
        .unwrap();
    let endpoint = enconf_core::transport::AgentEndpoint::from(&server);
    let client = enconf_core::transport::AgentClient::new(&*f.transport, &endpoint);
    assert!(
        f.runtime
            .block_on(client.freeze(&user_name))
            .unwrap()
            .changed
    );
    let (code, text) = rcpt(&f);
    assert_eq!(code, 450, "{text}\n{}", f.host().logs());
    assert!(text.contains("moving"), "{text}");
    // Other domains are not held back.
    let (other_user, other) = names("n");
    let other_id = f.account(&other_user, &other);
    let other_box = format!("info@{other}");
    f.mailbox(other_id, &other_box, "correct horse 8", None);
    {
        let host = f.host();
        let mut smtp = host.smtp();
        smtp.command("MAIL FROM:<someone@elsewhere.example>");
        assert_eq!(smtp.command(&format!("RCPT TO:<{other_box}>")).0, 250);
    }

    // The next put of the account (what undoing a failed migration sends) lets mail in again.
    let spec = f.agent.applier().installed_spec(&user_name).unwrap();
    f.runtime.block_on(client.put_account(&spec)).unwrap();
    let (code, text) = rcpt(&f);
    assert_eq!(code, 250, "{text}");
    let arg = format!("lmdb:{}", f.host().path("postfix/enconf/frozen").display());
    let dump = std::process::Command::new("postmap")
        .args(["-s", &arg])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&dump.stdout).contains(&domain),
        "no entry of the domain is left"
    );
    for id in [id, other_id] {
        f.runtime.block_on(f.controller.delete_account(id)).unwrap();
    }
}
