//! The limits: each engine doing the same create / load / save / delete work
//! with no session layer (no expiry check, no version, no codec, no thread
//! handoff), behind our trait only so the one workload can drive it. `touch`,
//! `update` and `delete_expired` are not offered (the workload skips them).
//!
//! Every operation runs inline on the calling task: that is the engine's own
//! cost, which the stores' overhead is measured against.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use session_core::{
    Clock, ManualClock, Record, SessionId, SessionStore, StoreError, StoreResult, Timestamp,
    Version, async_trait,
};

fn unsupported<T>() -> StoreResult<T> {
    Err(StoreError::config(
        "raw engines do not offer this operation",
    ))
}

fn record(data: Vec<u8>) -> Record {
    Record {
        data,
        expires_at: Timestamp::MAX,
        version: Version::from_raw(1),
    }
}

/// Implements the parts of `SessionStore` every raw engine shares: `clock`,
/// the unsupported operations, and `create` as a plain `put`.
macro_rules! raw_store {
    ($ty:ty) => {
        #[async_trait]
        impl SessionStore for $ty {
            fn clock(&self) -> &dyn Clock {
                &self.clock
            }
            async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
                Ok(self.get(id).await?.map(record))
            }
            async fn create(
                &self,
                id: &SessionId,
                data: &[u8],
                expires_at: Timestamp,
            ) -> StoreResult<Version> {
                self.put(id, data, expires_at).await?;
                Ok(Version::from_raw(1))
            }
            async fn save(
                &self,
                id: &SessionId,
                data: &[u8],
                expires_at: Timestamp,
                _expected: Option<Version>,
            ) -> StoreResult<Version> {
                self.put(id, data, expires_at).await?;
                Ok(Version::from_raw(1))
            }
            async fn touch(&self, _id: &SessionId, _expires_at: Timestamp) -> StoreResult<bool> {
                unsupported()
            }
            async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
                self.remove(id).await
            }
            async fn delete_expired(&self) -> StoreResult<u64> {
                unsupported()
            }
            async fn scan(
                &self,
                _after: Option<&SessionId>,
                _limit: usize,
            ) -> StoreResult<Vec<(SessionId, Record)>> {
                unsupported()
            }
        }
    };
}

// ---------------------------------------------------------------- HashMap

/// An in-process `HashMap` behind a `Mutex`.
pub(crate) struct RawMap {
    map: Mutex<HashMap<SessionId, (Vec<u8>, Timestamp)>>,
    clock: ManualClock,
}

impl RawMap {
    pub(crate) fn new(clock: ManualClock) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, (Vec<u8>, Timestamp)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().get(id).map(|(d, _)| d.clone()))
    }

    async fn put(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<()> {
        self.lock().insert(*id, (data.to_vec(), exp));
        Ok(())
    }

    async fn remove(&self, id: &SessionId) -> StoreResult<bool> {
        Ok(self.lock().remove(id).is_some())
    }
}
raw_store!(RawMap);

// ---------------------------------------------------------------- redb

type RedbTable = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;
const REDB_TABLE: RedbTable = redb::TableDefinition::new("kv");

fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(e)
}

/// One redb transaction per operation.
pub(crate) struct RawRedb {
    db: redb::Database,
    durable: bool,
    clock: ManualClock,
}

impl RawRedb {
    pub(crate) fn open(dir: &Path, durable: bool, clock: ManualClock) -> StoreResult<Self> {
        let db = redb::Database::create(dir.join("raw.redb")).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(REDB_TABLE).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db, durable, clock })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<'_, &'static [u8], &'static [u8]>) -> Result<T, redb::Error>,
    ) -> StoreResult<T> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(if self.durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .map_err(backend)?;
        let out = {
            let mut table = txn.open_table(REDB_TABLE).map_err(backend)?;
            f(&mut table).map_err(backend)?
        };
        txn.commit().map_err(backend)?;
        Ok(out)
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Vec<u8>>> {
        use redb::ReadableDatabase as _;
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(REDB_TABLE).map_err(backend)?;
        Ok(table
            .get(id.as_bytes().as_slice())
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    async fn put(&self, id: &SessionId, data: &[u8], _exp: Timestamp) -> StoreResult<()> {
        self.write(|t| {
            t.insert(id.as_bytes().as_slice(), data)?;
            Ok(())
        })
    }

    async fn remove(&self, id: &SessionId) -> StoreResult<bool> {
        self.write(|t| Ok(t.remove(id.as_bytes().as_slice())?.is_some()))
    }
}
raw_store!(RawRedb);

// ---------------------------------------------------------------- LMDB

type HeedDb = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;

/// One LMDB (heed) transaction per operation.
pub(crate) struct RawLmdb {
    env: heed::Env<heed::WithoutTls>,
    db: HeedDb,
    clock: ManualClock,
}

impl RawLmdb {
    #[allow(unsafe_code)]
    pub(crate) fn open(dir: &Path, durable: bool, clock: ManualClock) -> StoreResult<Self> {
        let mut opts = heed::EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(4 << 30).max_dbs(1);
        if !durable {
            // SAFETY: MDB_NOSYNC only drops the fsync at commit; an OS crash
            // may then corrupt this throw-away benchmark file, nothing else.
            unsafe {
                opts.flags(heed::EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the directory is a fresh temporary one that only this
        // process maps, and nothing truncates or rewrites the file meanwhile.
        let env = unsafe { opts.open(dir) }.map_err(backend)?;
        let wtxn = env.write_txn().map_err(backend)?;
        let db: HeedDb = env
            .create_databases_and_commit(wtxn, |o, w| {
                Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(
                    o.create_database(w, Some("kv"))?,
                ))
            })
            .map_err(backend)?
            .commit()
            .ok_or_else(|| StoreError::backend("creating the LMDB table was aborted"))?;
        Ok(Self { env, db, clock })
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Vec<u8>>> {
        let rtxn = self.env.read_txn().map_err(backend)?;
        Ok(self
            .db
            .get(&rtxn, id.as_bytes())
            .map_err(backend)?
            .map(<[u8]>::to_vec))
    }

    async fn put(&self, id: &SessionId, data: &[u8], _exp: Timestamp) -> StoreResult<()> {
        let mut wtxn = self.env.write_txn().map_err(backend)?;
        self.db
            .put(&mut wtxn, id.as_bytes(), data)
            .map_err(backend)?;
        wtxn.commit().map_err(backend)
    }

    async fn remove(&self, id: &SessionId) -> StoreResult<bool> {
        let mut wtxn = self.env.write_txn().map_err(backend)?;
        let removed = self.db.delete(&mut wtxn, id.as_bytes()).map_err(backend)?;
        wtxn.commit().map_err(backend)?;
        Ok(removed)
    }
}
raw_store!(RawLmdb);

// ---------------------------------------------------------------- SQLite

/// Prepared (cached) rusqlite statements on one connection, WAL, with the
/// `synchronous` setting of the store row it is the limit of.
pub(crate) struct RawSqlite {
    conn: Mutex<rusqlite::Connection>,
    clock: ManualClock,
}

const SQLITE_UPSERT: &str = "INSERT INTO kv (id, data, expires_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at";

impl RawSqlite {
    pub(crate) fn open(path: &Path, durable: bool, clock: ManualClock) -> StoreResult<Self> {
        let conn = rusqlite::Connection::open(path).map_err(backend)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })
            .map_err(backend)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (id BLOB PRIMARY KEY, data BLOB NOT NULL, \
             expires_at INTEGER NOT NULL)",
        )
        .map_err(backend)?;
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
        })
    }

    fn conn(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Vec<u8>>> {
        use rusqlite::OptionalExtension as _;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT data FROM kv WHERE id = ?1")
            .map_err(backend)?;
        stmt.query_row([id.as_bytes().as_slice()], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(backend)
    }

    async fn put(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(SQLITE_UPSERT).map_err(backend)?;
        stmt.execute(rusqlite::params![
            id.as_bytes().as_slice(),
            data,
            exp.as_millis()
        ])
        .map_err(backend)?;
        Ok(())
    }

    async fn remove(&self, id: &SessionId) -> StoreResult<bool> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("DELETE FROM kv WHERE id = ?1")
            .map_err(backend)?;
        Ok(stmt.execute([id.as_bytes().as_slice()]).map_err(backend)? > 0)
    }
}
raw_store!(RawSqlite);

// ---------------------------------------------------------------- sqlx servers

/// Which server a [`RawSqlx`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    Postgres,
    MySql,
}

enum Pool {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

/// One upsert / select / delete statement per operation through an sqlx pool
/// (sqlx caches the prepared statements per connection).
pub(crate) struct RawSqlx {
    pool: Pool,
    table: String,
    clock: ManualClock,
}

impl RawSqlx {
    pub(crate) async fn open(
        server: Server,
        url: &str,
        table: &str,
        clock: ManualClock,
    ) -> StoreResult<Self> {
        let pool = match server {
            Server::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await
                    .map_err(backend)?;
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (id BYTEA PRIMARY KEY, \
                     data BYTEA NOT NULL, expires_at BIGINT NOT NULL)"
                ))
                .execute(&pool)
                .await
                .map_err(backend)?;
                Pool::Pg(pool)
            }
            Server::MySql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await
                    .map_err(backend)?;
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (id BINARY(32) PRIMARY KEY, \
                     data LONGBLOB NOT NULL, expires_at BIGINT NOT NULL) ENGINE=InnoDB"
                ))
                .execute(&pool)
                .await
                .map_err(backend)?;
                Pool::My(pool)
            }
        };
        Ok(Self {
            pool,
            table: table.to_owned(),
            clock,
        })
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Vec<u8>>> {
        let sql = format!("SELECT data FROM {} WHERE id = {}", self.table, self.p(1));
        let id = id.as_bytes().as_slice();
        match &self.pool {
            Pool::Pg(p) => sqlx::query_scalar::<_, Vec<u8>>(&sql)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(backend),
            Pool::My(p) => sqlx::query_scalar::<_, Vec<u8>>(&sql)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(backend),
        }
    }

    fn p(&self, n: usize) -> String {
        match self.pool {
            Pool::Pg(_) => format!("${n}"),
            Pool::My(_) => "?".to_owned(),
        }
    }

    async fn put(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<()> {
        let id = id.as_bytes().as_slice();
        let t = &self.table;
        match &self.pool {
            Pool::Pg(p) => sqlx::query(&format!(
                "INSERT INTO {t} (id, data, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id) \
                 DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
            ))
            .bind(id)
            .bind(data)
            .bind(exp.as_millis())
            .execute(p)
            .await
            .map(drop)
            .map_err(backend),
            Pool::My(p) => sqlx::query(&format!(
                "INSERT INTO {t} (id, data, expires_at) VALUES (?, ?, ?) ON DUPLICATE KEY \
                 UPDATE data = VALUES(data), expires_at = VALUES(expires_at)"
            ))
            .bind(id)
            .bind(data)
            .bind(exp.as_millis())
            .execute(p)
            .await
            .map(drop)
            .map_err(backend),
        }
    }

    async fn remove(&self, id: &SessionId) -> StoreResult<bool> {
        let sql = format!("DELETE FROM {} WHERE id = {}", self.table, self.p(1));
        let id = id.as_bytes().as_slice();
        let n = match &self.pool {
            Pool::Pg(p) => sqlx::query(&sql)
                .bind(id)
                .execute(p)
                .await
                .map_err(backend)?
                .rows_affected(),
            Pool::My(p) => sqlx::query(&sql)
                .bind(id)
                .execute(p)
                .await
                .map_err(backend)?
                .rows_affected(),
        };
        Ok(n > 0)
    }
}
raw_store!(RawSqlx);

/// Drops a benchmark table on a server (before and after its rows).
pub(crate) async fn drop_table(server: Server, url: &str, table: &str) -> StoreResult<()> {
    let sql = format!("DROP TABLE IF EXISTS {table}");
    match server {
        Server::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(backend)?;
            sqlx::query(&sql).execute(&pool).await.map_err(backend)?;
            pool.close().await;
        }
        Server::MySql => {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(backend)?;
            sqlx::query(&sql).execute(&pool).await.map_err(backend)?;
            pool.close().await;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- files

/// One file per id: write a temporary file (+ `fsync` when durable) and rename
/// it over the target; read it whole; unlink it.
pub(crate) struct RawFile {
    dir: PathBuf,
    durable: bool,
    // Concurrent writers of one id must not share a temporary file.
    next_tmp: AtomicU64,
    clock: ManualClock,
}

impl RawFile {
    pub(crate) fn open(dir: &Path, durable: bool, clock: ManualClock) -> StoreResult<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            durable,
            next_tmp: AtomicU64::new(0),
            clock,
        })
    }

    fn path(&self, id: &SessionId) -> PathBuf {
        let hex = id.encode_hex();
        self.dir.join(String::from_utf8_lossy(&hex).as_ref())
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Vec<u8>>> {
        match fs::read(self.path(id)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, id: &SessionId, data: &[u8], _exp: Timestamp) -> StoreResult<()> {
        let target = self.path(id);
        let mut tmp = target.clone().into_os_string();
        tmp.push(format!(
            ".{}.tmp",
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        if self.durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, &target)?;
        Ok(())
    }

    async fn remove(&self, id: &SessionId) -> StoreResult<bool> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
raw_store!(RawFile);
