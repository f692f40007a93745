//! The store's administrators and audit log, over the same key-value seam.
//!
//! - An administrator is kept with the digest of their token, never the token; an index maps
//!   each digest to its administrator, so a request's token is looked up in one read. Deleting
//!   an administrator deletes that index entry in the same transaction: the token stops
//!   working with the next request.
//! - The audit log is only ever added to: the trait has no way to change or remove an entry.
//!   Two indexes (by object, by administrator) give a filtered page without reading the rest.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::kv::{Backend, ReadTxn, Table, WriteTxn};
use super::logic::{KvStore, decode, decode_u64, encode, id_key, next_id};
use super::{Kind, StoreError};
use crate::domain::admin::{
    Admin, AdminId, AdminName, AdminRole, AuditEntry, NewAuditEntry, TokenDigest,
};

const ADMIN_COUNTER: &[u8] = b"next_admin_id";
const AUDIT_COUNTER: &[u8] = b"next_audit_id";

/// Which audit entries a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries about this object (`server:3`).
    pub object: Option<String>,
    /// Entries of this administrator.
    pub admin: Option<AdminId>,
}

/// Administrators and the audit log.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Records a new administrator. Names are unique, ignoring case.
    async fn insert_admin(
        &self,
        name: AdminName,
        role: AdminRole,
        token: TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Admin, StoreError>;
    /// Every administrator, by id.
    async fn admins(&self) -> Result<Vec<Admin>, StoreError>;
    async fn admin(&self, id: AdminId) -> Result<Admin, StoreError>;
    /// The administrator whose token has this digest.
    async fn admin_by_token(&self, token: TokenDigest) -> Result<Option<Admin>, StoreError>;
    async fn set_admin_role(&self, id: AdminId, role: AdminRole) -> Result<Admin, StoreError>;
    /// Deletes an administrator; their token is refused from the next request on.
    async fn delete_admin(&self, id: AdminId) -> Result<Admin, StoreError>;

    /// Adds an entry to the audit log.
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError>;
    /// At most `limit` entries that `filter` selects, older than `before` (from the newest
    /// when `None`), newest first.
    async fn audit_page(
        &self,
        filter: AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

fn load_admin(tx: &dyn ReadTxn, id: AdminId) -> Result<Admin, StoreError> {
    match tx.get(Table::Admins, &id_key(id.0))? {
        Some(bytes) => decode(&bytes),
        None => Err(StoreError::NotFound {
            kind: Kind::Admin,
            id: id.0,
        }),
    }
}

fn load_entry(tx: &dyn ReadTxn, id: u64) -> Result<AuditEntry, StoreError> {
    match tx.get(Table::Audit, &id_key(id))? {
        Some(bytes) => decode(&bytes),
        None => Err(StoreError::backend(format!(
            "corrupt store: audit entry {id} is indexed but missing"
        ))),
    }
}

/// The prefix of an object's entries in [`Table::AuditObjects`]: the object, then a NUL (no
/// object holds one), then the entry's id.
fn object_prefix(object: &str) -> Vec<u8> {
    let mut key = object.as_bytes().to_vec();
    key.push(0);
    key
}

fn with_id(mut prefix: Vec<u8>, id: u64) -> Vec<u8> {
    prefix.extend_from_slice(&id_key(id));
    prefix
}

/// The ids at the end of index keys under `prefix`, newest first.
fn index_page(
    tx: &dyn ReadTxn,
    table: Table,
    prefix: &[u8],
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let end = before.map(|id| with_id(prefix.to_vec(), id));
    tx.scan_back(table, prefix, end.as_deref(), limit)?
        .into_iter()
        .map(|(k, _)| load_entry(tx, decode_u64(k.get(prefix.len()..).unwrap_or_default())?))
        .collect()
}

#[async_trait]
impl<B: Backend> AdminStore for KvStore<B> {
    async fn insert_admin(
        &self,
        name: AdminName,
        role: AdminRole,
        token: TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Admin, StoreError> {
        self.write(move |tx: &mut dyn WriteTxn, _| {
            let lower = name.as_str().to_lowercase();
            for (_, value) in tx.scan(Table::Admins, b"")? {
                let other: Admin = decode(&value)?;
                if other.name.as_str().to_lowercase() == lower {
                    return Err(StoreError::Duplicate {
                        field: "name".into(),
                        value: name.as_str().to_owned(),
                    });
                }
            }
            if tx.get(Table::AdminTokens, token.as_bytes())?.is_some() {
                return Err(StoreError::backend("a generated token is already in use"));
            }
            let id = AdminId(next_id(tx, ADMIN_COUNTER)?);
            let admin = Admin {
                id,
                name,
                role,
                token,
                created_at: now,
            };
            tx.put(Table::Admins, &id_key(id.0), &encode(&admin)?)?;
            tx.put(Table::AdminTokens, token.as_bytes(), &id_key(id.0))?;
            Ok(admin)
        })
        .await
    }

    async fn admins(&self) -> Result<Vec<Admin>, StoreError> {
        self.read(|tx, _| {
            tx.scan(Table::Admins, b"")?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn admin(&self, id: AdminId) -> Result<Admin, StoreError> {
        self.read(move |tx, _| load_admin(tx, id)).await
    }

    async fn admin_by_token(&self, token: TokenDigest) -> Result<Option<Admin>, StoreError> {
        self.read(
            move |tx, _| match tx.get(Table::AdminTokens, token.as_bytes())? {
                None => Ok(None),
                Some(id) => load_admin(tx, AdminId(decode_u64(&id)?)).map(Some),
            },
        )
        .await
    }

    async fn set_admin_role(&self, id: AdminId, role: AdminRole) -> Result<Admin, StoreError> {
        self.write(move |tx: &mut dyn WriteTxn, _| {
            let mut admin = load_admin(tx, id)?;
            admin.role = role;
            tx.put(Table::Admins, &id_key(id.0), &encode(&admin)?)?;
            Ok(admin)
        })
        .await
    }

    async fn delete_admin(&self, id: AdminId) -> Result<Admin, StoreError> {
        self.write(move |tx: &mut dyn WriteTxn, _| {
            let admin = load_admin(tx, id)?;
            tx.delete(Table::AdminTokens, admin.token.as_bytes())?;
            tx.delete(Table::Admins, &id_key(id.0))?;
            Ok(admin)
        })
        .await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        self.write(move |tx: &mut dyn WriteTxn, _| {
            let id = next_id(tx, AUDIT_COUNTER)?;
            let entry = entry.with_id(id);
            tx.put(Table::Audit, &id_key(id), &encode(&entry)?)?;
            if !entry.object.is_empty() {
                tx.put(
                    Table::AuditObjects,
                    &with_id(object_prefix(&entry.object), id),
                    &[],
                )?;
            }
            tx.put(
                Table::AuditAdmins,
                &with_id(id_key(entry.admin).to_vec(), id),
                &[],
            )?;
            Ok(entry)
        })
        .await
    }

    async fn audit_page(
        &self,
        filter: AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |tx, _| match (&filter.object, filter.admin) {
            (None, None) => index_page(tx, Table::Audit, b"", before, limit),
            (Some(object), None) => index_page(
                tx,
                Table::AuditObjects,
                &object_prefix(object),
                before,
                limit,
            ),
            (None, Some(admin)) => {
                index_page(tx, Table::AuditAdmins, &id_key(admin.0), before, limit)
            }
            (Some(object), Some(admin)) => {
                // The object's entries, those of the administrator kept: read in pages of
                // the object index until `limit` are found or the index ends.
                let prefix = object_prefix(object);
                let mut found = Vec::new();
                let mut end = before;
                loop {
                    let page = index_page(tx, Table::AuditObjects, &prefix, end, 256)?;
                    let Some(last) = page.last().map(|e| e.id) else {
                        return Ok(found);
                    };
                    let exhausted = page.len() < 256;
                    found.extend(page.into_iter().filter(|e| e.admin == admin.0));
                    if found.len() >= limit {
                        found.truncate(limit);
                        return Ok(found);
                    }
                    if exhausted {
                        return Ok(found);
                    }
                    end = Some(last);
                }
            }
        })
        .await
    }
}
