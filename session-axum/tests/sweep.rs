//! The periodic purge keeps going after a failing run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use session_axum::spawn_expired_deletion;
use session_core::{
    Clock, ManualClock, MemoryStore, Record, SessionId, SessionStore, StoreError, StoreResult,
    Timestamp, Version, async_trait,
};

/// A real MemoryStore whose first `fail_first` purges fail (fault injection).
struct FailingPurges {
    inner: MemoryStore,
    fail_first: u32,
    purges: AtomicU32,
}

#[async_trait]
impl SessionStore for FailingPurges {
    fn clock(&self) -> &dyn Clock {
        self.inner.clock()
    }
    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        self.inner.load(id).await
    }
    async fn create(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<Version> {
        self.inner.create(id, data, exp).await
    }
    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        exp: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        self.inner.save(id, data, exp, expected).await
    }
    async fn touch(&self, id: &SessionId, exp: Timestamp) -> StoreResult<bool> {
        self.inner.touch(id, exp).await
    }
    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        self.inner.delete(id).await
    }
    async fn delete_expired(&self) -> StoreResult<u64> {
        let n = self.purges.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(StoreError::backend(format!("injected failure {n}")));
        }
        self.inner.delete_expired().await
    }
    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        self.inner.scan(after, limit).await
    }
}

#[tokio::test(start_paused = true)]
async fn keeps_purging_after_errors() -> StoreResult<()> {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let store = Arc::new(FailingPurges {
        inner: MemoryStore::builder().clock(clock.clone()).build(),
        fail_first: 3,
        purges: AtomicU32::new(0),
    });
    let soon = Timestamp::from_millis(1_001_000);
    for _ in 0..5 {
        store.create(&SessionId::generate(), b"x", soon).await?;
    }
    let keep = SessionId::generate();
    store
        .create(&keep, b"y", Timestamp::from_millis(9_000_000))
        .await?;
    clock.set(soon);

    let task = spawn_expired_deletion(store.clone(), Duration::from_secs(60));
    // Paused time: each sleep jumps the tokio clock; the task ticks every 60 s.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if store.purges.load(Ordering::SeqCst) > 3 {
            break;
        }
    }
    assert!(!task.is_finished(), "the task must survive failures");
    assert!(store.purges.load(Ordering::SeqCst) >= 4);
    let stats = store.inner.stats().await?;
    assert_eq!(
        (stats.live, stats.expired),
        (1, 0),
        "expired records purged after the failures"
    );
    assert!(store.load(&keep).await?.is_some());
    task.abort();
    Ok(())
}
