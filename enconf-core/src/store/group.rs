//! Group commit: the writes that arrive while one commit is under way are run together in the
//! next transaction and made durable by one commit, instead of one commit (one fsync, for redb)
//! each.
//!
//! - Writes keep their order and their isolation: each runs alone on the transaction, after
//!   the writes queued before it, and sees what they wrote.
//! - A write that fails (or panics) leaves no trace: what it wrote is undone in the
//!   transaction before the next write runs, and it gets its own error. The others commit.
//! - No write is answered before its group's commit has returned: a write answered `Ok` is as
//!   durable as the backend makes a commit. When the commit fails, every write of the group
//!   gets the error and none of them happened.
//!
//! One writer thread (a tokio blocking thread, started when writes wait and none is running)
//! takes the queue, up to [`MAX_GROUP`] writes at a time, until it is empty.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::StoreError;
use super::kv::{Backend, Entries, ReadTxn, Table, WriteTxn};
use crate::secret::Sealer;

/// The most writes one commit takes.
pub const MAX_GROUP: usize = 256;

/// A write waiting for its group.
trait Pending: Send {
    /// Runs the write on `tx`: `false` when it failed (its writes must then be undone).
    fn run(&mut self, tx: &mut dyn WriteTxn, sealer: &Sealer) -> bool;
    /// Answers the caller, once the group's commit is known.
    fn finish(self: Box<Self>, committed: Result<(), &StoreError>);
}

struct Typed<R, F> {
    f: Option<F>,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Pending for Typed<R, F>
where
    R: Send,
    F: FnOnce(&mut dyn WriteTxn, &Sealer) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, tx: &mut dyn WriteTxn, sealer: &Sealer) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let out = f(tx, sealer);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), &StoreError>) {
        let answer = match (self.out, committed) {
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) => Err(copy_of(e)),
            (Some(Err(e)), _) => Err(e),
            // Taken and never finished: it panicked.
            (None, _) if self.f.is_none() => Err(StoreError::backend(
                "the write panicked; nothing of it was kept",
            )),
            // Never run: the transaction could not start.
            (None, Err(e)) => Err(copy_of(e)),
            (None, Ok(())) => Err(StoreError::backend("the write did not run")),
        };
        // The caller may have gone (its request cancelled): the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// The commit's error, for each write of the group.
fn copy_of(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        other => StoreError::backend(other.to_string()),
    }
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Box<dyn Pending>>,
    /// A writer thread is taking the queue.
    draining: bool,
}

/// The queue of writes of one store and its writer.
#[derive(Default)]
pub(super) struct Committer {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is whole between any two statements: a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in the next group, and answers once that group is committed.
    pub(super) async fn write<B, R, F>(
        self: &Arc<Self>,
        backend: &Arc<B>,
        sealer: &Arc<Sealer>,
        f: F,
    ) -> Result<R, StoreError>
    where
        B: Backend,
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTxn, &Sealer) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push(Box::new(Typed {
                f: Some(f),
                out: None,
                reply,
            }));
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            let (me, backend, sealer) = (
                Arc::clone(self),
                Arc::downgrade(backend),
                Arc::clone(sealer),
            );
            tokio::task::spawn_blocking(move || me.drain(&backend, &sealer));
        }
        answer
            .await
            .map_err(|_| StoreError::backend("the store's writer stopped before the write ran"))?
    }

    /// Commits groups until no write waits. The writer holds the backend only while it
    /// commits: once a caller has its answer, dropping the last handle of the store closes
    /// the backend (a redb file can be opened again at once). A write that waits has a
    /// caller holding the store, so the backend is there for it.
    fn drain<B: Backend>(&self, backend: &std::sync::Weak<B>, sealer: &Sealer) {
        loop {
            let group: Vec<Box<dyn Pending>> = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.draining = false;
                    return;
                }
                let n = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..n).collect()
            };
            let Some(strong) = backend.upgrade() else {
                // Dropping the group answers its callers that the writer stopped.
                continue;
            };
            // A panic outside the writes (in the backend) drops the group: its callers get
            // an error, and the writer goes on with the queue.
            let done = catch_unwind(AssertUnwindSafe(|| commit(&*strong, sealer, group)));
            drop(strong);
            match done {
                Ok((group, result)) => {
                    for write in group {
                        write.finish(result.as_ref().map(|_| ()));
                    }
                }
                Err(_) => tracing::error!("a store commit panicked; its writes were not made"),
            }
        }
    }
}

/// Runs `group` in one transaction; the group, to be answered, and the commit's outcome.
type Committed = (Vec<Box<dyn Pending>>, Result<(), StoreError>);

fn commit(backend: &impl Backend, sealer: &Sealer, mut group: Vec<Box<dyn Pending>>) -> Committed {
    let result = match group.as_mut_slice() {
        // Alone, a failed write aborts the transaction: nothing to undo.
        [one] => backend.write(
            |tx| match catch_unwind(AssertUnwindSafe(|| one.run(tx, sealer))) {
                Ok(true) => Ok(()),
                _ => Err(StoreError::backend("the write failed")),
            },
        ),
        many => backend.write(|tx| {
            for write in many.iter_mut() {
                let mut undo = Undo {
                    tx,
                    log: Vec::new(),
                };
                let ok = catch_unwind(AssertUnwindSafe(|| write.run(&mut undo, sealer)));
                if !matches!(ok, Ok(true)) {
                    undo.roll_back()?;
                }
            }
            Ok(())
        }),
    };
    (group, result)
}

/// A write transaction that remembers what each key held before, so that one write of a
/// group can be taken back.
struct Undo<'a> {
    tx: &'a mut dyn WriteTxn,
    /// Each key written and its value before, oldest first.
    log: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl Undo<'_> {
    fn remember(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let before = self.tx.get(table, key)?;
        self.log.push((table, key.to_vec(), before));
        Ok(())
    }

    fn roll_back(self) -> Result<(), StoreError> {
        for (table, key, before) in self.log.into_iter().rev() {
            match before {
                Some(value) => self.tx.put(table, &key, &value)?,
                None => self.tx.delete(table, &key)?,
            }
        }
        Ok(())
    }
}

impl ReadTxn for Undo<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tx.get(table, key)
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.tx.scan_from(table, prefix, start, limit)
    }
    fn scan_back(
        &self,
        table: Table,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.tx.scan_back(table, prefix, end, limit)
    }
}

impl WriteTxn for Undo<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.remember(table, key)?;
        self.tx.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.remember(table, key)?;
        self.tx.delete(table, key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::secret::SecretKey;
    use crate::store::MemoryBackend;

    /// The memory backend, counting commits, with a gate that holds writes back.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryBackend,
        commits: AtomicUsize,
        gate: Mutex<()>,
    }

    impl Backend for Counting {
        fn read<R>(
            &self,
            f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError>,
        ) -> Result<R, StoreError> {
            self.inner.read(f)
        }
        fn write<R>(
            &self,
            f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError>,
        ) -> Result<R, StoreError> {
            let _open = self.gate.lock().unwrap();
            let out = self.inner.write(f);
            if out.is_ok() {
                self.commits.fetch_add(1, Ordering::SeqCst);
            }
            out
        }
    }

    fn key(i: usize) -> Vec<u8> {
        format!("k{i:04}").into_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::await_holding_lock)]
    async fn writes_are_grouped_and_a_failed_one_leaves_no_trace() {
        let backend = Arc::new(Counting::default());
        let sealer = Arc::new(Sealer::new(&SecretKey::zero()));
        let committer = Arc::new(Committer::default());
        let gate = backend.gate.lock().unwrap();
        let mut writes = Vec::new();
        // The gate is held while the writes queue (a blocking lock: the writer thread waits
        // on it, not this task).
        for i in 0..300 {
            let (c, b, s) = (
                Arc::clone(&committer),
                Arc::clone(&backend),
                Arc::clone(&sealer),
            );
            writes.push(tokio::spawn(async move {
                c.write(&b, &s, move |tx, _| {
                    tx.put(Table::Settings, &key(i), b"kept")?;
                    match i % 3 {
                        0 => Ok(i),
                        1 => {
                            // Overwrites and deletes what others wrote, then fails.
                            tx.put(Table::Settings, b"shared", b"failed")?;
                            tx.delete(Table::Settings, &key(i - 1))?;
                            Err(StoreError::Duplicate {
                                field: "username".into(),
                                value: i.to_string(),
                            })
                        }
                        _ if i == 299 => panic!("a write that panics"),
                        _ => Ok(i),
                    }
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(gate);
        for (i, w) in writes.into_iter().enumerate() {
            let out = w.await.unwrap();
            match (i % 3, i) {
                (1, _) => assert!(
                    matches!(out, Err(StoreError::Duplicate { ref value, .. }) if *value == i.to_string()),
                    "{i}: {out:?}"
                ),
                (_, 299) => assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}"),
                _ => assert_eq!(out.unwrap(), i),
            }
        }
        let kept = backend
            .read(|tx| tx.scan(Table::Settings, b""))
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>();
        let expected = (0..300)
            .filter(|i| i % 3 != 1 && *i != 299)
            .map(|i| String::from_utf8(key(i)).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(kept, expected);
        // 300 writes queued behind one: a few commits, not 300.
        let commits = backend.commits.load(Ordering::SeqCst);
        assert!(commits <= 4, "{commits} commits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_write_of_its_group() {
        #[derive(Debug, Default)]
        struct Failing(MemoryBackend);
        impl Backend for Failing {
            fn read<R>(
                &self,
                f: impl FnOnce(&dyn ReadTxn) -> Result<R, StoreError>,
            ) -> Result<R, StoreError> {
                self.0.read(f)
            }
            fn write<R>(
                &self,
                f: impl FnOnce(&mut dyn WriteTxn) -> Result<R, StoreError>,
            ) -> Result<R, StoreError> {
                // The writes run; the commit then fails, and nothing is kept.
                self.0.write(|tx| {
                    f(tx)?;
                    Err(StoreError::Unavailable("the disk is gone".into()))
                })
            }
        }
        let backend = Arc::new(Failing::default());
        let sealer = Arc::new(Sealer::new(&SecretKey::zero()));
        let committer = Arc::new(Committer::default());
        let out = committer
            .write(&backend, &sealer, |tx, _| {
                tx.put(Table::Settings, b"a", b"1")?;
                Ok(())
            })
            .await;
        assert!(matches!(out, Err(StoreError::Unavailable(ref why)) if why == "the disk is gone"));
        assert!(
            backend
                .read(|tx| tx.scan(Table::Settings, b""))
                .unwrap()
                .is_empty()
        );
    }
}
