//! The redb backend: every table in one file, each write transaction committed durably
//! (redb's default `Durability::Immediate`: fsync before `commit` returns).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;
use super::kv::{Backend, Entries, ReadTxn, Table, WriteTxn};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

const fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// The memory redb may use to cache the file's pages. Its default (1 GiB) lets the cache grow
/// with the file, which takes about 850 bytes per account: with 100,000 accounts the cache was
/// most of the controller's memory. Pages read past it come from the kernel's page cache,
/// outside the process.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The embedded single-file backend.
#[derive(Debug)]
pub struct RedbBackend {
    db: Database,
}

impl RedbBackend {
    /// Opens the file, creating it (and every table) when missing. The file is made readable
    /// by its owner only (0600), whatever the directory's mode or the umask.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // Created empty with its mode before redb writes anything into it.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::backend(e)),
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(StoreError::backend)?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(StoreError::backend)?;
        // Tables must exist before a read transaction can open them.
        let txn = Write(db.begin_write().map_err(StoreError::backend)?);
        for table in Table::ALL {
            txn.table(table)?;
        }
        txn.0.commit().map_err(StoreError::backend)?;
        Ok(Self { db })
    }
}

fn get_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table
        .get(key)
        .map_err(StoreError::backend)?
        .map(|v| v.value().to_vec()))
}

fn scan_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    start: &[u8],
    limit: usize,
) -> Result<Entries, StoreError> {
    let mut out = Vec::new();
    for entry in table
        .range(start.max(prefix)..)
        .map_err(StoreError::backend)?
    {
        let (k, v) = entry.map_err(StoreError::backend)?;
        if !k.value().starts_with(prefix) || out.len() >= limit {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

fn scan_back_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Entries, StoreError> {
    let Some((lo, hi)) = super::kv::back_range(prefix, end) else {
        return Ok(Vec::new());
    };
    let range = table
        .range::<&[u8]>((
            lo.as_ref().map(Vec::as_slice),
            hi.as_ref().map(Vec::as_slice),
        ))
        .map_err(StoreError::backend)?;
    let mut out = Vec::new();
    for entry in range.rev().take(limit) {
        let (k, v) = entry.map_err(StoreError::backend)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

struct Read(redb::ReadTransaction);

impl ReadTxn for Read {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.0.open_table(def(table)).map_err(StoreError::backend)?;
        get_in(&t, key)
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let t = self.0.open_table(def(table)).map_err(StoreError::backend)?;
        scan_in(&t, prefix, start, limit)
    }
    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let t = self.0.open_table(def(table)).map_err(StoreError::backend)?;
        scan_back_in(&t, prefix, end, limit)
    }
}

struct Write(redb::WriteTransaction);

impl Write {
    fn table(
        &self,
        table: Table,
    ) -> Result<redb::Table<'_, &'static [u8], &'static [u8]>, StoreError> {
        self.0.open_table(def(table)).map_err(StoreError::backend)
    }
}

impl ReadTxn for Write {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get_in(&self.table(table)?, key)
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        scan_in(&self.table(table)?, prefix, start, limit)
    }
    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        scan_back_in(&self.table(table)?, prefix, end, limit)
    }
}

impl WriteTxn for Write {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.table(table)?
            .insert(key, value)
            .map_err(StoreError::backend)?;
        Ok(())
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.table(table)?
            .remove(key)
            .map_err(StoreError::backend)?;
        Ok(())
    }
}

impl Backend for RedbBackend {
    fn read<R>(
        &self,
        f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::backend)?;
        f(&Read(txn))
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::backend)?;
        let mut write = Write(txn);
        match f(&mut write) {
            Ok(value) => {
                write.0.commit().map_err(StoreError::backend)?;
                Ok(value)
            }
            Err(e) => {
                write.0.abort().map_err(StoreError::backend)?;
                Err(e)
            }
        }
    }
}
