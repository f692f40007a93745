//! How the controller reaches an agent: the [`AgentTransport`] trait, and [`AgentClient`], the
//! typed agent API on top of it.
//!
//! A transport moves one request to one agent and brings back the status and body; it knows
//! nothing of accounts. Two implementations: the HTTP(S) client
//! ([`HttpTransport`](http::HttpTransport), feature `controller`) and, in `enconf-agent-lib`, an
//! in-process transport that calls the agent's router directly (for tests and single-binary
//! embeddings).
//!
//! The endpoint (URL and token) is passed with every request, built from the server as the
//! store has it at that moment, so an edited URL or token takes effect on the next call.
//!
//! Calling an agent from Rust, without a controller:
//!
//! ```no_run
//! # #[cfg(feature = "controller")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use enconf_core::domain::{AccountSpec, AgentToken, Domains, PhpSettings, UserName};
//! use enconf_core::transport::http::HttpTransport;
//! use enconf_core::transport::{AgentClient, AgentEndpoint};
//!
//! let transport = HttpTransport::new(Duration::from_secs(10), None)?;
//! let endpoint = AgentEndpoint {
//!     url: "https://web1.example.com:50000".parse()?,
//!     token: AgentToken::parse(&std::fs::read_to_string("agent-token")?)?,
//! };
//! let agent = AgentClient::new(&transport, &endpoint);
//! let health = agent.health().await?;
//! assert!(!health.version.is_empty());
//! let site = AccountSpec {
//!     username: UserName::parse("shop")?,
//!     domains: Domains::parse("domains", &["shop.example"])?,
//!     php_version: None,
//!     php: PhpSettings::default(),
//!     roles: AccountSpec::web_only(),
//!     zones: Vec::new(),
//!     db: Default::default(),
//!     backup: None,
//! };
//! let applied = agent.put_account(&site).await?;
//! assert!(applied.changed);
//! # Ok(()) }
//! ```

#[cfg(feature = "controller")]
pub mod http;

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{AccountSpec, AgentToken, AgentUrl, Server, UserName};
use crate::protocol::agent::{AccountList, AccountPut, Applied};
use crate::protocol::{AgentHealth, ErrorBody};

/// Where an agent is and the secret it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    pub url: AgentUrl,
    pub token: AgentToken,
}

impl From<&Server> for AgentEndpoint {
    fn from(server: &Server) -> Self {
        Self {
            url: server.spec.agent_url.clone(),
            token: server.token.clone(),
        }
    }
}

/// The HTTP methods of the agent API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One request to an agent: method, path (`/v1/…`, already percent-safe: built from validated
/// values only) and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    pub method: Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

/// What an agent answered: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a call to an agent did not give an answer of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request never reached the agent (connection refused, DNS, TLS handshake, connect
    /// timeout): nothing was done there.
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    /// The request was sent but no complete answer came back (timeout, connection reset):
    /// the agent may or may not have done it.
    #[error("no answer from the agent: {0}")]
    Interrupted(String),
    /// The agent answered with an error.
    #[error("the agent refused ({status}): {}", body.error.message)]
    Agent { status: u16, body: ErrorBody },
    /// The answer was not what the agent API promises.
    #[error("unexpected answer from the agent: {0}")]
    Protocol(String),
}

impl TransportError {
    /// Whether the agent could have changed something: not when the request never reached it,
    /// nor when it refused the request as a conflict (a `409`, answered before it changes
    /// anything).
    pub fn maybe_applied(&self) -> bool {
        !matches!(self, TransportError::Unreachable(_)) && self.conflict().is_none()
    }

    /// The agent's answer when it refused the request as conflicting with what the machine has
    /// (a user name taken by a user it did not create): nothing was changed, and the answer
    /// names the field at fault.
    pub fn conflict(&self) -> Option<&ErrorBody> {
        match self {
            TransportError::Agent { status: 409, body } => Some(body),
            _ => None,
        }
    }

    /// Whether the failure says the agent is down rather than that it refused.
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable(_) | TransportError::Interrupted(_)
        )
    }
}

/// Moves one request to one agent.
#[async_trait]
pub trait AgentTransport: Send + Sync + fmt::Debug {
    async fn send(
        &self,
        agent: &AgentEndpoint,
        request: AgentRequest,
    ) -> Result<AgentResponse, TransportError>;
}

/// The agent API, typed, over any transport.
#[derive(Debug, Clone, Copy)]
pub struct AgentClient<'a> {
    transport: &'a dyn AgentTransport,
    endpoint: &'a AgentEndpoint,
}

impl<'a> AgentClient<'a> {
    pub fn new(transport: &'a dyn AgentTransport, endpoint: &'a AgentEndpoint) -> Self {
        Self {
            transport,
            endpoint,
        }
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<AgentHealth, TransportError> {
        self.call(Method::Get, "/v1/health".into(), None::<&()>)
            .await
    }

    /// `GET /v1/accounts`.
    pub async fn accounts(&self) -> Result<AccountList, TransportError> {
        self.call(Method::Get, "/v1/accounts".into(), None::<&()>)
            .await
    }

    /// `PUT /v1/accounts/{username}`.
    pub async fn put_account(&self, spec: &AccountSpec) -> Result<Applied, TransportError> {
        let mut put = AccountPut::from_spec(spec);
        put.username = None;
        self.call(Method::Put, account_path(&spec.username), Some(&put))
            .await
    }

    /// `PUT /v1/accounts/{username}?data=remove`: the roles the put takes away lose their
    /// Maildirs and databases here too (a migration copied them to the roles' new servers).
    pub async fn put_account_removing_data(
        &self,
        spec: &AccountSpec,
    ) -> Result<Applied, TransportError> {
        let mut put = AccountPut::from_spec(spec);
        put.username = None;
        let path = format!("{}?data=remove", account_path(&spec.username));
        self.call(Method::Put, path, Some(&put)).await
    }

    /// `DELETE /v1/accounts/{username}`: the account's Maildirs and databases are kept
    /// (until a backup of them exists).
    pub async fn delete_account(&self, username: &UserName) -> Result<Applied, TransportError> {
        self.call(Method::Delete, account_path(username), None::<&()>)
            .await
    }

    /// `DELETE /v1/accounts/{username}?data=remove`: a final backup exists, so the account's
    /// Maildirs and databases go too.
    pub async fn delete_account_and_data(
        &self,
        username: &UserName,
    ) -> Result<Applied, TransportError> {
        let path = format!("{}?data=remove", account_path(username));
        self.call(Method::Delete, path, None::<&()>).await
    }

    /// `PUT /v1/certificates/{kind}`.
    #[cfg(feature = "certs")]
    pub async fn put_certificate(
        &self,
        kind: crate::ssl::CertKind,
        names: &[crate::domain::DomainName],
        bundle: &crate::ssl::cert::CertBundle,
    ) -> Result<Applied, TransportError> {
        let put = crate::protocol::agent::CertificatePut {
            names: names.iter().map(ToString::to_string).collect(),
            certificate_pem: bundle.chain_pem.clone(),
            private_key_pem: bundle.key_pem.clone(),
        };
        self.call(Method::Put, format!("/v1/certificates/{kind}"), Some(&put))
            .await
    }

    /// `PUT /v1/acme-challenge/{token}` (the token is checked base64url text).
    pub async fn put_challenge(
        &self,
        token: &str,
        put: &crate::protocol::agent::ChallengePut,
    ) -> Result<Applied, TransportError> {
        self.call(Method::Put, challenge_path(token)?, Some(put))
            .await
    }

    /// `DELETE /v1/acme-challenge/{token}`.
    pub async fn delete_challenge(&self, token: &str) -> Result<Applied, TransportError> {
        self.call(Method::Delete, challenge_path(token)?, None::<&()>)
            .await
    }

    /// `GET /v1/mail/{username}`.
    pub async fn mail(
        &self,
        username: &UserName,
    ) -> Result<crate::protocol::mail::AgentMail, TransportError> {
        self.call(Method::Get, mail_path(username, ""), None::<&()>)
            .await
    }

    /// `GET /v1/mail/{username}/dkim`.
    pub async fn dkim(
        &self,
        username: &UserName,
    ) -> Result<Vec<crate::protocol::mail::DkimRecord>, TransportError> {
        self.call(Method::Get, mail_path(username, "/dkim"), None::<&()>)
            .await
    }

    /// `GET /v1/dns/{username}`: the serial of each zone the agent serves for the account.
    pub async fn dns(
        &self,
        username: &UserName,
    ) -> Result<crate::protocol::dns::AgentZones, TransportError> {
        self.call(
            Method::Get,
            format!("/v1/dns/{}", username.as_str()),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/db/{username}`: what each database of the account takes on disk.
    pub async fn db(
        &self,
        username: &UserName,
    ) -> Result<crate::protocol::db::AgentDatabases, TransportError> {
        self.call(
            Method::Get,
            format!("/v1/db/{}", username.as_str()),
            None::<&()>,
        )
        .await
    }

    /// `PUT /v1/webmail`: where Roundcube is served.
    pub async fn put_webmail(
        &self,
        put: &crate::protocol::mail::WebmailPut,
    ) -> Result<Applied, TransportError> {
        self.call(Method::Put, "/v1/webmail".to_owned(), Some(put))
            .await
    }

    /// `PUT /v1/phpmyadmin`: where phpMyAdmin is served.
    pub async fn put_phpmyadmin(
        &self,
        put: &crate::protocol::db::PhpMyAdminPut,
    ) -> Result<Applied, TransportError> {
        self.call(Method::Put, "/v1/phpmyadmin".to_owned(), Some(put))
            .await
    }

    /// `PUT /v1/mail/{username}`: the account's whole mail.
    pub async fn put_mail(
        &self,
        username: &UserName,
        put: &crate::protocol::mail::MailPut,
    ) -> Result<Applied, TransportError> {
        self.call(Method::Put, mail_path(username, ""), Some(put))
            .await
    }

    /// `PUT /v1/mail/{username}/mailboxes/{address}`.
    pub async fn put_mailbox(
        &self,
        username: &UserName,
        address: &crate::domain::MailAddress,
        put: &crate::protocol::mail::MailboxPut,
    ) -> Result<Applied, TransportError> {
        let path = mail_path(username, &format!("/mailboxes/{address}"));
        self.call(Method::Put, path, Some(put)).await
    }

    /// `DELETE /v1/mail/{username}/mailboxes/{address}`.
    pub async fn delete_mailbox(
        &self,
        username: &UserName,
        address: &crate::domain::MailAddress,
    ) -> Result<Applied, TransportError> {
        let path = mail_path(username, &format!("/mailboxes/{address}"));
        self.call(Method::Delete, path, None::<&()>).await
    }

    /// `PUT /v1/mail/{username}/aliases/{address}`.
    pub async fn put_alias(
        &self,
        username: &UserName,
        address: &crate::domain::MailAddress,
        put: &crate::protocol::mail::AliasPut,
    ) -> Result<Applied, TransportError> {
        let path = mail_path(username, &format!("/aliases/{address}"));
        self.call(Method::Put, path, Some(put)).await
    }

    /// `DELETE /v1/mail/{username}/aliases/{address}`.
    pub async fn delete_alias(
        &self,
        username: &UserName,
        address: &crate::domain::MailAddress,
    ) -> Result<Applied, TransportError> {
        let path = mail_path(username, &format!("/aliases/{address}"));
        self.call(Method::Delete, path, None::<&()>).await
    }

    /// `POST /v1/accounts/{username}/freeze`: the site's PHP stops until the next put.
    pub async fn freeze(&self, username: &UserName) -> Result<Applied, TransportError> {
        let path = format!("{}/freeze", account_path(username));
        self.call(Method::Post, path, None::<&()>).await
    }

    /// `GET /v1/backup/{username}` (backup server): where the account's repository is served.
    pub async fn backup_repository(
        &self,
        username: &UserName,
    ) -> Result<crate::protocol::backup::RepositoryInfo, TransportError> {
        self.call(Method::Get, backup_path(username, ""), None::<&()>)
            .await
    }

    /// `POST /v1/backup/{username}/run`: starts backing up what the server holds of the
    /// account; the answer is the task to follow.
    pub async fn start_backup(
        &self,
        username: &UserName,
        run: &crate::protocol::backup::BackupRun,
    ) -> Result<crate::protocol::backup::TaskView, TransportError> {
        self.call(Method::Post, backup_path(username, "/run"), Some(run))
            .await
    }

    /// `POST /v1/backup/{username}/restore`: starts putting back what the server holds.
    pub async fn start_restore(
        &self,
        username: &UserName,
        run: &crate::protocol::backup::RestoreRun,
    ) -> Result<crate::protocol::backup::TaskView, TransportError> {
        self.call(Method::Post, backup_path(username, "/restore"), Some(run))
            .await
    }

    /// `GET /v1/tasks/{id}`.
    pub async fn task(&self, id: u64) -> Result<crate::protocol::backup::TaskView, TransportError> {
        self.call(Method::Get, format!("/v1/tasks/{id}"), None::<&()>)
            .await
    }

    /// `PUT /v1/tls`: the agent serves HTTPS with this chain and key from its next handshake.
    pub async fn put_tls(
        &self,
        tls: &crate::protocol::agent::TlsPut,
    ) -> Result<Applied, TransportError> {
        self.call(Method::Put, "/v1/tls".to_owned(), Some(tls))
            .await
    }

    /// `PUT /v1/token`: the agent accepts `token` beside the one this client presents.
    pub async fn put_token(&self, token: &AgentToken) -> Result<Applied, TransportError> {
        let put = crate::protocol::agent::TokenPut {
            token: token.expose_secret().to_owned(),
        };
        self.call(Method::Put, "/v1/token".to_owned(), Some(&put))
            .await
    }

    /// `POST /v1/token/commit`: only the token this client presents is accepted from now on.
    pub async fn commit_token(&self) -> Result<Applied, TransportError> {
        self.call(
            Method::Post,
            "/v1/token/commit".to_owned(),
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// `POST /v1/update`: the agent starts upgrading its own package (outside its own service,
    /// so the upgrade outlives the agent's restart).
    pub async fn start_upgrade(
        &self,
    ) -> Result<crate::protocol::agent::UpgradeState, TransportError> {
        self.call(
            Method::Post,
            "/v1/update".to_owned(),
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// `GET /v1/update`: how the agent's last self-upgrade went.
    pub async fn upgrade_state(
        &self,
    ) -> Result<crate::protocol::agent::UpgradeState, TransportError> {
        self.call(Method::Get, "/v1/update".to_owned(), None::<&()>)
            .await
    }

    /// `POST /v1/backup/{username}/prune` (backup server): applies the retention policy; the
    /// answer is the sets left.
    pub async fn prune(
        &self,
        username: &UserName,
        run: &crate::protocol::backup::PruneRun,
    ) -> Result<crate::protocol::backup::SetsKept, TransportError> {
        self.call(Method::Post, backup_path(username, "/prune"), Some(run))
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<&impl Serialize>,
    ) -> Result<T, TransportError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| TransportError::Protocol(format!("cannot encode the request: {e}")))?;
        let request = AgentRequest {
            method,
            path: path.clone(),
            body,
        };
        let result = match self.transport.send(self.endpoint, request).await {
            Ok(response) => decode(response),
            Err(e) => Err(e),
        };
        // A health check's failure is the monitor's to report (once, when it changes).
        if let Err(e) = &result
            && path != "/v1/health"
        {
            tracing::warn!(agent = %self.endpoint.url, method = method.as_str(), path, error = %e, "agent call failed");
        }
        result
    }
}

/// A user name is `[a-z_][a-z0-9_-]*`: safe in a path as it is.
fn account_path(username: &UserName) -> String {
    format!("/v1/accounts/{}", username.as_str())
}

fn backup_path(username: &UserName, rest: &str) -> String {
    format!("/v1/backup/{}{rest}", username.as_str())
}

/// A user name and a mail address (`[a-z0-9._+-]@` and a domain name) are safe in a path as
/// they are.
fn mail_path(username: &UserName, rest: &str) -> String {
    format!("/v1/mail/{}{rest}", username.as_str())
}

/// A challenge token in a path: only base64url characters may pass.
fn challenge_path(token: &str) -> Result<String, TransportError> {
    crate::protocol::agent::check_acme_text(token, 0)
        .map_err(|r| TransportError::Protocol(format!("ACME token {r}")))?;
    Ok(format!("/v1/acme-challenge/{token}"))
}

/// Reads an agent's answer: a 2xx body as `T`, any other status as the agent's error body.
/// Anything else (HTML from a proxy, a wrong shape) is a [`TransportError::Protocol`].
pub fn decode<T: DeserializeOwned>(response: AgentResponse) -> Result<T, TransportError> {
    if (200..300).contains(&response.status) {
        return serde_json::from_slice(&response.body)
            .map_err(|e| TransportError::Protocol(format!("status {}: {e}", response.status)));
    }
    match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(body) => Err(TransportError::Agent {
            status: response.status,
            body,
        }),
        Err(_) => Err(TransportError::Protocol(format!(
            "status {} without an error body",
            response.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn answers_are_decoded_by_status() {
        let ok = AgentResponse {
            status: 200,
            body: br#"{"changed": true}"#.to_vec(),
        };
        assert_eq!(decode::<Applied>(ok).unwrap(), Applied { changed: true });
        let refused = AgentResponse {
            status: 422,
            body: br#"{"error":{"code":"config_rejected","message":"nginx: bad","field":null}}"#
                .to_vec(),
        };
        match decode::<Applied>(refused).unwrap_err() {
            TransportError::Agent { status, body } => {
                assert_eq!(status, 422);
                assert_eq!(body.error.code, ErrorCode::ConfigRejected);
            }
            other => panic!("{other:?}"),
        }
        let garbage = AgentResponse {
            status: 502,
            body: b"<html>bad gateway</html>".to_vec(),
        };
        assert!(matches!(
            decode::<Applied>(garbage),
            Err(TransportError::Protocol(_))
        ));
        let wrong_shape = AgentResponse {
            status: 200,
            body: b"[]".to_vec(),
        };
        assert!(matches!(
            decode::<Applied>(wrong_shape),
            Err(TransportError::Protocol(_))
        ));
    }
}
