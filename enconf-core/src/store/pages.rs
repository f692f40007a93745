//! Pages of the account and server lists, each read from an index: a page costs the same with
//! 100,000 accounts as with 10.
//!
//! - Every list is in id order and a page starts after the last id of the one before, so an
//!   account is seen once across pages even while others are created or deleted.
//! - Accounts of one server come from the server's index (`ServerAccounts`, with the roles
//!   the account uses it for); accounts with a role from the role index (`RoleAccounts`,
//!   written with the account, whose roles never change); a search by user name or domain
//!   prefix from the user name and domain indexes (its matches, sorted by id).

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::StoreError;
use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::logic::{KvStore, decode_account, decode_u64, id_key, load_account, load_server};
use crate::domain::{Account, AccountId, Role, RoleSet, Server, ServerId};

/// Which accounts a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountQuery {
    /// Accounts using this server (with `role`: for that role).
    pub server: Option<ServerId>,
    /// Accounts with this role.
    pub role: Option<Role>,
    /// Accounts whose user name or one of whose domains starts with this (lowercase).
    pub prefix: Option<String>,
}

impl AccountQuery {
    fn admits(&self, account: &Account) -> bool {
        let role = self.role.is_none_or(|r| account.spec.roles.contains(r));
        let server = self.server.is_none_or(|s| match self.role {
            Some(r) => account.servers.of(r).contains(&s),
            None => account.servers.servers().contains(&s),
        });
        let prefix = self.prefix.as_deref().is_none_or(|p| {
            account.spec.username.as_str().starts_with(p)
                || account
                    .spec
                    .domains
                    .iter()
                    .any(|d| d.as_str().starts_with(p))
        });
        role && server && prefix
    }
}

/// Paged lists.
#[async_trait]
pub trait PageStore: Send + Sync {
    /// At most `limit` accounts matching `query` whose id is greater than `after`, by id.
    async fn accounts_page(
        &self,
        query: &AccountQuery,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError>;
    /// At most `limit` servers whose id is greater than `after`, by id.
    async fn servers_page(
        &self,
        after: Option<ServerId>,
        limit: usize,
    ) -> Result<Vec<Server>, StoreError>;
}

fn role_key(role: Role, account: AccountId) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = role as u8;
    key[1..].copy_from_slice(&id_key(account.0));
    key
}

/// Writes (`present`) or removes the role index entries of an account.
pub(super) fn index_roles(
    tx: &mut dyn WriteTxn,
    account: AccountId,
    roles: RoleSet,
    present: bool,
) -> Result<(), StoreError> {
    for role in roles.iter() {
        match present {
            true => tx.put(Table::RoleAccounts, &role_key(role, account), &[])?,
            false => tx.delete(Table::RoleAccounts, &role_key(role, account))?,
        }
    }
    Ok(())
}

/// Schema 7 → 8: the role index, from the accounts.
pub(super) fn migrate_to_8(tx: &mut dyn WriteTxn) -> Result<(), StoreError> {
    for (_, value) in tx.scan(Table::Accounts, b"")? {
        let account = decode_account(&value)?;
        index_roles(tx, account.id, account.spec.roles, true)?;
    }
    Ok(())
}

/// The first key after `id` in an index whose keys are `prefix ++ id`.
fn start_after(prefix: &[u8], after: Option<u64>) -> Vec<u8> {
    let mut key = prefix.to_vec();
    if let Some(id) = after {
        match id.checked_add(1) {
            Some(next) => key.extend_from_slice(&id_key(next)),
            // Nothing comes after the greatest id.
            None => key.extend_from_slice(&[0xFF; 9]),
        }
    }
    key
}

/// How many index entries one read takes when entries may be filtered out.
const BATCH: usize = 256;

fn accounts_page(
    tx: &dyn ReadTxn,
    query: &AccountQuery,
    after: Option<AccountId>,
    limit: usize,
) -> Result<Vec<Account>, StoreError> {
    let after = after.map(|a| a.0);
    if let Some(prefix) = &query.prefix {
        // Every match of the prefix in the user name and domain indexes, by id.
        let mut ids = BTreeSet::new();
        for table in [Table::Usernames, Table::Domains] {
            for (_, value) in tx.scan(table, prefix.as_bytes())? {
                ids.insert(decode_u64(&value)?);
            }
        }
        let mut out = Vec::new();
        for id in ids.into_iter().filter(|id| after.is_none_or(|a| *id > a)) {
            let account = load_account(tx, AccountId(id))?;
            if query.admits(&account) {
                out.push(account);
                if out.len() == limit {
                    break;
                }
            }
        }
        return Ok(out);
    }
    let (table, prefix): (Table, Vec<u8>) = match (query.server, query.role) {
        (Some(server), _) => (Table::ServerAccounts, id_key(server.0).to_vec()),
        (None, Some(role)) => (Table::RoleAccounts, vec![role as u8]),
        (None, None) => (Table::Accounts, Vec::new()),
    };
    let mut out = Vec::new();
    let mut start = start_after(&prefix, after);
    // Filtered entries are skipped, so a page may take several reads of the index.
    let batch_size = BATCH.min(limit).max(1);
    loop {
        let batch = tx.scan_from(table, &prefix, &start, batch_size)?;
        let mut last = None;
        for (key, value) in &batch {
            let id = AccountId(decode_u64(key.get(prefix.len()..).unwrap_or_default())?);
            last = Some(id.0);
            let account = match table {
                Table::Accounts => decode_account(value)?,
                _ => load_account(tx, id)?,
            };
            if query.admits(&account) {
                out.push(account);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if batch.len() < batch_size {
            return Ok(out);
        }
        start = start_after(&prefix, last);
    }
}

#[async_trait]
impl<B: Backend> PageStore for KvStore<B> {
    async fn accounts_page(
        &self,
        query: &AccountQuery,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let query = query.clone();
        self.read(move |tx, _| accounts_page(tx, &query, after, limit))
            .await
    }

    async fn servers_page(
        &self,
        after: Option<ServerId>,
        limit: usize,
    ) -> Result<Vec<Server>, StoreError> {
        self.read(move |tx, sealer| {
            tx.scan_from(
                Table::Servers,
                b"",
                &start_after(b"", after.map(|s| s.0)),
                limit,
            )?
            .into_iter()
            .map(|(k, _)| load_server(tx, sealer, ServerId(decode_u64(&k)?)))
            .collect()
        })
        .await
    }
}
