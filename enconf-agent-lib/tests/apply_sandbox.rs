//! Apply semantics against the sandbox system: what is written, what is run, idempotency,
//! rollback, crash recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use enconf_agent_lib::roles::DataFate;
use std::path::Path;

use common::{layout, snapshot, spec, with_memory};
use enconf_agent_lib::apply::{Applier, ApplyError};
use enconf_agent_lib::system::Sandbox;
use enconf_core::domain::UserName;

fn applier(root: &Path) -> Applier<Sandbox> {
    common::sandbox_applier(root)
}

fn read(a: &Applier<Sandbox>, path: &str) -> Option<String> {
    std::fs::read_to_string(a.system().host_path(Path::new(path))).ok()
}

#[test]
fn put_writes_validates_and_reloads_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    let changed = a
        .put(&[
            spec("shop", &["shop.example", "www.shop.example"]),
            spec("blog", &["blog.example"]),
        ])
        .unwrap();
    assert_eq!(changed, vec![true, true]);
    let vhost = read(&a, "/srv/sites/enconf-shop.conf").unwrap();
    assert!(vhost.contains("server_name shop.example www.shop.example;"));
    assert!(
        read(&a, "/srv/php/8.2/pool.d/enconf-blog.conf")
            .unwrap()
            .contains("[blog]")
    );
    let cmds = a.system().commands();
    let count = |prefix: &str| cmds.iter().filter(|c| c.starts_with(prefix)).count();
    assert_eq!(count("useradd"), 2);
    assert_eq!(
        count("/usr/sbin/nginx -t"),
        1,
        "one validation for the batch: {cmds:#?}"
    );
    assert_eq!(count("/usr/sbin/php-fpm8.2 -t"), 1);
    assert_eq!(count("kill -HUP 100"), 1, "one nginx reload");
    assert_eq!(count("kill -USR2 200"), 1, "one PHP-FPM reload");
    // The test config holds exactly the changed vhosts, as staged copies: nothing live changes
    // before they pass.
    let check = read(&a, "/srv/state/check/nginx.conf").unwrap();
    assert_eq!(
        check
            .matches("include /srv/state/check/stage/enconf-")
            .count(),
        2,
        "{check}"
    );
    assert!(
        check.contains("include /srv/sites/enconf-00-http.conf;"),
        "unchanged: live"
    );
    assert!(
        read(&a, "/srv/state/check/stage/enconf-shop.conf").is_none(),
        "staged copies are removed after the check"
    );
    assert!(
        read(&a, "/srv/state/journal.json").is_none(),
        "journal removed after success"
    );

    let listed = a.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].username, "shop");
    assert_eq!(listed[1].php_version, "8.2");
}

#[test]
fn the_same_put_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    let s = spec("shop", &["shop.example"]);
    assert_eq!(a.put(std::slice::from_ref(&s)).unwrap(), vec![true]);
    let before = snapshot(&dir.path().join("box"));
    a.system().clear_commands();
    assert_eq!(a.put(std::slice::from_ref(&s)).unwrap(), vec![false]);
    assert!(
        a.system().commands().is_empty(),
        "{:?}",
        a.system().commands()
    );
    assert_eq!(snapshot(&dir.path().join("box")), before);
    // A change in PHP settings is a change.
    assert_eq!(a.put(&[with_memory(s, 256)]).unwrap(), vec![true]);
    assert!(
        read(&a, "/srv/php/8.2/pool.d/enconf-shop.conf")
            .unwrap()
            .contains("memory_limit] = 256M")
    );
}

#[test]
fn a_rejected_config_restores_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    a.put(&[spec("shop", &["shop.example"])]).unwrap();
    let before = snapshot(&dir.path().join("box/srv/sites"));
    let pools_before = snapshot(&dir.path().join("box/srv/php"));
    a.system().on_command(|line| {
        if line.contains("nginx -t") {
            Err("nginx: [emerg] invalid number of arguments in \"server_name\"".into())
        } else {
            Ok(String::new())
        }
    });
    a.system().clear_commands();
    let err = a
        .put(&[
            spec("shop", &["shop.example", "new.example"]),
            spec("blog", &["blog.example"]),
        ])
        .unwrap_err();
    match err {
        ApplyError::Rejected { validator, message } => {
            assert_eq!(validator, "nginx");
            assert!(message.contains("invalid number of arguments"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(snapshot(&dir.path().join("box/srv/sites")), before);
    assert_eq!(snapshot(&dir.path().join("box/srv/php")), pools_before);
    assert!(read(&a, "/srv/state/accounts/blog.json").is_none());
    let record = a
        .system()
        .host_path(Path::new("/srv/state/accounts/shop.json"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(record).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a restored record keeps its mode");
    assert!(read(&a, "/srv/state/journal.json").is_none());
    assert_eq!(a.list().unwrap().len(), 1);
    // The services never read the rejected files: no reload at all.
    let cmds = a.system().commands();
    assert!(cmds.iter().any(|c| c.contains("nginx -t")), "{cmds:?}");
    assert!(!cmds.iter().any(|c| c.starts_with("kill")), "{cmds:?}");
}

#[test]
fn a_crash_mid_apply_is_undone_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    a.put(&[spec("shop", &["shop.example"])]).unwrap();
    let before = snapshot(&dir.path().join("box/srv/sites"));
    // The agent dies after writing the new files, as it signals nginx.
    a.system().on_command(|line| {
        if line.starts_with("kill -HUP") {
            panic!("killed");
        }
        Ok(String::new())
    });
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.put(&[spec("shop", &["shop.example", "www.shop.example"])])
    }));
    assert!(crashed.is_err());
    assert!(
        read(&a, "/srv/state/journal.json").is_some(),
        "the journal outlives the crash"
    );
    assert!(
        read(&a, "/srv/sites/enconf-shop.conf")
            .unwrap()
            .contains("www.shop.example")
    );

    // A new agent process on the same machine.
    let restarted = Applier::new(
        layout(Path::new("/srv")),
        Sandbox::new(dir.path().join("box")),
    );
    restarted.start().unwrap();
    assert_eq!(snapshot(&dir.path().join("box/srv/sites")), before);
    assert!(read(&restarted, "/srv/state/journal.json").is_none());
    assert!(
        restarted
            .system()
            .commands()
            .iter()
            .any(|c| c == "kill -HUP 100")
    );
}

#[test]
fn a_frozen_site_has_no_php_until_the_next_put() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    a.put(&[spec("shop", &["shop.example"])]).unwrap();
    a.system().clear_commands();
    let shop = UserName::parse("shop").unwrap();
    assert!(a.freeze(&shop).unwrap());
    assert!(read(&a, "/srv/php/8.2/pool.d/enconf-shop.conf").is_none());
    assert!(
        read(&a, "/srv/sites/enconf-shop.conf").is_some(),
        "static files still served"
    );
    assert!(
        a.system().commands().iter().any(|c| c == "kill -USR2 200"),
        "PHP-FPM reloaded: {:?}",
        a.system().commands()
    );
    // The record is unchanged: the next put of the account brings the pool back.
    assert_eq!(a.put(&[spec("shop", &["shop.example"])]).unwrap(), [true]);
    assert!(read(&a, "/srv/php/8.2/pool.d/enconf-shop.conf").is_some());
    assert!(matches!(
        a.freeze(&UserName::parse("ghost").unwrap()),
        Err(ApplyError::UnknownAccount(_))
    ));
}

#[test]
fn delete_removes_files_then_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    a.put(&[
        spec("shop", &["shop.example"]),
        spec("blog", &["blog.example"]),
    ])
    .unwrap();
    a.system().clear_commands();
    let shop = UserName::parse("shop").unwrap();
    assert!(a.delete(&shop, DataFate::Keep).unwrap());
    assert!(read(&a, "/srv/sites/enconf-shop.conf").is_none());
    assert!(read(&a, "/srv/php/8.2/pool.d/enconf-shop.conf").is_none());
    assert!(read(&a, "/srv/state/accounts/shop.json").is_none());
    assert!(read(&a, "/srv/sites/enconf-blog.conf").is_some());
    let cmds = a.system().commands();
    let pos = |p: &str| cmds.iter().position(|c| c.starts_with(p)).unwrap();
    assert!(
        pos("kill -HUP") < pos("userdel"),
        "reload before the user goes: {cmds:?}"
    );
    assert!(
        !cmds.iter().any(|c| c.contains(" -t")),
        "removing server blocks needs no validation: {cmds:?}"
    );
    assert!(
        !a.delete(&shop, DataFate::Keep).unwrap(),
        "second delete: nothing to do"
    );
    assert_eq!(a.list().unwrap().len(), 1);
}

#[test]
fn changing_php_version_moves_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    a.put(&[spec("shop", &["shop.example"])]).unwrap();
    let mut s = spec("shop", &["shop.example"]);
    s.php_version = Some("8.3".parse().unwrap());
    a.system().clear_commands();
    assert_eq!(a.put(&[s]).unwrap(), vec![true]);
    assert!(read(&a, "/srv/php/8.2/pool.d/enconf-shop.conf").is_none());
    assert!(read(&a, "/srv/php/8.3/pool.d/enconf-shop.conf").is_some());
    let cmds = a.system().commands();
    assert!(
        cmds.contains(&"kill -USR2 200".to_owned()) && cmds.contains(&"kill -USR2 300".to_owned())
    );
    assert!(
        read(&a, "/srv/sites/enconf-shop.conf")
            .unwrap()
            .contains("/srv/run/enconf-shop.sock")
    );
}

#[test]
fn a_restarted_agent_still_knows_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    let s = spec("shop", &["shop.example"]);
    assert_eq!(a.put(std::slice::from_ref(&s)).unwrap(), vec![true]);
    let passwd = read(&a, "/etc/passwd").unwrap();
    assert!(
        passwd.starts_with("shop:x:1000:1000::/srv/www/shop:/usr/sbin/nologin\n"),
        "{passwd}"
    );
    drop(a);
    let restarted = Applier::new(
        layout(Path::new("/srv")),
        Sandbox::new(dir.path().join("box")),
    );
    restarted.start().unwrap();
    restarted.system().clear_commands();
    assert_eq!(restarted.put(&[s]).unwrap(), vec![false]);
    assert!(restarted.system().commands().is_empty());
    assert!(
        restarted
            .delete(&UserName::parse("shop").unwrap(), DataFate::Keep)
            .unwrap()
    );
    assert!(!read(&restarted, "/etc/passwd").unwrap().contains("shop"));
    assert!(
        !restarted
            .system()
            .host_path(Path::new("/srv/www/shop"))
            .exists(),
        "home removed"
    );
}

#[test]
fn the_mail_certificate_configures_the_mail_services_there_are() {
    use enconf_core::ssl::CertKind;
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    let name: enconf_core::domain::DomainName = "mx.example.com".parse().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let pair = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&name), now).unwrap();
    let put = |a: &Applier<Sandbox>| {
        a.put_certificate(
            CertKind::Mail,
            std::slice::from_ref(&name),
            &pair.chain_pem,
            &pair.key_pem,
        )
    };

    // No mail service here (the stand-ins taken away): refused, nothing written.
    let host = |p: &str| a.system().host_path(Path::new(p));
    for path in ["/etc/postfix/main.cf", "/etc/dovecot/dovecot.conf"] {
        std::fs::remove_file(host(path)).unwrap();
    }
    let before = snapshot(dir.path());
    assert!(matches!(put(&a), Err(ApplyError::Rejected { .. })));
    assert_eq!(snapshot(dir.path()), before);

    for (path, text) in [
        ("/etc/postfix/main.cf", "myhostname = mx.example.com\n"),
        ("/etc/dovecot/dovecot.conf", "!include_try conf.d/*.conf\n"),
        ("/run/dovecot/master.pid", "400\n"),
    ] {
        std::fs::create_dir_all(host(path).parent().unwrap()).unwrap();
        std::fs::write(host(path), text).unwrap();
    }
    a.system().clear_commands();
    assert!(put(&a).unwrap());
    let main_cf = read(&a, "/etc/postfix/main.cf").unwrap();
    assert!(main_cf.starts_with("myhostname = mx.example.com\n"));
    assert!(
        main_cf.contains("smtpd_tls_cert_file = /srv/ssl/mail.crt\n"),
        "{main_cf}"
    );
    let dovecot = read(&a, "/etc/dovecot/conf.d/99-enconf-tls.conf").unwrap();
    assert!(
        dovecot.contains("ssl_key = </srv/ssl/mail.key\n"),
        "{dovecot}"
    );
    assert_eq!(read(&a, "/srv/ssl/mail.crt").unwrap(), pair.chain_pem);
    let cmds = a.system().commands().join("\n");
    assert!(
        cmds.contains("doveconf -c /srv/state/check/dovecot.conf -n"),
        "{cmds}"
    );
    assert!(cmds.contains("postfix -c /etc/postfix reload"), "{cmds}");
    assert!(cmds.contains("kill -HUP 400"), "{cmds}");
    assert!(!cmds.contains("nginx"), "nginx is not involved: {cmds}");
    let stage = host("/srv/state/check/stage");
    let left: Vec<_> = std::fs::read_dir(&stage)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "no staged copy of the key is left: {left:?}"
    );

    a.system().clear_commands();
    assert!(!put(&a).unwrap(), "the same again changes nothing");
    assert!(a.system().commands().is_empty());
}

#[test]
fn users_are_removed_only_when_the_agent_created_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    let passwd = |a: &Applier<Sandbox>| read(a, "/etc/passwd").unwrap_or_default();
    a.put(&[
        spec("shop", &["shop.example"]),
        spec("blog", &["blog.example"]),
    ])
    .unwrap();
    let record = read(&a, "/srv/state/users/shop.json").unwrap();
    assert!(record.contains("\"uid\":1000"), "{record}");

    // A release that kept no record of its users: at start-up a user of exactly the shape the
    // agent gives its users is adopted, and removed with its account.
    let host = |p: &str| a.system().host_path(Path::new(p));
    std::fs::remove_file(host("/srv/state/users/shop.json")).unwrap();
    let a = applier(dir.path());
    assert!(read(&a, "/srv/state/users/shop.json").is_some(), "adopted");
    assert!(
        a.delete(&UserName::parse("shop").unwrap(), DataFate::Keep)
            .unwrap()
    );
    assert!(!passwd(&a).contains("shop:"));

    // A user changed behind the agent's back (another uid, outside the range) is not its own
    // any more: its account is refused, and its delete leaves the user in place.
    let text = passwd(&a).replace("blog:x:1001:1001:", "blog:x:500:1001:");
    std::fs::write(a.system().host_path(Path::new("/etc/passwd")), &text).unwrap();
    let blog = spec("blog", &["blog.example"]);
    assert!(matches!(
        a.put(std::slice::from_ref(&blog)),
        Err(ApplyError::UserTaken { .. })
    ));
    a.system().clear_commands();
    assert!(a.delete(&blog.username, DataFate::Keep).unwrap());
    assert!(passwd(&a).contains("blog:x:500:1001:"), "left alone");
    assert!(
        !a.system()
            .commands()
            .iter()
            .any(|c| c.starts_with("userdel"))
    );
}

#[test]
fn a_user_whose_record_cannot_be_written_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path());
    // The records' directory is a file: no record can be written there.
    let users = a.system().host_path(Path::new("/srv/state/users"));
    std::fs::create_dir_all(users.parent().unwrap()).unwrap();
    std::fs::write(&users, "not a directory").unwrap();
    assert!(a.put(&[spec("shop", &["shop.example"])]).is_err());
    assert!(
        !read(&a, "/etc/passwd")
            .unwrap_or_default()
            .contains("shop:"),
        "no user without its record"
    );
    assert!(read(&a, "/srv/sites/enconf-shop.conf").is_none());

    // Once records can be written, the user is created with the uid its record names.
    std::fs::remove_file(&users).unwrap();
    assert_eq!(
        a.put(&[spec("shop", &["shop.example"])]).unwrap(),
        vec![true]
    );
    let record = read(&a, "/srv/state/users/shop.json").unwrap();
    let passwd = read(&a, "/etc/passwd").unwrap();
    let uid = passwd
        .lines()
        .find_map(|l| l.strip_prefix("shop:x:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap();
    assert!(
        record.contains(&format!("\"uid\":{uid}")),
        "{record} / {passwd}"
    );
}

#[test]
fn a_mail_change_postmap_refuses_leaves_every_file_as_it_was() {
    use enconf_core::domain::{MailAddress, PasswordHash};
    use enconf_core::protocol::mail::MailboxPut;
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path()).with_roles("web,mail".parse().unwrap());
    let mut post = spec("post", &["post.example"]);
    post.roles = "mail".parse().unwrap();
    assert_eq!(a.put(&[post]).unwrap(), vec![true]);
    let user = UserName::parse("post").unwrap();
    let put = || MailboxPut {
        password_hash: PasswordHash::parse(
            "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        )
        .unwrap(),
        quota_mb: None,
    };
    let info = MailAddress::parse("info@post.example").unwrap();
    assert!(a.put_mailbox(&user, &info, put()).unwrap());
    let passwd = read(&a, "/etc/dovecot/enconf-users/post.example").unwrap();
    assert!(
        passwd.starts_with("info@post.example:{ARGON2ID}"),
        "{passwd}"
    );

    // The staged map does not build: refused, and nothing changed but the command log.
    let without_log = |dir: &Path| {
        let mut files = snapshot(dir);
        files.retain(|k, _| !k.ends_with("commands.log"));
        files
    };
    let before = without_log(dir.path());
    a.system().on_command(|line| {
        if line.contains("postmap") && line.contains("/check/") {
            Err("postmap: fatal: the staged map is bogus".into())
        } else {
            Ok(String::new())
        }
    });
    let sales = MailAddress::parse("sales@post.example").unwrap();
    let err = a.put_mailbox(&user, &sales, put()).unwrap_err();
    assert!(
        matches!(&err, ApplyError::Rejected { message, .. } if message.contains("bogus")),
        "{err:?}"
    );
    assert_eq!(without_log(dir.path()), before);
    assert_eq!(
        read(&a, "/etc/dovecot/enconf-users/post.example").unwrap(),
        passwd
    );
}

#[test]
fn the_db_role_plans_statements_and_never_logs_a_hash() {
    use enconf_core::domain::db::{DbHost, DbName, DbSpec, DbUserName, DbUserSpec, NativeHash};
    let dir = tempfile::tempdir().unwrap();
    let a = applier(dir.path()).with_roles("web,db".parse().unwrap());
    let hash = NativeHash::of("a-long-secret-1");
    let mut shop = spec("shop", &["shop.example"]);
    shop.roles = "web,db".parse().unwrap();
    let data = DbName::parse_full("shop_my_data").unwrap();
    shop.db = DbSpec {
        databases: vec![data.clone()],
        users: vec![DbUserSpec {
            name: DbUserName::parse_full("shop_app").unwrap(),
            hash: hash.clone(),
            databases: vec![data],
            hosts: vec![DbHost::Localhost],
        }],
    };
    a.put(std::slice::from_ref(&shop)).unwrap();
    let cmds = a.system().commands().join("\n");
    assert!(
        cmds.contains("CREATE DATABASE IF NOT EXISTS `shop_my_data`"),
        "{cmds}"
    );
    assert!(
        cmds.contains("CREATE USER 'shop_app'@'localhost' IDENTIFIED BY PASSWORD '***'"),
        "{cmds}"
    );
    assert!(
        cmds.contains("GRANT ALL PRIVILEGES ON `shop\\_my\\_data`.* TO 'shop_app'@'localhost'"),
        "{cmds}"
    );
    let log = std::fs::read_to_string(dir.path().join("box/commands.log")).unwrap();
    assert!(
        !log.contains(&hash.expose_secret()[1..]),
        "a hash was logged"
    );
    // The ledger names what was made; the same put again changes nothing.
    let ledger = read(&a, "/srv/state/db/shop.json").unwrap();
    assert!(
        ledger.contains("shop_my_data") && ledger.contains("shop_app"),
        "{ledger}"
    );
    a.system().clear_commands();
    assert_eq!(a.put(std::slice::from_ref(&shop)).unwrap(), vec![false]);
    assert!(a.system().commands().is_empty());
    // A grant for another machine is refused while MariaDB listens on loopback only.
    shop.db.users[0]
        .hosts
        .push(DbHost::Ip("192.0.2.7".parse().unwrap()));
    let err = a.put(std::slice::from_ref(&shop)).unwrap_err();
    assert!(
        matches!(&err, ApplyError::Rejected { message, .. } if message.contains("AGENT_DB_LISTEN")),
        "{err:?}"
    );
}
