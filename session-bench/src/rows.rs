//! Every row of the main binary: our stores, the crates.io peers that link no
//! SQLite, and the raw engines. (The sqlx-based peers run in `peers/`.)
//!
//! A row opens its store from a [`Ctx`]; opening again with an equal `Ctx`
//! (same directory, same table) reaches the same data, which is how the second
//! process of `mix_2proc` joins.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use session_core::{ManualClock, MemoryStore, SessionStore, StoreResult};

use crate::raw::{RawFile, RawLmdb, RawMap, RawRedb, RawSqlite, RawSqlx, Server};
use crate::workload::{Caps, Kind};
use crate::{tower14, tower15};

/// Where and how a row opens its store.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// A directory of this row alone.
    pub(crate) dir: PathBuf,
    /// The clock the store must judge expiry by.
    pub(crate) clock: ManualClock,
    /// A table name unique to this row and run (`[a-z0-9_]`).
    pub(crate) table: String,
    /// The server URL for PostgreSQL / MySQL rows.
    pub(crate) url: Option<String>,
    /// Sessions the row will hold (sizes the mmap file).
    pub(crate) n: usize,
    /// Bytes per value.
    pub(crate) value_size: usize,
}

pub(crate) type Opened = Pin<Box<dyn Future<Output = StoreResult<Arc<dyn SessionStore>>> + Send>>;

/// One row of the table.
pub(crate) struct Row {
    pub(crate) name: &'static str,
    /// Rows on one medium are compared with each other.
    pub(crate) medium: &'static str,
    pub(crate) kind: Kind,
    pub(crate) caps: Caps,
    /// Environment variable holding the server URL, for server rows.
    pub(crate) url_env: Option<&'static str>,
    pub(crate) open: fn(Ctx) -> Opened,
}

/// Medium names, in table order, with the largest N a row on them runs.
/// Durable media pay an fsync (≈ 0.2–1.2 ms here) per write, servers a round
/// trip and a commit, and the file medium a rename (≈ 0.2 ms); capping them
/// keeps a default run near 10 minutes on this 2-core machine.
pub(crate) const MEDIA: [(&str, usize); 13] = [
    ("shared memory", usize::MAX),
    ("memory", usize::MAX),
    ("redb", usize::MAX),
    ("lmdb", usize::MAX),
    ("sqlite", 20_000),
    ("file", 10_000),
    ("postgres", 2_000),
    ("mysql", 2_000),
    ("redb durable", 2_000),
    ("lmdb durable", 2_000),
    ("sqlite durable", 2_000),
    ("file durable", 2_000),
    ("other", usize::MAX),
];

/// N for a row on `medium` when the run asks for `n`.
pub(crate) fn capped_n(medium: &str, n: usize) -> usize {
    let cap = MEDIA
        .iter()
        .find(|(m, _)| *m == medium)
        .map_or(usize::MAX, |(_, c)| *c);
    n.min(cap)
}

fn url(ctx: &Ctx) -> StoreResult<String> {
    ctx.url
        .clone()
        .ok_or_else(|| session_core::StoreError::config("no server URL"))
}

fn embedded(
    ctx: Ctx,
    engine: store_embedded_kv::Engine,
    durability: store_embedded_kv::Durability,
) -> Opened {
    Box::pin(async move {
        let s = store_embedded_kv::EmbeddedStore::builder()
            .path(ctx.dir.join("store"))
            .engine(engine)
            .durability(durability)
            .lmdb_map_size(8 << 30)
            .clock(ctx.clock)
            .open()?;
        Ok(Arc::new(s) as Arc<dyn SessionStore>)
    })
}

fn sqlite(ctx: Ctx, sync: store_sql::Synchronous) -> Opened {
    Box::pin(async move {
        let s = store_sql::SqliteStore::builder()
            .path(ctx.dir.join("sessions.db"))
            .table(&ctx.table)
            .synchronous(sync)
            .clock(ctx.clock)
            .open()?;
        Ok(Arc::new(s) as Arc<dyn SessionStore>)
    })
}

fn file(ctx: Ctx, durability: store_file::Durability) -> Opened {
    Box::pin(async move {
        let s = store_file::FileStore::builder()
            .path(ctx.dir.join("files"))
            .durability(durability)
            .clock(ctx.clock)
            .open()?;
        Ok(Arc::new(s) as Arc<dyn SessionStore>)
    })
}

fn ready<S: SessionStore + 'static>(s: StoreResult<S>) -> Opened {
    Box::pin(async move { Ok(Arc::new(s?) as Arc<dyn SessionStore>) })
}

/// Where the mmap row keeps its file: tmpfs when there is one, as the
/// store's docs advise (the name is per run and row, so the child finds it).
pub(crate) fn mmap_path(ctx: &Ctx) -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("session-bench-{}.mmap", ctx.table))
    } else {
        ctx.dir.join("sessions.mmap")
    }
}

fn mmap(ctx: Ctx) -> Opened {
    Box::pin(async move {
        // Sized by the store's rule of thumb (1.5 × sessions × (value + 80)) × 2.
        let want = 3 * ctx.n as u64 * (ctx.value_size as u64 + 80);
        let s = store_mmap::MmapStore::builder()
            .path(mmap_path(&ctx))
            .size(want.max(store_mmap::DEFAULT_SIZE))
            .clock(ctx.clock)
            .open()?;
        Ok(Arc::new(s) as Arc<dyn SessionStore>)
    })
}

/// Every row of the main binary, in table order within each medium.
pub(crate) fn all() -> Vec<Row> {
    use store_embedded_kv::{Durability as Kv, Engine};
    let store = Caps::STORE;
    let peer = Caps {
        counts_expired: false,
        ..Caps::STORE
    };
    vec![
        // memory
        Row {
            name: "MemoryStore",
            medium: "memory",
            kind: Kind::Ours,
            caps: store,
            url_env: None,
            open: |ctx| ready(Ok(MemoryStore::builder().clock(ctx.clock).build())),
        },
        Row {
            name: "store-mmap (shared memory)",
            // Its own medium: no raw engine or peer shares memory across
            // processes (moka and the HashMap sit beside it for reference).
            medium: "shared memory",
            kind: Kind::Ours,
            caps: Caps {
                lossy: true,
                ..store.multi_process()
            },
            url_env: None,
            open: mmap,
        },
        Row {
            name: "tower-sessions-moka-store",
            medium: "memory",
            kind: Kind::Peer,
            caps: Caps {
                delete_expired: false,
                ..peer
            },
            url_env: None,
            open: |ctx| {
                let s = tower14::Adapter::new(
                    tower_sessions_moka_store::MokaStore::new(None),
                    ctx.clock,
                );
                ready(Ok(s))
            },
        },
        Row {
            name: "HashMap+Mutex",
            medium: "memory",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(Ok(RawMap::new(ctx.clock))),
        },
        // redb
        Row {
            name: "store-embedded-kv redb",
            medium: "redb",
            kind: Kind::Ours,
            caps: store,
            url_env: None,
            open: |ctx| embedded(ctx, Engine::Redb, Kv::Eventual),
        },
        Row {
            name: "redb txn",
            medium: "redb",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawRedb::open(&ctx.dir, false, ctx.clock)),
        },
        // lmdb
        Row {
            name: "store-embedded-kv lmdb",
            medium: "lmdb",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: None,
            open: |ctx| embedded(ctx, Engine::Lmdb, Kv::Eventual),
        },
        Row {
            name: "heed txn",
            medium: "lmdb",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawLmdb::open(&ctx.dir, false, ctx.clock)),
        },
        // sqlite (the sqlx peer runs in peers/)
        Row {
            name: "store-sql sqlite",
            medium: "sqlite",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: None,
            open: |ctx| sqlite(ctx, store_sql::Synchronous::Normal),
        },
        Row {
            name: "rusqlite prepared upsert",
            medium: "sqlite",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawSqlite::open(&ctx.dir.join("raw.db"), false, ctx.clock)),
        },
        // file
        Row {
            name: "store-file",
            medium: "file",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: None,
            open: |ctx| file(ctx, store_file::Durability::None),
        },
        Row {
            name: "tower-sessions-file-store",
            medium: "file",
            kind: Kind::Peer,
            caps: Caps {
                lossy: true,
                ..peer
            },
            url_env: None,
            open: |ctx| {
                let dir = ctx.dir.join("peer");
                let s = tower_sessions_file_store::FileSessionStorage::new_in_folder(dir)
                    .set_minimum_expiry_date(Duration::ZERO);
                ready(Ok(tower15::Adapter::with_expired_deletion(s, ctx.clock)))
            },
        },
        Row {
            name: "write+rename",
            medium: "file",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawFile::open(&ctx.dir.join("raw"), false, ctx.clock)),
        },
        // postgres (the sqlx peer runs in peers/)
        Row {
            name: "store-sql postgres",
            medium: "postgres",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: Some("SESSIONS_TEST_POSTGRES_URL"),
            open: |ctx| {
                Box::pin(async move {
                    let s = store_sql::PgStore::builder()
                        .url(url(&ctx)?)
                        .table(&ctx.table)
                        .clock(ctx.clock)
                        .open()
                        .await?;
                    Ok(Arc::new(s) as Arc<dyn SessionStore>)
                })
            },
        },
        Row {
            name: "sqlx upsert (postgres)",
            medium: "postgres",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: Some("SESSIONS_TEST_POSTGRES_URL"),
            open: |ctx| {
                Box::pin(async move {
                    let s =
                        RawSqlx::open(Server::Postgres, &url(&ctx)?, &ctx.table, ctx.clock).await?;
                    Ok(Arc::new(s) as Arc<dyn SessionStore>)
                })
            },
        },
        // mysql
        Row {
            name: "store-sql mysql",
            medium: "mysql",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: Some("SESSIONS_TEST_MYSQL_URL"),
            open: |ctx| {
                Box::pin(async move {
                    let s = store_sql::MySqlStore::builder()
                        .url(url(&ctx)?)
                        .table(&ctx.table)
                        .clock(ctx.clock)
                        .open()
                        .await?;
                    Ok(Arc::new(s) as Arc<dyn SessionStore>)
                })
            },
        },
        Row {
            name: "sqlx upsert (mysql)",
            medium: "mysql",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: Some("SESSIONS_TEST_MYSQL_URL"),
            open: |ctx| {
                Box::pin(async move {
                    let s =
                        RawSqlx::open(Server::MySql, &url(&ctx)?, &ctx.table, ctx.clock).await?;
                    Ok(Arc::new(s) as Arc<dyn SessionStore>)
                })
            },
        },
        // durable
        Row {
            name: "store-embedded-kv redb durable",
            medium: "redb durable",
            kind: Kind::Ours,
            caps: store,
            url_env: None,
            open: |ctx| embedded(ctx, Engine::Redb, Kv::Immediate),
        },
        Row {
            name: "redb txn durable",
            medium: "redb durable",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawRedb::open(&ctx.dir, true, ctx.clock)),
        },
        Row {
            name: "store-embedded-kv lmdb durable",
            medium: "lmdb durable",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: None,
            open: |ctx| embedded(ctx, Engine::Lmdb, Kv::Immediate),
        },
        Row {
            name: "heed txn durable",
            medium: "lmdb durable",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawLmdb::open(&ctx.dir, true, ctx.clock)),
        },
        Row {
            name: "store-sql sqlite durable",
            medium: "sqlite durable",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: None,
            open: |ctx| sqlite(ctx, store_sql::Synchronous::Full),
        },
        Row {
            name: "rusqlite prepared upsert durable",
            medium: "sqlite durable",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawSqlite::open(&ctx.dir.join("raw.db"), true, ctx.clock)),
        },
        Row {
            name: "store-file durable",
            medium: "file durable",
            kind: Kind::Ours,
            caps: store.multi_process(),
            url_env: None,
            open: |ctx| file(ctx, store_file::Durability::Immediate),
        },
        Row {
            name: "write+fsync+rename",
            medium: "file durable",
            kind: Kind::Raw,
            caps: Caps::RAW,
            url_env: None,
            open: |ctx| ready(RawFile::open(&ctx.dir.join("raw"), true, ctx.clock)),
        },
    ]
}
