//! Who is signed in (`/api/v1/session`), administrators (`/api/v1/admins`) and the audit log
//! (`/api/v1/audit`).

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{MAX_SMALL_BYTES, Shared, created, id_of};
use crate::domain::admin::{Actor, AdminId, AuditEntry};
use crate::http::{ApiError, ApiResult, json_body};
use crate::protocol::ErrorBody;
use crate::protocol::admin::{AdminCreated, AdminInput, AdminPatch, AdminView, SessionView};

/// Who the token is and what their role may do.
#[utoipa::path(get, path = "/api/v1/session", tag = "admins",
    responses((status = 200, body = SessionView)))]
pub(super) async fn session(Extension(actor): Extension<Actor>) -> ApiResult<SessionView> {
    Ok(axum::Json(SessionView::from(&actor)))
}

/// The administrators, by id (owner only). Their tokens are never shown again.
#[utoipa::path(get, path = "/api/v1/admins", tag = "admins",
    responses((status = 200, body = [AdminView]), (status = 403, body = ErrorBody)))]
pub(super) async fn list_admins(State(api): Shared) -> ApiResult<Vec<AdminView>> {
    Ok(axum::Json(api.controller.admins().await?))
}

/// Adds an administrator (owner only). The answer holds their token, shown this once; the
/// controller keeps only its digest.
#[utoipa::path(post, path = "/api/v1/admins", tag = "admins", request_body = AdminInput,
    responses((status = 201, body = AdminCreated), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_admin(
    State(api): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: AdminInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(created(api.controller.create_admin(&input).await?))
}

fn admin_id(raw: &str) -> Result<AdminId, ApiError> {
    id_of(raw, "administrator").map(AdminId)
}

/// Changes an administrator's role (owner only).
#[utoipa::path(patch, path = "/api/v1/admins/{id}", tag = "admins", request_body = AdminPatch,
    params(("id" = u64, Path, description = "administrator id")),
    responses((status = 200, body = AdminView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn patch_admin(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<AdminView> {
    let id = admin_id(&id)?;
    let patch: AdminPatch = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(axum::Json(api.controller.patch_admin(id, &patch).await?))
}

/// Removes an administrator (owner only): their token is refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/admins/{id}", tag = "admins",
    params(("id" = u64, Path, description = "administrator id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_admin(
    State(api): Shared,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.controller.delete_admin(admin_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log, newest first, one page at a time (owner and admin): every change, who made
/// it, on what, the fields set (a secret as `"changed"`) and the result.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admins",
    params(
        ("limit" = Option<u32>, Query, description = "entries per page, 1 to 1,000 (default 100)"),
        ("after" = Option<String>, Query, description = "the cursor of the next page, from the `Link` header"),
        ("object" = Option<String>, Query, description = "the entries about one object: `server:3`, `account:12`, `admin:2`"),
        ("admin" = Option<u64>, Query, description = "the entries of one administrator (`0`: the configured admin token)"),
    ),
    responses((status = 200, body = [AuditEntry],
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn list_audit(
    State(api): Shared,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = super::list_query(raw.as_deref())?;
    let page = api.controller.audit_page(&query).await?;
    super::page_response("/api/v1/audit", &query, page)
}
