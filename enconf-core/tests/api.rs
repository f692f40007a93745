//! The Management API over HTTP semantics (in process): auth, every validation rule with its
//! field, the error shape, status codes, offline and failing agents, and no 500 anywhere.
//! Agents are scripted fakes behind the `AgentTransport` trait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use enconf_core::controller::api::{ApiConfig, router};
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::protocol::agent::AccountPut;
use enconf_core::store::MemoryStore;
use enconf_core::transport::{
    AgentEndpoint, AgentRequest, AgentResponse, AgentTransport, Method, TransportError,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const TOKEN: &str = "agent-token-0123456789";

/// How a fake agent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Connection refused: nothing reaches it.
    Down,
    /// Takes a change, then the connection breaks (it may have acted); health still answers.
    Breaks,
    /// Answers every change with `422 config_rejected`.
    Rejects,
    /// Never answers.
    Hangs,
}

#[derive(Debug)]
struct FakeAgent {
    token: String,
    version: String,
    mode: Mode,
    accounts: BTreeMap<String, AccountPut>,
    /// Installed certificates by kind: (names, chain).
    certs: BTreeMap<String, (Vec<String>, String)>,
    /// Served ACME answers by token, and every token ever served.
    challenges: BTreeMap<String, String>,
    served: Vec<String>,
}

/// Agents by URL, answering the agent API from memory.
#[derive(Debug, Default)]
struct Fakes {
    agents: Mutex<HashMap<String, FakeAgent>>,
}

impl Fakes {
    fn add(&self, url: &str, version: &str) {
        self.agents.lock().unwrap().insert(
            url.to_owned(),
            FakeAgent {
                token: TOKEN.to_owned(),
                version: version.to_owned(),
                mode: Mode::Up,
                accounts: BTreeMap::new(),
                certs: BTreeMap::new(),
                challenges: BTreeMap::new(),
                served: Vec::new(),
            },
        );
    }

    fn set(&self, url: &str, f: impl FnOnce(&mut FakeAgent)) {
        f(self.agents.lock().unwrap().get_mut(url).unwrap());
    }

    fn cert(&self, url: &str, kind: &str) -> Option<(Vec<String>, String)> {
        self.agents.lock().unwrap()[url].certs.get(kind).cloned()
    }

    fn accounts(&self, url: &str) -> Vec<String> {
        self.agents.lock().unwrap()[url]
            .accounts
            .keys()
            .cloned()
            .collect()
    }
}

fn answer(status: u16, body: Value) -> Result<AgentResponse, TransportError> {
    Ok(AgentResponse {
        status,
        body: body.to_string().into_bytes(),
    })
}

#[async_trait]
impl AgentTransport for Fakes {
    async fn send(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError> {
        let mode = match self.agents.lock().unwrap().get(&agent.url.to_string()) {
            None => return Err(TransportError::Unreachable("no such host".into())),
            Some(a) => a.mode,
        };
        match mode {
            Mode::Down => return Err(TransportError::Unreachable("connection refused".into())),
            Mode::Hangs => std::future::pending::<()>().await,
            _ => {}
        }
        let mut agents = self.agents.lock().unwrap();
        let fake = agents.get_mut(&agent.url.to_string()).unwrap();
        if !agent.token.verify(fake.token.as_bytes()) {
            return answer(
                401,
                json!({"error": {"code": "unauthorized", "message": "missing or wrong token", "field": null}}),
            );
        }
        let changes = request.method != Method::Get;
        if changes && fake.mode == Mode::Rejects {
            return answer(
                422,
                json!({"error": {"code": "config_rejected", "message": "nginx: [emerg] bad", "field": null}}),
            );
        }
        if let Some(kind) = request.path.strip_prefix("/v1/certificates/") {
            let put: enconf_core::protocol::agent::CertificatePut =
                serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
            fake.certs
                .insert(kind.to_owned(), (put.names, put.certificate_pem));
            return answer(200, json!({"changed": true}));
        }
        if let Some(token) = request.path.strip_prefix("/v1/acme-challenge/") {
            if request.method == Method::Put {
                let put: enconf_core::protocol::agent::ChallengePut =
                    serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
                fake.challenges
                    .insert(token.to_owned(), put.key_authorization);
                fake.served.push(token.to_owned());
            } else {
                fake.challenges.remove(token);
            }
            return answer(200, json!({"changed": true}));
        }
        // `?data=remove` says what becomes of the data; the fake keeps none.
        let path = request.path.split('?').next().unwrap_or_default();
        let user = path.strip_prefix("/v1/accounts/").map(str::to_owned);
        let reply = match (request.method, request.path.as_str(), user) {
            (Method::Get, "/v1/health", _) => {
                json!({"version": fake.version, "hostname": "fake", "uptime_s": 1, "php_versions": ["8.2", "8.3"]})
            }
            (Method::Get, "/v1/accounts", _) => {
                let list: Vec<Value> = fake
                    .accounts
                    .iter()
                    .map(|(name, put)| {
                        json!({"username": name, "domains": put.domains, "php_version": put.php_version.clone().unwrap_or("8.2".into()), "php": put.php})
                    })
                    .collect();
                json!({"accounts": list})
            }
            (Method::Put, _, Some(user)) => {
                let put: AccountPut =
                    serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
                let changed = fake.accounts.insert(user, put.clone()) != Some(put);
                json!({"changed": changed})
            }
            (Method::Delete, _, Some(user)) => {
                json!({"changed": fake.accounts.remove(&user).is_some()})
            }
            _ => {
                return answer(
                    404,
                    json!({"error": {"code": "not_found", "message": "no such path", "field": null}}),
                );
            }
        };
        if changes && fake.mode == Mode::Breaks {
            return Err(TransportError::Interrupted("connection reset".into()));
        }
        answer(200, reply)
    }
}

struct Harness {
    app: Router,
    fakes: Arc<Fakes>,
    controller: Controller,
}

fn harness() -> Harness {
    let fakes = Arc::new(Fakes::default());
    let config = ControllerConfig {
        newest_agent: semver::Version::new(0, 2, 0),
        health_timeout: Duration::from_secs(2),
        health_concurrency: 8,
        ..ControllerConfig::default()
    };
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        Arc::clone(&fakes) as Arc<dyn AgentTransport>,
        config,
    );
    let app = router(
        controller.clone(),
        ApiConfig {
            admin_token: enconf_core::domain::AdminToken::parse(ADMIN).unwrap(),
            max_body_bytes: 4096,
            sign_in_limit: Default::default(),
        },
    );
    Harness {
        app,
        fakes,
        controller,
    }
}

impl Harness {
    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert_ne!(status, 500, "no 500 anywhere: {method} {path}: {text}");
        assert!(!text.contains(TOKEN), "an agent token in an answer: {text}");
        (status, text)
    }

    /// `GET path`: the status, the items and the `Link` header's next path, if any.
    async fn page(&self, path: &str) -> (u16, Value, Option<String>) {
        let req = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let next = link.map(|l| {
            let (target, rel) = l.split_once(">; ").unwrap();
            assert_eq!(rel, "rel=\"next\"");
            target.trim_start_matches('<').to_owned()
        });
        (status, serde_json::from_slice(&bytes).unwrap(), next)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self
            .raw(method, path, Some(ADMIN), body.map(|b| b.to_string()))
            .await;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, json)
    }

    async fn add_server(&self, name: &str, roles: &[&str]) -> u64 {
        let url = format!("http://{name}.example.com:50000");
        if !self.fakes.agents.lock().unwrap().contains_key(&url) {
            self.fakes.add(&url, "0.1.0");
        }
        let (status, body) = self
            .call("POST", "/api/v1/servers", Some(server_json(name, roles)))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_u64().unwrap()
    }
}

fn server_json(name: &str, roles: &[&str]) -> Value {
    json!({
        "name": name,
        "hostname": format!("{name}.example.com"),
        "agent_url": format!("http://{name}.example.com:50000"),
        "agent_token": TOKEN,
        "roles": roles,
    })
}

fn url(name: &str) -> String {
    format!("http://{name}.example.com:50000")
}

/// Asserts an error answer: status, code and field.
fn is_error(answer: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = answer;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"].as_str(), field, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn auth_is_required_everywhere_but_the_openapi_document() {
    let h = harness();
    let paths = [
        ("GET", "/api/v1/servers"),
        ("POST", "/api/v1/servers"),
        ("GET", "/api/v1/servers/1"),
        ("PATCH", "/api/v1/servers/1"),
        ("DELETE", "/api/v1/servers/1"),
        ("POST", "/api/v1/servers/1/check"),
        ("GET", "/api/v1/servers/1/install-script"),
        ("POST", "/api/v1/servers/1/reconcile"),
        ("POST", "/api/v1/servers/1/update"),
        ("POST", "/api/v1/servers/1/rotate-token"),
        ("GET", "/api/v1/accounts"),
        ("POST", "/api/v1/accounts"),
        ("GET", "/api/v1/accounts/1"),
        ("DELETE", "/api/v1/accounts/1"),
        ("POST", "/api/v1/accounts/1/migrate"),
    ];
    for (method, path) in paths {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, text) = h.raw(method, path, token, None).await;
            assert_eq!(status, 401, "{method} {path} {token:?}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // Basic auth with the right secret is not a bearer token.
    let req = Request::builder()
        .uri("/api/v1/servers")
        .header("authorization", format!("Basic {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.app.clone().oneshot(req).await.unwrap().status(), 401);

    for (method, path) in [
        ("GET", "/api/v1/servers/1/ssl/panel"),
        ("PUT", "/api/v1/servers/1/ssl/mail"),
    ] {
        assert_eq!(
            h.raw(method, path, None, None).await.0,
            401,
            "{method} {path}"
        );
    }

    // The web page's files need no token.
    for (path, needle) in [
        ("/", "Settings"),
        ("/app.js", "sessionStorage"),
        ("/style.css", ".dot"),
    ] {
        let (status, text) = h.raw("GET", path, None, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(text.contains(needle), "{path}");
    }
    let req = Request::builder().uri("/").body(Body::empty()).unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    let (status, text) = h.raw("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in paths {
        let path = path.replace("/1", "/{id}");
        assert!(
            doc["paths"][&path][method.to_lowercase()].is_object(),
            "{method} {path} is documented"
        );
    }
    for method in ["get", "put"] {
        assert!(doc["paths"]["/api/v1/servers/{id}/ssl/{kind}"][method].is_object());
    }
    for schema in [
        "SslInput",
        "SslState",
        "ServerInput",
        "ServerView",
        "ServerPatch",
        "AccountInput",
        "AccountView",
        "ErrorBody",
        "MigrateInput",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let server = &doc["components"]["schemas"]["ServerView"]["properties"];
    for field in [
        "id",
        "name",
        "hostname",
        "agent_url",
        "roles",
        "reachable",
        "last_seen",
        "update_available",
        "accounts",
    ] {
        assert!(server[field].is_object(), "ServerView.{field}");
    }
    assert!(
        server["agent_token"].is_null(),
        "no token in the Server schema"
    );
}

#[tokio::test]
async fn malformed_requests_are_400_413_404() {
    let h = harness();
    let (status, _) = h
        .raw(
            "POST",
            "/api/v1/servers",
            Some(ADMIN),
            Some("{not json".into()),
        )
        .await;
    assert_eq!(status, 400);
    let (status, text) = h
        .raw(
            "POST",
            "/api/v1/servers",
            Some(ADMIN),
            Some(r#"{"nmae": "x"}"#.into()),
        )
        .await;
    assert_eq!(status, 400, "unknown field: {text}");
    let (status, _) = h
        .raw(
            "POST",
            "/api/v1/servers",
            Some(ADMIN),
            Some(r#"{"name": 5}"#.into()),
        )
        .await;
    assert_eq!(status, 400, "wrong type");
    let (status, _) = h
        .raw("POST", "/api/v1/accounts", Some(ADMIN), Some("[]".into()))
        .await;
    assert_eq!(status, 400);
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(5000));
    let (status, text) = h
        .raw("POST", "/api/v1/servers", Some(ADMIN), Some(big))
        .await;
    assert_eq!(status, 413, "{text}");
    is_error(
        &h.call("GET", "/api/v1/servers/7", None).await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("GET", "/api/v1/servers/abc", None).await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("GET", "/api/v1/servers/-1", None).await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("GET", "/api/v1/accounts/99999999999999999999999", None)
            .await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("GET", "/api/v1/nothing", None).await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("PATCH", "/api/v1/servers/7", Some(json!({}))).await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("DELETE", "/api/v1/accounts/7", None).await,
        404,
        "not_found",
        None,
    );
    // A method the path does not have: 405 with the methods it has.
    for (method, path, allow) in [
        ("PUT", "/api/v1/servers", "GET,HEAD,POST"),
        ("PATCH", "/api/v1/accounts", "GET,HEAD,POST"),
        ("PUT", "/api/v1/servers/1", "GET,HEAD,PATCH,DELETE"),
        ("DELETE", "/api/v1/servers/1/check", "POST"),
        ("POST", "/api/v1/openapi.json", "GET,HEAD"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap();
        let resp = h.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn every_server_field_is_validated_with_its_name() {
    let h = harness();
    h.fakes.add(&url("web1"), "0.1.0");
    let cases: &[(&str, Value, &str)] = &[
        ("name", Value::Null, "name"),
        ("name", json!(""), "name"),
        ("name", json!("a\nb"), "name"),
        ("name", json!("x".repeat(201)), "name"),
        ("hostname", Value::Null, "hostname"),
        ("hostname", json!("web1.example.com;"), "hostname"),
        ("hostname", json!("web1.example.com\nlisten 80"), "hostname"),
        ("hostname", json!("web1"), "hostname"),
        ("hostname", json!("-a.example.com"), "hostname"),
        (
            "hostname",
            json!(format!("{}.com", "a".repeat(64))),
            "hostname",
        ),
        ("hostname", json!("we{b}.example.com"), "hostname"),
        ("hostname", json!("we\"b.example.com"), "hostname"),
        ("mail_hostname", json!("mail"), "mail_hostname"),
        ("mail_hostname", json!("mail example.com"), "mail_hostname"),
        ("agent_url", Value::Null, "agent_url"),
        (
            "agent_url",
            json!("ftp://web1.example.com:50000"),
            "agent_url",
        ),
        ("agent_url", json!("http://web1.example.com"), "agent_url"),
        (
            "agent_url",
            json!("http://web1.example.com:50000/x"),
            "agent_url",
        ),
        (
            "agent_url",
            json!("http://user@web1.example.com:50000"),
            "agent_url",
        ),
        ("agent_url", json!("http://web1.example.com:0"), "agent_url"),
        ("agent_token", Value::Null, "agent_token"),
        ("agent_token", json!("short"), "agent_token"),
        (
            "agent_token",
            json!("has a space in it 0123"),
            "agent_token",
        ),
        (
            "agent_token",
            json!("line\nbreak-0123456789"),
            "agent_token",
        ),
        ("roles", Value::Null, "roles"),
        ("roles", json!([]), "roles"),
        ("roles", json!(["web", "ftp"]), "roles[1]"),
        ("roles", json!(["web", "web"]), "roles[1]"),
        ("max_accounts", json!(0), "max_accounts"),
        ("max_accounts", json!(-1), "max_accounts"),
        ("panel_url", json!("panel.example.com"), "panel_url"),
        (
            "panel_url",
            json!("https://panel.example.com/?q"),
            "panel_url",
        ),
        ("phpmyadmin_path", json!("phpmyadmin"), "phpmyadmin_path"),
        ("phpmyadmin_path", json!("/a/../b"), "phpmyadmin_path"),
        ("roundcube_path", json!("/web mail"), "roundcube_path"),
        ("roundcube_path", json!("/web;mail"), "roundcube_path"),
    ];
    for (key, value, field) in cases {
        let mut body = server_json("web1", &["web"]);
        body[*key] = value.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(*key);
        }
        let answer = h.call("POST", "/api/v1/servers", Some(body)).await;
        is_error(&answer, 422, "invalid", Some(field));
    }
    let (_, servers) = h.call("GET", "/api/v1/servers", None).await;
    assert_eq!(servers, json!([]), "nothing recorded");

    // Uniqueness: 409 naming the field.
    h.add_server("web1", &["web"]).await;
    let mut same_name = server_json("web2", &["web"]);
    same_name["name"] = json!("WEB1");
    is_error(
        &h.call("POST", "/api/v1/servers", Some(same_name)).await,
        409,
        "duplicate",
        Some("name"),
    );
    let mut same_host = server_json("web2", &["web"]);
    same_host["hostname"] = json!("web1.example.com");
    is_error(
        &h.call("POST", "/api/v1/servers", Some(same_host)).await,
        409,
        "duplicate",
        Some("hostname"),
    );
}

#[tokio::test]
async fn servers_are_added_patched_checked_and_deleted() {
    let h = harness();
    let id = h.add_server("web1", &["web", "db"]).await;
    let (status, server) = h.call("GET", &format!("/api/v1/servers/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(server["reachable"], true);
    assert_eq!(server["agent_version"], "0.1.0");
    assert_eq!(
        server["update_available"], true,
        "0.1.0 is older than the newest, 0.2.0"
    );
    assert_eq!(server["active"], true);
    assert_eq!(server["accounts"], 0);
    assert_eq!(server["roles"], json!(["web", "db"]));

    // PATCH changes only what it names; null clears an optional field.
    let path = format!("/api/v1/servers/{id}");
    let (status, s) = h
        .call(
            "PATCH",
            &path,
            Some(json!({"mail_hostname": "mx.example.com", "max_accounts": 3})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["mail_hostname"].as_str(), s["max_accounts"].as_u64()),
        (Some("mx.example.com"), Some(3))
    );
    assert_eq!(s["name"], "web1");
    let (_, s) = h
        .call("PATCH", &path, Some(json!({"mail_hostname": null})))
        .await;
    assert!(s["mail_hostname"].is_null());
    assert_eq!(s["max_accounts"], 3);
    is_error(
        &h.call("PATCH", &path, Some(json!({"name": null}))).await,
        422,
        "invalid",
        Some("name"),
    );
    is_error(
        &h.call("PATCH", &path, Some(json!({"roles": ["web", "smtp"]})))
            .await,
        422,
        "invalid",
        Some("roles[1]"),
    );
    is_error(
        &h.call("PATCH", &path, Some(json!({"agent_token": "x"})))
            .await,
        422,
        "invalid",
        Some("agent_token"),
    );

    // A new token takes effect on the next call: the agent refuses the new one until it has it.
    let new_token = "agent-token-9876543210";
    let (_, s) = h
        .call("PATCH", &path, Some(json!({"agent_token": new_token})))
        .await;
    assert_eq!(
        s["reachable"], false,
        "checked at once with the new token: {s}"
    );
    assert!(s["last_error"].as_str().unwrap().contains("401"), "{s}");
    h.fakes
        .set(&url("web1"), |a| a.token = new_token.to_owned());
    let (_, s) = h.call("POST", &format!("{path}/check"), None).await;
    assert_eq!(s["reachable"], true, "{s}");
    // A new URL too.
    h.fakes.add("http://web1b.example.com:50001", "0.2.0");
    h.fakes.set("http://web1b.example.com:50001", |a| {
        a.token = new_token.to_owned()
    });
    let (_, s) = h
        .call(
            "PATCH",
            &path,
            Some(json!({"agent_url": "http://web1b.example.com:50001"})),
        )
        .await;
    assert_eq!(
        (s["reachable"].as_bool(), s["agent_version"].as_str()),
        (Some(true), Some("0.2.0"))
    );
    assert_eq!(s["update_available"], false);

    // Check now sees an agent going down and keeps what was known.
    h.fakes
        .set("http://web1b.example.com:50001", |a| a.mode = Mode::Down);
    let (_, s) = h.call("POST", &format!("{path}/check"), None).await;
    assert_eq!(s["reachable"], false);
    assert_eq!(s["agent_version"], "0.2.0");
    assert!(s["last_seen"].is_string());

    let (status, _) = h.call("DELETE", &path, None).await;
    assert_eq!(status, 204);
    is_error(&h.call("GET", &path, None).await, 404, "not_found", None);
}

#[tokio::test]
async fn accounts_are_placed_provisioned_and_validated() {
    let h = harness();
    let web = h.add_server("web1", &["web"]).await;
    let mail = h.add_server("mail1", &["mail", "dns"]).await;

    let cases: &[(&str, Value, &str)] = &[
        ("username", Value::Null, "username"),
        ("username", json!("root"), "username"),
        ("username", json!("Shop"), "username"),
        ("username", json!("shop;rm"), "username"),
        ("username", json!("a".repeat(33)), "username"),
        ("domains", Value::Null, "domains"),
        ("domains", json!([]), "domains"),
        (
            "domains",
            json!(["ok.example", "bad;name.example"]),
            "domains[1]",
        ),
        ("domains", json!(["a.example\n    listen 81"]), "domains[0]"),
        ("domains", json!(["a.example}"]), "domains[0]"),
        ("domains", json!(["a.example", "A.example"]), "domains[1]"),
        ("domains", json!(["localhost"]), "domains[0]"),
        ("php_version", json!("8"), "php_version"),
        ("php_version", json!("8.2;"), "php_version"),
        ("server_id", json!(999), "server_id"),
    ];
    for (key, value, field) in cases {
        let mut body = json!({"username": "shop", "domains": ["shop.example"]});
        body[*key] = value.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(*key);
        }
        let answer = h.call("POST", "/api/v1/accounts", Some(body)).await;
        is_error(&answer, 422, "invalid", Some(field));
    }
    assert_eq!(h.call("GET", "/api/v1/accounts", None).await.1, json!([]));

    // Placed on the only server with the web role, and provisioned there.
    let (status, a) = h
        .call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "shop", "domains": ["shop.example"], "php_version": "8.2"})),
        )
        .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(
        (a["server_id"].as_u64(), a["status"].as_str()),
        (Some(web), Some("active"))
    );
    assert_eq!(h.fakes.accounts(&url("web1")), ["shop"]);
    let id = a["id"].as_u64().unwrap();
    assert_eq!(
        h.call("GET", &format!("/api/v1/accounts/{id}"), None)
            .await
            .1,
        a
    );

    // Naming a server without the role; duplicates.
    is_error(
        &h.call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "blog", "domains": ["blog.example"], "server_id": mail})),
        )
        .await,
        422,
        "invalid",
        Some("server_id"),
    );
    is_error(
        &h.call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "shop", "domains": ["x.example"]})),
        )
        .await,
        409,
        "duplicate",
        Some("username"),
    );
    is_error(
        &h.call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "blog", "domains": ["x.example", "shop.example"]})),
        )
        .await,
        409,
        "duplicate",
        Some("domains[1]"),
    );

    // An inactive server takes no new accounts.
    h.call(
        "PATCH",
        &format!("/api/v1/servers/{web}"),
        Some(json!({"active": false})),
    )
    .await;
    is_error(
        &h.call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "blog", "domains": ["blog.example"]})),
        )
        .await,
        409,
        "no_server_available",
        None,
    );
    h.call(
        "PATCH",
        &format!("/api/v1/servers/{web}"),
        Some(json!({"active": true})),
    )
    .await;

    // Dropping the web role under an account is refused.
    is_error(
        &h.call(
            "PATCH",
            &format!("/api/v1/servers/{web}"),
            Some(json!({"roles": ["db"]})),
        )
        .await,
        409,
        "roles_in_use",
        Some("roles"),
    );

    // Delete with accounts: 409 naming how many; after the account, 204.
    let answer = h
        .call("DELETE", &format!("/api/v1/servers/{web}"), None)
        .await;
    is_error(&answer, 409, "server_has_accounts", None);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 account(s) (shop: web)")
    );
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/accounts/{id}"), None)
            .await
            .0,
        204
    );
    assert!(h.fakes.accounts(&url("web1")).is_empty());
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/servers/{web}"), None)
            .await
            .0,
        204
    );
}

#[tokio::test]
async fn offline_and_failing_agents_never_leave_an_account_recorded_as_done() {
    let h = harness();
    let web = h.add_server("web1", &["web"]).await;
    let new = |user: &str| json!({"username": user, "domains": [format!("{user}.example")], "server_id": web});

    // Known offline (after the health rounds that say so): refused before anything is
    // recorded.
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Down);
    for _ in 0..enconf_core::domain::OFFLINE_AFTER {
        h.controller.check_all().await;
    }
    is_error(
        &h.call("POST", "/api/v1/accounts", Some(new("a1"))).await,
        503,
        "agent_offline",
        Some("server_id"),
    );
    is_error(
        &h.call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "a1", "domains": ["a1.example"]})),
        )
        .await,
        503,
        "agent_offline",
        None,
    );
    assert_eq!(h.call("GET", "/api/v1/accounts", None).await.1, json!([]));

    // Down since the last check: the request never reached it, so the record is removed
    // again and the server is marked offline at once.
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Up);
    h.controller.check_all().await;
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Down);
    is_error(
        &h.call("POST", "/api/v1/accounts", Some(new("a1"))).await,
        503,
        "agent_offline",
        None,
    );
    assert_eq!(h.call("GET", "/api/v1/accounts", None).await.1, json!([]));
    assert_eq!(
        h.call("GET", &format!("/api/v1/servers/{web}"), None)
            .await
            .1["reachable"],
        false
    );

    // The connection breaks after the agent took the request: the account is `failed`.
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Breaks);
    h.controller.check_all().await;
    is_error(
        &h.call("POST", "/api/v1/accounts", Some(new("a2"))).await,
        503,
        "agent_offline",
        None,
    );
    let (_, list) = h.call("GET", "/api/v1/accounts", None).await;
    assert_eq!(
        (list[0]["username"].as_str(), list[0]["status"].as_str()),
        (Some("a2"), Some("failed"))
    );

    // The agent refuses the configuration: 502 with its message, account `failed`.
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Rejects);
    h.controller.check_all().await;
    let answer = h.call("POST", "/api/v1/accounts", Some(new("a3"))).await;
    is_error(&answer, 502, "agent_error", None);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nginx: [emerg] bad")
    );
    let (_, a3) = h.call("GET", "/api/v1/accounts/3", None).await;
    assert_eq!(a3["status"], "failed");
    // Its delete is refused the same way and the record stays.
    is_error(
        &h.call("DELETE", "/api/v1/accounts/3", None).await,
        502,
        "agent_error",
        None,
    );
    assert_eq!(h.call("GET", "/api/v1/accounts/3", None).await.0, 200);

    // Reconciliation puts statuses right from what the agent has.
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Up);
    let (status, report) = h
        .call("POST", &format!("/api/v1/servers/{web}/reconcile"), None)
        .await;
    assert_eq!(status, 200, "{report}");
    // a2 reached the agent before the break, and so did the undo that followed (its answer
    // broke too, so the record stayed, failed); a3 was refused.
    assert_eq!(
        report,
        json!({"in_sync": [], "missing_on_agent": ["a2", "a3"], "differing": [], "unknown_to_controller": [], "repaired": []})
    );
    assert_eq!(
        h.call("GET", "/api/v1/accounts/2", None).await.1["status"],
        "failed"
    );
    assert_eq!(
        h.call("GET", "/api/v1/accounts/3", None).await.1["status"],
        "failed"
    );
    // A failed account can be deleted once the agent works.
    assert_eq!(h.call("DELETE", "/api/v1/accounts/3", None).await.0, 204);
}

#[tokio::test]
async fn accounts_migrate_between_servers() {
    let h = harness();
    let a = h.add_server("web1", &["web"]).await;
    let b = h.add_server("web2", &["web"]).await;
    let dns = h.add_server("dns1", &["dns"]).await;
    let (_, acc) = h
        .call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "shop", "domains": ["shop.example"], "server_id": a})),
        )
        .await;
    let path = format!("/api/v1/accounts/{}/migrate", acc["id"]);

    is_error(
        &h.call("POST", &path, Some(json!({}))).await,
        422,
        "invalid",
        Some("target_server_id"),
    );
    is_error(
        &h.call("POST", &path, Some(json!({"target_server_id": 99})))
            .await,
        422,
        "invalid",
        Some("target_server_id"),
    );
    is_error(
        &h.call("POST", &path, Some(json!({"target_server_id": dns})))
            .await,
        422,
        "invalid",
        Some("target_server_id"),
    );
    // Per role: only web, mail and db move, each to a server that exists and has the role,
    // and only a role the account uses.
    for (body, field) in [
        (json!({"targets": {"dns": dns}}), "targets.dns"),
        (json!({"targets": {"web": dns}}), "targets.web"),
        (json!({"targets": {"web": 99}}), "targets.web"),
        (json!({"targets": {"mail": b}}), "targets.mail"),
        (json!({"targets": {"smtp": b}}), "targets.smtp"),
        (
            json!({"target_server_id": b, "targets": {"web": b}}),
            "targets",
        ),
    ] {
        is_error(
            &h.call("POST", &path, Some(body)).await,
            422,
            "invalid",
            Some(field),
        );
    }
    // Mailboxes move only through the account's backups: without the backup role, refused.
    let web3 = h.add_server("web3", &["web"]).await;
    let mail1 = h.add_server("mail1", &["mail"]).await;
    let mail2 = h.add_server("mail2", &["mail"]).await;
    let (status, post) = h
        .call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "post", "domains": ["post.example"],
                "roles": ["web", "mail"], "server_id": web3, "servers": {"mail": mail1}})),
        )
        .await;
    assert_eq!(status, 201, "{post}");
    let (status, body) = h
        .call(
            "POST",
            &format!("/api/v1/accounts/{}/migrate", post["id"]),
            Some(json!({"targets": {"mail": mail2}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("targets.mail")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("backup role"),
        "{body}"
    );

    // The move is a job; this waits for its end.
    let finished = |job: serde_json::Value| {
        let h = &h;
        async move {
            assert_eq!(job["kind"], "migrate", "{job}");
            let path = format!("/api/v1/jobs/{}", job["id"]);
            loop {
                let (status, job) = h.call("GET", &path, None).await;
                assert_eq!(status, 200);
                if job["status"] == "succeeded" || job["status"] == "failed" {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // The target refuses: the job fails saying so, and nothing changes anywhere.
    h.fakes.set(&url("web2"), |x| x.mode = Mode::Rejects);
    let (status, job) = h
        .call("POST", &path, Some(json!({"target_server_id": b})))
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (job["status"].as_str(), job["server_id"].as_u64()),
        (Some("queued"), Some(b))
    );
    let job = finished(job).await;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap().contains("server 2"), "{job}");
    assert_eq!(h.fakes.accounts(&url("web1")), ["shop"]);
    assert!(
        h.fakes.accounts(&url("web2")).is_empty(),
        "{:?}",
        h.fakes.accounts(&url("web2"))
    );
    assert_eq!(
        h.call("GET", &format!("/api/v1/accounts/{}", acc["id"]), None)
            .await
            .1,
        acc
    );

    h.fakes.set(&url("web2"), |x| x.mode = Mode::Up);
    let (status, job) = h
        .call("POST", &path, Some(json!({"target_server_id": b})))
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(finished(job).await["status"], "succeeded");
    let moved = h
        .call("GET", &format!("/api/v1/accounts/{}", acc["id"]), None)
        .await
        .1;
    assert_eq!(
        (moved["server_id"].as_u64(), moved["status"].as_str()),
        (Some(b), Some("active"))
    );
    assert!(h.fakes.accounts(&url("web1")).is_empty());
    assert_eq!(h.fakes.accounts(&url("web2")), ["shop"]);
    assert_eq!(
        h.call("GET", &format!("/api/v1/servers/{a}"), None).await.1["accounts"],
        0
    );
    assert_eq!(
        h.call("GET", &format!("/api/v1/servers/{b}"), None).await.1["accounts"],
        1
    );
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/servers/{a}"), None)
            .await
            .0,
        204
    );

    // The jobs list is paged newest first: the move that succeeded, then the one that failed.
    let (status, first, next) = h.page("/api/v1/jobs?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(first[0]["status"], "succeeded", "{first}");
    let next = next.expect("a next page");
    assert_eq!(
        next,
        format!("/api/v1/jobs?limit=1&after={}", first[0]["id"])
    );
    let (_, second, next) = h.page(&next).await;
    assert_eq!(second[0]["status"], "failed", "{second}");
    assert!(second[0]["id"].as_u64() < first[0]["id"].as_u64());
    assert_eq!(next, None, "the oldest job ends the list");
    // One account's jobs: the same two; another account's: none.
    let (_, mine, _) = h
        .page(&format!("/api/v1/jobs?account_id={}", acc["id"]))
        .await;
    assert_eq!(mine, json!([first[0], second[0]]));
    let (_, theirs, _) = h
        .page(&format!("/api/v1/jobs?account_id={}", post["id"]))
        .await;
    assert_eq!(theirs, json!([]));
    for (query, field) in [
        ("account_id=0", "account_id"),
        ("account_id=x", "account_id"),
        ("limit=0", "limit"),
        ("after=x", "after"),
        ("role=web", "role"),
        ("sort=id", "sort"),
    ] {
        is_error(
            &h.call("GET", &format!("/api/v1/jobs?{query}"), None).await,
            422,
            "invalid",
            Some(field),
        );
    }
}

#[tokio::test]
async fn a_hanging_agent_does_not_hold_up_the_others() {
    let h = harness();
    let slow = h.add_server("slow1", &["web"]).await;
    let fast = h.add_server("fast1", &["web"]).await;
    h.fakes.set(&url("slow1"), |a| a.mode = Mode::Hangs);
    h.fakes.set(&url("fast1"), |a| a.version = "0.2.0".into());

    let controller = h.controller.clone();
    let round = tokio::spawn(async move { controller.check_all().await });
    // The fast agent's new version is recorded while the slow check is still waiting.
    loop {
        let (_, s) = h
            .call("GET", &format!("/api/v1/servers/{fast}"), None)
            .await;
        if s["agent_version"] == "0.2.0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !round.is_finished(),
        "the slow check is still waiting for its timeout"
    );
    // One missed check says why, but does not yet make the server offline.
    let round = round.await.unwrap();
    assert_eq!((round.reachable, round.unreachable), (2, 0));
    let (_, s) = h
        .call("GET", &format!("/api/v1/servers/{slow}"), None)
        .await;
    assert_eq!(s["reachable"], true);
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within 2 s"),
        "{s}"
    );
    // Three in a row do.
    for _ in 1..enconf_core::domain::OFFLINE_AFTER {
        h.controller.check_all().await;
    }
    let (_, s) = h
        .call("GET", &format!("/api/v1/servers/{slow}"), None)
        .await;
    assert_eq!(s["reachable"], false, "{s}");
    // An answer clears the count.
    h.fakes.set(&url("slow1"), |a| a.mode = Mode::Up);
    h.controller.check_all().await;
    let (_, s) = h
        .call("GET", &format!("/api/v1/servers/{slow}"), None)
        .await;
    assert_eq!(
        (s["reachable"].as_bool(), s["last_error"].as_str()),
        (Some(true), None)
    );
}

#[tokio::test]
async fn the_install_script_is_served_as_a_shell_script() {
    let h = harness();
    let id = h.add_server("web1", &["web"]).await;
    let req = Request::builder()
        .uri(format!("/api/v1/servers/{id}/install-script"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/x-shellscript")
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.starts_with("#!/bin/sh\n"));
    assert!(
        text.contains(&format!("'AGENT_TOKEN='\\''{TOKEN}'\\'''")),
        "{text}"
    );
    assert!(text.contains("'AGENT_PORT=50000'"));
    assert!(text.contains("systemctl enable --now netcell-webpanel-agent"));
}

/// An ACME stand-in: answers a challenge through the agent like the real one, then makes a
/// certificate valid for 90 days from the request's time; or fails when told to.
#[derive(Debug, Default)]
struct FakeAcme {
    fail: std::sync::atomic::AtomicBool,
    issued: std::sync::atomic::AtomicUsize,
    /// Held by a test to keep orders open after their challenge.
    gate: tokio::sync::Mutex<()>,
    /// Orders that returned, issued or not.
    returned: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl enconf_core::ssl::issue::Issuer for FakeAcme {
    fn mode(&self) -> enconf_core::protocol::SslMode {
        enconf_core::protocol::SslMode::Letsencrypt
    }

    async fn issue(
        &self,
        request: enconf_core::ssl::issue::IssueRequest<'_>,
    ) -> Result<enconf_core::ssl::cert::CertBundle, enconf_core::ssl::issue::IssueError> {
        use std::sync::atomic::Ordering;
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let token = format!("token-{n}");
        request
            .challenges
            .publish(request.names, &token, &format!("{token}.thumbprint"))
            .await
            .map_err(enconf_core::ssl::issue::IssueError::Challenge)?;
        request.challenges.withdraw(&token).await;
        drop(self.gate.lock().await);
        self.returned.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(enconf_core::ssl::issue::IssueError::Acme(
                "urn:ietf:params:acme:error:connection: refused".into(),
            ));
        }
        Ok(enconf_core::ssl::cert::self_signed(request.names, request.now).unwrap())
    }
}

type SharedClock = Arc<Mutex<time::OffsetDateTime>>;

fn ssl_harness(acme: Option<Arc<FakeAcme>>) -> (Harness, SharedClock) {
    let mut h = harness();
    let clock: SharedClock = Arc::new(Mutex::new(time::macros::datetime!(2026-11-25 12:00 UTC)));
    let read = Arc::clone(&clock);
    let mut controller = h
        .controller
        .clone()
        .with_clock(Arc::new(move || *read.lock().unwrap()));
    if let Some(acme) = acme {
        controller = controller.with_acme(acme);
    }
    h.controller = controller.clone();
    h.app = router(
        controller,
        ApiConfig {
            admin_token: enconf_core::domain::AdminToken::parse(ADMIN).unwrap(),
            max_body_bytes: 1 << 16,
            sign_in_limit: Default::default(),
        },
    );
    (h, clock)
}

#[tokio::test]
async fn selfsigned_and_custom_certificates_are_checked_then_installed() {
    let (h, _clock) = ssl_harness(None);
    let id = h.add_server("web1", &["web"]).await;
    let panel = format!("/api/v1/servers/{id}/ssl/panel");

    let (status, state) = h.call("GET", &panel, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (state["mode"].clone(), state["status"].as_str()),
        (Value::Null, Some("not_configured"))
    );

    let (status, state) = h
        .call("PUT", &panel, Some(json!({"mode": "selfsigned"})))
        .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["mode"], "selfsigned");
    assert_eq!(state["status"], "active");
    assert_eq!(state["testing_only"], true);
    assert_eq!(state["subject_names"], json!(["web1.example.com"]));
    assert!(
        state["not_after"].is_string()
            && state["issuer"].as_str().unwrap().contains("testing only")
    );
    let (names, chain) = h.fakes.cert(&url("web1"), "panel").unwrap();
    assert_eq!(names, ["web1.example.com"]);
    assert_eq!(h.call("GET", &panel, None).await.1, state);

    // A custom upload: checked against the hostname at the controller's time.
    let now = time::macros::datetime!(2026-11-25 12:00 UTC);
    let host: enconf_core::domain::DomainName = "web1.example.com".parse().unwrap();
    let good = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&host), now).unwrap();
    let other: enconf_core::domain::DomainName = "other.example.com".parse().unwrap();
    let wrong_name = enconf_core::ssl::cert::self_signed(&[other], now).unwrap();
    let expired = enconf_core::ssl::cert::self_signed(
        std::slice::from_ref(&host),
        now - time::Duration::days(200),
    )
    .unwrap();
    let future = enconf_core::ssl::cert::self_signed(
        std::slice::from_ref(&host),
        now + time::Duration::days(10),
    )
    .unwrap();
    let cases = [
        (
            json!({"mode": "custom", "certificate_pem": good.chain_pem}),
            "private_key_pem",
        ),
        (
            json!({"mode": "custom", "private_key_pem": good.key_pem}),
            "certificate_pem",
        ),
        (
            json!({"mode": "custom", "certificate_pem": good.chain_pem, "private_key_pem": wrong_name.key_pem}),
            "private_key_pem",
        ),
        (
            json!({"mode": "custom", "certificate_pem": wrong_name.chain_pem, "private_key_pem": wrong_name.key_pem}),
            "certificate_pem",
        ),
        (
            json!({"mode": "custom", "certificate_pem": "garbage", "private_key_pem": good.key_pem}),
            "certificate_pem",
        ),
        (
            json!({"mode": "custom", "certificate_pem": expired.chain_pem, "private_key_pem": expired.key_pem}),
            "certificate_pem",
        ),
        (
            json!({"mode": "custom", "certificate_pem": future.chain_pem, "private_key_pem": future.key_pem}),
            "certificate_pem",
        ),
        (
            json!({"mode": "custom", "certificate_pem": good.chain_pem, "private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "private_key_pem",
        ),
        (
            json!({"mode": "selfsigned", "certificate_pem": good.chain_pem}),
            "certificate_pem",
        ),
        (json!({"mode": "acme"}), "mode"),
        (json!({}), "mode"),
        (json!({"mode": "letsencrypt"}), "mode"),
    ];
    for (body, field) in cases {
        let answer = h.call("PUT", &panel, Some(body.clone())).await;
        is_error(&answer, 422, "invalid", Some(field));
    }
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().1,
        chain,
        "nothing installed"
    );
    assert_eq!(
        h.call("GET", &panel, None).await.1,
        state,
        "nothing recorded"
    );

    let (status, custom) = h.call("PUT", &panel, Some(json!({"mode": "custom", "certificate_pem": good.chain_pem, "private_key_pem": good.key_pem}))).await;
    assert_eq!(status, 200, "{custom}");
    assert_eq!(
        (custom["mode"].as_str(), custom["testing_only"].as_bool()),
        (Some("custom"), Some(false))
    );
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().1,
        good.chain_pem
    );

    // Mail needs a mail hostname; then covers it.
    let mail = format!("/api/v1/servers/{id}/ssl/mail");
    is_error(
        &h.call("PUT", &mail, Some(json!({"mode": "selfsigned"})))
            .await,
        422,
        "invalid",
        Some("mail_hostname"),
    );
    h.call(
        "PATCH",
        &format!("/api/v1/servers/{id}"),
        Some(json!({"mail_hostname": "mx.example.com"})),
    )
    .await;
    let (_, m) = h
        .call("PUT", &mail, Some(json!({"mode": "selfsigned"})))
        .await;
    assert_eq!(m["subject_names"], json!(["mx.example.com"]));
    assert_eq!(
        h.fakes.cert(&url("web1"), "mail").unwrap().0,
        ["mx.example.com"]
    );

    // Unknown kind, unknown server, offline agent.
    is_error(
        &h.call("GET", &format!("/api/v1/servers/{id}/ssl/ftp"), None)
            .await,
        404,
        "not_found",
        None,
    );
    is_error(
        &h.call("GET", "/api/v1/servers/99/ssl/panel", None).await,
        404,
        "not_found",
        None,
    );
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Down);
    h.controller.check_all().await;
    is_error(
        &h.call("PUT", &panel, Some(json!({"mode": "selfsigned"})))
            .await,
        503,
        "agent_offline",
        None,
    );
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().1,
        good.chain_pem
    );
}

async fn wait_not_pending(h: &Harness, path: &str) -> Value {
    loop {
        let (_, state) = h.call("GET", path, None).await;
        if state["status"] != "pending" {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn selfsigned_certificates_are_renewed_and_an_expired_upload_shows_failed() {
    let (h, clock) = ssl_harness(None);
    let id = h.add_server("web1", &["web"]).await;
    let panel = format!("/api/v1/servers/{id}/ssl/panel");
    let t0 = *clock.lock().unwrap();
    let set = |t: time::OffsetDateTime| *clock.lock().unwrap() = t;

    let first = h
        .call("PUT", &panel, Some(json!({"mode": "selfsigned"})))
        .await
        .1;
    assert_eq!(first["not_after"], "2027-02-23T12:00:00Z");
    set(t0 + time::Duration::days(59));
    assert_eq!(h.controller.renew_due().await, 0, "not due yet");
    set(t0 + time::Duration::days(61));
    assert_eq!(h.controller.renew_due().await, 1);
    let renewed = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (
            renewed["mode"].as_str(),
            renewed["status"].as_str(),
            renewed["not_after"].as_str()
        ),
        (
            Some("selfsigned"),
            Some("active"),
            Some("2027-04-25T12:00:00Z")
        )
    );
    assert_ne!(h.fakes.cert(&url("web1"), "panel").unwrap().1, "");
    assert_eq!(h.controller.renew_due().await, 0);

    // A new hostname: made again for it at once.
    let path = format!("/api/v1/servers/{id}");
    let patched = h
        .call(
            "PATCH",
            &path,
            Some(json!({"hostname": "panel.example.com"})),
        )
        .await;
    assert_eq!(patched.0, 200, "{}", patched.1);
    assert_eq!(h.controller.renew_due().await, 1);
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().0,
        ["panel.example.com"]
    );

    // An upload is never replaced by the controller; past its expiry its state says so.
    let host: enconf_core::domain::DomainName = "panel.example.com".parse().unwrap();
    let now = *clock.lock().unwrap();
    let upload = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&host), now).unwrap();
    let body = json!({"mode": "custom", "certificate_pem": upload.chain_pem, "private_key_pem": upload.key_pem});
    assert_eq!(h.call("PUT", &panel, Some(body)).await.0, 200);
    set(now + time::Duration::days(89));
    assert_eq!(h.controller.renew_due().await, 0);
    assert_eq!(h.call("GET", &panel, None).await.1["status"], "active");
    set(now + time::Duration::days(91));
    assert_eq!(h.controller.renew_due().await, 0);
    let expired = h.call("GET", &panel, None).await.1;
    assert_eq!(expired["status"], "failed", "{expired}");
    assert!(
        expired["last_error"]
            .as_str()
            .unwrap()
            .starts_with("the certificate expired at "),
        "{expired}"
    );
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().1,
        upload.chain_pem,
        "still installed"
    );
}

#[tokio::test]
async fn an_upload_that_no_longer_covers_the_hostname_shows_failed_until_it_does() {
    let (h, clock) = ssl_harness(None);
    let id = h.add_server("web1", &["web"]).await;
    let panel = format!("/api/v1/servers/{id}/ssl/panel");
    let server_path = format!("/api/v1/servers/{id}");
    let rename =
        |hostname: &str| h.call("PATCH", &server_path, Some(json!({ "hostname": hostname })));
    let host: enconf_core::domain::DomainName = "web1.example.com".parse().unwrap();
    let now = *clock.lock().unwrap();
    let upload = enconf_core::ssl::cert::self_signed(std::slice::from_ref(&host), now).unwrap();
    let body = json!({"mode": "custom", "certificate_pem": upload.chain_pem, "private_key_pem": upload.key_pem});
    assert_eq!(h.call("PUT", &panel, Some(body)).await.0, 200);
    assert_eq!(h.call("GET", &panel, None).await.1["status"], "active");

    // The hostname is edited: the uploaded certificate is not for it any more, and says so.
    assert_eq!(rename("panel.example.com").await.0, 200);
    let stale = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (stale["mode"].as_str(), stale["status"].as_str()),
        (Some("custom"), Some("failed")),
        "{stale}"
    );
    assert_eq!(
        stale["last_error"],
        "the certificate does not cover panel.example.com, the server's name now \
         (it covers: web1.example.com)"
    );
    assert_eq!(
        h.controller.renew_due().await,
        0,
        "an upload is not replaced"
    );
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().1,
        upload.chain_pem,
        "still installed"
    );

    // Back to the name it covers: active again.
    assert_eq!(rename("web1.example.com").await.0, 200);
    let back = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (back["status"].as_str(), back["last_error"].clone()),
        (Some("active"), Value::Null),
        "{back}"
    );
}

/// Waits (up to 5 s) until one of the fake CA's counters reaches `n`.
async fn counted(counter: &std::sync::atomic::AtomicUsize, n: usize, what: &str) {
    use std::sync::atomic::Ordering;
    for _ in 0..1000 {
        if counter.load(Ordering::SeqCst) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: {} instead of {n}", counter.load(Ordering::SeqCst));
}

/// Waits until `orders` ACME orders have started (read the server's names and reached the
/// CA), so that what the test changes next happens while the order is open.
async fn order_started(acme: &FakeAcme, orders: usize) {
    counted(&acme.issued, orders, "orders started").await;
}

/// Lets an ACME order held at the gate finish: waits until it returned, then gives the
/// attempt's install and record (in-memory fakes, no waits) time to run.
async fn release_order(acme: &FakeAcme, gate: tokio::sync::MutexGuard<'_, ()>, returned: usize) {
    drop(gate);
    counted(&acme.returned, returned, "orders returned").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn an_acme_order_finishing_late_never_overrides_what_was_set_meanwhile() {
    let acme = Arc::new(FakeAcme::default());
    let (h, clock) = ssl_harness(Some(Arc::clone(&acme)));
    let id = h.add_server("web1", &["web"]).await;
    let panel = format!("/api/v1/servers/{id}/ssl/panel");
    let set = |mode: &str| h.call("PUT", &panel, Some(json!({ "mode": mode })));
    let server_path = format!("/api/v1/servers/{id}");
    let rename =
        |hostname: &str| h.call("PATCH", &server_path, Some(json!({ "hostname": hostname })));
    let names_on_agent = || h.fakes.cert(&url("web1"), "panel").unwrap().0;

    // Switched to self-signed while the order is open: the ACME certificate is not installed.
    let gate = acme.gate.lock().await;
    assert_eq!(set("letsencrypt").await.1["status"], "pending");
    order_started(&acme, 1).await;
    let (status, state) = set("selfsigned").await;
    assert_eq!((status, state["mode"].as_str()), (200, Some("selfsigned")));
    let selfsigned = h.fakes.cert(&url("web1"), "panel").unwrap();
    release_order(&acme, gate, 1).await;
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap(),
        selfsigned,
        "the late ACME certificate replaced the self-signed one on the agent"
    );
    let state = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (state["mode"].as_str(), state["status"].as_str()),
        (Some("selfsigned"), Some("active"))
    );

    // The hostname changed while the order was open: recorded as a failure, not installed.
    let gate = acme.gate.lock().await;
    assert_eq!(set("letsencrypt").await.1["status"], "pending");
    order_started(&acme, 2).await;
    let (status, body) = rename("web1b.example.com").await;
    assert_eq!(status, 200, "{body}");
    release_order(&acme, gate, 2).await;
    assert_eq!(h.fakes.cert(&url("web1"), "panel").unwrap(), selfsigned);
    let state = h.call("GET", &panel, None).await.1;
    assert_eq!(state["mode"], "letsencrypt");
    assert_eq!(state["status"], "pending", "not issued yet: {state}");
    assert!(
        state["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("names changed"),
        "{state}"
    );

    // After its back-off it is issued for the new name.
    let t0 = *clock.lock().unwrap();
    assert_eq!(h.controller.renew_due().await, 0, "backing off");
    *clock.lock().unwrap() = t0 + time::Duration::minutes(31);
    assert_eq!(h.controller.renew_due().await, 1);
    assert_eq!(names_on_agent(), ["web1b.example.com"]);
    let state = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (state["status"].as_str(), state["last_error"].clone()),
        (Some("active"), Value::Null)
    );

    // An edited hostname makes a working ACME certificate due at once.
    assert_eq!(h.controller.renew_due().await, 0, "nothing due");
    assert_eq!(rename("web1.example.com").await.0, 200);
    assert_eq!(h.controller.renew_due().await, 1);
    assert_eq!(names_on_agent(), ["web1.example.com"]);
    assert_eq!(h.controller.renew_due().await, 0);

    // A deleted server's records are gone from the store, not left as nulls.
    assert_eq!(
        h.call("DELETE", &format!("/api/v1/servers/{id}"), None)
            .await
            .0,
        204
    );
    let left = h
        .controller
        .store()
        .settings_with_prefix("ssl:")
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_first_acme_order_that_fails_over_a_working_certificate_is_tried_again() {
    use std::sync::atomic::Ordering;
    let acme = Arc::new(FakeAcme::default());
    let (h, clock) = ssl_harness(Some(Arc::clone(&acme)));
    let id = h.add_server("web1", &["web"]).await;
    let panel = format!("/api/v1/servers/{id}/ssl/panel");
    let (status, _) = h
        .call("PUT", &panel, Some(json!({"mode": "selfsigned"})))
        .await;
    assert_eq!(status, 200);

    acme.fail.store(true, Ordering::SeqCst);
    let (status, state) = h
        .call("PUT", &panel, Some(json!({"mode": "letsencrypt"})))
        .await;
    assert_eq!((status, state["status"].as_str()), (200, Some("pending")));
    let state = loop {
        let (_, state) = h.call("GET", &panel, None).await;
        if !state["last_error"].is_null() {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The self-signed certificate still serves; the ACME one is still to come.
    assert_eq!(state["status"], "pending", "{state}");
    assert_eq!(state["testing_only"], false);
    assert_eq!(h.controller.renew_due().await, 0, "backing off");
    acme.fail.store(false, Ordering::SeqCst);
    let t0 = *clock.lock().unwrap();
    *clock.lock().unwrap() = t0 + time::Duration::minutes(31);
    assert_eq!(h.controller.renew_due().await, 1, "tried again");
    let state = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (state["status"].as_str(), state["last_error"].clone()),
        (Some("active"), Value::Null),
        "{state}"
    );
    assert_eq!(h.controller.renew_due().await, 0);
}

#[tokio::test]
async fn acme_certificates_are_issued_and_renewed_on_time_with_backoff() {
    use std::sync::atomic::Ordering;
    let acme = Arc::new(FakeAcme::default());
    let (h, clock) = ssl_harness(Some(Arc::clone(&acme)));
    let id = h.add_server("web1", &["web"]).await;
    let panel = format!("/api/v1/servers/{id}/ssl/panel");
    let set = |t: time::OffsetDateTime| *clock.lock().unwrap() = t;
    let t0 = time::macros::datetime!(2026-11-25 12:00 UTC);

    let (status, state) = h
        .call("PUT", &panel, Some(json!({"mode": "letsencrypt"})))
        .await;
    assert_eq!((status, state["status"].as_str()), (200, Some("pending")));
    let state = wait_not_pending(&h, &panel).await;
    assert_eq!(state["status"], "active", "{state}");
    assert_eq!(state["not_after"], "2027-02-23T12:00:00Z");
    let served = h.fakes.agents.lock().unwrap()[&url("web1")].served.clone();
    assert_eq!(served, ["token-0"], "the challenge went through the agent");
    assert!(
        h.fakes.agents.lock().unwrap()[&url("web1")]
            .challenges
            .is_empty(),
        "and was withdrawn"
    );

    // Not due until 30 days before expiry.
    set(t0 + time::Duration::days(59));
    assert_eq!(h.controller.renew_due().await, 0);
    set(t0 + time::Duration::days(61));
    assert_eq!(h.controller.renew_due().await, 1);
    let renewed = h.call("GET", &panel, None).await.1;
    assert_eq!(renewed["not_after"], "2027-04-25T12:00:00Z");
    assert_eq!(acme.issued.load(Ordering::SeqCst), 2);

    // A failing renewal keeps the working certificate, records the error, backs off.
    acme.fail.store(true, Ordering::SeqCst);
    let due = t0 + time::Duration::days(61 + 61);
    set(due);
    assert_eq!(h.controller.renew_due().await, 1);
    let failed = h.call("GET", &panel, None).await.1;
    assert_eq!(
        failed["status"], "active",
        "the old certificate still works: {failed}"
    );
    assert_eq!(failed["not_after"], renewed["not_after"]);
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("connection: refused"),
        "{failed}"
    );
    let chain_before = h.fakes.cert(&url("web1"), "panel").unwrap().1;
    assert_eq!(h.controller.renew_due().await, 0, "backing off");
    set(due + time::Duration::minutes(29));
    assert_eq!(h.controller.renew_due().await, 0);
    set(due + time::Duration::minutes(31));
    assert_eq!(
        h.controller.renew_due().await,
        1,
        "retried after 30 minutes"
    );
    set(due + time::Duration::minutes(31 + 59));
    assert_eq!(h.controller.renew_due().await, 0, "then after an hour");
    assert_eq!(
        h.fakes.cert(&url("web1"), "panel").unwrap().1,
        chain_before,
        "never removed"
    );

    // Past expiry with no renewal: failed.
    set(time::macros::datetime!(2027-04-26 12:00 UTC));
    assert_eq!(h.controller.renew_due().await, 1);
    assert_eq!(h.call("GET", &panel, None).await.1["status"], "failed");

    // It recovers when the CA does.
    acme.fail.store(false, Ordering::SeqCst);
    set(time::macros::datetime!(2027-04-28 12:00 UTC));
    assert_eq!(h.controller.renew_due().await, 1);
    let back = h.call("GET", &panel, None).await.1;
    assert_eq!(
        (back["status"].as_str(), back["last_error"].clone()),
        (Some("active"), Value::Null)
    );
}

#[tokio::test]
async fn the_document_says_what_the_server_does() {
    let h = harness();
    let (_, text) = h.raw("GET", "/api/v1/openapi.json", None, None).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    let schemas = &doc["components"]["schemas"];

    // Required fields are required and never null; optional ones may be null.
    for (schema, required) in [
        (
            "ServerInput",
            vec!["name", "hostname", "agent_url", "agent_token", "roles"],
        ),
        ("AccountInput", vec!["username", "domains"]),
        ("MigrateInput", vec!["target_server_id"]),
        ("SslInput", vec!["mode"]),
    ] {
        let mut listed: Vec<&str> = schemas[schema]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} lists no required field"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        listed.sort_unstable();
        let mut want = required.clone();
        want.sort_unstable();
        assert_eq!(listed, want, "{schema}");
        for field in required {
            let ty = &schemas[schema]["properties"][field]["type"];
            assert!(ty.is_string(), "{schema}.{field} is nullable: {ty}");
        }
    }
    assert_eq!(
        schemas["ServerInput"]["properties"]["mail_hostname"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        schemas["ServerInput"]["properties"]["roles"]["items"]["enum"],
        json!(["web", "mail", "dns", "db", "backup"])
    );
    assert_eq!(
        schemas["ServerPatch"]["properties"]["name"]["type"],
        "string"
    );

    // Every operation behind the token documents 400 and 401; every one with a body 408 and 413.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if path != "/api/v1/openapi.json" {
                for status in ["400", "401"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["408", "413", "422"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
        }
    }
}

#[tokio::test]
async fn integers_are_integers_however_json_writes_them() {
    let h = harness();
    let server = |max: Value| {
        json!({"name": "web1", "hostname": "web1.example.com", "agent_url": "http://127.0.0.1:50999",
            "agent_token": TOKEN, "roles": ["web"], "max_accounts": max})
    };
    // 180.0 is the integer 180, as JSON Schema says.
    let (status, body) = h
        .call("POST", "/api/v1/servers", Some(server(json!(180.0))))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["max_accounts"], 180);
    let id = body["id"].as_u64().unwrap();
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/api/v1/servers/{id}"),
            Some(json!({"max_accounts": 5e1})),
        )
        .await;
    assert_eq!((status, body["max_accounts"].clone()), (200, json!(50)));
    // A fraction is not: 422 naming the field, as for any other value out of its rules.
    for bad in [json!(180.5), json!(-1.0), json!(1e300)] {
        is_error(
            &h.call(
                "PATCH",
                &format!("/api/v1/servers/{id}"),
                Some(json!({"max_accounts": bad})),
            )
            .await,
            422,
            "invalid",
            Some("max_accounts"),
        );
    }
    let account = |server_id: Value| json!({"username": "shop", "domains": ["shop.example"], "server_id": server_id});
    is_error(
        &h.call("POST", "/api/v1/accounts", Some(account(json!(0.5))))
            .await,
        422,
        "invalid",
        Some("server_id"),
    );
    is_error(
        &h.call("POST", "/api/v1/accounts", Some(account(json!(-4.0))))
            .await,
        422,
        "invalid",
        Some("server_id"),
    );
}

#[tokio::test]
async fn accounts_are_changed_on_their_servers_or_not_at_all() {
    let h = harness();
    let web = h.add_server("web1", &["web"]).await;
    let (status, acc) = h
        .call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "shop", "domains": ["shop.example"], "php": {"memory_limit_mb": 256}})),
        )
        .await;
    assert_eq!(status, 201, "{acc}");
    assert_eq!(acc["php"]["memory_limit_mb"], 256);
    assert_eq!(acc["php"]["max_children"], 5, "the defaults for the rest");
    let path = format!("/api/v1/accounts/{}", acc["id"]);
    let (_, other) = h
        .call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "blog", "domains": ["blog.example"]})),
        )
        .await;

    // Add a domain, change the version and a limit: recorded and sent to the agent.
    let (status, changed) = h
        .call(
            "PATCH",
            &path,
            Some(json!({"domains": ["shop.example", "www.shop.example"], "php_version": "8.3", "php": {"max_children": 12}})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["domains"],
        json!(["shop.example", "www.shop.example"])
    );
    assert_eq!(changed["php_version"], "8.3");
    assert_eq!(
        (
            changed["php"]["max_children"].clone(),
            changed["php"]["memory_limit_mb"].clone()
        ),
        (json!(12), json!(256))
    );
    let on_agent = h.fakes.agents.lock().unwrap()[&url("web1")].accounts["shop"].clone();
    assert_eq!(
        on_agent.domains.unwrap(),
        ["shop.example", "www.shop.example"]
    );
    assert_eq!(on_agent.php_version.as_deref(), Some("8.3"));

    // Refused with the field named, nothing changed: a domain another account has, a limit out
    // of bounds, a version the server does not offer, an unknown field.
    let unchanged = h.call("GET", &path, None).await.1;
    for (patch, status, code, field) in [
        (
            json!({"domains": ["shop.example", "blog.example"]}),
            409,
            "duplicate",
            Some("domains[1]"),
        ),
        (
            json!({"domains": ["shop.example", "web1.example.com"]}),
            409,
            "duplicate",
            Some("domains[1]"),
        ),
        (json!({"domains": []}), 422, "invalid", Some("domains")),
        (
            json!({"php": {"max_children": 0}}),
            422,
            "invalid",
            Some("php.max_children"),
        ),
        (
            json!({"php": {"memory_limit_mb": 100.5}}),
            422,
            "invalid",
            Some("php.memory_limit_mb"),
        ),
        (
            json!({"php_version": "5.6"}),
            422,
            "invalid",
            Some("php_version"),
        ),
        (json!({"username": "other"}), 400, "bad_request", None),
    ] {
        is_error(
            &h.call("PATCH", &path, Some(patch.clone())).await,
            status,
            code,
            field,
        );
        assert_eq!(h.call("GET", &path, None).await.1, unchanged, "{patch}");
    }

    // The agent refuses: the record and the agent keep the old domains.
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Rejects);
    is_error(
        &h.call("PATCH", &path, Some(json!({"domains": ["shop.example"]})))
            .await,
        502,
        "agent_error",
        None,
    );
    assert_eq!(h.call("GET", &path, None).await.1, unchanged);
    h.fakes.set(&url("web1"), |a| a.mode = Mode::Up);
    // The domain let go by a change is free again.
    h.call("PATCH", &path, Some(json!({"domains": ["shop.example"]})))
        .await;
    let (status, _) = h
        .call(
            "PATCH",
            &format!("/api/v1/accounts/{}", other["id"]),
            Some(json!({"domains": ["blog.example", "www.shop.example"]})),
        )
        .await;
    assert_eq!(status, 200);
    let _ = web;

    // A version no web server offers, on create: 422 naming php_version.
    is_error(
        &h.call(
            "POST",
            "/api/v1/accounts",
            Some(json!({"username": "old", "domains": ["old.example"], "php_version": "5.6"})),
        )
        .await,
        422,
        "invalid",
        Some("php_version"),
    );
    assert_eq!(
        h.call("GET", "/api/v1/accounts", None)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn docs_api_md_names_every_path_of_the_document() {
    let h = harness();
    let (_, text) = h.raw("GET", "/api/v1/openapi.json", None, None).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md")).unwrap();
    let mut named = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/api/v1/openapi.json" {
            assert!(page.contains("GET /api/v1/openapi.json"));
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let line = format!("`{} {path}`", method.to_uppercase());
            assert!(page.contains(&line), "docs/API.md does not name {line}");
            named += 1;
        }
    }
    assert!(named >= 16, "{named}");
}

#[tokio::test]
async fn the_admin_token_is_read_as_http_says() {
    let h = harness();
    let send = |values: Vec<String>| {
        let app = h.app.clone();
        async move {
            let mut req = Request::get("/api/v1/servers");
            for v in values {
                req = req.header("authorization", v);
            }
            app.oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send(vec![format!("bearer {ADMIN}")]).await, 200);
    assert_eq!(send(vec![format!("BEARER   {ADMIN}")]).await, 200);
    assert_eq!(
        send(vec![format!("Bearer {ADMIN}"), format!("Bearer {ADMIN}")]).await,
        400
    );
    assert_eq!(send(vec![format!("Basic {ADMIN}")]).await, 401);
    assert_eq!(send(vec![format!("Bearer{ADMIN}")]).await, 401);
}

#[tokio::test]
async fn lists_come_in_pages_with_a_link_to_the_next() {
    let h = harness();
    let web1 = h.add_server("web1", &["web"]).await;
    let web2 = h.add_server("web2", &["web"]).await;
    for (i, server) in [web1, web2, web1, web2, web1].into_iter().enumerate() {
        let (status, body) = h
            .call(
                "POST",
                "/api/v1/accounts",
                Some(
                    json!({"username": format!("site{i}"), "domains": [format!("site{i}.example")],
                    "server_id": server}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Two at a time, following the Link header, filters kept.
    let mut path = Some(format!("/api/v1/accounts?limit=2&server_id={web1}"));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(p) = path {
        let (status, items, next) = h.page(&p).await;
        assert_eq!(status, 200, "{items}");
        seen.extend(
            items
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["username"].as_str().unwrap().to_owned()),
        );
        if let Some(n) = &next {
            assert!(
                n.contains(&format!("server_id={web1}")) && n.contains("limit=2"),
                "{n}"
            );
        }
        path = next;
        pages += 1;
    }
    assert_eq!(seen, ["site0", "site2", "site4"]);
    assert_eq!(pages, 2);
    // The default page holds them all, with no Link; a search by domain prefix.
    let (_, all, next) = h.page("/api/v1/accounts").await;
    assert_eq!(all.as_array().unwrap().len(), 5);
    assert_eq!(next, None);
    let (_, found, _) = h.page("/api/v1/accounts?q=SITE3.&role=web").await;
    assert_eq!(found[0]["username"], "site3");
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (_, servers, next) = h.page("/api/v1/servers?limit=1").await;
    assert_eq!(servers[0]["id"].as_u64(), Some(web1));
    assert_eq!(
        next.as_deref(),
        Some(format!("/api/v1/servers?limit=1&after={web1}").as_str())
    );

    // Bad parameters: 422 naming each.
    for (path, field) in [
        ("/api/v1/accounts?limit=0", "limit"),
        ("/api/v1/accounts?limit=1001", "limit"),
        ("/api/v1/accounts?after=abc", "after"),
        ("/api/v1/accounts?limit=2&limit=3", "limit"),
        ("/api/v1/accounts?sort=name", "sort"),
        ("/api/v1/accounts?server_id=99", "server_id"),
        ("/api/v1/accounts?role=smtp", "role"),
        ("/api/v1/accounts?q=a%20b", "q"),
        ("/api/v1/accounts?q=%0a", "q"),
        ("/api/v1/servers?role=web", "role"),
        ("/api/v1/servers?after=-1", "after"),
    ] {
        is_error(
            &h.call("GET", path, None).await,
            422,
            "invalid",
            Some(field),
        );
    }
}

#[tokio::test]
async fn a_round_records_fifty_answers_while_one_agent_hangs() {
    let h = harness();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(h.add_server(&format!("web{i}"), &["web"]).await);
    }
    let hung = h.add_server("hung", &["web"]).await;
    h.fakes.set(&url("hung"), |a| a.mode = Mode::Hangs);
    for i in 0..50 {
        h.fakes
            .set(&url(&format!("web{i}")), |a| a.version = "0.2.0".into());
    }
    let controller = h.controller.clone();
    let round = tokio::spawn(async move { controller.check_all().await });
    // Every answer is recorded while the hung agent's check still waits for its timeout.
    loop {
        let (_, servers) = h.call("GET", "/api/v1/servers", None).await;
        let updated = servers
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["agent_version"] == "0.2.0")
            .count();
        if updated == 50 {
            break;
        }
        assert!(
            !round.is_finished(),
            "only {updated} of 50 recorded before the round ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!round.is_finished(), "the hung check is still waiting");
    let round = round.await.unwrap();
    assert_eq!(round.failed, 0);
    assert_eq!(
        round.reachable, 51,
        "one miss does not make a server offline"
    );
    let (_, s) = h
        .call("GET", &format!("/api/v1/servers/{hung}"), None)
        .await;
    assert!(
        s["last_error"].as_str().unwrap().contains("no answer"),
        "{s}"
    );
    assert_eq!(ids.len(), 50);
}

/// Adds an administrator with the configured token: their id and token.
async fn add_admin(h: &Harness, name: &str, role: &str) -> (u64, String) {
    let (status, body) = h
        .call(
            "POST",
            "/api/v1/admins",
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["role"], role);
    (
        body["id"].as_u64().unwrap(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

/// Every route of the document, tried by every role: exactly the ones the role may call get
/// past the access check (any answer but 403), the others are `403 forbidden`. The routes
/// come from the OpenAPI document (generated from the handlers), so a route added without an
/// access rule fails here.
#[tokio::test]
async fn each_role_calls_exactly_the_routes_it_may() {
    use enconf_core::controller::api::{RULES, rule_for};
    use enconf_core::domain::admin::AdminRole;
    let h = harness();
    let (_, text) = h.raw("GET", "/api/v1/openapi.json", None, None).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/api/v1/openapi.json" {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let method = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let rule = rule_for(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} has no access rule"));
            routes.push((method, path.clone(), rule.permission));
        }
    }
    assert_eq!(
        routes.len(),
        RULES.len(),
        "every access rule is a documented route"
    );
    let mut tokens = vec![(AdminRole::Owner, ADMIN.to_owned())];
    for role in [
        AdminRole::Owner,
        AdminRole::Admin,
        AdminRole::Operator,
        AdminRole::Viewer,
    ] {
        let (_, token) = add_admin(&h, &format!("{role} one"), role.as_str()).await;
        tokens.push((role, token));
    }
    for (method, path, permission) in &routes {
        // Ids that name nothing: an allowed call ends in 404 or 4xx, and nothing changes.
        let concrete = path
            .replace("{id}", "999999")
            .replace("{kind}", "panel")
            .replace("{snapshot}", "abc")
            .replace("{address}", "a@example.com")
            .replace("{zone}", "example.com")
            .replace("{record_id}", "1")
            .replace("{name}", "x_db");
        for (role, token) in &tokens {
            let (status, text) = h.raw(method.as_str(), &concrete, Some(token), None).await;
            let allowed = role.may(*permission);
            if allowed {
                assert_ne!(status, 403, "{role} {method} {path}: {text}");
            } else {
                assert_eq!(status, 403, "{role} {method} {path}: {text}");
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(body["error"]["code"], "forbidden");
            }
        }
    }
    // The configured token is an owner; each token says who it is.
    for (role, token) in &tokens {
        let (status, text) = h.raw("GET", "/api/v1/session", Some(token), None).await;
        assert_eq!(status, 200);
        let session: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(session["role"], role.as_str());
    }
    let (_, text) = h.raw("GET", "/api/v1/session", Some(ADMIN), None).await;
    let session: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(session["id"], 0);
    assert_eq!(
        session["permissions"],
        json!(["read", "accounts", "servers", "audit", "admins"])
    );
}

#[tokio::test]
async fn administrators_are_managed_by_owners_and_a_removed_token_stops_at_once() {
    let h = harness();
    let (id, token) = add_admin(&h, "Ana", "operator").await;
    assert_eq!(token.len(), 64);
    // The token is shown once: never in a list.
    let (status, list) = h.raw("GET", "/api/v1/admins", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert!(!list.contains(&token), "{list}");
    assert!(list.contains("\"Ana\""), "{list}");
    let (status, _) = h.raw("GET", "/api/v1/servers", Some(&token), None).await;
    assert_eq!(status, 200);

    // Names are unique ignoring case; roles and names are checked, named.
    is_error(
        &h.call(
            "POST",
            "/api/v1/admins",
            Some(json!({"name": "ana", "role": "viewer"})),
        )
        .await,
        409,
        "duplicate",
        Some("name"),
    );
    is_error(
        &h.call(
            "POST",
            "/api/v1/admins",
            Some(json!({"name": "Bo", "role": "root"})),
        )
        .await,
        422,
        "invalid",
        Some("role"),
    );
    is_error(
        &h.call(
            "POST",
            "/api/v1/admins",
            Some(json!({"name": "Bo\nb", "role": "viewer"})),
        )
        .await,
        422,
        "invalid",
        Some("name"),
    );
    is_error(
        &h.call("POST", "/api/v1/admins", Some(json!({"role": "viewer"})))
            .await,
        422,
        "invalid",
        Some("name"),
    );

    // A role change counts from the next request.
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/api/v1/admins/{id}"),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!((status, body["role"].as_str()), (200, Some("viewer")));
    let (status, text) = h
        .raw(
            "POST",
            "/api/v1/accounts",
            Some(&token),
            Some(json!({"username": "shop", "domains": ["shop.example"]}).to_string()),
        )
        .await;
    assert_eq!(status, 403, "{text}");

    // An operator cannot manage administrators, nor make themselves an owner.
    let (_, other) = add_admin(&h, "Cy", "admin").await;
    let (status, _) = h
        .raw(
            "PATCH",
            &format!("/api/v1/admins/{id}"),
            Some(&other),
            Some(json!({"role": "owner"}).to_string()),
        )
        .await;
    assert_eq!(status, 403);

    let (status, _) = h
        .call("DELETE", &format!("/api/v1/admins/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, text) = h.raw("GET", "/api/v1/servers", Some(&token), None).await;
    assert_eq!(status, 401, "{text}");
    let (status, _) = h
        .call("DELETE", &format!("/api/v1/admins/{id}"), None)
        .await;
    assert_eq!(status, 404);
}

/// A scripted session: one audit entry per change (refused ones too), with who, what and the
/// result, and no secret anywhere in the log.
#[tokio::test]
async fn the_audit_log_records_every_change_and_no_secret() {
    let h = harness();
    let (op_id, op_token) = add_admin(&h, "Olga", "operator").await;
    let server = h.add_server("web1", &["web"]).await;
    let new_agent_token = "a-new-agent-token-0123456789";
    h.fakes
        .set(&url("web1"), |f| f.token = new_agent_token.into());
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/api/v1/servers/{server}"),
            Some(json!({"agent_token": new_agent_token, "max_accounts": 50})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, text) = h
        .raw(
            "POST",
            "/api/v1/accounts",
            Some(&op_token),
            Some(json!({"username": "shop", "domains": ["shop.example"]}).to_string()),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let account = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_u64()
        .unwrap();
    // Refused: the operator may not change servers; the body was not JSON.
    let (status, _) = h
        .raw(
            "DELETE",
            &format!("/api/v1/servers/{server}"),
            Some(&op_token),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .raw(
            "PATCH",
            &format!("/api/v1/accounts/{account}"),
            Some(&op_token),
            Some("{".into()),
        )
        .await;
    assert_eq!(status, 400);
    // Reads are not changes.
    h.call("GET", "/api/v1/servers", None).await;
    let (status, _) = h
        .call("DELETE", &format!("/api/v1/admins/{op_id}"), None)
        .await;
    assert_eq!(status, 204);

    let (status, log, next) = h.page("/api/v1/audit").await;
    assert_eq!((status, next), (200, None));
    let text = log.to_string();
    for secret in [TOKEN, new_agent_token, op_token.as_str()] {
        assert!(!text.contains(secret), "a secret in the audit log: {text}");
    }
    let entries = log.as_array().unwrap();
    let summary: Vec<(String, String, u64, String)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object"].as_str().unwrap().to_owned(),
                e["admin"].as_u64().unwrap(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, o: String, admin: u64, r: &str| (a.to_owned(), o, admin, r.to_owned());
    assert_eq!(
        summary,
        vec![
            s("admin.create", format!("admin:{op_id}"), 0, "ok"),
            s("server.create", format!("server:{server}"), 0, "ok"),
            s("server.patch", format!("server:{server}"), 0, "ok"),
            s("account.create", format!("account:{account}"), op_id, "ok"),
            s(
                "server.delete",
                format!("server:{server}"),
                op_id,
                "forbidden"
            ),
            s(
                "account.patch",
                format!("account:{account}"),
                op_id,
                "bad_request"
            ),
            s("admin.delete", format!("admin:{op_id}"), 0, "ok"),
        ]
    );
    let patch = &entries[entries.len() - 3];
    assert_eq!(patch["changes"]["agent_token"], "changed");
    assert_eq!(patch["changes"]["max_accounts"], 50);
    assert_eq!(patch["admin_name"], "configured admin token");
    let created = &entries[entries.len() - 1];
    assert_eq!(created["changes"]["token"], "changed");
    assert_eq!(created["changes"]["role"], "operator");

    // Filters: by object, by administrator, both; pages by the Link header.
    let (_, by_server, _) = h
        .page(&format!("/api/v1/audit?object=server:{server}"))
        .await;
    assert_eq!(by_server.as_array().unwrap().len(), 3);
    let (_, by_op, _) = h.page(&format!("/api/v1/audit?admin={op_id}")).await;
    assert_eq!(by_op.as_array().unwrap().len(), 3);
    let (_, both, _) = h
        .page(&format!(
            "/api/v1/audit?admin={op_id}&object=server:{server}"
        ))
        .await;
    assert_eq!(both.as_array().unwrap().len(), 1);
    let (_, first, next) = h.page("/api/v1/audit?limit=4").await;
    assert_eq!(first.as_array().unwrap().len(), 4);
    let (_, rest, last) = h.page(&next.unwrap()).await;
    assert_eq!((rest.as_array().unwrap().len(), last), (3, None));
    is_error(
        &h.call("GET", "/api/v1/audit?object=server", None).await,
        422,
        "invalid",
        Some("object"),
    );
    // Append-only: the log has no route that changes it.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(h.call(method, "/api/v1/audit", None).await.0, 405);
    }
}

/// Failed sign-ins over a real connection: the address that fails too often waits (429 with
/// Retry-After, even with the right token), another address is not held up.
#[tokio::test]
async fn failed_sign_ins_are_limited_per_source_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fakes = Arc::new(Fakes::default());
    let controller = Controller::new(
        Arc::new(MemoryStore::new_in_memory()),
        fakes as Arc<dyn AgentTransport>,
        ControllerConfig::default(),
    );
    let mut config = ApiConfig::new(enconf_core::domain::AdminToken::parse(ADMIN).unwrap());
    config.sign_in_limit = enconf_core::controller::api::SignInLimit {
        failures: 3,
        window: Duration::from_secs(600),
    };
    let app = router(controller, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(enconf_core::http::serve(
        listener,
        app,
        None,
        enconf_core::http::ConnectionLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let get = |from: &'static str, token: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut stream = socket
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        let request = format!(
            "GET /api/v1/servers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let status = |answer: &str| answer[9..12].to_owned();
    for _ in 0..3 {
        assert_eq!(
            status(&get("127.0.0.1", "wrong-token-0123456789").await),
            "401"
        );
    }
    let stopped_answer = get("127.0.0.1", ADMIN).await;
    assert_eq!(status(&stopped_answer), "429", "{stopped_answer}");
    assert!(
        stopped_answer.to_lowercase().contains("retry-after:"),
        "{stopped_answer}"
    );
    assert!(stopped_answer.contains("too_many_requests"));
    // Another address signs in as before.
    assert_eq!(status(&get("127.0.0.2", ADMIN).await), "200");
    assert_eq!(
        status(&get("127.0.0.2", "wrong-token-0123456789").await),
        "401"
    );
    let _ = stop.send(());
    server.await.unwrap();
}
