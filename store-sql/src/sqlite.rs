//! The SQLite store: rusqlite with the bundled SQLite, WAL journal, a busy
//! timeout, one writer connection and a pool of reader connections.
//!
//! Work runs inline on the calling task: in WAL mode with
//! `synchronous=NORMAL` a commit appends to the WAL without an fsync, so every
//! operation finishes in microseconds — less than the ≈ 45 µs a hand-off to
//! another thread costs (see the crate docs for the figures). In-process writers
//! take turns on the writer connection's mutex, so they never spin in SQLite's
//! busy handler against each other; other processes are waited for by the busy
//! timeout. The one fsync that `synchronous=NORMAL` still does — the WAL
//! checkpoint — runs on a background thread, never inside a caller's commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use session_core::{
    Clock, Record, SessionId, SessionStore, SharedClock, StoreError, StoreResult, StoreStats,
    SystemClock, Timestamp, Update, UpdateFn, Updated, Version, async_trait,
};

use crate::dialect::{
    DEFAULT_TABLE, Dialect, PURGE_BATCH, Statements, TableName, ddl, id_from_sql, version_from_sql,
    version_to_sql,
};
use crate::{DEFAULT_MAX_VALUE_SIZE, check_size};

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL` (default): a commit survives a crash of the process (kill -9);
    /// the last commits before a power loss may be lost. No fsync per commit.
    #[default]
    Normal,
    /// `FULL`: every commit is fsync'ed before it is acknowledged and survives
    /// a power loss. Each write then blocks the calling thread for an fsync.
    Full,
}

/// Builds a [`SqliteStore`].
#[derive(Debug)]
#[must_use]
pub struct SqliteStoreBuilder {
    path: Option<PathBuf>,
    connection: Option<Connection>,
    table: String,
    clock: SharedClock,
    max_value_size: usize,
    busy_timeout: Duration,
    synchronous: Synchronous,
    migrate: bool,
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        Self {
            path: None,
            connection: None,
            table: DEFAULT_TABLE.to_owned(),
            clock: Arc::new(SystemClock),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            migrate: true,
        }
    }
}

impl SqliteStoreBuilder {
    /// The database file (created owner-only if absent).
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// Use an existing connection as the writer (like the seed's `dbh`). If it
    /// is file-backed, reader connections are opened on the same file;
    /// otherwise (in-memory) every operation uses this one connection. The
    /// store sets WAL, the busy timeout and `synchronous` on it.
    pub fn connection(mut self, conn: Connection) -> Self {
        self.connection = Some(conn);
        self
    }

    /// The table name (default `sessions`); validated when the store opens.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// The clock expiry is judged by (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, already shared.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Largest value accepted, in bytes (default 1 MiB).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// How long a statement waits for another process's write lock before
    /// failing with [`StoreError::Busy`] (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Commit durability (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.synchronous = mode;
        self
    }

    /// Whether `open` creates the table and index when absent (default `true`).
    pub fn migrate(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Opens the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a bad table name or neither path nor
    /// connection given; [`StoreError::Io`] / [`StoreError::Backend`] when the
    /// file cannot be opened or migrated.
    pub fn open(self) -> StoreResult<SqliteStore> {
        let table = TableName::new(&self.table, Dialect::Sqlite)?;
        let settings = Settings {
            busy_timeout: self.busy_timeout.min(Duration::from_secs(3_600)),
            synchronous: self.synchronous,
        };
        let (writer, path) = match (self.connection, self.path) {
            (Some(_), Some(_)) => {
                return Err(StoreError::config(
                    "give the SQLite store either a path or a connection, not both",
                ));
            }
            (None, None) => {
                return Err(StoreError::config(
                    "the SQLite store needs a path or a connection",
                ));
            }
            (None, Some(path)) => {
                create_private(&path)?;
                (open_connection(&path)?, Some(path))
            }
            (Some(conn), None) => {
                let path = conn.path().filter(|p| !p.is_empty()).map(PathBuf::from);
                (conn, path)
            }
        };
        configure(&writer, &settings)?;
        let checkpointer = match &path {
            Some(p) => {
                // Our checkpoint thread does this work instead of the commit
                // that happens to cross SQLite's threshold.
                writer
                    .pragma_update(None, "wal_autocheckpoint", 0)
                    .map_err(map_err)?;
                Some(Checkpointer::start(p, &settings)?)
            }
            None => None,
        };
        let store = SqliteStore {
            checkpointer,
            writes: AtomicU32::new(0),
            sql: Statements::new(&table),
            table,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path,
            settings,
            clock: self.clock,
            max_value_size: self.max_value_size,
        };
        if self.migrate {
            store.migrate()?;
        }
        Ok(store)
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    busy_timeout: Duration,
    synchronous: Synchronous,
}

/// A [`SessionStore`] in an SQLite database file.
///
/// Several processes may open the same file; operations stay linearizable
/// across them (SQLite's locks, WAL, busy timeout).
#[derive(Debug)]
pub struct SqliteStore {
    sql: Statements,
    table: TableName,
    writer: Mutex<Connection>,
    /// Idle reader connections; grows to the number of threads reading at once.
    readers: Mutex<Vec<Connection>>,
    /// `None` for an in-memory database: then reads use the writer.
    path: Option<PathBuf>,
    settings: Settings,
    clock: SharedClock,
    max_value_size: usize,
    /// Runs WAL checkpoints off the callers' threads (file-backed stores).
    checkpointer: Option<Checkpointer>,
    /// Writes since the checkpointer was last nudged.
    writes: AtomicU32,
}

/// Writes between two nudges to the checkpoint thread (≈ 2–3 WAL pages each).
const CHECKPOINT_EVERY: u32 = 256;
/// The checkpoint thread also runs this often when writes are trickling in.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// A thread with its own connection that runs `PRAGMA wal_checkpoint(PASSIVE)`
/// when nudged or periodically. Dropping it stops and joins the thread, so the
/// connection is closed when the store's drop returns.
#[derive(Debug)]
struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path, settings: &Settings) -> StoreResult<Self> {
        let conn = open_connection(path)?;
        configure(&conn, settings)?;
        let (nudge, rx) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("store-sql-checkpoint".into())
            .spawn(move || {
                while let Ok(()) | Err(RecvTimeoutError::Timeout) =
                    rx.recv_timeout(CHECKPOINT_PERIOD)
                {
                    // PASSIVE never waits for readers or writers; a busy or
                    // failed checkpoint is simply retried next time.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(StoreError::Io)?;
        Ok(Self {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    fn nudge(&self) {
        if let Some(tx) = &self.nudge {
            // Full means a checkpoint is already pending: nothing to add.
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.nudge.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteStore {
    /// A builder with the defaults: table `sessions`, system clock, 1 MiB
    /// values, 5 s busy timeout, `synchronous=NORMAL`, migrate on open.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// Creates the table and its expiry index if absent. Safe to run from
    /// several processes at once (one immediate transaction; others wait).
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] if another process held the write lock beyond the
    /// busy timeout; [`StoreError::Backend`] otherwise.
    pub fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        for stmt in ddl(&self.table) {
            tx.execute(&stmt, []).map_err(map_err)?;
        }
        tx.commit().map_err(map_err)
    }

    /// The validated table name.
    #[must_use]
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// The largest value accepted, in bytes.
    #[must_use]
    pub fn max_value_size(&self) -> usize {
        self.max_value_size
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        if let Some(cp) = &self.checkpointer
            && self.writes.fetch_add(1, Ordering::Relaxed) % CHECKPOINT_EVERY
                == CHECKPOINT_EVERY - 1
        {
            cp.nudge();
        }
        // A panic while holding the lock (in an `update` closure) rolled its
        // transaction back when the Transaction dropped; the connection is fine.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let Some(path) = &self.path else {
            return f(&self.writer());
        };
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = open_connection(path)?;
                configure(&c, &self.settings)?;
                c
            }
        };
        let out = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        out
    }

    fn now(&self) -> i64 {
        self.clock.now().as_millis()
    }
}

/// Opens (creating if needed) without SQLite's own mutexes: each connection is
/// used by one thread at a time behind our locks.
fn open_connection(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(map_err)
}

/// Creates the database file owner-only before SQLite does (SQLite gives its
/// `-wal` and `-shm` files the database file's permissions).
fn create_private(path: &Path) -> StoreResult<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map(drop).map_err(StoreError::Io)
}

fn configure(conn: &Connection, s: &Settings) -> StoreResult<()> {
    conn.busy_timeout(s.busy_timeout).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    // Switching to WAL needs a brief exclusive lock; the busy handler covers
    // other connections doing the same at the same moment.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(StoreError::config(format!(
            "SQLite refused WAL mode (journal_mode is {mode})"
        )));
    }
    let sync = match s.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(map_err)
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            StoreError::busy(e)
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::corrupt(e),
        _ => StoreError::backend(e),
    }
}

/// Decodes `data, expires_at, version` starting at column `at`. Any type or
/// value that our writes never produce is `Corrupt`.
fn decode(row: &Row<'_>, at: usize) -> StoreResult<Record> {
    let corrupt = |e: rusqlite::Error| StoreError::corrupt(e);
    let data: Vec<u8> = row.get(at).map_err(corrupt)?;
    let expires_at: i64 = row.get(at + 1).map_err(corrupt)?;
    let version: i64 = row.get(at + 2).map_err(corrupt)?;
    Ok(Record {
        data,
        expires_at: Timestamp::from_millis(expires_at),
        version: version_from_sql(version)?,
    })
}

/// Reads the row for `id` whether live or not.
fn read_any(conn: &Connection, sql: &Statements, id: &SessionId) -> StoreResult<Option<Record>> {
    let mut stmt = conn.prepare_cached(&sql.load_any).map_err(map_err)?;
    let mut rows = stmt.query([id.as_bytes().as_slice()]).map_err(map_err)?;
    match rows.next().map_err(map_err)? {
        Some(row) => decode(row, 0).map(Some),
        None => Ok(None),
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        let now = self.now();
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&self.sql.load).map_err(map_err)?;
            let mut rows = stmt
                .query(rusqlite::params![id.as_bytes().as_slice(), now])
                .map_err(map_err)?;
            match rows.next().map_err(map_err)? {
                Some(row) => decode(row, 0).map(Some),
                None => Ok(None),
            }
        })
    }

    async fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version> {
        check_size(data, self.max_value_size)?;
        let version = Version::random(None);
        let now = self.now();
        let conn = self.writer();
        let mut stmt = conn.prepare_cached(&self.sql.create).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params![
                id.as_bytes().as_slice(),
                data,
                expires_at.as_millis(),
                version_to_sql(version),
                now
            ])
            .map_err(map_err)?;
        if n == 0 {
            Err(StoreError::AlreadyExists)
        } else {
            Ok(version)
        }
    }

    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        check_size(data, self.max_value_size)?;
        let version = Version::random(expected);
        let conn = self.writer();
        match expected {
            None => {
                let mut stmt = conn.prepare_cached(&self.sql.upsert).map_err(map_err)?;
                stmt.execute(rusqlite::params![
                    id.as_bytes().as_slice(),
                    data,
                    expires_at.as_millis(),
                    version_to_sql(version)
                ])
                .map_err(map_err)?;
                Ok(version)
            }
            Some(old) => {
                let now = self.now();
                let mut stmt = conn.prepare_cached(&self.sql.save_cas).map_err(map_err)?;
                let n = stmt
                    .execute(rusqlite::params![
                        data,
                        expires_at.as_millis(),
                        version_to_sql(version),
                        id.as_bytes().as_slice(),
                        version_to_sql(old),
                        now
                    ])
                    .map_err(map_err)?;
                if n == 0 {
                    Err(StoreError::Conflict)
                } else {
                    Ok(version)
                }
            }
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
        let now = self.now();
        let conn = self.writer();
        let mut stmt = conn.prepare_cached(&self.sql.touch).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params![
                expires_at.as_millis(),
                id.as_bytes().as_slice(),
                now
            ])
            .map_err(map_err)?;
        Ok(n > 0)
    }

    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        let now = self.now();
        let conn = self.writer();
        let mut stmt = conn.prepare_cached(&self.sql.delete).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params![id.as_bytes().as_slice(), now])
            .map_err(map_err)?;
        Ok(n > 0)
    }

    async fn delete_expired(&self) -> StoreResult<u64> {
        let now = self.now();
        let mut total = 0u64;
        loop {
            // One batch per lock hold, so writers (ours and other processes')
            // get the lock between batches.
            let n = {
                let conn = self.writer();
                let mut stmt = conn
                    .prepare_cached(&self.sql.purge_batch)
                    .map_err(map_err)?;
                stmt.execute(rusqlite::params![now, now]).map_err(map_err)?
            };
            total += n as u64;
            if n < PURGE_BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Native read-modify-write: one `BEGIN IMMEDIATE` transaction on the
    /// writer connection, so `f` runs exactly once and no other writer (in any
    /// process) can slip in between its read and its write. `f` runs under the
    /// writer lock: it must not call this store.
    async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
        let now = Timestamp::from_millis(self.now());
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let stored = read_any(&tx, &self.sql, id)?;
        let live = stored.as_ref().filter(|r| !r.is_expired_at(now));
        let (data, expires_at) = match f(live) {
            Update::Keep => return Ok(Updated::Unchanged),
            Update::Put { data, expires_at } => (data, expires_at),
        };
        check_size(&data, self.max_value_size)?;
        let version = Version::random(stored.as_ref().map(|r| r.version));
        {
            let mut stmt = tx.prepare_cached(&self.sql.upsert).map_err(map_err)?;
            stmt.execute(rusqlite::params![
                id.as_bytes().as_slice(),
                data,
                expires_at.as_millis(),
                version_to_sql(version)
            ])
            .map_err(map_err)?;
        }
        tx.commit().map_err(map_err)?;
        Ok(Updated::Written(version))
    }

    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|conn| {
            let mut stmt = match after {
                Some(_) => conn.prepare_cached(&self.sql.scan_after),
                None => conn.prepare_cached(&self.sql.scan_first),
            }
            .map_err(map_err)?;
            let mut rows = match after {
                Some(a) => stmt.query(rusqlite::params![a.as_bytes().as_slice(), limit]),
                None => stmt.query(rusqlite::params![limit]),
            }
            .map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(map_err)? {
                let raw: Vec<u8> = row.get(0).map_err(StoreError::corrupt)?;
                out.push((id_from_sql(&raw)?, decode(row, 1)?));
            }
            Ok(out)
        })
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let now = self.now();
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&self.sql.stats).map_err(map_err)?;
            let counts = stmt
                .query_row(rusqlite::params![now, now, now], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .optional()
                .map_err(map_err)?;
            let (live, expired, bytes) = counts.unwrap_or((0, 0, 0));
            let mut stats = StoreStats::new(
                u64::try_from(live).unwrap_or(0),
                u64::try_from(expired).unwrap_or(0),
                u64::try_from(bytes).unwrap_or(0),
            );
            stats
                .details
                .push(("table".to_owned(), self.table.unquoted()));
            Ok(stats)
        })
    }
}
