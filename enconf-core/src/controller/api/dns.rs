//! The dns role's paths: an account's zones and records.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{MAX_SMALL_BYTES, Shared, account_id, created};
use crate::controller::dns::path_zone;
use crate::domain::Rule;
use crate::http::{ApiError, ApiResult, json_body};
use crate::protocol::ErrorBody;
use crate::protocol::dns::{RecordInput, RecordView, ZonePatch, ZoneView};

/// A record id in a path.
fn record_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::from(ErrorBody::from(Rule::NotPositive.at("record_id"))))
}

/// The account's zones (one per registrable domain), each with its serial and whether every
/// dns server serves it.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/dns/zones", tag = "dns",
    params(("id" = u64, Path, description = "account id")),
    responses((status = 200, body = [ZoneView]), (status = 404, body = ErrorBody),
        (status = 422, description = "the account has no dns role", body = ErrorBody)))]
pub(super) async fn list_zones(
    State(api): Shared,
    Path(id): Path<String>,
) -> ApiResult<Vec<ZoneView>> {
    Ok(axum::Json(
        api.controller.dns_zones(account_id(&id)?).await?,
    ))
}

/// One zone with every record: enconf's (`managed`) and the account's own.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/dns/zones/{zone}", tag = "dns",
    params(("id" = u64, Path, description = "account id"),
        ("zone" = String, Path, description = "the zone's name")),
    responses((status = 200, body = ZoneView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn get_zone(
    State(api): Shared,
    Path((id, zone)): Path<(String, String)>,
) -> ApiResult<ZoneView> {
    let id = account_id(&id)?;
    let zone = path_zone(&zone)?;
    Ok(axum::Json(api.controller.dns_zone(id, &zone).await?))
}

/// Signs the zone (`{"dnssec": true}`; the answer carries the DS records for the registrar)
/// or stops signing it.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}/dns/zones/{zone}", tag = "dns",
    request_body = ZonePatch,
    params(("id" = u64, Path, description = "account id"),
        ("zone" = String, Path, description = "the zone's name")),
    responses((status = 200, body = ZoneView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, description = "a dns server of the zone is offline; nothing changed", body = ErrorBody)))]
pub(super) async fn patch_zone(
    State(api): Shared,
    Path((id, zone)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<ZoneView> {
    let id = account_id(&id)?;
    let zone = path_zone(&zone)?;
    let patch: ZonePatch = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(axum::Json(
        api.controller.patch_dns_zone(id, &zone, &patch).await?,
    ))
}

/// Adds a record of the account's own; every dns server of the zone serves it before the
/// answer, or none does.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/dns/zones/{zone}/records", tag = "dns",
    request_body = RecordInput,
    params(("id" = u64, Path, description = "account id"),
        ("zone" = String, Path, description = "the zone's name")),
    responses((status = 201, body = RecordView), (status = 404, body = ErrorBody),
        (status = 422, description = "`invalid`, naming the field (`name`, `type`, `ttl`, `content`, `priority`)", body = ErrorBody),
        (status = 502, body = ErrorBody),
        (status = 503, description = "a dns server of the zone is offline; nothing changed", body = ErrorBody)))]
pub(super) async fn create_record(
    State(api): Shared,
    Path((id, zone)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let zone = path_zone(&zone)?;
    let input: RecordInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    Ok(created(
        api.controller.add_dns_record(id, &zone, &input).await?,
    ))
}

/// Replaces a record of the account's own (managed records cannot be changed by hand).
#[utoipa::path(put, path = "/api/v1/accounts/{id}/dns/zones/{zone}/records/{record_id}", tag = "dns",
    request_body = RecordInput,
    params(("id" = u64, Path, description = "account id"),
        ("zone" = String, Path, description = "the zone's name"),
        ("record_id" = u64, Path, description = "the record's id")),
    responses((status = 200, body = RecordView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn put_record(
    State(api): Shared,
    Path((id, zone, record)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    let zone = path_zone(&zone)?;
    let record = record_id(&record)?;
    let input: RecordInput = json_body(api.limit(MAX_SMALL_BYTES), &headers, body).await?;
    let view = api
        .controller
        .change_dns_record(id, &zone, record, Some(&input))
        .await?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        view,
    )))
}

/// Deletes a record of the account's own.
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/dns/zones/{zone}/records/{record_id}", tag = "dns",
    params(("id" = u64, Path, description = "account id"),
        ("zone" = String, Path, description = "the zone's name"),
        ("record_id" = u64, Path, description = "the record's id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn delete_record(
    State(api): Shared,
    Path((id, zone, record)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = account_id(&id)?;
    let zone = path_zone(&zone)?;
    let record = record_id(&record)?;
    api.controller
        .change_dns_record(id, &zone, record, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
