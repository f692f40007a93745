//! The store's DNS rules, over the same key-value seam: one row per zone, keyed by the zone's
//! name, so a zone has one owner (a second account asking for it is `409`).
//!
//! - An account with the dns role owns the zones of its domains (`domain::dns::zones_of`);
//!   they are made with the account (or the domain that brings them) and go with it.
//! - A zone holds the records enconf makes (`managed`, replaced whole when the account's place
//!   changes) and the account's own ones (ids never reused in the zone), checked against each
//!   other in the write transaction; its serial increases on every change.
//! - A signed zone's key (PEM) is sealed with the store's key, bound to the zone.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::logic::{
    KvStore, decode, decode_account, encode, load_account, load_record, reindex_account,
    save_account,
};
use super::{Kind, StoreError};
use crate::domain::dns::{
    MAX_USER_RECORDS, Record, RecordSpec, ZoneName, check_beside, next_serial, zones_of,
};
use crate::domain::{Account, AccountId, AccountSpec, Role, Rule, ServerId};
use crate::secret::Sealer;

/// A zone as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRow {
    pub name: ZoneName,
    pub account: AccountId,
    pub serial: u32,
    /// The records enconf made, in the order they are served.
    pub managed: Vec<RecordSpec>,
    /// The account's own records.
    pub records: Vec<Record>,
    pub next_id: u64,
    /// The signing key, sealed (`None`: not signed).
    #[serde(default)]
    key: Option<String>,
}

impl ZoneRow {
    fn new(name: ZoneName, account: AccountId, today: u32) -> Self {
        Self {
            name,
            account,
            serial: next_serial(0, today),
            managed: Vec::new(),
            records: Vec::new(),
            next_id: 1,
            key: None,
        }
    }

    pub fn dnssec(&self) -> bool {
        self.key.is_some()
    }

    /// Every record the zone serves: enconf's first, then the account's.
    pub fn all(&self) -> impl Iterator<Item = &RecordSpec> {
        self.managed
            .iter()
            .chain(self.records.iter().map(|r| &r.spec))
    }

    fn bump(&mut self, today: u32) {
        self.serial = next_serial(self.serial, today);
    }
}

/// A zone with its opened key, for what is sent to the dns servers.
#[derive(Clone, PartialEq, Eq)]
pub struct ZoneWithKey {
    pub zone: ZoneRow,
    /// The signing key's PEM (`None`: not signed).
    pub key_pem: Option<String>,
}

impl std::fmt::Debug for ZoneWithKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneWithKey")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// An account's zones and their records.
#[async_trait]
pub trait DnsStore: Send + Sync {
    /// The account's zones, by name, with their keys opened.
    async fn zones(&self, account: AccountId) -> Result<Vec<ZoneWithKey>, StoreError>;
    /// Sets the records enconf makes in a zone; the serial moves only when they changed.
    async fn set_managed(
        &self,
        account: AccountId,
        zone: &ZoneName,
        managed: Vec<RecordSpec>,
        today: u32,
    ) -> Result<ZoneRow, StoreError>;
    /// Adds a record of the account's own; the zone as it is now.
    async fn add_record(
        &self,
        account: AccountId,
        zone: &ZoneName,
        spec: RecordSpec,
        today: u32,
    ) -> Result<(ZoneRow, u64), StoreError>;
    /// Replaces (`Some`) or deletes (`None`) a record of the account's own.
    async fn change_record(
        &self,
        account: AccountId,
        zone: &ZoneName,
        id: u64,
        spec: Option<RecordSpec>,
        today: u32,
    ) -> Result<ZoneRow, StoreError>;
    /// Signs the zone with `key_pem`, or stops signing it (`None`).
    async fn set_zone_key(
        &self,
        account: AccountId,
        zone: &ZoneName,
        key_pem: Option<String>,
        today: u32,
    ) -> Result<ZoneRow, StoreError>;
    /// Puts a zone's records and key back as `previous` had them (a change an agent refused),
    /// with a serial above the one it has now.
    async fn restore_zone(&self, previous: ZoneWithKey, today: u32) -> Result<(), StoreError>;
    /// Makes the dns server `server` (active, with the dns role) one of the dns servers of
    /// every account with the dns role it does not serve yet (it was added, or made active,
    /// after them); returns those accounts as they are now.
    async fn join_dns(&self, server: ServerId) -> Result<Vec<Account>, StoreError>;
}

fn key_context(zone: &ZoneName) -> Vec<u8> {
    format!("dns-key:{zone}").into_bytes()
}

fn load_row(tx: &dyn ReadTxn, zone: &ZoneName) -> Result<Option<ZoneRow>, StoreError> {
    tx.get(Table::DnsZones, zone.as_str().as_bytes())?
        .map(|v| decode(&v))
        .transpose()
}

/// The account's zone of that name (404 when the account does not have it).
fn own_row(tx: &dyn ReadTxn, account: AccountId, zone: &ZoneName) -> Result<ZoneRow, StoreError> {
    let owner = load_account(tx, account)?;
    if !owner.spec.roles.contains(Role::Dns) {
        return Err(Rule::NoDnsRole.at("zone").into());
    }
    match load_row(tx, zone)? {
        Some(row) if row.account == account => Ok(row),
        _ => Err(StoreError::AddressNotFound {
            kind: Kind::Zone,
            address: zone.to_string(),
        }),
    }
}

fn save_row(tx: &mut dyn WriteTxn, row: &ZoneRow) -> Result<(), StoreError> {
    tx.put(Table::DnsZones, row.name.as_str().as_bytes(), &encode(row)?)
}

fn today_utc() -> u32 {
    let d = time::OffsetDateTime::now_utc().date();
    (d.year().max(0) as u32) * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day())
}

/// Makes the zones `spec` needs (when it has the dns role) and drops those it no longer needs,
/// for the account `id` whose spec was `before`. A zone of another account is `409` naming
/// the domain that asked for it.
pub(super) fn claim_zones(
    tx: &mut dyn WriteTxn,
    id: AccountId,
    before: Option<&AccountSpec>,
    spec: &AccountSpec,
) -> Result<(), StoreError> {
    let zones_for = |spec: &AccountSpec| -> Result<Vec<ZoneName>, StoreError> {
        if !spec.roles.contains(Role::Dns) {
            return Ok(Vec::new());
        }
        zones_of(spec.domains.iter()).map_err(|(i, rule)| rule.at(format!("domains[{i}]")).into())
    };
    let old = before.map(zones_for).transpose()?.unwrap_or_default();
    let new = zones_for(spec)?;
    for zone in &new {
        match load_row(tx, zone)? {
            Some(row) if row.account != id => {
                let i = spec
                    .domains
                    .iter()
                    .position(|d| ZoneName::of(d).as_ref() == Ok(zone))
                    .unwrap_or(0);
                return Err(StoreError::Duplicate {
                    field: format!("domains[{i}]"),
                    value: zone.to_string(),
                });
            }
            Some(_) => {}
            None => save_row(tx, &ZoneRow::new(zone.clone(), id, today_utc()))?,
        }
    }
    for zone in old.iter().filter(|z| !new.contains(z)) {
        tx.delete(Table::DnsZones, zone.as_str().as_bytes())?;
    }
    Ok(())
}

fn open(sealer: &Sealer, row: ZoneRow) -> Result<ZoneWithKey, StoreError> {
    let key_pem = match &row.key {
        None => None,
        Some(sealed) => {
            let bytes = sealer
                .open(sealed, &key_context(&row.name))
                .map_err(StoreError::backend)?;
            Some(String::from_utf8(bytes).map_err(StoreError::backend)?)
        }
    };
    Ok(ZoneWithKey { zone: row, key_pem })
}

/// Checks `new` against the rest of the zone (`except`: the record it replaces).
fn check_record(row: &ZoneRow, new: &RecordSpec, except: Option<u64>) -> Result<(), StoreError> {
    let others = row.managed.iter().chain(
        row.records
            .iter()
            .filter(|r| Some(r.id) != except)
            .map(|r| &r.spec),
    );
    check_beside(new, others).map_err(|(field, rule)| rule.at(field).into())
}

impl<B: Backend> KvStore<B> {
    /// Changes the account's zone `zone` with `f` in one write transaction; the serial moves
    /// when `f` changed the zone.
    async fn edit_zone<T: Send + 'static>(
        &self,
        account: AccountId,
        zone: &ZoneName,
        today: u32,
        f: impl FnOnce(&mut ZoneRow, &Sealer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(ZoneRow, T), StoreError> {
        let zone = zone.clone();
        self.write(move |tx, sealer| {
            let mut row = own_row(tx, account, &zone)?;
            let before = row.clone();
            let out = f(&mut row, sealer)?;
            if row != before {
                row.bump(today);
                save_row(tx, &row)?;
            }
            Ok((row, out))
        })
        .await
    }
}

/// `key_pem` sealed for `zone` (`None`: not signed).
fn seal_key(
    sealer: &Sealer,
    zone: &ZoneName,
    key_pem: Option<String>,
) -> Result<Option<String>, StoreError> {
    key_pem
        .map(|pem| sealer.seal(pem.as_bytes(), &key_context(zone)))
        .transpose()
        .map_err(StoreError::backend)
}

#[async_trait]
impl<B: Backend> DnsStore for KvStore<B> {
    async fn zones(&self, account: AccountId) -> Result<Vec<ZoneWithKey>, StoreError> {
        self.read(move |tx, sealer| {
            let owner = load_account(tx, account)?;
            if !owner.spec.roles.contains(Role::Dns) {
                return Ok(Vec::new());
            }
            let names = zones_of(owner.spec.domains.iter())
                .map_err(|(i, rule)| rule.at(format!("domains[{i}]")))?;
            let mut out = Vec::new();
            for name in names {
                if let Some(row) = load_row(tx, &name)?
                    && row.account == account
                {
                    out.push(open(sealer, row)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_managed(
        &self,
        account: AccountId,
        zone: &ZoneName,
        managed: Vec<RecordSpec>,
        today: u32,
    ) -> Result<ZoneRow, StoreError> {
        self.edit_zone(account, zone, today, move |row, _| {
            if row.managed == managed {
                return Ok(());
            }
            for r in &row.records {
                check_beside(&r.spec, managed.iter()).map_err(|_| {
                    StoreError::from(Rule::CnameConflict.at(format!("records[{}]", r.id)))
                })?;
            }
            row.managed = managed;
            Ok(())
        })
        .await
        .map(|(row, ())| row)
    }

    async fn add_record(
        &self,
        account: AccountId,
        zone: &ZoneName,
        spec: RecordSpec,
        today: u32,
    ) -> Result<(ZoneRow, u64), StoreError> {
        self.edit_zone(account, zone, today, move |row, _| {
            if row.records.len() >= MAX_USER_RECORDS {
                return Err(Rule::TooMany {
                    max: MAX_USER_RECORDS,
                }
                .at("records")
                .into());
            }
            check_record(row, &spec, None)?;
            let id = row.next_id;
            row.next_id += 1;
            row.records.push(Record {
                id,
                spec,
                managed: false,
            });
            Ok(id)
        })
        .await
    }

    async fn change_record(
        &self,
        account: AccountId,
        zone: &ZoneName,
        id: u64,
        spec: Option<RecordSpec>,
        today: u32,
    ) -> Result<ZoneRow, StoreError> {
        self.edit_zone(account, zone, today, move |row, _| {
            let Some(at) = row.records.iter().position(|r| r.id == id) else {
                return Err(StoreError::NotFound {
                    kind: Kind::Record,
                    id,
                });
            };
            match spec {
                Some(spec) => {
                    check_record(row, &spec, Some(id))?;
                    if let Some(r) = row.records.get_mut(at) {
                        r.spec = spec;
                    }
                }
                None => {
                    row.records.remove(at);
                }
            }
            Ok(())
        })
        .await
        .map(|(row, ())| row)
    }

    async fn set_zone_key(
        &self,
        account: AccountId,
        zone: &ZoneName,
        key_pem: Option<String>,
        today: u32,
    ) -> Result<ZoneRow, StoreError> {
        self.edit_zone(account, zone, today, move |row, sealer| {
            row.key = seal_key(sealer, &row.name, key_pem)?;
            Ok(())
        })
        .await
        .map(|(row, ())| row)
    }

    async fn restore_zone(&self, previous: ZoneWithKey, today: u32) -> Result<(), StoreError> {
        let ZoneWithKey { zone: old, key_pem } = previous;
        let (account, name) = (old.account, old.name.clone());
        self.edit_zone(account, &name, today, move |row, sealer| {
            row.managed = old.managed;
            row.records = old.records;
            row.key = seal_key(sealer, &row.name, key_pem)?;
            // Never the serial it had: the servers that took the change have seen a later one.
            row.serial = row.serial.max(old.serial);
            row.bump(today);
            Ok(())
        })
        .await
        .map(drop)
    }

    async fn join_dns(&self, server: ServerId) -> Result<Vec<Account>, StoreError> {
        self.write(move |tx, _| {
            let record = load_record(tx, server)?;
            if !record.spec.active || !record.spec.roles.contains(Role::Dns) {
                return Ok(Vec::new());
            }
            let mut joined = Vec::new();
            for (_, value) in tx.scan(Table::Accounts, b"")? {
                let mut account = decode_account(&value)?;
                let dns = account.servers.of(Role::Dns);
                if !account.spec.roles.contains(Role::Dns) || dns.contains(&server) {
                    continue;
                }
                let before = account.servers.clone();
                let mut list = dns.to_vec();
                list.push(server);
                list.sort();
                account.servers.set(Role::Dns, list);
                reindex_account(tx, account.id, &before, &account.servers)?;
                save_account(tx, &account)?;
                joined.push(account);
            }
            Ok(joined)
        })
        .await
    }
}
