//! Session stores on SQL databases: SQLite (rusqlite, bundled SQLite),
//! PostgreSQL and MySQL / MariaDB (sqlx on tokio), each operation one atomic
//! statement with `now` bound from the store's clock.
//!
//! | feature | store | driver |
//! |---|---|---|
//! | `sqlite` (default) | `SqliteStore` | rusqlite 0.41, `bundled` |
//! | `postgres` | `PgStore` | sqlx 0.8 `postgres`, tokio |
//! | `mysql` | `MySqlStore` | sqlx 0.8 `mysql`, tokio (MariaDB 10.2+, MySQL 5.7+) |
//!
//! sqlx is built without its `sqlite` feature: only one crate in a build may
//! link `sqlite3`, and here that is rusqlite.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use session_core::{SessionId, SessionStore, Timestamp};
//! use store_sql::SqliteStore;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::builder().path(dir.path().join("sessions.db")).open()?;
//! let id = SessionId::generate();
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! rt.block_on(async {
//!     let expires = session_core::Clock::now(store.clock()).saturating_add(std::time::Duration::from_secs(60));
//!     let v = store.create(&id, b"hello", expires).await?;
//!     assert_eq!(store.load(&id).await?.map(|r| r.version), Some(v));
//!     Ok::<_, session_core::StoreError>(())
//! })?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Schema
//!
//! One table (default `sessions`, configurable) and an index on `expires_at`;
//! [`schema_sql`] prints the exact DDL for teams that manage schema themselves,
//! and every store's `migrate()` runs it (`CREATE .. IF NOT EXISTS`, safe when
//! several processes migrate at once: SQLite takes an immediate transaction,
//! PostgreSQL an advisory lock, MySQL a `GET_LOCK`).
//!
//! | column | SQLite | PostgreSQL | MySQL | meaning |
//! |---|---|---|---|---|
//! | `id` | `BLOB` PK, `CHECK length = 32` | `BYTEA` PK, `CHECK octet_length = 32` | `BINARY(32)` PK | the raw 32-byte session id |
//! | `data` | `BLOB` | `BYTEA` | `LONGBLOB` | the value, byte-exact |
//! | `expires_at` | `INTEGER` (indexed) | `BIGINT` (indexed) | `BIGINT` (indexed) | unix ms; expired when `<= now` |
//! | `version` | `INTEGER` | `BIGINT` | `BIGINT` | 64-bit token, same bits as signed |
//!
//! # Statements and invariants
//!
//! The per-dialect SQL lives in one table (`dialect.rs`). Every write is a
//! single statement, so there is no check-then-write race:
//!
//! * `save(None)`: upsert — `INSERT .. ON CONFLICT (id) DO UPDATE` (SQLite,
//!   PostgreSQL), `INSERT .. ON DUPLICATE KEY UPDATE` (MySQL).
//! * `create`: the same insert with `DO UPDATE .. WHERE cur.expires_at <= now`,
//!   so a live row stays and zero rows affected means `AlreadyExists`. MySQL
//!   reports "matched" rows (sqlx sets `CLIENT_FOUND_ROWS`), which cannot tell
//!   "inserted" from "kept", so there `create` is an expired-row `DELETE`
//!   followed by a plain `INSERT` whose duplicate-key error is `AlreadyExists`;
//!   with `now` fixed per call the pair is still linearizable.
//! * `save(Some(v))`: `UPDATE .. WHERE id = ? AND version = ? AND expires_at > ?`;
//!   zero rows is `Conflict`. `touch` and `delete` likewise only touch live rows.
//! * `delete_expired`: batches of [`PURGE_BATCH`] rows found through the
//!   `expires_at` index (PostgreSQL/SQLite: keyed subquery re-checked on the
//!   outer row; MySQL: `DELETE .. ORDER BY expires_at LIMIT`), summing the exact
//!   counts; each batch is its own short transaction.
//! * `update`: a native transaction — SQLite `BEGIN IMMEDIATE`, PostgreSQL and
//!   MySQL `SELECT .. FOR UPDATE` — so the closure runs once per attempt.
//! * `now` is always a bound parameter from the store's [`Clock`](session_core::Clock),
//!   never the database's `NOW()`: tests move time, and hosts with skewed
//!   database clocks agree with the application.
//! * Versions are 64 random bits ([`Version::random`](session_core::Version::random)),
//!   so a version never repeats for an id across delete and re-create, even
//!   with several processes or hosts writing.
//! * Table names are validated strictly (`[A-Za-z_][A-Za-z0-9_]{0,62}`, with an
//!   optional `schema.` prefix on PostgreSQL; anything else is
//!   `StoreError::Config`) and quoted per dialect anyway.
//! * Rows that our writes never produce (a NULL, a text `expires_at`, a
//!   31-byte id, version 0) are `StoreError::Corrupt` for that id; nothing in a
//!   row can make the store panic.
//! * Values over the limit ([`DEFAULT_MAX_VALUE_SIZE`] = 1 MiB unless
//!   configured) are `TooLarge` before anything is sent. On MySQL the server's
//!   `max_allowed_packet` must exceed the limit plus a few hundred bytes
//!   (MariaDB's default 16 MiB does; old MySQL defaults of 1–4 MiB are why the
//!   default limit is 1 MiB).
//!
//! # Where work runs
//!
//! Measured with `examples/measure.rs` (release build, 20,000 random ids,
//! 1 KiB values, raw and store runs interleaved in chunks) on this project's
//! 2-core machine while other builds kept its load average at 10–15, so the
//! figures are ranges over three runs:
//!
//! | path | µs per operation |
//! |---|---|
//! | blocking two-thread round trip (std channel) | 7 – 21 |
//! | tokio `spawn_blocking` round trip | 15 – 31 |
//! | raw rusqlite cached primary-key read | 8 – 13 |
//! | `SqliteStore::load` | 0.96 – 1.26 × raw read |
//! | raw rusqlite upsert (WAL, `synchronous=NORMAL`) | 115 – 165 |
//! | `SqliteStore::save` | 0.66 – 0.78 × raw upsert |
//! | `SqliteStore::update` (one immediate transaction) | 49 – 128 |
//!
//! (The design notes quote ≈ 45 µs for a hand-off and ≈ 7 µs for a read on
//! an idle machine; the ratio is what matters.) So **SQLite work runs
//! inline** on the calling task: a hand-off would cost one to three times a
//! read, and a write in WAL mode with `synchronous=NORMAL` does no fsync in
//! the commit path, so there is nothing to batch. Reads use a pool of reader
//! connections (one per thread reading at once, statements cached per
//! connection); writes use the one writer connection behind a mutex, so
//! in-process writers queue on the mutex instead of polling in SQLite's busy
//! handler; other processes are waited for by the busy timeout (default 5 s),
//! so concurrent writers in several processes do not fail with "database is
//! locked". The one fsync left — the WAL checkpoint — runs on a background
//! thread (`wal_autocheckpoint=0` on our connections), which is why `save`
//! beats a raw loop that checkpoints inside its commits. The cost of inline:
//! a write occupies its executor thread for ≈ 0.1 ms, longer while another
//! process holds the write lock, and for an fsync per commit with the opt-in
//! `Synchronous::Full`.
//!
//! `stats` (one pass over the table) and `delete_expired` (batches of
//! [`PURGE_BATCH`] rows, the writer lock released between batches) also run
//! inline; on a large SQLite table call them from a maintenance task on a
//! blocking thread.
//!
//! **PostgreSQL and MySQL** work is network I/O awaited on sqlx's async pool:
//! nothing blocks a worker thread. sqlx prepares each statement once per
//! connection and caches it.
//!
//! # Errors
//!
//! Driver errors keep their cause as `source()`: lock and pool timeouts are
//! `StoreError::Busy`, undecodable values `Corrupt`, everything else `Backend`.
//! A lost server connection is an error for the operations that used it; the
//! pool reconnects on its own, so the store works again once the server is back.
#![forbid(unsafe_code)]

mod dialect;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use dialect::{DEFAULT_TABLE, Dialect, PURGE_BATCH, TableName, schema_sql};
#[cfg(feature = "mysql")]
pub use mysql::{MySqlStore, MySqlStoreBuilder};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreBuilder};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder, Synchronous};

use session_core::{StoreError, StoreResult};

/// Default value-size limit: 1 MiB (see the crate docs on MySQL's
/// `max_allowed_packet`).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;

/// `TooLarge` before anything is written, so the old value stays.
fn check_size(data: &[u8], limit: usize) -> StoreResult<()> {
    if data.len() > limit {
        Err(StoreError::TooLarge {
            size: data.len(),
            limit,
        })
    } else {
        Ok(())
    }
}
