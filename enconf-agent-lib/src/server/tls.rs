//! `PUT /v1/tls`: a renewed certificate and key for the agent's own HTTPS listener.
//!
//! The files are the agent's own (`AGENT_TLS_CERT`, `AGENT_TLS_KEY`, real paths even for a
//! sandbox agent): written atomically, the key first (mode 0600), and read again by the
//! listener at its next handshake; connections already open keep the old certificate.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use enconf_core::http::{ApiResult, json_body};
use enconf_core::protocol::agent::{Applied, TlsPut};
use enconf_core::protocol::{ErrorBody, ErrorCode};
use enconf_core::ssl::cert;

use super::{Agent, internal};
use crate::system::{RealSystem, System};

/// A chain and a key, in PEM.
const MAX_TLS_BYTES: usize = 256 * 1024;

/// When the certificate in `path` expires, RFC 3339.
pub(super) fn not_after(path: &Path) -> Option<String> {
    let pem = std::fs::read_to_string(path).ok()?;
    let info = cert::info(&pem).ok()?;
    info.not_after
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub(super) async fn put<S: System>(
    State(agent): State<Arc<Agent<S>>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Applied> {
    let put: TlsPut = json_body(agent.limit(MAX_TLS_BYTES), &headers, body).await?;
    let Some((cert_path, key_path)) = agent.tls_files.get().cloned() else {
        return Err(ErrorBody::new(
            ErrorCode::Invalid,
            "this agent serves plain HTTP: it has no certificate to renew",
        )
        .into());
    };
    let bundle = cert::normalize(&put.certificate_pem, &put.private_key_pem)
        .and_then(|b| cert::check_pair(&b.chain_pem, &b.key_pem).map(|_| b))
        .map_err(|e| {
            let field = e.field().unwrap_or("certificate_pem");
            ErrorBody::new(ErrorCode::Invalid, e.to_string()).with_field(field)
        })?;
    let same = std::fs::read_to_string(&cert_path).is_ok_and(|c| c == bundle.chain_pem)
        && std::fs::read_to_string(&key_path).is_ok_and(|k| k == bundle.key_pem);
    if same {
        return Ok(axum::Json(Applied { changed: false }));
    }
    tokio::task::spawn_blocking(move || {
        let system = RealSystem::new();
        system.write_atomic(&key_path, bundle.key_pem.as_bytes(), 0o600)?;
        system.write_atomic(&cert_path, bundle.chain_pem.as_bytes(), 0o644)
    })
    .await
    .map_err(|_| internal("writing the certificate failed"))?
    .map_err(|e| internal(&e.to_string()))?;
    tracing::info!("the agent's HTTPS certificate was renewed");
    Ok(axum::Json(Applied { changed: true }))
}
