//! The Session layer: Catalyst's session semantics over any
//! [`SessionStore`](crate::SessionStore), without its lost-update race.
//!
//! A [`SessionManager`] holds an `Arc<dyn SessionStore>`, a [`SessionConfig`]
//! and a [`Codec`]. Per request, [`SessionManager::load`] gives a lazy
//! [`Session`]; [`Session::finish`] saves and returns the cookie [`Outcome`].
//!
//! # Invariants
//!
//! * **Tokens.** The cookie holds a 256-bit [`SessionToken`] from the OS
//!   CSPRNG; the store key is its SHA-256, so a copy of the store holds no
//!   usable token. A malformed cookie is treated as no session.
//! * **Lazy.** An untouched session costs zero store calls; a new session that
//!   stays empty is never written.
//! * **Expiry.** Idle TTL (default 7200 s), judged by the store's clock.
//!   Renewal is written only once it moves the expiry by `renew_after`, and
//!   then as a `touch` if nothing else changed. Optional absolute cap counted
//!   from creation. Per-key expiry with [`Session::expire_key`].
//! * **Flash.** Stored inside the session record. A flash key survives until a
//!   request reads it and neither sets it again nor keeps it.
//! * **No lost updates.** Writes are `save(.., Some(version))`. On `Conflict`
//!   the record is re-read and this request's own per-key changes (inserts,
//!   removes, [`Session::update_with`] closures, per-key expiries, flash sets
//!   and consumption) are applied again; different keys from concurrent
//!   requests all survive, the same key is last-writer-wins unless written
//!   through `update_with`.
//! * **Untrusted bytes.** Records that fail to decode are "no session"
//!   (logged at warn), never a panic.
//!
//! # Record format
//!
//! A versioned binary envelope; see [`StoredSession`] for the layout and
//! [`StoredSession::decode`] to inspect a raw record (e.g. `sessionctl show`).
//!
//! # Where work runs
//!
//! Inline on the caller's task. The layer's own work per request (a SHA-256 of
//! 32 bytes, decoding and encoding a small envelope) measured 0.9–1.7 µs on
//! top of the raw `MemoryStore` calls (`tests/session_overhead.rs`, release),
//! far below the ≈ 45 µs a thread handoff costs, so it never moves to a
//! blocking thread; the store decides where its own I/O runs.
//!
//! ```
//! use std::sync::Arc;
//! use session_core::{ManualClock, MemoryStore, Timestamp};
//! use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager};
//!
//! # tokio_test_block(async {
//! let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
//! let store = Arc::new(MemoryStore::builder().clock(clock.clone()).build());
//! let sessions = SessionManager::new(store, SessionConfig::default());
//!
//! let s = sessions.load(None, ClientInfo::new());
//! s.flash_insert("notice", "saved").await?;
//! let Outcome::SetCookie { token, .. } = s.finish().await? else { unreachable!() };
//!
//! // A redirect that does not read the flash leaves it in place...
//! let s = sessions.load(Some(&token.expose()), ClientInfo::new());
//! assert_eq!(s.finish().await?, Outcome::Unchanged);
//! // ...the request that reads it consumes it.
//! let s = sessions.load(Some(&token.expose()), ClientInfo::new());
//! assert_eq!(s.flash_get::<String>("notice").await?.as_deref(), Some("saved"));
//! let _ = s.finish().await?;
//! let s = sessions.load(Some(&token.expose()), ClientInfo::new());
//! assert_eq!(s.flash_get::<String>("notice").await?, None);
//! # Ok::<(), session_core::session::SessionError>(())
//! # });
//! # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod codec;
mod config;
mod envelope;
mod error;
mod handle;
mod manager;
mod token;

#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{Bincode, Codec, codec_name};
pub use config::{
    DEFAULT_MAX_SAVE_ATTEMPTS, DEFAULT_RENEW_AFTER, DEFAULT_TTL, SessionConfig,
    SessionConfigBuilder,
};
pub use envelope::{
    EnvelopeError, FORMAT_VERSION, MAX_BIND_LEN, MAX_KEY_LEN, StoredEntry, StoredSession,
    StoredValue,
};
pub use error::{ConfigError, SessionError, SessionResult};
pub use handle::{Outcome, REASON_ADDRESS, REASON_EXPIRED, REASON_USER_AGENT, Session};
pub use manager::{ClientInfo, SessionManager};
pub use token::SessionToken;
