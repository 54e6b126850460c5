//! Checks beyond the shared suite: hostile table names, concurrent migrations,
//! rows written by hand that the store must call `Corrupt` (never panic), touch
//! to an unchanged expiry, and recovery after the server drops a connection.
//! Server tests need `SESSIONS_TEST_POSTGRES_URL` / `SESSIONS_TEST_MYSQL_URL`.

mod common;

use session_core::{ManualClock, SessionId, SessionStore, StoreError, StoreResult, Timestamp};

const T0: i64 = 1_767_225_600_000;
const HOSTILE: &[&str] = &[
    "x; DROP TABLE y",
    "sessions\"; --",
    "sess`ions",
    "o'brien",
    "sessi\u{043e}ns",
    "ta\u{0431}le",
    "with space",
    "",
    "9lives",
    "a-b",
    "\u{202e}sessions",
];

fn long_name() -> String {
    "a".repeat(64)
}

fn in_hour() -> Timestamp {
    Timestamp::from_millis(T0 + 3_600_000)
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn unique_table(prefix: &str) -> String {
    format!("{prefix}_{}", &SessionId::generate().to_hex()[..12])
}

fn assert_corrupt<T: std::fmt::Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Corrupt(_))),
        "{what}: expected Corrupt, got {r:?}"
    );
}

/// Writes, reads, touches to the same expiry, deletes: the store still works.
async fn still_usable(s: &dyn SessionStore) {
    let id = SessionId::generate();
    let v = s.create(&id, b"ok", in_hour()).await.unwrap();
    assert_eq!(s.load(&id).await.unwrap().unwrap().version, v);
    // Same expiry again: still "found" (MySQL counts matched, not changed, rows).
    assert!(s.touch(&id, in_hour()).await.unwrap());
    assert!(s.touch(&id, in_hour()).await.unwrap());
    assert!(s.delete(&id).await.unwrap());
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use store_sql::{Dialect, SqliteStore, schema_sql};

    fn open(path: &std::path::Path, table: &str) -> StoreResult<SqliteStore> {
        SqliteStore::builder()
            .path(path)
            .table(table)
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
    }

    #[test]
    fn hostile_table_names_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        for name in HOSTILE
            .iter()
            .copied()
            .map(String::from)
            .chain([long_name()])
        {
            let r = open(&path, &name);
            assert!(
                matches!(r, Err(StoreError::Config(_))),
                "{name:?} was not rejected"
            );
        }
        // Nothing was created for a rejected name.
        assert!(!path.exists());
    }

    #[test]
    fn concurrent_migrate_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || open(&path, "sessions").map(drop))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        let s = open(&path, "sessions").unwrap();
        s.migrate().unwrap();
        rt().block_on(still_usable(&s));
    }

    #[test]
    fn file_is_owner_only() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.db");
            let _s = open(&path, "sessions").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
    }

    #[test]
    fn corrupt_rows_are_corrupt_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = open(&path, "sessions").unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        let (bad_exp, bad_data, bad_ver, null_ver) = (
            SessionId::from_bytes([1; 32]),
            SessionId::from_bytes([2; 32]),
            SessionId::from_bytes([3; 32]),
            SessionId::from_bytes([4; 32]),
        );
        let far = T0 + 3_600_000;
        raw.execute(
            "INSERT INTO sessions VALUES (?1, x'00', 'soon', 5)",
            [bad_exp.as_bytes().as_slice()],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO sessions VALUES (?1, 'text, not a blob', ?2, 5)",
            rusqlite::params![bad_data.as_bytes().as_slice(), far],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO sessions VALUES (?1, x'00', ?2, 0)",
            rusqlite::params![bad_ver.as_bytes().as_slice(), far],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO sessions VALUES (?1, x'00', ?2, 1.5)",
            rusqlite::params![null_ver.as_bytes().as_slice(), far],
        )
        .unwrap();
        let rt = rt();
        for id in [bad_exp, bad_data, bad_ver, null_ver] {
            assert_corrupt(rt.block_on(s.load(&id)), "load");
        }
        assert_corrupt(rt.block_on(s.scan(None, 100)), "scan");
        // Other ids are unaffected, and the bad rows can be overwritten.
        rt.block_on(still_usable(&s));
        rt.block_on(s.save(&bad_exp, b"fixed", in_hour(), None))
            .unwrap();
        assert_eq!(
            rt.block_on(s.load(&bad_exp)).unwrap().unwrap().data,
            b"fixed"
        );
    }

    #[test]
    fn adopts_an_in_memory_connection_and_external_schema() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&schema_sql(Dialect::Sqlite, "app_sessions").unwrap())
            .unwrap();
        let s = SqliteStore::builder()
            .connection(conn)
            .table("app_sessions")
            .migrate(false)
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
            .unwrap();
        rt().block_on(still_usable(&s));
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use super::*;
    use store_sql::PgStore;

    fn url(test: &str) -> Option<String> {
        common::server_url(common::POSTGRES_ENV, test)
    }

    async fn open(url: &str, table: &str, migrate: bool) -> StoreResult<PgStore> {
        PgStore::builder()
            .url(url)
            .max_connections(2)
            .table(table)
            .migrate(migrate)
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
            .await
    }

    #[tokio::test]
    async fn hostile_table_names_are_config_errors() {
        // Names are validated before any connection is made.
        for name in HOSTILE
            .iter()
            .copied()
            .map(String::from)
            .chain([long_name()])
        {
            let r = open("postgres://nobody@127.0.0.1:1/none", &name, true).await;
            assert!(matches!(r, Err(StoreError::Config(_))), "{name:?}");
        }
        for name in ["a.b.c", "x.y; drop", ".x", "x."] {
            let r = open("postgres://nobody@127.0.0.1:1/none", name, true).await;
            assert!(matches!(r, Err(StoreError::Config(_))), "{name:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_migrate_from_many_tasks() {
        let Some(url) = url("postgres concurrent_migrate") else {
            return;
        };
        let table = unique_table("mig");
        let mut stores = Vec::new();
        for _ in 0..6 {
            stores.push(open(&url, &table, false).await.unwrap());
        }
        let tasks: Vec<_> = stores
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { s.migrate().await }))
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        still_usable(&stores[0]).await;
    }

    #[tokio::test]
    async fn schema_qualified_table() {
        let Some(url) = url("postgres schema_qualified_table") else {
            return;
        };
        let s = open(&url, "public.sessions_schema_test", true)
            .await
            .unwrap();
        assert_eq!(s.table().quoted(), "\"public\".\"sessions_schema_test\"");
        still_usable(&s).await;
    }

    #[tokio::test]
    async fn corrupt_rows_are_corrupt_not_panics() {
        let Some(url) = url("postgres corrupt_rows") else {
            return;
        };
        let table = unique_table("bad");
        // A lax table, as a team managing its own schema might have made it.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::raw_sql(&format!(
            "CREATE TABLE \"{table}\" (id BYTEA PRIMARY KEY, data BYTEA, \
             expires_at BIGINT, version BIGINT)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let s = open(&url, &table, true).await.unwrap();
        let far = T0 + 3_600_000;
        let (null_data, zero_ver, null_exp) = (
            SessionId::from_bytes([1; 32]),
            SessionId::from_bytes([2; 32]),
            SessionId::from_bytes([3; 32]),
        );
        let ins = format!("INSERT INTO \"{table}\" VALUES ($1, $2, $3, $4)");
        sqlx::query(&ins)
            .bind(null_data.as_bytes().as_slice())
            .bind(None::<Vec<u8>>)
            .bind(far)
            .bind(7_i64)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(&ins)
            .bind(zero_ver.as_bytes().as_slice())
            .bind(b"x".as_slice())
            .bind(far)
            .bind(0_i64)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(&ins)
            .bind(null_exp.as_bytes().as_slice())
            .bind(b"x".as_slice())
            .bind(None::<i64>)
            .bind(7_i64)
            .execute(&pool)
            .await
            .unwrap();
        // A 31-byte id: only a scan can reach it.
        sqlx::query(&ins)
            .bind(vec![0u8; 31])
            .bind(b"x".as_slice())
            .bind(far)
            .bind(7_i64)
            .execute(&pool)
            .await
            .unwrap();
        assert_corrupt(s.load(&null_data).await, "load NULL data");
        assert_corrupt(s.load(&zero_ver).await, "load version 0");
        assert_corrupt(s.scan(None, 100).await, "scan");
        let wrong_len = s.scan(Some(&SessionId::from_bytes([9; 32])), 10).await;
        assert!(wrong_len.unwrap().is_empty());
        still_usable(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_after_its_connection_is_killed() {
        let Some(url) = url("postgres recovers_after_kill") else {
            return;
        };
        let s = PgStore::builder()
            .url(&url)
            .max_connections(1)
            .table(unique_table("kill"))
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
            .await
            .unwrap();
        let id = SessionId::generate();
        s.create(&id, b"before", in_hour()).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(s.pool())
            .await
            .unwrap();
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&admin)
            .await
            .unwrap();
        assert!(killed);
        recover(&s, &id).await;
    }

    async fn recover(s: &PgStore, id: &SessionId) {
        // The next operations may fail (as errors, never panics); the pool
        // reconnects and the store works again without being reopened.
        let mut errors = 0;
        for _ in 0..20 {
            match s.load(id).await {
                Ok(rec) => {
                    assert_eq!(rec.unwrap().data, b"before");
                    still_usable(s).await;
                    assert!(errors <= 2, "{errors} errors before recovering");
                    return;
                }
                Err(StoreError::Backend(_) | StoreError::Busy(_)) => errors += 1,
                Err(e) => panic!("unexpected error kind: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the store did not recover after its connection was killed");
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use std::time::Duration;

    use super::*;
    use store_sql::MySqlStore;

    fn url(test: &str) -> Option<String> {
        common::server_url(common::MYSQL_ENV, test)
    }

    async fn open(url: &str, table: &str, migrate: bool) -> StoreResult<MySqlStore> {
        MySqlStore::builder()
            .url(url)
            .max_connections(2)
            .table(table)
            .migrate(migrate)
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
            .await
    }

    #[tokio::test]
    async fn hostile_table_names_are_config_errors() {
        for name in HOSTILE
            .iter()
            .copied()
            .map(String::from)
            .chain([long_name(), "db.sessions".to_owned()])
        {
            let r = open("mysql://nobody@127.0.0.1:1/none", &name, true).await;
            assert!(matches!(r, Err(StoreError::Config(_))), "{name:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_migrate_from_many_tasks() {
        let Some(url) = url("mysql concurrent_migrate") else {
            return;
        };
        let table = unique_table("mig");
        let mut stores = Vec::new();
        for _ in 0..6 {
            stores.push(open(&url, &table, false).await.unwrap());
        }
        let tasks: Vec<_> = stores
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { s.migrate().await }))
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        still_usable(&stores[0]).await;
    }

    #[tokio::test]
    async fn corrupt_rows_are_corrupt_not_panics() {
        let Some(url) = url("mysql corrupt_rows") else {
            return;
        };
        let table = unique_table("bad");
        let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
        sqlx::raw_sql(&format!(
            "CREATE TABLE `{table}` (id VARBINARY(64) PRIMARY KEY, data LONGBLOB NULL, \
             expires_at BIGINT NULL, version BIGINT NULL, INDEX (expires_at))"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let s = open(&url, &table, true).await.unwrap();
        let far = T0 + 3_600_000;
        let (null_data, zero_ver, null_exp) = (
            SessionId::from_bytes([1; 32]),
            SessionId::from_bytes([2; 32]),
            SessionId::from_bytes([3; 32]),
        );
        let ins = format!("INSERT INTO `{table}` VALUES (?, ?, ?, ?)");
        for (id, data, exp, ver) in [
            (null_data.as_bytes().to_vec(), None, Some(far), 7_i64),
            (
                zero_ver.as_bytes().to_vec(),
                Some(b"x".to_vec()),
                Some(far),
                0,
            ),
            (null_exp.as_bytes().to_vec(), Some(b"x".to_vec()), None, 7),
            (vec![0u8; 31], Some(b"x".to_vec()), Some(far), 7),
        ] {
            sqlx::query(&ins)
                .bind(id)
                .bind(data)
                .bind(exp)
                .bind(ver)
                .execute(&pool)
                .await
                .unwrap();
        }
        assert_corrupt(s.load(&null_data).await, "load NULL data");
        assert_corrupt(s.load(&zero_ver).await, "load version 0");
        assert_corrupt(s.scan(None, 100).await, "scan");
        still_usable(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_after_its_connection_is_killed() {
        let Some(url) = url("mysql recovers_after_kill") else {
            return;
        };
        let s = MySqlStore::builder()
            .url(&url)
            .max_connections(1)
            .table(unique_table("kill"))
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
            .await
            .unwrap();
        let id = SessionId::generate();
        s.create(&id, b"before", in_hour()).await.unwrap();
        let conn_id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(s.pool())
            .await
            .unwrap();
        let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
        sqlx::raw_sql(&format!("KILL CONNECTION {conn_id}"))
            .execute(&admin)
            .await
            .unwrap();
        let mut errors = 0;
        for _ in 0..20 {
            match s.load(&id).await {
                Ok(rec) => {
                    assert_eq!(rec.unwrap().data, b"before");
                    still_usable(&s).await;
                    assert!(errors <= 2, "{errors} errors before recovering");
                    return;
                }
                Err(StoreError::Backend(_) | StoreError::Busy(_)) => errors += 1,
                Err(e) => panic!("unexpected error kind: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the store did not recover after its connection was killed");
    }
}
