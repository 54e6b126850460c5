//! The writer thread: group commit.
//!
//! Every write is an [`Op`] on one queue. The thread takes whatever is queued
//! (up to `max_batch` ops), applies each op in turn inside **one** write
//! transaction, commits once (one fsync), and only then sends each caller its
//! own result. While a commit waits on the disk, new ops queue up and form the
//! next batch, so durable throughput grows with the number of writers.
//!
//! Each op's checks (`AlreadyExists`, `Conflict`, ...) happen before it writes
//! anything, so a refused op leaves no trace in the shared transaction. If the
//! commit itself fails, nothing of the batch is written and every caller gets
//! the error.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use session_core::{
    Clock, Record, SessionId, StoreError, StoreResult, Timestamp, Update, Updated, Version,
};
use tokio::sync::oneshot;

use crate::codec::{self, Stored};
use crate::engine::{Engine, KvWrite, META_BYTES, META_RECORDS, Table};

/// How long the writer waits for an `update` caller's closure before giving up
/// on that op (the batch holds the write lock meanwhile).
const UPDATE_DECISION_TIMEOUT: Duration = Duration::from_secs(5);

/// One write request.
pub(crate) enum Op {
    Create {
        id: SessionId,
        data: Vec<u8>,
        expires_at: Timestamp,
    },
    Save {
        id: SessionId,
        data: Vec<u8>,
        expires_at: Timestamp,
        expected: Option<Version>,
    },
    Touch {
        id: SessionId,
        expires_at: Timestamp,
    },
    Delete {
        id: SessionId,
    },
    /// Removes up to `limit` expired records.
    Purge {
        limit: usize,
    },
    /// Native update: the writer sends the live record to the caller, which
    /// runs its closure and answers with a decision, all inside the transaction.
    Update {
        id: SessionId,
        current: Option<oneshot::Sender<Option<Record>>>,
        decision: Receiver<Update>,
    },
}

/// What a successful op returns.
#[derive(Debug)]
pub(crate) enum Reply {
    Version(Version),
    Bool(bool),
    /// `(removed, index entries visited)`.
    Purged(u64, u64),
    Updated(Updated),
}

/// An op with its reply channel.
pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<StoreResult<Reply>>,
}

/// Counters shown in `stats().details`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) ops: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) purge_visited: AtomicU64,
    pub(crate) syncs: AtomicU64,
}

/// What the store and its writer thread share.
pub(crate) struct Core {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) durable: bool,
    pub(crate) max_value_size: usize,
    pub(crate) counters: Counters,
    /// Held for every write transaction this process starts, so an inline
    /// writer never blocks on the writer thread: it uses `try_lock` and queues
    /// its op when the lock is taken.
    write_lock: Mutex<()>,
    /// Non-durable commits are waiting for a flush.
    dirty: AtomicBool,
    versions: Versions,
}

/// Version tokens: keyed SipHash of `(seed, counter)`, where the seed comes
/// from the OS's randomness (`Version::random`) when the store opens. As
/// unpredictable and as unlikely to repeat as `Version::random` itself (fresh
/// randomness per open, per process — even a forked one — and after a crash),
/// without a `getrandom` syscall per write (that call took ≈ 0.3 µs,
/// measured: 3% of a non-durable LMDB save).
pub(crate) struct Versions {
    key: RandomState,
    seed: u64,
    next: AtomicU64,
}

impl Versions {
    pub(crate) fn new() -> Self {
        Self {
            key: RandomState::new(),
            seed: Version::random(None).as_raw(),
            next: AtomicU64::new(0),
        }
    }

    /// A token that is neither 0 nor `previous`.
    pub(crate) fn next(&self, previous: Option<Version>) -> Version {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let v = Version::from_raw(self.key.hash_one((self.seed, n)));
            if v.as_raw() != 0 && Some(v) != previous {
                return v;
            }
        }
    }
}

/// The writer thread's settings.
pub(crate) struct Writer {
    pub(crate) core: Arc<Core>,
    pub(crate) max_batch: usize,
    pub(crate) flush_interval: Duration,
}

/// A commit failure shared by every op of the failed batch; the cause stays
/// reachable through `source()`.
#[derive(Debug)]
struct BatchFailed(Arc<StoreError>);

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the group commit holding this write failed: {}", self.0)
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl Core {
    pub(crate) fn new(
        engine: Arc<dyn Engine>,
        clock: Arc<dyn Clock>,
        durable: bool,
        max_value_size: usize,
    ) -> Self {
        Self {
            engine,
            clock,
            durable,
            max_value_size,
            counters: Counters::default(),
            write_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
            versions: Versions::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a poisoned lock protects nothing broken.
        self.write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `Eventual` mode: commits `op` on the calling thread when no other write
    /// of this process is running (a non-durable commit takes microseconds,
    /// less than the thread handoff). Gives the op back otherwise.
    pub(crate) fn try_inline(&self, mut op: Op) -> Result<StoreResult<Reply>, Op> {
        if self.durable || matches!(op, Op::Update { .. }) {
            return Err(op);
        }
        let _guard = match self.write_lock.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(op),
        };
        let mut ops = [&mut op];
        Ok(match self.commit(&mut ops) {
            Ok(mut results) => results
                .pop()
                .unwrap_or_else(|| Err(StoreError::backend("no result"))),
            Err(e) => Err(e),
        })
    }

    /// Applies `ops` in one transaction and commits it; per-op results, or the
    /// commit's failure (then nothing was written).
    fn commit(&self, ops: &mut [&mut Op]) -> StoreResult<Vec<StoreResult<Reply>>> {
        let mut results: Vec<StoreResult<Reply>> = Vec::with_capacity(ops.len());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.engine.write(self.durable, &mut |tx| {
                results.clear();
                let mut totals = Totals::default();
                for op in ops.iter_mut() {
                    let r = self.apply(tx, &mut totals, op);
                    // An engine failure inside an op may have left it half
                    // done: abort the whole transaction.
                    if let Err(e @ (StoreError::Io(_) | StoreError::Backend(_))) = r {
                        return Err(e);
                    }
                    results.push(r);
                }
                totals.write_if_changed(tx)?;
                Ok(())
            })
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::backend(
                "the storage engine panicked during a write",
            ))
        });
        outcome?;
        let n = ops.len() as u64;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.ops.fetch_add(n, Ordering::Relaxed);
        self.counters.largest_batch.fetch_max(n, Ordering::Relaxed);
        if !self.durable {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(results)
    }

    /// Makes earlier non-durable commits durable.
    fn flush(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let _guard = self.lock();
        // A failed flush is retried at the next interval.
        match catch_unwind(AssertUnwindSafe(|| self.engine.sync())) {
            Ok(Ok(())) => {
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.dirty.store(true, Ordering::Release),
        }
    }
}

impl Writer {
    /// The thread body: runs until every sender is gone, then makes pending
    /// non-durable commits durable and returns (which lets the engine close).
    pub(crate) fn run(self, rx: Receiver<Pending>) {
        let core = &*self.core;
        let mut last_flush = Instant::now();
        loop {
            let first = if core.durable {
                match rx.recv() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            } else {
                // Eventual: wake up at least every `flush_interval` to flush.
                let wait = self.flush_interval.saturating_sub(last_flush.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(p) => p,
                    Err(RecvTimeoutError::Timeout) => {
                        core.flush();
                        last_flush = Instant::now();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
            if !core.durable && last_flush.elapsed() >= self.flush_interval {
                core.flush();
                last_flush = Instant::now();
            }
        }
        core.flush();
    }

    fn run_batch(&self, mut batch: Vec<Pending>) {
        let outcome = {
            let _guard = self.core.lock();
            let mut ops: Vec<&mut Op> = batch.iter_mut().map(|p| &mut p.op).collect();
            self.core.commit(&mut ops)
        };
        match outcome {
            Ok(results) => {
                for (p, r) in batch.into_iter().zip(results) {
                    let _ = p.reply.send(r);
                }
            }
            Err(e) => {
                let shared = Arc::new(e);
                for p in batch {
                    let _ = p
                        .reply
                        .send(Err(StoreError::backend(BatchFailed(shared.clone()))));
                }
            }
        }
    }
}

impl Core {
    fn apply(&self, tx: &mut dyn KvWrite, totals: &mut Totals, op: &mut Op) -> StoreResult<Reply> {
        let now = self.clock.now();
        match op {
            Op::Create {
                id,
                data,
                expires_at,
            } => {
                let old = read(tx, id)?;
                if old.as_ref().is_some_and(|s| s.is_live(now)) {
                    return Err(StoreError::AlreadyExists);
                }
                let v = put(
                    tx,
                    totals,
                    &self.versions,
                    id,
                    old.as_ref(),
                    data,
                    *expires_at,
                )?;
                Ok(Reply::Version(v))
            }
            Op::Save {
                id,
                data,
                expires_at,
                expected,
            } => {
                let old = match expected {
                    Some(want) => {
                        let old = read(tx, id)?;
                        if old.as_ref().filter(|s| s.is_live(now)).map(|s| s.version) != Some(*want)
                        {
                            return Err(StoreError::Conflict);
                        }
                        old
                    }
                    // An upsert may replace a corrupt value: that is how an
                    // operator or the app recovers the id.
                    None => match read(tx, id) {
                        Err(StoreError::Corrupt(_)) => {
                            remove(tx, totals, id, None)?;
                            None
                        }
                        other => other?,
                    },
                };
                let v = put(
                    tx,
                    totals,
                    &self.versions,
                    id,
                    old.as_ref(),
                    data,
                    *expires_at,
                )?;
                Ok(Reply::Version(v))
            }
            Op::Touch { id, expires_at } => {
                let Some(old) = read(tx, id)?.filter(|s| s.is_live(now)) else {
                    return Ok(Reply::Bool(false));
                };
                tx.put(
                    Table::Sessions,
                    id.as_bytes(),
                    &codec::encode_record(*expires_at, old.version, &old.data),
                )?;
                // Same expiry: the index entry (key and length) is unchanged.
                if old.expires_at != *expires_at {
                    tx.delete(Table::Expiry, &codec::index_key(old.expires_at, id))?;
                    tx.put(
                        Table::Expiry,
                        &codec::index_key(*expires_at, id),
                        &codec::encode_len(old.data.len()),
                    )?;
                }
                Ok(Reply::Bool(true))
            }
            Op::Delete { id } => match read(tx, id) {
                Ok(None) => Ok(Reply::Bool(false)),
                Ok(Some(old)) => {
                    remove(tx, totals, id, Some(&old))?;
                    Ok(Reply::Bool(old.is_live(now)))
                }
                // Deleting is how a corrupt value gets cleared; its index
                // entry is left to delete_expired, which skips stale entries.
                Err(StoreError::Corrupt(_)) => {
                    remove(tx, totals, id, None)?;
                    Ok(Reply::Bool(true))
                }
                Err(e) => Err(e),
            },
            Op::Purge { limit } => {
                let keys = tx.keys_up_to(Table::Expiry, &codec::index_upper(now), *limit)?;
                let visited = keys.len() as u64;
                let mut removed = 0;
                for key in keys {
                    tx.delete(Table::Expiry, &key)?;
                    let Ok((at, id)) = codec::parse_index_key(&key) else {
                        continue;
                    };
                    match read(tx, &id) {
                        // Only the record this entry indexes; a stale entry
                        // (record rewritten or gone) is just dropped.
                        Ok(Some(s)) if s.expires_at == at && !s.is_live(now) => {
                            remove(tx, totals, &id, None)?;
                            let c = totals.counts(tx)?;
                            c.bytes = c.bytes.saturating_sub(s.data.len() as u64);
                            removed += 1;
                        }
                        Ok(_) => {}
                        Err(StoreError::Corrupt(_)) => {
                            remove(tx, totals, &id, None)?;
                            removed += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.counters
                    .purge_visited
                    .fetch_add(visited, Ordering::Relaxed);
                Ok(Reply::Purged(removed, visited))
            }
            Op::Update {
                id,
                current,
                decision,
            } => {
                let old = read(tx, id)?;
                let live = old
                    .clone()
                    .filter(|s| s.is_live(now))
                    .map(Stored::into_record);
                let Some(tx_current) = current.take() else {
                    return Err(StoreError::backend("update op applied twice"));
                };
                if tx_current.send(live).is_err() {
                    // The caller went away: nothing to decide.
                    return Ok(Reply::Updated(Updated::Unchanged));
                }
                match decision.recv_timeout(UPDATE_DECISION_TIMEOUT) {
                    Ok(Update::Keep) | Err(RecvTimeoutError::Disconnected) => {
                        Ok(Reply::Updated(Updated::Unchanged))
                    }
                    Ok(Update::Put { data, expires_at }) => {
                        if data.len() > self.max_value_size {
                            return Err(StoreError::TooLarge {
                                size: data.len(),
                                limit: self.max_value_size,
                            });
                        }
                        let v = put(
                            tx,
                            totals,
                            &self.versions,
                            id,
                            old.as_ref(),
                            &data,
                            expires_at,
                        )?;
                        Ok(Reply::Updated(Updated::Written(v)))
                    }
                    Err(RecvTimeoutError::Timeout) => Err(StoreError::busy(
                        "update closure did not answer within 5 s; nothing written",
                    )),
                }
            }
        }
    }
}

fn read(tx: &mut dyn KvWrite, id: &SessionId) -> StoreResult<Option<Stored>> {
    tx.get(Table::Sessions, id.as_bytes())?
        .map(|v| codec::decode_record(&v))
        .transpose()
}

/// Store-wide figures kept in the meta table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    bytes: u64,
    records: u64,
}

impl Counts {
    fn read(tx: &mut dyn KvWrite) -> StoreResult<Self> {
        let get = |tx: &mut dyn KvWrite, k| -> StoreResult<u64> {
            Ok(codec::decode_u64(
                &tx.get(Table::Meta, k)?.unwrap_or_default(),
            ))
        };
        Ok(Self {
            bytes: get(tx, META_BYTES)?,
            records: get(tx, META_RECORDS)?,
        })
    }
}

/// The meta counts of one transaction: read on the first op that changes
/// them and written once at its end, only if they changed. An overwrite of
/// the same size changes nothing, so it neither reads nor rewrites the meta
/// entries (a rewrite is one more B-tree path copied per commit).
#[derive(Debug, Default)]
struct Totals {
    start: Option<Counts>,
    now: Option<Counts>,
}

impl Totals {
    fn counts(&mut self, tx: &mut dyn KvWrite) -> StoreResult<&mut Counts> {
        let start = match self.start {
            Some(c) => c,
            None => {
                let c = Counts::read(tx)?;
                self.start = Some(c);
                c
            }
        };
        Ok(self.now.get_or_insert(start))
    }

    fn write_if_changed(&self, tx: &mut dyn KvWrite) -> StoreResult<()> {
        match (self.start, self.now) {
            (Some(start), Some(now)) if start != now => {
                tx.put(Table::Meta, META_BYTES, &now.bytes.to_be_bytes())?;
                tx.put(Table::Meta, META_RECORDS, &now.records.to_be_bytes())
            }
            _ => Ok(()),
        }
    }
}

/// Writes a record with a fresh version, replacing `old` and its index entry.
///
/// The index entry is rewritten only when its key (`expires_at`) or value
/// (data length) changes: a `save` that keeps both (the common overwrite)
/// then touches only the session's own B-tree leaf.
fn put(
    tx: &mut dyn KvWrite,
    totals: &mut Totals,
    versions: &Versions,
    id: &SessionId,
    old: Option<&Stored>,
    data: &[u8],
    expires_at: Timestamp,
) -> StoreResult<Version> {
    // Keyed-random 64-bit tokens: unique per id across delete, re-create,
    // reopen, processes, and even a rollback of non-durable commits after a
    // crash (a plain counter would repeat there).
    let version = versions.next(old.map(|s| s.version));
    let index_same = match old {
        Some(old) => {
            if old.expires_at != expires_at {
                tx.delete(Table::Expiry, &codec::index_key(old.expires_at, id))?;
            }
            let old_len = old.data.len();
            if old_len != data.len() {
                let c = totals.counts(tx)?;
                c.bytes = c
                    .bytes
                    .saturating_sub(old_len as u64)
                    .saturating_add(data.len() as u64);
            }
            old.expires_at == expires_at && old_len == data.len()
        }
        None => {
            let c = totals.counts(tx)?;
            c.records = c.records.saturating_add(1);
            c.bytes = c.bytes.saturating_add(data.len() as u64);
            false
        }
    };
    tx.put(
        Table::Sessions,
        id.as_bytes(),
        &codec::encode_record(expires_at, version, data),
    )?;
    if !index_same {
        // Same key: the insert replaces the length in place.
        tx.put(
            Table::Expiry,
            &codec::index_key(expires_at, id),
            &codec::encode_len(data.len()),
        )?;
    }
    Ok(version)
}

/// Removes the session entry (and `old`'s index entry and bytes, when known).
fn remove(
    tx: &mut dyn KvWrite,
    totals: &mut Totals,
    id: &SessionId,
    old: Option<&Stored>,
) -> StoreResult<()> {
    if tx.delete(Table::Sessions, id.as_bytes())? {
        let c = totals.counts(tx)?;
        c.records = c.records.saturating_sub(1);
    }
    if let Some(old) = old {
        tx.delete(Table::Expiry, &codec::index_key(old.expires_at, id))?;
        let c = totals.counts(tx)?;
        c.bytes = c.bytes.saturating_sub(old.data.len() as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_nonzero_distinct_and_per_handle() {
        let (a, b) = (Versions::new(), Versions::new());
        let mut seen = std::collections::HashSet::new();
        let mut prev = None;
        for _ in 0..10_000 {
            let v = a.next(prev);
            assert_ne!(v.as_raw(), 0);
            assert_ne!(Some(v), prev);
            assert!(seen.insert(v.as_raw()), "repeated version");
            prev = Some(v);
        }
        // Another handle (a reopen) draws another key: a different sequence.
        let other: Vec<u64> = (0..100).map(|_| b.next(None).as_raw()).collect();
        assert!(other.iter().all(|v| !seen.contains(v)));
    }
}
