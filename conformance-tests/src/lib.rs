//! The conformance suite for [`SessionStore`] implementations.
//!
//! A backend — ours or anyone's — proves it keeps the store contract by
//! implementing [`Backend`] (how to open the store for a test [`Context`], and
//! which [`Capabilities`] it claims) and calling [`suite!`] once in its `tests/`:
//!
//! ```ignore
//! struct Mine;
//!
//! #[conformance_tests::async_trait]
//! impl conformance_tests::Backend for Mine {
//!     fn capabilities(&self) -> conformance_tests::Capabilities {
//!         conformance_tests::Capabilities::new().persistent().max_value_size(1 << 20)
//!     }
//!     async fn open(&self, ctx: &conformance_tests::Context)
//!         -> session_core::StoreResult<std::sync::Arc<dyn session_core::SessionStore>>
//!     {
//!         Ok(std::sync::Arc::new(MyStore::open(ctx.dir(), ctx.clock().clone())?))
//!     }
//! }
//!
//! conformance_tests::suite!(Mine);
//! ```
//!
//! The macro expands to one `#[test]` per check, so a failure names the rule it
//! broke. Checks that need a capability the backend does not claim pass without
//! running and are listed on stderr as `SKIP`. Multi-process and crash checks
//! re-run the test binary itself as child processes (never `fork`).
//!
//! Checks can also be run programmatically with [`run_check`] / [`run_all`], which
//! is how this crate tests that the suite catches broken stores.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use async_trait::async_trait;
use session_core::{ManualClock, SessionStore, StoreError, StoreResult, Timestamp};

mod checks;
mod child;
mod session_checks;

pub use checks::CHECKS;

/// What a backend claims; checks needing an unclaimed capability are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Capabilities {
    pub(crate) persistent: bool,
    pub(crate) multi_process: bool,
    pub(crate) native_update: bool,
    pub(crate) max_value_size: Option<usize>,
}

impl Capabilities {
    /// Claims nothing: in-process, not persistent, no value-size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Data survives dropping the store and opening it again with the same
    /// [`Context`] (also enables the crash check).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Several processes may open the same store at once and operations stay
    /// linearizable across them.
    pub fn multi_process(mut self) -> Self {
        self.multi_process = true;
        self
    }

    /// `update` is overridden with a native atomic path (documentational: the
    /// same checks run either way, and the report names it).
    pub fn native_update(mut self) -> Self {
        self.native_update = true;
        self
    }

    /// Values larger than `bytes` are rejected with `TooLarge`; values up to it
    /// must round-trip. Without a limit, the suite tries a 4 MiB value.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = Some(bytes);
        self
    }
}

/// Requirements of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Needs {
    /// Runs on every backend.
    Nothing,
    /// Needs [`Capabilities::persistent`].
    Persistent,
    /// Needs [`Capabilities::multi_process`].
    MultiProcess,
    /// Needs [`Capabilities::max_value_size`].
    SizeLimit,
}

impl Needs {
    fn met_by(self, caps: &Capabilities) -> bool {
        match self {
            Needs::Nothing => true,
            Needs::Persistent => caps.persistent,
            Needs::MultiProcess => caps.multi_process,
            Needs::SizeLimit => caps.max_value_size.is_some(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Needs::Nothing => "nothing",
            Needs::Persistent => "a persistent store",
            Needs::MultiProcess => "a multi-process store",
            Needs::SizeLimit => "a declared value-size limit",
        }
    }
}

/// What a test gives the backend: a clock to judge expiry by, a fresh
/// directory, and a namespace unique to this test (a table name, a file
/// prefix: `[a-z0-9_]`, at most 16 characters, starting with a letter).
///
/// Opening twice with the same context must reach the same data.
#[derive(Debug, Clone)]
pub struct Context {
    clock: ManualClock,
    dir: PathBuf,
    namespace: String,
    // Keeps the directory alive in the parent; children borrow the parent's.
    _tmp: Option<Arc<tempfile::TempDir>>,
}

impl Context {
    /// A fresh context: new temp dir, random namespace, clock at a fixed
    /// point in 2026 (so tests never depend on the wall clock).
    ///
    /// # Panics
    ///
    /// If no temporary directory can be created.
    #[must_use]
    pub fn fresh() -> Self {
        #[allow(clippy::expect_used)]
        let tmp = tempfile::Builder::new()
            .prefix("conformance-")
            .tempdir()
            .expect("cannot create a temporary directory for a conformance check");
        let id = session_core::SessionId::generate().to_hex();
        Self {
            clock: ManualClock::new(Timestamp::from_millis(START_MS)),
            dir: tmp.path().to_path_buf(),
            namespace: format!("cf_{}", &id[..12]),
            _tmp: Some(Arc::new(tmp)),
        }
    }

    pub(crate) fn borrowed(dir: PathBuf, namespace: String, now: Timestamp) -> Self {
        Self {
            clock: ManualClock::new(now),
            dir,
            namespace,
            _tmp: None,
        }
    }

    /// The clock the store must judge expiry by.
    #[must_use]
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// A directory that exists for this test only (removed afterwards).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name unique to this test, safe as an SQL identifier or file name.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// 2026-01-01T00:00:00Z, where every context's clock starts.
pub const START_MS: i64 = 1_767_225_600_000;

/// A backend under test: how to open its store for a [`Context`].
#[async_trait]
pub trait Backend: Send + Sync {
    /// What the store claims; see [`Capabilities`].
    fn capabilities(&self) -> Capabilities;

    /// Opens (or re-opens) the store for `ctx`. The store must take its clock from
    /// `ctx.clock()`. Opening again with an equal context must reach the same data
    /// for persistent stores; multi-process stores are opened from child processes
    /// with an equal context while the parent's store is open.
    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>>;
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for &B {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        (**self).open(ctx).await
    }
}

/// A check's failure: which rule broke and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let mut msg = format!("unexpected store error: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        Failure(msg)
    }
}

/// Result of one check body.
pub type CheckResult = Result<(), Failure>;

/// Fails the enclosing check with a message naming the rule unless `cond` holds.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::Failure(format!($($msg)+)));
        }
    };
}

type CheckFn =
    for<'a> fn(&'a Harness<'a>) -> Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// One rule of the contract.
pub struct Check {
    /// The check's name, which is also its `#[test]` name.
    pub name: &'static str,
    /// What it needs of the backend.
    pub needs: Needs,
    pub(crate) run: CheckFn,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish()
    }
}

/// What a check gets: the backend, its context, and the open store.
pub struct Harness<'b> {
    backend: &'b dyn Backend,
    ctx: Context,
    caps: Capabilities,
    store: Mutex<Option<Arc<dyn SessionStore>>>,
    test_name: String,
}

impl<'b> Harness<'b> {
    async fn new(backend: &'b dyn Backend, test_name: String) -> Result<Self, Failure> {
        let ctx = Context::fresh();
        let store = backend
            .open(&ctx)
            .await
            .map_err(|e| Failure(format!("backend failed to open a fresh store: {e}")))?;
        Ok(Self {
            caps: backend.capabilities(),
            backend,
            ctx,
            store: Mutex::new(Some(store)),
            test_name,
        })
    }

    /// The open store.
    ///
    /// # Panics
    ///
    /// Only if called while [`reopen`](Self::reopen) is between close and open.
    #[must_use]
    pub fn store(&self) -> Arc<dyn SessionStore> {
        #[allow(clippy::expect_used)]
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .expect("store is closed")
    }

    /// Drops the harness's handle to the store and opens it again. The caller must
    /// not hold other handles (so single-process engines release their locks).
    ///
    /// # Errors
    ///
    /// A failure if the store cannot be reopened.
    pub async fn reopen(&self) -> Result<Arc<dyn SessionStore>, Failure> {
        self.close();
        self.open_again().await
    }

    pub(crate) fn close(&self) {
        let old = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(old);
    }

    pub(crate) async fn open_again(&self) -> Result<Arc<dyn SessionStore>, Failure> {
        // Give a store that closes in a background task a moment to let go.
        let mut last = None;
        for _ in 0..50 {
            match self.backend.open(&self.ctx).await {
                Ok(s) => {
                    *self.store.lock().unwrap_or_else(PoisonError::into_inner) = Some(s.clone());
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Failure(format!(
            "reopening the store failed: {}",
            last.map_or_else(String::new, |e| e.to_string())
        )))
    }

    /// The test's context.
    #[must_use]
    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// The test's clock.
    #[must_use]
    pub fn clock(&self) -> &ManualClock {
        &self.ctx.clock
    }

    /// The current time on the test's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        session_core::Clock::now(&self.ctx.clock)
    }

    /// `now + secs` seconds.
    #[must_use]
    pub fn in_secs(&self, secs: u64) -> Timestamp {
        self.now().saturating_add(Duration::from_secs(secs))
    }

    /// The capabilities the backend claims.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    pub(crate) fn test_name(&self) -> &str {
        &self.test_name
    }
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store kept the rule.
    Passed,
    /// The store broke the rule; the message says how.
    Failed(String),
    /// The backend does not claim what the check needs.
    Skipped(&'static str),
}

/// Finds a check by name.
#[must_use]
pub fn find_check(name: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.name == name)
}

/// Runs one check against `backend` on a fresh multi-threaded runtime.
///
/// `test_name` is the libtest name of the `#[test]` running it, used to re-run
/// the binary as a child process for multi-process checks.
///
/// # Panics
///
/// If `name` is not a check, or no runtime can be built.
pub fn run_check(backend: &dyn Backend, name: &str, test_name: &str) -> Outcome {
    #[allow(clippy::panic)]
    let Some(check) = find_check(name) else {
        panic!("no conformance check named {name}");
    };
    if !check.needs.met_by(&backend.capabilities()) {
        return Outcome::Skipped(check.needs.describe());
    }
    #[allow(clippy::expect_used)]
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime");
    let outcome = rt.block_on(async {
        let harness = match Harness::new(backend, test_name.to_string()).await {
            Ok(h) => h,
            Err(f) => return Outcome::Failed(f.0),
        };
        let fut = (check.run)(&harness);
        let result = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(Failure(format!(
                "did not finish within {}s (deadlock or lost wake-up?)",
                CHECK_TIMEOUT.as_secs()
            ))),
        };
        harness.close();
        match result {
            Ok(()) => Outcome::Passed,
            Err(f) => Outcome::Failed(f.0),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    outcome
}

/// Longest a single check may run.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs every check and returns `(name, outcome)` pairs.
pub fn run_all(backend: &dyn Backend) -> Vec<(&'static str, Outcome)> {
    CHECKS
        .iter()
        .map(|c| (c.name, run_check(backend, c.name, c.name)))
        .collect()
}

/// The body of each generated `#[test]`: runs the check (or, inside a child
/// process started by a multi-process check, the child's part) and panics with
/// the broken rule on failure.
///
/// # Panics
///
/// When the check fails — that is how the test fails.
#[doc(hidden)]
pub fn __run_test(backend: &dyn Backend, name: &str, module_path: &str) {
    // libtest names tests by module path without the crate's own name.
    let test_name = match module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::{name}"),
        None => name.to_string(),
    };
    if child::is_child_for(name) {
        child::run_child(backend, name);
    }
    match run_check(backend, name, &test_name) {
        Outcome::Passed => {}
        Outcome::Skipped(why) => {
            // Written to the real stderr, not through libtest's capture, so the
            // list of skipped checks is always visible.
            let line = format!("conformance: SKIP {name} (needs {why})\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        #[allow(clippy::panic)]
        Outcome::Failed(msg) => panic!("conformance check `{name}` failed: {msg}"),
    }
}

/// Expands to one `#[test]` per conformance check, run against the backend
/// expression given (evaluated afresh in each test). Call it once per module.
#[macro_export]
macro_rules! suite {
    ($backend:expr) => {
        $crate::__suite_tests!(($backend)
            load_absent_is_none
            load_live_returns_what_was_written
            load_expired_is_none
            expiry_boundary_is_expired
            expiry_one_ms_before_boundary_is_live
            create_returns_version_seen_by_load
            create_on_live_id_already_exists
            create_on_expired_id_replaces_it
            create_already_expired_is_invisible
            create_distinct_ids_are_independent
            save_none_inserts_when_absent
            save_none_overwrites_live
            save_none_replaces_expired
            save_with_current_version_gives_new_version
            save_with_stale_version_conflicts
            save_with_version_on_absent_conflicts
            save_with_version_on_expired_conflicts
            save_into_the_past_expires_the_record
            versions_never_repeat_across_delete_and_recreate
            versions_never_repeat_across_many_saves
            touch_moves_expiry_keeps_data_and_version
            touch_absent_is_false
            touch_expired_is_false_and_does_not_resurrect
            touch_into_the_past_expires_the_record
            touch_then_cas_with_same_version_succeeds
            delete_live_is_true_then_absent
            delete_absent_is_false
            delete_is_idempotent
            delete_expired_record_is_false
            delete_then_create_succeeds
            delete_expired_counts_exactly_and_keeps_live
            delete_expired_on_empty_store_is_zero
            delete_expired_counts_the_boundary
            delete_expired_twice_second_is_zero
            delete_expired_spares_touched_records
            update_absent_sees_none_and_creates
            update_live_sees_record_and_writes
            update_keep_writes_nothing
            update_expired_sees_none
            update_concurrent_increments_are_exact
            value_empty_round_trips
            value_every_byte_round_trips
            value_largest_allowed_round_trips
            value_one_byte_over_limit_is_too_large
            value_too_large_on_create_writes_nothing
            ten_thousand_sessions_round_trip
            ids_sharing_a_prefix_are_independent
            extreme_ids_round_trip
            concurrent_create_exactly_one_wins
            concurrent_cas_one_winner_per_version
            concurrent_distinct_ids_do_not_interfere
            scan_pages_cover_every_live_record_in_order
            stats_count_live_and_expired
            works_through_arc_dyn
            session_layer_login_flow
            session_layer_concurrent_requests_merge
            reopen_keeps_records
            reopen_keeps_deletes_and_touches
            reopen_versions_stay_valid_for_cas
            reopen_versions_never_repeat
            crash_keeps_acknowledged_writes
            multi_process_cas_increments_are_exact
            multi_process_create_race_has_one_winner
            multi_process_writes_are_visible_without_reopen
        );
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! __suite_tests {
    (($backend:expr) $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                $crate::__run_test(&$backend, stringify!($name), module_path!());
            }
        )*

        #[test]
        fn conformance_suite_is_complete() {
            $crate::__assert_complete(&[$(stringify!($name)),*]);
        }
    };
}

/// Checks that the macro's list and the check table agree.
///
/// # Panics
///
/// If they differ (a bug in this crate).
#[doc(hidden)]
pub fn __assert_complete(names: &[&str]) {
    let mut table: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
    let mut listed = names.to_vec();
    table.sort_unstable();
    listed.sort_unstable();
    assert_eq!(table, listed, "suite! macro and CHECKS table disagree");
}
