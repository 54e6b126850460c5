//! The store contract: the one async, object-safe trait every backend implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;

use crate::error::{StoreError, StoreResult};
use crate::id::SessionId;
use crate::record::{Record, Version};
use crate::time::{Clock, Timestamp};

/// What an [`update`](SessionStore::update) closure decides after seeing the live record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Write nothing.
    Keep,
    /// Write these bytes with this expiry (creating the record if there is none).
    Put {
        /// The new value.
        data: Vec<u8>,
        /// The new expiry.
        expires_at: Timestamp,
    },
}

/// What an [`update`](SessionStore::update) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// The closure returned [`Update::Keep`]; nothing was written.
    Unchanged,
    /// The closure's value was written and got this version.
    Written(Version),
}

/// The closure type [`SessionStore::update`] takes. It may be called more than
/// once (once per attempt); only the call whose result was written counts.
pub type UpdateFn<'a> = dyn FnMut(Option<&Record>) -> Update + Send + 'a;

/// Counts an operator wants to see. Store-specific figures go in `details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Records that are not expired.
    pub live: u64,
    /// Records that are expired but not yet removed by `delete_expired`.
    pub expired: u64,
    /// Total size of the values of live records, in bytes.
    pub live_bytes: u64,
    /// Store-specific figures as `(name, value)` pairs, e.g. `("evicted_live", "12")`.
    pub details: Vec<(String, String)>,
}

impl StoreStats {
    /// Stats with the three counts set and no details.
    #[must_use]
    pub fn new(live: u64, expired: u64, live_bytes: u64) -> Self {
        Self {
            live,
            expired,
            live_bytes,
            details: Vec::new(),
        }
    }
}

/// How many times the provided [`SessionStore::update`] retries before giving up with
/// [`StoreError::Busy`]. Every failed attempt means another writer succeeded, so
/// the system as a whole always progresses; the cap only bounds one caller's wait.
pub const UPDATE_MAX_ATTEMPTS: u32 = 1_000;

/// A server-side session store: opaque bytes per [`SessionId`], with expiry and
/// compare-and-swap versions.
///
/// Stores know nothing of cookies, flash or serialization; the Session layer does.
/// All methods judge expiry by the store's own [`Clock`](crate::Clock): a record
/// with `expires_at <= now` is *expired*, and an expired record behaves exactly
/// like an absent one for every method (it may still occupy space until
/// [`delete_expired`](Self::delete_expired) removes it).
///
/// Operations on one id are linearizable across threads (and across processes
/// for stores that say so). The trait is object safe: `Arc<dyn SessionStore>` is
/// how applications usually hold a store.
///
/// The `conformance-tests` crate checks every rule stated here.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The clock this store judges expiry by. Layers above a store (sessions,
    /// maintenance tools) read time from here so they agree with the store.
    fn clock(&self) -> &dyn Clock;

    /// Reads the live record for `id`.
    ///
    /// Returns `None` when there is no record **or** it is expired; an expired
    /// record is never returned.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored bytes for this id fail validation
    /// (other ids are unaffected); [`StoreError::Io`] / [`StoreError::Backend`]
    /// when the engine fails.
    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>>;

    /// Inserts a new record and returns its version.
    ///
    /// An expired record with the same id is replaced as if absent.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`] if a live record has this id (it is left
    /// untouched); [`StoreError::TooLarge`] if `data` exceeds the store's limit
    /// (nothing is written); engine failures as for [`load`](Self::load).
    async fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version>;

    /// Writes a record and returns its new version, which differs from every
    /// earlier version of this id.
    ///
    /// With `expected == None` this is an unconditional upsert. With
    /// `Some(v)` it writes only if the live record's version is `v`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when `expected` is `Some(v)` and the record is
    /// absent, expired, or has another version (nothing is written);
    /// [`StoreError::TooLarge`] if `data` exceeds the store's limit (the old
    /// value stays); engine failures as for [`load`](Self::load).
    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version>;

    /// Moves a live record's expiry to `expires_at` without changing its data or
    /// its version. Returns `false` (and changes nothing) if the record is absent
    /// or expired.
    ///
    /// # Errors
    ///
    /// Engine failures as for [`load`](Self::load).
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool>;

    /// Removes the record. Returns `true` if a live record was removed; `false`
    /// if it was absent or expired (an expired record may be removed too).
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// Engine failures as for [`load`](Self::load).
    async fn delete(&self, id: &SessionId) -> StoreResult<bool>;

    /// Removes every record with `expires_at <= now` and returns exactly how many
    /// it removed. Live records are untouched. Where the engine allows an index,
    /// the cost grows with the number expired, not the number stored.
    ///
    /// # Errors
    ///
    /// Engine failures as for [`load`](Self::load). Records removed before a
    /// failure stay removed.
    async fn delete_expired(&self) -> StoreResult<u64>;

    /// Atomic read-modify-write: calls `f` with the live record (or `None`) and
    /// writes what it returns, as if no other writer ran in between.
    ///
    /// The provided implementation is a compare-and-swap loop over
    /// [`load`](Self::load), [`create`](Self::create) and
    /// [`save`](Self::save)`(.., Some(v))`, so `f` may run several times. Stores
    /// with a native atomic path (a transaction, a page lock) override it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] after [`UPDATE_MAX_ATTEMPTS`] lost races;
    /// [`StoreError::TooLarge`] and engine failures as for [`save`](Self::save).
    async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
        for attempt in 0..UPDATE_MAX_ATTEMPTS {
            let current = self.load(id).await?;
            let (data, expires_at) = match f(current.as_ref()) {
                Update::Keep => return Ok(Updated::Unchanged),
                Update::Put { data, expires_at } => (data, expires_at),
            };
            let written = match &current {
                Some(rec) => self.save(id, &data, expires_at, Some(rec.version)).await,
                None => self.create(id, &data, expires_at).await,
            };
            match written {
                Ok(v) => return Ok(Updated::Written(v)),
                Err(e) if e.is_retryable_race() => {
                    // Let the winner's task finish before we read again.
                    for _ in 0..attempt.min(8) {
                        YieldNow(false).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::busy(format!(
            "update lost {UPDATE_MAX_ATTEMPTS} compare-and-swap races in a row"
        )))
    }

    /// Lists stored records with ids strictly greater than `after`, in ascending id
    /// order, at most `limit` of them: a keyset page for export, copy and
    /// inspection. Every live record appears in exactly one page of a full walk
    /// (if it is neither written nor deleted during the walk); expired records that
    /// have not been removed yet may appear too, so callers judge `expires_at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a record in the page fails validation (a store
    /// may instead skip it and report it in [`stats`](Self::stats)); engine
    /// failures as for [`load`](Self::load).
    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>>;

    /// Live and expired counts and sizes, plus store-specific figures.
    ///
    /// The provided implementation walks [`scan`](Self::scan) and judges expiry
    /// by [`clock`](Self::clock) (stores override it with something cheaper). The figures are a
    /// snapshot that concurrent writers may already have changed.
    ///
    /// # Errors
    ///
    /// As for [`scan`](Self::scan).
    async fn stats(&self) -> StoreResult<StoreStats> {
        let now = self.clock().now();
        let mut stats = StoreStats::default();
        let mut after: Option<SessionId> = None;
        loop {
            let page = self.scan(after.as_ref(), 1_000).await?;
            for (_, rec) in &page {
                if rec.is_expired_at(now) {
                    stats.expired += 1;
                } else {
                    stats.live += 1;
                    stats.live_bytes += rec.data.len() as u64;
                }
            }
            match page.last() {
                Some((id, _)) if page.len() == 1_000 => after = Some(*id),
                _ => return Ok(stats),
            }
        }
    }
}

/// Yields to the executor once; runtime-agnostic (no timer, no runtime handle).
pub(crate) struct YieldNow(pub(crate) bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            fn clock(&self) -> &dyn Clock {
                (**self).clock()
            }
            async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
                (**self).load(id).await
            }
            async fn create(
                &self,
                id: &SessionId,
                data: &[u8],
                expires_at: Timestamp,
            ) -> StoreResult<Version> {
                (**self).create(id, data, expires_at).await
            }
            async fn save(
                &self,
                id: &SessionId,
                data: &[u8],
                expires_at: Timestamp,
                expected: Option<Version>,
            ) -> StoreResult<Version> {
                (**self).save(id, data, expires_at, expected).await
            }
            async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
                (**self).touch(id, expires_at).await
            }
            async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
                (**self).delete(id).await
            }
            async fn delete_expired(&self) -> StoreResult<u64> {
                (**self).delete_expired().await
            }
            async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
                (**self).update(id, f).await
            }
            async fn scan(
                &self,
                after: Option<&SessionId>,
                limit: usize,
            ) -> StoreResult<Vec<(SessionId, Record)>> {
                (**self).scan(after, limit).await
            }
            async fn stats(&self) -> StoreResult<StoreStats> {
                (**self).stats().await
            }
        }
    };
}

forward_store!(Arc<S>);
forward_store!(Box<S>);
