//! The seam between the store's rules and a backend: named tables of byte keys and values, read
//! and written inside transactions.

use super::StoreError;

/// The tables the store uses. A backend maps each to its own storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Counters and the schema version.
    Meta,
    Servers,
    /// Lowercased server name → server id.
    ServerNames,
    /// Hostname → server id.
    ServerHostnames,
    Accounts,
    /// User name → account id.
    Usernames,
    /// Domain → account id.
    Domains,
    /// Server id ++ account id → nothing: which accounts a server hosts.
    ServerAccounts,
    Settings,
    /// Mail hostname → server id.
    MailHostnames,
    /// An agent's identity (from its health) → server id.
    AgentIds,
    /// Account id ++ address → mailbox.
    Mailboxes,
    /// Account id ++ address → alias.
    MailAliases,
    /// Zone name → zone (its account, serial, records).
    DnsZones,
    /// Account id → its databases and database users.
    DbAccounts,
    /// `d/<database>` or `u/<database user>` → account id: one owner per name.
    DbNames,
    /// Job id → job.
    Jobs,
    /// Account id → its queued or running job's id.
    ActiveJobs,
    /// Account id → its repository's secrets, sealed.
    BackupKeys,
    /// Account id ++ set id → a finished backup set.
    BackupSets,
    /// Role ++ account id → nothing: which accounts have a role (an account's roles never
    /// change after its create).
    RoleAccounts,
    /// Server id → its placement summary and account count (see `summary.rs`).
    Placement,
    /// Job id → nothing: the queued and running jobs.
    UnfinishedJobs,
    /// Account id ++ job id → nothing: an account's jobs.
    AccountJobs,
    /// Administrator id → administrator (with their token's digest).
    Admins,
    /// Token digest → administrator id.
    AdminTokens,
    /// Entry id → audit entry.
    Audit,
    /// Object ++ NUL ++ entry id → nothing: the entries about an object.
    AuditObjects,
    /// Administrator id ++ entry id → nothing: an administrator's entries.
    AuditAdmins,
}

impl Table {
    pub const ALL: [Table; 29] = [
        Table::Meta,
        Table::Servers,
        Table::ServerNames,
        Table::ServerHostnames,
        Table::Accounts,
        Table::Usernames,
        Table::Domains,
        Table::ServerAccounts,
        Table::Settings,
        Table::MailHostnames,
        Table::AgentIds,
        Table::Mailboxes,
        Table::MailAliases,
        Table::DnsZones,
        Table::DbAccounts,
        Table::DbNames,
        Table::Jobs,
        Table::ActiveJobs,
        Table::BackupKeys,
        Table::BackupSets,
        Table::RoleAccounts,
        Table::Placement,
        Table::UnfinishedJobs,
        Table::AccountJobs,
        Table::Admins,
        Table::AdminTokens,
        Table::Audit,
        Table::AuditObjects,
        Table::AuditAdmins,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Servers => "servers",
            Table::ServerNames => "server_names",
            Table::ServerHostnames => "server_hostnames",
            Table::Accounts => "accounts",
            Table::Usernames => "usernames",
            Table::Domains => "domains",
            Table::ServerAccounts => "server_accounts",
            Table::Settings => "settings",
            Table::MailHostnames => "mail_hostnames",
            Table::AgentIds => "agent_ids",
            Table::Mailboxes => "mailboxes",
            Table::MailAliases => "mail_aliases",
            Table::DnsZones => "dns_zones",
            Table::DbAccounts => "db_accounts",
            Table::DbNames => "db_names",
            Table::Jobs => "jobs",
            Table::ActiveJobs => "active_jobs",
            Table::BackupKeys => "backup_keys",
            Table::BackupSets => "backup_sets",
            Table::RoleAccounts => "role_accounts",
            Table::Placement => "placement",
            Table::UnfinishedJobs => "unfinished_jobs",
            Table::AccountJobs => "account_jobs",
            Table::Admins => "admins",
            Table::AdminTokens => "admin_tokens",
            Table::Audit => "audit",
            Table::AuditObjects => "audit_objects",
            Table::AuditAdmins => "audit_admins",
        }
    }
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads inside a transaction.
pub trait ReadTxn {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.scan_from(table, prefix, prefix, usize::MAX)
    }
    /// At most `limit` entries whose key starts with `prefix` and is `start` or after, in key
    /// order: one page of an index, read without the rest of it.
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// At most `limit` entries whose key starts with `prefix` and is before `end` (from the
    /// last when `None`), last first: the newest of an index keyed by increasing ids, a page
    /// at a time.
    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;
}

/// The first key after every key that starts with `prefix` (`None`: there is none).
pub(super) fn upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < 0xFF {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

/// The keys a backward scan reads: from `prefix` (included) to `end` or the end of the
/// prefix (excluded), whichever comes first; `None` when that is no key at all.
pub(super) type BackRange = (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>);

pub(super) fn back_range(prefix: &[u8], end: Option<&[u8]>) -> Option<BackRange> {
    use std::ops::Bound;
    if end.is_some_and(|end| end <= prefix) {
        return None;
    }
    let hi = match (end, upper_bound(prefix)) {
        (Some(end), Some(bound)) => Some(end.min(&bound).to_vec()),
        (Some(end), None) => Some(end.to_vec()),
        (None, bound) => bound,
    };
    Some((
        Bound::Included(prefix.to_vec()),
        hi.map_or(Bound::Unbounded, Bound::Excluded),
    ))
}

/// Reads and writes inside a write transaction.
pub trait WriteTxn: ReadTxn {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError>;
}

/// A transactional key-value backend.
///
/// `write` runs `f` in a transaction that is committed (durably, for a persistent backend) when
/// `f` returns `Ok`, and leaves no trace when it returns `Err`. Write transactions are
/// serialized; a read transaction sees one committed state.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    fn read<R>(
        &self,
        f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;
    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;

    /// Takes or renews the lease `name` for `holder` for `ttl`: `true` when `holder` has it.
    /// A backend one process owns (redb holds its file locked; memory is the process's own)
    /// has a single holder: always `true`.
    fn lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Gives up the lease `name` if `holder` has it (nothing for a single-holder backend).
    fn release(&self, _name: &str, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Copies every table of `from` into `to`, which must hold nothing yet, in one write
/// transaction, then reads `to` back and compares the number of entries of each table.
/// Returns, per table, how many entries were copied.
#[cfg(any(feature = "redb", feature = "postgres"))]
pub(crate) fn copy_tables(
    from: &impl Backend,
    to: &impl Backend,
) -> Result<Vec<(&'static str, usize)>, StoreError> {
    let tables: Vec<(Table, Entries)> = from.read(|tx| {
        Table::ALL
            .iter()
            .map(|t| Ok((*t, tx.scan(*t, b"")?)))
            .collect::<Result<_, StoreError>>()
    })?;
    to.write(|tx| {
        for t in Table::ALL {
            if !tx.scan(t, b"")?.is_empty() {
                return Err(StoreError::backend(format!(
                    "the destination store is not empty (table {})",
                    t.name()
                )));
            }
        }
        for (t, entries) in &tables {
            for (k, v) in entries {
                tx.put(*t, k, v)?;
            }
        }
        Ok(())
    })?;
    let copied: Vec<(&'static str, usize)> =
        tables.iter().map(|(t, e)| (t.name(), e.len())).collect();
    let found: Vec<(&'static str, usize)> = to.read(|tx| {
        Table::ALL
            .iter()
            .map(|t| Ok((t.name(), tx.scan(*t, b"")?.len())))
            .collect::<Result<_, StoreError>>()
    })?;
    if found != copied {
        return Err(StoreError::backend(format!(
            "the copy does not hold what was copied: {copied:?} copied, {found:?} found"
        )));
    }
    Ok(copied)
}
