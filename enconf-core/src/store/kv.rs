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
}

impl Table {
    pub const ALL: [Table; 11] = [
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
        }
    }
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads inside a transaction.
pub trait ReadTxn {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Entries, StoreError>;
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
}
