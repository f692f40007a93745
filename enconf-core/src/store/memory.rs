//! The in-memory backend: ordered maps behind one lock, with an undo log for rollback.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::StoreError;
use super::kv::{Backend, Entries, ReadTxn, Table, WriteTxn};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Tables in memory. Lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    tables: Mutex<[Map; Table::ALL.len()]>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, [Map; Table::ALL.len()]>, StoreError> {
        // A poisoned lock means a transaction panicked half-way: refuse to serve that state.
        self.tables
            .lock()
            .map_err(|_| StoreError::backend("in-memory store poisoned by a panic"))
    }
}

struct MemTxn<'a> {
    tables: &'a mut [Map; Table::ALL.len()],
    /// Previous values of every key written, newest last.
    undo: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

fn get(tables: &[Map], table: Table, key: &[u8]) -> Option<Vec<u8>> {
    tables[table as usize].get(key).cloned()
}

fn scan(tables: &[Map], table: Table, prefix: &[u8], start: &[u8], limit: usize) -> Entries {
    tables[table as usize]
        .range(start.max(prefix).to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn scan_back(
    tables: &[Map],
    table: Table,
    prefix: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Entries {
    let Some(range) = super::kv::back_range(prefix, end) else {
        return Vec::new();
    };
    tables[table as usize]
        .range(range)
        .rev()
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

struct MemRead<'a>(&'a [Map]);

impl ReadTxn for MemRead<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(get(self.0, table, key))
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        Ok(scan(self.0, table, prefix, start, limit))
    }
    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        Ok(scan_back(self.0, table, prefix, end, limit))
    }
}

impl ReadTxn for MemTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(get(&self.tables[..], table, key))
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        Ok(scan(&self.tables[..], table, prefix, start, limit))
    }
    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        Ok(scan_back(&self.tables[..], table, prefix, end, limit))
    }
}

impl WriteTxn for MemTxn<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let old = self.tables[table as usize].insert(key.to_vec(), value.to_vec());
        self.undo.push((table, key.to_vec(), old));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let old = self.tables[table as usize].remove(key);
        self.undo.push((table, key.to_vec(), old));
        Ok(())
    }
}

impl MemTxn<'_> {
    fn roll_back(self) {
        for (table, key, old) in self.undo.into_iter().rev() {
            let map = &mut self.tables[table as usize];
            match old {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
    }
}

impl Backend for MemoryBackend {
    fn read<R>(
        &self,
        f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let guard = self.lock()?;
        f(&MemRead(&guard[..]))
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.lock()?;
        let mut txn = MemTxn {
            tables: &mut guard,
            undo: Vec::new(),
        };
        let result = f(&mut txn);
        if result.is_err() {
            txn.roll_back();
        }
        result
    }
}
