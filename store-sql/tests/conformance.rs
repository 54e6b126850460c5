//! The shared conformance suite, run on SQLite always and on PostgreSQL and
//! MariaDB/MySQL when their URLs are set (see `common::server_url`). Every
//! test uses its own table (the context's namespace), so tests run in parallel
//! on one database.

mod common;

/// Largest value the stores are configured to accept in these runs.
const LIMIT: usize = store_sql::DEFAULT_MAX_VALUE_SIZE;

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::Arc;

    use conformance_tests::{Backend, Capabilities, Context};
    use session_core::{SessionStore, StoreResult};
    use store_sql::SqliteStore;

    struct Sqlite;

    #[conformance_tests::async_trait]
    impl Backend for Sqlite {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .multi_process()
                .native_update()
                .max_value_size(super::LIMIT)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let store = SqliteStore::builder()
                .path(ctx.dir().join("sessions.db"))
                .table(ctx.namespace())
                .clock(ctx.clock().clone())
                .max_value_size(super::LIMIT)
                .open()?;
            Ok(Arc::new(store))
        }
    }

    conformance_tests::suite!(Sqlite);
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use conformance_tests::{Backend, Capabilities, Context};
    use session_core::{SessionStore, StoreResult};
    use store_sql::PgStore;

    struct Postgres(String);

    fn backend(test: &str) -> Option<Postgres> {
        super::common::server_url(super::common::POSTGRES_ENV, test).map(Postgres)
    }

    #[conformance_tests::async_trait]
    impl Backend for Postgres {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .multi_process()
                .native_update()
                .max_value_size(super::LIMIT)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let store = PgStore::builder()
                .url(&self.0)
                .max_connections(4)
                .table(ctx.namespace())
                .clock(ctx.clock().clone())
                .max_value_size(super::LIMIT)
                .open()
                .await?;
            Ok(Arc::new(store))
        }
    }

    // Without a URL each generated test prints SKIP and returns (the `return`
    // leaves the generated #[test] fn).
    conformance_tests::suite!(match backend("postgres conformance") {
        Some(b) => b,
        None => return,
    });
}

#[cfg(feature = "mysql")]
mod mysql {
    use std::sync::Arc;

    use conformance_tests::{Backend, Capabilities, Context};
    use session_core::{SessionStore, StoreResult};
    use store_sql::MySqlStore;

    struct MySql(String);

    fn backend(test: &str) -> Option<MySql> {
        super::common::server_url(super::common::MYSQL_ENV, test).map(MySql)
    }

    #[conformance_tests::async_trait]
    impl Backend for MySql {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
                .persistent()
                .multi_process()
                .native_update()
                .max_value_size(super::LIMIT)
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            let store = MySqlStore::builder()
                .url(&self.0)
                .max_connections(4)
                .table(ctx.namespace())
                .clock(ctx.clock().clone())
                .max_value_size(super::LIMIT)
                .open()
                .await?;
            Ok(Arc::new(store))
        }
    }

    conformance_tests::suite!(match backend("mysql conformance") {
        Some(b) => b,
        None => return,
    });
}
