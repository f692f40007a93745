//! `PUT /v1/token` and `POST /v1/token/commit`: the rotation of the agent's token
//! ([`crate::tokens`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use enconf_core::domain::AgentToken;
use enconf_core::http::{ApiResult, json_body, presented_token};
use enconf_core::protocol::ErrorBody;
use enconf_core::protocol::agent::{Applied, TokenPut};

use super::{Agent, internal};
use crate::system::System;

/// The body: one token, at most 512 characters.
const MAX_TOKEN_BYTES: usize = 4096;

fn presented(headers: &HeaderMap) -> Result<Vec<u8>, ErrorBody> {
    presented_token(headers)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| internal("the token of an authorized request is gone"))
}

/// `PUT /v1/token`: the agent accepts `token` beside the one this request presents.
pub(super) async fn put<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let put: TokenPut = json_body(agent.limit(MAX_TOKEN_BYTES), &headers, body).await?;
    let new = AgentToken::parse(&put.token).map_err(|r| ErrorBody::from(r.at("token")))?;
    let presented = presented(&headers)?;
    let agent2 = Arc::clone(&agent);
    let changed = tokio::task::spawn_blocking(move || {
        agent2.tokens.add(agent2.applier.system(), &presented, &new)
    })
    .await
    .map_err(|_| internal("storing the token failed"))?
    .map_err(|e| internal(&e.to_string()))?;
    if changed {
        tracing::info!("a new agent token is accepted beside the current one");
    }
    Ok(axum::Json(Applied { changed }))
}

/// `POST /v1/token/commit`: only the token this request presents is accepted from now on.
pub(super) async fn commit<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    headers: HeaderMap,
) -> ApiResult<Applied> {
    let presented = presented(&headers)?;
    let agent2 = Arc::clone(&agent);
    let changed = tokio::task::spawn_blocking(move || {
        agent2.tokens.keep_only(agent2.applier.system(), &presented)
    })
    .await
    .map_err(|_| internal("storing the token failed"))?
    .map_err(|e| internal(&e.to_string()))?;
    if changed {
        tracing::info!("the agent token was rotated: the old one is refused");
    }
    Ok(axum::Json(Applied { changed }))
}
