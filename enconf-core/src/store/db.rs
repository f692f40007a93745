//! The store's db rules, over the same key-value seam: an account's databases and database
//! users, one row per account, checked in the write transaction.
//!
//! - Only an account with the db role has them.
//! - A name is one account's: user names may hold `_`, so the prefixes of `shop` and `shop_x`
//!   overlap; an index of every database name and every user name across accounts keeps two
//!   accounts from ever asking one db server for the same name.
//! - A user's grants are on the account's own databases; deleting a database takes it from
//!   every user's grants.
//! - A user's password hash is sealed at rest (it opens a login to anyone who also sees one on
//!   the wire) and opened only to be sent to the db server.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::logic::{KvStore, decode, encode, id_key, load_account};
use super::{Kind, StoreError};
use crate::domain::db::{DbName, DbUserName, MAX_DATABASES, MAX_DB_USERS, NativeHash};
use crate::domain::{AccountId, Role, Rule};
use crate::secret::Sealer;

/// A database of an account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Database {
    pub name: DbName,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A database user of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUser {
    pub name: DbUserName,
    pub hash: NativeHash,
    /// The account's databases it has all privileges on.
    pub databases: Vec<DbName>,
    pub created_at: OffsetDateTime,
}

/// An account's databases and users, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbRecord {
    pub databases: Vec<Database>,
    pub users: Vec<DbUser>,
}

impl DbRecord {
    pub fn user(&self, name: &DbUserName) -> Option<&DbUser> {
        self.users.iter().find(|u| &u.name == name)
    }
}

/// A user as stored: the hash sealed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredUser {
    name: DbUserName,
    sealed_hash: String,
    databases: Vec<DbName>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct StoredDb {
    databases: Vec<Database>,
    users: Vec<StoredUser>,
}

/// An account's databases and database users.
#[async_trait]
pub trait DbStore: Send + Sync {
    /// The account's databases and users.
    async fn db(&self, account: AccountId) -> Result<DbRecord, StoreError>;
    /// Adds a database to the account (which must have the db role).
    async fn add_database(
        &self,
        account: AccountId,
        name: DbName,
        now: OffsetDateTime,
    ) -> Result<DbRecord, StoreError>;
    /// Deletes a database of the account, and every user's grant on it.
    async fn delete_database(
        &self,
        account: AccountId,
        name: &DbName,
    ) -> Result<DbRecord, StoreError>;
    /// Adds a database user to the account, with grants on some of its databases.
    async fn add_db_user(&self, account: AccountId, user: DbUser) -> Result<DbRecord, StoreError>;
    /// Changes a user's password hash and/or databases (`None`: unchanged).
    async fn change_db_user(
        &self,
        account: AccountId,
        name: &DbUserName,
        hash: Option<NativeHash>,
        databases: Option<Vec<DbName>>,
    ) -> Result<DbRecord, StoreError>;
    /// Deletes a database user of the account.
    async fn delete_db_user(
        &self,
        account: AccountId,
        name: &DbUserName,
    ) -> Result<DbRecord, StoreError>;
    /// Puts the account's databases and users back as `previous` was (an undo).
    async fn restore_db(&self, account: AccountId, previous: DbRecord) -> Result<(), StoreError>;
}

fn name_key(kind: &str, name: &str) -> Vec<u8> {
    format!("{kind}/{name}").into_bytes()
}

fn hash_context(account: AccountId, user: &DbUserName) -> Vec<u8> {
    format!("db-user:{}:{user}", account.0).into_bytes()
}

fn load(tx: &dyn ReadTxn, sealer: &Sealer, account: AccountId) -> Result<DbRecord, StoreError> {
    let Some(bytes) = tx.get(Table::DbAccounts, &id_key(account.0))? else {
        return Ok(DbRecord::default());
    };
    let stored: StoredDb = decode(&bytes)?;
    let mut users = Vec::with_capacity(stored.users.len());
    for u in stored.users {
        let plain = sealer
            .open(&u.sealed_hash, &hash_context(account, &u.name))
            .map_err(StoreError::backend)?;
        let hash = NativeHash::parse(&String::from_utf8_lossy(&plain))
            .map_err(|e| StoreError::backend(format!("a database user's hash: {e}")))?;
        users.push(DbUser {
            name: u.name,
            hash,
            databases: u.databases,
            created_at: u.created_at,
        });
    }
    Ok(DbRecord {
        databases: stored.databases,
        users,
    })
}

/// Writes `record` as the account's, keeping the name index in step with `before`.
fn save(
    tx: &mut dyn WriteTxn,
    sealer: &Sealer,
    account: AccountId,
    before: &DbRecord,
    record: &DbRecord,
) -> Result<(), StoreError> {
    for db in before
        .databases
        .iter()
        .filter(|d| !record.databases.iter().any(|n| n.name == d.name))
    {
        tx.delete(Table::DbNames, &name_key("d", db.name.as_str()))?;
    }
    for user in before
        .users
        .iter()
        .filter(|u| record.user(&u.name).is_none())
    {
        tx.delete(Table::DbNames, &name_key("u", user.name.as_str()))?;
    }
    for (i, db) in record.databases.iter().enumerate() {
        claim(
            tx,
            account,
            "d",
            db.name.as_str(),
            &format!("databases[{i}]"),
        )?;
    }
    for user in &record.users {
        claim(tx, account, "u", user.name.as_str(), "name")?;
    }
    if record.databases.is_empty() && record.users.is_empty() {
        return tx.delete(Table::DbAccounts, &id_key(account.0)).map(drop);
    }
    let mut stored = StoredDb {
        databases: record.databases.clone(),
        users: Vec::with_capacity(record.users.len()),
    };
    for u in &record.users {
        stored.users.push(StoredUser {
            name: u.name.clone(),
            sealed_hash: sealer
                .seal(
                    u.hash.expose_secret().as_bytes(),
                    &hash_context(account, &u.name),
                )
                .map_err(StoreError::backend)?,
            databases: u.databases.clone(),
            created_at: u.created_at,
        });
    }
    tx.put(Table::DbAccounts, &id_key(account.0), &encode(&stored)?)
}

/// Takes `name` for the account; another account's is a duplicate.
fn claim(
    tx: &mut dyn WriteTxn,
    account: AccountId,
    kind: &str,
    name: &str,
    field: &str,
) -> Result<(), StoreError> {
    let key = name_key(kind, name);
    if let Some(owner) = tx.get(Table::DbNames, &key)?
        && owner.as_slice() != id_key(account.0)
    {
        return Err(StoreError::Duplicate {
            field: field.into(),
            value: name.into(),
        });
    }
    tx.put(Table::DbNames, &key, &id_key(account.0))
}

/// The account must exist and have the db role; its user name.
fn check_role(
    tx: &dyn ReadTxn,
    account: AccountId,
    field: &str,
) -> Result<crate::domain::UserName, StoreError> {
    let owner = load_account(tx, account)?;
    if owner.spec.roles.contains(Role::Db) {
        Ok(owner.spec.username)
    } else {
        Err(Rule::NoDbRole.at(field).into())
    }
}

/// Every name of `record` carries the account's prefix.
fn check_prefix(record: &DbRecord, owner: &crate::domain::UserName) -> Result<(), StoreError> {
    let prefix = || Rule::EmptyAfterPrefix(format!("{owner}_"));
    if let Some(i) = record
        .databases
        .iter()
        .position(|d| !d.name.belongs_to(owner))
    {
        return Err(prefix().at(format!("databases[{i}]")).into());
    }
    if record.users.iter().any(|u| !u.name.belongs_to(owner)) {
        return Err(prefix().at("name").into());
    }
    Ok(())
}

fn check_grants(record: &DbRecord, databases: &[DbName]) -> Result<(), StoreError> {
    match databases
        .iter()
        .position(|d| !record.databases.iter().any(|r| &r.name == d))
    {
        Some(i) => Err(Rule::NotAccountDatabase
            .at(format!("databases[{i}]"))
            .into()),
        None => Ok(()),
    }
}

fn not_found(kind: Kind, name: &str) -> StoreError {
    StoreError::AddressNotFound {
        kind,
        address: name.into(),
    }
}

/// Deletes every database and user record of an account (its db server keeps the data until
/// a final backup; see the controller).
pub(super) fn forget_account(
    tx: &mut dyn WriteTxn,
    sealer: &Sealer,
    account: AccountId,
) -> Result<(), StoreError> {
    let before = load(tx, sealer, account)?;
    save(tx, sealer, account, &before, &DbRecord::default())
}

impl<B: Backend> KvStore<B> {
    /// Changes the account's record with `f` in one write transaction.
    async fn edit_db(
        &self,
        account: AccountId,
        field: &'static str,
        f: impl FnOnce(&mut DbRecord) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<DbRecord, StoreError> {
        self.write(move |tx, sealer| {
            let owner = check_role(tx, account, field)?;
            let before = load(tx, sealer, account)?;
            let mut record = before.clone();
            f(&mut record)?;
            check_prefix(&record, &owner)?;
            save(tx, sealer, account, &before, &record)?;
            Ok(record)
        })
        .await
    }
}

#[async_trait]
impl<B: Backend> DbStore for KvStore<B> {
    async fn db(&self, account: AccountId) -> Result<DbRecord, StoreError> {
        self.read(move |tx, sealer| {
            load_account(tx, account)?;
            load(tx, sealer, account)
        })
        .await
    }

    async fn add_database(
        &self,
        account: AccountId,
        name: DbName,
        now: OffsetDateTime,
    ) -> Result<DbRecord, StoreError> {
        self.edit_db(account, "name", move |record| {
            if record.databases.iter().any(|d| d.name == name) {
                return Err(StoreError::Duplicate {
                    field: "name".into(),
                    value: name.to_string(),
                });
            }
            if record.databases.len() >= MAX_DATABASES {
                return Err(Rule::TooMany { max: MAX_DATABASES }.at("name").into());
            }
            record.databases.push(Database {
                name,
                created_at: now,
            });
            Ok(())
        })
        .await
    }

    async fn delete_database(
        &self,
        account: AccountId,
        name: &DbName,
    ) -> Result<DbRecord, StoreError> {
        let name = name.clone();
        self.edit_db(account, "name", move |record| {
            let before = record.databases.len();
            record.databases.retain(|d| d.name != name);
            if record.databases.len() == before {
                return Err(not_found(Kind::Database, name.as_str()));
            }
            for user in &mut record.users {
                user.databases.retain(|d| d != &name);
            }
            Ok(())
        })
        .await
    }

    async fn add_db_user(&self, account: AccountId, user: DbUser) -> Result<DbRecord, StoreError> {
        self.edit_db(account, "name", move |record| {
            if record.user(&user.name).is_some() {
                return Err(StoreError::Duplicate {
                    field: "name".into(),
                    value: user.name.to_string(),
                });
            }
            if record.users.len() >= MAX_DB_USERS {
                return Err(Rule::TooMany { max: MAX_DB_USERS }.at("name").into());
            }
            check_grants(record, &user.databases)?;
            record.users.push(user);
            Ok(())
        })
        .await
    }

    async fn change_db_user(
        &self,
        account: AccountId,
        name: &DbUserName,
        hash: Option<NativeHash>,
        databases: Option<Vec<DbName>>,
    ) -> Result<DbRecord, StoreError> {
        let name = name.clone();
        self.edit_db(account, "name", move |record| {
            if let Some(dbs) = &databases {
                check_grants(record, dbs)?;
            }
            let Some(user) = record.users.iter_mut().find(|u| u.name == name) else {
                return Err(not_found(Kind::DbUser, name.as_str()));
            };
            if let Some(hash) = hash {
                user.hash = hash;
            }
            if let Some(dbs) = databases {
                user.databases = dbs;
            }
            Ok(())
        })
        .await
    }

    async fn delete_db_user(
        &self,
        account: AccountId,
        name: &DbUserName,
    ) -> Result<DbRecord, StoreError> {
        let name = name.clone();
        self.edit_db(account, "name", move |record| {
            let before = record.users.len();
            record.users.retain(|u| u.name != name);
            if record.users.len() == before {
                return Err(not_found(Kind::DbUser, name.as_str()));
            }
            Ok(())
        })
        .await
    }

    async fn restore_db(&self, account: AccountId, previous: DbRecord) -> Result<(), StoreError> {
        self.write(move |tx, sealer| {
            load_account(tx, account)?;
            let before = load(tx, sealer, account)?;
            save(tx, sealer, account, &before, &previous)
        })
        .await
    }
}
