//! Each server's placement summary (table `placement`): what placing an account reads of a
//! server, and the server's account count, in a few bytes.
//!
//! Placing an account reads one small entry per server and no server record (a record holds
//! the server's whole spec and health as JSON, and its sealed token): with 1,000 servers, the
//! records cost milliseconds to decode in every create, the summaries tens of microseconds.
//! A summary is written with its server's record and with every change of its count, in the
//! same transaction, so it never disagrees with either.
//!
//! Layout (big-endian): version `1`, roles (a bit per role), flags (active, reachable, PHP
//! versions known), `max_accounts` (u32, 0: no limit), the account count (u64), the number of
//! PHP versions (u8) and each as major, minor.

use std::num::NonZeroU32;

use super::StoreError;
use super::kv::{ReadTxn, Table, WriteTxn};
use super::logic::{ServerRecord, decode_roles, decode_u64, encode_roles, id_key};
use crate::domain::{PhpVersion, RoleSet, ServerId};
use crate::placement::Candidate;

const VERSION: u8 = 1;
const ACTIVE: u8 = 1;
const REACHABLE: u8 = 2;
const PHP_KNOWN: u8 = 4;

/// What placement needs of one server, and its account count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    roles: RoleSet,
    active: bool,
    reachable: bool,
    max_accounts: Option<NonZeroU32>,
    accounts: u64,
    /// The PHP versions its agent offers; `None`: it never said.
    php: Option<Vec<PhpVersion>>,
}

impl Summary {
    fn of(record: &ServerRecord, accounts: u64) -> Self {
        Self {
            roles: record.spec.roles,
            active: record.spec.active,
            reachable: record.health.reachable,
            max_accounts: record.spec.max_accounts,
            accounts,
            php: record.health.php_versions.clone(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let php = self.php.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(16 + 2 * php.len());
        out.push(VERSION);
        out.extend_from_slice(&encode_roles(self.roles));
        let mut flags = 0;
        for (on, bit) in [
            (self.active, ACTIVE),
            (self.reachable, REACHABLE),
            (self.php.is_some(), PHP_KNOWN),
        ] {
            if on {
                flags |= bit;
            }
        }
        out.push(flags);
        out.extend_from_slice(&self.max_accounts.map_or(0, NonZeroU32::get).to_be_bytes());
        out.extend_from_slice(&self.accounts.to_be_bytes());
        // An agent names a handful of versions; more than 255 are not kept.
        let php = &php[..php.len().min(usize::from(u8::MAX))];
        out.push(u8::try_from(php.len()).unwrap_or(u8::MAX));
        for v in php {
            out.extend_from_slice(&[v.major(), v.minor()]);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::backend("a server's placement summary is malformed");
        let (head, rest) = bytes.split_at_checked(15).ok_or_else(bad)?;
        if head[0] != VERSION {
            return Err(bad());
        }
        let flags = head[2];
        let max = u32::from_be_bytes(head[3..7].try_into().map_err(|_| bad())?);
        let accounts = decode_u64(&head[7..15])?;
        let (n, pairs) = rest.split_first().ok_or_else(bad)?;
        if pairs.len() != 2 * usize::from(*n) {
            return Err(bad());
        }
        let php = match flags & PHP_KNOWN {
            0 => None,
            _ => Some(
                pairs
                    .chunks_exact(2)
                    .map(|p| PhpVersion::new(p[0], p[1]).map_err(|_| bad()))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Self {
            roles: decode_roles(&head[1..2]),
            active: flags & ACTIVE != 0,
            reachable: flags & REACHABLE != 0,
            max_accounts: NonZeroU32::new(max),
            accounts,
            php,
        })
    }
}

fn load(tx: &dyn ReadTxn, id: ServerId) -> Result<Option<Summary>, StoreError> {
    tx.get(Table::Placement, &id_key(id.0))?
        .map(|bytes| Summary::decode(&bytes))
        .transpose()
}

fn save(tx: &mut dyn WriteTxn, id: ServerId, summary: &Summary) -> Result<(), StoreError> {
    tx.put(Table::Placement, &id_key(id.0), &summary.encode())
}

/// The accounts on server `id` (0 for a server the store does not have).
pub(super) fn account_count(tx: &dyn ReadTxn, id: ServerId) -> Result<u64, StoreError> {
    Ok(load(tx, id)?.map_or(0, |s| s.accounts))
}

/// Sets the account count of server `id`, which must exist.
pub(super) fn set_account_count(
    tx: &mut dyn WriteTxn,
    id: ServerId,
    accounts: u64,
) -> Result<(), StoreError> {
    let mut summary = load(tx, id)?.ok_or(StoreError::NotFound {
        kind: super::Kind::Server,
        id: id.0,
    })?;
    summary.accounts = accounts;
    save(tx, id, &summary)
}

/// Brings the summary of server `id` in line with its record (just saved), keeping its count;
/// written only when it changes (a health check that sees what the last one saw writes
/// nothing here).
pub(super) fn record_saved(
    tx: &mut dyn WriteTxn,
    id: ServerId,
    record: &ServerRecord,
) -> Result<(), StoreError> {
    let old = load(tx, id)?;
    let new = Summary::of(record, old.as_ref().map_or(0, |s| s.accounts));
    if old.as_ref() != Some(&new) {
        save(tx, id, &new)?;
    }
    Ok(())
}

/// Forgets the summary of a deleted server.
pub(super) fn remove(tx: &mut dyn WriteTxn, id: ServerId) -> Result<(), StoreError> {
    tx.delete(Table::Placement, &id_key(id.0))
}

impl Summary {
    /// Server `id` as placement sees it, for an account asking for PHP `php` (any version
    /// when the agent never said which it offers).
    fn candidate(&self, id: ServerId, php: Option<PhpVersion>) -> Candidate {
        Candidate {
            id,
            roles: self.roles,
            active: self.active,
            reachable: self.reachable,
            max_accounts: self.max_accounts,
            accounts: u32::try_from(self.accounts).unwrap_or(u32::MAX),
            php_ok: php.is_none_or(|v| self.php.as_ref().is_none_or(|all| all.contains(&v))),
        }
    }
}

/// Every server as placement sees it, for an account asking for PHP `php`.
pub(super) fn candidates(
    tx: &dyn ReadTxn,
    php: Option<PhpVersion>,
) -> Result<Vec<Candidate>, StoreError> {
    tx.scan(Table::Placement, b"")?
        .into_iter()
        .map(
            |(key, value)| Ok(Summary::decode(&value)?.candidate(ServerId(decode_u64(&key)?), php)),
        )
        .collect()
}

/// Server `id` as placement sees it (`NotFound` when the store has no such server).
pub(super) fn candidate(
    tx: &dyn ReadTxn,
    id: ServerId,
    php: Option<PhpVersion>,
) -> Result<Candidate, StoreError> {
    let summary = load(tx, id)?.ok_or(StoreError::NotFound {
        kind: super::Kind::Server,
        id: id.0,
    })?;
    Ok(summary.candidate(id, php))
}

/// The counts of schema 8 and before (`accounts_on:<id>` in the meta table).
const OLD_COUNT_PREFIX: &[u8] = b"accounts_on:";

/// Schema 8 → 9: a summary for each server, with the count the meta table kept, which goes.
pub(super) fn migrate_to_9(tx: &mut dyn WriteTxn) -> Result<(), StoreError> {
    for (key, value) in tx.scan(Table::Servers, b"")? {
        let id = ServerId(decode_u64(&key)?);
        let record: ServerRecord = super::logic::decode(&value)?;
        let count_key = [OLD_COUNT_PREFIX, &key].concat();
        let accounts = match tx.get(Table::Meta, &count_key)? {
            Some(bytes) => decode_u64(&bytes)?,
            None => 0,
        };
        save(tx, id, &Summary::of(&record, accounts))?;
    }
    for (key, _) in tx.scan(Table::Meta, OLD_COUNT_PREFIX)? {
        tx.delete(Table::Meta, &key)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_back_as_written() {
        for php in [
            None,
            Some(vec![]),
            Some(vec![
                PhpVersion::new(8, 2).unwrap(),
                PhpVersion::new(7, 4).unwrap(),
            ]),
        ] {
            let s = Summary {
                roles: "web,mail,backup".parse().unwrap(),
                active: true,
                reachable: false,
                max_accounts: NonZeroU32::new(500),
                accounts: 123_456,
                php,
            };
            assert_eq!(Summary::decode(&s.encode()).unwrap(), s);
        }
    }

    #[test]
    fn a_malformed_summary_is_an_error() {
        let good = Summary {
            roles: "web".parse().unwrap(),
            active: true,
            reachable: true,
            max_accounts: None,
            accounts: 1,
            php: Some(vec![PhpVersion::new(8, 3).unwrap()]),
        }
        .encode();
        for bad in [
            &[][..],
            &good[..10],
            &good[..good.len() - 1],
            &[&[2u8][..], &good[1..]].concat(),
            &[&good[..], &[0][..]].concat(),
        ] {
            assert!(Summary::decode(bad).is_err(), "{bad:?}");
        }
    }
}
