//! The store's rules, written once over the key-value seam: ids, uniqueness, account counts,
//! placement inside the recording transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::group::Committer;
use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::{Kind, LISTED_ACCOUNTS, MemoryBackend, SCHEMA_VERSION, Store, StoreError};
use crate::domain::{
    Account, AccountId, AccountSpec, AccountStatus, AgentToken, Health, NewAccount, Role,
    RoleServers, RoleSet, Server, ServerId, ServerSpec,
};
use crate::placement;
use crate::secret::{Sealer, SecretKey};

const SCHEMA_KEY: &[u8] = b"schema_version";
/// A value sealed with the store's key when it was first opened: opening it tells whether the
/// key given now is that key.
const KEY_CHECK: &[u8] = b"key_check";
const NEXT_SERVER_ID: &[u8] = b"next_server_id";
const NEXT_ACCOUNT_ID: &[u8] = b"next_account_id";

/// The [`Store`] over any [`Backend`].
#[derive(Debug)]
pub struct KvStore<B> {
    backend: Arc<B>,
    /// Seals agent tokens at rest.
    sealer: Arc<Sealer>,
    /// Groups concurrent writes into one commit.
    committer: Arc<Committer>,
}

impl<B> Clone for KvStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            sealer: Arc::clone(&self.sealer),
            committer: Arc::clone(&self.committer),
        }
    }
}

impl KvStore<MemoryBackend> {
    /// A new, empty in-memory store (its secrets sealed with a key of its own).
    pub fn new_in_memory() -> Self {
        // A fresh in-memory backend has no schema to disagree with and no lock to poison; an
        // all-zero key serves when the system's random numbers fail, since nothing outlives
        // the process.
        let key = SecretKey::generate().unwrap_or_else(|_| SecretKey::zero());
        Self {
            backend: Arc::new(MemoryBackend::new()),
            sealer: Arc::new(Sealer::new(&key)),
            committer: Arc::default(),
        }
    }
}

#[cfg(feature = "redb")]
impl KvStore<super::RedbBackend> {
    /// Opens (or creates) the store file at `path` (mode 0600), whose secrets are sealed with
    /// `key`. Blocking.
    pub fn open(path: impl AsRef<std::path::Path>, key: &SecretKey) -> Result<Self, StoreError> {
        Self::with_backend(super::RedbBackend::open(path.as_ref())?, key)
    }
}

impl<B: Backend> KvStore<B> {
    /// Wraps a backend whose secrets are sealed with `key`: records the schema version in a
    /// new one, brings an older one up to date, refuses a newer one, and refuses a key that is
    /// not the one the store was first opened with.
    pub fn with_backend(backend: B, key: &SecretKey) -> Result<Self, StoreError> {
        let sealer = Sealer::new(key);
        backend.write(|tx| {
            check_key(tx, &sealer)?;
            match read_u64(tx, Table::Meta, SCHEMA_KEY)? {
                Some(found) if found > SCHEMA_VERSION => Err(StoreError::UnsupportedSchema {
                    found,
                    supported: SCHEMA_VERSION,
                }),
                Some(found) if found == SCHEMA_VERSION => Ok(()),
                found => {
                    // Schema 3 only adds what schema 2 records are read as (accounts with
                    // one server are web accounts), schema 4 the mail tables (empty in an
                    // older store), schema 5 the dns zones, schema 6 the databases and schema 7 the jobs and
                    // backups (likewise):
                    // nothing to rewrite. Schema 8 adds the role index, made from the accounts.
                    if found.is_some_and(|v| v < 2) {
                        migrate_to_2(tx, &sealer)?;
                    }
                    if found.is_some_and(|v| v < 8) {
                        super::pages::migrate_to_8(tx)?;
                        super::jobs::index_last_backups(tx)?;
                    }
                    // Schema 9 moves the account counts into the servers' placement
                    // summaries and indexes the jobs (unfinished ones, each account's).
                    if found.is_some_and(|v| v < 9) {
                        super::summary::migrate_to_9(tx)?;
                        super::jobs::index_jobs(tx)?;
                    }
                    write_u64(tx, Table::Meta, SCHEMA_KEY, SCHEMA_VERSION)
                }
            }
        })?;
        Ok(Self {
            backend: Arc::new(backend),
            sealer: Arc::new(sealer),
            committer: Arc::default(),
        })
    }

    /// Runs a read transaction off the async runtime's threads.
    pub(super) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadTxn, &Sealer) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (backend, sealer) = (Arc::clone(&self.backend), Arc::clone(&self.sealer));
        tokio::task::spawn_blocking(move || backend.read(|tx| f(tx, &sealer)))
            .await
            .map_err(StoreError::backend)?
    }

    /// Runs a write off the async runtime's threads, committed with the writes that wait
    /// beside it (see [`group`](super::group)): `Ok` once it is committed; an `Err` leaves no
    /// trace.
    pub(super) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn WriteTxn, &Sealer) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.committer.write(&self.backend, &self.sealer, f).await
    }
}

/// Seals a check value with a store's first key, and refuses any other key later.
fn check_key(tx: &mut dyn WriteTxn, sealer: &Sealer) -> Result<(), StoreError> {
    match tx.get(Table::Meta, KEY_CHECK)? {
        None => {
            let sealed = sealer
                .seal(b"enconf", KEY_CHECK)
                .map_err(StoreError::backend)?;
            tx.put(Table::Meta, KEY_CHECK, sealed.as_bytes())
        }
        Some(sealed) => {
            let sealed = String::from_utf8(sealed).map_err(StoreError::backend)?;
            match sealer.open(&sealed, KEY_CHECK) {
                Ok(_) => Ok(()),
                Err(_) => Err(StoreError::WrongKey),
            }
        }
    }
}

/// Schema 1 → 2: mail hostnames get their index (they share one name space with hostnames and
/// account domains), and agent tokens stored in clear are sealed.
fn migrate_to_2(tx: &mut dyn WriteTxn, sealer: &Sealer) -> Result<(), StoreError> {
    for (key, value) in tx.scan(Table::Servers, b"")? {
        let id = ServerId(decode_u64(&key)?);
        let record: ServerRecord = decode(&value)?;
        if let Some(mail) = &record.spec.mail_hostname
            && tx
                .get(Table::MailHostnames, mail.as_str().as_bytes())?
                .is_none()
        {
            write_u64(tx, Table::MailHostnames, mail.as_str().as_bytes(), id.0)?;
        }
        if let StoredToken::Plain(token) = &record.token {
            let token = AgentToken::parse(token).map_err(StoreError::backend)?;
            let record = ServerRecord {
                token: StoredToken::seal(sealer, id, &token)?,
                ..record
            };
            save_record(tx, id, &record)?;
        }
    }
    Ok(())
}

/// An agent token as the store keeps it: sealed with the store's key, bound to its server.
/// Stores of schema 1 kept it in clear; they are sealed when opened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredToken {
    Sealed { sealed: String },
    Plain(String),
}

impl StoredToken {
    fn context(id: ServerId) -> Vec<u8> {
        [b"agent_token:".as_slice(), &id_key(id.0)].concat()
    }

    fn seal(sealer: &Sealer, id: ServerId, token: &AgentToken) -> Result<Self, StoreError> {
        let sealed = sealer
            .seal(token.expose_secret().as_bytes(), &Self::context(id))
            .map_err(StoreError::backend)?;
        Ok(StoredToken::Sealed { sealed })
    }

    fn open(&self, sealer: &Sealer, id: ServerId) -> Result<AgentToken, StoreError> {
        let plain = match self {
            StoredToken::Plain(token) => token.clone(),
            StoredToken::Sealed { sealed } => {
                let bytes = sealer
                    .open(sealed, &Self::context(id))
                    .map_err(StoreError::backend)?;
                String::from_utf8(bytes).map_err(StoreError::backend)?
            }
        };
        AgentToken::parse(&plain).map_err(StoreError::backend)
    }
}

/// A server as stored (id and account count live elsewhere).
#[derive(Serialize, Deserialize)]
pub(super) struct ServerRecord {
    pub(super) spec: ServerSpec,
    token: StoredToken,
    pub(super) health: Health,
}

pub(super) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub(super) fn decode_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::backend("corrupt store: an integer is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::backend)
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::backend)
}

fn read_u64(tx: &dyn ReadTxn, table: Table, key: &[u8]) -> Result<Option<u64>, StoreError> {
    tx.get(table, key)?.map(|v| decode_u64(&v)).transpose()
}

fn write_u64(tx: &mut dyn WriteTxn, table: Table, key: &[u8], n: u64) -> Result<(), StoreError> {
    tx.put(table, key, &n.to_be_bytes())
}

pub(super) fn next_id(tx: &mut dyn WriteTxn, counter: &[u8]) -> Result<u64, StoreError> {
    let next = read_u64(tx, Table::Meta, counter)?.unwrap_or(0) + 1;
    write_u64(tx, Table::Meta, counter, next)?;
    Ok(next)
}

use super::summary::{account_count, set_account_count};

fn to_server(
    sealer: &Sealer,
    id: ServerId,
    record: ServerRecord,
    accounts: u64,
) -> Result<Server, StoreError> {
    Ok(Server {
        id,
        token: record.token.open(sealer, id)?,
        spec: record.spec,
        health: record.health,
        accounts: u32::try_from(accounts).unwrap_or(u32::MAX),
    })
}

pub(super) fn load_record(tx: &dyn ReadTxn, id: ServerId) -> Result<ServerRecord, StoreError> {
    let bytes = tx
        .get(Table::Servers, &id_key(id.0))?
        .ok_or(StoreError::NotFound {
            kind: Kind::Server,
            id: id.0,
        })?;
    decode(&bytes)
}

pub(super) fn load_server(
    tx: &dyn ReadTxn,
    sealer: &Sealer,
    id: ServerId,
) -> Result<Server, StoreError> {
    let record = load_record(tx, id)?;
    to_server(sealer, id, record, account_count(tx, id)?)
}

/// Saves a server's record, and its placement summary with it.
fn save_record(
    tx: &mut dyn WriteTxn,
    id: ServerId,
    record: &ServerRecord,
) -> Result<(), StoreError> {
    tx.put(Table::Servers, &id_key(id.0), &encode(record)?)?;
    super::summary::record_saved(tx, id, record)
}

fn all_servers(tx: &dyn ReadTxn, sealer: &Sealer) -> Result<Vec<Server>, StoreError> {
    tx.scan(Table::Servers, b"")?
        .into_iter()
        .map(|(k, v)| {
            let id = ServerId(decode_u64(&k)?);
            to_server(sealer, id, decode(&v)?, account_count(tx, id)?)
        })
        .collect()
}

/// An account as stored. Records of schema 2 and before name one server (`server_id`, the web
/// role's); they are read as that.
#[derive(Deserialize)]
struct StoredAccount {
    id: AccountId,
    spec: crate::domain::AccountSpec,
    #[serde(default)]
    servers: RoleServers,
    #[serde(default)]
    server_id: Option<ServerId>,
    status: AccountStatus,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

pub(super) fn load_account(tx: &dyn ReadTxn, id: AccountId) -> Result<Account, StoreError> {
    let bytes = tx
        .get(Table::Accounts, &id_key(id.0))?
        .ok_or(StoreError::NotFound {
            kind: Kind::Account,
            id: id.0,
        })?;
    decode_account(&bytes)
}

pub(super) fn decode_account(bytes: &[u8]) -> Result<Account, StoreError> {
    let stored: StoredAccount = decode(bytes)?;
    let mut servers = stored.servers;
    if let (true, Some(web)) = (servers.servers().is_empty(), stored.server_id) {
        servers.set(Role::Web, vec![web]);
    }
    Ok(Account {
        id: stored.id,
        spec: stored.spec,
        servers,
        status: stored.status,
        created_at: stored.created_at,
    })
}

pub(super) fn save_account(tx: &mut dyn WriteTxn, account: &Account) -> Result<(), StoreError> {
    tx.put(Table::Accounts, &id_key(account.id.0), &encode(account)?)
}

/// The roles an index entry of `server_accounts` holds (entries of schema 2 and before are
/// empty: the web role).
pub(super) fn decode_roles(value: &[u8]) -> RoleSet {
    match value.first() {
        None => RoleSet::EMPTY.with(Role::Web),
        Some(bits) => Role::ALL
            .into_iter()
            .filter(|r| bits & (1 << *r as u8) != 0)
            .collect(),
    }
}

pub(super) fn encode_roles(roles: RoleSet) -> [u8; 1] {
    [roles.iter().fold(0u8, |bits, r| bits | (1 << r as u8))]
}

/// The accounts using `server`, each with the roles it has there, in id order.
fn roles_on(tx: &dyn ReadTxn, server: ServerId) -> Result<Vec<(AccountId, RoleSet)>, StoreError> {
    tx.scan(Table::ServerAccounts, &id_key(server.0))?
        .into_iter()
        .map(|(k, v)| {
            Ok((
                AccountId(decode_u64(k.get(8..).unwrap_or_default())?),
                decode_roles(&v),
            ))
        })
        .collect()
}

fn accounts_on(tx: &dyn ReadTxn, server: ServerId) -> Result<Vec<Account>, StoreError> {
    roles_on(tx, server)?
        .into_iter()
        .map(|(id, _)| load_account(tx, id))
        .collect()
}

/// Makes the index and the account counts say what `after` says of where `id` is served,
/// given what `before` said.
pub(super) fn reindex_account(
    tx: &mut dyn WriteTxn,
    id: AccountId,
    before: &RoleServers,
    after: &RoleServers,
) -> Result<(), StoreError> {
    let (old, new) = (before.by_server(), after.by_server());
    for (server, roles) in &old {
        if !new.contains_key(server) {
            tx.delete(Table::ServerAccounts, &server_account_key(*server, id))?;
            let count = account_count(tx, *server)?;
            set_account_count(tx, *server, count.saturating_sub(1))?;
        } else if new.get(server) != Some(roles) {
            let roles = new.get(server).copied().unwrap_or(RoleSet::EMPTY);
            tx.put(
                Table::ServerAccounts,
                &server_account_key(*server, id),
                &encode_roles(roles),
            )?;
        }
    }
    for (server, roles) in &new {
        if !old.contains_key(server) {
            tx.put(
                Table::ServerAccounts,
                &server_account_key(*server, id),
                &encode_roles(*roles),
            )?;
            let count = account_count(tx, *server)?;
            set_account_count(tx, *server, count + 1)?;
        }
    }
    Ok(())
}

fn server_account_key(server: ServerId, account: AccountId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&id_key(server.0));
    key[8..].copy_from_slice(&id_key(account.0));
    key
}

/// Fails with `Duplicate` when `value` in a unique index belongs to someone other than `owner`.
fn check_free(
    tx: &dyn ReadTxn,
    table: Table,
    value: &str,
    owner: Option<u64>,
    field: &str,
) -> Result<(), StoreError> {
    match read_u64(tx, table, value.as_bytes())? {
        Some(holder) if Some(holder) != owner => Err(StoreError::Duplicate {
            field: field.to_owned(),
            value: value.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Who asks for a host name. Server hostnames, mail hostnames and account domains share one
/// name space: a name has one owner (a server may use one name for both of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claimant {
    Server(Option<ServerId>),
    Account(Option<AccountId>),
}

/// Fails with `Duplicate` naming `field` when `name` is a server's hostname or mail hostname or
/// an account's domain, other than the claimant's own.
fn check_name(
    tx: &dyn ReadTxn,
    name: &str,
    claimant: Claimant,
    field: &str,
) -> Result<(), StoreError> {
    let (own_server, own_account) = match claimant {
        Claimant::Server(id) => (id.map(|i| i.0), None),
        Claimant::Account(id) => (None, id.map(|i| i.0)),
    };
    check_free(tx, Table::Domains, name, own_account, field)?;
    check_free(tx, Table::ServerHostnames, name, own_server, field)?;
    check_free(tx, Table::MailHostnames, name, own_server, field)
}

/// Moves a unique index entry from `old` to `new` (both owned by `owner`; `None`: no entry).
fn reindex(
    tx: &mut dyn WriteTxn,
    table: Table,
    old: Option<&str>,
    new: Option<&str>,
    owner: u64,
) -> Result<(), StoreError> {
    if old != new {
        if let Some(old) = old {
            tx.delete(table, old.as_bytes())?;
        }
        if let Some(new) = new {
            write_u64(tx, table, new.as_bytes(), owner)?;
        }
    }
    Ok(())
}

/// Fails when another server has the agent `health` comes from.
fn check_agent(
    tx: &dyn ReadTxn,
    health: &Health,
    owner: Option<ServerId>,
) -> Result<(), StoreError> {
    let Some(agent) = &health.agent_id else {
        return Ok(());
    };
    match read_u64(tx, Table::AgentIds, agent.as_bytes())? {
        Some(holder) if Some(ServerId(holder)) != owner => Err(StoreError::SameAgent {
            server: ServerId(holder),
        }),
        _ => Ok(()),
    }
}

fn mail_of(spec: &ServerSpec) -> Option<&str> {
    spec.mail_hostname.as_ref().map(|m| m.as_str())
}

fn insert_server(
    tx: &mut dyn WriteTxn,
    sealer: &Sealer,
    spec: ServerSpec,
    token: AgentToken,
    health: Health,
) -> Result<Server, StoreError> {
    let name_key = spec.name.unique_key();
    check_free(tx, Table::ServerNames, &name_key, None, "name")?;
    check_name(
        tx,
        spec.hostname.as_str(),
        Claimant::Server(None),
        "hostname",
    )?;
    if let Some(mail) = mail_of(&spec) {
        check_name(tx, mail, Claimant::Server(None), "mail_hostname")?;
    }
    check_agent(tx, &health, None)?;
    let id = ServerId(next_id(tx, NEXT_SERVER_ID)?);
    write_u64(tx, Table::ServerNames, name_key.as_bytes(), id.0)?;
    reindex(
        tx,
        Table::ServerHostnames,
        None,
        Some(spec.hostname.as_str()),
        id.0,
    )?;
    reindex(tx, Table::MailHostnames, None, mail_of(&spec), id.0)?;
    reindex(tx, Table::AgentIds, None, health.agent_id.as_deref(), id.0)?;
    let record = ServerRecord {
        spec,
        token: StoredToken::seal(sealer, id, &token)?,
        health,
    };
    save_record(tx, id, &record)?;
    to_server(sealer, id, record, 0)
}

fn update_server(
    tx: &mut dyn WriteTxn,
    sealer: &Sealer,
    id: ServerId,
    spec: ServerSpec,
    token: Option<AgentToken>,
) -> Result<Server, StoreError> {
    let old = load_record(tx, id)?;
    let count = account_count(tx, id)?;
    if spec.roles != old.spec.roles && count > 0 {
        let needed = roles_on(tx, id)?
            .into_iter()
            .fold(RoleSet::EMPTY, |acc, (_, roles)| acc.union(roles));
        let missing = needed.difference(spec.roles);
        if !missing.is_empty() {
            return Err(StoreError::RolesInUse {
                missing,
                accounts: count,
            });
        }
    }
    let (old_name, new_name) = (old.spec.name.unique_key(), spec.name.unique_key());
    check_free(tx, Table::ServerNames, &new_name, Some(id.0), "name")?;
    check_name(
        tx,
        spec.hostname.as_str(),
        Claimant::Server(Some(id)),
        "hostname",
    )?;
    if let Some(mail) = mail_of(&spec) {
        check_name(tx, mail, Claimant::Server(Some(id)), "mail_hostname")?;
    }
    reindex(
        tx,
        Table::ServerNames,
        Some(&old_name),
        Some(&new_name),
        id.0,
    )?;
    reindex(
        tx,
        Table::ServerHostnames,
        Some(old.spec.hostname.as_str()),
        Some(spec.hostname.as_str()),
        id.0,
    )?;
    reindex(
        tx,
        Table::MailHostnames,
        mail_of(&old.spec),
        mail_of(&spec),
        id.0,
    )?;
    let token = match token {
        Some(token) => StoredToken::seal(sealer, id, &token)?,
        None => old.token,
    };
    let record = ServerRecord {
        spec,
        token,
        health: old.health,
    };
    save_record(tx, id, &record)?;
    to_server(sealer, id, record, count)
}

/// Records what a check of `checked` saw (see [`Store::record_health`]). An agent that is
/// already another server's is recorded as unreachable, saying which server has it, and its
/// identity stays the other server's.
fn record_health(
    tx: &mut dyn WriteTxn,
    sealer: &Sealer,
    checked: &Server,
    mut health: Health,
) -> Result<Server, StoreError> {
    let id = checked.id;
    let mut record = load_record(tx, id)?;
    let token = record.token.open(sealer, id)?;
    if record.spec.agent_url == checked.spec.agent_url && token == checked.token {
        if let Err(StoreError::SameAgent { server }) = check_agent(tx, &health, Some(id)) {
            health = Health {
                reachable: false,
                agent_id: None,
                last_error: Some(format!(
                    "this agent is server {server}'s already: one agent serves one server"
                )),
                ..health
            };
        }
        if health.agent_id.is_some() {
            reindex(
                tx,
                Table::AgentIds,
                record.health.agent_id.as_deref(),
                health.agent_id.as_deref(),
                id.0,
            )?;
        } else {
            // Unreachable now: it is still the agent it was.
            health.agent_id = record.health.agent_id.take();
        }
        record.health = health;
        save_record(tx, id, &record)?;
    }
    to_server(sealer, id, record, account_count(tx, id)?)
}

fn delete_server(tx: &mut dyn WriteTxn, id: ServerId) -> Result<(), StoreError> {
    let record = load_record(tx, id)?;
    let count = account_count(tx, id)?;
    if count > 0 {
        let accounts = roles_on(tx, id)?
            .into_iter()
            .take(LISTED_ACCOUNTS)
            .map(|(a, roles)| load_account(tx, a).map(|a| (a.spec.username, roles)))
            .collect::<Result<_, _>>()?;
        return Err(StoreError::ServerHasAccounts { count, accounts });
    }
    tx.delete(Table::ServerNames, record.spec.name.unique_key().as_bytes())?;
    reindex(
        tx,
        Table::ServerHostnames,
        Some(record.spec.hostname.as_str()),
        None,
        id.0,
    )?;
    reindex(tx, Table::MailHostnames, mail_of(&record.spec), None, id.0)?;
    if let Some(agent) = &record.health.agent_id
        && read_u64(tx, Table::AgentIds, agent.as_bytes())? == Some(id.0)
    {
        tx.delete(Table::AgentIds, agent.as_bytes())?;
    }
    super::summary::remove(tx, id)?;
    tx.delete(Table::Servers, &id_key(id.0))
}

fn create_account(
    tx: &mut dyn WriteTxn,
    new: NewAccount,
    now: OffsetDateTime,
) -> Result<Account, StoreError> {
    let spec = new.spec;
    check_free(
        tx,
        Table::Usernames,
        spec.username.as_str(),
        None,
        "username",
    )?;
    for (i, domain) in spec.domains.iter().enumerate() {
        check_name(
            tx,
            domain.as_str(),
            Claimant::Account(None),
            &format!("domains[{i}]"),
        )?;
    }
    let needed = spec.required_roles();
    for id in new.pins.values() {
        load_record(tx, *id)?;
    }
    let candidates = super::summary::candidates(tx, spec.php_version)?;
    let servers = placement::place(&candidates, needed, &new.pins)?;
    let account = Account {
        id: AccountId(next_id(tx, NEXT_ACCOUNT_ID)?),
        spec,
        servers,
        status: AccountStatus::Provisioning,
        created_at: now,
    };
    save_account(tx, &account)?;
    write_u64(
        tx,
        Table::Usernames,
        account.spec.username.as_str().as_bytes(),
        account.id.0,
    )?;
    for domain in &account.spec.domains {
        write_u64(tx, Table::Domains, domain.as_str().as_bytes(), account.id.0)?;
    }
    reindex_account(tx, account.id, &RoleServers::default(), &account.servers)?;
    super::pages::index_roles(tx, account.id, account.spec.roles, true)?;
    super::dns::claim_zones(tx, account.id, None, &account.spec)?;
    Ok(account)
}

/// Replaces an account's spec (domains, PHP), checking new domains like a create; its user
/// name and roles stay.
fn update_account(
    tx: &mut dyn WriteTxn,
    id: AccountId,
    spec: crate::domain::AccountSpec,
) -> Result<Account, StoreError> {
    let mut account = load_account(tx, id)?;
    if spec.username != account.spec.username || spec.roles != account.spec.roles {
        return Err(StoreError::backend(
            "an account's user name and roles are not changed by an update",
        ));
    }
    for (i, domain) in spec.domains.iter().enumerate() {
        check_name(
            tx,
            domain.as_str(),
            Claimant::Account(Some(id)),
            &format!("domains[{i}]"),
        )?;
    }
    for old in &account.spec.domains {
        if !spec.domains.iter().any(|d| d == old) {
            super::mail::check_domain_unused(tx, id, old)?;
            tx.delete(Table::Domains, old.as_str().as_bytes())?;
        }
    }
    for domain in &spec.domains {
        write_u64(tx, Table::Domains, domain.as_str().as_bytes(), id.0)?;
    }
    super::dns::claim_zones(tx, id, Some(&account.spec), &spec)?;
    account.spec = spec;
    save_account(tx, &account)?;
    Ok(account)
}

fn move_roles(
    tx: &mut dyn WriteTxn,
    id: AccountId,
    targets: &BTreeMap<Role, ServerId>,
) -> Result<Account, StoreError> {
    let mut account = load_account(tx, id)?;
    let before = account.servers.clone();
    for (&role, &target) in targets {
        if !account.spec.roles.contains(role) || role == Role::Dns {
            return Err(StoreError::RoleNotUsed { role });
        }
        if before.one(role) == Some(target) {
            continue;
        }
        let target_now = super::summary::candidate(tx, target, account.spec.php_version)?;
        placement::check_move(&target_now, role, &before)?;
        account.servers.set(role, vec![target]);
    }
    if account.servers == before {
        return Ok(account);
    }
    reindex_account(tx, id, &before, &account.servers)?;
    save_account(tx, &account)?;
    Ok(account)
}

fn delete_account(
    tx: &mut dyn WriteTxn,
    sealer: &Sealer,
    id: AccountId,
) -> Result<Account, StoreError> {
    let account = load_account(tx, id)?;
    super::db::forget_account(tx, sealer, id)?;
    tx.delete(Table::Accounts, &id_key(id.0))?;
    tx.delete(Table::Usernames, account.spec.username.as_str().as_bytes())?;
    for domain in &account.spec.domains {
        tx.delete(Table::Domains, domain.as_str().as_bytes())?;
    }
    reindex_account(tx, id, &account.servers, &RoleServers::default())?;
    super::pages::index_roles(tx, id, account.spec.roles, false)?;
    super::jobs::forget_last_backup(tx, id)?;
    super::mail::forget_account(tx, id)?;
    super::dns::claim_zones(
        tx,
        id,
        Some(&account.spec),
        &AccountSpec {
            roles: RoleSet::EMPTY,
            ..account.spec.clone()
        },
    )?;
    Ok(account)
}

#[async_trait]
impl<B: Backend> Store for KvStore<B> {
    async fn insert_server(
        &self,
        spec: ServerSpec,
        token: AgentToken,
        health: Health,
    ) -> Result<Server, StoreError> {
        self.write(move |tx, sealer| insert_server(tx, sealer, spec, token, health))
            .await
    }

    async fn server(&self, id: ServerId) -> Result<Server, StoreError> {
        self.read(move |tx, sealer| load_server(tx, sealer, id))
            .await
    }

    async fn servers(&self) -> Result<Vec<Server>, StoreError> {
        self.read(all_servers).await
    }

    async fn update_server(
        &self,
        id: ServerId,
        spec: ServerSpec,
        token: Option<AgentToken>,
    ) -> Result<Server, StoreError> {
        self.write(move |tx, sealer| update_server(tx, sealer, id, spec, token))
            .await
    }

    async fn record_health(&self, checked: &Server, health: Health) -> Result<Server, StoreError> {
        let checked = checked.clone();
        self.write(move |tx, sealer| record_health(tx, sealer, &checked, health))
            .await
    }

    async fn record_healths(
        &self,
        checks: Vec<(Server, Health)>,
    ) -> Result<Vec<Result<Server, StoreError>>, StoreError> {
        self.write(move |tx, sealer| {
            let mut out = Vec::with_capacity(checks.len());
            for (checked, health) in checks {
                match record_health(tx, sealer, &checked, health) {
                    // Refused before anything of this server was written.
                    Err(e @ StoreError::NotFound { .. }) => out.push(Err(e)),
                    Err(e) => return Err(e),
                    Ok(server) => out.push(Ok(server)),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_server(&self, id: ServerId) -> Result<(), StoreError> {
        self.write(move |tx, _| delete_server(tx, id)).await
    }

    async fn create_account(
        &self,
        new: NewAccount,
        now: OffsetDateTime,
    ) -> Result<Account, StoreError> {
        self.write(move |tx, _| create_account(tx, new, now)).await
    }

    async fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        self.read(move |tx, _| load_account(tx, id)).await
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|tx, _| {
            tx.scan(Table::Accounts, b"")?
                .into_iter()
                .map(|(_, v)| decode_account(&v))
                .collect()
        })
        .await
    }

    async fn accounts_on(&self, server: ServerId) -> Result<Vec<Account>, StoreError> {
        self.read(move |tx, _| {
            load_record(tx, server)?;
            accounts_on(tx, server)
        })
        .await
    }

    async fn set_account_status(
        &self,
        id: AccountId,
        status: AccountStatus,
    ) -> Result<Account, StoreError> {
        self.write(move |tx, _| {
            let mut account = load_account(tx, id)?;
            account.status = status;
            save_account(tx, &account)?;
            Ok(account)
        })
        .await
    }

    async fn move_roles(
        &self,
        id: AccountId,
        targets: &BTreeMap<Role, ServerId>,
    ) -> Result<Account, StoreError> {
        let targets = targets.clone();
        self.write(move |tx, _| move_roles(tx, id, &targets)).await
    }

    async fn update_account(
        &self,
        id: AccountId,
        spec: crate::domain::AccountSpec,
    ) -> Result<Account, StoreError> {
        self.write(move |tx, _| update_account(tx, id, spec)).await
    }

    async fn delete_account(&self, id: AccountId) -> Result<Account, StoreError> {
        self.write(move |tx, sealer| delete_account(tx, sealer, id))
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = key.to_owned();
        self.read(move |tx, _| {
            tx.get(Table::Settings, key.as_bytes())?
                .map(|v| decode(&v))
                .transpose()
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |tx, _| tx.put(Table::Settings, key.as_bytes(), &encode(&value)?))
            .await
    }

    async fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |tx, _| tx.delete(Table::Settings, key.as_bytes()))
            .await
    }

    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.lease(&name, &holder, ttl))
            .await
            .map_err(StoreError::backend)?
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.release(&name, &holder))
            .await
            .map_err(StoreError::backend)?
    }

    async fn settings_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |tx, _| {
            tx.scan(Table::Settings, prefix.as_bytes())?
                .into_iter()
                .map(|(k, v)| {
                    let key = String::from_utf8(k).map_err(StoreError::backend)?;
                    Ok((key, decode(&v)?))
                })
                .collect()
        })
        .await
    }
}
