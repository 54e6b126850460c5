//! The one error type every store returns.

use std::error::Error as StdError;

/// A boxed error cause, kept as the `source()` of a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything a [`SessionStore`](crate::SessionStore) operation can fail with.
///
/// Causes from engines and the OS are kept as [`source`](StdError::source), never
/// flattened into strings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` found a live record with that id.
    #[error("a live session with this id already exists")]
    AlreadyExists,
    /// `save(.., Some(v))` found no live record with version `v`.
    #[error("the session changed since it was read (version mismatch, or it is gone)")]
    Conflict,
    /// The value is larger than the store accepts; nothing was written.
    #[error("value of {size} bytes exceeds this store's limit of {limit} bytes")]
    TooLarge {
        /// Size of the rejected value in bytes.
        size: usize,
        /// The store's limit in bytes.
        limit: usize,
    },
    /// Stored bytes for one record (or page) failed validation. Other records are unaffected.
    #[error("corrupt session data: {0}")]
    Corrupt(#[source] BoxError),
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The engine or database failed.
    #[error("storage backend error: {0}")]
    Backend(#[source] BoxError),
    /// The store is misconfigured or was asked for something it cannot do.
    #[error("invalid store configuration: {0}")]
    Config(#[source] BoxError),
    /// The store was busy for too long (a lock or a retry budget ran out).
    #[error("store busy: {0}")]
    Busy(#[source] BoxError),
}

impl StoreError {
    /// A [`StoreError::Corrupt`] from a message or an error.
    pub fn corrupt(cause: impl Into<BoxError>) -> Self {
        Self::Corrupt(cause.into())
    }

    /// A [`StoreError::Backend`] from an engine's error.
    pub fn backend(cause: impl Into<BoxError>) -> Self {
        Self::Backend(cause.into())
    }

    /// A [`StoreError::Config`] from a message or an error.
    pub fn config(cause: impl Into<BoxError>) -> Self {
        Self::Config(cause.into())
    }

    /// A [`StoreError::Busy`] from a message or an error.
    pub fn busy(cause: impl Into<BoxError>) -> Self {
        Self::Busy(cause.into())
    }

    /// Whether retrying the same compare-and-swap after a fresh read can succeed.
    #[must_use]
    pub fn is_retryable_race(&self) -> bool {
        matches!(self, Self::Conflict | Self::AlreadyExists)
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_kept() {
        let io = std::io::Error::other("disk on fire");
        let e = StoreError::backend(io);
        let src = e.source().map(ToString::to_string);
        assert_eq!(src.as_deref(), Some("disk on fire"));
        let e = StoreError::corrupt("bad checksum");
        assert!(e.to_string().contains("bad checksum"));
    }

    #[test]
    fn is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<StoreError>();
    }
}
