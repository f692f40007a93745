//! Issuance behind one trait: [`Issuer`], with [`SelfSigned`], [`Custom`] and [`Acme`].
//!
//! An issuer turns the names a certificate must cover into a [`CertBundle`]; installing it on
//! the agent is the controller's business. ACME's HTTP-01 challenges are answered through a
//! [`ChallengeResponder`] (the controller's one asks the server's agent to serve them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use time::OffsetDateTime;

use super::cert::{self, CertBundle, CertError};
use crate::domain::DomainName;
use crate::protocol::SslMode;
use crate::store::{Store, StoreError};

/// Why a certificate could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The certificate or key is not acceptable (a custom upload): the administrator's to fix.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The CA refused or failed.
    #[error("ACME: {0}")]
    Acme(String),
    /// A challenge could not be served.
    #[error("challenge: {0}")]
    Challenge(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request named no name to cover.
    #[error("no name to issue a certificate for")]
    NoName,
}

impl From<instant_acme::Error> for IssueError {
    fn from(e: instant_acme::Error) -> Self {
        IssueError::Acme(e.to_string())
    }
}

/// Serves HTTP-01 challenge answers while a CA checks them.
#[async_trait]
pub trait ChallengeResponder: Send + Sync + std::fmt::Debug {
    /// Serve `key_authorization` at `/.well-known/acme-challenge/<token>` for `names`.
    async fn publish(
        &self,
        names: &[DomainName],
        token: &str,
        key_authorization: &str,
    ) -> Result<(), String>;
    /// Stop serving it (best effort).
    async fn withdraw(&self, token: &str);
}

/// What to issue: the names (the first is the subject), the time, and who answers challenges.
#[derive(Debug)]
pub struct IssueRequest<'a> {
    pub names: &'a [DomainName],
    pub now: OffsetDateTime,
    pub challenges: &'a dyn ChallengeResponder,
}

/// A way to get a certificate for a server's names.
#[async_trait]
pub trait Issuer: Send + Sync + std::fmt::Debug {
    fn mode(&self) -> SslMode;
    async fn issue(&self, request: IssueRequest<'_>) -> Result<CertBundle, IssueError>;
}

/// A certificate made here, trusted by no one: for testing only.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfSigned;

#[async_trait]
impl Issuer for SelfSigned {
    fn mode(&self) -> SslMode {
        SslMode::Selfsigned
    }

    async fn issue(&self, request: IssueRequest<'_>) -> Result<CertBundle, IssueError> {
        if request.names.is_empty() {
            return Err(IssueError::NoName);
        }
        Ok(cert::self_signed(request.names, request.now)?)
    }
}

/// An uploaded chain and key: "issuing" is checking them for the first name.
#[derive(Debug, Clone)]
pub struct Custom {
    bundle: CertBundle,
}

impl Custom {
    pub fn new(chain_pem: String, key_pem: String) -> Self {
        Self {
            bundle: CertBundle { chain_pem, key_pem },
        }
    }
}

#[async_trait]
impl Issuer for Custom {
    fn mode(&self) -> SslMode {
        SslMode::Custom
    }

    async fn issue(&self, request: IssueRequest<'_>) -> Result<CertBundle, IssueError> {
        let Some(host) = request.names.first() else {
            return Err(IssueError::Challenge(
                "no name to check the certificate for".into(),
            ));
        };
        let bundle = cert::normalize(&self.bundle.chain_pem, &self.bundle.key_pem)?;
        cert::check(&bundle.chain_pem, &bundle.key_pem, host, request.now)?;
        Ok(bundle)
    }
}

/// Where the ACME CA is and what to trust for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The directory URL (`letsencrypt` and `letsencrypt-staging` name Let's Encrypt's).
    pub directory_url: String,
    /// A CA certificate (PEM) to trust for the ACME server itself instead of the system's
    /// (Pebble in tests).
    pub root: Option<PathBuf>,
    /// `mailto:` contacts for the account.
    pub contact: Vec<String>,
}

impl AcmeConfig {
    /// The directory URL for a name (`letsencrypt`, `letsencrypt-staging`) or a URL as given.
    pub fn directory_for(name_or_url: &str) -> String {
        match name_or_url {
            "letsencrypt" => instant_acme::LetsEncrypt::Production.url().to_owned(),
            "letsencrypt-staging" => instant_acme::LetsEncrypt::Staging.url().to_owned(),
            url => url.to_owned(),
        }
    }
}

/// ACME with HTTP-01. The account is created once per directory and kept in the store.
pub struct Acme {
    config: AcmeConfig,
    store: Arc<dyn Store>,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Acme {
    pub fn new(config: AcmeConfig, store: Arc<dyn Store>) -> Self {
        Self {
            config,
            store,
            account: tokio::sync::Mutex::new(None),
        }
    }

    fn setting_key(&self) -> String {
        format!("acme.account:{}", self.config.directory_url)
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, IssueError> {
        Ok(match &self.config.root {
            Some(root) => Account::builder_with_root(root)?,
            None => Account::builder()?,
        })
    }

    /// The account: from memory, from the store, or created (and stored) on first use.
    async fn account(&self) -> Result<Account, IssueError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let key = self.setting_key();
        let account = match self.store.setting(&key).await? {
            Some(value) => {
                let credentials: AccountCredentials = serde_json::from_value(value)
                    .map_err(|e| IssueError::Acme(format!("stored account: {e}")))?;
                self.builder()?.from_credentials(credentials).await?
            }
            None => {
                let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
                let (account, credentials) = self
                    .builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.config.directory_url.clone(),
                        None,
                    )
                    .await?;
                let value = serde_json::to_value(&credentials)
                    .map_err(|e| IssueError::Acme(format!("account credentials: {e}")))?;
                self.store.put_setting(&key, value).await?;
                tracing::info!(directory = %self.config.directory_url, account = account.id(), "ACME account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    async fn order(
        &self,
        request: &IssueRequest<'_>,
        published: &mut Vec<String>,
    ) -> Result<CertBundle, IssueError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = request
            .names
            .iter()
            .map(|n| Identifier::Dns(n.to_string()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(IssueError::Acme(format!(
                        "authorization for {} is {other:?}",
                        authorization.identifier()
                    )));
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| IssueError::Acme("the CA offers no http-01 challenge".into()))?;
            let token = challenge.token.clone();
            let key_authorization = challenge.key_authorization();
            request
                .challenges
                .publish(request.names, &token, key_authorization.as_str())
                .await
                .map_err(IssueError::Challenge)?;
            published.push(token);
            challenge.set_ready().await?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retries).await?;
        if status != OrderStatus::Ready {
            return Err(IssueError::Acme(format!(
                "the order is {status:?}: {}",
                order_problem(&mut order).await
            )));
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retries).await?;
        Ok(CertBundle { chain_pem, key_pem })
    }
}

/// The first problem a CA reported on an order's challenges, for the error message.
async fn order_problem(order: &mut instant_acme::Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(a)) = authorizations.next().await {
        for c in &a.challenges {
            if let Some(problem) = &c.error {
                return problem.to_string();
            }
        }
    }
    "no detail given".into()
}

#[async_trait]
impl Issuer for Acme {
    fn mode(&self) -> SslMode {
        SslMode::Letsencrypt
    }

    async fn issue(&self, request: IssueRequest<'_>) -> Result<CertBundle, IssueError> {
        let mut published = Vec::new();
        let result = self.order(&request, &mut published).await;
        for token in &published {
            request.challenges.withdraw(token).await;
        }
        result
    }
}
