//! The db role of an account: its databases and database users, kept in the store and made
//! real by the agent of the account's db server.
//!
//! - A password is hashed here (`mysql_native_password`: `*` and SHA1(SHA1(password))) and
//!   never kept, logged or answered; the hash is stored sealed and sent to the db server,
//!   which sets it with `IDENTIFIED BY PASSWORD`, so the password never reaches that machine.
//! - **Recorded, then sent.** A change is recorded (the store checks the role, the names
//!   across accounts and the grants), then the account's whole db part goes to the db server
//!   (as part of the account: every role the account has there). When the agent refuses or
//!   cannot be reached, the record is put back; when the request may have reached it, the
//!   agent is sent the record as it was.
//! - **Hosts**: a user may connect from the db server itself (`localhost`; phpMyAdmin there),
//!   from `127.0.0.1` when the account's web server is the same machine, and from the web
//!   server's addresses when it is another one. They follow the web role when it moves.

use time::OffsetDateTime;

use super::roles::spec_for;
use super::{Controller, ControllerError, Result};
use crate::domain::db::{DbHost, DbName, DbSpec, DbUserName, DbUserSpec};
use crate::domain::{Account, AccountId, Role, Rule, Server};
use crate::protocol::db::{DatabaseInput, DatabaseView, DbUserInput, DbUserPatch, DbUserView};
use crate::store::{DbRecord, DbUser, StoreError};
use crate::transport::{AgentClient, AgentEndpoint};

/// A name given in a path, as one of the account's.
fn path_db(account: &Account, name: &str) -> Result<DbName> {
    DbName::parse(&account.spec.username, name).map_err(|r| r.at("name").into())
}

fn path_user(account: &Account, name: &str) -> Result<DbUserName> {
    DbUserName::parse(&account.spec.username, name).map_err(|r| r.at("name").into())
}

/// What an account delete left on its db server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
pub struct KeptData {
    /// The databases kept (with their data) on the db server.
    pub databases: Vec<String>,
    /// The database users kept there, locked: they can no longer log in.
    pub database_users: Vec<String>,
    /// Why, and until when.
    pub message: String,
}

impl Controller {
    /// The account and its db server; an account without the db role is refused.
    async fn db_server(&self, id: AccountId) -> Result<(Account, Server)> {
        let account = self.store.account(id).await?;
        let Some(server) = account.servers.one(Role::Db) else {
            return Err(Rule::NoDbRole.at("name").into());
        };
        let server = self.store.server(server).await?;
        Ok((account, server))
    }

    /// Where the account's database users may connect from.
    async fn db_hosts(&self, account: &Account) -> Result<Vec<DbHost>> {
        let mut hosts = vec![DbHost::Localhost];
        match (
            account.servers.one(Role::Web),
            account.servers.one(Role::Db),
        ) {
            (Some(web), Some(db)) if web == db => {
                hosts.push(DbHost::Ip(std::net::Ipv4Addr::LOCALHOST.into()));
            }
            (Some(web), _) => {
                let web = self.store.server(web).await?;
                let before = hosts.len();
                hosts.extend(web.ipv4().map(|a| DbHost::Ip(a.into())));
                hosts.extend(web.ipv6().map(|a| DbHost::Ip(a.into())));
                if hosts.len() == before {
                    tracing::warn!(account = %account.id, server = %web.id, "the web server's address is not known (set its ipv4 or ipv6): its database users connect only on the db server");
                }
            }
            (None, _) => {}
        }
        Ok(hosts)
    }

    /// The account's databases and users as its db server is sent them.
    pub(super) async fn db_spec(&self, account: &Account) -> Result<DbSpec> {
        if !account.spec.roles.contains(Role::Db) {
            return Ok(DbSpec::default());
        }
        let record = self.store.db(account.id).await?;
        if record.databases.is_empty() && record.users.is_empty() {
            return Ok(DbSpec::default());
        }
        let hosts = self.db_hosts(account).await?;
        Ok(DbSpec {
            databases: record.databases.iter().map(|d| d.name.clone()).collect(),
            users: record
                .users
                .iter()
                .map(|u| DbUserSpec {
                    name: u.name.clone(),
                    hash: u.hash.clone(),
                    databases: u.databases.clone(),
                    hosts: hosts.clone(),
                })
                .collect(),
        })
    }

    /// Sends the account (every role it has on its db server, the db part as recorded now)
    /// to the db server.
    async fn send_db(
        &self,
        account: &Account,
        server: &Server,
    ) -> std::result::Result<(), crate::transport::TransportError> {
        let parts = self
            .parts_of(account, account.servers.roles_on(server.id))
            .await
            .map_err(|e| crate::transport::TransportError::Unreachable(e.to_string()))?;
        let endpoint = AgentEndpoint::from(server);
        let client = AgentClient::new(&*self.transport, &endpoint);
        let spec = spec_for(account, account.servers.roles_on(server.id), &parts);
        let result = client.put_account(&spec).await.map(drop);
        if let Err(e) = &result
            && e.is_offline()
        {
            self.mark_unreachable(server, e).await;
        }
        result
    }

    /// Records a change with `change`, then sends it to the db server; undone when the db
    /// server does not take it (see the module documentation).
    async fn change_db(
        &self,
        id: AccountId,
        change: impl AsyncFnOnce() -> std::result::Result<DbRecord, StoreError>,
    ) -> Result<(Account, Server, DbRecord)> {
        let (account, server) = self.db_server(id).await?;
        Self::require_online(&server)?;
        let before = self.store.db(id).await?;
        let after = change().await?;
        if let Err(e) = self.send_db(&account, &server).await {
            tracing::warn!(account = %id, server = %server.id, error = %e, "a database change did not reach the db server; it is undone");
            if let Err(store) = self.store.restore_db(id, before).await {
                tracing::error!(account = %id, error = %store, "could not put the databases' record back");
            } else if e.maybe_applied()
                && let Err(again) = self.send_db(&account, &server).await
            {
                tracing::error!(account = %id, server = %server.id, error = %again, "could not put a refused database change back; the next reconciliation reports it");
            }
            return Err(Self::agent_error(server.id, e));
        }
        Ok((account, server, after))
    }

    /// The account's databases, with what each takes on disk as the db server reports it
    /// (`size_bytes` null when it cannot be asked now: the list is answered anyway).
    pub async fn databases(&self, id: AccountId) -> Result<Vec<DatabaseView>> {
        let (account, server) = self.db_server(id).await?;
        let record = self.store.db(id).await?;
        let mut sizes = std::collections::BTreeMap::new();
        if !record.databases.is_empty() && server.health.reachable {
            let endpoint = AgentEndpoint::from(&server);
            let client = AgentClient::new(&*self.transport, &endpoint);
            match client.db(&account.spec.username).await {
                Ok(found) => sizes = found.sizes,
                Err(e) => {
                    tracing::warn!(account = %id, server = %server.id, error = %e, "the db server did not say how large the databases are");
                }
            }
        }
        Ok(record
            .databases
            .iter()
            .map(|d| DatabaseView {
                name: d.name.to_string(),
                size_bytes: sizes.get(d.name.as_str()).copied(),
                server_id: server.id,
            })
            .collect())
    }

    /// Creates a database (see the module documentation).
    pub async fn create_database(
        &self,
        id: AccountId,
        input: &DatabaseInput,
    ) -> Result<DatabaseView> {
        let account = self.store.account(id).await?;
        let name = input.validate(&account.spec.username)?;
        let (_, server, _) = self
            .change_db(id, async || {
                self.store
                    .add_database(id, name.clone(), OffsetDateTime::now_utc())
                    .await
            })
            .await?;
        tracing::info!(account = %id, database = %name, "database created");
        Ok(DatabaseView {
            name: name.to_string(),
            size_bytes: Some(0),
            server_id: server.id,
        })
    }

    /// Deletes a database (its data goes) and every user's grant on it.
    pub async fn delete_database(&self, id: AccountId, name: &str) -> Result<()> {
        let account = self.store.account(id).await?;
        let name = path_db(&account, name)?;
        self.change_db(id, async || self.store.delete_database(id, &name).await)
            .await?;
        tracing::info!(account = %id, database = %name, "database deleted");
        Ok(())
    }

    /// The users of an account.
    pub async fn db_users(&self, id: AccountId) -> Result<Vec<DbUserView>> {
        let (account, server) = self.db_server(id).await?;
        let record = self.store.db(id).await?;
        let hosts = self.db_hosts(&account).await?;
        Ok(record
            .users
            .iter()
            .map(|u| user_view(u, &hosts, &server))
            .collect())
    }

    /// Creates a database user with grants on some of the account's databases.
    pub async fn create_db_user(&self, id: AccountId, input: &DbUserInput) -> Result<DbUserView> {
        let account = self.store.account(id).await?;
        let new = input.validate(&account.spec.username)?;
        let user = DbUser {
            name: new.name.clone(),
            hash: new.password.hash(),
            databases: new.databases,
            created_at: OffsetDateTime::now_utc(),
        };
        let (account, server, record) = self
            .change_db(id, async || self.store.add_db_user(id, user).await)
            .await?;
        tracing::info!(account = %id, user = %new.name, "database user created");
        self.view_of(&account, &server, &record, &new.name).await
    }

    /// Changes a user's password and/or databases.
    pub async fn patch_db_user(
        &self,
        id: AccountId,
        name: &str,
        patch: &DbUserPatch,
    ) -> Result<DbUserView> {
        let account = self.store.account(id).await?;
        let name = path_user(&account, name)?;
        let change = patch.validate(&account.spec.username)?;
        let hash = change.password.as_ref().map(|p| p.hash());
        let (account, server, record) = self
            .change_db(id, async || {
                self.store
                    .change_db_user(id, &name, hash, change.databases)
                    .await
            })
            .await?;
        tracing::info!(account = %id, user = %name, password = change.password.is_some(), "database user changed");
        self.view_of(&account, &server, &record, &name).await
    }

    /// Deletes a database user: its sessions end and it can no longer log in.
    pub async fn delete_db_user(&self, id: AccountId, name: &str) -> Result<()> {
        let account = self.store.account(id).await?;
        let name = path_user(&account, name)?;
        self.change_db(id, async || self.store.delete_db_user(id, &name).await)
            .await?;
        tracing::info!(account = %id, user = %name, "database user deleted");
        Ok(())
    }

    async fn view_of(
        &self,
        account: &Account,
        server: &Server,
        record: &DbRecord,
        name: &DbUserName,
    ) -> Result<DbUserView> {
        let user = record.user(name).ok_or_else(|| {
            ControllerError::Internal(format!("the database user {name} is not recorded"))
        })?;
        Ok(user_view(user, &self.db_hosts(account).await?, server))
    }

    /// After the account's web role moved: the db server is sent the users with their new
    /// hosts. Best effort: logged when it cannot be done now (a reconciliation of the db
    /// server brings it up to date).
    pub(super) async fn db_follow_web(&self, account: &Account) {
        if !account.spec.roles.contains(Role::Db) {
            return;
        }
        let outcome = async {
            let (account, server) = self.db_server(account.id).await?;
            Self::require_online(&server)?;
            self.send_db(&account, &server)
                .await
                .map_err(|e| Self::agent_error(server.id, e))
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(account = %account.id, error = %e, "the database users' hosts could not follow the web server; a reconciliation of the db server brings them up to date");
        }
    }

    /// What an account's delete leaves on its db server: its databases (with their data) and
    /// its users (locked), until the backup role takes a final backup.
    pub(super) async fn kept_on_delete(&self, account: &Account) -> Result<Option<KeptData>> {
        if !account.spec.roles.contains(Role::Db) {
            return Ok(None);
        }
        let record = self.store.db(account.id).await?;
        if record.databases.is_empty() && record.users.is_empty() {
            return Ok(None);
        }
        Ok(Some(KeptData {
            databases: record.databases.iter().map(|d| d.name.to_string()).collect(),
            database_users: record.users.iter().map(|u| u.name.to_string()).collect(),
            message: "the databases and their users are kept on the db server (the users locked) until a final backup of them exists; nothing deletes them before that".into(),
        }))
    }
}

fn user_view(user: &DbUser, hosts: &[DbHost], server: &Server) -> DbUserView {
    DbUserView {
        name: user.name.to_string(),
        databases: user.databases.iter().map(ToString::to_string).collect(),
        hosts: hosts.iter().map(ToString::to_string).collect(),
        phpmyadmin_url: match (&server.spec.panel_url, &server.spec.phpmyadmin_path) {
            (Some(panel), Some(path)) => Some(format!(
                "{}{}/",
                panel.to_string().trim_end_matches('/'),
                path
            )),
            _ => None,
        },
    }
}
