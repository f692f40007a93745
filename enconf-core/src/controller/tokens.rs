//! Rotating a server's agent token (`POST /api/v1/servers/{id}/rotate-token`) with no moment
//! in which the controller cannot reach the agent: the agent first accepts the new token
//! beside the old (`PUT /v1/token`, presenting the old), then the controller records and uses
//! the new one, then the agent drops the old (`POST /v1/token/commit`, presenting the new).
//! The old token is dropped only after a grace period (the health spread and twice the
//! health timeout), off the request: a check that read the old token just before it was
//! replaced may still be on its way. Rotations run one at a time (a second waits for the
//! first's commit).

use std::sync::Arc;

use super::{Controller, Result};
use crate::domain::{AgentToken, ServerId};
use crate::protocol::ServerView;
use crate::transport::{AgentClient, AgentEndpoint};

impl Controller {
    /// Gives the server's agent a new random token. Refused (`503`) when the agent is offline;
    /// when the agent does not take the new token, nothing changes.
    pub async fn rotate_token(&self, id: ServerId) -> Result<ServerView> {
        let guard = Arc::clone(&self.rotations).lock_owned().await;
        let server = self.store.server(id).await?;
        Self::require_online(&server)?;
        let new =
            AgentToken::generate().map_err(|e| super::ControllerError::Internal(e.to_string()))?;
        let old = AgentEndpoint::from(&server);
        AgentClient::new(&*self.transport, &old)
            .put_token(&new)
            .await
            .map_err(|e| Self::agent_error(id, e))?;
        let server = self
            .store
            .update_server(id, server.spec.clone(), Some(new.clone()))
            .await?;
        let endpoint = AgentEndpoint {
            url: server.spec.agent_url.clone(),
            token: new,
        };
        let grace = self.config.health_spread + self.config.health_timeout * 2;
        let transport = Arc::clone(&self.transport);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // Should the old token not be dropped now, it is at the next rotation's commit.
            match AgentClient::new(&*transport, &endpoint)
                .commit_token()
                .await
            {
                Ok(_) => {
                    tracing::info!(server = %id, "the agent's old token is refused from now on")
                }
                Err(e) => {
                    tracing::warn!(server = %id, error = %e, "the agent still accepts its old token too")
                }
            }
            drop(guard);
        });
        tracing::info!(server = %id, "agent token rotated");
        Ok(self.view(&server))
    }
}
