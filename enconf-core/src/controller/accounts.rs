//! Hosting accounts: each role on its own server, set up, moved and removed through the agents
//! of those servers.
//!
//! - **Created**: placed role by role and recorded (`provisioning`) in one store transaction,
//!   which refuses when a role cannot be placed or a server it needs is offline (nothing
//!   recorded, no agent called); then each server is sent the account with the roles it serves
//!   for it. When one fails, the servers already done are undone and the record goes, so no
//!   half-made account (a site without its mail server) stays behind; only when an undo fails
//!   too is the account kept, `failed`.
//! - **Deleted** once every server it uses answers, on each of them, then from the store.
//! - **Moved** by a migration (see `migrate.rs`).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::roles::spec_for;
use super::{Controller, ControllerError, Result};
use crate::domain::{
    Account, AccountId, AccountStatus, Role, RoleServers, RoleSet, Server, ServerId,
};
use crate::placement::PlacementError;
use crate::protocol::agent::AgentAccount;
use crate::protocol::list::{ListQuery, Page};
use crate::protocol::{AccountInput, AccountPatch, AccountView, Reconciliation};
use crate::store::StoreError;
use crate::transport::{AgentClient, AgentEndpoint, TransportError};

/// What becomes of an account's data on a server when a role goes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DataFate {
    /// Kept there (Maildirs aside, databases with their users locked).
    Keep,
    /// Removed: a copy exists elsewhere (a final backup, or the role's new server).
    Remove,
}

impl Controller {
    /// Every account, by id.
    pub async fn accounts(&self) -> Result<Vec<AccountView>> {
        let accounts = self.store.accounts().await?;
        Ok(accounts.iter().map(AccountView::from).collect())
    }

    /// One page of the accounts `query` asks for (`GET /api/v1/accounts`), read from the
    /// store's indexes.
    pub async fn accounts_page(&self, query: &ListQuery) -> Result<Page<AccountView>> {
        let paging = query.paging()?;
        let filter = query.accounts()?;
        if let Some(server) = filter.server {
            self.named_server(server, "server_id").await?;
        }
        let accounts = self
            .store
            .accounts_page(&filter, paging.after.map(AccountId), paging.limit + 1)
            .await?;
        let views = accounts.iter().map(AccountView::from).collect();
        Ok(Page::of(views, paging.limit, |a: &AccountView| a.id))
    }

    pub async fn account(&self, id: AccountId) -> Result<AccountView> {
        Ok(AccountView::from(&self.store.account(id).await?))
    }

    /// Creates an account (see the module documentation).
    pub async fn create_account(&self, input: &AccountInput) -> Result<AccountView> {
        let new = input.validate()?;
        for (role, id) in &new.pins {
            self.named_server(*id, &input.pin_field(*role)).await?;
        }
        let account = self
            .store
            .create_account(new, OffsetDateTime::now_utc())
            .await
            .map_err(|e| pin_error(e, input))?;
        let prepared = async {
            self.refresh_managed(&account, None).await?;
            let parts = self.parts_of(&account, account.spec.roles).await?;
            Ok::<_, ControllerError>((self.servers_of(&account.servers).await?, parts))
        }
        .await;
        let (servers, parts) = match prepared {
            Ok(p) => p,
            Err(e) => {
                if let Err(store) = self.store.delete_account(account.id).await {
                    tracing::error!(account = %account.id, error = %store, "could not drop the record of an account not set up");
                }
                return Err(e);
            }
        };
        let mut done: Vec<&Server> = Vec::new();
        for (server, roles) in &servers {
            let endpoint = AgentEndpoint::from(server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            if let Err(e) = client
                .put_account(&spec_for(&account, *roles, &parts))
                .await
            {
                if e.is_offline() {
                    self.mark_unreachable(server, &e).await;
                }
                tracing::warn!(account = %account.id, server = %server.id, error = %e, "setting up an account failed");
                let mut undo = done.clone();
                if e.maybe_applied() {
                    undo.push(server);
                }
                let clean = self.delete_on(&undo, &account).await;
                let recorded = match clean {
                    true => self.store.delete_account(account.id).await.map(drop),
                    false => self
                        .store
                        .set_account_status(account.id, AccountStatus::Failed)
                        .await
                        .map(drop),
                };
                if let Err(store) = recorded {
                    tracing::error!(account = %account.id, error = %store, "could not record the failure");
                }
                return Err(Self::agent_error(server.id, e));
            }
            done.push(server);
        }
        let account = self
            .store
            .set_account_status(account.id, AccountStatus::Active)
            .await?;
        tracing::info!(account = %account.id, user = %account.spec.username, servers = ?account.servers.servers(), "account created");
        if account.spec.roles.contains(Role::Mail) {
            self.follow_mail(&account).await;
        }
        Ok(AccountView::from(&account))
    }

    /// Changes an account's domains, PHP version or PHP limits: recorded (new domains checked
    /// like a create's), then sent to every server of the account; when a server refuses, the
    /// servers already changed and the record are put back, so nothing changes.
    pub async fn patch_account(&self, id: AccountId, patch: &AccountPatch) -> Result<AccountView> {
        let account = self.store.account(id).await?;
        let spec = patch.apply(&account.spec)?;
        if spec == account.spec {
            return Ok(AccountView::from(&account));
        }
        let servers = self.servers_of(&account.servers).await?;
        if let Some(version) = spec.php_version
            && let Some((web, _)) = servers.iter().find(|(_, roles)| roles.contains(Role::Web))
            && !web.health.offers_php(version)
        {
            let offered: Vec<String> = web
                .health
                .php_versions
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect();
            return Err(crate::domain::Rule::PhpNotOffered(offered.join(", "))
                .at("php_version")
                .into());
        }
        let old_parts = self.parts_of(&account, account.spec.roles).await?;
        let updated = self.store.update_account(id, spec).await?;
        let zones = match self.refresh_managed(&updated, None).await {
            Ok(_) => self.parts_of(&updated, updated.spec.roles).await,
            Err(e) => Err(e),
        };
        let parts = match zones {
            Ok(z) => z,
            Err(e) => {
                if let Err(store) = self.store.update_account(id, account.spec.clone()).await {
                    tracing::error!(account = %id, error = %store, "could not put the record back");
                }
                return Err(e);
            }
        };
        let mut done: Vec<&Server> = Vec::new();
        for (server, roles) in &servers {
            let endpoint = AgentEndpoint::from(server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            if let Err(e) = client
                .put_account(&spec_for(&updated, *roles, &parts))
                .await
            {
                if e.is_offline() {
                    self.mark_unreachable(server, &e).await;
                }
                tracing::warn!(account = %id, server = %server.id, error = %e, "changing an account failed");
                // An agent that answered with an error kept what it had; one that did not
                // answer may have changed.
                let mut undo = done.clone();
                if matches!(e, TransportError::Interrupted(_)) {
                    undo.push(server);
                }
                let mut clean = true;
                for server in undo {
                    let roles = account.servers.roles_on(server.id);
                    let endpoint = AgentEndpoint::from(server);
                    let client = AgentClient::new(&*self.transport, &endpoint);
                    if let Err(e) = client
                        .put_account(&spec_for(&account, roles, &old_parts))
                        .await
                    {
                        tracing::error!(account = %id, server = %server.id, error = %e,
                            "could not put a refused change back; the next reconciliation reports it");
                        clean = false;
                    }
                }
                let recorded = match self.store.update_account(id, account.spec.clone()).await {
                    Ok(restored) => {
                        // The zones the change made or changed follow the record again.
                        if let Err(e) = self.refresh_managed(&restored, None).await {
                            tracing::error!(account = %id, error = %e, "could not put the zones back");
                        }
                        match clean {
                            true => Ok(()),
                            false => self
                                .store
                                .set_account_status(id, AccountStatus::Failed)
                                .await
                                .map(drop),
                        }
                    }
                    Err(e) => Err(e),
                };
                if let Err(store) = recorded {
                    tracing::error!(account = %id, error = %store, "could not record the failure");
                }
                return Err(Self::agent_error(server.id, e));
            }
            done.push(server);
        }
        tracing::info!(account = %id, user = %updated.spec.username, "account changed");
        if updated.spec.roles.contains(Role::Mail) {
            self.follow_mail(&updated).await;
        }
        Ok(AccountView::from(&updated))
    }

    /// The servers `placed` uses, each with the roles it serves, all known to be online.
    async fn servers_of(&self, placed: &RoleServers) -> Result<Vec<(Server, RoleSet)>> {
        let mut out = Vec::new();
        for (id, roles) in placed.by_server() {
            let server = self.store.server(id).await?;
            Self::require_online(&server)?;
            out.push((server, roles));
        }
        Ok(out)
    }

    /// Deletes `account` on each of `servers` (best effort, each logged); `true` when every
    /// one confirmed.
    async fn delete_on(&self, servers: &[&Server], account: &Account) -> bool {
        let mut clean = true;
        for server in servers {
            let endpoint = AgentEndpoint::from(*server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            if let Err(e) = client.delete_account(&account.spec.username).await {
                tracing::error!(account = %account.id, server = %server.id, error = %e,
                    "could not undo; the next reconciliation reports it");
                clean = false;
            }
        }
        clean
    }

    /// `503 agent_offline` when nothing reached the agent, otherwise the agent's failure.
    pub(super) fn agent_error(server: ServerId, e: TransportError) -> ControllerError {
        if e.maybe_applied() || e.conflict().is_some() {
            ControllerError::Agent { server, source: e }
        } else {
            ControllerError::Offline {
                server,
                reason: e.to_string(),
            }
        }
    }

    /// Deletes an account on every server it uses (all must be online first), then from the
    /// store. When a server fails, the account is kept, `failed`: deleting again finishes.
    /// An account with the backup role gets a final backup first, then its Maildirs and
    /// databases go with it; without the role they stay on their servers (see
    /// [`super::db`]) and what was kept is answered.
    pub async fn delete_account(&self, id: AccountId) -> Result<Option<super::db::KeptData>> {
        let account = self.store.account(id).await?;
        let servers = self.servers_of(&account.servers).await?;
        // The last state of the account is kept by its backup server (by the retention
        // policy); without it nothing is deleted. With it, its mail and databases go too;
        // an account without backups keeps them on their servers.
        let backed_up = account.spec.roles.contains(Role::Backup);
        let kept = match backed_up {
            true => {
                self.final_backup(&account).await?;
                None
            }
            false => self.kept_on_delete(&account).await?,
        };
        for (server, _) in &servers {
            let endpoint = AgentEndpoint::from(server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            let deleted = match backed_up {
                true => client.delete_account_and_data(&account.spec.username).await,
                false => client.delete_account(&account.spec.username).await,
            };
            if let Err(e) = deleted {
                if e.is_offline() {
                    self.mark_unreachable(server, &e).await;
                }
                if e.maybe_applied()
                    && let Err(store) = self
                        .store
                        .set_account_status(id, AccountStatus::Failed)
                        .await
                {
                    tracing::error!(account = %id, error = %store, "could not record the failure");
                }
                tracing::warn!(account = %id, server = %server.id, error = %e, "deleting an account failed");
                return Err(Self::agent_error(server.id, e));
            }
        }
        self.store.delete_account(id).await?;
        tracing::info!(account = %id, user = %account.spec.username, kept_databases = kept.as_ref().map_or(0, |k| k.databases.len()), "account deleted");
        Ok(kept)
    }

    /// Puts `account` on `server` with `roles`, or deletes it there when `roles` is empty;
    /// with `data` `Remove`, the roles it takes away lose their data there too (a migration
    /// copied it to their new servers).
    pub(super) async fn put_roles(
        &self,
        server: &Server,
        account: &Account,
        roles: RoleSet,
        data: DataFate,
    ) -> std::result::Result<(), TransportError> {
        let endpoint = AgentEndpoint::from(server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        let user = &account.spec.username;
        let result = match (roles.is_empty(), data) {
            (true, DataFate::Keep) => client.delete_account(user).await.map(drop),
            (true, DataFate::Remove) => client.delete_account_and_data(user).await.map(drop),
            (false, _) => {
                let parts = self
                    .parts_of(account, roles)
                    .await
                    .map_err(|e| TransportError::Unreachable(e.to_string()))?;
                let spec = spec_for(account, roles, &parts);
                match data {
                    DataFate::Keep => client.put_account(&spec).await,
                    DataFate::Remove => client.put_account_removing_data(&spec).await,
                }
                .map(drop)
            }
        };
        if let Err(e) = &result
            && e.is_offline()
        {
            self.mark_unreachable(server, e).await;
        }
        result
    }

    /// Compares what a server's agent has with what is recorded for it, and sets each recorded
    /// account's status from that: `active` when the agent has it as recorded (with the roles
    /// the account has there), `failed` when not. Accounts only the agent has are reported,
    /// never deleted.
    pub async fn reconcile(&self, id: ServerId) -> Result<Reconciliation> {
        let server = self.store.server(id).await?;
        Self::require_online(&server)?;
        // A dns server added (or made active) after accounts with the dns role serves their
        // zones from now on: it joins them, their NS records name it, and every dns server of
        // theirs gets the zones (best effort here; this server is repaired below either way).
        for account in self.store.join_dns(id).await? {
            let joined = async {
                self.refresh_managed(&account, None).await?;
                self.push_zones(account.id).await
            }
            .await;
            match joined {
                Ok(()) => {
                    tracing::info!(account = %account.id, server = %id, "dns server joined the account's zones")
                }
                Err(e) => {
                    tracing::warn!(account = %account.id, server = %id, error = %e, "dns server joined the account, but not every dns server has the new zones yet")
                }
            }
        }
        let endpoint = AgentEndpoint::from(&server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        let reported = match client.accounts().await {
            Ok(list) => list.accounts,
            Err(e) => {
                if e.is_offline() {
                    self.mark_unreachable(&server, &e).await;
                }
                return Err(ControllerError::Agent {
                    server: id,
                    source: e,
                });
            }
        };
        let mut on_agent: BTreeMap<String, AgentAccount> = reported
            .into_iter()
            .map(|a| (a.username.clone(), a))
            .collect();
        let mut report = Reconciliation::default();
        for account in self.store.accounts_on(id).await? {
            let name = account.spec.username.to_string();
            let roles = account.servers.roles_on(id);
            let parts = self.parts_of(&account, roles).await?;
            let expected = spec_for(&account, roles, &parts);
            let found = on_agent.remove(&name);
            // A dns server that missed changes (it was offline, or is new) is brought up to
            // date: it serves what is recorded, as every other dns server does.
            if roles.contains(Role::Dns)
                && found.as_ref().is_none_or(|a| !same_account(&expected, a))
            {
                match client.put_account(&expected).await {
                    Ok(_) => {
                        tracing::info!(account = %account.id, server = %id, "zones brought up to date");
                        report.repaired.push(name.clone());
                        let mail_ok = account.servers.one(Role::Mail) != Some(id)
                            || self.mail_in_sync(&client, id, &account).await?;
                        let (status, list) = match mail_ok {
                            true => (AccountStatus::Active, &mut report.in_sync),
                            false => (AccountStatus::Failed, &mut report.differing),
                        };
                        list.push(name);
                        if account.status != status {
                            self.store.set_account_status(account.id, status).await?;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(account = %account.id, server = %id, error = %e, "the zones could not be brought up to date");
                    }
                }
            }
            let (status, list) = match found {
                None => (AccountStatus::Failed, &mut report.missing_on_agent),
                Some(a)
                    if same_account(&expected, &a)
                        && (account.servers.one(Role::Mail) != Some(id)
                            || self.mail_in_sync(&client, id, &account).await?) =>
                {
                    (AccountStatus::Active, &mut report.in_sync)
                }
                Some(_) => (AccountStatus::Failed, &mut report.differing),
            };
            list.push(name);
            if account.status != status {
                self.store.set_account_status(account.id, status).await?;
            }
        }
        report.unknown_to_controller = on_agent.into_keys().collect();
        report.in_sync.sort();
        report.repaired.sort();
        report.missing_on_agent.sort();
        report.differing.sort();
        Ok(report)
    }
}

/// A placement error about a pinned role names the field the pin came in (`server_id` or
/// `servers.<role>`).
fn pin_error(e: StoreError, input: &AccountInput) -> ControllerError {
    match e {
        StoreError::Placement(error @ PlacementError::Unfit { role, .. }) if role != Role::Dns => {
            let field = match input.pin_field(role).as_str() {
                "server_id" => "server_id",
                _ => pin_field_static(role),
            };
            ControllerError::Unfit { field, error }
        }
        other => other.into(),
    }
}

fn pin_field_static(role: Role) -> &'static str {
    match role {
        Role::Web => "servers.web",
        Role::Mail => "servers.mail",
        Role::Dns => "servers.dns",
        Role::Db => "servers.db",
        Role::Backup => "servers.backup",
    }
}

/// Whether the agent's copy of an account is what the server should have (a recorded PHP
/// version of `None` accepts the agent's default).
fn same_account(expected: &crate::domain::AccountSpec, agent: &AgentAccount) -> bool {
    let web = expected.roles.contains(Role::Web);
    let zones: BTreeMap<String, u32> = expected
        .zones
        .iter()
        .map(|z| (z.name.to_string(), z.serial))
        .collect();
    if zones != agent.zones {
        return false;
    }
    if (!expected.db.is_empty()).then(|| expected.db.digest()) != agent.db {
        return false;
    }
    expected
        .domains
        .iter()
        .map(|d| d.as_str())
        .eq(agent.domains.iter().map(String::as_str))
        && expected.roles == agent.roles
        && (!web
            || (expected
                .php_version
                .is_none_or(|v| v.to_string() == agent.php_version)
                && expected.php == agent.php))
}
