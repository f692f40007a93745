//! An [`AgentTransport`] that calls agents' routers in this process: the same requests, auth,
//! JSON and status codes as over HTTP, without sockets. For tests, and for embedding a
//! controller and its local agent in one process.
//!
//! Agents are registered by the URL the controller knows them by; a request to a URL with no
//! agent, or to one marked [`offline`](InProcess::set_offline), fails as
//! [`TransportError::Unreachable`] without reaching it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use enconf_core::domain::AgentUrl;
use enconf_core::transport::{
    AgentEndpoint, AgentRequest, AgentResponse, AgentTransport, Method, TransportError,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Debug, Clone)]
struct Entry {
    router: Router,
    offline: bool,
}

/// Agents reachable in this process, by URL.
#[derive(Debug, Default)]
pub struct InProcess {
    agents: Mutex<HashMap<AgentUrl, Entry>>,
}

impl InProcess {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `router` (an agent's [`router`](crate::server::router)) answer at `url`.
    pub fn add(&self, url: AgentUrl, router: Router) {
        self.lock().insert(
            url,
            Entry {
                router,
                offline: false,
            },
        );
    }

    /// Takes the agent at `url` off the network (`true`) or back on.
    pub fn set_offline(&self, url: &AgentUrl, offline: bool) {
        if let Some(entry) = self.lock().get_mut(url) {
            entry.offline = offline;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentUrl, Entry>> {
        // The map stays consistent whatever a panicking holder did: each operation is one call.
        self.agents.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl AgentTransport for InProcess {
    async fn send(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError> {
        let router = match self.lock().get(&agent.url) {
            Some(entry) if !entry.offline => entry.router.clone(),
            Some(_) => return Err(TransportError::Unreachable("connection refused".into())),
            None => {
                return Err(TransportError::Unreachable(format!(
                    "no agent at {}",
                    agent.url
                )));
            }
        };
        let method = match request.method {
            Method::Get => axum::http::Method::GET,
            Method::Put => axum::http::Method::PUT,
            Method::Post => axum::http::Method::POST,
            Method::Delete => axum::http::Method::DELETE,
        };
        let http_request = Request::builder()
            .method(method)
            .uri(request.path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", agent.token.expose_secret()),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(request.body.map_or_else(Body::empty, Body::from))
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let response = router
            .oneshot(http_request)
            .await
            .map_err(|e| TransportError::Interrupted(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError::Interrupted(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(AgentResponse { status, body })
    }
}
