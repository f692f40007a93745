//! The Management API over HTTP (`/api/v1/…`, see `docs/API.md` in the repository): admin-token auth, JSON errors with
//! the field at fault, request size limits, one log line per request, and the OpenAPI document
//! at `/api/v1/openapi.json`, generated from these handlers and the protocol types.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;

use super::Controller;
use super::db::KeptData;
use crate::domain::{AccountId, AdminToken, ServerId};
use crate::http::{ApiError, ApiResult, json_body, log_request, method_not_allowed, not_found};
use crate::protocol::list::{ListQuery, Page};
use crate::protocol::{
    AccountInput, AccountPatch, AccountView, ErrorBody, ErrorCode, ErrorDetail, MigrateInput,
    Reconciliation, ServerInput, ServerPatch, ServerView, SslInput, SslState,
};
use crate::ssl::CertKind;

mod access;
mod admins;
mod backup;
mod db;
mod dns;
mod mail;

/// The default request body limit (1 MiB: a certificate chain with its key fits many times).
/// Operations that need less have their own, lower limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// A server's fields.
const MAX_SERVER_BYTES: usize = 16 * 1024;
/// An account's fields: 100 domains of 253 characters fit with room to spare.
const MAX_ACCOUNT_BYTES: usize = 64 * 1024;
/// A body of one or two small fields.
const MAX_SMALL_BYTES: usize = 4 * 1024;

pub use access::{RULES, RouteRule, SignInLimit, rule_for};

/// What the API needs besides the controller.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The configured admin token: an `owner`, beside the administrators kept in the store.
    pub admin_token: AdminToken,
    pub max_body_bytes: usize,
    /// Failed sign-ins one source address may make before it waits.
    pub sign_in_limit: SignInLimit,
}

impl ApiConfig {
    /// The defaults with this admin token.
    pub fn new(admin_token: AdminToken) -> Self {
        Self {
            admin_token,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sign_in_limit: SignInLimit::default(),
        }
    }
}

#[derive(Debug)]
struct Api {
    controller: Controller,
    config: ApiConfig,
    limiter: access::SignInLimiter,
}

type Shared = State<Arc<Api>>;

impl Api {
    /// The body limit of an operation that needs at most `needed` bytes (or the configured
    /// limit when it is lower).
    fn limit(&self, needed: usize) -> usize {
        needed.min(self.config.max_body_bytes)
    }
}

/// The Management API as a router: mount it at the root of a server.
pub fn router(controller: Controller, config: ApiConfig) -> Router {
    let limiter = access::SignInLimiter::new(config.sign_in_limit);
    let api = Arc::new(Api {
        controller,
        config,
        limiter,
    });
    let protected = Router::new()
        .route("/api/v1/session", get(admins::session))
        .route(
            "/api/v1/admins",
            get(admins::list_admins).post(admins::create_admin),
        )
        .route(
            "/api/v1/admins/{id}",
            axum::routing::patch(admins::patch_admin).delete(admins::delete_admin),
        )
        .route("/api/v1/audit", get(admins::list_audit))
        .route("/api/v1/servers", get(list_servers).post(add_server))
        .route(
            "/api/v1/servers/{id}",
            get(get_server).patch(patch_server).delete(delete_server),
        )
        .route("/api/v1/servers/{id}/check", post(check_server))
        .route("/api/v1/servers/{id}/install-script", get(install_script))
        .route("/api/v1/servers/{id}/reconcile", post(reconcile_server))
        .route("/api/v1/servers/{id}/update", post(update_server))
        .route("/api/v1/servers/{id}/rotate-token", post(rotate_token))
        .route("/api/v1/servers/{id}/ssl/{kind}", get(get_ssl).put(put_ssl))
        .route("/api/v1/accounts", get(list_accounts).post(create_account))
        .route(
            "/api/v1/accounts/{id}",
            get(get_account).patch(patch_account).delete(delete_account),
        )
        .route("/api/v1/accounts/{id}/migrate", post(migrate_account))
        .route(
            "/api/v1/accounts/{id}/backups",
            get(backup::list_backups).post(backup::start_backup),
        )
        .route(
            "/api/v1/accounts/{id}/backups/{snapshot}/restore",
            post(backup::restore),
        )
        .route("/api/v1/jobs", get(backup::list_jobs))
        .route("/api/v1/jobs/{id}", get(backup::get_job))
        .route(
            "/api/v1/accounts/{id}/mailboxes",
            get(mail::list_mailboxes).post(mail::create_mailbox),
        )
        .route(
            "/api/v1/accounts/{id}/mailboxes/{address}",
            axum::routing::patch(mail::patch_mailbox).delete(mail::delete_mailbox),
        )
        .route(
            "/api/v1/accounts/{id}/mail-aliases",
            get(mail::list_aliases).post(mail::create_alias),
        )
        .route(
            "/api/v1/accounts/{id}/mail-aliases/{address}",
            axum::routing::put(mail::put_alias).delete(mail::delete_alias),
        )
        .route("/api/v1/accounts/{id}/dkim", get(mail::dkim))
        .route("/api/v1/accounts/{id}/dns/zones", get(dns::list_zones))
        .route(
            "/api/v1/accounts/{id}/databases",
            get(db::list_databases).post(db::create_database),
        )
        .route(
            "/api/v1/accounts/{id}/databases/{name}",
            axum::routing::delete(db::delete_database),
        )
        .route(
            "/api/v1/accounts/{id}/database-users",
            get(db::list_users).post(db::create_user),
        )
        .route(
            "/api/v1/accounts/{id}/database-users/{name}",
            axum::routing::patch(db::patch_user).delete(db::delete_user),
        )
        .route(
            "/api/v1/accounts/{id}/dns/zones/{zone}",
            get(dns::get_zone).patch(dns::patch_zone),
        )
        .route(
            "/api/v1/accounts/{id}/dns/zones/{zone}/records",
            post(dns::create_record),
        )
        .route(
            "/api/v1/accounts/{id}/dns/zones/{zone}/records/{record_id}",
            axum::routing::put(dns::put_record).delete(dns::delete_record),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            access::guard,
        ));
    Router::new()
        .route("/", get(|| web(WEB_INDEX, "text/html; charset=utf-8")))
        .route(
            "/index.html",
            get(|| web(WEB_INDEX, "text/html; charset=utf-8")),
        )
        .route(
            "/app.js",
            get(|| web(WEB_APP, "text/javascript; charset=utf-8")),
        )
        .route(
            "/style.css",
            get(|| web(WEB_STYLE, "text/css; charset=utf-8")),
        )
        .route("/favicon.svg", get(|| web(WEB_ICON, "image/svg+xml")))
        .route("/favicon.ico", get(|| web(WEB_ICON, "image/svg+xml")))
        .route("/api/v1/openapi.json", get(openapi_json))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(api)
}

/// The web page (Settings > Servers), embedded in the binary: no build step, no files to find.
const WEB_INDEX: &str = include_str!("../web/index.html");
const WEB_APP: &str = include_str!("../web/app.js");
const WEB_STYLE: &str = include_str!("../web/style.css");
const WEB_ICON: &str = include_str!("../web/favicon.svg");

/// A file of the web page. It needs no token (the page asks for it and sends it to the API);
/// scripts and styles come from this origin only.
async fn web(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The OpenAPI 3 document of the Management API: what the handlers and protocol types
/// declare, refined with what the derive cannot say (the input rules and the shared
/// responses, added by `refine`).
pub fn openapi() -> Result<serde_json::Value, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    refine(&mut doc);
    Ok(doc)
}

/// The input fields' types as the server takes them: which are required and never `null`,
/// the values a field takes and its bounds (merged into the derived property schemas).
/// Rules that JSON Schema cannot state exactly (domain names with IDNA, URLs, reserved user
/// names, certificates) are left to the server, which answers `422` naming the field.
fn input_rules() -> Vec<(&'static str, &'static [&'static str], serde_json::Value)> {
    use serde_json::json;
    let roles = json!({"type": "array", "minItems": 1, "uniqueItems": true,
        "items": {"type": "string", "enum": ["web", "mail", "dns", "db", "backup"]}});
    let server = json!({
        "name": {"type": "string", "minLength": 1, "maxLength": crate::domain::ServerName::MAX_CHARS},
        "hostname": {"type": "string", "format": "idn-hostname", "minLength": 1},
        "mail_hostname": {"type": ["string", "null"], "format": "idn-hostname"},
        "agent_url": {"type": "string", "format": "uri", "minLength": 1},
        "agent_token": {"type": "string", "minLength": 16, "maxLength": 512, "pattern": "^[!-~]+$"},
        "roles": roles,
        "max_accounts": {"type": ["integer", "null"], "minimum": 1, "maximum": u32::MAX},
    });
    let mut patch = server.clone();
    patch["active"] = json!({"type": "boolean"});
    let bound = |r: std::ops::RangeInclusive<u32>| json!({"type": ["integer", "null"], "minimum": r.start(), "maximum": r.end()});
    use crate::domain::PhpSettings as P;
    let php = json!({
        "memory_limit_mb": bound(P::MEMORY_LIMIT_MB),
        "upload_max_mb": bound(P::UPLOAD_MAX_MB),
        "max_execution_time_s": bound(P::MAX_EXECUTION_TIME_S),
        "max_children": bound(P::MAX_CHILDREN),
    });
    let domains = json!({"type": "array", "minItems": 1, "maxItems": 100,
        "items": {"type": "string", "format": "idn-hostname", "minLength": 1}});
    let php_version = json!({"type": ["string", "null"], "pattern": "^[5-9]\\.(0|[1-9][0-9]?)$"});
    // Letters, digits, `.-_+` before the `@` (no dot at either end, no `..`), a domain after.
    let address = json!({"type": "string", "maxLength": 64 + 1 + 253,
        "pattern": "^[A-Za-z0-9_+-]+(\\.[A-Za-z0-9_+-]+)*@[^@\\s]+$"});
    let password = json!({"type": "string", "minLength": crate::domain::MIN_PASSWORD_LEN,
        "maxLength": crate::domain::MAX_PASSWORD_LEN, "writeOnly": true,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"});
    let quota = json!({"type": ["integer", "null"], "minimum": 1,
        "maximum": crate::domain::QuotaMb::MAX});
    vec![
        (
            "ServerInput",
            &["name", "hostname", "agent_url", "agent_token", "roles"],
            server,
        ),
        ("ServerPatch", &[], patch),
        (
            "AccountInput",
            &["username", "domains"],
            json!({
                "username": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"},
                "domains": domains,
                "php_version": php_version,
                "server_id": {"type": ["integer", "null"], "minimum": 0},
                "roles": {"type": ["array", "null"], "minItems": 1, "uniqueItems": true,
                    "items": {"type": "string", "enum": ["web", "mail", "dns", "db", "backup"]}},
                "servers": {"type": ["object", "null"], "additionalProperties": false,
                    "properties": {
                        "web": {"type": "integer", "minimum": 0},
                        "mail": {"type": "integer", "minimum": 0},
                        "db": {"type": "integer", "minimum": 0},
                        "backup": {"type": "integer", "minimum": 0},
                    }},
            }),
        ),
        (
            "AccountPatch",
            &[],
            json!({"domains": domains, "php_version": php_version}),
        ),
        ("PhpInput", &[], php),
        (
            "MigrateInput",
            &["target_server_id"],
            json!({"target_server_id": {"type": "integer", "minimum": 0}}),
        ),
        (
            "SslInput",
            &["mode"],
            json!({"mode": {"type": "string", "enum": ["letsencrypt", "custom", "selfsigned"]}}),
        ),
        (
            "MailboxInput",
            &["address", "password"],
            json!({"address": address, "password": password, "quota_mb": quota}),
        ),
        (
            "MailboxPatch",
            &[],
            json!({"password": password, "quota_mb": quota}),
        ),
        (
            "AliasInput",
            &["destinations"],
            json!({"address": address,
                "destinations": {"type": "array", "minItems": 1, "maxItems": 100,
                    "uniqueItems": true, "items": address}}),
        ),
    ]
}

/// Adds to the derived document what every operation shares and what the input rules say:
/// `400` (a body that is not JSON of the right shape, two `Authorization` headers) and `401`
/// on every operation that needs the token, `408` and `413` on every one with a body; the
/// certificate kind's two values; and [`input_rules`].
fn refine(doc: &mut serde_json::Value) {
    use serde_json::json;
    let error = |description: &str| {
        json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (_, op) in item.iter_mut() {
                let has_body = op.get("requestBody").is_some();
                let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut())
                else {
                    continue;
                };
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status)
                        .or_insert_with(|| error(description));
                };
                if path != "/api/v1/openapi.json" {
                    add(
                        "400",
                        "`bad_request`: the body is not JSON of the right shape, or the request has two Authorization headers",
                    );
                    add("401", "`unauthorized`: the admin token is missing or wrong");
                    add(
                        "403",
                        "`forbidden`: the administrator's role may not do this (see the route table in docs/API.md)",
                    );
                    add(
                        "429",
                        "`too_many_requests`: too many failed sign-ins from this address; wait `Retry-After` seconds",
                    );
                    add(
                        "503",
                        "`store_unavailable`: the controller's store cannot be reached now (try again); `agent_offline`: a server the operation needs is unreachable",
                    );
                }
                if has_body {
                    add(
                        "408",
                        "`request_timeout`: the body stalled or took too long",
                    );
                    add(
                        "413",
                        "`payload_too_large`: the body is larger than the operation takes",
                    );
                }
                if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                    for param in params {
                        if param["name"] == "kind" {
                            param["schema"] = json!({"type": "string", "enum": ["panel", "mail"]});
                        }
                    }
                }
            }
        }
    }
    for (schema, required, properties) in input_rules() {
        let target = &mut doc["components"]["schemas"][schema];
        if let (Some(target), Some(properties)) =
            (target["properties"].as_object_mut(), properties.as_object())
        {
            for (name, rule) in properties {
                if let (Some(prop), Some(rule)) = (
                    target.get_mut(name).and_then(|p| p.as_object_mut()),
                    rule.as_object(),
                ) {
                    for (k, v) in rule {
                        prop.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if !required.is_empty() {
            target["required"] = json!(required);
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "enconf Management API",
        description = "Servers and hosting accounts of the enconf controller. Every path but this \
                       document needs `Authorization: Bearer <admin token>`."
    ),
    paths(
        list_servers,
        add_server,
        get_server,
        patch_server,
        delete_server,
        check_server,
        install_script,
        reconcile_server,
        update_server,
        rotate_token,
        get_ssl,
        put_ssl,
        list_accounts,
        create_account,
        get_account,
        patch_account,
        delete_account,
        migrate_account,
        mail::list_mailboxes,
        mail::create_mailbox,
        mail::patch_mailbox,
        mail::delete_mailbox,
        mail::list_aliases,
        mail::create_alias,
        mail::put_alias,
        mail::delete_alias,
        mail::dkim,
        dns::list_zones,
        dns::get_zone,
        dns::patch_zone,
        dns::create_record,
        dns::put_record,
        dns::delete_record,
        db::list_databases,
        db::create_database,
        db::delete_database,
        db::list_users,
        db::create_user,
        db::patch_user,
        db::delete_user,
        backup::list_backups,
        backup::start_backup,
        backup::restore,
        backup::list_jobs,
        backup::get_job,
        admins::session,
        admins::list_admins,
        admins::create_admin,
        admins::patch_admin,
        admins::delete_admin,
        admins::list_audit,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, SslState, SslInput, crate::domain::admin::AdminRole)),
    modifiers(&BearerAuth),
    security(("admin_token" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

async fn openapi_json() -> Response {
    match openapi() {
        Ok(json) => axum::Json(json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            ApiError(ErrorBody::new(ErrorCode::Internal, "no OpenAPI document")).into_response()
        }
    }
}

/// An id from the path; anything but a number names no object (`404`).
fn id_of(raw: &str, kind: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| {
        ApiError(ErrorBody::new(
            ErrorCode::NotFound,
            format!("{kind} {raw:?} does not exist"),
        ))
    })
}

fn server_id(raw: &str) -> Result<ServerId, ApiError> {
    id_of(raw, "server").map(ServerId)
}

fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    id_of(raw, "account").map(AccountId)
}

fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

/// The query string of a list, each parameter once; an unknown or repeated one is a 422
/// naming it.
pub(super) fn list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    serde_urlencoded::from_str::<ListQuery>(raw.unwrap_or_default()).map_err(|e| {
        let text = e.to_string();
        let field = text
            .split('`')
            .nth(1)
            .filter(|f| f.len() <= 64)
            .map(str::to_owned);
        let body = ErrorBody::new(ErrorCode::Invalid, format!("the query string: {text}"));
        ApiError(match field {
            Some(f) => body.with_field(f),
            None => body,
        })
    })
}

/// A page as the answer: the items, and `Link: <…>; rel="next"` with the same query and the
/// next cursor when there is a next page.
pub(super) fn page_response<T: serde::Serialize>(
    path: &str,
    query: &ListQuery,
    page: Page<T>,
) -> Result<Response, ApiError> {
    let mut response = axum::Json(page.items).into_response();
    if let Some(next) = page.next {
        let limit = query.paging()?.limit.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![("limit", &limit), ("after", &next)];
        for (name, value) in [
            ("server_id", &query.server_id),
            ("role", &query.role),
            ("q", &query.q),
            ("account_id", &query.account_id),
            ("object", &query.object),
            ("admin", &query.admin),
        ] {
            if let Some(v) = value {
                pairs.push((name, v));
            }
        }
        let encoded = serde_urlencoded::to_string(&pairs)
            .map_err(|e| ApiError(ErrorBody::new(ErrorCode::Internal, e.to_string())))?;
        let link = format!("<{path}?{encoded}>; rel=\"next\"");
        let value = header::HeaderValue::from_str(&link)
            .map_err(|e| ApiError(ErrorBody::new(ErrorCode::Internal, e.to_string())))?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// The servers, one page at a time (`limit` 1 to 1,000, default 100; the next page's
/// address is in the `Link` header).
#[utoipa::path(get, path = "/api/v1/servers", tag = "servers",
    params(
        ("limit" = Option<u32>, Query, description = "servers per page, 1 to 1,000 (default 100)"),
        ("after" = Option<String>, Query, description = "the cursor of the next page, from the `Link` header"),
    ),
    responses((status = 200, body = [ServerView],
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_servers(State(api): Shared, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query = list_query(raw.as_deref())?;
    let page = api.controller.servers_page(&query).await?;
    page_response("/api/v1/servers", &query, page)
}

/// Adds a server; its agent is checked at once.
#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = ServerInput,
    responses((status = 201, body = ServerView), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn add_server(
    State(api): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: ServerInput = json_body(api.limit(MAX_SERVER_BYTES), &headers, body).await?;
    Ok(created(api.controller.add_server(&input).await?))
}

/// One server.
#[utoipa::path(get, path = "/api/v1/servers/{id}", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody)))]
async fn get_server(State(api): Shared, Path(id): Path<String>) -> ApiResult<ServerView> {
    Ok(axum::Json(api.controller.server(server_id(&id)?).await?))
}

/// Changes some fields of a server. `agent_token` is changed only when given. A new
/// `roundcube_path` of a mail server is put in use by its agent first (refused: nothing
/// recorded).
#[utoipa::path(patch, path = "/api/v1/servers/{id}", tag = "servers", request_body = ServerPatch,
    params(("id" = u64, Path, description = "server id")),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, description = "the mail server refused the webmail path", body = ErrorBody),
        (status = 503, description = "`agent_offline`: the mail server cannot be reached", body = ErrorBody)))]
async fn patch_server(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<ServerView> {
    let id = server_id(&id)?;
    let patch: ServerPatch = json_body(api.limit(MAX_SERVER_BYTES), &headers, body).await?;
    Ok(axum::Json(api.controller.patch_server(id, &patch).await?))
}

/// Deletes a server that hosts no accounts.
#[utoipa::path(delete, path = "/api/v1/servers/{id}", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, description = "`server_has_accounts`: migrate or delete them first", body = ErrorBody)))]
async fn delete_server(State(api): Shared, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    api.controller.delete_server(server_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a server's agent now.
#[utoipa::path(post, path = "/api/v1/servers/{id}/check", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody)))]
async fn check_server(State(api): Shared, Path(id): Path<String>) -> ApiResult<ServerView> {
    Ok(axum::Json(
        api.controller.check_server(server_id(&id)?).await?,
    ))
}

/// Gives the server's agent a new random token, without a moment in which the controller
/// cannot reach it (the agent takes the new token before the old one is dropped).
#[utoipa::path(post, path = "/api/v1/servers/{id}/rotate-token", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody),
        (status = 502, description = "the agent refused the new token: nothing changed", body = ErrorBody),
        (status = 503, description = "`agent_offline`", body = ErrorBody)))]
async fn rotate_token(State(api): Shared, Path(id): Path<String>) -> ApiResult<ServerView> {
    Ok(axum::Json(
        api.controller.rotate_token(server_id(&id)?).await?,
    ))
}

/// Has the server's agent upgrade its package to the newest version known (a job).
#[utoipa::path(post, path = "/api/v1/servers/{id}/update", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 202, body = crate::protocol::backup::JobView), (status = 404, body = ErrorBody),
        (status = 409, description = "`up_to_date`: the agent is at the newest version known or newer; `job_running`: an update of the server runs", body = ErrorBody),
        (status = 503, description = "`agent_offline`", body = ErrorBody)))]
async fn update_server(State(api): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let job = api.controller.update_server(server_id(&id)?).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}

/// The shell script that installs and connects the server's agent.
#[utoipa::path(get, path = "/api/v1/servers/{id}/install-script", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 200, content_type = "text/x-shellscript", body = String),
        (status = 404, body = ErrorBody)))]
async fn install_script(State(api): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let script = api.controller.install_script(server_id(&id)?).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
            // It carries the agent's secret.
            (header::CACHE_CONTROL, "no-store"),
        ],
        script,
    )
        .into_response())
}

/// Compares the accounts the server's agent has with those recorded, and sets their status.
#[utoipa::path(post, path = "/api/v1/servers/{id}/reconcile", tag = "servers",
    params(("id" = u64, Path, description = "server id")),
    responses((status = 200, body = Reconciliation), (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn reconcile_server(State(api): Shared, Path(id): Path<String>) -> ApiResult<Reconciliation> {
    Ok(axum::Json(api.controller.reconcile(server_id(&id)?).await?))
}

fn cert_kind(raw: &str) -> Result<CertKind, ApiError> {
    raw.parse().map_err(|()| {
        ApiError(ErrorBody::new(
            ErrorCode::NotFound,
            format!("no certificate {raw:?}: panel or mail"),
        ))
    })
}

/// A server's panel or mail certificate.
#[utoipa::path(get, path = "/api/v1/servers/{id}/ssl/{kind}", tag = "ssl",
    params(("id" = u64, Path, description = "server id"),
        ("kind" = String, Path, description = "`panel` (hostname) or `mail` (mail hostname)")),
    responses((status = 200, body = SslState), (status = 404, body = ErrorBody)))]
async fn get_ssl(
    State(api): Shared,
    Path((id, kind)): Path<(String, String)>,
) -> ApiResult<SslState> {
    let (id, kind) = (server_id(&id)?, cert_kind(&kind)?);
    Ok(axum::Json(api.controller.ssl(id, kind).await?))
}

/// Sets how a server's certificate is obtained and obtains it: `custom` and `selfsigned` are
/// installed before the answer; `letsencrypt` answers `pending` and is issued in the background.
#[utoipa::path(put, path = "/api/v1/servers/{id}/ssl/{kind}", tag = "ssl", request_body = SslInput,
    params(("id" = u64, Path, description = "server id"),
        ("kind" = String, Path, description = "`panel` (hostname) or `mail` (mail hostname)")),
    responses((status = 200, body = SslState), (status = 404, body = ErrorBody),
        (status = 422, description = "the certificate or key, naming the field", body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn put_ssl(
    State(api): Shared,
    Path((id, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<SslState> {
    let (id, kind) = (server_id(&id)?, cert_kind(&kind)?);
    let input: SslInput = json_body(api.config.max_body_bytes, &headers, body).await?;
    Ok(axum::Json(api.controller.set_ssl(id, kind, &input).await?))
}

/// The accounts, one page at a time, by id: all of them, or those of a server, with a role,
/// or whose user name or a domain starts with `q`. The next page's address is in the `Link`
/// header.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    params(
        ("limit" = Option<u32>, Query, description = "accounts per page, 1 to 1,000 (default 100)"),
        ("after" = Option<String>, Query, description = "the cursor of the next page, from the `Link` header"),
        ("server_id" = Option<u64>, Query, description = "accounts using this server (with `role`: for that role)"),
        ("role" = Option<String>, Query, description = "accounts with this role"),
        ("q" = Option<String>, Query, description = "user name or domain prefix"),
    ),
    responses((status = 200, body = [AccountView],
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_accounts(State(api): Shared, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query = list_query(raw.as_deref())?;
    let page = api.controller.accounts_page(&query).await?;
    page_response("/api/v1/accounts", &query, page)
}

/// Creates an account, on the named server or where placement puts it, and sets it up there.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = AccountInput,
    responses((status = 201, body = AccountView), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, description = "`agent_offline`: nothing was done", body = ErrorBody)))]
async fn create_account(
    State(api): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: AccountInput = json_body(api.limit(MAX_ACCOUNT_BYTES), &headers, body).await?;
    Ok(created(api.controller.create_account(&input).await?))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = AccountView), (status = 404, body = ErrorBody)))]
async fn get_account(State(api): Shared, Path(id): Path<String>) -> ApiResult<AccountView> {
    Ok(axum::Json(api.controller.account(account_id(&id)?).await?))
}

/// Changes an account's domains, PHP version or PHP limits on every server it uses; nothing
/// changes when a server refuses.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", request_body = AccountPatch,
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = AccountView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn patch_account(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<AccountView> {
    let id = account_id(&id)?;
    let patch: AccountPatch = json_body(api.limit(MAX_ACCOUNT_BYTES), &headers, body).await?;
    Ok(axum::Json(api.controller.patch_account(id, &patch).await?))
}

/// Deletes an account on its servers, then from the records. Its databases and database
/// users stay on the db server until a final backup of them exists: then the answer is 200
/// and says what was kept.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 204, description = "deleted; nothing kept"),
        (status = 200, description = "deleted; its databases are kept", body = KeptData),
        (status = 404, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn delete_account(State(api): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(
        match api.controller.delete_account(account_id(&id)?).await? {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(kept) => (StatusCode::OK, axum::Json(kept)).into_response(),
        },
    )
}

/// Moves an account's web role to another server, as a job: set up on the target, the site's
/// files copied (through the account's backup repository when it has the backup role), taken
/// off the source, the records (DNS, database grants) following.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/migrate", tag = "accounts",
    request_body = MigrateInput,
    params(("id" = u64, Path, description = "account id")),
    responses((status = 202, body = crate::protocol::backup::JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn migrate_account(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: MigrateInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    let job = api.controller.start_migrate(id, &input).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}
