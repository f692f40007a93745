//! The db role's paths: an account's databases and database users.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{MAX_SMALL_BYTES, Shared, account_id, created};
use crate::http::{ApiError, ApiResult, json_body};
use crate::protocol::ErrorBody;
use crate::protocol::db::{DatabaseInput, DatabaseView, DbUserInput, DbUserPatch, DbUserView};

/// A user's fields: 100 database names of 64 characters fit.
const MAX_DB_USER_BYTES: usize = 64 * 1024;

/// The account's databases, with their sizes.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/databases", tag = "databases",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [DatabaseView]), (status = 404, body = ErrorBody),
        (status = 422, description = "the account has no db role", body = ErrorBody)))]
pub(super) async fn list_databases(
    State(api): Shared,
    Path(id): Path<String>,
) -> ApiResult<Vec<DatabaseView>> {
    Ok(axum::Json(
        api.controller.databases(account_id(&id)?).await?,
    ))
}

/// Creates a database on the account's db server; its name takes the account's prefix.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/databases", tag = "databases",
    request_body = DatabaseInput,
    params(("id" = u64, Path, description = "account id")),
    responses((status = 201, body = DatabaseView), (status = 404, body = ErrorBody),
        (status = 409, description = "`duplicate`: the name is taken", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn create_database(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: DatabaseInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(created(api.controller.create_database(id, &input).await?))
}

/// Deletes a database and its data, and every user's grant on it.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/databases/{name}", tag = "databases",
    params(("id" = u64, Path, description = "account id"),
        ("name" = String, Path, description = "the database, with or without the prefix")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn delete_database(
    State(api): Shared,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.controller
        .delete_database(account_id(&id)?, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's database users (never a password or hash).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/database-users", tag = "databases",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [DbUserView]), (status = 404, body = ErrorBody),
        (status = 422, description = "the account has no db role", body = ErrorBody)))]
pub(super) async fn list_users(
    State(api): Shared,
    Path(id): Path<String>,
) -> ApiResult<Vec<DbUserView>> {
    Ok(axum::Json(api.controller.db_users(account_id(&id)?).await?))
}

/// Creates a database user with all privileges on some of the account's databases.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/database-users", tag = "databases",
    request_body = DbUserInput,
    params(("id" = u64, Path, description = "account id")),
    responses((status = 201, body = DbUserView), (status = 404, body = ErrorBody),
        (status = 409, description = "`duplicate`: the name is taken", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn create_user(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: DbUserInput = json_body(api.limit(MAX_DB_USER_BYTES), &headers, body).await?;
    Ok(created(api.controller.create_db_user(id, &input).await?))
}

/// Changes a database user's password and/or the databases it may use.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}/database-users/{name}", tag = "databases",
    request_body = DbUserPatch,
    params(("id" = u64, Path, description = "account id"),
        ("name" = String, Path, description = "the user, with or without the prefix")),
    responses((status = 200, body = DbUserView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn patch_user(
    State(api): Shared,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<DbUserView> {
    let id = account_id(&id)?;
    let patch: DbUserPatch = json_body(api.limit(MAX_DB_USER_BYTES), &headers, body).await?;
    Ok(axum::Json(
        api.controller.patch_db_user(id, &name, &patch).await?,
    ))
}

/// Deletes a database user: its open sessions end and it can no longer log in.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/database-users/{name}", tag = "databases",
    params(("id" = u64, Path, description = "account id"),
        ("name" = String, Path, description = "the user, with or without the prefix")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn delete_user(
    State(api): Shared,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.controller
        .delete_db_user(account_id(&id)?, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
