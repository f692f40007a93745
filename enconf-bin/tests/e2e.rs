//! End to end on loopback, real processes: one `enconf-controller` (redb store) and two
//! `enconf-agent`s in sandbox mode. Servers are added and checked, an account is placed and
//! provisioned, an agent goes down and comes back, deletes are refused and then done, and a
//! restarted controller still has everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// The answer is `503 agent_offline`.
fn assert_offline((status, body): (u16, Value)) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("agent_offline")),
        "{body}"
    );
}

#[test]
fn controller_and_two_agents_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (web_port, mail_port, api_port) = (free_port(), free_port(), free_port());
    let mut web = start_agent(d, "web", web_port, WEB_TOKEN);
    let mut mail = start_agent(d, "mail", mail_port, MAIL_TOKEN);
    let mut controller = start_controller(d, api_port);

    // Add both servers; each is checked at once.
    let (status, web_server) = api(
        api_port,
        "POST",
        "/api/v1/servers",
        Some(json!({
            "name": "Web 1", "hostname": "web1.example.com",
            "agent_url": format!("http://127.0.0.1:{web_port}"), "agent_token": WEB_TOKEN,
            "roles": ["web", "db"], "max_accounts": 100
        })),
    );
    assert_eq!(status, 201, "{web_server}");
    let (status, mail_server) = api(
        api_port,
        "POST",
        "/api/v1/servers",
        Some(json!({
            "name": "Mail 1", "hostname": "mail1.example.com", "mail_hostname": "mx.example.com",
            "agent_url": format!("http://127.0.0.1:{mail_port}"), "agent_token": MAIL_TOKEN,
            "roles": ["mail", "dns"]
        })),
    );
    assert_eq!(status, 201, "{mail_server}");
    let (web_id, mail_id) = (
        web_server["id"].as_u64().unwrap(),
        mail_server["id"].as_u64().unwrap(),
    );
    let (_, servers) = api(api_port, "GET", "/api/v1/servers", None);
    for s in servers.as_array().unwrap() {
        assert_eq!(s["reachable"], true, "{s}");
        assert_eq!(s["agent_version"], env!("CARGO_PKG_VERSION"), "{s}");
        assert_eq!(s["update_available"], false);
        assert!(
            s["last_seen"].is_string() && s["last_error"].is_null(),
            "{s}"
        );
        assert!(s.get("agent_token").is_none());
    }

    // An account goes to the web server (the only one with the web role) and is provisioned.
    let (status, account) = api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "shop", "domains": ["shop.example", "bücher.example"]})),
    );
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["server_id"], web_id);
    assert_eq!(account["status"], "active");
    assert_eq!(account["domains"][1], "xn--bcher-kva.example");
    let account_id = account["id"].as_u64().unwrap();
    let vhost = d.join("web/etc/nginx/sites-enabled/enconf-shop.conf");
    assert!(
        std::fs::read_to_string(&vhost)
            .unwrap()
            .contains("server_name shop.example xn--bcher-kva.example;")
    );
    assert!(
        !d.join("mail/etc/nginx/sites-enabled/enconf-shop.conf")
            .exists()
    );
    let (_, web_view) = api(api_port, "GET", &format!("/api/v1/servers/{web_id}"), None);
    assert_eq!(web_view["accounts"], 1);
    // The sandbox says what it would have run, where a person can read it.
    let commands = std::fs::read_to_string(d.join("web/commands.log")).unwrap();
    assert!(
        commands.contains("useradd --home-dir /var/www/shop shop"),
        "{commands}"
    );
    assert!(commands.contains("nginx -t"), "{commands}");
    let agent_log = std::fs::read_to_string(d.join("web.log")).unwrap();
    assert!(
        agent_log.contains("sandbox: recorded, not run"),
        "{agent_log}"
    );

    // The sandbox mail server serves the mail role: its certificate, an account's mailbox
    // (the sandbox's Dovecot passwd-file holds the hash, never the password) and DKIM record.
    let (status, ssl) = api(
        api_port,
        "PUT",
        &format!("/api/v1/servers/{mail_id}/ssl/mail"),
        Some(json!({"mode": "selfsigned"})),
    );
    assert_eq!(status, 200, "{ssl}");
    assert_eq!(ssl["status"], "active", "{ssl}");
    let (status, post) = api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "post", "domains": ["post.example"], "roles": ["mail"]})),
    );
    assert_eq!(status, 201, "{post}");
    assert_eq!(post["servers"]["mail"], mail_id);
    let mailboxes = format!("/api/v1/accounts/{}/mailboxes", post["id"]);
    let (status, mailbox) = api(
        api_port,
        "POST",
        &mailboxes,
        Some(json!({"address": "info@post.example", "password": "correct horse 1"})),
    );
    assert_eq!(status, 201, "{mailbox}");
    assert!(mailbox.get("password").is_none(), "{mailbox}");
    let passwd =
        std::fs::read_to_string(d.join("mail/etc/dovecot/enconf-users/post.example")).unwrap();
    assert!(
        passwd.starts_with("info@post.example:{ARGON2ID}$argon2id$"),
        "{passwd}"
    );
    assert!(!passwd.contains("correct horse"));
    let (status, dkim) = api(
        api_port,
        "GET",
        &format!("/api/v1/accounts/{}/dkim", post["id"]),
        None,
    );
    assert_eq!(status, 200, "{dkim}");
    assert_eq!(dkim[0]["name"], "enconf._domainkey.post.example", "{dkim}");
    let (status, _) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/accounts/{}", post["id"]),
        None,
    );
    assert_eq!(status, 204);
    assert!(
        !d.join("mail/etc/dovecot/enconf-users/post.example")
            .exists()
    );

    // The web agent stops: the monitor sees it within an interval, and operations on it are
    // refused with 503 and change nothing.
    web.stop();
    let offline = until(
        api_port,
        &format!("/api/v1/servers/{web_id}"),
        "web goes offline",
        |s| s["reachable"] == false,
    );
    assert!(
        offline["last_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{offline}"
    );
    assert_eq!(
        offline["agent_version"],
        env!("CARGO_PKG_VERSION"),
        "the last known version stays"
    );
    assert_offline(api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "blog", "domains": ["blog.example"], "server_id": web_id})),
    ));
    assert_offline(api(
        api_port,
        "POST",
        "/api/v1/accounts",
        Some(json!({"username": "blog", "domains": ["blog.example"]})),
    ));
    assert_offline(api(
        api_port,
        "DELETE",
        &format!("/api/v1/accounts/{account_id}"),
        None,
    ));
    let (_, accounts) = api(api_port, "GET", "/api/v1/accounts", None);
    assert_eq!(
        accounts.as_array().unwrap().len(),
        1,
        "nothing recorded: {accounts}"
    );
    assert_eq!(accounts[0]["status"], "active");
    assert!(vhost.exists());

    // It comes back.
    let _web = start_agent(d, "web", web_port, WEB_TOKEN);
    until(
        api_port,
        &format!("/api/v1/servers/{web_id}"),
        "web comes back",
        |s| s["reachable"] == true && s["last_error"].is_null(),
    );

    // A server with an account cannot be deleted; the account goes first, then the server.
    let (status, err) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/servers/{web_id}"),
        None,
    );
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "server_has_accounts");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 account(s) (shop: web)"),
        "{err}"
    );
    let (status, _) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/accounts/{account_id}"),
        None,
    );
    assert_eq!(status, 204);
    assert!(!vhost.exists(), "the agent removed the site");
    let (status, _) = api(
        api_port,
        "DELETE",
        &format!("/api/v1/servers/{web_id}"),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = api(api_port, "GET", &format!("/api/v1/servers/{web_id}"), None);
    assert_eq!(status, 404);

    // A restarted controller on the same data directory has everything.
    let (_, before) = api(api_port, "GET", "/api/v1/servers", None);
    controller.stop();
    let controller = start_controller(d, api_port);
    let (_, after) = api(api_port, "GET", "/api/v1/servers", None);
    let strip = |v: &Value| {
        let mut v = v.clone();
        for s in v.as_array_mut().unwrap() {
            let s = s.as_object_mut().unwrap();
            s.remove("last_seen");
        }
        v
    };
    assert_eq!(strip(&before), strip(&after));
    assert_eq!(after[0]["id"], mail_id);
    assert_eq!(after[0]["mail_hostname"], "mx.example.com");

    // No token was ever logged.
    drop(controller);
    mail.stop();
    for log in [
        d.join("controller.log"),
        d.join("web.log"),
        d.join("mail.log"),
    ] {
        let text = std::fs::read_to_string(&log).unwrap();
        for secret in [ADMIN, WEB_TOKEN, MAIL_TOKEN] {
            assert!(!text.contains(secret), "{} holds a token", log.display());
        }
    }
    let log = std::fs::read_to_string(d.join("controller.log")).unwrap();
    assert!(
        log.contains("path=\"/api/v1/accounts\" status=201"),
        "one line per request: {log}"
    );
}

#[test]
fn the_admin_token_is_generated_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let start = || {
        let mut command = Command::new(CONTROLLER);
        command
            .env_remove("ENCONF_ADMIN_TOKEN")
            .env("ENCONF_BIND", format!("127.0.0.1:{port}"))
            .env("ENCONF_DATA_DIR", &data);
        spawn(
            command,
            &dir.path().join("controller.log"),
            port,
            "controller",
        )
    };
    let mut controller = start();
    let file = data.join("admin-token");
    // Listening comes first; the token is written right after.
    let waited = std::time::Instant::now();
    while !file.exists() && waited.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(&file).unwrap();
    let token = token.trim_end();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        api_as(token, port, "GET", "/api/v1/servers", None),
        (200, json!([]))
    );
    assert_eq!(
        api_as(
            "not-the-admin-token-0123",
            port,
            "GET",
            "/api/v1/servers",
            None
        )
        .0,
        401
    );
    controller.stop();
    let _again = start();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim_end(),
        token,
        "kept across restarts"
    );
    assert_eq!(api_as(token, port, "GET", "/api/v1/servers", None).0, 200);
    let log = std::fs::read_to_string(dir.path().join("controller.log")).unwrap();
    assert!(
        log.contains("admin-token"),
        "the log says where the token is"
    );
    assert!(!log.contains(token), "but never the token");

    // A configured token that is not a valid one stops start-up without echoing it.
    let out = Command::new(CONTROLLER)
        .env("ENCONF_ADMIN_TOKEN", "short secret")
        .env("ENCONF_DATA_DIR", &data)
        .env("ENCONF_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENCONF_ADMIN_TOKEN"), "{stderr}");
    assert!(!stderr.contains("short secret"), "{stderr}");
}

#[test]
fn a_start_that_cannot_listen_leaves_nothing_and_the_local_server_is_named_after_its_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(CONTROLLER)
        .env("ENCONF_DATA_DIR", &data)
        .env("ENCONF_BIND", taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {}", taken.local_addr().unwrap())),
        "{stderr}"
    );
    assert!(!data.exists(), "a failed start left {}", data.display());
    // The agent's own bind error names the address and port.
    let agent_port = taken.local_addr().unwrap().port();
    let config = d.join("agent.env");
    std::fs::write(
        &config,
        format!(
            "AGENT_TOKEN=plain-agent-token-0123456789\nAGENT_BIND=127.0.0.1\nAGENT_PORT={agent_port}\nAGENT_MODE=sandbox\nAGENT_SANDBOX_ROOT={}\n",
            d.join("box").display()
        ),
    )
    .unwrap();
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{agent_port}")),
        "{stderr}"
    );
    drop(taken);

    // Single-server set-up: the server is recorded under the name its agent reports.
    let agent_port = free_port();
    let _agent = start_agent(d, "local", agent_port, WEB_TOKEN);
    let token_file = d.join("local-token");
    std::fs::write(&token_file, WEB_TOKEN).unwrap();
    let api_port = free_port();
    let _controller = start_controller_with(
        d,
        api_port,
        &[
            (
                "ENCONF_LOCAL_AGENT_URL",
                &format!("http://127.0.0.1:{agent_port}"),
            ),
            (
                "ENCONF_LOCAL_AGENT_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
        ],
    );
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let machine = machine.trim();
    let (_, servers) = api(api_port, "GET", "/api/v1/servers", None);
    let hostname = servers[0]["hostname"].as_str().unwrap();
    assert!(
        hostname == machine || hostname == format!("{machine}.localdomain"),
        "{hostname} (the machine is {machine})"
    );
    let (_, ssl) = api(api_port, "GET", "/api/v1/servers/1/ssl/panel", None);
    assert_eq!(ssl["status"], "not_configured");
}
