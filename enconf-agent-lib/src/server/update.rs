//! `GET`/`POST /v1/update`: the agent's self-upgrade ([`crate::upgrade`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enconf_core::http::{ApiError, ApiResult};
use enconf_core::protocol::agent::UpgradeState;
use enconf_core::protocol::{ErrorBody, ErrorCode};

use super::{Agent, internal};
use crate::system::System;
use crate::upgrade::{self, UpgradeError};

/// `GET /v1/update`: how the last upgrade went.
pub(super) async fn state<S: System>(
    State(agent): State<Arc<Agent<S>>>,
) -> ApiResult<UpgradeState> {
    let applier = Arc::clone(&agent.applier);
    let state = tokio::task::spawn_blocking(move || {
        upgrade::state(applier.system(), &applier.layout().state_dir)
    })
    .await
    .map_err(|_| internal("reading the upgrade's state failed"))?
    .map_err(|e| internal(&e.to_string()))?;
    Ok(axum::Json(state))
}

/// `POST /v1/update`: starts upgrading the agent's package; `202` with the state, `409
/// job_running` when an upgrade runs already.
pub(super) async fn start<S: System>(
    State(agent): State<Arc<Agent<S>>>,
) -> Result<Response, ApiError> {
    let applier = Arc::clone(&agent.applier);
    let started = tokio::task::spawn_blocking(move || {
        upgrade::start(applier.system(), &applier.layout().state_dir)
    })
    .await
    .map_err(|_| internal("starting the upgrade failed"))?;
    match started {
        Ok(state) => Ok((StatusCode::ACCEPTED, axum::Json(state)).into_response()),
        Err(e @ UpgradeError::Running) => {
            Err(ErrorBody::new(ErrorCode::JobRunning, e.to_string()).into())
        }
        Err(UpgradeError::System(e)) => Err(internal(&e.to_string()).into()),
    }
}
