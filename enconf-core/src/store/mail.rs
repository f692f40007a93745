//! The store's mail rules, over the same key-value seam: an account's mailboxes and aliases,
//! keyed by account id and address, checked in the write transaction against the account's
//! domains and each other.
//!
//! - An address's domain is one of the account's (a domain has one owner, so an address has
//!   one owner too).
//! - An address is a mailbox or an alias of the account, not both (an alias would take the
//!   mailbox's mail).
//! - The account's aliases make no loop.
//! - A domain with mailboxes or aliases is not taken from the account; deleting the account
//!   deletes them.

use async_trait::async_trait;

use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::logic::{KvStore, decode, encode, id_key, load_account};
use super::{Kind, StoreError};
use crate::domain::{AccountId, Alias, DomainName, MailAddress, Mailbox, Rule, alias_loop};

/// An account's mailboxes and aliases.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// The account's mailboxes, by address.
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>, StoreError>;
    /// Adds a mailbox to the account.
    async fn add_mailbox(&self, account: AccountId, mailbox: Mailbox) -> Result<(), StoreError>;
    /// Replaces a mailbox of the account (its address stays); returns what it was.
    async fn replace_mailbox(
        &self,
        account: AccountId,
        mailbox: Mailbox,
    ) -> Result<Mailbox, StoreError>;
    /// Deletes a mailbox of the account; returns what was deleted.
    async fn delete_mailbox(
        &self,
        account: AccountId,
        address: &MailAddress,
    ) -> Result<Mailbox, StoreError>;
    /// The account's aliases, by address.
    async fn aliases(&self, account: AccountId) -> Result<Vec<Alias>, StoreError>;
    /// Creates or replaces an alias of the account; returns the one it replaced. With
    /// `create_only`, an existing alias of that address is a duplicate.
    async fn put_alias(
        &self,
        account: AccountId,
        alias: Alias,
        create_only: bool,
    ) -> Result<Option<Alias>, StoreError>;
    /// Deletes an alias of the account; returns what was deleted.
    async fn delete_alias(
        &self,
        account: AccountId,
        address: &MailAddress,
    ) -> Result<Alias, StoreError>;
}

fn key(account: AccountId, address: &MailAddress) -> Vec<u8> {
    let mut k = id_key(account.0).to_vec();
    k.extend_from_slice(address.to_string().as_bytes());
    k
}

fn all<T: serde::de::DeserializeOwned>(
    tx: &dyn ReadTxn,
    table: Table,
    account: AccountId,
) -> Result<Vec<T>, StoreError> {
    tx.scan(table, &id_key(account.0))?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

/// The address must be on one of the account's domains.
fn check_domain(
    tx: &dyn ReadTxn,
    account: AccountId,
    address: &MailAddress,
) -> Result<(), StoreError> {
    let owner = load_account(tx, account)?;
    if owner.spec.domains.iter().any(|d| d == address.domain()) {
        Ok(())
    } else {
        Err(Rule::NotAccountDomain.at("address").into())
    }
}

/// An address is a mailbox or an alias, not both.
fn check_unused(
    tx: &dyn ReadTxn,
    table: Table,
    account: AccountId,
    address: &MailAddress,
) -> Result<(), StoreError> {
    if tx.get(table, &key(account, address))?.is_some() {
        return Err(StoreError::Duplicate {
            field: "address".into(),
            value: address.to_string(),
        });
    }
    Ok(())
}

/// Fails when the account still has mailboxes or aliases on `domain`.
pub(super) fn check_domain_unused(
    tx: &dyn ReadTxn,
    account: AccountId,
    domain: &DomainName,
) -> Result<(), StoreError> {
    let mut count = 0u64;
    for table in [Table::Mailboxes, Table::MailAliases] {
        for (k, _) in tx.scan(table, &id_key(account.0))? {
            let address = String::from_utf8_lossy(k.get(8..).unwrap_or_default()).into_owned();
            if address
                .rsplit_once('@')
                .is_some_and(|(_, d)| d == domain.as_str())
            {
                count += 1;
            }
        }
    }
    if count > 0 {
        return Err(StoreError::DomainInUse {
            domain: domain.to_string(),
            count,
        });
    }
    Ok(())
}

/// Deletes every mailbox and alias of an account.
pub(super) fn forget_account(tx: &mut dyn WriteTxn, account: AccountId) -> Result<(), StoreError> {
    for table in [Table::Mailboxes, Table::MailAliases] {
        for (k, _) in tx.scan(table, &id_key(account.0))? {
            tx.delete(table, &k)?;
        }
    }
    Ok(())
}

fn not_found(kind: Kind, address: &MailAddress) -> StoreError {
    StoreError::AddressNotFound {
        kind,
        address: address.to_string(),
    }
}

#[async_trait]
impl<B: Backend> MailStore for KvStore<B> {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>, StoreError> {
        self.read(move |tx, _| {
            load_account(tx, account)?;
            all(tx, Table::Mailboxes, account)
        })
        .await
    }

    async fn add_mailbox(&self, account: AccountId, mailbox: Mailbox) -> Result<(), StoreError> {
        self.write(move |tx, _| {
            check_domain(tx, account, &mailbox.address)?;
            check_unused(tx, Table::Mailboxes, account, &mailbox.address)?;
            check_unused(tx, Table::MailAliases, account, &mailbox.address)?;
            tx.put(
                Table::Mailboxes,
                &key(account, &mailbox.address),
                &encode(&mailbox)?,
            )
        })
        .await
    }

    async fn replace_mailbox(
        &self,
        account: AccountId,
        mailbox: Mailbox,
    ) -> Result<Mailbox, StoreError> {
        self.write(move |tx, _| {
            load_account(tx, account)?;
            let k = key(account, &mailbox.address);
            let old: Mailbox = match tx.get(Table::Mailboxes, &k)? {
                Some(v) => decode(&v)?,
                None => return Err(not_found(Kind::Mailbox, &mailbox.address)),
            };
            tx.put(Table::Mailboxes, &k, &encode(&mailbox)?)?;
            Ok(old)
        })
        .await
    }

    async fn delete_mailbox(
        &self,
        account: AccountId,
        address: &MailAddress,
    ) -> Result<Mailbox, StoreError> {
        let address = address.clone();
        self.write(move |tx, _| {
            load_account(tx, account)?;
            let k = key(account, &address);
            let old: Mailbox = match tx.get(Table::Mailboxes, &k)? {
                Some(v) => decode(&v)?,
                None => return Err(not_found(Kind::Mailbox, &address)),
            };
            tx.delete(Table::Mailboxes, &k)?;
            Ok(old)
        })
        .await
    }

    async fn aliases(&self, account: AccountId) -> Result<Vec<Alias>, StoreError> {
        self.read(move |tx, _| {
            load_account(tx, account)?;
            all(tx, Table::MailAliases, account)
        })
        .await
    }

    async fn put_alias(
        &self,
        account: AccountId,
        alias: Alias,
        create_only: bool,
    ) -> Result<Option<Alias>, StoreError> {
        self.write(move |tx, _| {
            check_domain(tx, account, &alias.address)?;
            check_unused(tx, Table::Mailboxes, account, &alias.address)?;
            let k = key(account, &alias.address);
            let old: Option<Alias> = tx
                .get(Table::MailAliases, &k)?
                .map(|v| decode(&v))
                .transpose()?;
            if create_only && old.is_some() {
                return Err(StoreError::Duplicate {
                    field: "address".into(),
                    value: alias.address.to_string(),
                });
            }
            let mut others: Vec<Alias> = all(tx, Table::MailAliases, account)?;
            others.retain(|a| a.address != alias.address);
            others.push(alias.clone());
            if let Some(cycle) = alias_loop(&others) {
                let path = cycle
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" -> ");
                return Err(Rule::AliasLoop(path).at("destinations").into());
            }
            tx.put(Table::MailAliases, &k, &encode(&alias)?)?;
            Ok(old)
        })
        .await
    }

    async fn delete_alias(
        &self,
        account: AccountId,
        address: &MailAddress,
    ) -> Result<Alias, StoreError> {
        let address = address.clone();
        self.write(move |tx, _| {
            load_account(tx, account)?;
            let k = key(account, &address);
            let old: Alias = match tx.get(Table::MailAliases, &k)? {
                Some(v) => decode(&v)?,
                None => return Err(not_found(Kind::Alias, &address)),
            };
            tx.delete(Table::MailAliases, &k)?;
            Ok(old)
        })
        .await
    }
}
