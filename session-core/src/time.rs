//! Time as stores see it: unix milliseconds from an injectable [`Clock`].
//!
//! A record is expired when `expires_at <= now`. Every store takes its clock from
//! its builder, so tests move time with [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: milliseconds since the unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The unix epoch.
    pub const EPOCH: Self = Self(0);
    /// The earliest representable instant.
    pub const MIN: Self = Self(i64::MIN);
    /// The latest representable instant ("never expires").
    pub const MAX: Self = Self(i64::MAX);

    /// From milliseconds since the epoch.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating at [`Timestamp::MIN`].
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub fn duration_since(self, earlier: Self) -> Duration {
        let ms = self.0.saturating_sub(earlier.0).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Whether a record expiring at `self` is expired at `now` (`self <= now`).
    #[must_use]
    pub fn is_expired_at(self, now: Self) -> bool {
        self <= now
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self::EPOCH.saturating_add(d),
            Err(e) => Self::EPOCH.saturating_sub(e.duration()),
        }
    }
}

/// A source of the current time. Shared by a store and everything that judges expiry.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_millis())))
    }

    /// Sets the time (it may go backwards).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }

    /// Moves the time forward by `d` and returns the new time.
    pub fn advance(&self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            })
            .unwrap_or_else(|t| t);
        Timestamp(prev.saturating_add(ms))
    }
}

impl Default for ManualClock {
    /// A clock stopped at the current system time.
    fn default() -> Self {
        Self::new(SystemClock.now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A shared clock handle, as stores keep it.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let c = ManualClock::new(Timestamp::from_millis(1_000));
        let d = c.clone();
        assert_eq!(
            c.advance(Duration::from_secs(2)),
            Timestamp::from_millis(3_000)
        );
        assert_eq!(d.now(), Timestamp::from_millis(3_000));
        d.set(Timestamp::from_millis(5));
        assert_eq!(c.now(), Timestamp::from_millis(5));
    }

    #[test]
    fn expiry_boundary_is_inclusive() {
        let t = Timestamp::from_millis(10);
        assert!(t.is_expired_at(Timestamp::from_millis(10)));
        assert!(!t.is_expired_at(Timestamp::from_millis(9)));
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(
            Timestamp::MAX.saturating_add(Duration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::MIN.saturating_sub(Duration::from_secs(1)),
            Timestamp::MIN
        );
        assert_eq!(
            Timestamp::EPOCH.saturating_add(Duration::MAX),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).duration_since(Timestamp::from_millis(9)),
            Duration::ZERO
        );
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > Timestamp::from_millis(1_577_836_800_000));
    }
}
