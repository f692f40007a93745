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
