//! Measures the figures behind the crate's "where work runs" choice: a raw
//! rusqlite read and upsert (WAL, `synchronous=NORMAL`, cached statements), the
//! same through `SqliteStore`, and a blocking two-thread round trip; with
//! `SESSIONS_TEST_POSTGRES_URL` / `SESSIONS_TEST_MYSQL_URL` set, a raw sqlx
//! upsert/select loop beside the store on the same server.
//!
//! `cargo run --release -p store-sql --all-features --example measure [N]`
//! (not a test: nothing here asserts a time).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use session_core::{SessionId, SessionStore, SystemClock, Timestamp};

const VALUE: usize = 1024;

fn per_op(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn ids(n: usize) -> Vec<SessionId> {
    (0..n).map(|_| SessionId::generate()).collect()
}

fn far() -> Timestamp {
    Timestamp::from_millis(i64::MAX / 2)
}

fn handoff(n: usize) -> f64 {
    let (to_worker, rx) = mpsc::channel::<u64>();
    let (to_caller, back) = mpsc::channel::<u64>();
    let worker = std::thread::spawn(move || {
        while let Ok(v) = rx.recv() {
            if to_caller.send(v + 1).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..n as u64 {
        to_worker.send(i).ok();
        back.recv().ok();
    }
    let d = t.elapsed();
    drop(to_worker);
    worker.join().ok();
    per_op(d, n)
}

/// Raw rusqlite and the store run in alternating chunks, so drift on a shared
/// machine (other builds, disk write-back) hits both alike.
#[cfg(feature = "sqlite")]
fn sqlite(rt: &tokio::runtime::Runtime, n: usize) {
    use store_sql::SqliteStore;
    const ROUNDS: usize = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let value = vec![0x5a_u8; VALUE];
    let keys = ids(n);
    let chunk = (n / ROUNDS).max(1);

    // Raw rusqlite, same schema and settings as the store.
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE s (id BLOB PRIMARY KEY NOT NULL, data BLOB NOT NULL,
           expires_at INTEGER NOT NULL, version INTEGER NOT NULL);
         CREATE INDEX s_exp ON s (expires_at);",
    )
    .expect("schema");
    let raw_upsert = |ids: &[SessionId]| {
        let t = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            let mut st = conn
                .prepare_cached(
                    "INSERT INTO s VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET \
                     data = excluded.data, expires_at = excluded.expires_at, version = excluded.version",
                )
                .expect("prepare");
            st.execute(rusqlite::params![
                id.as_bytes().as_slice(),
                value,
                i64::MAX / 2,
                i as i64
            ])
            .expect("upsert");
        }
        t.elapsed()
    };
    let raw_read = |ids: &[SessionId]| {
        let t = Instant::now();
        for id in ids {
            let mut st = conn
                .prepare_cached(
                    "SELECT data, expires_at, version FROM s WHERE id = ?1 AND expires_at > ?2",
                )
                .expect("prepare");
            let r: (Vec<u8>, i64, i64) = st
                .query_row(rusqlite::params![id.as_bytes().as_slice(), 0_i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("select");
            std::hint::black_box(r);
        }
        t.elapsed()
    };

    let store = SqliteStore::builder()
        .path(dir.path().join("store.db"))
        .clock(SystemClock)
        .open()
        .expect("store");
    let (mut raw_save, mut save, mut raw_load, mut load, mut update) = Default::default();
    rt.block_on(async {
        for part in keys.chunks(chunk) {
            raw_save += raw_upsert(part);
            let t = Instant::now();
            for id in part {
                store.save(id, &value, far(), None).await.expect("save");
            }
            save += t.elapsed();
        }
        for part in keys.chunks(chunk) {
            raw_load += raw_read(part);
            let t = Instant::now();
            for id in part {
                std::hint::black_box(store.load(id).await.expect("load"));
            }
            load += t.elapsed();
        }
        let t = Instant::now();
        for id in &keys {
            store
                .update(id, &mut |_| session_core::Update::Put {
                    data: value.clone(),
                    expires_at: far(),
                })
                .await
                .expect("update");
        }
        update = t.elapsed();
    });
    let (raw_save, save, raw_load, load, update) = (
        per_op(raw_save, n),
        per_op(save, n),
        per_op(raw_load, n),
        per_op(load, n),
        per_op(update, n),
    );
    println!(
        "sqlite  n={n}: raw upsert {raw_save:.1} µs, store save {save:.1} µs ({:.2}x); \
         raw read {raw_load:.1} µs, store load {load:.1} µs ({:.2}x); store update {update:.1} µs",
        save / raw_save,
        load / raw_load
    );
}

#[cfg(feature = "postgres")]
fn postgres(rt: &tokio::runtime::Runtime, n: usize) {
    let Ok(url) = std::env::var("SESSIONS_TEST_POSTGRES_URL") else {
        println!("postgres: SESSIONS_TEST_POSTGRES_URL not set, skipped");
        return;
    };
    rt.block_on(async {
        let value = vec![0x5a_u8; VALUE];
        let keys = ids(n);
        let table = format!("measure_{}", &SessionId::generate().to_hex()[..8]);
        let store = store_sql::PgStore::builder()
            .url(&url)
            .table(&table)
            .clock(SystemClock)
            .open()
            .await
            .expect("store");
        let pool = store.pool().clone();
        let upsert = format!(
            "INSERT INTO \"{table}\" AS cur (id, data, expires_at, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, \
             version = excluded.version"
        );
        let select =
            format!("SELECT data, expires_at, version FROM \"{table}\" WHERE id = $1 AND expires_at > $2");
        let (mut raw_save, mut save, mut raw_load, mut load) = Default::default();
        // Alternating chunks, so drift on a shared machine hits both alike.
        for part in keys.chunks((keys.len() / 10).max(1)) {
            let t = Instant::now();
            for (i, id) in part.iter().enumerate() {
                sqlx::query(&upsert)
                    .bind(id.as_bytes().as_slice())
                    .bind(value.as_slice())
                    .bind(i64::MAX / 2)
                    .bind(i as i64 + 1)
                    .execute(&pool)
                    .await
                    .expect("raw upsert");
            }
            raw_save += t.elapsed();
            let t = Instant::now();
            for id in part {
                store.save(id, &value, far(), None).await.expect("save");
            }
            save += t.elapsed();
        }
        for part in keys.chunks((keys.len() / 10).max(1)) {
            let t = Instant::now();
            for id in part {
                std::hint::black_box(
                    sqlx::query(&select)
                        .bind(id.as_bytes().as_slice())
                        .bind(0_i64)
                        .fetch_optional(&pool)
                        .await
                        .expect("raw select"),
                );
            }
            raw_load += t.elapsed();
            let t = Instant::now();
            for id in part {
                std::hint::black_box(store.load(id).await.expect("load"));
            }
            load += t.elapsed();
        }
        let (raw_save, save, raw_load, load) = (
            per_op(raw_save, n),
            per_op(save, n),
            per_op(raw_load, n),
            per_op(load, n),
        );
        println!(
            "postgres n={n}: raw upsert {raw_save:.1} µs, store save {save:.1} µs ({:.2}x); \
             raw select {raw_load:.1} µs, store load {load:.1} µs ({:.2}x)",
            save / raw_save,
            load / raw_load
        );
        sqlx::query(&format!("DROP TABLE \"{table}\""))
            .execute(&pool)
            .await
            .ok();
    });
}

#[cfg(feature = "mysql")]
fn mysql(rt: &tokio::runtime::Runtime, n: usize) {
    let Ok(url) = std::env::var("SESSIONS_TEST_MYSQL_URL") else {
        println!("mysql: SESSIONS_TEST_MYSQL_URL not set, skipped");
        return;
    };
    rt.block_on(async {
        let value = vec![0x5a_u8; VALUE];
        let keys = ids(n);
        let table = format!("measure_{}", &SessionId::generate().to_hex()[..8]);
        let store = store_sql::MySqlStore::builder()
            .url(&url)
            .table(&table)
            .clock(SystemClock)
            .open()
            .await
            .expect("store");
        let pool = store.pool().clone();
        let upsert = format!(
            "INSERT INTO `{table}` (id, data, expires_at, version) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE data = VALUES(data), expires_at = VALUES(expires_at), \
             version = VALUES(version)"
        );
        let select = format!(
            "SELECT data, expires_at, version FROM `{table}` WHERE id = ? AND expires_at > ?"
        );
        let (mut raw_save, mut save, mut raw_load, mut load) = Default::default();
        // Alternating chunks, so drift on a shared machine hits both alike.
        for part in keys.chunks((keys.len() / 10).max(1)) {
            let t = Instant::now();
            for (i, id) in part.iter().enumerate() {
                sqlx::query(&upsert)
                    .bind(id.as_bytes().as_slice())
                    .bind(value.as_slice())
                    .bind(i64::MAX / 2)
                    .bind(i as i64 + 1)
                    .execute(&pool)
                    .await
                    .expect("raw upsert");
            }
            raw_save += t.elapsed();
            let t = Instant::now();
            for id in part {
                store.save(id, &value, far(), None).await.expect("save");
            }
            save += t.elapsed();
        }
        for part in keys.chunks((keys.len() / 10).max(1)) {
            let t = Instant::now();
            for id in part {
                std::hint::black_box(
                    sqlx::query(&select)
                        .bind(id.as_bytes().as_slice())
                        .bind(0_i64)
                        .fetch_optional(&pool)
                        .await
                        .expect("raw select"),
                );
            }
            raw_load += t.elapsed();
            let t = Instant::now();
            for id in part {
                std::hint::black_box(store.load(id).await.expect("load"));
            }
            load += t.elapsed();
        }
        let (raw_save, save, raw_load, load) = (
            per_op(raw_save, n),
            per_op(save, n),
            per_op(raw_load, n),
            per_op(load, n),
        );
        println!(
            "mysql   n={n}: raw upsert {raw_save:.1} µs, store save {save:.1} µs ({:.2}x); \
             raw select {raw_load:.1} µs, store load {load:.1} µs ({:.2}x)",
            save / raw_save,
            load / raw_load
        );
        sqlx::query(&format!("DROP TABLE `{table}`"))
            .execute(&pool)
            .await
            .ok();
    });
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    println!(
        "thread hand-off (blocking two-thread round trip): {:.1} µs",
        handoff(n)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let blocking = rt.block_on(async {
        let t = Instant::now();
        for i in 0..n {
            std::hint::black_box(tokio::task::spawn_blocking(move || i + 1).await.ok());
        }
        per_op(t.elapsed(), n)
    });
    println!("tokio spawn_blocking round trip from an async task: {blocking:.1} µs");
    #[cfg(feature = "sqlite")]
    sqlite(&rt, n);
    #[cfg(feature = "postgres")]
    postgres(&rt, n / 4);
    #[cfg(feature = "mysql")]
    mysql(&rt, n / 4);
    let _ = &rt;
}
