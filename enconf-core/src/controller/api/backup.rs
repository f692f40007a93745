//! Backups and jobs: an account's snapshots, backup and restore jobs, and the jobs list.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{MAX_SMALL_BYTES, Shared, account_id, id_of};
use crate::domain::job::JobId;
use crate::http::{ApiError, ApiResult, json_body};
use crate::protocol::ErrorBody;
use crate::protocol::backup::{JobView, RestoreInput, SnapshotView};

fn accepted(job: JobView) -> Response {
    (StatusCode::ACCEPTED, axum::Json(job)).into_response()
}

/// The account's backups (finished backup sets), oldest first.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/backups", tag = "backups",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [SnapshotView]), (status = 404, body = ErrorBody)))]
pub(super) async fn list_backups(
    State(api): Shared,
    Path(id): Path<String>,
) -> ApiResult<Vec<SnapshotView>> {
    Ok(axum::Json(api.controller.backups(account_id(&id)?).await?))
}

/// Starts a backup of the account (a job): its web root, a dump of each database and its
/// Maildirs, into its repository on its backup server.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/backups", tag = "backups",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 202, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, description = "`job_running`: the account has a job", body = ErrorBody),
        (status = 422, description = "the account has no backup role", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn start_backup(
    State(api): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(
        api.controller.start_backup(account_id(&id)?).await?,
    ))
}

/// Starts a restore (a job) of the account's files, databases or mail (or one database or
/// mailbox) from one of its snapshots, into the account as it is now.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/backups/{snapshot}/restore", tag = "backups",
    request_body = RestoreInput,
    params(("id" = u64, Path, description = "account id"),
        ("snapshot" = String, Path, description = "a snapshot's id")),
    responses((status = 202, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, description = "`job_running`: the account has a job", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn restore(
    State(api): Shared,
    Path((id, snapshot)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: RestoreInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(accepted(
        api.controller.start_restore(id, &snapshot, &input).await?,
    ))
}

/// The jobs (of one account with `account_id`), newest first, one page at a time (`limit` 1 to 1,000, default 100; the next
/// page, of older jobs, is in the `Link` header).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    params(
        ("limit" = Option<u32>, Query, description = "jobs per page, 1 to 1,000 (default 100)"),
        ("after" = Option<String>, Query, description = "the cursor of the next page, from the `Link` header"),
        ("account_id" = Option<u64>, Query, description = "the jobs of this account"),
    ),
    responses((status = 200, body = [JobView],
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn list_jobs(
    State(api): Shared,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = super::list_query(raw.as_deref())?;
    let page = api.controller.jobs_page(&query).await?;
    super::page_response("/api/v1/jobs", &query, page)
}

/// One job: its status, progress and, when it failed, why.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = u64, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_job(State(api): Shared, Path(id): Path<String>) -> ApiResult<JobView> {
    let id = JobId(id_of(&id, "job")?);
    Ok(axum::Json(api.controller.job(id).await?))
}
