//! [`EmbeddedStore`] and its builder.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use session_core::{
    Clock, Record, SessionId, SessionStore, SharedClock, StoreError, StoreResult, StoreStats,
    SystemClock, Timestamp, Update, UpdateFn, Updated, Version, async_trait,
};
use tokio::sync::oneshot;

use crate::codec;
use crate::engine::Engine as KvEngine;
use crate::writer::{Core, Op, Pending, Reply, Writer};

/// Default largest value: 1 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1 << 20;
/// Default LMDB map size: 1 GiB of address space (the file grows only as used).
pub const DEFAULT_LMDB_MAP_SIZE: usize = 1 << 30;
/// Default redb page-cache cap: 1 GiB (redb's default).
pub const DEFAULT_REDB_CACHE_SIZE: usize = 1 << 30;
/// Default most ops per group commit.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Default flush interval in [`Durability::Eventual`] mode.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Records `delete_expired` removes per write transaction.
pub const PURGE_BATCH: usize = 512;

/// Which embedded engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Engine {
    /// redb (feature `redb`, the default): pure Rust, one process at a time.
    #[cfg(feature = "redb")]
    Redb,
    /// LMDB through heed (feature `lmdb`): several processes may share it.
    #[cfg(feature = "lmdb")]
    Lmdb,
}

impl Engine {
    /// The engine's name as shown in stats.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "redb")]
            Self::Redb => "redb",
            #[cfg(feature = "lmdb")]
            Self::Lmdb => "lmdb",
        }
    }

    /// Whether several processes may open the same store at once by default
    /// (redb can, too, with [`EmbeddedStoreBuilder::redb_multi_process`]).
    #[must_use]
    pub fn is_multi_process(self) -> bool {
        match self {
            #[cfg(feature = "redb")]
            Self::Redb => false,
            #[cfg(feature = "lmdb")]
            Self::Lmdb => true,
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        #[cfg(feature = "redb")]
        return Self::Redb;
        #[cfg(not(feature = "redb"))]
        return Self::Lmdb;
    }
}

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every acknowledged write is on disk (fsync before the ack); concurrent
    /// writers share one fsync through group commit. The default.
    #[default]
    Immediate,
    /// Commits without fsync; the writer thread makes them durable every
    /// [`flush_interval`](EmbeddedStoreBuilder::flush_interval) and on close.
    ///
    /// **Risk:** acknowledged writes of the last interval can be lost.
    /// With redb they are lost if the *process* dies (its non-durable commits
    /// live only until the next durable one); with LMDB (`MDB_NOSYNC`) they
    /// survive a process crash but not an OS crash or power loss, which may also
    /// leave the LMDB file corrupt. Versions are random, so a rolled-back write
    /// never lets a stale version match again.
    Eventual,
}

/// Builder for [`EmbeddedStore`]; see the crate docs for each option's effect.
#[derive(Debug, Clone)]
#[must_use]
pub struct EmbeddedStoreBuilder {
    path: Option<PathBuf>,
    engine: Engine,
    durability: Durability,
    max_value_size: usize,
    clock: SharedClock,
    lmdb_map_size: usize,
    max_batch: usize,
    flush_interval: Duration,
    verify_on_open: bool,
    redb_cache_size: usize,
    redb_multi_process: bool,
}

impl EmbeddedStoreBuilder {
    /// The directory holding the database (created owner-only if missing).
    /// redb keeps `sessions.redb` in it; LMDB keeps `data.mdb` and `lock.mdb`.
    pub fn path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path = Some(dir.into());
        self
    }

    /// The engine (default: redb when its feature is on).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// When writes are acknowledged (default [`Durability::Immediate`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Reject values larger than `bytes` with `TooLarge` (default 1 MiB).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Judge expiry by this clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Judge expiry by this shared clock.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// LMDB only: the map size in bytes, the most the database may hold
    /// (default 1 GiB; rounded up to 64 KiB). Every process sharing the store
    /// must use the same value. A full map is a `Backend` error naming this option.
    pub fn lmdb_map_size(mut self, bytes: usize) -> Self {
        self.lmdb_map_size = bytes;
        self
    }

    /// Most ops the writer thread puts in one transaction (default 1024).
    pub fn max_batch(mut self, ops: usize) -> Self {
        self.max_batch = ops;
        self
    }

    /// [`Durability::Eventual`] only: how often pending commits are fsynced (default 1 s).
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }

    /// redb only: verify every page checksum when opening (default `true`).
    ///
    /// Costs one read of the whole file at open (measured: 0.2 s for 100,000
    /// sessions of 1 KiB, a 130 MB file); without it, a file damaged
    /// outside redb may be trusted, and redb may panic on it (which this store
    /// turns into `Corrupt` errors). A file that was not closed cleanly is
    /// always verified and repaired.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// redb only: most memory its page cache may use (default 1 GiB, redb's
    /// own default; a cap, not an allocation). Loads run inline at ≈ 1–5 µs
    /// only while the working set fits.
    pub fn redb_cache_size(mut self, bytes: usize) -> Self {
        self.redb_cache_size = bytes;
        self
    }

    /// redb only, experimental: open in redb's `ConcurrencyMode::MultiWriter`,
    /// so several processes may share the file (durable commits only:
    /// [`Durability::Eventual`] is refused). Default `false`: one process.
    pub fn redb_multi_process(mut self, shared: bool) -> Self {
        self.redb_multi_process = shared;
        self
    }

    /// Opens (creating if needed) the store and starts its writer thread.
    ///
    /// # Errors
    ///
    /// `Config` without a path or with a zero batch size; `Busy` when the redb
    /// file is open elsewhere (the source is [`AlreadyOpen`]); `Corrupt` for a
    /// damaged or foreign file; `Io` / `Backend` for other failures.
    pub fn open(self) -> StoreResult<EmbeddedStore> {
        let Some(dir) = self.path.clone() else {
            return Err(StoreError::config("EmbeddedStoreBuilder::path is required"));
        };
        #[cfg(feature = "redb")]
        if self.redb_multi_process && self.durability != Durability::Immediate {
            return Err(StoreError::config(
                "redb_multi_process needs Durability::Immediate (redb refuses non-durable \
                 commits when processes share the file)",
            ));
        }
        if self.max_batch == 0 {
            return Err(StoreError::config("max_batch must be at least 1"));
        }
        create_dir_private(&dir)?;
        let engine: Arc<dyn KvEngine> = guard(|| match self.engine {
            #[cfg(feature = "redb")]
            Engine::Redb => Ok(Arc::new(crate::redb_engine::RedbEngine::open(
                &dir,
                self.verify_on_open,
                self.redb_cache_size,
                self.redb_multi_process,
            )?) as Arc<dyn KvEngine>),
            #[cfg(feature = "lmdb")]
            Engine::Lmdb => Ok(Arc::new(crate::lmdb_engine::LmdbEngine::open(
                &dir,
                self.lmdb_map_size,
                self.durability == Durability::Immediate,
            )?) as Arc<dyn KvEngine>),
        })?;
        let core = Arc::new(Core::new(
            engine,
            self.clock.clone(),
            self.durability == Durability::Immediate,
            self.max_value_size,
        ));
        let writer = Writer {
            core: core.clone(),
            max_batch: self.max_batch,
            flush_interval: self.flush_interval,
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("session-kv-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(EmbeddedStore {
            core,
            clock: self.clock,
            engine_kind: self.engine,
            durability: self.durability,
            max_value_size: self.max_value_size,
            dir,
            queue: Some(tx),
            writer: Some(handle),
        })
    }
}

/// The `redb` engine found the database open in another process (or another
/// handle in this one, or opened with a different
/// [`redb_multi_process`](EmbeddedStoreBuilder::redb_multi_process) setting).
/// Returned as the source of `StoreError::Busy`.
#[derive(Debug)]
pub struct AlreadyOpen {
    /// The database file.
    pub path: PathBuf,
}

impl fmt::Display for AlreadyOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is open in another process or handle (or with another redb_multi_process \
             setting); by default the redb engine is single-process: use \
             redb_multi_process(true) in every process, or the lmdb engine, to share it",
            self.path.display()
        )
    }
}

impl std::error::Error for AlreadyOpen {}

/// A session store on an embedded transactional engine. See the crate docs.
///
/// Open one handle per database per process and share it (`Arc`); a second
/// handle on the same path in the same process is refused with `Busy`.
///
/// Dropping it stops the writer thread (after it has committed what was queued)
/// and closes the database before `drop` returns, so the same path can be
/// opened again at once.
pub struct EmbeddedStore {
    core: Arc<Core>,
    clock: SharedClock,
    engine_kind: Engine,
    durability: Durability,
    max_value_size: usize,
    dir: PathBuf,
    queue: Option<mpsc::Sender<Pending>>,
    writer: Option<JoinHandle<()>>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("engine", &self.engine_kind)
            .field("durability", &self.durability)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop; joining it guarantees the
        // engine's last reference is ours, so the file closes with `self`.
        drop(self.queue.take());
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl EmbeddedStore {
    /// A builder with the defaults (redb, `Immediate`, 1 MiB, system clock).
    pub fn builder() -> EmbeddedStoreBuilder {
        EmbeddedStoreBuilder {
            path: None,
            engine: Engine::default(),
            durability: Durability::default(),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            clock: Arc::new(SystemClock),
            lmdb_map_size: DEFAULT_LMDB_MAP_SIZE,
            max_batch: DEFAULT_MAX_BATCH,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            verify_on_open: true,
            redb_cache_size: DEFAULT_REDB_CACHE_SIZE,
            redb_multi_process: false,
        }
    }

    /// The engine in use.
    #[must_use]
    pub fn engine(&self) -> Engine {
        self.engine_kind
    }

    /// The durability mode.
    #[must_use]
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The directory holding the database.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The largest value accepted.
    #[must_use]
    pub fn max_value_size(&self) -> usize {
        self.max_value_size
    }

    fn check_size(&self, data: &[u8]) -> StoreResult<()> {
        if data.len() > self.max_value_size {
            return Err(StoreError::TooLarge {
                size: data.len(),
                limit: self.max_value_size,
            });
        }
        Ok(())
    }

    fn enqueue(&self, op: Op) -> StoreResult<oneshot::Receiver<StoreResult<Reply>>> {
        let (reply, rx) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(writer_gone)?;
        queue
            .send(Pending { op, reply })
            .map_err(|_| writer_gone())?;
        Ok(rx)
    }

    async fn submit(&self, op: Op) -> StoreResult<Reply> {
        match self.core.try_inline(op) {
            Ok(r) => r,
            Err(op) => self.enqueue(op)?.await.map_err(|_| writer_gone())?,
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::backend("the writer thread has stopped")
}

fn unexpected(r: Reply) -> StoreError {
    StoreError::backend(format!("writer thread sent an unexpected reply {r:?}"))
}

/// Runs an engine call, turning an engine panic (possible on a damaged file)
/// into a typed error so no stored byte can crash the caller.
pub(crate) fn guard<T>(f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(StoreError::corrupt(
            "the storage engine panicked reading the database file (damaged file?)",
        ))
    })
}

fn create_dir_private(dir: &Path) -> StoreResult<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    Ok(())
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        let now = self.clock.now();
        let Some(raw) = guard(|| self.core.engine.get(id.as_bytes()))? else {
            return Ok(None);
        };
        let s = codec::decode_record(&raw)?;
        Ok(s.is_live(now).then(|| s.into_record()))
    }

    async fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version> {
        self.check_size(data)?;
        let op = Op::Create {
            id: *id,
            data: data.to_vec(),
            expires_at,
        };
        match self.submit(op).await? {
            Reply::Version(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        self.check_size(data)?;
        let op = Op::Save {
            id: *id,
            data: data.to_vec(),
            expires_at,
            expected,
        };
        match self.submit(op).await? {
            Reply::Version(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
        match self
            .submit(Op::Touch {
                id: *id,
                expires_at,
            })
            .await?
        {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        match self.submit(Op::Delete { id: *id }).await? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    async fn delete_expired(&self) -> StoreResult<u64> {
        // Bounded transactions: other writers get the write lock between them.
        let mut total = 0;
        loop {
            match self.submit(Op::Purge { limit: PURGE_BATCH }).await? {
                Reply::Purged(removed, visited) => {
                    total += removed;
                    if visited < PURGE_BATCH as u64 {
                        return Ok(total);
                    }
                }
                r => return Err(unexpected(r)),
            }
        }
    }

    async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
        let (cur_tx, cur_rx) = oneshot::channel();
        let (dec_tx, dec_rx) = mpsc::sync_channel::<Update>(1);
        let done = self.enqueue(Op::Update {
            id: *id,
            current: Some(cur_tx),
            decision: dec_rx,
        })?;
        // The writer holds the transaction open while `f` runs here, so `f`
        // sees the record exactly as the write will replace it.
        if let Ok(current) = cur_rx.await {
            let decision = f(current.as_ref());
            if let Update::Put { data, .. } = &decision {
                self.check_size(data)?;
            }
            let _ = dec_tx.send(decision);
        }
        drop(dec_tx);
        match done.await.map_err(|_| writer_gone())?? {
            Reply::Updated(u) => Ok(u),
            r => Err(unexpected(r)),
        }
    }

    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        let rows = guard(|| {
            self.core
                .engine
                .scan(after.map(|a| &a.as_bytes()[..]), limit)
        })?;
        rows.into_iter()
            .map(|(k, v)| {
                let id = SessionId::try_from_slice(&k)
                    .map_err(|_| StoreError::corrupt("session key is not a 32-byte id"))?;
                Ok((id, codec::decode_record(&v)?.into_record()))
            })
            .collect()
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let now = self.clock.now();
        let raw = guard(|| self.core.engine.stats(&codec::index_upper(now)))?;
        let mut stats = StoreStats::new(
            raw.records.saturating_sub(raw.expired),
            raw.expired,
            raw.total_bytes.saturating_sub(raw.expired_bytes),
        );
        let c = &self.core.counters;
        let commits = c.commits.load(Ordering::Relaxed);
        let ops = c.ops.load(Ordering::Relaxed);
        stats.details = vec![
            ("engine".into(), self.engine_kind.name().into()),
            ("durability".into(), format!("{:?}", self.durability)),
            ("file_bytes".into(), raw.file_bytes.to_string()),
            ("commits".into(), commits.to_string()),
            ("ops_committed".into(), ops.to_string()),
            (
                "largest_batch".into(),
                c.largest_batch.load(Ordering::Relaxed).to_string(),
            ),
            (
                "purge_index_entries_visited".into(),
                c.purge_visited.load(Ordering::Relaxed).to_string(),
            ),
            (
                "eventual_flushes".into(),
                c.syncs.load(Ordering::Relaxed).to_string(),
            ),
        ];
        Ok(stats)
    }
}
