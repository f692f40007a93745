//! Agent TLS with no manual step: the installation script of an `https` agent, run into a
//! temporary root (`ENCONF_INSTALL_ROOT`, package tools stood in), writes a config and the
//! certificate and key the controller's authority issued; the real agent binary serves HTTPS
//! with them and the controller (trusting only its authority) connects. An agent whose
//! certificate another authority made for the same names is offline with the reason
//! "certificate not issued by this controller".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{AGENT, free_port, spawn};
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::ServerId;
use enconf_core::protocol::ServerInput;
use enconf_core::ssl::ca::{AgentCa, AgentName};
use enconf_core::store::MemoryStore;
use enconf_core::transport::http::{HttpTransport, NOT_OURS};

const TOKEN: &str = "tls-agent-token-0123456789";

/// Runs the installation script with `root` as the root, apt and systemd stood in.
fn install(script: &str, dir: &Path, root: &Path) {
    let bin = dir.join("stand-ins");
    std::fs::create_dir_all(&bin).unwrap();
    for (tool, body) in [
        ("apt-get", "exit 0"),
        ("systemctl", "exit 0"),
        ("dpkg-query", "printf 'install ok installed'"),
    ] {
        let path = bin.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = dir.join("install.sh");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("sh")
        .arg(&file)
        .env("ENCONF_INSTALL_ROOT", root)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_installed_by_the_script_serves_https_the_controller_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(AgentCa::generate(enconf_core::ssl::ca::now()).unwrap());
    let transport = HttpTransport::for_agents(Duration::from_secs(5), ca.cert_pem(), None).unwrap();
    let store = Arc::new(MemoryStore::new_in_memory());
    let controller = Controller::new(
        Arc::clone(&store) as Arc<dyn enconf_core::store::Store>,
        Arc::new(transport),
        ControllerConfig::default(),
    )
    .with_agent_ca(Arc::clone(&ca));
    let port = free_port();
    let input: ServerInput = serde_json::from_value(serde_json::json!({
        "name": "web1", "hostname": "web1.example.com",
        "agent_url": format!("https://127.0.0.1:{port}"), "agent_token": TOKEN, "roles": ["web"],
    }))
    .unwrap();
    let server = controller.add_server(&input).await.unwrap();
    assert!(!server.reachable, "no agent yet");
    let id = ServerId(server.id.0);

    // The script carries the agent's certificate and key, and the authority's certificate.
    let script = controller.install_script(id).await.unwrap();
    assert!(!script.contains("set AGENT_TLS_CERT"), "no manual step");
    let root = dir.path().join("root");
    install(&script, dir.path(), &root);
    let etc = root.join("etc/netcell-webpanel-agent");
    let config = std::fs::read_to_string(etc.join("config.env")).unwrap();
    assert!(
        config.contains("AGENT_TLS_CERT=/etc/netcell-webpanel-agent/tls/agent.pem\n"),
        "{config}"
    );
    let tls = etc.join("tls");
    let mode = |name: &str| {
        std::fs::metadata(tls.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (mode("agent.key"), mode("agent.pem"), mode("ca.pem")),
        (0o600, 0o644, 0o644)
    );
    assert_eq!(
        std::fs::read_to_string(tls.join("ca.pem")).unwrap(),
        ca.cert_pem()
    );

    // The real agent with that config (its files under the temporary root; sandbox mode).
    let rooted = config.replace(
        "/etc/netcell-webpanel-agent/tls",
        &tls.display().to_string(),
    );
    let agent_config = dir.path().join("agent.env");
    std::fs::write(
        &agent_config,
        format!(
            "{rooted}AGENT_MODE=sandbox\nAGENT_SANDBOX_ROOT={}\n",
            dir.path().join("sandbox").display()
        ),
    )
    .unwrap();
    let start = || {
        let mut command = Command::new(AGENT);
        command.arg("--config").arg(&agent_config);
        spawn(command, &dir.path().join("agent.log"), port, "agent")
    };
    let agent = start();
    let seen = controller.check_server(id).await.unwrap();
    assert!(seen.reachable, "{:?}", seen.last_error);
    assert_eq!(
        seen.agent_version.as_deref(),
        Some(enconf_core::version::RELEASE)
    );

    // An agent with another authority's certificate for the same names (started anew, so
    // that the controller's pooled connection is gone): refused, with the reason.
    drop(agent);
    let stranger = AgentCa::generate(enconf_core::ssl::ca::now()).unwrap();
    let forged = stranger
        .issue(
            &[
                AgentName::Dns("web1.example.com".into()),
                AgentName::Ip("127.0.0.1".parse().unwrap()),
            ],
            enconf_core::ssl::ca::now(),
        )
        .unwrap();
    std::fs::write(tls.join("agent.pem"), &forged.chain_pem).unwrap();
    std::fs::write(tls.join("agent.key"), &forged.key_pem).unwrap();
    let agent = start();
    let seen = controller.check_server(id).await.unwrap();
    assert!(!seen.reachable);
    let reason = seen.last_error.unwrap_or_default();
    assert!(reason.contains(NOT_OURS), "{reason}");

    // A fresh script (a new certificate from the authority) puts it right.
    drop(agent);
    let script = controller.install_script(id).await.unwrap();
    install(&script, dir.path(), &root);
    let _agent = start();
    let seen = controller.check_server(id).await.unwrap();
    assert!(seen.reachable, "{:?}", seen.last_error);

    // The agent reports when its certificate expires; the monitor renews it before then
    // (here every certificate is due: renew 400 days ahead), through the agent API.
    use enconf_core::store::Store;
    let not_after = store
        .server(id)
        .await
        .unwrap()
        .health
        .tls_not_after
        .unwrap();
    let left = not_after.unix_timestamp() - enconf_core::ssl::ca::now().unix_timestamp();
    assert!((left - 365 * 24 * 3600).abs() < 2 * 3600, "{not_after}");
    assert_eq!(
        controller.renew_agent_certificates().await,
        0,
        "not due yet"
    );
    let fresh = || HttpTransport::for_agents(Duration::from_secs(5), ca.cert_pem(), None).unwrap();
    let renewer = Controller::new(
        Arc::clone(&store) as Arc<dyn enconf_core::store::Store>,
        Arc::new(fresh()),
        ControllerConfig {
            renew_before: Duration::from_secs(400 * 24 * 3600),
            ..ControllerConfig::default()
        },
    )
    .with_agent_ca(Arc::clone(&ca));
    let before = std::fs::read_to_string(tls.join("agent.pem")).unwrap();
    assert_eq!(renewer.renew_agent_certificates().await, 1);
    let after = std::fs::read_to_string(tls.join("agent.pem")).unwrap();
    assert_ne!(before, after, "a new certificate");
    assert!(after.ends_with(ca.cert_pem()));
    assert_eq!(mode("agent.key"), 0o600);
    // A new connection gets the renewed certificate, and trusts it.
    let checker = Controller::new(
        Arc::clone(&store) as Arc<dyn enconf_core::store::Store>,
        Arc::new(fresh()),
        ControllerConfig::default(),
    );
    let seen = checker.check_server(id).await.unwrap();
    assert!(seen.reachable, "{:?}", seen.last_error);
}

#[tokio::test]
async fn a_plain_http_agent_across_the_network_needs_a_setting_and_is_flagged() {
    let controller = |allow: bool| {
        Controller::new(
            Arc::new(MemoryStore::new_in_memory()),
            Arc::new(HttpTransport::new(Duration::from_millis(300), None).unwrap()),
            ControllerConfig {
                allow_plain_http_agents: allow,
                ..ControllerConfig::default()
            },
        )
    };
    let input = |name: &str, url: &str| -> ServerInput {
        serde_json::from_value(serde_json::json!({
            "name": name, "hostname": format!("{name}.example.com"),
            "agent_url": url, "agent_token": TOKEN, "roles": ["web"],
        }))
        .unwrap()
    };
    let strict = controller(false);
    let e = strict
        .add_server(&input("web1", "http://192.0.2.7:50000"))
        .await
        .unwrap_err();
    let body = enconf_core::protocol::ErrorBody::from(e);
    assert_eq!(
        (body.status(), body.error.field.as_deref()),
        (422, Some("agent_url"))
    );
    assert!(
        body.error
            .message
            .contains("ENCONF_ALLOW_PLAIN_HTTP_AGENTS"),
        "{body:?}"
    );
    // https, or plain HTTP on this machine, is fine and not flagged.
    for (name, url) in [
        ("web2", "https://192.0.2.7:50000"),
        ("web3", "http://127.0.0.1:1"),
    ] {
        let view = strict.add_server(&input(name, url)).await.unwrap();
        assert_eq!(view.warning, None, "{url}");
    }
    // Nor is an edit to plain HTTP allowed.
    let patch: enconf_core::protocol::ServerPatch =
        serde_json::from_value(serde_json::json!({"agent_url": "http://192.0.2.7:50001"})).unwrap();
    let servers = strict.servers().await.unwrap();
    assert!(strict.patch_server(servers[0].id, &patch).await.is_err());

    // Allowed explicitly: added, with a warning in the server table.
    let lax = controller(true);
    let view = lax
        .add_server(&input("web1", "http://192.0.2.7:50000"))
        .await
        .unwrap();
    assert!(view.warning.unwrap().contains("plain HTTP"));
}

/// Mutual TLS: with `agent_mtls`, the script makes the agent require a client certificate of
/// the controller's authority. The controller presents its own and connects; a client with
/// the right token but no certificate, or one of another authority, fails at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_only_the_controller_s_certificate_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(AgentCa::generate(enconf_core::ssl::ca::now()).unwrap());
    let identity = ca.issue_controller(enconf_core::ssl::ca::now()).unwrap();
    let transport = |identity: Option<(&str, &str)>| {
        Arc::new(
            HttpTransport::for_agents_as(Duration::from_secs(5), ca.cert_pem(), None, identity)
                .unwrap(),
        )
    };
    let store = Arc::new(MemoryStore::new_in_memory());
    let controller_with = |t: Arc<HttpTransport>| {
        Controller::new(
            Arc::clone(&store) as Arc<dyn enconf_core::store::Store>,
            t,
            ControllerConfig {
                agent_mtls: true,
                ..ControllerConfig::default()
            },
        )
        .with_agent_ca(Arc::clone(&ca))
    };
    let controller = controller_with(transport(Some((&identity.chain_pem, &identity.key_pem))));
    let port = free_port();
    let input: ServerInput = serde_json::from_value(serde_json::json!({
        "name": "web1", "hostname": "web1.example.com",
        "agent_url": format!("https://127.0.0.1:{port}"), "agent_token": TOKEN, "roles": ["web"],
    }))
    .unwrap();
    let id = ServerId(controller.add_server(&input).await.unwrap().id.0);
    let script = controller.install_script(id).await.unwrap();
    let root = dir.path().join("root");
    install(&script, dir.path(), &root);
    let etc = root.join("etc/netcell-webpanel-agent");
    let config = std::fs::read_to_string(etc.join("config.env")).unwrap();
    assert!(
        config.contains("AGENT_TLS_CLIENT_CA=/etc/netcell-webpanel-agent/tls/ca.pem\n"),
        "{config}"
    );
    let tls = etc.join("tls");
    let rooted = config.replace(
        "/etc/netcell-webpanel-agent/tls",
        &tls.display().to_string(),
    );
    let agent_config = dir.path().join("agent.env");
    std::fs::write(
        &agent_config,
        format!(
            "{rooted}AGENT_MODE=sandbox\nAGENT_SANDBOX_ROOT={}\n",
            dir.path().join("sandbox").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(AGENT);
    command.arg("--config").arg(&agent_config);
    let _agent = spawn(command, &dir.path().join("agent.log"), port, "agent");

    let seen = controller.check_server(id).await.unwrap();
    assert!(seen.reachable, "{:?}", seen.last_error);

    // The right token without a client certificate: no connection.
    let bare = controller_with(transport(None));
    let seen = bare.check_server(id).await.unwrap();
    assert!(!seen.reachable, "a client without a certificate got in");
    // A certificate another authority issued to a controller: no connection either.
    let stranger = AgentCa::generate(enconf_core::ssl::ca::now()).unwrap();
    let other = stranger
        .issue_controller(enconf_core::ssl::ca::now())
        .unwrap();
    let foreign = controller_with(transport(Some((&other.chain_pem, &other.key_pem))));
    let seen = foreign.check_server(id).await.unwrap();
    assert!(!seen.reachable, "a foreign client certificate got in");
    // The controller's own still does.
    let seen = controller.check_server(id).await.unwrap();
    assert!(seen.reachable, "{:?}", seen.last_error);
}
