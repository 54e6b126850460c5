//! The suite catches what it claims to: deliberately broken stores fail the
//! checks for the rules they break, with a message naming the rule.
use std::sync::Arc;
use std::time::Duration;

use conformance_tests::{Backend, Capabilities, Context, Outcome, run_check};
use session_core::{
    Clock, ManualClock, MemoryStore, Record, SessionId, SessionStore, StoreResult, Timestamp,
    Version, async_trait,
};

/// Which rule a mutant breaks.
#[derive(Clone, Copy)]
enum Bug {
    /// Judges expiry by a clock ten minutes late, so it serves expired records.
    ReturnsExpired,
    /// Treats `save(.., Some(v))` as an unconditional upsert.
    IgnoresExpected,
    /// Implements `touch` as a rewrite, which changes the version.
    TouchBumpsVersion,
    /// `create` is a load followed by an upsert: two racers both win.
    RacyCreate,
    /// Silently keeps only the first 1,000 bytes of a value.
    Truncates,
}

#[derive(Debug)]
struct LateClock(ManualClock);

impl Clock for LateClock {
    fn now(&self) -> Timestamp {
        self.0.now().saturating_sub(Duration::from_secs(600))
    }
}

struct Mutant {
    inner: MemoryStore,
    bug: Bug,
}

#[async_trait]
impl SessionStore for Mutant {
    fn clock(&self) -> &dyn Clock {
        self.inner.clock()
    }
    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        self.inner.load(id).await
    }
    async fn create(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<Version> {
        match self.bug {
            Bug::RacyCreate => {
                if self.inner.load(id).await?.is_some() {
                    return Err(session_core::StoreError::AlreadyExists);
                }
                tokio::task::yield_now().await;
                self.inner.save(id, data, exp, None).await
            }
            Bug::Truncates => {
                self.inner
                    .create(id, &data[..data.len().min(1_000)], exp)
                    .await
            }
            _ => self.inner.create(id, data, exp).await,
        }
    }
    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        exp: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        // Like real I/O, give other tasks a chance to run before the write lands.
        tokio::task::yield_now().await;
        match self.bug {
            Bug::IgnoresExpected => self.inner.save(id, data, exp, None).await,
            Bug::Truncates => {
                let data = &data[..data.len().min(1_000)];
                self.inner.save(id, data, exp, expected).await
            }
            _ => self.inner.save(id, data, exp, expected).await,
        }
    }
    async fn touch(&self, id: &SessionId, exp: Timestamp) -> StoreResult<bool> {
        match self.bug {
            Bug::TouchBumpsVersion => match self.inner.load(id).await? {
                Some(r) => {
                    self.inner.save(id, &r.data, exp, None).await?;
                    Ok(true)
                }
                None => Ok(false),
            },
            _ => self.inner.touch(id, exp).await,
        }
    }
    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        self.inner.delete(id).await
    }
    async fn delete_expired(&self) -> StoreResult<u64> {
        self.inner.delete_expired().await
    }
    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        self.inner.scan(after, limit).await
    }
    // `update` is the provided compare-and-swap loop, so it inherits the bugs.
}

struct MutantBackend(Bug);

#[async_trait]
impl Backend for MutantBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().max_value_size(64 * 1024)
    }
    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        let builder = MemoryStore::builder().max_value_size(64 * 1024);
        let builder = match self.0 {
            Bug::ReturnsExpired => builder.clock(LateClock(ctx.clock().clone())),
            _ => builder.clock(ctx.clock().clone()),
        };
        Ok(Arc::new(Mutant {
            inner: builder.build(),
            bug: self.0,
        }))
    }
}

/// Asserts that `check` fails on the mutant and that its message says `rule`.
fn caught(bug: Bug, check: &str, rule: &str) {
    match run_check(&MutantBackend(bug), check, check) {
        Outcome::Failed(msg) => assert!(
            msg.contains(rule),
            "{check} failed, but its message does not name the rule {rule:?}: {msg}"
        ),
        other => panic!("{check} did not catch the mutant: {other:?}"),
    }
}

#[test]
fn store_returning_expired_records_is_caught() {
    caught(
        Bug::ReturnsExpired,
        "load_expired_is_none",
        "an expired record must never be returned",
    );
    caught(
        Bug::ReturnsExpired,
        "expiry_boundary_is_expired",
        "expires_at == now is expired",
    );
    caught(
        Bug::ReturnsExpired,
        "delete_expired_counts_exactly_and_keeps_live",
        "exact count",
    );
}

#[test]
fn store_ignoring_expected_version_is_caught() {
    caught(
        Bug::IgnoresExpected,
        "save_with_stale_version_conflicts",
        "must be Conflict",
    );
    caught(
        Bug::IgnoresExpected,
        "save_with_version_on_absent_conflicts",
        "must be Conflict",
    );
    caught(
        Bug::IgnoresExpected,
        "concurrent_cas_one_winner_per_version",
        "exactly one winner",
    );
    caught(
        Bug::IgnoresExpected,
        "update_concurrent_increments_are_exact",
        "lost updates",
    );
}

#[test]
fn touch_that_rewrites_is_caught() {
    caught(
        Bug::TouchBumpsVersion,
        "touch_moves_expiry_keeps_data_and_version",
        "must not change the version",
    );
    caught(
        Bug::TouchBumpsVersion,
        "touch_then_cas_with_same_version_succeeds",
        "must keep the version",
    );
}

#[test]
fn racy_create_is_caught() {
    caught(
        Bug::RacyCreate,
        "concurrent_create_exactly_one_wins",
        "exactly one winner",
    );
}

#[test]
fn truncation_is_caught() {
    caught(
        Bug::Truncates,
        "value_largest_allowed_round_trips",
        "truncation",
    );
    caught(
        Bug::Truncates,
        "value_one_byte_over_limit_is_too_large",
        "must be TooLarge",
    );
}

#[test]
fn correct_store_passes_every_check_it_can_run() {
    let backend = MemoryBackend;
    let results = conformance_tests::run_all(&backend);
    assert!(results.len() >= 60);
    let mut skipped = Vec::new();
    for (name, outcome) in results {
        match outcome {
            Outcome::Passed => {}
            Outcome::Skipped(_) => skipped.push(name),
            Outcome::Failed(msg) => panic!("{name} failed on MemoryStore: {msg}"),
        }
    }
    assert_eq!(
        skipped,
        [
            "reopen_keeps_records",
            "reopen_keeps_deletes_and_touches",
            "reopen_versions_stay_valid_for_cas",
            "reopen_versions_never_repeat",
            "crash_keeps_acknowledged_writes",
            "multi_process_cas_increments_are_exact",
            "multi_process_create_race_has_one_winner",
            "multi_process_writes_are_visible_without_reopen",
        ]
    );
}

struct MemoryBackend;

#[async_trait]
impl Backend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().native_update().max_value_size(4096)
    }
    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        let store = MemoryStore::builder()
            .clock(ctx.clock().clone())
            .max_value_size(4096);
        Ok(Arc::new(store.build()))
    }
}
