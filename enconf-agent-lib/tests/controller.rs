//! The controller driving real agents (sandbox systems) through the in-process transport:
//! accounts land on the right agent's disk, move between agents, and reconciliation sees what
//! each agent really has. Also: the `config.env` the install script writes is what the agent
//! reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TOKEN;
use enconf_agent_lib::config::parse_env_file;
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::Sandbox;
use enconf_agent_lib::transport::InProcess;
use enconf_core::controller::{Controller, ControllerConfig, install};
use enconf_core::domain::{AccountId, AgentToken, AgentUrl, ServerId};
use enconf_core::protocol::{AccountInput, MigrateInput, ServerInput};
use enconf_core::store::MemoryStore;

struct Node {
    dir: tempfile::TempDir,
    url: AgentUrl,
    _agent: Arc<Agent<Sandbox>>,
}

impl Node {
    fn vhost(&self, user: &str) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("box/srv/sites/enconf-{user}.conf"))
    }
}

fn node(transport: &InProcess, port: u16) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let applier = common::sandbox_applier(dir.path());
    let agent = Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 20);
    let url: AgentUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
    transport.add(url.clone(), router(Arc::clone(&agent)));
    Node {
        dir,
        url,
        _agent: agent,
    }
}

fn server(name: &str, node: &Node, roles: &[&str]) -> ServerInput {
    ServerInput {
        name: Some(name.into()),
        hostname: Some(format!("{name}.example.com")),
        agent_url: Some(node.url.to_string()),
        agent_token: Some(TOKEN.into()),
        roles: Some(roles.iter().map(|r| r.to_string()).collect()),
        ..ServerInput::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_drives_in_process_agents() {
    let transport = Arc::new(InProcess::new());
    let (a, b) = (node(&transport, 50001), node(&transport, 50002));
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig {
            health_timeout: Duration::from_secs(5),
            ..ControllerConfig::default()
        },
    );
    let sa = controller
        .add_server(&server("web1", &a, &["web"]))
        .await
        .unwrap();
    let sb = controller
        .add_server(&server("web2", &b, &["web"]))
        .await
        .unwrap();
    assert!(sa.reachable && sb.reachable);
    assert_eq!(
        sa.agent_version.as_deref(),
        Some(enconf_core::version::RELEASE)
    );

    let input = AccountInput {
        username: Some("shop".into()),
        domains: Some(vec!["shop.example".into()]),
        php_version: None,
        server_id: Some(sa.id.0.into()),
        ..AccountInput::default()
    };
    let account = controller.create_account(&input).await.unwrap();
    assert_eq!(account.server_id, Some(sa.id));
    assert!(
        std::fs::read_to_string(a.vhost("shop"))
            .unwrap()
            .contains("server_name shop.example;")
    );

    // Reconciliation agrees; then an account removed behind the controller's back is found.
    let report = controller.reconcile(sa.id).await.unwrap();
    assert_eq!(report.in_sync, ["shop"]);
    let moved = controller
        .migrate_account(
            AccountId(account.id),
            &MigrateInput {
                target_server_id: Some(sb.id.0.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.server_id, Some(sb.id));
    assert!(!a.vhost("shop").exists(), "removed from the source");
    assert!(b.vhost("shop").exists(), "set up on the target");
    assert_eq!(
        controller.reconcile(sa.id).await.unwrap().in_sync,
        Vec::<String>::new()
    );

    // An agent going offline mid-way: known at once, refused with 503.
    transport.set_offline(&b.url, true);
    let e = controller
        .delete_account(AccountId(account.id))
        .await
        .unwrap_err();
    assert_eq!(enconf_core::protocol::ErrorBody::from(e).status(), 503);
    assert!(!controller.server(sb.id).await.unwrap().reachable);
    assert!(b.vhost("shop").exists());
    transport.set_offline(&b.url, false);
    controller.check_server(sb.id).await.unwrap();
    controller
        .delete_account(AccountId(account.id))
        .await
        .unwrap();
    assert!(!b.vhost("shop").exists());
    controller.delete_server(ServerId(sb.id.0)).await.unwrap();
}

#[test]
fn the_agent_reads_the_token_the_install_script_writes() {
    let spec = enconf_core::store::conformance::spec("web1", "web");
    for token in [
        "plain-token-0123456789",
        "it's-$HOME-`id`-\"x\"-\\-;#",
        "''''",
    ] {
        let text = install::config_env(&spec, token, false).join("\n") + "\n";
        let values = parse_env_file("config.env", &text).unwrap();
        assert_eq!(values["AGENT_TOKEN"], token);
        assert_eq!(values["AGENT_PORT"], "50000");
        assert_eq!(values["AGENT_ROLES"], "web");
        let roles: enconf_core::domain::RoleSet = values["AGENT_ROLES"].parse().unwrap();
        assert_eq!(roles, spec.roles, "the agent serves the server's roles");
    }
}

/// A machine that already has users enconf did not create: `ubuntu` (uid 1000, in `sudo`, with a
/// home), a system user `minecraft` (uid 105) and a bare group `docker`.
fn with_foreign_users(node: &Node) -> std::path::PathBuf {
    let root = node.dir.path().join("box");
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    for (file, text) in [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\nminecraft:x:105:111::/opt/minecraft:/bin/bash\n",
        ),
        (
            "shadow",
            "root:*:19000:0:99999:7:::\nubuntu:$6$salt$hash:19000:0:99999:7:::\nminecraft:*:19000:0:99999:7:::\n",
        ),
        (
            "group",
            "root:x:0:\nsudo:x:27:ubuntu\nubuntu:x:1000:\nminecraft:x:111:\ndocker:x:999:ubuntu\n",
        ),
        (
            "gshadow",
            "root:*::\nsudo:*::ubuntu\nubuntu:!::\nminecraft:!::\ndocker:!::ubuntu\n",
        ),
    ] {
        std::fs::write(etc.join(file), text).unwrap();
    }
    let home = root.join("home/ubuntu");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".bashrc"), "# ubuntu's own\n").unwrap();
    root
}

/// What must never change: the user databases and the foreign user's home.
fn foreign_state(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    [
        "etc/passwd",
        "etc/shadow",
        "etc/group",
        "etc/gshadow",
        "home/ubuntu/.bashrc",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read(root.join(f)).unwrap_or_default(),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_the_agent_did_not_create_are_never_taken_over() {
    use enconf_core::protocol::ErrorBody;
    let transport = Arc::new(InProcess::new());
    let (a, b) = (node(&transport, 50011), node(&transport, 50012));
    let root = with_foreign_users(&a);
    let before = foreign_state(&root);
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let sa = controller
        .add_server(&server("web1", &a, &["web"]))
        .await
        .unwrap();
    let sb = controller
        .add_server(&server("web2", &b, &["web"]))
        .await
        .unwrap();
    let input = |user: &str, server: ServerId| AccountInput {
        username: Some(user.into()),
        domains: Some(vec![format!("{user}.example")]),
        php_version: None,
        server_id: Some(server.0.into()),
        ..AccountInput::default()
    };

    // A user, a system user and a bare group of that name: 409 naming `username`, nothing
    // recorded, nothing written for them.
    for user in ["ubuntu", "minecraft", "docker"] {
        let e = ErrorBody::from(
            controller
                .create_account(&input(user, sa.id))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.status(), 409, "{user}: {e:?}");
        assert_eq!(e.error.field.as_deref(), Some("username"), "{user}");
        assert!(e.error.message.contains("not created by enconf"), "{e:?}");
        assert!(!a.vhost(user).exists());
        assert_eq!(foreign_state(&root), before, "{user}");
    }
    assert!(controller.accounts().await.unwrap().is_empty());

    // Set up elsewhere, the account cannot move onto the machine that has the user.
    let ubuntu = controller
        .create_account(&input("ubuntu", sb.id))
        .await
        .unwrap();
    let e = controller
        .migrate_account(
            AccountId(ubuntu.id),
            &MigrateInput {
                target_server_id: Some(sa.id.0.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(ErrorBody::from(e).status(), 409);
    assert_eq!(
        controller
            .account(AccountId(ubuntu.id))
            .await
            .unwrap()
            .server_id,
        Some(sb.id)
    );
    assert!(b.vhost("ubuntu").exists() && !a.vhost("ubuntu").exists());
    assert_eq!(foreign_state(&root), before);
    controller.reconcile(sa.id).await.unwrap();
    controller
        .delete_account(AccountId(ubuntu.id))
        .await
        .unwrap();
    assert_eq!(foreign_state(&root), before);

    // An account the agent created is its own to remove, user, group and home.
    let shop = controller
        .create_account(&input("shop", sa.id))
        .await
        .unwrap();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("\nshop:x:1001:1001::/srv/www/shop:/usr/sbin/nologin\n"),
        "{passwd}"
    );
    controller.delete_account(AccountId(shop.id)).await.unwrap();
    assert!(!root.join("srv/www/shop").exists());
    assert_eq!(foreign_state(&root), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_under_other_spellings_is_refused() {
    use enconf_core::protocol::{ErrorBody, ServerPatch};
    let transport = Arc::new(InProcess::new());
    let a = node(&transport, 50021);
    let b = node(&transport, 50022);
    // The same agent, reachable as other URLs.
    let spellings = [
        "http://localhost:50021",
        "http://LOCALHOST:50021",
        "http://[::1]:50021",
    ];
    for url in spellings {
        transport.add(url.parse().unwrap(), router(Arc::clone(&a._agent)));
    }
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let first = controller
        .add_server(&server("web1", &a, &["web"]))
        .await
        .unwrap();
    assert!(first.reachable);
    for (i, url) in spellings.iter().enumerate() {
        let mut again = server(&format!("web{}", i + 2), &a, &["web"]);
        again.agent_url = Some((*url).to_owned());
        let e = ErrorBody::from(controller.add_server(&again).await.unwrap_err());
        assert_eq!(
            (e.status(), e.error.field.as_deref()),
            (409, Some("agent_url")),
            "{url}: {e:?}"
        );
        assert!(
            e.error.message.contains(&format!("server {}", first.id)),
            "{e:?}"
        );
    }
    assert_eq!(controller.servers().await.unwrap().len(), 1);

    // Nor can another server be pointed at it.
    let other = controller
        .add_server(&server("web9", &b, &["web"]))
        .await
        .unwrap();
    let patch: ServerPatch =
        serde_json::from_value(serde_json::json!({"agent_url": spellings[1]})).unwrap();
    let e = ErrorBody::from(controller.patch_server(other.id, &patch).await.unwrap_err());
    assert_eq!(
        (e.status(), e.error.field.as_deref()),
        (409, Some("agent_url"))
    );
    assert_eq!(
        controller.server(other.id).await.unwrap().agent_url,
        b.url.to_string()
    );
}

fn node_serving(transport: &InProcess, port: u16, roles: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let applier = common::sandbox_applier(dir.path()).with_roles(roles.parse().unwrap());
    let agent = Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 20);
    let url: AgentUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
    transport.add(url.clone(), router(Arc::clone(&agent)));
    Node {
        dir,
        url,
        _agent: agent,
    }
}

/// The roles a node's agent recorded for an account (`None`: it does not have it).
fn roles_on(node: &Node, user: &str) -> Option<String> {
    let path = node
        .dir
        .path()
        .join(format!("box/srv/state/accounts/{user}.json"));
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).unwrap();
    Some(
        record["spec"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(","),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_of_an_account_lands_on_its_own_server() {
    use enconf_core::protocol::ErrorBody;
    let transport = Arc::new(InProcess::new());
    let a = node_serving(&transport, 50031, "web,db");
    let b = node_serving(&transport, 50032, "mail,dns");
    let c = node_serving(&transport, 50033, "backup");
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let sa = controller
        .add_server(&server("web1", &a, &["web", "db"]))
        .await
        .unwrap();
    let sb = controller
        .add_server(&server("mail1", &b, &["mail", "dns"]))
        .await
        .unwrap();
    let sc = controller
        .add_server(&server("backup1", &c, &["backup"]))
        .await
        .unwrap();
    let input = |user: &str, roles: &[&str], servers: serde_json::Value| -> AccountInput {
        serde_json::from_value(serde_json::json!({
            "username": user, "domains": [format!("{user}.example")],
            "roles": roles, "servers": servers,
        }))
        .unwrap()
    };
    let all = ["web", "mail", "dns", "db", "backup"];

    // All five roles: web and db together, mail and dns together, backup alone.
    let shop = controller
        .create_account(&input("shop", &all, serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&shop.servers).unwrap(),
        serde_json::json!({"web": sa.id.0, "mail": sb.id.0, "dns": [sb.id.0], "db": sa.id.0, "backup": sc.id.0})
    );
    assert_eq!(shop.server_id, Some(sa.id));
    assert_eq!(roles_on(&a, "shop").as_deref(), Some("web,db"));
    assert_eq!(roles_on(&b, "shop").as_deref(), Some("mail,dns"));
    assert_eq!(roles_on(&c, "shop").as_deref(), Some("backup"));
    assert!(a.vhost("shop").exists() && !b.vhost("shop").exists());
    // Each server counts the account once.
    for s in [sa.id, sb.id, sc.id] {
        assert_eq!(controller.server(s).await.unwrap().accounts, 1);
    }

    // A pin to a server that cannot take the role: 422 naming it, with the reason; nothing
    // recorded or sent.
    let e = ErrorBody::from(
        controller
            .create_account(&input(
                "blog",
                &["web", "mail"],
                serde_json::json!({"mail": sa.id.0}),
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.status(), e.error.field.as_deref()),
        (422, Some("servers.mail")),
        "{e:?}"
    );
    assert!(e.error.message.contains("lacks the role(s) mail"), "{e:?}");
    assert!(roles_on(&a, "blog").is_none());

    // The mail server offline: what needs it is refused (503 naming it), the rest goes on.
    transport.set_offline(&b.url, true);
    controller.check_server(sb.id).await.unwrap();
    let e = ErrorBody::from(
        controller
            .create_account(&input("blog", &["web", "mail"], serde_json::json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status(), 503, "{e:?}");
    assert!(
        e.error.message.contains(&format!("server {}", sb.id)),
        "{e:?}"
    );
    assert!(!a.vhost("blog").exists(), "no web site left behind");
    let blog = controller
        .create_account(&input("blog", &["web"], serde_json::json!({})))
        .await
        .unwrap();
    let e = ErrorBody::from(
        controller
            .delete_account(AccountId(shop.id))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status(), 503);
    assert!(
        a.vhost("shop").exists(),
        "nothing deleted while one server is offline"
    );
    controller.delete_account(AccountId(blog.id)).await.unwrap();
    transport.set_offline(&b.url, false);
    controller.check_server(sb.id).await.unwrap();

    // A server any role of an account uses cannot be deleted; the refusal says for what.
    let e = ErrorBody::from(controller.delete_server(sb.id).await.unwrap_err());
    assert_eq!(e.status(), 409);
    assert!(e.error.message.contains("shop: mail,dns"), "{e:?}");

    // The web role moves; the account's db role stays where it was.
    let d = node_serving(&transport, 50034, "web");
    let sd = controller
        .add_server(&server("web2", &d, &["web"]))
        .await
        .unwrap();
    let moved = controller
        .migrate_account(
            AccountId(shop.id),
            &MigrateInput {
                target_server_id: Some(sd.id.0.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.server_id, Some(sd.id));
    assert_eq!(roles_on(&a, "shop").as_deref(), Some("db"));
    assert!(!a.vhost("shop").exists() && d.vhost("shop").exists());
    assert_eq!(roles_on(&d, "shop").as_deref(), Some("web"));
    let report = controller.reconcile(sa.id).await.unwrap();
    assert_eq!(report.in_sync, ["shop"]);

    controller.delete_account(AccountId(shop.id)).await.unwrap();
    for node in [&a, &b, &c, &d] {
        assert!(roles_on(node, "shop").is_none());
    }
    controller.delete_server(sb.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_keeps_every_role_and_an_unserved_role_is_refused() {
    use enconf_core::protocol::ErrorBody;
    let transport = Arc::new(InProcess::new());
    let solo = node_serving(&transport, 50041, "web,mail,dns,db,backup");
    let web_only = node_serving(&transport, 50042, "web");
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let all = ["web", "mail", "dns", "db", "backup"];
    let s = controller
        .add_server(&server("solo", &solo, &all))
        .await
        .unwrap();
    let input: AccountInput = serde_json::from_value(serde_json::json!({
        "username": "shop", "domains": ["shop.example"], "roles": all,
    }))
    .unwrap();
    let shop = controller.create_account(&input).await.unwrap();
    assert_eq!(
        shop.servers.servers().into_iter().collect::<Vec<_>>(),
        [s.id]
    );
    assert_eq!(
        roles_on(&solo, "shop").as_deref(),
        Some("web,mail,dns,db,backup")
    );

    // A server recorded with a role its agent does not serve: the agent refuses (409
    // role_not_served) and nothing is left anywhere.
    let w = controller
        .add_server(&server("web1", &web_only, &["web", "db"]))
        .await
        .unwrap();
    let before = common::snapshot(web_only.dir.path());
    let input: AccountInput = serde_json::from_value(serde_json::json!({
        "username": "blog", "domains": ["blog.example"], "roles": ["db"],
        "servers": {"db": w.id.0},
    }))
    .unwrap();
    let e = ErrorBody::from(controller.create_account(&input).await.unwrap_err());
    assert_eq!(
        (e.status(), e.error.code),
        (409, enconf_core::protocol::ErrorCode::RoleNotServed),
        "{e:?}"
    );
    assert_eq!(common::snapshot(web_only.dir.path()), before);
    assert_eq!(controller.accounts().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_servers_roundcube_path_reaches_its_agent() {
    use enconf_core::protocol::ServerPatch;
    let transport = Arc::new(InProcess::new());
    let mail = node_serving(&transport, 50031, "mail");
    let web = node_serving(&transport, 50032, "web");
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    let webmail = |node: &Node| {
        let path = node.dir.path().join("box/srv/state/panel.json");
        std::fs::read(path)
            .ok()
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["webmail"].clone())
    };
    let mut input = server("mx1", &mail, &["mail"]);
    input.roundcube_path = Some("/webmail".into());
    let added = controller.add_server(&input).await.unwrap();
    assert_eq!(webmail(&mail), Some(serde_json::json!("/webmail")));
    let roundcube =
        std::fs::read_to_string(mail.dir.path().join("box/etc/roundcube/config.inc.php")).unwrap();
    assert!(
        roundcube.contains("$config['imap_host'] = [\"127.0.0.1:143\"];"),
        "{roundcube}"
    );

    let patch = |v: serde_json::Value| -> ServerPatch { serde_json::from_value(v).unwrap() };
    controller
        .patch_server(
            added.id,
            &patch(serde_json::json!({"roundcube_path": "/mail"})),
        )
        .await
        .unwrap();
    assert_eq!(webmail(&mail), Some(serde_json::json!("/mail")));
    controller
        .patch_server(
            added.id,
            &patch(serde_json::json!({"roundcube_path": null})),
        )
        .await
        .unwrap();
    assert_eq!(webmail(&mail), Some(serde_json::Value::Null));

    // A server without the mail role is not asked (its agent would refuse: 409).
    let mut input = server("www1", &web, &["web"]);
    input.roundcube_path = Some("/webmail".into());
    controller.add_server(&input).await.unwrap();
    assert_eq!(webmail(&web), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_rotated_under_a_running_health_monitor_without_a_failed_check() {
    use enconf_core::transport::{AgentClient, AgentEndpoint, TransportError};
    use std::sync::atomic::{AtomicBool, Ordering};

    let transport = Arc::new(InProcess::new());
    let a = node(&transport, 50021);
    // Every answer passes through `watch`: refused health checks are counted, and the
    // agent's answer to a new token is held back a while, so that checks run while the agent
    // has the new token and the controller still uses the old one.
    let watch = Arc::new(Watch {
        inner: Arc::clone(&transport),
        refused: std::sync::atomic::AtomicUsize::new(0),
    });
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        watch.clone(),
        ControllerConfig {
            health_timeout: Duration::from_millis(300),
            health_spread: Duration::ZERO,
            ..ControllerConfig::default()
        },
    );
    let id = controller
        .add_server(&server("web1", &a, &["web"]))
        .await
        .unwrap()
        .id;

    // The monitor's rounds, back to back, while the token is rotated again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn({
        let (controller, stop) = (controller.clone(), Arc::clone(&stop));
        async move {
            let (mut rounds, mut unreachable) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let round = controller.check_all().await;
                unreachable += round.unreachable;
                rounds += 1;
            }
            (rounds, unreachable)
        }
    });
    let mut tokens = vec![TOKEN.to_owned()];
    for _ in 0..5 {
        let view = controller.rotate_token(id).await.unwrap();
        assert!(view.reachable);
        let token = controller.store().server(id).await.unwrap().token;
        tokens.push(token.expose_secret().to_owned());
    }
    // The last rotation's old token is dropped after the grace (spread + 2 x timeout).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, unreachable) = monitor.await.unwrap();
    assert!(rounds >= 20, "{rounds} rounds");
    assert_eq!(
        watch.refused.load(Ordering::Relaxed),
        0,
        "a check was refused"
    );
    assert_eq!(unreachable, 0, "no check failed in {rounds} rounds");
    assert!(controller.server(id).await.unwrap().reachable);

    // Only the last token works; the earlier ones are refused at once.
    let ask = |token: &str| {
        let endpoint = AgentEndpoint {
            url: a.url.clone(),
            token: AgentToken::parse(token).unwrap(),
        };
        let transport = Arc::clone(&transport);
        async move { AgentClient::new(&*transport, &endpoint).health().await }
    };
    let (last, earlier) = tokens.split_last().unwrap();
    ask(last).await.unwrap();
    for old in earlier {
        let refused = ask(old).await.unwrap_err();
        assert!(
            matches!(refused, TransportError::Agent { status: 401, .. }),
            "{refused:?}"
        );
    }
    // Kept as digests only, and across a restart of the agent.
    let kept = std::fs::read_to_string(a.dir.path().join("box/srv/state/tokens"))
        .or_else(|_| {
            let state = common::layout(std::path::Path::new("/srv")).state_dir;
            std::fs::read_to_string(
                a.dir
                    .path()
                    .join("box")
                    .join(state.strip_prefix("/").unwrap())
                    .join("tokens"),
            )
        })
        .unwrap();
    assert!(tokens.iter().all(|t| !kept.contains(t.as_str())), "{kept}");
    let again = Agent::new(
        AgentToken::parse(TOKEN).unwrap(),
        common::sandbox_applier(a.dir.path()),
        1 << 20,
    );
    transport.add(a.url.clone(), router(again));
    ask(last).await.unwrap();
    assert!(ask(TOKEN).await.is_err());
    assert!(controller.check_server(id).await.unwrap().reachable);
}

/// A transport that counts refused health checks and holds back the answer to a new token.
#[derive(Debug)]
struct Watch {
    inner: Arc<InProcess>,
    refused: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl enconf_core::transport::AgentTransport for Watch {
    async fn send(
        &self,
        agent: &enconf_core::transport::AgentEndpoint,
        request: enconf_core::transport::AgentRequest,
    ) -> Result<enconf_core::transport::AgentResponse, enconf_core::transport::TransportError> {
        let path = request.path.clone();
        let answer = self.inner.send(agent, request).await;
        match (&answer, path.as_str()) {
            (Ok(r), "/v1/health") if r.status == 401 => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (Ok(_), "/v1/token") => tokio::time::sleep(Duration::from_millis(30)).await,
            _ => {}
        }
        answer
    }
}
