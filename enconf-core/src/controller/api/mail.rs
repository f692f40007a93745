//! The mail role's paths: an account's mailboxes, aliases and DKIM records.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{MAX_SMALL_BYTES, Shared, account_id, created};
use crate::http::{ApiError, ApiResult, json_body};
use crate::protocol::ErrorBody;
use crate::protocol::mail::{
    AliasInput, AliasView, DkimRecord, MailboxInput, MailboxPatch, MailboxView,
};

/// An alias's fields: 100 destinations of 318 characters fit.
const MAX_ALIAS_BYTES: usize = 64 * 1024;

/// The account's mailboxes.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/mailboxes", tag = "mail",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [MailboxView]), (status = 404, body = ErrorBody)))]
pub(super) async fn list_mailboxes(
    State(api): Shared,
    Path(id): Path<String>,
) -> ApiResult<Vec<MailboxView>> {
    Ok(axum::Json(
        api.controller.mailboxes(account_id(&id)?).await?,
    ))
}

/// Creates a mailbox on one of the account's domains; its password is kept only as a hash.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/mailboxes", tag = "mail",
    request_body = MailboxInput,
    params(("id" = u64, Path, description = "account id")),
    responses((status = 201, body = MailboxView), (status = 404, body = ErrorBody),
        (status = 409, description = "`duplicate`: the address is a mailbox or alias already", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(super) async fn create_mailbox(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: MailboxInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(created(api.controller.create_mailbox(id, &input).await?))
}

/// Changes a mailbox's password and/or quota.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}/mailboxes/{address}", tag = "mail",
    request_body = MailboxPatch,
    params(("id" = u64, Path, description = "account id"),
        ("address" = String, Path, description = "the mailbox's address")),
    responses((status = 200, body = MailboxView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(super) async fn patch_mailbox(
    State(api): Shared,
    Path((id, address)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<MailboxView> {
    let id = account_id(&id)?;
    let patch: MailboxPatch = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(axum::Json(
        api.controller.change_mailbox(id, &address, &patch).await?,
    ))
}

/// Deletes a mailbox; the mail server keeps its stored mail aside.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/mailboxes/{address}", tag = "mail",
    params(("id" = u64, Path, description = "account id"),
        ("address" = String, Path, description = "the mailbox's address")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub(super) async fn delete_mailbox(
    State(api): Shared,
    Path((id, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.controller
        .delete_mailbox(account_id(&id)?, &address)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's aliases.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/mail-aliases", tag = "mail",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [AliasView]), (status = 404, body = ErrorBody)))]
pub(super) async fn list_aliases(
    State(api): Shared,
    Path(id): Path<String>,
) -> ApiResult<Vec<AliasView>> {
    Ok(axum::Json(api.controller.aliases(account_id(&id)?).await?))
}

/// Creates an alias on one of the account's domains.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/mail-aliases", tag = "mail",
    request_body = AliasInput,
    params(("id" = u64, Path, description = "account id")),
    responses((status = 201, body = AliasView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub(super) async fn create_alias(
    State(api): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: AliasInput = json_body(api.limit(MAX_ALIAS_BYTES), &headers, body).await?;
    let (alias, _) = api.controller.put_alias(id, None, &input).await?;
    Ok(created(alias))
}

/// Creates or replaces the alias at `address`.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/mail-aliases/{address}", tag = "mail",
    request_body = AliasInput,
    params(("id" = u64, Path, description = "account id"),
        ("address" = String, Path, description = "the alias's address")),
    responses((status = 200, body = AliasView), (status = 201, body = AliasView),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(super) async fn put_alias(
    State(api): Shared,
    Path((id, address)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let input: AliasInput = json_body(api.limit(MAX_ALIAS_BYTES), &headers, body).await?;
    let (alias, new) = api.controller.put_alias(id, Some(&address), &input).await?;
    Ok(if new {
        created(alias)
    } else {
        axum::Json(alias).into_response()
    })
}

/// Deletes an alias.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/mail-aliases/{address}", tag = "mail",
    params(("id" = u64, Path, description = "account id"),
        ("address" = String, Path, description = "the alias's address")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub(super) async fn delete_alias(
    State(api): Shared,
    Path((id, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.controller
        .delete_alias(account_id(&id)?, &address)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The DKIM public record of each of the account's mail domains (publish each as a TXT
/// record).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/dkim", tag = "mail",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [DkimRecord]), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(super) async fn dkim(State(api): Shared, Path(id): Path<String>) -> ApiResult<Vec<DkimRecord>> {
    Ok(axum::Json(api.controller.dkim(account_id(&id)?).await?))
}
