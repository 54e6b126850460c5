//! Periodic purge of expired records that keeps going after a failure.
//!
//! tower-sessions' `continuously_delete_expired` returns at the first error,
//! so one database hiccup stops purging for the life of the process. Here an
//! error is logged (warn, with the run of consecutive failures) and the next
//! tick tries again.

use std::sync::Arc;
use std::time::Duration;

use session_core::SessionStore;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// The shortest period accepted; shorter ones are raised to it (a zero
/// period would spin).
pub const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(10);

/// Runs `store.delete_expired()` every `period`, forever.
///
/// The first run happens one `period` after the call. Each run's count is
/// logged at debug (info when something was removed); an error is logged at
/// warn and the loop goes on. Ticks missed while a slow run was in progress
/// are not made up (one run at a time, `period` apart).
pub async fn delete_expired_every(store: Arc<dyn SessionStore>, period: Duration) {
    let period = period.max(MIN_SWEEP_PERIOD);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval.tick().await; // the first tick is immediate
    let mut failures: u64 = 0;
    loop {
        interval.tick().await;
        match store.delete_expired().await {
            Ok(0) => {
                failures = 0;
                tracing::debug!("no expired sessions to delete");
            }
            Ok(n) => {
                failures = 0;
                tracing::info!(deleted = n, "deleted expired sessions");
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(
                    error = %e,
                    consecutive_failures = failures,
                    retry_in = ?period,
                    "deleting expired sessions failed; will retry"
                );
            }
        }
    }
}

/// Spawns [`delete_expired_every`] on the current tokio runtime.
///
/// Keep the handle to stop it with [`JoinHandle::abort`]; dropping the handle
/// lets the task run on.
///
/// # Panics
///
/// If called outside a tokio runtime (as [`tokio::spawn`]).
#[must_use = "the handle is the only way to stop the task"]
pub fn spawn_expired_deletion(store: Arc<dyn SessionStore>, period: Duration) -> JoinHandle<()> {
    tokio::spawn(delete_expired_every(store, period))
}
