//! The agent API over HTTP semantics (in process, sandbox system): auth, status codes, error
//! shape, bad input refused with nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TOKEN, snapshot};
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::Sandbox;
use enconf_core::domain::AgentToken;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Harness {
    dir: tempfile::TempDir,
    app: Router,
    _agent: Arc<Agent<Sandbox>>,
}

fn harness(max_body: usize) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let applier = common::sandbox_applier(dir.path());
    let agent = Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, max_body);
    Harness {
        dir,
        app: router(Arc::clone(&agent)),
        _agent: agent,
    }
}

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"));
    (status, json)
}

async fn authed(h: &Harness, method: &str, path: &str, body: Option<&str>) -> (StatusCode, Value) {
    call(h, method, path, Some(TOKEN), body).await
}

#[tokio::test]
async fn every_path_needs_the_token() {
    let h = harness(1 << 20);
    for (method, path) in [
        ("GET", "/v1/health"),
        ("GET", "/v1/accounts"),
        ("PUT", "/v1/accounts/shop"),
        ("DELETE", "/v1/accounts/shop"),
        ("GET", "/nope"),
    ] {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, body) = call(&h, method, path, token, Some("{}")).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    let req = Request::get("/v1/health")
        .header("authorization", format!("Basic {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        h.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn health() {
    let h = harness(1 << 20);
    let (status, body) = authed(&h, "GET", "/v1/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], enconf_core::version::RELEASE);
    assert!(body["hostname"].is_string() && body["uptime_s"].is_u64());
}

#[tokio::test]
async fn hostile_input_is_refused_and_nothing_changes() {
    let h = harness(1 << 20);
    let before = snapshot(h.dir.path());
    for (path, body, field) in [
        (
            "/v1/accounts/shop",
            json!({"domains": ["shop.example;\n}\nserver {"]}),
            "domains[0]",
        ),
        (
            "/v1/accounts/shop",
            json!({"domains": ["ok.example", "a b.example"]}),
            "domains[1]",
        ),
        (
            "/v1/accounts/shop",
            json!({"domains": ["$host.example"]}),
            "domains[0]",
        ),
        (
            "/v1/accounts/shop",
            json!({"domains": ["\"q\".example"]}),
            "domains[0]",
        ),
        (
            "/v1/accounts/shop",
            json!({"domains": ["../../etc"]}),
            "domains[0]",
        ),
        ("/v1/accounts/shop", json!({"domains": []}), "domains"),
        (
            "/v1/accounts/shop",
            json!({"domains": ["shop.example"], "php_version": "8.2;"}),
            "php_version",
        ),
        (
            "/v1/accounts/shop",
            json!({"domains": ["shop.example"], "php": {"memory_limit_mb": 0}}),
            "php.memory_limit_mb",
        ),
        (
            "/v1/accounts/root",
            json!({"domains": ["shop.example"]}),
            "username",
        ),
        (
            "/v1/accounts/sh%0Aop",
            json!({"domains": ["shop.example"]}),
            "username",
        ),
        (
            "/v1/accounts/..",
            json!({"domains": ["shop.example"]}),
            "username",
        ),
        (
            "/v1/accounts",
            json!({"accounts": [{"username": "a1", "domains": ["a1.example"]}, {"username": "a;2", "domains": ["a2.example"]}]}),
            "accounts[1].username",
        ),
    ] {
        let (status, resp) = authed(&h, "PUT", path, Some(&body.to_string())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {resp}"
        );
        assert_eq!(resp["error"]["code"], "invalid");
        assert_eq!(resp["error"]["field"], field, "{body}");
    }
    let (status, resp) = authed(&h, "DELETE", "/v1/accounts/www-data", None).await;
    assert_eq!(
        (status, resp["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("username"))
    );
    assert_eq!(
        snapshot(h.dir.path()),
        before,
        "a refused request wrote nothing"
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let h = harness(1024);
    let (status, resp) = authed(&h, "PUT", "/v1/accounts/shop", Some("{not json")).await;
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_request"))
    );
    let (status, _) = authed(
        &h,
        "PUT",
        "/v1/accounts/shop",
        Some(r#"{"domains": "shop.example"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = authed(
        &h,
        "PUT",
        "/v1/accounts/shop",
        Some(r#"{"domains": ["a.example"], "extra": 1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let big = json!({"domains": (0..100).map(|i| format!("d{i}.example")).collect::<Vec<_>>()})
        .to_string();
    let (status, resp) = authed(&h, "PUT", "/v1/accounts/shop", Some(&big)).await;
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("payload_too_large"))
    );
    let (status, resp) = authed(&h, "GET", "/v2/whatever", None).await;
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let (status, resp) = authed(&h, "POST", "/v1/accounts/shop", Some("{}")).await;
    assert_eq!(
        (status, resp["error"]["code"].clone()),
        (StatusCode::METHOD_NOT_ALLOWED, json!("method_not_allowed"))
    );
    let req = Request::post("/v1/accounts/shop")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "PUT,DELETE");
}

#[tokio::test]
async fn the_authorization_header_as_http_says() {
    let h = harness(1 << 20);
    let status = |values: Vec<String>| {
        let app = h.app.clone();
        async move {
            let mut req = Request::get("/v1/health");
            for v in values {
                req = req.header("authorization", v);
            }
            let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            (status, body["error"]["code"].clone())
        }
    };
    // The scheme is case-insensitive, and one or more spaces may follow it.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for gap in [" ", "   "] {
            let (code, _) = status(vec![format!("{scheme}{gap}{TOKEN}")]).await;
            assert_eq!(code, StatusCode::OK, "{scheme:?}{gap:?}");
        }
    }
    for wrong in [
        format!("Bearer{TOKEN}"),
        format!("Bearer {TOKEN}x"),
        format!("Bearer x{TOKEN}"),
        format!("Basic {TOKEN}"),
        format!("Bearerx {TOKEN}"),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
        String::new(),
    ] {
        assert_eq!(
            status(vec![wrong.clone()]).await,
            (StatusCode::UNAUTHORIZED, json!("unauthorized")),
            "{wrong:?}"
        );
    }
    // Two headers are refused, even when both carry the token.
    for pair in [
        [format!("Bearer {TOKEN}"), format!("Bearer {TOKEN}")],
        [
            format!("Bearer {TOKEN}"),
            "Bearer wrong-token-0123456789".to_owned(),
        ],
        [
            "Bearer wrong-token-0123456789".to_owned(),
            format!("Bearer {TOKEN}"),
        ],
    ] {
        assert_eq!(
            status(pair.to_vec()).await,
            (StatusCode::BAD_REQUEST, json!("bad_request"))
        );
    }
}

#[tokio::test]
async fn put_list_delete() {
    let h = harness(1 << 20);
    let body =
        json!({"domains": ["shop.example", "bücher.example"], "php": {"memory_limit_mb": 256}})
            .to_string();
    let (status, resp) = authed(&h, "PUT", "/v1/accounts/shop", Some(&body)).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"changed": true})));
    let (_, resp) = authed(&h, "PUT", "/v1/accounts/shop", Some(&body)).await;
    assert_eq!(resp, json!({"changed": false}));

    let batch = json!({"accounts": [
        {"username": "shop", "domains": ["shop.example", "bücher.example"], "php": {"memory_limit_mb": 256}},
        {"username": "blog", "domains": ["blog.example"]},
        {"username": "wiki", "domains": ["wiki.example"], "php_version": "8.2"}
    ]});
    let (status, resp) = authed(&h, "PUT", "/v1/accounts", Some(&batch.to_string())).await;
    assert_eq!(
        (status, resp),
        (StatusCode::OK, json!({"changed": 2, "unchanged": 1}))
    );

    let (_, list) = authed(&h, "GET", "/v1/accounts", None).await;
    let names: Vec<&str> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog", "shop", "wiki"]);
    let shop = &list["accounts"][1];
    assert_eq!(
        shop["domains"],
        json!(["shop.example", "xn--bcher-kva.example"])
    );
    assert_eq!(shop["php_version"], "8.2");
    assert_eq!(shop["php"]["memory_limit_mb"], 256);

    let (status, resp) = authed(&h, "DELETE", "/v1/accounts/shop", None).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"changed": true})));
    let (_, resp) = authed(&h, "DELETE", "/v1/accounts/shop", None).await;
    assert_eq!(resp, json!({"changed": false}));
    let (_, list) = authed(&h, "GET", "/v1/accounts", None).await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_puts_are_coalesced() {
    let h = harness(1 << 20);
    let calls = (0..40).map(|i| {
        let app = h.app.clone();
        async move {
            let body = json!({"domains": [format!("site{i}.example")]}).to_string();
            let req = Request::put(format!("/v1/accounts/user{i}"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::from(body))
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    });
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap(), StatusCode::OK);
    }
    let (_, list) = authed(&h, "GET", "/v1/accounts", None).await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 40);
    // Requests that queue while an apply runs share the next one: far fewer validations and
    // reloads than requests (one for the start-up file, then one or a few batches).
    let commands = h._agent.applier().system().commands();
    let checks = commands.iter().filter(|c| c.contains("nginx -t")).count();
    let reloads = commands
        .iter()
        .filter(|c| c.starts_with("kill -HUP"))
        .count();
    assert!(
        checks <= 5 && reloads <= 5,
        "{checks} validations, {reloads} reloads for 40 puts"
    );
}

#[tokio::test]
async fn an_uploaded_certificate_is_written_as_a_certificate() {
    use std::os::unix::fs::MetadataExt;
    let h = harness(1 << 20);
    let names = [enconf_core::domain::DomainName::parse("web1.example.com").unwrap()];
    let pair =
        enconf_core::ssl::cert::self_signed(&names, time::OffsetDateTime::now_utc()).unwrap();
    let put = |chain: String, key: String| {
        json!({"names": ["web1.example.com"], "certificate_pem": chain, "private_key_pem": key})
            .to_string()
    };
    let cert_file = h.dir.path().join("box/srv/ssl/panel.crt");
    let key_file = h.dir.path().join("box/srv/ssl/panel.key");

    // The key pasted into the chain too: refused naming the field, nothing written.
    let before = snapshot(h.dir.path());
    let leaked = put(
        format!("{}{}", pair.chain_pem, pair.key_pem),
        pair.key_pem.clone(),
    );
    let (status, resp) = authed(&h, "PUT", "/v1/certificates/panel", Some(&leaked)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["error"]["field"], "certificate_pem");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(snapshot(h.dir.path()), before);

    // Words around the blocks do not reach the files; the key is 0600 and the agent's (root's).
    let noisy = put(
        format!("issued for web1\n{}\nthanks\n", pair.chain_pem),
        format!("{}\n# keep secret\n", pair.key_pem),
    );
    let (status, resp) = authed(&h, "PUT", "/v1/certificates/panel", Some(&noisy)).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"changed": true})));
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), pair.chain_pem);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----\n") && !key.contains("keep"),
        "{key}"
    );
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), std::fs::metadata(h.dir.path()).unwrap().uid());
    assert_eq!(std::fs::metadata(&cert_file).unwrap().mode() & 0o777, 0o644);
    // No copy of the key is left anywhere else.
    let copies: Vec<_> = snapshot(h.dir.path())
        .into_iter()
        .filter(|(path, bytes)| *path != key_file.display().to_string() && *bytes == key.as_bytes())
        .map(|(path, _)| path)
        .collect();
    assert!(copies.is_empty(), "{copies:?}");
}

#[tokio::test]
async fn the_upgrade_runs_outside_the_agent_and_reports_its_end() {
    let h = harness(1 << 20);
    let system = h._agent.applier().system();
    let state_dir = h._agent.applier().layout().state_dir.clone();
    let host = |name: &str| system.host_path(&state_dir.join(name));

    let (status, body) = authed(&h, "GET", "/v1/update", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "idle"})));

    let (status, body) = authed(&h, "POST", "/v1/update", Some("{}")).await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"status": "running"}))
    );
    // Handed to systemd as a unit of its own, upgrading only the agent's package from its
    // own source.
    let started: Vec<String> = system
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("/usr/bin/systemd-run"))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let line = &started[0];
    assert!(
        line.starts_with("/usr/bin/systemd-run --unit=netcell-webpanel-agent-upgrade --collect "),
        "{line}"
    );
    assert!(line.contains("dpkg --configure -a"), "{line}");
    assert!(
        line.ends_with(&format!(
            "{} {} netcell-webpanel-agent /etc/apt/sources.list.d/netcell-webpanel-agent.sources",
            host("upgrade.status").display(),
            host("upgrade.log").display()
        )),
        "{line}"
    );

    // While it runs, a second one is refused; GET says it runs.
    let (status, body) = authed(&h, "POST", "/v1/update", Some("{}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("job_running"))
    );
    let (_, body) = authed(&h, "GET", "/v1/update", None).await;
    assert_eq!(body, json!({"status": "running"}));

    // The unit's script ends: failed, with the end of apt's output.
    std::fs::write(
        host("upgrade.log"),
        "+ apt-get update\nE: The repository is not signed.\n",
    )
    .unwrap();
    std::fs::write(host("upgrade.status"), "exit 100\n").unwrap();
    let (_, body) = authed(&h, "GET", "/v1/update", None).await;
    assert_eq!(body["status"], "failed");
    assert!(
        body["output"].as_str().unwrap().contains("not signed"),
        "{body}"
    );
    // Tried again; this time it succeeds.
    let (status, _) = authed(&h, "POST", "/v1/update", Some("{}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    std::fs::write(host("upgrade.status"), "exit 0\n").unwrap();
    let (_, body) = authed(&h, "GET", "/v1/update", None).await;
    assert_eq!(body, json!({"status": "succeeded"}));
    // A status left `running` by an upgrade killed long ago does not block the next one.
    std::fs::write(host("upgrade.status"), "running\n").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(host("upgrade.status"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (_, body) = authed(&h, "GET", "/v1/update", None).await;
    assert_eq!(body["status"], "failed");
    assert!(
        body["output"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished")
    );
    let (status, _) = authed(&h, "POST", "/v1/update", Some("{}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_renewed_certificate_is_checked_then_written() {
    use std::os::unix::fs::PermissionsExt;
    let h = harness(1 << 20);
    let ca = enconf_core::ssl::ca::AgentCa::generate(enconf_core::ssl::ca::now()).unwrap();
    let names = [enconf_core::ssl::ca::AgentName::Dns(
        "web1.example.com".into(),
    )];
    let first = ca.issue(&names, enconf_core::ssl::ca::now()).unwrap();
    let second = ca.issue(&names, enconf_core::ssl::ca::now()).unwrap();
    let body = |chain: &str, key: &str| {
        json!({"certificate_pem": chain, "private_key_pem": key}).to_string()
    };

    // A plain-HTTP agent has nothing to renew.
    let (status, _) = authed(
        &h,
        "PUT",
        "/v1/tls",
        Some(&body(&first.chain_pem, &first.key_pem)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (cert, key) = (
        h.dir.path().join("agent.pem"),
        h.dir.path().join("agent.key"),
    );
    std::fs::write(&cert, &first.chain_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    h._agent.serve_tls_files(cert.clone(), key.clone());
    let (_, health) = authed(&h, "GET", "/v1/health", None).await;
    assert!(health["tls_not_after"].is_string(), "{health}");

    // A key that is not the certificate's: refused, nothing written.
    let (status, answer) = authed(
        &h,
        "PUT",
        "/v1/tls",
        Some(&body(&second.chain_pem, &first.key_pem)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "private_key_pem");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), first.chain_pem);

    let (status, answer) = authed(
        &h,
        "PUT",
        "/v1/tls",
        Some(&body(&second.chain_pem, &second.key_pem)),
    )
    .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"changed": true})));
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), second.chain_pem);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (_, answer) = authed(
        &h,
        "PUT",
        "/v1/tls",
        Some(&body(&second.chain_pem, &second.key_pem)),
    )
    .await;
    assert_eq!(answer, json!({"changed": false}));
}
