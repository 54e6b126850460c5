//! `session-bench-peers`: the sqlx-based tower-sessions stores (SQLite,
//! PostgreSQL, MySQL) through the same workload as `session-bench`, printed as
//! `ROW` lines for the main binary to merge. See `../Cargo.toml` for why this
//! is a separate workspace.
//!
//! Flags (passed on by `session-bench --peers`): `--n`, `--value-size`,
//! `--seed`, `--dir`, `--only`. Server rows run when
//! `SESSIONS_TEST_POSTGRES_URL` / `SESSIONS_TEST_MYSQL_URL` are set.
#![forbid(unsafe_code)]

#[macro_use]
#[path = "../../src/tower_adapter.rs"]
mod tower_adapter;
#[path = "../../src/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Instant;

use session_core::{Clock as _, ManualClock, SessionStore, SystemClock};
use tower_sessions_sqlx_store::sqlx;
use tower_sessions_sqlx_store::{MySqlStore, PostgresStore, SqliteStore};
use workload::{Caps, Kind, RowResult, Settings, Workload};

tower_adapter!(tower14, tower_sessions_core);

/// Same caps as the main binary gives peers: a full store that does not count purges.
const PEER: Caps = Caps {
    touch: true,
    update: true,
    delete_expired: true,
    counts_expired: false,
    multi_process: false,
    lossy: false,
};

/// Row caps must match `rows::MEDIA` in the main crate.
fn capped_n(medium: &str, n: usize) -> usize {
    match medium {
        "sqlite" => n.min(20_000),
        "sqlite durable" => n.min(2_000),
        "postgres" | "mysql" => n.min(2_000),
        _ => n,
    }
}

struct Args {
    n: usize,
    value_size: usize,
    seed: u64,
    dir: PathBuf,
    only: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        value_size: 1024,
        seed: 0x5E55_1011,
        dir: std::env::temp_dir(),
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--n" => a.n = num(&val)? as usize,
            "--value-size" => a.value_size = num(&val)? as usize,
            "--seed" => a.seed = num(&val)?,
            "--dir" => a.dir = PathBuf::from(val),
            "--only" => a.only = val.split(',').map(str::to_lowercase).collect(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

type Boxed = Arc<dyn SessionStore>;

async fn open(
    name: &str,
    dir: &std::path::Path,
    table: &str,
    clock: ManualClock,
) -> Result<Boxed, String> {
    let e = |e: &dyn std::fmt::Display| format!("open: {e}");
    match name {
        "tower-sessions-sqlx-store sqlite" | "tower-sessions-sqlx-store sqlite durable" => {
            let sync = if name.ends_with("durable") {
                sqlx::sqlite::SqliteSynchronous::Full
            } else {
                sqlx::sqlite::SqliteSynchronous::Normal
            };
            // WAL and the synchronous level of the store-sql row on this medium.
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://peer.db")
                .map_err(|x| e(&x))?
                .filename(dir.join("peer.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sync);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .connect_with(opts)
                .await
                .map_err(|x| e(&x))?;
            let store = SqliteStore::new(pool);
            store.migrate().await.map_err(|x| e(&x))?;
            Ok(Arc::new(tower14::Adapter::with_expired_deletion(
                store, clock,
            )))
        }
        "tower-sessions-sqlx-store postgres" => {
            let url = std::env::var("SESSIONS_TEST_POSTGRES_URL").map_err(|x| e(&x))?;
            let pool = sqlx::PgPool::connect(&url).await.map_err(|x| e(&x))?;
            let store = PostgresStore::new(pool)
                .with_table_name(table)
                .map_err(|x| e(&x))?;
            store.migrate().await.map_err(|x| e(&x))?;
            Ok(Arc::new(tower14::Adapter::with_expired_deletion(
                store, clock,
            )))
        }
        "tower-sessions-sqlx-store mysql" => {
            let url = std::env::var("SESSIONS_TEST_MYSQL_URL").map_err(|x| e(&x))?;
            let pool = sqlx::MySqlPool::connect(&url).await.map_err(|x| e(&x))?;
            let store = MySqlStore::new(pool)
                .with_table_name(table)
                .map_err(|x| e(&x))?;
            store.migrate().await.map_err(|x| e(&x))?;
            Ok(Arc::new(tower14::Adapter::with_expired_deletion(
                store, clock,
            )))
        }
        other => Err(format!("no peer row {other}")),
    }
}

/// Drops a server row's table (the peer puts it in schema `tower_sessions`).
async fn drop_table(medium: &str, table: &str) {
    let sql = match medium {
        "postgres" => format!(r#"DROP TABLE IF EXISTS "tower_sessions"."{table}""#),
        "mysql" => format!("DROP TABLE IF EXISTS `tower_sessions`.`{table}`"),
        _ => return,
    };
    if medium == "postgres" {
        if let Ok(url) = std::env::var("SESSIONS_TEST_POSTGRES_URL")
            && let Ok(pool) = sqlx::PgPool::connect(&url).await
        {
            let _ = sqlx::query(&sql).execute(&pool).await;
            pool.close().await;
        }
    } else if let Ok(url) = std::env::var("SESSIONS_TEST_MYSQL_URL")
        && let Ok(pool) = sqlx::MySqlPool::connect(&url).await
    {
        let _ = sqlx::query(&sql).execute(&pool).await;
        pool.close().await;
    }
}

async fn run(args: &Args) -> usize {
    let rows: [(&str, &str, Option<&str>); 4] = [
        ("tower-sessions-sqlx-store sqlite", "sqlite", None),
        (
            "tower-sessions-sqlx-store sqlite durable",
            "sqlite durable",
            None,
        ),
        (
            "tower-sessions-sqlx-store postgres",
            "postgres",
            Some("SESSIONS_TEST_POSTGRES_URL"),
        ),
        (
            "tower-sessions-sqlx-store mysql",
            "mysql",
            Some("SESSIONS_TEST_MYSQL_URL"),
        ),
    ];
    let mut failed = 0;
    let pid = std::process::id();
    for (idx, (name, medium, env)) in rows.into_iter().enumerate() {
        let (lname, lmedium) = (name.to_lowercase(), medium.to_lowercase());
        if !args.only.is_empty()
            && !args
                .only
                .iter()
                .any(|f| lname.contains(f.as_str()) || lmedium.contains(f.as_str()))
        {
            continue;
        }
        let n = capped_n(medium, args.n);
        let mut r = RowResult::new(name, medium, Kind::Peer, n);
        if let Some(var) = env
            && std::env::var(var).is_err()
        {
            r.notes.push(format!("skipped: {var} not set"));
            print!("{}", workload::to_lines(&r));
            continue;
        }
        eprint!("{name:<34} N={n:<7} ");
        let t = Instant::now();
        let dir = args.dir.join(format!("session-bench-peers-{pid}-{idx}"));
        let table = format!("sbp{}_{idx}", pid % 1_000_000);
        let clock = ManualClock::new(SystemClock.now());
        let settings = Settings {
            n,
            value_size: args.value_size,
            seed: args.seed,
        };
        drop_table(medium, &table).await;
        let result = async {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let store = open(name, &dir, &table, clock.clone()).await?;
            let mut wl = Workload::new(store, &clock, settings, PEER);
            let mut phases = wl.run_first().await?;
            phases.extend(wl.run_last().await?);
            Ok::<_, String>((phases, std::mem::take(&mut wl.anomalies)))
        }
        .await;
        drop_table(medium, &table).await;
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok((phases, notes)) => {
                r.phases = phases;
                if notes.is_empty() {
                    eprintln!("ok in {:.1} s", t.elapsed().as_secs_f64());
                } else {
                    failed += 1;
                    eprintln!("WRONG ANSWERS: {}", notes.join("; "));
                }
                r.notes = notes;
            }
            Err(e) => {
                failed += 1;
                eprintln!("FAILED: {e}");
                r.notes.push(format!("failed: {e}"));
            }
        }
        print!("{}", workload::to_lines(&r));
    }
    failed
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("session-bench-peers: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("session-bench-peers: {e}");
            return ExitCode::FAILURE;
        }
    };
    if rt.block_on(run(&args)) > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
