//! The agent against a real nginx and a real PHP-FPM on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use enconf_agent_lib::roles::DataFate;
use std::process::Command;
use std::sync::Arc;

use common::services::{self, Services, http};
use common::{TOKEN, spec, with_memory};
use enconf_agent_lib::apply::{Applier, ApplyError};
use enconf_agent_lib::server::{Agent, router, serve};
use enconf_agent_lib::system::RealSystem;
use enconf_core::domain::{AgentToken, UserName};

const WHOAMI: &str =
    "<?php echo posix_getpwuid(posix_geteuid())['name'], ' ', ini_get('memory_limit');";

fn applier(svc: &Services, extra: &[(&str, &str)]) -> Applier<RealSystem> {
    let a = Applier::new(svc.config(extra).layout, RealSystem::new());
    a.start().unwrap();
    a
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn an_account_is_served_by_its_own_php_user_then_removed() {
    let Some(mut svc) = services::start() else {
        return;
    };
    let user = svc.user("a");
    let (a, b) = (format!("a-{user}.test"), format!("b-{user}.test"));
    let agent = applier(&svc, &[]);
    let account = spec(&user, &[&a, &b]);

    assert_eq!(
        agent.put(std::slice::from_ref(&account)).unwrap(),
        vec![true]
    );
    assert!(user_exists(&user));
    std::fs::write(svc.path(&format!("www/{user}/public/index.php")), WHOAMI).unwrap();
    for host in [&a, &b] {
        let (status, body) = svc.get_until(host, "/index.php", |s, _| s == 200);
        assert_eq!(
            (status, body.as_str()),
            (200, format!("{user} 128M").as_str()),
            "{host}"
        );
    }
    // Unknown names fall to the default server.
    assert_eq!(
        svc.get(&format!("c-{user}.test"), "/index.php"),
        (404, "no site\n".into())
    );

    // The same put again changes nothing.
    assert_eq!(
        agent.put(std::slice::from_ref(&account)).unwrap(),
        vec![false]
    );

    // New PHP settings take effect.
    assert_eq!(
        agent.put(&[with_memory(account.clone(), 256)]).unwrap(),
        vec![true]
    );
    let (_, body) = svc.get_until(&a, "/index.php", |_, b| b.ends_with("256M"));
    assert_eq!(body, format!("{user} 256M"));

    // Delete: the sites are gone, then the user.
    assert!(
        agent
            .delete(&UserName::parse(&user).unwrap(), DataFate::Keep)
            .unwrap()
    );
    // A reload is asynchronous: old workers finish their requests, so wait for the new config.
    let (status, body) = svc.get_until(&a, "/index.php", |_, b| b == "no site\n");
    assert_eq!((status, body.as_str()), (404, "no site\n"));
    assert!(!user_exists(&user));
    assert!(!svc.path(&format!("sites/enconf-{user}.conf")).exists());
    assert!(!svc.path(&format!("www/{user}")).exists());
    svc.nginx_config_ok().unwrap();
}

#[test]
fn a_config_nginx_rejects_is_rolled_back() {
    let Some(mut svc) = services::start() else {
        return;
    };
    let user = svc.user("r");
    let site = format!("{user}.test");
    let good = applier(&svc, &[]);
    good.put(&[spec(&user, &[&site])]).unwrap();
    std::fs::write(svc.path(&format!("www/{user}/public/index.php")), WHOAMI).unwrap();
    assert_eq!(svc.get_until(&site, "/index.php", |s, _| s == 200).0, 200);
    let vhost = svc.path(&format!("sites/enconf-{user}.conf"));
    let before = std::fs::read(&vhost).unwrap();

    // An agent whose layout makes every vhost include a file that does not exist: nginx -t
    // rejects what it renders.
    let broken = applier(
        &svc,
        &[("AGENT_NGINX_FASTCGI_PARAMS", "/nonexistent/fastcgi_params")],
    );
    let err = broken
        .put(&[spec(&user, &[&site, &format!("new-{site}")])])
        .unwrap_err();
    match err {
        ApplyError::Rejected { validator, message } => {
            assert_eq!(validator, "nginx");
            assert!(message.contains("/nonexistent/fastcgi_params"), "{message}");
        }
        other => panic!("expected nginx to reject, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&vhost).unwrap(),
        before,
        "the previous vhost is back"
    );
    svc.nginx_config_ok().unwrap();
    // Right after a reload an old-generation nginx worker may still take a connection, so wait
    // for the settled state: the old site is served.
    assert_eq!(
        svc.get_until(&site, "/index.php", |s, _| s == 200),
        (200, format!("{user} 128M")),
        "nginx log:\n{}",
        svc.nginx_log()
    );
    assert_eq!(svc.get(&format!("new-{site}"), "/index.php").0, 404);
}

#[test]
fn over_http_hostile_input_is_refused_and_a_good_put_serves() {
    let Some(mut svc) = services::start() else {
        return;
    };
    let user = svc.user("h");
    let site = format!("{user}.test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent = runtime.block_on(async {
        Agent::new(
            AgentToken::parse(TOKEN).unwrap(),
            applier(&svc, &[]),
            1 << 20,
        )
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(
        listener,
        router(Arc::clone(&agent)),
        None,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let auth = format!("Bearer {TOKEN}");
    let put = |path: &str, body: &str| {
        http(
            port,
            "PUT",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    };

    let sites_before = std::fs::read_dir(svc.path("sites")).unwrap().count();
    let hostile = serde_json::json!({"domains": [format!("{site};\n}}\nserver {{ listen 1; }}")]})
        .to_string();
    let (status, body) = put(&format!("/v1/accounts/{user}"), &hostile);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"field\":\"domains[0]\""), "{body}");
    assert_eq!(
        std::fs::read_dir(svc.path("sites")).unwrap().count(),
        sites_before
    );
    assert!(!user_exists(&user));
    svc.nginx_config_ok().unwrap();

    let (status, body) = put(
        &format!("/v1/accounts/{user}"),
        &serde_json::json!({"domains": [site]}).to_string(),
    );
    assert_eq!((status, body.as_str()), (200, "{\"changed\":true}"));
    std::fs::write(svc.path(&format!("www/{user}/public/index.php")), WHOAMI).unwrap();
    let (status, body) = svc.get_until(&site, "/index.php", |s, _| s == 200);
    assert_eq!((status, body), (200, format!("{user} 128M")));
    let (status, _) = http(port, "GET", "/v1/health", &[], "");
    assert_eq!(status, 401);

    let _ = stop.send(());
    runtime.block_on(server).unwrap();
}

#[test]
fn a_stopped_web_server_fails_the_apply_and_restores() {
    let Some(mut svc) = services::start() else {
        return;
    };
    let user = svc.user("s");
    let agent = applier(&svc, &[]);
    svc.stop_nginx();
    let err = agent
        .put(&[spec(&user, &[&format!("{user}.test")])])
        .unwrap_err();
    assert!(err.to_string().contains("nginx.pid"), "{err}");
    assert!(!svc.path(&format!("sites/enconf-{user}.conf")).exists());
    assert!(
        !svc.path(&format!("php/{}/pool.d/enconf-{user}.conf", svc.php))
            .exists()
    );
    assert!(agent.list().unwrap().is_empty());
    assert!(!svc.path("state/journal.json").exists());
}

#[test]
fn acme_answers_and_certificates_are_served_by_nginx() {
    let Some(svc) = services::start() else {
        return;
    };
    let a = applier(&svc, &[]);
    let name: enconf_core::domain::DomainName = "panel.enconf-test.example".parse().unwrap();
    let host = name.as_str();

    // An HTTP-01 answer is served for the name on the HTTP port, before any certificate.
    assert!(
        a.put_challenge(std::slice::from_ref(&name), "tok_en-1", "tok_en-1.thumb")
            .unwrap()
    );
    let (status, body) = svc.get_until(host, "/.well-known/acme-challenge/tok_en-1", |s, _| {
        s == 200
    });
    assert_eq!(
        (status, body.as_str()),
        (200, "tok_en-1.thumb"),
        "{}",
        svc.nginx_log()
    );
    assert_eq!(svc.get(host, "/other").0, 404);
    assert!(a.delete_challenge("tok_en-1").unwrap());
    assert_eq!(svc.get(host, "/.well-known/acme-challenge/tok_en-1").0, 404);

    // A certificate: key 0600, HTTPS served with it, HTTP redirected.
    let now = time::OffsetDateTime::now_utc();
    let first = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&name), now).unwrap();
    use enconf_core::ssl::CertKind;
    assert!(
        a.put_certificate(
            CertKind::Panel,
            std::slice::from_ref(&name),
            &first.chain_pem,
            &first.key_pem
        )
        .unwrap()
    );
    assert!(
        !a.put_certificate(
            CertKind::Panel,
            std::slice::from_ref(&name),
            &first.chain_pem,
            &first.key_pem
        )
        .unwrap(),
        "the same again changes nothing"
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(svc.path("ssl/panel.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let first_der = enconf_core::ssl::cert::parse_chain(&first.chain_pem).unwrap()[0].to_vec();
    let mut served = Err(String::new());
    services::wait_for("nginx serving the certificate", || {
        served = services::served_certificate(svc.https_port, host, &first_der);
        served.is_ok()
    });
    assert_eq!(served.unwrap(), first_der);
    // Old workers may still answer for a moment after the reload.
    let (status, _) = svc.get_until(host, "/", |s, _| s == 301);
    assert_eq!(status, 301);

    // A key that does not match: nginx -t refuses, the working certificate stays.
    let second = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&name), now).unwrap();
    match a.put_certificate(
        CertKind::Panel,
        std::slice::from_ref(&name),
        &second.chain_pem,
        &first.key_pem,
    ) {
        Err(ApplyError::Rejected { message, .. }) => assert!(message.contains("key"), "{message}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(svc.path("ssl/panel.crt")).unwrap(),
        first.chain_pem
    );
    assert_eq!(
        services::served_certificate(svc.https_port, host, &first_der).unwrap(),
        first_der
    );
    svc.nginx_config_ok().unwrap();

    // A renewal replaces it.
    assert!(
        a.put_certificate(
            CertKind::Panel,
            std::slice::from_ref(&name),
            &second.chain_pem,
            &second.key_pem
        )
        .unwrap()
    );
    let second_der = enconf_core::ssl::cert::parse_chain(&second.chain_pem).unwrap()[0].to_vec();
    services::wait_for("nginx serving the new certificate", || {
        services::served_certificate(svc.https_port, host, &second_der).is_ok()
    });
}

#[test]
fn the_mail_certificate_is_served_by_postfix_and_dovecot() {
    let Some(svc) = services::start() else {
        return;
    };
    let Some(mail) = common::mail::start() else {
        return;
    };
    let settings = mail.agent_settings();
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = applier(&svc, &extra);
    let name: enconf_core::domain::DomainName = "mx.enconf-test.example".parse().unwrap();
    let now = time::OffsetDateTime::now_utc();
    use enconf_core::ssl::CertKind;
    use enconf_core::ssl::cert::{parse_chain, self_signed};

    for round in 0..2 {
        let pair = self_signed(std::slice::from_ref(&name), now).unwrap();
        let der = parse_chain(&pair.chain_pem).unwrap()[0].to_vec();
        assert!(
            a.put_certificate(
                CertKind::Mail,
                std::slice::from_ref(&name),
                &pair.chain_pem,
                &pair.key_pem
            )
            .unwrap()
        );
        let mut smtp = Err(String::new());
        services::wait_for("postfix serving the certificate", || {
            smtp = mail.smtp_certificate(name.as_str(), &der);
            smtp.is_ok()
        });
        assert_eq!(smtp.unwrap(), der, "round {round}");
        let mut imap = Err(String::new());
        services::wait_for("dovecot serving the certificate", || {
            imap = mail.imap_certificate(name.as_str(), &der);
            imap.is_ok()
        });
        assert_eq!(imap.unwrap(), der, "round {round}");
    }
    let main_cf = mail.main_cf();
    assert!(
        main_cf.contains("myhostname = mx.enconf-test.example\n"),
        "the rest is kept: {main_cf}"
    );
    assert_eq!(
        main_cf.matches("smtpd_tls_cert_file = ").count(),
        1,
        "{main_cf}"
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(svc.path("ssl/mail.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
}

#[test]
fn the_panel_proxies_to_its_upstream_over_https() {
    let Some(svc) = services::start() else {
        return;
    };
    // The panel back end: answers with the headers nginx passed on.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for stream in upstream.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let proto = head
                .lines()
                .find_map(|l| l.strip_prefix("X-Forwarded-Proto: "))
                .unwrap_or("none")
                .to_owned();
            let body = format!("panel via {proto}");
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let upstream_url = format!("http://127.0.0.1:{upstream_port}");
    let a = applier(&svc, &[("AGENT_PANEL_UPSTREAM", upstream_url.as_str())]);
    let name: enconf_core::domain::DomainName = "panel2.enconf-test.example".parse().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let pair = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&name), now).unwrap();
    let der = enconf_core::ssl::cert::parse_chain(&pair.chain_pem).unwrap()[0].to_vec();
    a.put_certificate(
        enconf_core::ssl::CertKind::Panel,
        std::slice::from_ref(&name),
        &pair.chain_pem,
        &pair.key_pem,
    )
    .unwrap();
    let mut answer = String::new();
    services::wait_for("nginx proxying to the panel", || {
        answer = services::https_get(svc.https_port, name.as_str(), &der)
            .map(|(a, _)| a)
            .unwrap_or_default();
        answer.starts_with("HTTP/1.1 200")
    });
    assert!(answer.ends_with("panel via https"), "{answer}");
}

/// `getent` lines of the user and the groups, the home's files: what must never change.
fn machine_state(user: &str, home: &std::path::Path) -> Vec<String> {
    let getent = |db: &str, key: &str| {
        let out = Command::new("getent").args([db, key]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut state = vec![
        getent("passwd", user),
        getent("shadow", user),
        getent("group", user),
        getent("group", "sudo"),
    ];
    let mut files: Vec<String> = std::fs::read_dir(home)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    state.push(files.join(","));
    state
}

#[test]
fn a_user_of_the_machine_is_never_taken_over_nor_removed() {
    let Some(mut svc) = services::start() else {
        return;
    };
    let user = svc.user("f");
    let status = Command::new("useradd")
        .args([
            "--create-home",
            "--groups",
            "sudo",
            "--shell",
            "/bin/bash",
            &user,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let home = std::path::PathBuf::from(format!("/home/{user}"));
    std::fs::write(home.join("notes.txt"), "mine\n").unwrap();
    let before = machine_state(&user, &home);
    assert!(before[0].contains(&format!("{user}:x:")), "{before:?}");

    let agent = applier(&svc, &[]);
    let account = spec(&user, &[&format!("{user}.test")]);
    match agent.put(std::slice::from_ref(&account)) {
        Err(ApplyError::UserTaken {
            user: taken,
            reason,
        }) => {
            assert_eq!(taken.as_str(), user);
            assert!(reason.contains("not created by enconf"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !agent.delete(&account.username, DataFate::Keep).unwrap(),
        "not the agent's account"
    );
    assert_eq!(machine_state(&user, &home), before);

    // A record a release without ownership records wrote for it (it used to adopt any user):
    // not adopted at start-up, and its delete leaves the user, its groups and home alone.
    let record = svc.path(&format!("state/accounts/{user}.json"));
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(
        &record,
        serde_json::json!({"spec": {"username": user, "domains": [format!("{user}.test")],
            "php_version": null}, "php_version": svc.php})
        .to_string(),
    )
    .unwrap();
    let agent = applier(&svc, &[]);
    assert!(agent.put(std::slice::from_ref(&account)).is_err());
    assert!(agent.delete(&account.username, DataFate::Keep).unwrap());
    assert!(!record.exists());
    assert_eq!(machine_state(&user, &home), before);
}

const LIMITS: &str = "<?php echo ini_get('memory_limit'), ' ', ini_get('max_execution_time');";

#[test]
fn an_account_changed_through_the_controller_serves_its_new_domain_and_limits() {
    use enconf_core::controller::{Controller, ControllerConfig};
    use enconf_core::domain::AccountId;
    use enconf_core::protocol::{AccountInput, AccountPatch, ErrorBody, ServerInput};
    let Some(mut svc) = services::start() else {
        return;
    };
    let user = svc.user("p");
    let (a, b) = (format!("a-{user}.test"), format!("b-{user}.test"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let transport = Arc::new(enconf_agent_lib::transport::InProcess::new());
    let agent = runtime.block_on(async {
        Agent::new(
            AgentToken::parse(TOKEN).unwrap(),
            applier(&svc, &[]),
            1 << 20,
        )
    });
    let url: enconf_core::domain::AgentUrl = "http://127.0.0.1:50099".parse().unwrap();
    transport.add(url.clone(), router(Arc::clone(&agent)));
    let controller = Controller::new(
        Arc::new(enconf_core::store::MemoryStore::new_in_memory()),
        transport,
        ControllerConfig::default(),
    );
    let json = |v: serde_json::Value| v;
    let server: ServerInput = serde_json::from_value(json(serde_json::json!({
        "name": "web", "hostname": format!("host-{user}.test"), "agent_url": url.to_string(),
        "agent_token": TOKEN, "roles": ["web"],
    })))
    .unwrap();
    let account: AccountInput =
        serde_json::from_value(serde_json::json!({"username": user, "domains": [a]})).unwrap();
    let created = runtime.block_on(async {
        let server = controller.add_server(&server).await.unwrap();
        assert!(server.reachable);
        controller.create_account(&account).await.unwrap()
    });
    std::fs::write(svc.path(&format!("www/{user}/public/index.php")), LIMITS).unwrap();
    let (status, body) = svc.get_until(&a, "/index.php", |s, _| s == 200);
    assert_eq!((status, body.as_str()), (200, "128M 30"));

    // A second domain and new limits: nginx answers for it, PHP runs with them.
    let patch: AccountPatch = serde_json::from_value(serde_json::json!({
        "domains": [a, b], "php": {"memory_limit_mb": 256, "max_execution_time_s": 45},
    }))
    .unwrap();
    let id = AccountId(created.id);
    let workers = svc.nginx_workers();
    let changed = runtime
        .block_on(controller.patch_account(id, &patch))
        .unwrap();
    assert_eq!(changed.domains, [a.clone(), b.clone()]);
    svc.wait_nginx_reloaded(&workers);
    for host in [&a, &b] {
        let (status, body) = svc.get_until(host, "/index.php", |s, body| {
            s == 200 && body.starts_with("256M")
        });
        assert_eq!((status, body.as_str()), (200, "256M 45"), "{host}");
    }

    // A version this server does not have: refused naming php_version, the old config serves.
    let patch: AccountPatch =
        serde_json::from_value(serde_json::json!({"php_version": "5.6"})).unwrap();
    let e = ErrorBody::from(
        runtime
            .block_on(controller.patch_account(id, &patch))
            .unwrap_err(),
    );
    assert_eq!(
        (e.status(), e.error.field.as_deref()),
        (422, Some("php_version")),
        "{e:?}"
    );
    // The agent refuses it by itself too (a controller that did not know the versions).
    let refused = agent.applier().put(&[{
        let mut spec = spec(&user, &[&a, &b]);
        spec.php_version = Some("5.6".parse().unwrap());
        spec
    }]);
    assert!(
        matches!(refused, Err(ApplyError::Invalid(ref v)) if v.field == "php_version"),
        "{refused:?}"
    );
    for host in [&a, &b] {
        assert_eq!(
            svc.get(host, "/index.php"),
            (200, "256M 45".to_owned()),
            "{host}"
        );
    }
    svc.nginx_config_ok().unwrap();
    runtime.block_on(controller.delete_account(id)).unwrap();
}

/// Logs in to Roundcube at `path` of the panel's HTTPS block: the status of the login form's
/// page, and of the login (`302 …_task=mail` when it worked).
fn roundcube_login(port: u16, host: &str, path: &str, user: &str, password: &str) -> String {
    const SCRIPT: &str = r#"
found = re.search(r'name="_token" value="([^"]+)"', page)
if status != 200 or not found:
    print(f"form {status}")
    sys.exit(0)
body = urllib.parse.urlencode({"_token": found.group(1), "_task": "login", "_action": "login",
    "_timezone": "UTC", "_url": "", "_user": user, "_pass": password})
status, location, _ = request("POST", f"{path}/?_task=login", body)
print(f"form 200, login {status} {location}")
"#;
    login_script(SCRIPT, port, host, path, user, password)
}

#[test]
fn roundcube_is_served_at_the_webmail_path_and_logs_in_over_this_servers_imap() {
    use enconf_core::domain::{MailAddress, PasswordHash, UrlPath};
    use enconf_core::protocol::mail::MailboxPut;
    const ROUNDCUBE_CONFIG: &str = "/etc/roundcube/config.inc.php";
    let Some(mut svc) = services::start() else {
        return;
    };
    if !std::path::Path::new(ROUNDCUBE_CONFIG).exists() {
        services::skip_or_fail("Roundcube (roundcube-core) is not installed");
        return;
    }
    let Some(mut host) = common::mailhost::prepare() else {
        return;
    };
    // The agent sets Roundcube's IMAP host to this test's Dovecot: put the file back after.
    struct Restore(Vec<u8>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(ROUNDCUBE_CONFIG, &self.0);
        }
    }
    let _restore = Restore(std::fs::read(ROUNDCUBE_CONFIG).unwrap());
    let imap = host.imap_port.to_string();
    let mut settings: Vec<(&str, String)> = host
        .agent_settings()
        .into_iter()
        .filter(|(k, _)| *k != "AGENT_ROLES")
        .collect();
    settings.push(("AGENT_ROLES", "web,mail".into()));
    settings.push(("AGENT_MAIL_IMAP_PORT", imap));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = svc.config(&extra);
    let a = Applier::new(config.layout, RealSystem::new()).with_roles(config.roles);
    a.start().unwrap();
    host.start();

    let name = panel_certificate(&a, "mx.enconf-test.example");
    let user = svc.user("w");
    let domain = format!("{user}.mail-test.example");
    let mut account = spec(&user, &[&domain]);
    account.roles = "mail".parse().unwrap();
    assert_eq!(a.put(&[account]).unwrap(), vec![true]);
    let hash = Command::new("doveadm")
        .args(["pw", "-s", "ARGON2ID", "-p", "correct horse 1"])
        .output()
        .unwrap();
    let hash = PasswordHash::parse(String::from_utf8_lossy(&hash.stdout).trim()).unwrap();
    let address = format!("info@{domain}");
    let mail = MailAddress::parse(&address).unwrap();
    let username = UserName::parse(&user).unwrap();
    a.put_mailbox(
        &username,
        &mail,
        MailboxPut {
            password_hash: hash,
            quota_mb: None,
        },
    )
    .unwrap();

    let webmail = UrlPath::parse("/webmail").unwrap();
    // Until the workers of the configurations before it are gone, a request may still meet
    // one of them (no /webmail there: 404).
    let workers = svc.nginx_workers();
    assert!(a.put_webmail(Some(webmail.clone())).unwrap());
    svc.wait_nginx_reloaded(&workers);
    assert!(
        !a.put_webmail(Some(webmail)).unwrap(),
        "the same again changes nothing"
    );
    let port = svc.https_port;
    let mut answer = String::new();
    services::wait_for("roundcube's login form", || {
        answer = roundcube_login(port, name.as_str(), "/webmail", &address, "correct horse 1");
        answer.starts_with("form 200")
    });
    assert!(
        answer.starts_with("form 200, login 302") && answer.contains("_task=mail"),
        "{answer}\n{}",
        svc.nginx_log()
    );
    let wrong = roundcube_login(port, name.as_str(), "/webmail", &address, "wrong horse 1");
    assert!(wrong.starts_with("form 200, login 401"), "{wrong}");

    // With the path null, nothing is served there.
    let workers = svc.nginx_workers();
    assert!(a.put_webmail(None).unwrap());
    svc.wait_nginx_reloaded(&workers);
    let gone = roundcube_login(port, name.as_str(), "/webmail", &address, "correct horse 1");
    assert_eq!(gone, "form 404");
    assert!(
        !svc.path(&format!("php/{}/pool.d/enconf-webmail.conf", svc.php))
            .exists()
    );
}

/// Logs in to phpMyAdmin at `path` with its cookie form: `form <status>` when the form is not
/// there, else `form 200, login <status> <location>`.
fn phpmyadmin_login(port: u16, host: &str, path: &str, user: &str, password: &str) -> String {
    const SCRIPT: &str = r#"
token = re.search(r'name="token" value="([^"]+)"', page)
session = re.search(r'name="set_session" value="([^"]+)"', page)
if status != 200 or not token:
    print(f"form {status}")
    sys.exit(0)
fields = {"token": token.group(1), "pma_username": user, "pma_password": password,
    "server": "1", "route": "/"}
if session:
    fields["set_session"] = session.group(1)
status, location, page = request("POST", f"{path}/index.php?route=/", urllib.parse.urlencode(fields))
denied = "denied" if "Access denied" in page or "Cannot log in" in page else ""
print(f"form 200, login {status} {location} {denied}".strip())
"#;
    login_script(SCRIPT, port, host, path, user, password)
}

#[test]
fn phpmyadmin_is_served_at_its_path_and_logs_in_to_the_local_mariadb() {
    use enconf_core::domain::UrlPath;
    use enconf_core::domain::db::{DbHost, DbName, DbSpec, DbUserName, DbUserSpec, NativeHash};
    const CONF_D: &str = "/etc/phpmyadmin/conf.d";
    let Some(mut svc) = services::start() else {
        return;
    };
    if !std::path::Path::new("/usr/share/phpmyadmin/index.php").exists() {
        services::skip_or_fail("phpMyAdmin (phpmyadmin) is not installed");
        return;
    }
    let Some(db) = common::mariadb::MariaDb::start() else {
        return;
    };
    // The agent writes its settings into phpMyAdmin's conf.d: take them out after.
    struct Remove;
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(format!("{CONF_D}/enconf.php"));
        }
    }
    let _remove = Remove;
    let socket = db.socket().display().to_string();
    let pid = db.root.path().join("mysqld.pid").display().to_string();
    let config = svc.config(&[
        ("AGENT_ROLES", "web,db"),
        ("AGENT_DB_SOCKET", socket.as_str()),
        ("AGENT_MARIADB_PID_FILE", pid.as_str()),
    ]);
    let a = Applier::new(config.layout, RealSystem::new()).with_roles(config.roles);
    a.start().unwrap();

    let name = panel_certificate(&a, "db.enconf-test.example");
    // An account with a database and a user, as the controller sends it.
    let user = svc.user("d");
    let mut account = spec(&user, &[&format!("{user}.enconf-test.example")]);
    account.roles = "web,db".parse().unwrap();
    let dbname = DbName::parse_full(&format!("{user}_data")).unwrap();
    let dbuser = format!("{user}_pma");
    account.db = DbSpec {
        databases: vec![dbname.clone()],
        users: vec![DbUserSpec {
            name: DbUserName::parse_full(&dbuser).unwrap(),
            hash: NativeHash::of("pma-secret-1"),
            databases: vec![dbname],
            hosts: vec![DbHost::Localhost],
        }],
    };
    a.put(&[account]).unwrap();

    let path = UrlPath::parse("/phpmyadmin").unwrap();
    let workers = svc.nginx_workers();
    assert!(a.put_phpmyadmin(Some(path.clone())).unwrap());
    svc.wait_nginx_reloaded(&workers);
    assert!(
        !a.put_phpmyadmin(Some(path)).unwrap(),
        "the same again changes nothing"
    );
    let port = svc.https_port;
    let mut answer = String::new();
    services::wait_for("phpMyAdmin's login form", || {
        answer = phpmyadmin_login(port, name.as_str(), "/phpmyadmin", &dbuser, "pma-secret-1");
        answer.starts_with("form 200")
    });
    assert!(
        answer.starts_with("form 200, login 302") && !answer.contains("denied"),
        "{answer}\n{}",
        svc.nginx_log()
    );
    let wrong = phpmyadmin_login(port, name.as_str(), "/phpmyadmin", &dbuser, "wrong-secret");
    assert!(
        wrong.contains("denied") && !wrong.contains("login 302"),
        "{wrong}"
    );
    // Root never logs in through it.
    let root = phpmyadmin_login(port, name.as_str(), "/phpmyadmin", "root", "");
    assert!(
        !root.contains("login 302") || root.contains("denied"),
        "{root}"
    );

    // With the path null, nothing is served there.
    let workers = svc.nginx_workers();
    assert!(a.put_phpmyadmin(None).unwrap());
    svc.wait_nginx_reloaded(&workers);
    let gone = phpmyadmin_login(port, name.as_str(), "/phpmyadmin", &dbuser, "pma-secret-1");
    assert_eq!(gone, "form 404");
    assert!(
        !svc.path(&format!("php/{}/pool.d/enconf-phpmyadmin.conf", svc.php))
            .exists()
    );
}

/// The start of a Python login script: an HTTPS client with cookies (`request`) for the panel's
/// server block, and the first `GET path/` (a refused connection prints "not listening" and
/// ends the script: nginx opens the listener when it has read the new configuration, and a
/// HUP is asynchronous, so that is "not ready", not a failure). Arguments: port, host, path,
/// user, password.
const LOGIN_PRELUDE: &str = r#"
import http.client, re, ssl, sys, urllib.parse
port, host, path, user, password = sys.argv[1:6]
ctx = ssl._create_unverified_context()
cookies = {}
def request(method, url, body=None):
    c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=30)
    headers = {"Host": host}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, url, body=body, headers=headers)
    r = c.getresponse()
    text = r.read().decode("utf-8", "replace")
    for cookie in r.headers.get_all("Set-Cookie") or []:
        name, _, rest = cookie.partition("=")
        cookies[name] = rest.split(";")[0]
    return r.status, r.getheader("Location") or "", text
try:
    status, _, page = request("GET", f"{path}/")
except ConnectionRefusedError:
    print("not listening")
    sys.exit(0)
"#;

/// Runs `LOGIN_PRELUDE` then `script`; what it printed.
fn login_script(
    script: &str,
    port: u16,
    host: &str,
    path: &str,
    user: &str,
    password: &str,
) -> String {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            &format!("{LOGIN_PRELUDE}{script}"),
            &port.to_string(),
            host,
            path,
            user,
            password,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Installs a self-signed panel certificate for `name` (the panel's HTTPS server block, where
/// webmail and phpMyAdmin are served); the name.
fn panel_certificate(a: &Applier<RealSystem>, name: &str) -> enconf_core::domain::DomainName {
    let name: enconf_core::domain::DomainName = name.parse().unwrap();
    let pair = enconf_core::ssl::cert::self_signed(
        std::slice::from_ref(&name),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert!(
        a.put_certificate(
            enconf_core::ssl::CertKind::Panel,
            std::slice::from_ref(&name),
            &pair.chain_pem,
            &pair.key_pem
        )
        .unwrap()
    );
    name
}

#[test]
fn a_batch_larger_than_the_full_check_is_served_by_every_pool() {
    let Some(mut svc) = services::start() else {
        return;
    };
    // Past the full check: nginx and php-fpm read a file of each shape, our rules check every
    // file.
    let n = enconf_agent_lib::services::sample::FULL_CHECK_MAX + 10;
    let users: Vec<String> = (0..n).map(|i| svc.user(&format!("q{i}"))).collect();
    let agent = applier(&svc, &[]);
    let accounts: Vec<_> = users
        .iter()
        .map(|u| spec(u, &[&format!("{u}.test")]))
        .collect();
    assert_eq!(agent.put(&accounts).unwrap(), vec![true; n]);
    // The first and last were read by nginx and php-fpm, the middle one only by our rules:
    // each site serves PHP as its own user.
    for user in [&users[0], &users[n / 2], &users[n - 1]] {
        std::fs::write(svc.path(&format!("www/{user}/public/index.php")), WHOAMI).unwrap();
        let host = format!("{user}.test");
        let (status, body) = svc.get_until(&host, "/index.php", |s, _| s == 200);
        assert_eq!((status, body), (200, format!("{user} 128M")), "{host}");
    }
    svc.nginx_config_ok().unwrap();
}
