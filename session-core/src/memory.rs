//! [`MemoryStore`]: the in-process reference store.
//!
//! One `BTreeMap` behind one mutex. It is correct and fast, and it is
//! **single-process**: nothing survives a restart and other processes cannot see
//! it. Use it in tests and for single-instance apps that accept losing sessions on
//! restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::error::{StoreError, StoreResult};
use crate::id::SessionId;
use crate::record::{Record, Version};
use crate::store::{SessionStore, StoreStats, Update, UpdateFn, Updated};
use crate::time::{Clock, SharedClock, SystemClock, Timestamp};

/// Default value-size limit of a [`MemoryStore`]: 16 MiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;

/// An in-process store: a sorted map behind a mutex. See the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<SessionId, Record>>,
    // Store-wide counter: a version is never handed out twice, so no ABA even
    // across delete and re-create.
    next_version: AtomicU64,
    clock: SharedClock,
    max_value_size: usize,
}

/// Builder for [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    clock: SharedClock,
    max_value_size: usize,
}

impl MemoryStoreBuilder {
    /// Judge expiry by this clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Judge expiry by this shared clock.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Reject values larger than `bytes` with [`StoreError::TooLarge`]
    /// (default [`DEFAULT_MEMORY_LIMIT`]).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Builds the store.
    #[must_use]
    pub fn build(self) -> MemoryStore {
        MemoryStore {
            map: Mutex::new(BTreeMap::new()),
            next_version: AtomicU64::new(1),
            clock: self.clock,
            max_value_size: self.max_value_size,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl MemoryStore {
    /// A store with the system clock and the default size limit.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder with the defaults.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock),
            max_value_size: DEFAULT_MEMORY_LIMIT,
        }
    }

    /// The largest value this store accepts.
    #[must_use]
    pub fn max_value_size(&self) -> usize {
        self.max_value_size
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<SessionId, Record>> {
        // No code path panics while holding the lock, and the map is never left
        // half-updated, so a poisoned lock still guards consistent data.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh_version(&self) -> Version {
        Version::from_raw(self.next_version.fetch_add(1, Ordering::Relaxed))
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

    fn live<'m>(
        map: &'m BTreeMap<SessionId, Record>,
        id: &SessionId,
        now: Timestamp,
    ) -> Option<&'m Record> {
        map.get(id).filter(|r| !r.is_expired_at(now))
    }

    fn put(
        &self,
        map: &mut BTreeMap<SessionId, Record>,
        id: &SessionId,
        data: Vec<u8>,
        expires_at: Timestamp,
    ) -> Version {
        let version = self.fresh_version();
        map.insert(
            *id,
            Record {
                data,
                expires_at,
                version,
            },
        );
        version
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        let now = self.clock.now();
        Ok(Self::live(&self.lock(), id, now).cloned())
    }

    async fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version> {
        self.check_size(data)?;
        let now = self.clock.now();
        let mut map = self.lock();
        if Self::live(&map, id, now).is_some() {
            return Err(StoreError::AlreadyExists);
        }
        Ok(self.put(&mut map, id, data.to_vec(), expires_at))
    }

    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        self.check_size(data)?;
        let now = self.clock.now();
        let mut map = self.lock();
        if let Some(v) = expected
            && Self::live(&map, id, now).map(|r| r.version) != Some(v)
        {
            return Err(StoreError::Conflict);
        }
        Ok(self.put(&mut map, id, data.to_vec(), expires_at))
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
        let now = self.clock.now();
        let mut map = self.lock();
        match map.get_mut(id).filter(|r| !r.is_expired_at(now)) {
            Some(rec) => {
                rec.expires_at = expires_at;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .remove(id)
            .is_some_and(|r| !r.is_expired_at(now)))
    }

    async fn delete_expired(&self) -> StoreResult<u64> {
        let now = self.clock.now();
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, r| !r.is_expired_at(now));
        Ok((before - map.len()) as u64)
    }

    async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
        let now = self.clock.now();
        let mut map = self.lock();
        match f(Self::live(&map, id, now)) {
            Update::Keep => Ok(Updated::Unchanged),
            Update::Put { data, expires_at } => {
                self.check_size(&data)?;
                Ok(Updated::Written(self.put(&mut map, id, data, expires_at)))
            }
        }
    }

    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .lock()
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(id, r)| (*id, r.clone()))
            .collect())
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let now = self.clock.now();
        let map = self.lock();
        let mut stats = StoreStats::default();
        for rec in map.values() {
            if rec.is_expired_at(now) {
                stats.expired += 1;
            } else {
                stats.live += 1;
                stats.live_bytes += rec.data.len() as u64;
            }
        }
        Ok(stats)
    }
}
