//! Agents' HTTPS certificates, issued by the controller's authority
//! ([`AgentCa`](crate::ssl::ca::AgentCa)): the installation script carries the first one;
//! the monitor renews each before it expires (`renew_before`, as the servers' own
//! certificates), through `PUT /v1/tls`, for the server's current names.

use super::{Controller, Result, agent_names};
use crate::domain::Server;
use crate::protocol::agent::TlsPut;
use crate::transport::{AgentClient, AgentEndpoint};

impl Controller {
    /// Renews the certificate of every reachable `https` agent whose certificate (as its
    /// health reports) expires within `renew_before`; answers how many were renewed. A
    /// failure is logged and tried again at the next round.
    pub async fn renew_agent_certificates(&self) -> usize {
        if self.agent_ca.is_none() {
            return 0;
        }
        let servers = match self.store.servers().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "agent certificates: cannot list servers");
                return 0;
            }
        };
        let due = self.now() + self.config.renew_before;
        let mut renewed = 0;
        for server in servers {
            let https = server.spec.agent_url.url().scheme().as_str() == "https";
            let expiring = server.health.tls_not_after.is_some_and(|t| t <= due);
            if !(https && server.health.reachable && expiring) {
                continue;
            }
            match self.renew_agent_certificate(&server).await {
                Ok(()) => {
                    tracing::info!(server = %server.id, "agent certificate renewed");
                    renewed += 1;
                }
                Err(e) => {
                    tracing::warn!(server = %server.id, error = %e, "agent certificate not renewed")
                }
            }
        }
        renewed
    }

    /// Issues a new certificate for `server`'s agent and sends it.
    async fn renew_agent_certificate(&self, server: &Server) -> Result<()> {
        let Some(ca) = &self.agent_ca else {
            return Ok(());
        };
        let bundle = ca.issue(&agent_names(&server.spec), self.now())?;
        let put = TlsPut {
            certificate_pem: bundle.chain_pem.clone(),
            private_key_pem: bundle.key_pem.clone(),
        };
        AgentClient::new(&*self.transport, &AgentEndpoint::from(server))
            .put_tls(&put)
            .await
            .map_err(|e| Self::agent_error(server.id, e))?;
        Ok(())
    }
}
