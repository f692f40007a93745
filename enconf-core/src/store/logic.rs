//! The store's rules, written once over the key-value seam: ids, uniqueness, account counts,
//! placement inside the recording transaction.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::{Kind, LISTED_ACCOUNTS, MemoryBackend, SCHEMA_VERSION, Store, StoreError};
use crate::domain::{
    Account, AccountId, AccountStatus, AgentToken, Health, NewAccount, RoleSet, Server, ServerId,
    ServerSpec,
};
use crate::placement::{self, Candidate};

const SCHEMA_KEY: &[u8] = b"schema_version";
const NEXT_SERVER_ID: &[u8] = b"next_server_id";
const NEXT_ACCOUNT_ID: &[u8] = b"next_account_id";
const ACCOUNT_COUNT_PREFIX: &[u8] = b"accounts_on:";

/// The [`Store`] over any [`Backend`].
#[derive(Debug)]
pub struct KvStore<B> {
    backend: Arc<B>,
}

impl<B> Clone for KvStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
        }
    }
}

impl KvStore<MemoryBackend> {
    /// A new, empty in-memory store.
    pub fn new_in_memory() -> Self {
        // A fresh in-memory backend has no schema to disagree with and no lock to poison.
        Self {
            backend: Arc::new(MemoryBackend::new()),
        }
    }
}

#[cfg(feature = "redb")]
impl KvStore<super::RedbBackend> {
    /// Opens (or creates) the store file at `path`. Blocking.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Self::with_backend(super::RedbBackend::open(path.as_ref())?)
    }
}

impl<B: Backend> KvStore<B> {
    /// Wraps a backend, recording the schema version in a new one and refusing a newer one.
    pub fn with_backend(backend: B) -> Result<Self, StoreError> {
        backend.write(|tx| match read_u64(tx, Table::Meta, SCHEMA_KEY)? {
            None => write_u64(tx, Table::Meta, SCHEMA_KEY, SCHEMA_VERSION),
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::UnsupportedSchema {
                found,
                supported: SCHEMA_VERSION,
            }),
            Some(_) => Ok(()),
        })?;
        Ok(Self {
            backend: Arc::new(backend),
        })
    }

    /// Runs a read transaction off the async runtime's threads.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.read(f))
            .await
            .map_err(StoreError::backend)?
    }

    /// Runs a write transaction off the async runtime's threads.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.write(f))
            .await
            .map_err(StoreError::backend)?
    }
}

/// A server as stored (id and account count live elsewhere).
#[derive(Serialize, Deserialize)]
struct ServerRecord {
    spec: ServerSpec,
    token: AgentToken,
    health: Health,
}

fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn decode_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::backend("corrupt store: an integer is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::backend)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::backend)
}

fn read_u64(tx: &dyn ReadTxn, table: Table, key: &[u8]) -> Result<Option<u64>, StoreError> {
    tx.get(table, key)?.map(|v| decode_u64(&v)).transpose()
}

fn write_u64(tx: &mut dyn WriteTxn, table: Table, key: &[u8], n: u64) -> Result<(), StoreError> {
    tx.put(table, key, &n.to_be_bytes())
}

fn next_id(tx: &mut dyn WriteTxn, counter: &[u8]) -> Result<u64, StoreError> {
    let next = read_u64(tx, Table::Meta, counter)?.unwrap_or(0) + 1;
    write_u64(tx, Table::Meta, counter, next)?;
    Ok(next)
}

fn count_key(server: ServerId) -> Vec<u8> {
    [ACCOUNT_COUNT_PREFIX, &id_key(server.0)].concat()
}

fn account_count(tx: &dyn ReadTxn, server: ServerId) -> Result<u64, StoreError> {
    Ok(read_u64(tx, Table::Meta, &count_key(server))?.unwrap_or(0))
}

fn set_account_count(tx: &mut dyn WriteTxn, server: ServerId, n: u64) -> Result<(), StoreError> {
    if n == 0 {
        tx.delete(Table::Meta, &count_key(server))
    } else {
        write_u64(tx, Table::Meta, &count_key(server), n)
    }
}

fn to_server(id: ServerId, record: ServerRecord, accounts: u64) -> Server {
    Server {
        id,
        spec: record.spec,
        token: record.token,
        health: record.health,
        accounts: u32::try_from(accounts).unwrap_or(u32::MAX),
    }
}

fn load_record(tx: &dyn ReadTxn, id: ServerId) -> Result<ServerRecord, StoreError> {
    let bytes = tx
        .get(Table::Servers, &id_key(id.0))?
        .ok_or(StoreError::NotFound {
            kind: Kind::Server,
            id: id.0,
        })?;
    decode(&bytes)
}

fn load_server(tx: &dyn ReadTxn, id: ServerId) -> Result<Server, StoreError> {
    let record = load_record(tx, id)?;
    Ok(to_server(id, record, account_count(tx, id)?))
}

fn save_record(
    tx: &mut dyn WriteTxn,
    id: ServerId,
    record: &ServerRecord,
) -> Result<(), StoreError> {
    tx.put(Table::Servers, &id_key(id.0), &encode(record)?)
}

fn all_servers(tx: &dyn ReadTxn) -> Result<Vec<Server>, StoreError> {
    tx.scan(Table::Servers, b"")?
        .into_iter()
        .map(|(k, v)| {
            let id = ServerId(decode_u64(&k)?);
            Ok(to_server(id, decode(&v)?, account_count(tx, id)?))
        })
        .collect()
}

fn load_account(tx: &dyn ReadTxn, id: AccountId) -> Result<Account, StoreError> {
    let bytes = tx
        .get(Table::Accounts, &id_key(id.0))?
        .ok_or(StoreError::NotFound {
            kind: Kind::Account,
            id: id.0,
        })?;
    decode(&bytes)
}

fn save_account(tx: &mut dyn WriteTxn, account: &Account) -> Result<(), StoreError> {
    tx.put(Table::Accounts, &id_key(account.id.0), &encode(account)?)
}

/// The ids of the accounts on `server`, in id order.
fn account_ids_on(tx: &dyn ReadTxn, server: ServerId) -> Result<Vec<AccountId>, StoreError> {
    tx.scan(Table::ServerAccounts, &id_key(server.0))?
        .into_iter()
        .map(|(k, _)| Ok(AccountId(decode_u64(k.get(8..).unwrap_or_default())?)))
        .collect()
}

fn accounts_on(tx: &dyn ReadTxn, server: ServerId) -> Result<Vec<Account>, StoreError> {
    account_ids_on(tx, server)?
        .into_iter()
        .map(|id| load_account(tx, id))
        .collect()
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

/// Moves a unique index entry from `old` to `new` (both owned by `owner`).
fn reindex(
    tx: &mut dyn WriteTxn,
    table: Table,
    old: &str,
    new: &str,
    owner: u64,
) -> Result<(), StoreError> {
    if old != new {
        tx.delete(table, old.as_bytes())?;
        write_u64(tx, table, new.as_bytes(), owner)?;
    }
    Ok(())
}

fn insert_server(
    tx: &mut dyn WriteTxn,
    spec: ServerSpec,
    token: AgentToken,
) -> Result<Server, StoreError> {
    let name_key = spec.name.unique_key();
    check_free(tx, Table::ServerNames, &name_key, None, "name")?;
    check_free(
        tx,
        Table::ServerHostnames,
        spec.hostname.as_str(),
        None,
        "hostname",
    )?;
    let id = ServerId(next_id(tx, NEXT_SERVER_ID)?);
    write_u64(tx, Table::ServerNames, name_key.as_bytes(), id.0)?;
    write_u64(
        tx,
        Table::ServerHostnames,
        spec.hostname.as_str().as_bytes(),
        id.0,
    )?;
    let record = ServerRecord {
        spec,
        token,
        health: Health::default(),
    };
    save_record(tx, id, &record)?;
    Ok(to_server(id, record, 0))
}

fn update_server(
    tx: &mut dyn WriteTxn,
    id: ServerId,
    spec: ServerSpec,
    token: Option<AgentToken>,
) -> Result<Server, StoreError> {
    let old = load_record(tx, id)?;
    let count = account_count(tx, id)?;
    if spec.roles != old.spec.roles && count > 0 {
        let needed = accounts_on(tx, id)?.iter().fold(RoleSet::EMPTY, |acc, a| {
            a.spec.required_roles().iter().fold(acc, RoleSet::with)
        });
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
    check_free(
        tx,
        Table::ServerHostnames,
        spec.hostname.as_str(),
        Some(id.0),
        "hostname",
    )?;
    reindex(tx, Table::ServerNames, &old_name, &new_name, id.0)?;
    reindex(
        tx,
        Table::ServerHostnames,
        old.spec.hostname.as_str(),
        spec.hostname.as_str(),
        id.0,
    )?;
    let record = ServerRecord {
        spec,
        token: token.unwrap_or(old.token),
        health: old.health,
    };
    save_record(tx, id, &record)?;
    Ok(to_server(id, record, count))
}

fn delete_server(tx: &mut dyn WriteTxn, id: ServerId) -> Result<(), StoreError> {
    let record = load_record(tx, id)?;
    let count = account_count(tx, id)?;
    if count > 0 {
        let usernames = account_ids_on(tx, id)?
            .into_iter()
            .take(LISTED_ACCOUNTS)
            .map(|a| load_account(tx, a).map(|a| a.spec.username))
            .collect::<Result<_, _>>()?;
        return Err(StoreError::ServerHasAccounts { count, usernames });
    }
    tx.delete(Table::ServerNames, record.spec.name.unique_key().as_bytes())?;
    tx.delete(
        Table::ServerHostnames,
        record.spec.hostname.as_str().as_bytes(),
    )?;
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
        check_free(
            tx,
            Table::Domains,
            domain.as_str(),
            None,
            &format!("domains[{i}]"),
        )?;
    }
    let needed = spec.required_roles();
    let server_id = match new.server {
        Some(id) => placement::check_named(&Candidate::from(&load_server(tx, id)?), needed)?,
        None => {
            let candidates: Vec<Candidate> = all_servers(tx)?.iter().map(Candidate::from).collect();
            placement::place(&candidates, needed)?
        }
    };
    let account = Account {
        id: AccountId(next_id(tx, NEXT_ACCOUNT_ID)?),
        spec,
        server_id,
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
    tx.put(
        Table::ServerAccounts,
        &server_account_key(server_id, account.id),
        &[],
    )?;
    let count = account_count(tx, server_id)?;
    set_account_count(tx, server_id, count + 1)?;
    Ok(account)
}

fn move_account(
    tx: &mut dyn WriteTxn,
    id: AccountId,
    target: ServerId,
) -> Result<Account, StoreError> {
    let mut account = load_account(tx, id)?;
    let source = account.server_id;
    if source == target {
        return Ok(account);
    }
    let needed = account.spec.required_roles();
    placement::check_named(&Candidate::from(&load_server(tx, target)?), needed)?;
    tx.delete(Table::ServerAccounts, &server_account_key(source, id))?;
    tx.put(Table::ServerAccounts, &server_account_key(target, id), &[])?;
    let from = account_count(tx, source)?;
    set_account_count(tx, source, from.saturating_sub(1))?;
    let to = account_count(tx, target)?;
    set_account_count(tx, target, to + 1)?;
    account.server_id = target;
    save_account(tx, &account)?;
    Ok(account)
}

fn delete_account(tx: &mut dyn WriteTxn, id: AccountId) -> Result<Account, StoreError> {
    let account = load_account(tx, id)?;
    tx.delete(Table::Accounts, &id_key(id.0))?;
    tx.delete(Table::Usernames, account.spec.username.as_str().as_bytes())?;
    for domain in &account.spec.domains {
        tx.delete(Table::Domains, domain.as_str().as_bytes())?;
    }
    tx.delete(
        Table::ServerAccounts,
        &server_account_key(account.server_id, id),
    )?;
    let count = account_count(tx, account.server_id)?;
    set_account_count(tx, account.server_id, count.saturating_sub(1))?;
    Ok(account)
}

#[async_trait]
impl<B: Backend> Store for KvStore<B> {
    async fn insert_server(
        &self,
        spec: ServerSpec,
        token: AgentToken,
    ) -> Result<Server, StoreError> {
        self.write(move |tx| insert_server(tx, spec, token)).await
    }

    async fn server(&self, id: ServerId) -> Result<Server, StoreError> {
        self.read(move |tx| load_server(tx, id)).await
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
        self.write(move |tx| update_server(tx, id, spec, token))
            .await
    }

    async fn record_health(&self, checked: &Server, health: Health) -> Result<Server, StoreError> {
        let (id, url, token) = (
            checked.id,
            checked.spec.agent_url.clone(),
            checked.token.clone(),
        );
        self.write(move |tx| {
            let mut record = load_record(tx, id)?;
            if record.spec.agent_url == url && record.token == token {
                record.health = health;
                save_record(tx, id, &record)?;
            }
            Ok(to_server(id, record, account_count(tx, id)?))
        })
        .await
    }

    async fn delete_server(&self, id: ServerId) -> Result<(), StoreError> {
        self.write(move |tx| delete_server(tx, id)).await
    }

    async fn create_account(
        &self,
        new: NewAccount,
        now: OffsetDateTime,
    ) -> Result<Account, StoreError> {
        self.write(move |tx| create_account(tx, new, now)).await
    }

    async fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        self.read(move |tx| load_account(tx, id)).await
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|tx| {
            tx.scan(Table::Accounts, b"")?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn accounts_on(&self, server: ServerId) -> Result<Vec<Account>, StoreError> {
        self.read(move |tx| {
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
        self.write(move |tx| {
            let mut account = load_account(tx, id)?;
            account.status = status;
            save_account(tx, &account)?;
            Ok(account)
        })
        .await
    }

    async fn move_account(&self, id: AccountId, target: ServerId) -> Result<Account, StoreError> {
        self.write(move |tx| move_account(tx, id, target)).await
    }

    async fn delete_account(&self, id: AccountId) -> Result<Account, StoreError> {
        self.write(move |tx| delete_account(tx, id)).await
    }

    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = key.to_owned();
        self.read(move |tx| {
            tx.get(Table::Settings, key.as_bytes())?
                .map(|v| decode(&v))
                .transpose()
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |tx| tx.put(Table::Settings, key.as_bytes(), &encode(&value)?))
            .await
    }

    async fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |tx| tx.delete(Table::Settings, key.as_bytes()))
            .await
    }

    async fn settings_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |tx| {
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
