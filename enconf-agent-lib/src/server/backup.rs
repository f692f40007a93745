//! The agent's backup paths: an account's repository and pruning (the backup server), backups
//! and restores of what this server holds of an account, and the tasks that run them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use enconf_core::domain::{Role, UserName};
use enconf_core::http::{ApiResult, json_body};
use enconf_core::protocol::backup::{
    BackupRun, PruneRun, RepositoryInfo, RestoreRun, SetsKept, TaskView,
};
use enconf_core::protocol::{ErrorBody, ErrorCode};

use super::{Agent, apply_error, internal};
use crate::apply::ApplyError;
use crate::backup::BackupError;
use crate::system::System;

/// A backup or restore body: a repository, a few flags, at most 1,000 database names.
const MAX_RUN_BYTES: usize = 128 * 1024;

fn user(name: &str) -> Result<UserName, ErrorBody> {
    UserName::parse(name).map_err(|r| ErrorBody::from(r.at("username")))
}

fn serves<S: System>(agent: &Agent<S>, role: Role) -> Result<(), ErrorBody> {
    match agent.applier.served().contains(role) {
        true => Ok(()),
        false => Err(apply_error(ApplyError::RoleNotServed { role })),
    }
}

fn failed(e: BackupError) -> ErrorBody {
    ErrorBody::new(ErrorCode::AgentError, e.to_string())
}

fn accepted(task: TaskView) -> Response {
    (StatusCode::ACCEPTED, axum::Json(task)).into_response()
}

/// `GET /v1/backup/{username}` (backup role): where the account's servers reach its
/// repository. The account must be installed here with the backup role.
pub(super) async fn repository<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
) -> ApiResult<RepositoryInfo> {
    serves(&agent, Role::Backup)?;
    let user = user(&username)?;
    let applier = Arc::clone(&agent.applier);
    let check = user.clone();
    let spec = tokio::task::spawn_blocking(move || applier.installed_spec(&check))
        .await
        .map_err(|_| internal("reading the account failed"))?
        .map_err(apply_error)?;
    if !spec.roles.contains(Role::Backup) {
        return Err(apply_error(ApplyError::UnknownAccount(user)).into());
    }
    Ok(axum::Json(RepositoryInfo {
        url: crate::backup::repository_url(agent.applier.layout(), &agent.hostname, &user),
    }))
}

/// `POST /v1/backup/{username}/prune` (backup role): forgets and prunes by the retention
/// policy in the body; answers the sets left.
pub(super) async fn prune<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<SetsKept> {
    serves(&agent, Role::Backup)?;
    let user = user(&username)?;
    let run: PruneRun = json_body(agent.limit(MAX_RUN_BYTES), &headers, body).await?;
    let layout = agent.applier.layout();
    let dir = agent
        .applier
        .system()
        .data_path(&layout.backup_dir.join(user.as_str()));
    let restic = layout.restic_bin.clone();
    let kept = tokio::task::spawn_blocking(move || crate::backup::prune(&restic, &dir, &run))
        .await
        .map_err(|_| internal("pruning failed"))?
        .map_err(failed)?;
    Ok(axum::Json(kept))
}

/// Starts `work` as a task on what this server holds of the account in the path, with the
/// body `T` (whose repository must be the account's).
async fn start<S: System, T: serde::de::DeserializeOwned + Send + 'static>(
    agent: &Agent<S>,
    username: &str,
    headers: &HeaderMap,
    body: Body,
    repository: impl Fn(&T) -> &enconf_core::protocol::backup::Repository,
    work: impl FnOnce(
        &crate::backup::Tools,
        &crate::backup::Places,
        &UserName,
        &T,
        &crate::backup::Progress,
    ) -> Result<(), BackupError>
    + Send
    + 'static,
) -> Result<Response, enconf_core::http::ApiError> {
    let user = user(username)?;
    let run: T = json_body(agent.limit(MAX_RUN_BYTES), headers, body).await?;
    repository(&run).check(&user).map_err(ErrorBody::from)?;
    let places = agent.applier.backup_places(&user).map_err(apply_error)?;
    let tools = agent.applier.backup_tools();
    let task = agent
        .tasks
        .start(move |progress| work(&tools, &places, &user, &run, progress))
        .map_err(failed)?;
    Ok(accepted(task))
}

/// `POST /v1/backup/{username}/run`: starts backing up what this server holds of the account.
pub(super) async fn run<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, enconf_core::http::ApiError> {
    let host = agent.hostname.clone();
    start(
        &agent,
        &username,
        &headers,
        body,
        |r: &BackupRun| &r.repository,
        move |tools, places, user, run, progress| {
            crate::backup::backup(tools, places, &host, user, run, progress)
        },
    )
    .await
}

/// `POST /v1/backup/{username}/restore`: starts putting back what this server holds of the
/// account from one set.
pub(super) async fn restore<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, enconf_core::http::ApiError> {
    start(
        &agent,
        &username,
        &headers,
        body,
        |r: &RestoreRun| &r.repository,
        crate::backup::restore,
    )
    .await
}

/// `GET /v1/tasks/{id}`.
pub(super) async fn task<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<TaskView> {
    let found = id.parse().ok().and_then(|id| agent.tasks.get(id));
    match found {
        Some(task) => Ok(axum::Json(task)),
        None => Err(ErrorBody::new(ErrorCode::NotFound, format!("no task {id:?} here")).into()),
    }
}
