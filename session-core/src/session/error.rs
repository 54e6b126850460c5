//! Errors of the Session layer.

use crate::error::{BoxError, StoreError};

/// What a [`Session`](super::Session) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed (I/O, engine, size limit). Corrupt records are not
    /// reported here: they are treated as "no session" and logged.
    #[error("session store error: {0}")]
    Store(#[from] StoreError),
    /// A value could not be encoded by the codec.
    #[error("cannot encode session value for key {key:?}: {source}")]
    Encode {
        /// The key being written.
        key: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },
    /// A stored value could not be decoded as the requested type (or was
    /// written by another codec).
    #[error("cannot decode session value for key {key:?}: {source}")]
    Decode {
        /// The key being read.
        key: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },
    /// A key longer than the envelope holds (65535 bytes).
    #[error("session key of {0} bytes is too long (limit 65535)")]
    KeyTooLong(usize),
    /// `finish` already ran for this session.
    #[error("the session was already finished")]
    Finished,
    /// Saving lost the compare-and-swap race this many times in a row.
    #[error("session save lost {0} concurrent-update races in a row")]
    TooManyConflicts(u32),
}

/// Result alias for Session-layer operations.
pub type SessionResult<T> = Result<T, SessionError>;

/// A [`SessionConfig`](super::SessionConfig) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TTL is zero.
    #[error("session ttl must be positive")]
    ZeroTtl,
    /// `renew_after` is not shorter than the TTL, so sessions would expire before renewal.
    #[error("renew_after ({renew_after:?}) must be shorter than the ttl ({ttl:?})")]
    RenewAfterTooLong {
        /// The configured renewal interval.
        renew_after: std::time::Duration,
        /// The configured TTL.
        ttl: std::time::Duration,
    },
    /// The absolute lifetime cap is zero.
    #[error("max_lifetime must be positive")]
    ZeroMaxLifetime,
    /// Zero save attempts would never write.
    #[error("max_save_attempts must be at least 1")]
    ZeroAttempts,
}
