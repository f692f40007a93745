//! The mail role of an account: its mailboxes, aliases and DKIM records, kept in the store and
//! set up by the agent of the account's mail server.
//!
//! - A password is hashed here (Argon2id, `{ARGON2ID}` for Dovecot) and never kept, logged or
//!   answered; only the hash is stored and sent to the agent.
//! - **Recorded, then sent.** A new or changed mailbox or alias is recorded (the store checks
//!   the domain, duplicates and alias loops in its transaction), then sent to the mail server.
//!   When the agent refuses or cannot be reached, the record is put back as it was; when the
//!   request may have reached it, the agent is told to undo it too.
//! - **Deleted when the agent has deleted**: a delete reaches the store only after the mail
//!   server confirmed it (and kept the mailbox's mail aside).

use argon2::password_hash::PasswordHasher;
use time::OffsetDateTime;

use super::{Controller, ControllerError, Result};
use crate::domain::{
    Account, AccountId, Alias, MailAddress, MailPassword, Mailbox, PasswordHash, Role, Rule, Server,
};
use crate::protocol::mail::{
    AliasInput, AliasPut, AliasView, DkimRecord, MailPut, MailboxInput, MailboxItem, MailboxPatch,
    MailboxPut, MailboxView,
};
use crate::store::{Kind, StoreError};
use crate::transport::{AgentClient, AgentEndpoint, TransportError};

/// Hashes a password for Dovecot: Argon2id with the crate's defaults (19 MiB, 2 passes), off
/// the async threads.
async fn hash(password: MailPassword) -> Result<PasswordHash> {
    let hashed = tokio::task::spawn_blocking(move || {
        argon2::Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ControllerError::Internal(format!("password hashing: {e}")))?
    .map_err(|e| ControllerError::Internal(format!("password hashing: {e}")))?;
    PasswordHash::parse(&format!("{{ARGON2ID}}{hashed}"))
        .map_err(|e| ControllerError::Internal(format!("password hashing: {e}")))
}

/// Parses an address given in a path.
pub fn path_address(address: &str) -> Result<MailAddress> {
    MailAddress::parse(address).map_err(|r| r.at("address").into())
}

impl Controller {
    /// The account and its mail server; an account without the mail role is refused.
    async fn mail_server(&self, id: AccountId) -> Result<(Account, Server)> {
        let account = self.store.account(id).await?;
        let Some(server) = account.servers.one(Role::Mail) else {
            return Err(Rule::NoMailRole.at("address").into());
        };
        let server = self.store.server(server).await?;
        Ok((account, server))
    }

    /// Runs `call` against the account's mail server (which must be online).
    async fn on_mail_server<T>(
        &self,
        server: &Server,
        call: impl AsyncFnOnce(AgentClient<'_>) -> std::result::Result<T, TransportError>,
    ) -> Result<T> {
        Self::require_online(server)?;
        let endpoint = AgentEndpoint::from(server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        match call(client).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_offline() {
                    self.mark_unreachable(server, &e).await;
                }
                Err(Self::agent_error(server.id, e))
            }
        }
    }

    /// The account's mailboxes.
    /// The account's mailboxes, with the space each takes as its mail server reports it
    /// (`used_mb` null when the server cannot be asked now: the list is answered anyway).
    pub async fn mailboxes(&self, id: AccountId) -> Result<Vec<MailboxView>> {
        let list = self.store.mailboxes(id).await?;
        let mut used = std::collections::HashMap::new();
        if !list.is_empty()
            && let Ok((account, server)) = self.mail_server(id).await
            && server.health.reachable
        {
            let endpoint = AgentEndpoint::from(&server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            match client.mail(&account.spec.username).await {
                Ok(mail) => {
                    used = mail
                        .mailboxes
                        .into_iter()
                        .filter_map(|m| Some((m.address, m.used_mb?)))
                        .collect();
                }
                Err(e) => {
                    tracing::warn!(account = %id, server = %server.id, error = %e, "the mail server did not say how full the mailboxes are");
                }
            }
        }
        Ok(list
            .iter()
            .map(|m| MailboxView::new(m, used.get(&m.address.to_string()).copied()))
            .collect())
    }

    /// Creates a mailbox (see the module documentation).
    pub async fn create_mailbox(&self, id: AccountId, input: &MailboxInput) -> Result<MailboxView> {
        let new = input.validate()?;
        let (account, server) = self.mail_server(id).await?;
        Self::require_online(&server)?;
        let mailbox = Mailbox {
            address: new.address,
            password_hash: hash(new.password).await?,
            quota: new.quota,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store.add_mailbox(id, mailbox.clone()).await?;
        let put = MailboxPut {
            password_hash: mailbox.password_hash.clone(),
            quota_mb: mailbox.quota,
        };
        let user = account.spec.username.clone();
        let address = mailbox.address.clone();
        if let Err(e) = self
            .on_mail_server(&server, async |c| {
                c.put_mailbox(&user, &address, &put).await
            })
            .await
        {
            self.undo_mailbox(&account, &mailbox, None, &e).await;
            return Err(e);
        }
        tracing::info!(account = %id, address = %mailbox.address, "mailbox created");
        Ok(MailboxView::new(&mailbox, None))
    }

    /// Puts a mailbox's record back as it was before a change the agent did not take
    /// (`previous`: `None` for a create), and has the agent undo what it may have done.
    async fn undo_mailbox(
        &self,
        account: &Account,
        mailbox: &Mailbox,
        previous: Option<&Mailbox>,
        error: &ControllerError,
    ) {
        let maybe =
            matches!(error, ControllerError::Agent { source, .. } if source.maybe_applied());
        let restored = match previous {
            None => self
                .store
                .delete_mailbox(account.id, &mailbox.address)
                .await
                .map(drop),
            Some(p) => self
                .store
                .replace_mailbox(account.id, p.clone())
                .await
                .map(drop),
        };
        if let Err(e) = restored {
            tracing::error!(account = %account.id, address = %mailbox.address, error = %e, "could not put the mailbox record back");
        }
        if maybe {
            self.resend_after_failure(account, &mailbox.address).await;
        }
    }

    /// Changes a mailbox's password and/or quota.
    pub async fn change_mailbox(
        &self,
        id: AccountId,
        address: &str,
        patch: &MailboxPatch,
    ) -> Result<MailboxView> {
        let address = path_address(address)?;
        let change = patch.validate()?;
        let (account, server) = self.mail_server(id).await?;
        Self::require_online(&server)?;
        let current = self
            .store
            .mailboxes(id)
            .await?
            .into_iter()
            .find(|m| m.address == address)
            .ok_or_else(|| StoreError::AddressNotFound {
                kind: Kind::Mailbox,
                address: address.to_string(),
            })?;
        let mut next = current.clone();
        if let Some(password) = change.password {
            next.password_hash = hash(password).await?;
        }
        if let Some(quota) = change.quota {
            next.quota = quota;
        }
        if next == current {
            return Ok(MailboxView::new(&current, None));
        }
        let previous = self.store.replace_mailbox(id, next.clone()).await?;
        let put = MailboxPut {
            password_hash: next.password_hash.clone(),
            quota_mb: next.quota,
        };
        let user = account.spec.username.clone();
        if let Err(e) = self
            .on_mail_server(&server, async |c| {
                c.put_mailbox(&user, &address, &put).await
            })
            .await
        {
            self.undo_mailbox(&account, &next, Some(&previous), &e)
                .await;
            return Err(e);
        }
        tracing::info!(account = %id, %address, "mailbox changed");
        Ok(MailboxView::new(&next, None))
    }

    /// Deletes a mailbox on the mail server, then from the store.
    pub async fn delete_mailbox(&self, id: AccountId, address: &str) -> Result<()> {
        self.delete_address(id, address, Kind::Mailbox).await
    }

    /// Deletes a mailbox or an alias (`kind`) on the mail server, then from the store.
    async fn delete_address(&self, id: AccountId, address: &str, kind: Kind) -> Result<()> {
        let address = path_address(address)?;
        let (account, server) = self.mail_server(id).await?;
        let recorded = match kind {
            Kind::Mailbox => self
                .store
                .mailboxes(id)
                .await?
                .iter()
                .any(|m| m.address == address),
            _ => self
                .store
                .aliases(id)
                .await?
                .iter()
                .any(|a| a.address == address),
        };
        if !recorded {
            let address = address.to_string();
            return Err(StoreError::AddressNotFound { kind, address }.into());
        }
        let user = account.spec.username.clone();
        match kind {
            Kind::Mailbox => {
                self.on_mail_server(&server, async |c| c.delete_mailbox(&user, &address).await)
                    .await?;
                self.store.delete_mailbox(id, &address).await?;
                tracing::info!(account = %id, %address, "mailbox deleted (its mail is kept aside on the mail server)");
            }
            _ => {
                self.on_mail_server(&server, async |c| c.delete_alias(&user, &address).await)
                    .await?;
                self.store.delete_alias(id, &address).await?;
                tracing::info!(account = %id, %address, "alias deleted");
            }
        }
        Ok(())
    }

    /// Whether the account's mail server has its mailboxes (addresses and quotas) and aliases
    /// as recorded. An agent that answers with an error does not; one that cannot be reached
    /// is an error.
    pub(super) async fn mail_in_sync(
        &self,
        client: &AgentClient<'_>,
        server: crate::domain::ServerId,
        account: &Account,
    ) -> Result<bool> {
        let on_agent = match client.mail(&account.spec.username).await {
            Ok(mail) => mail,
            Err(TransportError::Agent { .. }) => return Ok(false),
            Err(e) => return Err(ControllerError::Agent { server, source: e }),
        };
        let mut recorded: Vec<(String, Option<u32>)> = self
            .store
            .mailboxes(account.id)
            .await?
            .iter()
            .map(|m| (m.address.to_string(), m.quota.map(|q| q.get())))
            .collect();
        let mut reported: Vec<(String, Option<u32>)> = on_agent
            .mailboxes
            .into_iter()
            .map(|m| (m.address, m.quota_mb))
            .collect();
        recorded.sort();
        reported.sort();
        let mut aliases: Vec<AliasView> = self
            .store
            .aliases(account.id)
            .await?
            .iter()
            .map(AliasView::from)
            .collect();
        let mut reported_aliases = on_agent.aliases;
        aliases.sort_by(|a, b| a.address.cmp(&b.address));
        reported_aliases.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(recorded == reported && aliases == reported_aliases)
    }

    /// After a change that may have reached the mail server but is not recorded: the server
    /// gets the account's mail as recorded again (what it took is undone).
    async fn resend_after_failure(&self, account: &Account, address: &MailAddress) {
        if let Err(e) = self.resend_mail(account.id).await {
            tracing::error!(account = %account.id, %address, error = %e, "the mail server may hold a change that was not recorded: reconcile it");
        }
    }

    /// Sends the account's whole mail as recorded to its mail server (what the server has and
    /// the record does not is removed there; removed mailboxes' mail is kept aside): the repair
    /// after a mail server was restored or its files were changed by hand. Whether anything
    /// changed there.
    pub async fn resend_mail(&self, id: AccountId) -> Result<bool> {
        let (account, server) = self.mail_server(id).await?;
        self.send_mail_to(&account, &server).await
    }

    /// Sends the account's whole mail as recorded to `server` (its mail server, or the one it
    /// moves to); whether anything changed there.
    pub(super) async fn send_mail_to(&self, account: &Account, server: &Server) -> Result<bool> {
        let id = account.id;
        let put = MailPut {
            mailboxes: self
                .store
                .mailboxes(id)
                .await?
                .into_iter()
                .map(|m| MailboxItem {
                    address: m.address,
                    password_hash: m.password_hash,
                    quota_mb: m.quota,
                })
                .collect(),
            aliases: self.store.aliases(id).await?,
        };
        let user = account.spec.username.clone();
        let applied = self
            .on_mail_server(server, async |c| c.put_mail(&user, &put).await)
            .await?;
        Ok(applied.changed)
    }

    /// The account's aliases.
    pub async fn aliases(&self, id: AccountId) -> Result<Vec<AliasView>> {
        let list = self.store.aliases(id).await?;
        Ok(list.iter().map(AliasView::from).collect())
    }

    /// Creates (`path` `None`: POST, a new address) or replaces (`PUT` at `path`) an alias.
    pub async fn put_alias(
        &self,
        id: AccountId,
        path: Option<&str>,
        input: &AliasInput,
    ) -> Result<(AliasView, bool)> {
        let alias = input.validate(path)?;
        let (account, server) = self.mail_server(id).await?;
        Self::require_online(&server)?;
        let previous = self
            .store
            .put_alias(id, alias.clone(), path.is_none())
            .await?;
        let put = AliasPut {
            destinations: alias.destinations.clone(),
        };
        let user = account.spec.username.clone();
        let address = alias.address.clone();
        if let Err(e) = self
            .on_mail_server(&server, async |c| c.put_alias(&user, &address, &put).await)
            .await
        {
            self.undo_alias(&account, &alias, previous.as_ref(), &e)
                .await;
            return Err(e);
        }
        tracing::info!(account = %id, address = %alias.address, "alias set");
        Ok((AliasView::from(&alias), previous.is_none()))
    }

    async fn undo_alias(
        &self,
        account: &Account,
        alias: &Alias,
        previous: Option<&Alias>,
        error: &ControllerError,
    ) {
        let maybe =
            matches!(error, ControllerError::Agent { source, .. } if source.maybe_applied());
        let restored = match previous {
            None => self
                .store
                .delete_alias(account.id, &alias.address)
                .await
                .map(drop),
            Some(p) => self
                .store
                .put_alias(account.id, p.clone(), false)
                .await
                .map(drop),
        };
        if let Err(e) = restored {
            tracing::error!(account = %account.id, address = %alias.address, error = %e, "could not put the alias record back");
        }
        if maybe {
            self.resend_after_failure(account, &alias.address).await;
        }
    }

    /// Deletes an alias on the mail server, then from the store.
    pub async fn delete_alias(&self, id: AccountId, address: &str) -> Result<()> {
        self.delete_address(id, address, Kind::Alias).await
    }

    /// The DKIM public records of the account's mail domains, as the mail server has them.
    pub async fn dkim(&self, id: AccountId) -> Result<Vec<DkimRecord>> {
        let (account, server) = self.mail_server(id).await?;
        let user = account.spec.username.clone();
        self.on_mail_server(&server, async |c| c.dkim(&user).await)
            .await
    }
}
