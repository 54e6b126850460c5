//! Server-side session stores for Rust: pick a backend with a cargo feature,
//! open it from a URL, and hold it as `Arc<dyn SessionStore>`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessions::OpenError> {
//! let store = sessions::open("redb:///var/lib/myapp/sessions").await?;
//! let manager = sessions::core::session::SessionManager::new(store, Default::default());
//! # let _ = manager; Ok(()) }
//! ```
//!
//! The whole of [`session_core`] is re-exported as [`sessions::core`](core),
//! and its main types at the top level.
//!
//! # Picking a backend
//!
//! Each backend is a cargo feature; `default = ["redb"]`, `full` = all.
//! `memory:` is always there. A URL naming a backend whose feature is off is
//! [`OpenError::FeatureDisabled`] naming the feature; a malformed URL, an
//! unknown option or a bad value is an error too, never a silent default.
//! Paths are `scheme:///absolute/path` or `scheme:relative/path`
//! (percent-encoded where needed); options are query parameters.
//!
//! | URL | feature | store | options (`?name=value&…`) |
//! |---|---|---|---|
//! | `memory:` | — | `session_core::MemoryStore`: one process, nothing survives a restart | `max_value_size` |
//! | `mmap:///path/file` | `mmap` | `store_mmap::MmapStore`: shared-memory LRU cache across processes (evicts when full) | `size` (file size, e.g. `64MiB`), `pages` (independently locked shards), `max_value_size` |
//! | `redb:///dir` | `redb` (default) | `store_embedded_kv` on redb: transactional, one process | `durability` (`immediate`\|`eventual`), `flush_interval` (with `eventual`, e.g. `1s`), `cache_size`, `max_value_size` |
//! | `lmdb:///dir` | `lmdb` | `store_embedded_kv` on LMDB: transactional, several processes | `durability` (`immediate`\|`eventual`), `flush_interval`, `map_size` (the most it may hold), `max_value_size` |
//! | `sqlite:///file.db` | `sqlite` | `store_sql` on SQLite (bundled) | `table`, `synchronous` (`normal`\|`full`), `busy_timeout` (e.g. `5s`), `max_value_size` |
//! | `postgres://user:pw@host:port/db` | `postgres` | `store_sql` on PostgreSQL (sqlx) | `table`, `max_connections`, `acquire_timeout`, `max_value_size`; passed to the driver: `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `options` |
//! | `mysql://user:pw@host:port/db` | `mysql` | `store_sql` on MySQL / MariaDB (sqlx) | `table`, `max_connections`, `acquire_timeout`, `max_value_size`; passed to the driver: `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`, `charset`, `collation`, `timezone`, `socket` |
//! | `file:///dir` | `file` | `store_file::FileStore`: one file per session, several processes | `durability` (`immediate`\|`none`), `max_value_size` |
//!
//! Values: sizes are a positive byte count with an optional unit (`B`,
//! `KiB`, `MiB`, `GiB`, `TiB`, or 1000-based `kB`, `MB`, `GB`, `TB`);
//! durations need a unit (`ms`, `s`, `m`, `h`). `postgresql://` and
//! `mariadb://` are aliases. An option not given keeps the store's own
//! default (see each store crate's docs). Errors and `Display` never show a
//! password from the URL.
//!
//! # Invariants
//!
//! * A URL is parsed and checked completely ([`StoreUrl::parse`]) before any
//!   store is touched, whatever features are on: no option is ever ignored.
//! * Paths are taken as written (no `..` resolution, relative stays relative
//!   to the working directory).
//! * Every backend compiled in passes the conformance suite *through
//!   [`open`]* (`tests/conformance.rs`), so the option wiring is tested too.
//!
//! # Where work runs
//!
//! [`open`] runs the store's own open on the calling task: for the embedded
//! stores that is a file open (and redb's checksum pass over the file), so
//! call it once at startup, not per request. After that each store decides
//! where its I/O runs (see its crate docs).
#![forbid(unsafe_code)]

use std::sync::Arc;

pub use session_core as core;
pub use session_core::session;
pub use session_core::{
    Clock, ManualClock, MemoryStore, Record, SessionId, SessionStore, SharedClock, StoreError,
    StoreResult, SystemClock, Timestamp, Version,
};

mod open;
mod url;

pub use url::{Backend, StoreUrl};

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a URL, or a part of it makes no sense for its backend.
    #[error("malformed store URL{}: {reason}", backend_suffix(*backend))]
    Malformed {
        /// The backend, when the scheme was recognised.
        backend: Option<Backend>,
        /// What is wrong (never the URL itself, which may hold a password).
        reason: String,
    },
    /// The scheme names no backend.
    #[error(
        "unknown store URL scheme {scheme:?}: use one of memory, mmap, redb, lmdb, sqlite, postgres, mysql, file"
    )]
    UnknownScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The backend exists but this build leaves it out.
    #[error(
        "the {backend} backend is not compiled in: enable the `{feature}` feature of the `sessions` crate"
    )]
    FeatureDisabled {
        /// The backend.
        backend: Backend,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },
    /// The backend is compiled in but not available in this release.
    #[error("the {backend} backend is not available yet: {reason}")]
    NotAvailable {
        /// The backend.
        backend: Backend,
        /// Why.
        reason: &'static str,
    },
    /// A path backend without a path.
    #[error(
        "{backend}: URL needs a path, e.g. {backend}:///var/lib/app/sessions or {backend}:data/sessions"
    )]
    MissingPath {
        /// The backend.
        backend: Backend,
    },
    /// A path backend given a host, user or port (`redb://x/…` reads `x` as a host).
    #[error(
        "{backend}: URL names a host; write {backend}:///absolute/path (three slashes) or {backend}:relative/path"
    )]
    HostInPath {
        /// The backend.
        backend: Backend,
    },
    /// A query option this backend does not know.
    #[error("unknown option {option:?} for {backend}: URL (known: {})", allowed.join(", "))]
    UnknownOption {
        /// The backend.
        backend: Backend,
        /// The option given.
        option: String,
        /// The options it accepts.
        allowed: &'static [&'static str],
    },
    /// An option given twice.
    #[error("option {option:?} is given more than once")]
    DuplicateOption {
        /// The option.
        option: String,
    },
    /// An option value that does not parse or is out of range.
    #[error("invalid value {value:?} for option {option:?}: expected {expected}")]
    InvalidOption {
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// The store refused to open (bad path, locked file, unreachable server, …).
    #[error("cannot open the {backend} store: {source}")]
    Store {
        /// The backend.
        backend: Backend,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

fn backend_suffix(b: Option<Backend>) -> String {
    b.map(|b| format!(" ({b}:)")).unwrap_or_default()
}

/// Opens the store a URL names, judging expiry by the system clock.
///
/// # Errors
///
/// See [`OpenError`]: a malformed URL or option, a backend whose feature is
/// off, or the store's own failure to open.
pub async fn open(url: &str) -> Result<Arc<dyn SessionStore>, OpenError> {
    StoreUrl::parse(url)?.open().await
}

/// Opens the store a URL names, judging expiry by `clock` (tests pass a
/// [`ManualClock`]).
///
/// # Errors
///
/// As [`open`].
pub async fn open_with_clock(
    url: &str,
    clock: SharedClock,
) -> Result<Arc<dyn SessionStore>, OpenError> {
    StoreUrl::parse(url)?.open_with_clock(clock).await
}

/// The backends compiled into this build.
#[must_use]
pub fn enabled_backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| b.is_enabled())
        .collect()
}
