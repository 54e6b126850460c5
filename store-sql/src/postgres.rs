//! The PostgreSQL store over an sqlx pool. Every operation is one statement
//! (prepared once per connection by sqlx); `update` is a `SELECT .. FOR UPDATE`
//! transaction.

use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Clock, Record, SessionId, SessionStore, SharedClock, StoreError, StoreResult, StoreStats,
    SystemClock, Timestamp, Update, UpdateFn, Updated, Version, async_trait,
};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::dialect::{
    DEFAULT_TABLE, Dialect, PURGE_BATCH, Statements, TableName, ddl, fnv1a, version_to_sql,
};
use crate::server::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, decode, decode_counts, decode_with_id,
    map_err, sql_limit,
};
use crate::{DEFAULT_MAX_VALUE_SIZE, check_size};

/// Builds a [`PgStore`] from a URL or an existing pool.
#[derive(Debug)]
#[must_use]
pub struct PgStoreBuilder {
    url: Option<String>,
    pool: Option<PgPool>,
    table: String,
    clock: SharedClock,
    max_value_size: usize,
    max_connections: u32,
    acquire_timeout: Duration,
    migrate: bool,
}

impl Default for PgStoreBuilder {
    fn default() -> Self {
        Self {
            url: None,
            pool: None,
            table: DEFAULT_TABLE.to_owned(),
            clock: Arc::new(SystemClock),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            migrate: true,
        }
    }
}

impl PgStoreBuilder {
    /// Connect with this URL, e.g. `postgres://user@host:5432/db`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Use the application's existing pool (pool settings below are ignored).
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Table name (default `sessions`; `schema.table` allowed), validated on open.
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

    /// Pool size when connecting from a URL (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long an operation waits for a pooled connection (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether `open` creates the table and index when absent (default `true`).
    pub fn migrate(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Connects (or adopts the pool) and migrates.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a bad table name or no URL/pool;
    /// [`StoreError::Backend`] when the server cannot be reached.
    pub async fn open(self) -> StoreResult<PgStore> {
        let table = TableName::new(&self.table, Dialect::Postgres)?;
        let pool = match (self.pool, self.url) {
            (Some(_), Some(_)) => {
                return Err(StoreError::config(
                    "give the PostgreSQL store either a URL or a pool, not both",
                ));
            }
            (None, None) => {
                return Err(StoreError::config(
                    "the PostgreSQL store needs a URL or a pool",
                ));
            }
            (Some(pool), None) => pool,
            (None, Some(url)) => PgPoolOptions::new()
                .max_connections(self.max_connections)
                .acquire_timeout(self.acquire_timeout)
                .connect(&url)
                .await
                .map_err(map_err)?,
        };
        let store = PgStore {
            sql: Statements::new(&table),
            table,
            pool,
            clock: self.clock,
            max_value_size: self.max_value_size,
        };
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}

/// A [`SessionStore`] in a PostgreSQL table.
///
/// Like every sqlx pool, it must be used from within a tokio runtime.
#[derive(Debug, Clone)]
pub struct PgStore {
    sql: Statements,
    table: TableName,
    pool: PgPool,
    clock: SharedClock,
    max_value_size: usize,
}

impl PgStore {
    /// A builder with the defaults: table `sessions`, system clock, 1 MiB
    /// values, 10 connections, migrate on open.
    pub fn builder() -> PgStoreBuilder {
        PgStoreBuilder::default()
    }

    /// Creates the table and its expiry index if absent. Concurrent callers
    /// (tasks or processes) serialize on a transaction-scoped advisory lock
    /// keyed by the table name, since concurrent `CREATE TABLE IF NOT EXISTS`
    /// can otherwise fail on PostgreSQL's catalog unique index.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the server refuses.
    pub async fn migrate(&self) -> StoreResult<()> {
        let key = i64::from_le_bytes(fnv1a(self.table.unquoted().as_bytes()).to_le_bytes());
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for stmt in ddl(&self.table) {
            sqlx::query(&stmt)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    /// The validated table name.
    #[must_use]
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// The pool the store uses.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The largest value accepted, in bytes.
    #[must_use]
    pub fn max_value_size(&self) -> usize {
        self.max_value_size
    }

    fn now(&self) -> i64 {
        self.clock.now().as_millis()
    }
}

#[async_trait]
impl SessionStore for PgStore {
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        let row = sqlx::query(&self.sql.load)
            .bind(id.as_bytes().as_slice())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| decode(&r, 0)).transpose()
    }

    async fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version> {
        check_size(data, self.max_value_size)?;
        let version = Version::random(None);
        let done = sqlx::query(&self.sql.create)
            .bind(id.as_bytes().as_slice())
            .bind(data)
            .bind(expires_at.as_millis())
            .bind(version_to_sql(version))
            .bind(self.now())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
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
        match expected {
            None => {
                sqlx::query(&self.sql.upsert)
                    .bind(id.as_bytes().as_slice())
                    .bind(data)
                    .bind(expires_at.as_millis())
                    .bind(version_to_sql(version))
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(version)
            }
            Some(old) => {
                let done = sqlx::query(&self.sql.save_cas)
                    .bind(data)
                    .bind(expires_at.as_millis())
                    .bind(version_to_sql(version))
                    .bind(id.as_bytes().as_slice())
                    .bind(version_to_sql(old))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    Err(StoreError::Conflict)
                } else {
                    Ok(version)
                }
            }
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(&self.sql.touch)
            .bind(expires_at.as_millis())
            .bind(id.as_bytes().as_slice())
            .bind(self.now())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        let done = sqlx::query(&self.sql.delete)
            .bind(id.as_bytes().as_slice())
            .bind(self.now())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired(&self) -> StoreResult<u64> {
        let now = self.now();
        let mut total = 0;
        loop {
            let n = sqlx::query(&self.sql.purge_batch)
                .bind(now)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
            total += n;
            if n < u64::from(PURGE_BATCH) {
                return Ok(total);
            }
        }
    }

    /// Native read-modify-write: a transaction that locks the row with
    /// `SELECT .. FOR UPDATE`, so `f` runs once per attempt and nobody writes
    /// in between. When there is no row to lock, the insert is a `create`; if a
    /// concurrent transaction inserted first, the attempt is retried. `f` runs
    /// while the row is locked: it must not write this id through the store.
    async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
        for _ in 0..session_core::UPDATE_MAX_ATTEMPTS {
            let now = self.clock.now();
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            let row = sqlx::query(&self.sql.load_any)
                .bind(id.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            let stored = row.map(|r| decode(&r, 0)).transpose()?;
            let live = stored.as_ref().filter(|r| !r.is_expired_at(now));
            let (data, expires_at) = match f(live) {
                Update::Keep => return Ok(Updated::Unchanged),
                Update::Put { data, expires_at } => (data, expires_at),
            };
            check_size(&data, self.max_value_size)?;
            let version = Version::random(stored.as_ref().map(|r| r.version));
            let done = if stored.is_some() {
                sqlx::query(&self.sql.overwrite)
                    .bind(data.as_slice())
                    .bind(expires_at.as_millis())
                    .bind(version_to_sql(version))
                    .bind(id.as_bytes().as_slice())
                    .execute(&mut *tx)
                    .await
            } else {
                sqlx::query(&self.sql.create)
                    .bind(id.as_bytes().as_slice())
                    .bind(data.as_slice())
                    .bind(expires_at.as_millis())
                    .bind(version_to_sql(version))
                    .bind(now.as_millis())
                    .execute(&mut *tx)
                    .await
            }
            .map_err(map_err)?;
            if done.rows_affected() == 0 {
                // A concurrent insert won the race for the absent row.
                drop(tx);
                continue;
            }
            tx.commit().await.map_err(map_err)?;
            return Ok(Updated::Written(version));
        }
        Err(StoreError::busy("update lost every race for an absent row"))
    }

    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        let rows = match after {
            Some(a) => {
                sqlx::query(&self.sql.scan_after)
                    .bind(a.as_bytes().as_slice())
                    .bind(sql_limit(limit))
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query(&self.sql.scan_first)
                    .bind(sql_limit(limit))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(map_err)?;
        rows.iter().map(decode_with_id).collect()
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let now = self.now();
        let row = sqlx::query(&self.sql.stats)
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        let (live, expired, bytes) = decode_counts(&row)?;
        let mut stats = StoreStats::new(live, expired, bytes);
        stats
            .details
            .push(("table".to_owned(), self.table.unquoted()));
        Ok(stats)
    }
}
