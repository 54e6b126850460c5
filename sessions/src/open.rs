//! Turning a checked [`StoreUrl`] into a store: one function per backend,
//! each compiled only with its feature.

use std::sync::Arc;

use session_core::{MemoryStore, SessionStore, SharedClock, SystemClock};

use crate::OpenError;
#[allow(unused_imports)] // `Location` is matched only by the path and server backends.
use crate::url::{Backend, Location, Options, StoreUrl};

#[allow(dead_code)] // Unused when no store backend is compiled in.
type Opened = Result<Arc<dyn SessionStore>, OpenError>;

impl StoreUrl {
    /// Opens the store, judging expiry by the system clock.
    ///
    /// # Errors
    ///
    /// [`OpenError::FeatureDisabled`] when the backend is not compiled in,
    /// [`OpenError::Store`] when the store refuses to open.
    pub async fn open(&self) -> Result<Arc<dyn SessionStore>, OpenError> {
        self.open_with_clock(Arc::new(SystemClock)).await
    }

    /// Opens the store, judging expiry by `clock`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn open_with_clock(
        &self,
        clock: SharedClock,
    ) -> Result<Arc<dyn SessionStore>, OpenError> {
        if !self.backend.is_enabled() {
            return Err(OpenError::FeatureDisabled {
                backend: self.backend,
                feature: self.backend.feature().unwrap_or("memory"),
            });
        }
        let o = &self.options;
        match (&self.backend, &self.location) {
            (Backend::Memory, _) => Ok(open_memory(o, clock)),
            #[cfg(feature = "mmap")]
            (Backend::Mmap, Location::Path(p)) => stores::mmap(p, o, clock),
            #[cfg(feature = "redb")]
            (Backend::Redb, Location::Path(p)) => stores::redb(p, o, clock),
            #[cfg(feature = "lmdb")]
            (Backend::Lmdb, Location::Path(p)) => stores::lmdb(p, o, clock),
            #[cfg(feature = "sqlite")]
            (Backend::Sqlite, Location::Path(p)) => stores::sqlite(p, o, clock),
            #[cfg(feature = "postgres")]
            (Backend::Postgres, Location::Server(u)) => stores::postgres(u, o, clock).await,
            #[cfg(feature = "mysql")]
            (Backend::Mysql, Location::Server(u)) => stores::mysql(u, o, clock).await,
            #[cfg(feature = "file")]
            (Backend::File, Location::Path(p)) => stores::file(p, o, clock),
            (backend, _) => Err(OpenError::NotAvailable {
                backend: *backend,
                reason: "its store crate is not wired into this release of `sessions`",
            }),
        }
    }
}

fn open_memory(o: &Options, clock: SharedClock) -> Arc<dyn SessionStore> {
    let mut b = MemoryStore::builder().shared_clock(clock);
    if let Some(n) = o.max_value_size {
        b = b.max_value_size(n);
    }
    Arc::new(b.build())
}

#[allow(dead_code)] // Used by whichever backends are compiled in.
fn store_err(backend: Backend) -> impl FnOnce(session_core::StoreError) -> OpenError {
    move |source| OpenError::Store { backend, source }
}

mod stores {
    #[allow(unused_imports)] // Which ones depends on the features.
    use std::path::Path;

    #[allow(unused_imports)]
    use super::{Backend, Opened, Options, SharedClock, store_err};
    #[allow(unused_imports)]
    use crate::url::{DurabilityOpt, SynchronousOpt};
    #[allow(unused_imports)]
    use std::sync::Arc;

    #[cfg(feature = "mmap")]
    pub(super) fn mmap(path: &Path, o: &Options, clock: SharedClock) -> Opened {
        let mut b = store_mmap::MmapStore::builder()
            .path(path)
            .shared_clock(clock);
        if let Some(n) = o.size {
            b = b.size(n);
        }
        if let Some(n) = o.pages {
            b = b.pages(n);
        }
        if let Some(n) = o.max_value_size {
            b = b.max_value_size(n);
        }
        Ok(Arc::new(b.open().map_err(store_err(Backend::Mmap))?))
    }

    #[cfg(any(feature = "redb", feature = "lmdb"))]
    fn embedded(
        backend: Backend,
        engine: store_embedded_kv::Engine,
        path: &Path,
        o: &Options,
        clock: SharedClock,
    ) -> Opened {
        use store_embedded_kv::{Durability, EmbeddedStore};
        let mut b = EmbeddedStore::builder()
            .path(path)
            .engine(engine)
            .shared_clock(clock);
        match o.durability {
            Some(DurabilityOpt::Eventual) => b = b.durability(Durability::Eventual),
            Some(DurabilityOpt::Immediate) => b = b.durability(Durability::Immediate),
            // The parser allows `none` for the file store only.
            Some(DurabilityOpt::None) | None => {}
        }
        if let Some(d) = o.flush_interval {
            b = b.flush_interval(d);
        }
        if let Some(n) = o.max_value_size {
            b = b.max_value_size(n);
        }
        if let Some(n) = o.cache_size {
            b = b.redb_cache_size(n);
        }
        if let Some(n) = o.map_size {
            b = b.lmdb_map_size(n);
        }
        Ok(Arc::new(b.open().map_err(store_err(backend))?))
    }

    #[cfg(feature = "redb")]
    pub(super) fn redb(path: &Path, o: &Options, clock: SharedClock) -> Opened {
        embedded(
            Backend::Redb,
            store_embedded_kv::Engine::Redb,
            path,
            o,
            clock,
        )
    }

    #[cfg(feature = "lmdb")]
    pub(super) fn lmdb(path: &Path, o: &Options, clock: SharedClock) -> Opened {
        embedded(
            Backend::Lmdb,
            store_embedded_kv::Engine::Lmdb,
            path,
            o,
            clock,
        )
    }

    #[cfg(feature = "file")]
    pub(super) fn file(path: &Path, o: &Options, clock: SharedClock) -> Opened {
        use store_file::{Durability, FileStore};
        let mut b = FileStore::builder().path(path).shared_clock(clock);
        match o.durability {
            Some(DurabilityOpt::None) => b = b.durability(Durability::None),
            Some(DurabilityOpt::Immediate) => b = b.durability(Durability::Immediate),
            // The parser allows `eventual` for the embedded stores only.
            Some(DurabilityOpt::Eventual) | None => {}
        }
        if let Some(n) = o.max_value_size {
            b = b.max_value_size(n);
        }
        Ok(Arc::new(b.open().map_err(store_err(Backend::File))?))
    }

    #[cfg(feature = "sqlite")]
    pub(super) fn sqlite(path: &Path, o: &Options, clock: SharedClock) -> Opened {
        use store_sql::{SqliteStore, Synchronous};
        let mut b = SqliteStore::builder().path(path).shared_clock(clock);
        if let Some(t) = &o.table {
            b = b.table(t.as_str());
        }
        match o.synchronous {
            Some(SynchronousOpt::Normal) => b = b.synchronous(Synchronous::Normal),
            Some(SynchronousOpt::Full) => b = b.synchronous(Synchronous::Full),
            None => {}
        }
        if let Some(d) = o.busy_timeout {
            b = b.busy_timeout(d);
        }
        if let Some(n) = o.max_value_size {
            b = b.max_value_size(n);
        }
        Ok(Arc::new(b.open().map_err(store_err(Backend::Sqlite))?))
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn postgres(url: &url::Url, o: &Options, clock: SharedClock) -> Opened {
        let mut b = store_sql::PgStore::builder()
            .url(url.as_str())
            .shared_clock(clock);
        if let Some(t) = &o.table {
            b = b.table(t.as_str());
        }
        if let Some(n) = o.max_connections {
            b = b.max_connections(n);
        }
        if let Some(d) = o.acquire_timeout {
            b = b.acquire_timeout(d);
        }
        if let Some(n) = o.max_value_size {
            b = b.max_value_size(n);
        }
        Ok(Arc::new(
            b.open().await.map_err(store_err(Backend::Postgres))?,
        ))
    }

    #[cfg(feature = "mysql")]
    pub(super) async fn mysql(url: &url::Url, o: &Options, clock: SharedClock) -> Opened {
        let mut b = store_sql::MySqlStore::builder()
            .url(url.as_str())
            .shared_clock(clock);
        if let Some(t) = &o.table {
            b = b.table(t.as_str());
        }
        if let Some(n) = o.max_connections {
            b = b.max_connections(n);
        }
        if let Some(d) = o.acquire_timeout {
            b = b.acquire_timeout(d);
        }
        if let Some(n) = o.max_value_size {
            b = b.max_value_size(n);
        }
        Ok(Arc::new(b.open().await.map_err(store_err(Backend::Mysql))?))
    }
}
