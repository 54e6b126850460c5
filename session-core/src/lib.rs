//! The contract every session store keeps, and the types it speaks.
//!
//! * [`SessionStore`] — the one async, object-safe trait (`Arc<dyn SessionStore>`).
//! * [`SessionId`], [`Timestamp`], [`Version`], [`Record`] — what it stores.
//! * [`Clock`] with [`SystemClock`] and [`ManualClock`] — how it judges expiry.
//! * [`StoreError`] — the one error type, with causes kept as `source()`.
//! * [`MemoryStore`] — a correct in-process reference store.
//! * [`session`] — the Session layer: tokens, lazy loading, expiry, flash,
//!   typed values and conflict-merging saves over any store.
//!
//! Stores keep opaque bytes; they know nothing of cookies, flash or serde
//! (the [`session`] layer does).
//!
//! # Implementing a store
//!
//! A store implements the required methods; `update` (a compare-and-swap loop)
//! and `stats` (a walk over `scan`) are provided. The `conformance-tests` crate
//! checks a store against every rule documented on [`SessionStore`], with a
//! single macro call in the store's `tests/`.
//!
//! ```
//! use std::sync::Arc;
//! use session_core::{MemoryStore, SessionId, SessionStore, Timestamp, ManualClock};
//!
//! # tokio_test_block(async {
//! let clock = ManualClock::new(Timestamp::from_millis(1_000));
//! let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::builder().clock(clock.clone()).build());
//! let id = SessionId::generate();
//! let v1 = store.create(&id, b"hello", Timestamp::from_millis(2_000)).await?;
//! let v2 = store.save(&id, b"world", Timestamp::from_millis(2_000), Some(v1)).await?;
//! assert_ne!(v1, v2);
//! clock.set(Timestamp::from_millis(2_000)); // expires_at <= now: expired
//! assert!(store.load(&id).await?.is_none());
//! # Ok::<(), session_core::StoreError>(())
//! # });
//! # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod id;
mod memory;
mod record;
pub mod session;
mod store;
mod time;

pub use error::{BoxError, StoreError, StoreResult};
pub use id::{ID_HEX_LEN, ID_LEN, InvalidId, SessionId};
pub use memory::{DEFAULT_MEMORY_LIMIT, MemoryStore, MemoryStoreBuilder};
pub use record::{Record, Version};
pub use store::{SessionStore, StoreStats, UPDATE_MAX_ATTEMPTS, Update, UpdateFn, Updated};
pub use time::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};

/// Re-exported so implementers use the same `async_trait` attribute as the trait.
pub use async_trait::async_trait;
