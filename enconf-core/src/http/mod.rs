//! HTTP plumbing the controller API and the agent API share: errors as JSON responses, bearer
//! token checks, size- and time-limited JSON bodies, one log line per request, and serving a
//! router (over TLS when configured) within connection limits, with graceful shutdown.

mod serve;
mod tls;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::domain::AgentToken;
use crate::protocol::{ErrorBody, ErrorCode};

pub use serve::{Connection, ConnectionLimits, mark_authenticated, serve};
pub use tls::{ServeError, tls_acceptor, tls_acceptor_requiring_clients};

/// A body that sends nothing for this long is abandoned (`408`), and its buffer freed.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A body must have arrived whole within this long (`408`).
pub const BODY_TOTAL_TIMEOUT: Duration = Duration::from_secs(120);

/// An [`ErrorBody`] as a response, with the status its code calls for.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}

impl<E: Into<ErrorBody>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// The answer of a JSON handler.
pub type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// The `404` for a path no route matches.
pub async fn not_found() -> ApiError {
    ApiError(ErrorBody::new(ErrorCode::NotFound, "no such path"))
}

/// The `405` for a method a path does not have (the router adds the `Allow` header).
pub async fn method_not_allowed() -> ApiError {
    ApiError(ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    ))
}

/// Checks `Authorization: Bearer <token>` (the scheme in any case, one or more spaces after
/// it, as RFC 9110 says) against `token` in constant time, and marks the request's connection
/// authenticated when it matches. Two `Authorization` headers are refused (`400`): which one
/// would count is ambiguous. The presented value is never logged.
pub fn authorize(req: &Request, token: &impl BearerSecret) -> Result<(), ApiError> {
    let presented = bearer(req.headers())?;
    if !presented.is_some_and(|p| token.verify(p)) {
        return Err(ApiError(ErrorBody::new(
            ErrorCode::Unauthorized,
            "missing or wrong token",
        )));
    }
    mark_authenticated(req);
    Ok(())
}

/// The credentials of the request's one `Authorization: Bearer …` header (`None`: no header,
/// or not a bearer token). Two `Authorization` headers are refused (`400`): which one would
/// count is ambiguous.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&[u8]>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return Err(ApiError(ErrorBody::new(
            ErrorCode::BadRequest,
            "more than one Authorization header",
        )));
    }
    Ok(first.and_then(|v| bearer_credentials(v.as_bytes())))
}

/// A secret a request presents as `Authorization: Bearer …`, compared in constant time.
pub trait BearerSecret {
    fn verify(&self, presented: &[u8]) -> bool;
}

impl BearerSecret for AgentToken {
    fn verify(&self, presented: &[u8]) -> bool {
        AgentToken::verify(self, presented)
    }
}

impl BearerSecret for crate::domain::AdminToken {
    fn verify(&self, presented: &[u8]) -> bool {
        crate::domain::AdminToken::verify(self, presented)
    }
}

/// The token a request presents (`Authorization: Bearer …`), for a handler behind
/// [`authorize`] that needs to know which of several accepted tokens it was.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer_credentials(v.as_bytes()))
}

/// The credentials of a `Bearer` authorization value.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

/// Middleware: one log line per request with method, path, status and duration (whole
/// milliseconds). Reads that succeed are logged at DEBUG (a page polling every few seconds
/// would fill the log); changes and every error at INFO. Never headers, never bodies (they
/// carry tokens and keys).
pub async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis();
    let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
    if read && status < 400 {
        tracing::debug!(%method, path, status, ms, "request");
    } else {
        tracing::info!(%method, path, status, ms, "request");
    }
    response
}

/// Reads a JSON body of at most `limit` bytes (each operation passes what it needs): `413` over
/// it, `408` when the body stalls for [`BODY_IDLE_TIMEOUT`] or takes longer than
/// [`BODY_TOTAL_TIMEOUT`] (what was read is dropped at once), `400` when it is not JSON of the
/// right shape.
pub async fn json_body<T: DeserializeOwned>(
    limit: usize,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(limit, headers, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ErrorBody::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")).into()
    })
}

/// The bytes of a body, within `limit` and the body timeouts.
pub async fn read_body(
    limit: usize,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large().into());
    }
    let deadline = tokio::time::Instant::now() + BODY_TOTAL_TIMEOUT;
    let mut collected = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    loop {
        let idle = tokio::time::Instant::now() + BODY_IDLE_TIMEOUT;
        let frame = match tokio::time::timeout_at(idle.min(deadline), body.frame()).await {
            Err(_) => {
                return Err(ErrorBody::new(
                    ErrorCode::RequestTimeout,
                    "the body did not arrive in time",
                )
                .into());
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("cannot read the body: {e}"),
                )
                .into());
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(too_large().into());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}
