//! A complete store in about 40 lines that passes the conformance suite
//! (the example in the README; `.ci/run` checks the two stay identical).
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{Clock, ManualClock, Record, SessionId, SessionStore, StoreError, StoreResult};
use session_core::{Timestamp, Version, async_trait};

#[rustfmt::skip]
#[derive(Default)]
struct Inner { map: BTreeMap<SessionId, Record>, last_version: u64 }

#[rustfmt::skip]
struct TinyStore { inner: Mutex<Inner>, clock: ManualClock }

impl TinyStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner, Timestamp) -> T) -> T {
        f(&mut self.inner.lock().unwrap(), self.clock.now())
    }
}

fn live<'a>(i: &'a Inner, id: &SessionId, now: Timestamp) -> Option<&'a Record> {
    i.map.get(id).filter(|r| r.expires_at > now)
}

fn put(i: &mut Inner, id: &SessionId, data: &[u8], expires_at: Timestamp) -> Version {
    i.last_version += 1; // store-wide counter: a version is never reused
    let version = Version::from_raw(i.last_version);
    i.map.insert(
        *id,
        Record {
            data: data.to_vec(),
            expires_at,
            version,
        },
    );
    version
}

#[rustfmt::skip]
#[async_trait]
impl SessionStore for TinyStore {
    fn clock(&self) -> &dyn Clock { &self.clock }
    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        Ok(self.with(|i, now| live(i, id, now).cloned()))
    }
    async fn create(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<Version> {
        self.with(|i, now| match live(i, id, now) {
            Some(_) => Err(StoreError::AlreadyExists),
            None => Ok(put(i, id, data, exp)),
        })
    }
    async fn save(&self, id: &SessionId, data: &[u8], exp: Timestamp, expected: Option<Version>)
        -> StoreResult<Version> {
        self.with(|i, now| match expected {
            Some(v) if live(i, id, now).map(|r| r.version) != Some(v) => Err(StoreError::Conflict),
            _ => Ok(put(i, id, data, exp)),
        })
    }
    async fn touch(&self, id: &SessionId, exp: Timestamp) -> StoreResult<bool> {
        Ok(self.with(|i, now| {
            i.map.get_mut(id).filter(|r| r.expires_at > now).map(|r| r.expires_at = exp).is_some()
        }))
    }
    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        Ok(self.with(|i, now| i.map.remove(id).is_some_and(|r| r.expires_at > now)))
    }
    async fn delete_expired(&self) -> StoreResult<u64> {
        Ok(self.with(|i, now| {
            let before = i.map.len();
            i.map.retain(|_, r| r.expires_at > now);
            (before - i.map.len()) as u64
        }))
    }
    async fn scan(&self, after: Option<&SessionId>, limit: usize)
        -> StoreResult<Vec<(SessionId, Record)>> {
        Ok(self.with(|i, _| {
            let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let page = i.map.range((from, std::ops::Bound::Unbounded)).take(limit);
            page.map(|(id, r)| (*id, r.clone())).collect()
        }))
    }
}

struct Tiny;

#[rustfmt::skip]
#[async_trait]
impl Backend for Tiny {
    fn capabilities(&self) -> Capabilities { Capabilities::new() }
    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        let clock = ctx.clock().clone();
        Ok(Arc::new(TinyStore { inner: Mutex::default(), clock }))
    }
}

conformance_tests::suite!(Tiny);
