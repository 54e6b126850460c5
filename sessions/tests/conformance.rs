//! The shared conformance suite, once per compiled-in backend, every store
//! opened through `sessions::open_with_clock(url, ..)` — so the URL parsing
//! and option wiring are checked along with the store.
//!
//! PostgreSQL and MySQL/MariaDB read their server URL at run time from
//! `SESSIONS_TEST_POSTGRES_URL` / `SESSIONS_TEST_MYSQL_URL`; without it each
//! of their checks prints a loud SKIP and passes.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{SessionStore, StoreError, StoreResult};

/// Opens `url` with the context's clock; a URL or open failure becomes a store error.
async fn open_url(url: &str, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
    sessions::open_with_clock(url, Arc::new(ctx.clock().clone()))
        .await
        .map_err(|e| match e {
            sessions::OpenError::Store { source, .. } => source,
            other => StoreError::config(other),
        })
}

/// `dir` as a URL path: percent-encode anything outside a conservative set.
#[allow(dead_code)] // Unused when only memory: and server backends are built.
fn url_path(dir: &Path) -> String {
    let mut out = String::new();
    for b in dir.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[allow(dead_code)] // Unused without the server features.
fn server_url(var: &str, ctx: &Context) -> Option<String> {
    let base = std::env::var(var).ok().filter(|s| !s.trim().is_empty())?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{sep}table={}&max_connections=4",
        ctx.namespace()
    ))
}

#[allow(dead_code)]
fn skip_without(var: &str, test: &str) -> bool {
    if std::env::var(var).is_ok_and(|s| !s.trim().is_empty()) {
        return false;
    }
    let _ = std::io::stderr().write_all(
        format!("\n*** SKIP {test}: {var} is not set, so this server test did not run ***\n")
            .as_bytes(),
    );
    true
}

mod memory {
    use super::*;

    struct Memory;

    #[conformance_tests::async_trait]
    impl Backend for Memory {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .native_update()
                .max_value_size(session_core::DEFAULT_MEMORY_LIMIT)
        }

        async fn open(&self, _ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            open_url("memory:", _ctx).await
        }
    }

    conformance_tests::suite!(Memory);
}

#[cfg(feature = "mmap")]
mod mmap {
    use super::*;

    /// 64 MiB over 64 pages: the suite's sessions never evict (as in store-mmap's own run).
    struct Mmap;

    #[conformance_tests::async_trait]
    impl Backend for Mmap {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .multi_process()
                .native_update()
                .max_value_size(64 << 10)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let path = url_path(&ctx.dir().join(format!("{}.cache", ctx.namespace())));
            open_url(
                &format!("mmap://{path}?size=64MiB&pages=64&max_value_size=64KiB"),
                ctx,
            )
            .await
        }
    }

    conformance_tests::suite!(Mmap);
}

#[cfg(feature = "redb")]
mod redb {
    use super::*;

    struct Redb;

    #[conformance_tests::async_trait]
    impl Backend for Redb {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .native_update()
                .max_value_size(1 << 20)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let path = url_path(&ctx.dir().join(ctx.namespace()));
            open_url(&format!("redb://{path}?durability=immediate"), ctx).await
        }
    }

    conformance_tests::suite!(Redb);
}

#[cfg(feature = "lmdb")]
mod lmdb {
    use super::*;

    struct Lmdb;

    #[conformance_tests::async_trait]
    impl Backend for Lmdb {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .multi_process()
                .native_update()
                .max_value_size(1 << 20)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let path = url_path(&ctx.dir().join(ctx.namespace()));
            open_url(&format!("lmdb://{path}"), ctx).await
        }
    }

    conformance_tests::suite!(Lmdb);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    struct Sqlite;

    #[conformance_tests::async_trait]
    impl Backend for Sqlite {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .multi_process()
                .native_update()
                .max_value_size(1 << 20)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let path = url_path(&ctx.dir().join("sessions.db"));
            open_url(
                &format!("sqlite://{path}?table={}&busy_timeout=10s", ctx.namespace()),
                ctx,
            )
            .await
        }
    }

    conformance_tests::suite!(Sqlite);
}

/// A database-server backend: its URL comes from `$var` at run time; without
/// it, every generated test prints SKIP and returns (CI always sets it).
macro_rules! server_backend {
    ($feature:literal, $module:ident, $var:literal, $what:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            const VAR: &str = $var;

            struct Server;

            #[conformance_tests::async_trait]
            impl Backend for Server {
                fn capabilities(&self) -> Capabilities {
                    Capabilities::new()
                        .persistent()
                        .multi_process()
                        .native_update()
                        .max_value_size(1 << 20)
                }

                async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
                    let url = server_url(VAR, ctx)
                        .ok_or_else(|| StoreError::config(format!("{VAR} is not set")))?;
                    open_url(&url, ctx).await
                }
            }

            conformance_tests::suite!(if skip_without(VAR, $what) {
                return;
            } else {
                Server
            });
        }
    };
}

server_backend!(
    "postgres",
    postgres,
    "SESSIONS_TEST_POSTGRES_URL",
    "sessions postgres conformance"
);
server_backend!(
    "mysql",
    mysql,
    "SESSIONS_TEST_MYSQL_URL",
    "sessions mysql conformance"
);

#[cfg(feature = "file")]
mod file {
    use super::*;

    struct File;

    #[conformance_tests::async_trait]
    impl Backend for File {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .multi_process()
                .native_update()
                .max_value_size(1 << 20)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let path = url_path(&ctx.dir().join(ctx.namespace()));
            open_url(&format!("file://{path}"), ctx).await
        }
    }

    conformance_tests::suite!(File);
}
