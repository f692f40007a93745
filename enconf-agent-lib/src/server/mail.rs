//! The agent API of the mail role (see [`enconf_core::protocol::mail`]): an account's
//! mailboxes, aliases and DKIM records. Changes run on the apply worker in turn with every
//! other change; a password arrives as a hash and is never logged or answered.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use enconf_core::domain::{MailAddress, UserName};
use enconf_core::http::{ApiResult, json_body};
use enconf_core::protocol::ErrorBody;
use enconf_core::protocol::agent::Applied;
use enconf_core::protocol::mail::{
    AgentMail, AliasPut, DkimRecord, MailPut, MailboxPut, WebmailPut,
};

use super::{Agent, apply_error, internal};
use crate::system::System;

/// The largest body of one mailbox put (a hash and a quota).
pub const MAX_MAILBOX_PUT_BYTES: usize = 4 * 1024;
/// The largest body of one alias put: 100 destinations of 318 characters fit.
pub const MAX_ALIAS_PUT_BYTES: usize = 64 * 1024;
/// The largest body of a webmail put (a path).
pub const MAX_WEBMAIL_PUT_BYTES: usize = 4 * 1024;

/// `PUT /v1/webmail`: where Roundcube is served (see [`crate::webmail`]).
pub(super) async fn put_webmail<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let put: WebmailPut = json_body(agent.limit(MAX_WEBMAIL_PUT_BYTES), &headers, body).await?;
    let changed = agent.run(move |a| a.put_webmail(put.path)).await?;
    Ok(axum::Json(Applied { changed }))
}

/// `PUT /v1/phpmyadmin`: where phpMyAdmin is served (see [`crate::phpmyadmin`]).
pub(super) async fn put_phpmyadmin<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let put: enconf_core::protocol::db::PhpMyAdminPut =
        json_body(agent.limit(MAX_WEBMAIL_PUT_BYTES), &headers, body).await?;
    let changed = agent.run(move |a| a.put_phpmyadmin(put.path)).await?;
    Ok(axum::Json(Applied { changed }))
}

fn user(username: &str) -> Result<UserName, ErrorBody> {
    UserName::parse(username).map_err(|r| r.at("username").into())
}

fn address(address: &str) -> Result<MailAddress, ErrorBody> {
    MailAddress::parse(address).map_err(|r| r.at("address").into())
}

pub(super) async fn get_mail<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
) -> ApiResult<AgentMail> {
    let user = user(&username)?;
    let applier = Arc::clone(&agent.applier);
    let mail = tokio::task::spawn_blocking(move || applier.mail(&user))
        .await
        .map_err(|_| internal("listing failed"))?
        .map_err(apply_error)?;
    Ok(axum::Json(mail))
}

pub(super) async fn get_dkim<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
) -> ApiResult<Vec<DkimRecord>> {
    let user = user(&username)?;
    let applier = Arc::clone(&agent.applier);
    let records = tokio::task::spawn_blocking(move || applier.dkim(&user))
        .await
        .map_err(|_| internal("reading the DKIM keys failed"))?
        .map_err(apply_error)?;
    Ok(axum::Json(records))
}

pub(super) async fn put_mail<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath(username): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let user = user(&username)?;
    let put: MailPut = json_body(agent.max_body_bytes, &headers, body).await?;
    let changed = agent.run(move |a| a.put_mail(&user, put)).await?;
    Ok(axum::Json(Applied { changed }))
}

pub(super) async fn put_mailbox<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath((username, addr)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let (user, address) = (user(&username)?, address(&addr)?);
    let put: MailboxPut = json_body(agent.limit(MAX_MAILBOX_PUT_BYTES), &headers, body).await?;
    let changed = agent
        .run(move |a| a.put_mailbox(&user, &address, put))
        .await?;
    Ok(axum::Json(Applied { changed }))
}

pub(super) async fn delete_mailbox<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath((username, addr)): UrlPath<(String, String)>,
) -> ApiResult<Applied> {
    let (user, address) = (user(&username)?, address(&addr)?);
    let changed = agent
        .run(move |a| a.delete_mailbox(&user, &address))
        .await?;
    Ok(axum::Json(Applied { changed }))
}

pub(super) async fn put_alias<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath((username, addr)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let (user, address) = (user(&username)?, address(&addr)?);
    let put: AliasPut = json_body(agent.limit(MAX_ALIAS_PUT_BYTES), &headers, body).await?;
    let changed = agent
        .run(move |a| a.put_alias(&user, &address, put))
        .await?;
    Ok(axum::Json(Applied { changed }))
}

pub(super) async fn delete_alias<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    UrlPath((username, addr)): UrlPath<(String, String)>,
) -> ApiResult<Applied> {
    let (user, address) = (user(&username)?, address(&addr)?);
    let changed = agent.run(move |a| a.delete_alias(&user, &address)).await?;
    Ok(axum::Json(Applied { changed }))
}
