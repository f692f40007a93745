//! Who may call which route, and the record of what they changed.
//!
//! Every route behind the token has exactly one [`RouteRule`] in [`RULES`]: the permission it
//! needs and, for a change, the action the audit log names it by. [`guard`] runs before every
//! handler: it stops a source address after too many failed sign-ins, finds who the token is
//! (the configured admin token, an owner, or a stored administrator), refuses a route the role
//! may not call (`403 forbidden`) or one without a rule (deny by default), and records each
//! change in the audit log: who, the action, the object, the fields set (a secret as
//! `"changed"`) and the result.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::Api;
use crate::domain::admin::{Actor, CHANGED, NewAuditEntry, Permission};
use crate::http::{ApiError, Connection, bearer, mark_authenticated, read_body};
use crate::protocol::{ErrorBody, ErrorCode};

/// What a route needs, and how the audit log names what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    pub method: &'static str,
    /// The route as the router declares it (`/api/v1/servers/{id}`).
    pub path: &'static str,
    pub permission: Permission,
    /// The audit log's name of the action; `None`: a read, not recorded.
    pub action: Option<&'static str>,
    /// Secrets the operation changes without the request naming them (shown as `"changed"`).
    pub secrets: &'static [&'static str],
}

const fn read(method: &'static str, path: &'static str) -> RouteRule {
    RouteRule {
        method,
        path,
        permission: Permission::Read,
        action: None,
        secrets: &[],
    }
}

const fn change(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    action: &'static str,
) -> RouteRule {
    RouteRule {
        method,
        path,
        permission,
        action: Some(action),
        secrets: &[],
    }
}

use Permission::{Accounts, Admins, Servers};

/// Every route behind the token. A route the router has and this table lacks is refused to
/// every role (and fails the route-by-role test).
pub const RULES: &[RouteRule] = &[
    read("GET", "/api/v1/session"),
    read("GET", "/api/v1/servers"),
    change("POST", "/api/v1/servers", Servers, "server.create"),
    read("GET", "/api/v1/servers/{id}"),
    change("PATCH", "/api/v1/servers/{id}", Servers, "server.patch"),
    change("DELETE", "/api/v1/servers/{id}", Servers, "server.delete"),
    change(
        "POST",
        "/api/v1/servers/{id}/check",
        Servers,
        "server.check",
    ),
    // The script carries the agent's token and key: reading it is recorded too.
    change(
        "GET",
        "/api/v1/servers/{id}/install-script",
        Servers,
        "server.install-script",
    ),
    change(
        "POST",
        "/api/v1/servers/{id}/reconcile",
        Servers,
        "server.reconcile",
    ),
    change(
        "POST",
        "/api/v1/servers/{id}/update",
        Servers,
        "server.update",
    ),
    RouteRule {
        secrets: &["agent_token"],
        ..change(
            "POST",
            "/api/v1/servers/{id}/rotate-token",
            Servers,
            "server.rotate-token",
        )
    },
    read("GET", "/api/v1/servers/{id}/ssl/{kind}"),
    change(
        "PUT",
        "/api/v1/servers/{id}/ssl/{kind}",
        Servers,
        "server.ssl",
    ),
    read("GET", "/api/v1/accounts"),
    change("POST", "/api/v1/accounts", Accounts, "account.create"),
    read("GET", "/api/v1/accounts/{id}"),
    change("PATCH", "/api/v1/accounts/{id}", Accounts, "account.patch"),
    change(
        "DELETE",
        "/api/v1/accounts/{id}",
        Accounts,
        "account.delete",
    ),
    change(
        "POST",
        "/api/v1/accounts/{id}/migrate",
        Accounts,
        "account.migrate",
    ),
    read("GET", "/api/v1/accounts/{id}/backups"),
    change(
        "POST",
        "/api/v1/accounts/{id}/backups",
        Accounts,
        "account.backup",
    ),
    change(
        "POST",
        "/api/v1/accounts/{id}/backups/{snapshot}/restore",
        Accounts,
        "account.restore",
    ),
    read("GET", "/api/v1/jobs"),
    read("GET", "/api/v1/jobs/{id}"),
    read("GET", "/api/v1/accounts/{id}/mailboxes"),
    change(
        "POST",
        "/api/v1/accounts/{id}/mailboxes",
        Accounts,
        "mailbox.create",
    ),
    change(
        "PATCH",
        "/api/v1/accounts/{id}/mailboxes/{address}",
        Accounts,
        "mailbox.patch",
    ),
    change(
        "DELETE",
        "/api/v1/accounts/{id}/mailboxes/{address}",
        Accounts,
        "mailbox.delete",
    ),
    read("GET", "/api/v1/accounts/{id}/mail-aliases"),
    change(
        "POST",
        "/api/v1/accounts/{id}/mail-aliases",
        Accounts,
        "alias.create",
    ),
    change(
        "PUT",
        "/api/v1/accounts/{id}/mail-aliases/{address}",
        Accounts,
        "alias.put",
    ),
    change(
        "DELETE",
        "/api/v1/accounts/{id}/mail-aliases/{address}",
        Accounts,
        "alias.delete",
    ),
    read("GET", "/api/v1/accounts/{id}/dkim"),
    read("GET", "/api/v1/accounts/{id}/dns/zones"),
    read("GET", "/api/v1/accounts/{id}/dns/zones/{zone}"),
    change(
        "PATCH",
        "/api/v1/accounts/{id}/dns/zones/{zone}",
        Accounts,
        "zone.patch",
    ),
    change(
        "POST",
        "/api/v1/accounts/{id}/dns/zones/{zone}/records",
        Accounts,
        "record.create",
    ),
    change(
        "PUT",
        "/api/v1/accounts/{id}/dns/zones/{zone}/records/{record_id}",
        Accounts,
        "record.put",
    ),
    change(
        "DELETE",
        "/api/v1/accounts/{id}/dns/zones/{zone}/records/{record_id}",
        Accounts,
        "record.delete",
    ),
    read("GET", "/api/v1/accounts/{id}/databases"),
    change(
        "POST",
        "/api/v1/accounts/{id}/databases",
        Accounts,
        "database.create",
    ),
    change(
        "DELETE",
        "/api/v1/accounts/{id}/databases/{name}",
        Accounts,
        "database.delete",
    ),
    read("GET", "/api/v1/accounts/{id}/database-users"),
    change(
        "POST",
        "/api/v1/accounts/{id}/database-users",
        Accounts,
        "database-user.create",
    ),
    change(
        "PATCH",
        "/api/v1/accounts/{id}/database-users/{name}",
        Accounts,
        "database-user.patch",
    ),
    change(
        "DELETE",
        "/api/v1/accounts/{id}/database-users/{name}",
        Accounts,
        "database-user.delete",
    ),
    RouteRule {
        permission: Permission::Audit,
        ..read("GET", "/api/v1/audit")
    },
    RouteRule {
        permission: Admins,
        ..read("GET", "/api/v1/admins")
    },
    RouteRule {
        secrets: &["token"],
        ..change("POST", "/api/v1/admins", Admins, "admin.create")
    },
    change("PATCH", "/api/v1/admins/{id}", Admins, "admin.patch"),
    change("DELETE", "/api/v1/admins/{id}", Admins, "admin.delete"),
];

/// The fields whose values the audit log shows. Any other field a request sets (a password,
/// a token, a key, a field added later) is shown as `"changed"`: a new field is kept secret
/// until it is listed here.
const PUBLIC_FIELDS: &[&str] = &[
    "active",
    "address",
    "agent_url",
    "content",
    "database",
    "databases",
    "destinations",
    "dnssec",
    "domains",
    "hostname",
    "kind",
    "mail_hostname",
    "mailbox",
    "max_accounts",
    "mode",
    "name",
    "panel_url",
    "php",
    "php_version",
    "phpmyadmin_path",
    "priority",
    "quota_mb",
    "role",
    "record_id",
    "roles",
    "roundcube_path",
    "server_id",
    "servers",
    "snapshot",
    "target_server_id",
    "targets",
    "ttl",
    "username",
    "what",
    "zone",
];

/// Whether the audit log may show a field's value: a public field, and for a URL, one
/// without a user name or password (a refused URL is recorded as it was sent).
fn public_value(name: &str, value: &serde_json::Value) -> bool {
    PUBLIC_FIELDS.contains(&name)
        && !(name.ends_with("_url") && value.as_str().is_some_and(|v| v.contains('@')))
}

/// The rule of a route, by method (`HEAD` is a `GET`) and declared path.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static RouteRule> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    RULES.iter().find(|r| r.path == path && r.method == method)
}

/// The `405` for a method a path does not have, with the methods it has (from the rules: a
/// method the router has and the table lacks is refused too).
fn method_not_allowed(path: &str) -> Response {
    let mut allow = Vec::new();
    for r in RULES.iter().filter(|r| r.path == path) {
        allow.push(r.method);
        if r.method == "GET" {
            allow.push("HEAD");
        }
    }
    let mut response = ApiError(ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    ))
    .into_response();
    if let Ok(v) = header::HeaderValue::from_str(&allow.join(",")) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
}

/// How many failed sign-ins one source address may make, and for how long it is then refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimit {
    /// Failures within `window` that stop the address.
    pub failures: u32,
    /// The window failures are counted in, and how long a stopped address waits.
    pub window: Duration,
}

impl Default for SignInLimit {
    fn default() -> Self {
        Self {
            failures: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// The most source addresses tracked at once (the oldest is forgotten first).
const MAX_TRACKED: usize = 65_536;

/// Failed sign-ins per source address (an IPv6 address by its /64: one host has them all).
#[derive(Debug, Default)]
pub(super) struct SignInLimiter {
    limit: SignInLimit,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

impl SignInLimiter {
    pub(super) fn new(limit: SignInLimit) -> Self {
        Self {
            limit,
            failures: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // A panic while holding the lock leaves counts that are still meaningful.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `ip` must still wait, if it is stopped.
    fn stopped(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let f = map.get(&source_key(ip))?;
        let end = f.since + self.limit.window;
        (f.count >= self.limit.failures && end > now).then(|| end - now)
    }

    fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        let key = source_key(ip);
        if !map.contains_key(&key) && map.len() >= MAX_TRACKED {
            let window = self.limit.window;
            map.retain(|_, f| f.since + window > now);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if entry.since + self.limit.window <= now {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count == self.limit.failures {
            tracing::warn!(source = %key, "too many failed sign-ins: the address waits");
        }
    }
}

fn forbidden(actor: &Actor, rule: Option<&RouteRule>) -> ApiError {
    let what = match rule.map(|r| r.permission) {
        Some(Permission::Read) | None => "call this route",
        Some(Permission::Accounts) => "change accounts",
        Some(Permission::Servers) => "change servers",
        Some(Permission::Audit) => "read the audit log",
        Some(Permission::Admins) => "manage administrators",
    };
    ApiError(ErrorBody::new(
        ErrorCode::Forbidden,
        format!("the {} role may not {what}", actor.role),
    ))
}

/// Middleware before every route behind the token: see the module's documentation.
pub(super) async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let source = req.extensions().get::<Connection>().map(Connection::source);
    if let Some(wait) = source.and_then(|ip| api.limiter.stopped(ip, Instant::now())) {
        let mut response = ApiError(ErrorBody::new(
            ErrorCode::TooManyRequests,
            "too many failed sign-ins from this address: try again later",
        ))
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let actor = match identify(&api, req.headers()).await {
        Ok(actor) => actor,
        Err(refused) => {
            if refused.0.error.code == ErrorCode::Unauthorized
                && let Some(ip) = source
            {
                api.limiter.failed(ip, Instant::now());
            }
            return refused.into_response();
        }
    };
    mark_authenticated(&req);
    let declared = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(rule) = rule_for(req.method(), &declared) else {
        if RULES.iter().any(|r| r.path == declared) {
            return method_not_allowed(&declared);
        }
        tracing::error!(method = %req.method(), path = declared, "a route without an access rule is refused");
        return forbidden(&actor, None).into_response();
    };
    if rule.action.is_none() {
        if !actor.role.may(rule.permission) {
            return forbidden(&actor, Some(rule)).into_response();
        }
        let mut req = req;
        req.extensions_mut().insert(actor);
        return next.run(req).await;
    }
    audited(&api, actor, rule, req, next).await
}

/// Who the request's token is: the configured admin token (compared in constant time), or a
/// stored administrator (looked up by the token's digest).
async fn identify(api: &Api, headers: &axum::http::HeaderMap) -> Result<Actor, ApiError> {
    let unauthorized = || {
        ApiError(ErrorBody::new(
            ErrorCode::Unauthorized,
            "missing or wrong token",
        ))
    };
    let Some(presented) = bearer(headers)? else {
        return Err(unauthorized());
    };
    if api.config.admin_token.verify(presented) {
        return Ok(Actor::configured());
    }
    match api.controller.administrator(presented).await? {
        Some(actor) => Ok(actor),
        None => Err(unauthorized()),
    }
}

/// Runs a change and records it.
async fn audited(
    api: &Api,
    actor: Actor,
    rule: &'static RouteRule,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let params = Path::<BTreeMap<String, String>>::from_request_parts(&mut parts, &())
        .await
        .map(|Path(p)| p)
        .unwrap_or_default();
    let object = params
        .get("id")
        .filter(|id| id.parse::<u64>().is_ok_and(|n| n.to_string() == **id))
        .map(|id| format!("{}:{id}", object_kind(rule.path)));
    let mut changes: BTreeMap<String, serde_json::Value> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "id")
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    for secret in rule.secrets {
        changes.insert((*secret).to_owned(), CHANGED.into());
    }
    let entry = |object: Option<String>, changes, result: String, status: u16| NewAuditEntry {
        time: api.controller.audit_time(),
        admin: actor.id,
        admin_name: actor.name.clone(),
        action: rule.action.unwrap_or_default().to_owned(),
        object: object.unwrap_or_default(),
        changes,
        result,
        status,
    };
    if !actor.role.may(rule.permission) {
        let refused = forbidden(&actor, Some(rule));
        record(api, entry(object, changes, "forbidden".into(), 403)).await;
        return refused.into_response();
    }
    let bytes = match read_body(api.config.max_body_bytes, &parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let (code, status) = (code_name(e.0.error.code), e.0.status());
            record(api, entry(object, changes, code, status)).await;
            return e.into_response();
        }
    };
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&bytes) {
        for (name, value) in fields {
            let shown = if public_value(&name, &value) {
                value
            } else {
                CHANGED.into()
            };
            changes.insert(name, shown);
        }
    }
    parts.extensions.insert(actor.clone());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a response to record it");
            record(api, entry(object, changes, "internal".into(), 500)).await;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let status = parts.status.as_u16();
    let answer: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let (object, result) = if parts.status.is_success() {
        let object = object.or_else(|| {
            answer
                .as_ref()
                .and_then(|a| a["id"].as_u64())
                .map(|id| format!("{}:{id}", object_kind(rule.path)))
        });
        (object, "ok".to_owned())
    } else {
        let code = answer
            .as_ref()
            .and_then(|a| a["error"]["code"].as_str())
            .unwrap_or("error")
            .to_owned();
        (object, code)
    };
    record(api, entry(object, changes, result, status)).await;
    Response::from_parts(parts, Body::from(body))
}

/// The kind of object a route's `{id}` names: `server`, `account`, `admin`, `job`.
fn object_kind(path: &str) -> &'static str {
    match path.trim_start_matches("/api/v1/").split('/').next() {
        Some("servers") => "server",
        Some("accounts") => "account",
        Some("admins") => "admin",
        Some("jobs") => "job",
        _ => "object",
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "error".to_owned())
}

async fn record(api: &Api, entry: NewAuditEntry) {
    let (action, object) = (entry.action.clone(), entry.object.clone());
    if let Err(e) = api.controller.record_audit(entry).await {
        tracing::error!(error = %e, action, object, "cannot record a change in the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_one_route_and_changes_are_named() {
        let mut seen = std::collections::HashSet::new();
        for r in RULES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            if r.method != "GET" {
                assert!(
                    r.action.is_some(),
                    "{} {} is not recorded",
                    r.method,
                    r.path
                );
            }
        }
    }

    #[test]
    fn only_public_values_are_shown() {
        use serde_json::json;
        assert!(public_value("hostname", &json!("web1.example.com")));
        assert!(public_value(
            "agent_url",
            &json!("https://web1.example.com:50000")
        ));
        assert!(!public_value(
            "agent_url",
            &json!("https://root:s3cret@web1.example.com")
        ));
        for secret in [
            "password",
            "agent_token",
            "private_key_pem",
            "token",
            "new_field",
        ] {
            assert!(!public_value(secret, &json!("x")), "{secret}");
        }
    }

    #[test]
    fn failed_sign_ins_stop_one_address_only() {
        let limiter = SignInLimiter::new(SignInLimit {
            failures: 3,
            window: Duration::from_secs(60),
        });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..2 {
            limiter.failed(a, t);
        }
        assert_eq!(limiter.stopped(a, t), None);
        limiter.failed(a, t);
        assert!(limiter.stopped(a, t).is_some());
        assert_eq!(limiter.stopped(b, t), None);
        // The window passes: the address may try again.
        assert_eq!(limiter.stopped(a, t + Duration::from_secs(61)), None);
        // One IPv6 host is one /64.
        let (c, d): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff:1".parse().unwrap(),
        );
        for _ in 0..3 {
            limiter.failed(c, t);
        }
        assert!(limiter.stopped(d, t).is_some());
        assert_eq!(limiter.stopped("2001:db8:0:1::1".parse().unwrap(), t), None);
    }
}
