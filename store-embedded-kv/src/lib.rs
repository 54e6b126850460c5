//! Transactional session storage on an embedded key-value engine:
//! [redb](https://docs.rs/redb) (feature `redb`, the default, pure Rust) or
//! LMDB through [heed](https://docs.rs/heed) (feature `lmdb`, multi-process).
//!
//! "Sessions are never lost before their expiration time": every acknowledged
//! write is committed by a real transaction (and fsynced, by default), and
//! `delete_expired` walks an expiry index instead of every record.
//!
//! ```
//! use session_core::{SessionId, SessionStore, Timestamp};
//! use store_embedded_kv::{Durability, EmbeddedStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = EmbeddedStore::builder()
//!     .path(dir.path().join("sessions"))
//!     .durability(Durability::Immediate)
//!     .open()?;
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! # rt.block_on(async {
//! let id = SessionId::generate();
//! let v1 = store.create(&id, b"hello", Timestamp::MAX).await?;
//! let v2 = store.save(&id, b"world", Timestamp::MAX, Some(v1)).await?;
//! assert_ne!(v1, v2);
//! # Ok::<(), session_core::StoreError>(())
//! # })?;
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//!
//! Three logical tables share one physical engine table (redb table `kv`, LMDB
//! database `kv`), told apart by a one-byte key prefix, so a commit rewrites one
//! B-tree path instead of three (with redb, 3 inserts into 3 tables cost 43 µs
//! per non-durable commit, into one table 27 µs, a single insert 25 µs). They
//! are written only inside write transactions, so they always agree:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `s` sessions | id (32 bytes) | `[format=1][expires_at i64 BE][version u64 BE][data]` |
//! | `x` expiry index | `[expires_at as sortable u64 BE][id]` (40 bytes) | data length (u64 BE) |
//! | `m` meta | `format`, `records`, `bytes` | schema format 1; record count; total data bytes |
//!
//! The expiry index holds exactly one entry per record (it is rewritten with the
//! record in the same transaction). A write touches only what changes: a save
//! that keeps the expiry and the data size (an app re-saving a session) leaves
//! the index entry and the meta counts as they are, so its commit copies one
//! B-tree path, the session's own; the meta counts are read and rewritten once
//! per transaction, and only if an op changed them. `delete_expired` reads the index from its
//! start up to `now` in transactions of at most [`PURGE_BATCH`] records, so its
//! cost grows with the number expired and it never holds the write lock long:
//! purging 1,000 expired among 200,000 sessions visits 1,000 index entries
//! (tested). `stats` is cheap the same way: live = `meta.records` − expired
//! index entries; live bytes = `meta.bytes` − the lengths stored in those entries.
//!
//! Versions are random 64-bit tokens, never a bare counter: keyed SipHash of a
//! per-handle counter under fresh OS randomness drawn at open
//! ([`session_core::Version::random`]), so unique per id across delete,
//! re-create, reopen, processes, and a rollback of non-durable commits after a
//! crash (a counter would repeat there), without a `getrandom` syscall per
//! write (≈ 0.3 µs).
//!
//! Every byte read back is validated: a value that does not decode is
//! `Corrupt` for that id only (`save(.., None)` or `delete` clears it); an engine
//! panic on a damaged file is caught and returned as `Corrupt`.
//!
//! # Where work runs
//!
//! Measured with `examples/bench.rs` (release; 100,000 ids, 1 KiB values; the
//! same run also times the raw engine doing the same work). The machine had
//! 2 cores at load average ≈ 9.7 and fsync took 2–8 ms, so figures are ranges
//! over several runs:
//!
//! * **Reads run inline** on the caller's thread: a cached `load` took
//!   2.2–7 µs with redb (raw redb read 2.6–3.9 µs) and 1.6–3.8 µs with LMDB
//!   (raw 1.3–2.5 µs), well below a thread handoff (≈ 45 µs). A cold read may
//!   wait on the disk; that is the price of not paying a handoff on every hit.
//! * **Durable writes go to the writer thread**, which is the group commit: one
//!   queue; each batch of queued ops (up to [`DEFAULT_MAX_BATCH`]) is applied in
//!   one transaction with one fsync, and each caller is answered only after that
//!   commit, with its own result (`AlreadyExists`, `Conflict`, `TooLarge`, ...).
//!   Durable creates/s from 1 to 32 concurrent writers grew ×6–26 (redb) and
//!   ×15–29 (LMDB); to 64 writers ×9–33 and ×12–37.
//! * **Non-durable writes** ([`Durability::Eventual`]) run inline when no other
//!   write of this process is in progress (a non-durable commit costs 10–20
//!   µs, less than the handoff) and queue for the writer thread otherwise.
//!   Overwriting a session with the same expiry and size (median of 100,000;
//!   raw = one insert + commit, never flushed; 4 runs, each against raw in the
//!   same run): redb 19.2–20.4 µs vs raw 14.7–17.2 µs (×1.19–1.31; ×2.0–2.3
//!   before the index/meta skip), LMDB 8.6–10.6 µs vs raw 7.6–7.8 µs
//!   (×1.10–1.38, the last at load average 6; ×1.8–1.9 before). What redb
//!   still pays over raw is the 1 s flush: with flushing off, the store's
//!   median equalled raw's (17.3 vs 17.4 µs), presumably because a durable
//!   commit makes recently written pages copy-on-write again. Saving a new id
//!   also writes its index entry and the meta counts: 43–56 µs mean with redb
//!   (raw insert 16–25 µs; 36 µs with flushing off), 18–26 µs with LMDB (raw
//!   11 µs), flushes included.
//! * `update` always goes to the writer thread: the writer holds the transaction
//!   open, hands the live record to the caller's task, which runs the closure
//!   once, and writes the answer (native atomic update; no retry loop).
//!
//! Dropping the store closes the queue, waits for the writer thread to commit
//! what was queued (and, in `Eventual` mode, to fsync), and closes the file
//! before `drop` returns; `drop` may therefore block for one commit.
//!
//! # Engines and processes
//!
//! * **redb** locks the file for one process by default: a second opener
//!   (another process or handle) gets `StoreError::Busy` whose source is
//!   [`AlreadyOpen`]. After a crash, redb verifies and repairs the file on the
//!   next open. With [`EmbeddedStoreBuilder::redb_multi_process`] every process
//!   opens it in redb's `ConcurrencyMode::MultiWriter` and they share it
//!   (durable commits only); this mode passes the suite's multi-process and
//!   crash checks.
//! * **LMDB** is shared by any number of processes (LMDB's robust cross-process
//!   write mutex; reads are MVCC snapshots). The map size
//!   ([`EmbeddedStoreBuilder::lmdb_map_size`], default 1 GiB of address space)
//!   caps the database: a full map is a `Backend` error naming the option, never a
//!   crash. LMDB keeps no checksums: a file damaged by something other than LMDB
//!   (or by an OS crash under `Eventual`) can crash the process. Nothing but LMDB
//!   may write, truncate or replace `data.mdb` / `lock.mdb` while a store is open,
//!   and the directory must be on a local file system. Writers in different
//!   processes take turns on LMDB's write lock, so an inline `Eventual` write
//!   may wait for another process's commit.
//!
//! Files are created owner-only (directory 0700, files 0600).
#![cfg_attr(not(feature = "lmdb"), forbid(unsafe_code))]
// LMDB (heed) needs `unsafe` to open its memory map; those calls live in
// `lmdb_engine.rs`, each with a SAFETY note. Without `lmdb` there is none.
#![cfg_attr(feature = "lmdb", deny(unsafe_code))]

mod codec;
mod engine;
#[cfg(feature = "lmdb")]
mod lmdb_engine;
#[cfg(feature = "redb")]
mod redb_engine;
mod store;
mod writer;

#[cfg(not(any(feature = "redb", feature = "lmdb")))]
compile_error!("store-embedded-kv needs at least one engine feature: `redb` or `lmdb`");

pub use store::{
    AlreadyOpen, DEFAULT_FLUSH_INTERVAL, DEFAULT_LMDB_MAP_SIZE, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_VALUE_SIZE, DEFAULT_REDB_CACHE_SIZE, Durability, EmbeddedStore,
    EmbeddedStoreBuilder, Engine, PURGE_BATCH,
};
