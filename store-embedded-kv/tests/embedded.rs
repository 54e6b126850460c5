//! Engine-specific behaviour beyond the shared suite: group commit, the
//! expiry index, native update, damaged files, and the redb process lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use session_core::{
    ManualClock, SessionId, SessionStore, StoreError, StoreStats, Timestamp, Update, Updated,
};
use store_embedded_kv::{Durability, EmbeddedStore, Engine};

const T0: i64 = 1_767_225_600_000;

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(T0))
}

fn open(
    dir: &std::path::Path,
    engine: Engine,
    d: Durability,
    clock: &ManualClock,
) -> EmbeddedStore {
    match EmbeddedStore::builder()
        .path(dir)
        .engine(engine)
        .durability(d)
        .clock(clock.clone())
        .open()
    {
        Ok(s) => s,
        Err(e) => panic!("open {engine:?} failed: {e}"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

fn detail(stats: &StoreStats, name: &str) -> u64 {
    stats
        .details
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("stats detail {name} missing"))
}

fn engines() -> Vec<Engine> {
    vec![
        #[cfg(feature = "redb")]
        Engine::Redb,
        #[cfg(feature = "lmdb")]
        Engine::Lmdb,
    ]
}

fn tmp() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("tempdir: {e}"),
    }
}

/// 96 concurrent writers of every kind land in shared durable transactions,
/// and each still gets its own result.
#[test]
fn group_commit_gives_each_writer_its_own_result() {
    for engine in engines() {
        let dir = tmp();
        let clock = clock();
        let store = Arc::new(open(dir.path(), engine, Durability::Immediate, &clock));
        rt().block_on(async {
            let exp = Timestamp::from_millis(T0 + 3_600_000);
            let contested = SessionId::generate();
            let cas_id = SessionId::generate();
            let counter = SessionId::generate();
            let v0 = store
                .create(&cas_id, b"v0", exp)
                .await
                .map_err(|e| e.to_string());
            let Ok(v0) = v0 else { panic!("{v0:?}") };
            let barrier = Arc::new(tokio::sync::Barrier::new(96));
            let mut tasks = Vec::new();
            for k in 0..96usize {
                let (s, b) = (store.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    b.wait().await;
                    let mine = SessionId::generate();
                    let distinct = s.create(&mine, &k.to_le_bytes(), exp).await.map(|_| mine);
                    let race = s.create(&contested, &k.to_le_bytes(), exp).await;
                    let cas = s.save(&cas_id, &k.to_le_bytes(), exp, Some(v0)).await;
                    let too_large = s.save(&mine, &vec![0u8; (1 << 20) + 1], exp, None).await;
                    let inc = s
                        .update(&counter, &mut |cur| {
                            let n = cur.map_or(0, |r| r.data.len());
                            Update::Put {
                                data: vec![1; n + 1],
                                expires_at: exp,
                            }
                        })
                        .await;
                    (k, distinct, race, cas, too_large, inc)
                }));
            }
            let (mut race_wins, mut cas_wins) = (0, 0);
            for t in tasks {
                let (k, distinct, race, cas, too_large, inc) = match t.await {
                    Ok(r) => r,
                    Err(e) => panic!("task: {e}"),
                };
                let mine = distinct.unwrap_or_else(|e| panic!("distinct create failed: {e}"));
                let rec = store.load(&mine).await.ok().flatten();
                assert_eq!(
                    rec.map(|r| r.data),
                    Some(k.to_le_bytes().to_vec()),
                    "{engine:?}"
                );
                match race {
                    Ok(_) => race_wins += 1,
                    Err(StoreError::AlreadyExists) => {}
                    Err(e) => panic!("race create: unexpected {e}"),
                }
                match cas {
                    Ok(_) => cas_wins += 1,
                    Err(StoreError::Conflict) => {}
                    Err(e) => panic!("cas: unexpected {e}"),
                }
                assert!(
                    matches!(too_large, Err(StoreError::TooLarge { .. })),
                    "{engine:?}"
                );
                assert!(
                    matches!(inc, Ok(Updated::Written(_))),
                    "{engine:?}: {inc:?}"
                );
            }
            assert_eq!(
                (race_wins, cas_wins),
                (1, 1),
                "{engine:?}: exactly one winner each"
            );
            let n = store
                .load(&counter)
                .await
                .ok()
                .flatten()
                .map(|r| r.data.len());
            assert_eq!(n, Some(96), "{engine:?}: every update counted once");
            let stats = store.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
            let (commits, ops) = (detail(&stats, "commits"), detail(&stats, "ops_committed"));
            assert!(
                commits < ops,
                "{engine:?}: no batching happened ({commits} commits for {ops} ops)"
            );
            assert_eq!(stats.live, 96 + 3, "{engine:?}");
        });
    }
}

/// `update` runs its closure once per call: inside the write transaction,
/// never as a retry loop.
#[test]
fn native_update_calls_the_closure_once() {
    for engine in engines() {
        let dir = tmp();
        let clock = clock();
        let store = Arc::new(open(dir.path(), engine, Durability::Eventual, &clock));
        let calls = Arc::new(AtomicUsize::new(0));
        let id = SessionId::generate();
        rt().block_on(async {
            let exp = Timestamp::from_millis(T0 + 60_000);
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let (s, calls) = (store.clone(), calls.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..10 {
                        let r = s
                            .update(&id, &mut |cur| {
                                calls.fetch_add(1, Ordering::Relaxed);
                                let mut d = cur.map_or_else(Vec::new, |r| r.data.clone());
                                d.push(0);
                                Update::Put {
                                    data: d,
                                    expires_at: exp,
                                }
                            })
                            .await;
                        assert!(r.is_ok(), "{r:?}");
                    }
                }));
            }
            for t in tasks {
                assert!(t.await.is_ok());
            }
            let len = store.load(&id).await.ok().flatten().map(|r| r.data.len());
            assert_eq!(len, Some(320), "{engine:?}");
        });
        assert_eq!(
            calls.load(Ordering::Relaxed),
            320,
            "{engine:?}: closure ran more than once per call"
        );
    }
}

/// The expiry index: purging 1,000 expired among 200,000 visits 1,000 index
/// entries, not 200,000 records.
#[test]
fn delete_expired_visits_only_expired_records() {
    const TOTAL: usize = 200_000;
    const EXPIRED: usize = 1_000;
    for engine in engines() {
        let dir = tmp();
        let clock = clock();
        let store = Arc::new(open(dir.path(), engine, Durability::Eventual, &clock));
        let started = std::time::Instant::now();
        rt().block_on(async {
            let mut tasks = Vec::new();
            for w in 0..256 {
                let s = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in (w..TOTAL).step_by(256) {
                        // 1,000 expire within the first second, the rest in an hour.
                        let ttl = if i < EXPIRED { 500 } else { 3_600_000 };
                        let exp = Timestamp::from_millis(T0 + ttl);
                        let r = s.create(&SessionId::generate(), &[7; 16], exp).await;
                        assert!(r.is_ok(), "{r:?}");
                    }
                }));
            }
            for t in tasks {
                assert!(t.await.is_ok());
            }
            clock.advance(Duration::from_secs(1));
            let before = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (before.live, before.expired),
                ((TOTAL - EXPIRED) as u64, EXPIRED as u64)
            );
            assert_eq!(before.live_bytes, ((TOTAL - EXPIRED) * 16) as u64);
            let removed = store
                .delete_expired()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(removed, EXPIRED as u64, "{engine:?}");
            let after = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                detail(&after, "purge_index_entries_visited"),
                EXPIRED as u64,
                "{engine:?}: delete_expired must visit only expired entries"
            );
            assert_eq!((after.live, after.expired), ((TOTAL - EXPIRED) as u64, 0));
        });
        eprintln!("{engine:?}: {:?}", started.elapsed());
    }
}

/// Eventual writes are made durable when the store is closed.
#[test]
fn eventual_writes_survive_a_clean_close() {
    for engine in engines() {
        let dir = tmp();
        let clock = clock();
        let id = SessionId::generate();
        let exp = Timestamp::from_millis(T0 + 60_000);
        {
            let store = open(dir.path(), engine, Durability::Eventual, &clock);
            let r = rt().block_on(store.create(&id, b"kept", exp));
            assert!(r.is_ok(), "{r:?}");
        }
        let store = open(dir.path(), engine, Durability::Immediate, &clock);
        let rec = rt().block_on(store.load(&id)).ok().flatten();
        assert_eq!(rec.map(|r| r.data), Some(b"kept".to_vec()), "{engine:?}");
    }
}

fn open_err(dir: &std::path::Path, engine: Engine) -> StoreError {
    match EmbeddedStore::builder().path(dir).engine(engine).open() {
        Ok(_) => panic!("{engine:?}: opening a damaged or foreign file must fail"),
        Err(e) => e,
    }
}

/// A file that is not a database gives a typed error, never a panic.
#[test]
fn foreign_files_are_typed_errors() {
    let garbage: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for engine in engines() {
        let dir = tmp();
        let file = match engine {
            #[cfg(feature = "redb")]
            Engine::Redb => "sessions.redb",
            #[cfg(feature = "lmdb")]
            Engine::Lmdb => "data.mdb",
            _ => unreachable!(),
        };
        assert!(std::fs::write(dir.path().join(file), &garbage).is_ok());
        let e = open_err(dir.path(), engine);
        assert!(
            matches!(
                e,
                StoreError::Corrupt(_) | StoreError::Backend(_) | StoreError::Io(_)
            ),
            "{engine:?}: {e}"
        );
        // A text file too.
        assert!(std::fs::write(dir.path().join(file), b"hello, not a database\n").is_ok());
        let _ = open_err(dir.path(), engine);
    }
}

/// Flipped bytes inside a real redb file: open verifies checksums and says
/// `Corrupt` instead of trusting (or panicking on) the damage.
#[cfg(feature = "redb")]
#[test]
fn redb_damaged_file_is_corrupt_not_a_panic() {
    let dir = tmp();
    let clock = clock();
    {
        let store = open(dir.path(), Engine::Redb, Durability::Eventual, &clock);
        rt().block_on(async {
            for i in 0..2_000u32 {
                let exp = Timestamp::from_millis(T0 + 60_000);
                let r = store
                    .create(&SessionId::generate(), &i.to_le_bytes().repeat(64), exp)
                    .await;
                assert!(r.is_ok(), "{r:?}");
            }
        });
    }
    let path = dir.path().join("sessions.redb");
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    assert!(bytes.len() > 64 * 1024);
    // Damage data pages but leave the header, so the file still looks like redb.
    for b in bytes.iter_mut().skip(8 * 1024).step_by(97) {
        *b ^= 0x5a;
    }
    assert!(std::fs::write(&path, &bytes).is_ok());
    let result = std::panic::catch_unwind(|| EmbeddedStore::builder().path(dir.path()).open());
    match result {
        Ok(Err(StoreError::Corrupt(_))) => {}
        Ok(Err(e)) => panic!("expected Corrupt, got {e}"),
        Ok(Ok(_)) => panic!("a damaged file opened as if intact"),
        Err(_) => panic!("opening a damaged file panicked"),
    }
}

/// A value that does not decode is `Corrupt` for that id only; an upsert or a
/// delete clears it.
#[cfg(feature = "redb")]
#[test]
fn corrupt_record_is_an_error_for_that_id_only() {
    let dir = tmp();
    let clock = clock();
    let (bad, good) = (SessionId::generate(), SessionId::generate());
    let exp = Timestamp::from_millis(T0 + 60_000);
    {
        let store = open(dir.path(), Engine::Redb, Durability::Immediate, &clock);
        assert!(rt().block_on(store.create(&good, b"fine", exp)).is_ok());
    }
    {
        let db = redb::Database::create(dir.path().join("sessions.redb"));
        let Ok(db) = db else { panic!("raw open") };
        let Ok(txn) = db.begin_write() else {
            panic!("raw txn")
        };
        {
            // The crate's layout: one table `kv`, sessions under the prefix `s`.
            let def: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("kv");
            let Ok(mut t) = txn.open_table(def) else {
                panic!("raw table")
            };
            let key = [&b"s"[..], &bad.as_bytes()[..]].concat();
            assert!(t.insert(&key[..], &b"\x01short"[..]).is_ok());
        }
        assert!(txn.commit().is_ok());
    }
    let store = open(dir.path(), Engine::Redb, Durability::Immediate, &clock);
    rt().block_on(async {
        assert!(matches!(
            store.load(&bad).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.create(&bad, b"x", exp).await,
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            store.load(&good).await.ok().flatten().map(|r| r.data),
            Some(b"fine".to_vec())
        );
        assert!(store.save(&bad, b"repaired", exp, None).await.is_ok());
        assert_eq!(
            store.load(&bad).await.ok().flatten().map(|r| r.data),
            Some(b"repaired".to_vec())
        );
    });
}

#[cfg(feature = "redb")]
const CHILD_ENV: &str = "STORE_EMBEDDED_KV_TEST_OPEN";

/// redb is single-process: a second process opening the same store gets
/// `Busy` with an [`store_embedded_kv::AlreadyOpen`] cause, and can open it
/// once the first has closed.
#[cfg(feature = "redb")]
#[test]
fn redb_second_process_gets_a_typed_error() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let code = match EmbeddedStore::builder().path(dir).open() {
            Ok(_) => 0,
            Err(StoreError::Busy(cause))
                if cause
                    .downcast_ref::<store_embedded_kv::AlreadyOpen>()
                    .is_some() =>
            {
                42
            }
            Err(e) => {
                eprintln!("unexpected error: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let dir = tmp();
    let clock = clock();
    let child = || {
        let exe = std::env::current_exe().unwrap_or_default();
        std::process::Command::new(exe)
            .args([
                "redb_second_process_gets_a_typed_error",
                "--exact",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .ok()
            .and_then(|s| s.code())
    };
    let store = open(dir.path(), Engine::Redb, Durability::Immediate, &clock);
    assert_eq!(
        child(),
        Some(42),
        "second process must get Busy(AlreadyOpen)"
    );
    drop(store);
    assert_eq!(child(), Some(0), "after close, another process may open it");
}

const CRASH_ENV: &str = "STORE_EMBEDDED_KV_TEST_CRASH";

fn crash_data(salt: &SessionId, i: u64) -> Vec<u8> {
    let mut d = salt.as_bytes().to_vec();
    d.extend_from_slice(&i.to_le_bytes());
    d.repeat(20)
}

fn crash_id(salt: &SessionId, i: u64) -> SessionId {
    let mut b = *salt.as_bytes();
    for (x, y) in b.iter_mut().zip(i.to_le_bytes()) {
        *x ^= y;
    }
    SessionId::from_bytes(b)
}

fn engine_named(name: &str) -> (Engine, bool) {
    match name {
        #[cfg(feature = "redb")]
        "redb" => (Engine::Redb, false),
        #[cfg(feature = "redb")]
        "redb-shared" => (Engine::Redb, true),
        #[cfg(feature = "lmdb")]
        "lmdb" => (Engine::Lmdb, false),
        other => panic!("unknown engine {other}"),
    }
}

fn open_named(dir: &std::path::Path, name: &str) -> session_core::StoreResult<EmbeddedStore> {
    let (engine, shared) = engine_named(name);
    let b = EmbeddedStore::builder()
        .path(dir)
        .engine(engine)
        .clock(clock());
    #[cfg(feature = "redb")]
    let b = b.redb_multi_process(shared);
    #[cfg(not(feature = "redb"))]
    let _ = shared;
    b.open()
}

/// Child part: writes acknowledged sessions until killed.
fn crash_child(spec: &str) -> ! {
    use std::io::Write as _;
    let mut parts = spec.splitn(3, ';');
    let (Some(name), Some(dir), Some(salt)) = (parts.next(), parts.next(), parts.next()) else {
        std::process::exit(2)
    };
    let Ok(salt) = SessionId::parse(salt) else {
        std::process::exit(2)
    };
    let store = match open_named(std::path::Path::new(dir), name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("child open: {e}");
            std::process::exit(3)
        }
    };
    let exp = Timestamp::from_millis(T0 + 86_400_000);
    rt().block_on(async {
        for i in 0.. {
            if let Err(e) = store
                .save(&crash_id(&salt, i), &crash_data(&salt, i), exp, None)
                .await
            {
                eprintln!("child save: {e}");
                std::process::exit(4);
            }
            let mut out = std::io::stdout().lock();
            if writeln!(out, "\nACK {i}")
                .and_then(|()| out.flush())
                .is_err()
            {
                std::process::exit(5);
            }
        }
    });
    std::process::exit(0)
}

/// Crash test per engine: a child writes with `Immediate` durability and is
/// SIGKILLed at a random moment, several times; after each kill the store opens
/// cleanly and holds every write the child had acknowledged.
#[test]
fn crash_loop_keeps_every_acknowledged_write() {
    use std::io::BufRead as _;
    if let Ok(spec) = std::env::var(CRASH_ENV) {
        crash_child(&spec);
    }
    let mut names = Vec::new();
    #[cfg(feature = "redb")]
    names.extend(["redb", "redb-shared"]);
    #[cfg(feature = "lmdb")]
    names.push("lmdb");
    for name in names {
        let dir = tmp();
        for round in 0..4 {
            let salt = SessionId::generate();
            // A random kill point between 5 and 68 acks.
            let kill_at = 5 + u64::from(salt.as_bytes()[0] % 64);
            let exe = std::env::current_exe().unwrap_or_default();
            let spec = format!("{name};{};{}", dir.path().display(), salt.to_hex());
            let child = std::process::Command::new(exe)
                .args([
                    "crash_loop_keeps_every_acknowledged_write",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_ENV, spec)
                .stdout(std::process::Stdio::piped())
                .spawn();
            let Ok(mut child) = child else {
                panic!("spawn failed")
            };
            let Some(stdout) = child.stdout.take() else {
                panic!("no stdout")
            };
            let mut acked = 0u64;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line
                    .strip_prefix("ACK ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    acked = i + 1;
                    if acked == kill_at {
                        let _ = child.kill(); // SIGKILL
                        break;
                    }
                }
            }
            let _ = child.wait();
            assert_eq!(
                acked, kill_at,
                "{name} round {round}: the child stopped early"
            );
            // The harness-like retry: the kernel releases the dead child's locks.
            let mut store = None;
            for _ in 0..50 {
                match open_named(dir.path(), name) {
                    Ok(s) => {
                        store = Some(s);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let Some(store) = store else {
                panic!("{name} round {round}: no clean open after SIGKILL")
            };
            rt().block_on(async {
                for i in 0..acked {
                    let rec = store.load(&crash_id(&salt, i)).await;
                    let data = rec.map_err(|e| e.to_string()).map(|r| r.map(|r| r.data));
                    assert_eq!(
                        data,
                        Ok(Some(crash_data(&salt, i))),
                        "{name} round {round}: acknowledged write #{i} lost after SIGKILL"
                    );
                }
            });
        }
    }
}

/// A full LMDB map is a typed error naming the option; the store stays usable.
#[cfg(feature = "lmdb")]
#[test]
fn lmdb_full_map_is_a_clear_error() {
    let dir = tmp();
    let store = EmbeddedStore::builder()
        .path(dir.path())
        .engine(Engine::Lmdb)
        .lmdb_map_size(1 << 20)
        .clock(clock())
        .open();
    let Ok(store) = store else { panic!("open") };
    let exp = Timestamp::from_millis(T0 + 60_000);
    rt().block_on(async {
        let first = SessionId::generate();
        assert!(store.create(&first, b"first", exp).await.is_ok());
        let mut full = None;
        for _ in 0..1_000 {
            if let Err(e) = store
                .create(&SessionId::generate(), &[1; 16 * 1024], exp)
                .await
            {
                full = Some(e);
                break;
            }
        }
        let Some(e) = full else {
            panic!("a 1 MiB map never filled up")
        };
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        assert!(matches!(e, StoreError::Backend(_)), "{msg}");
        assert!(msg.contains("lmdb_map_size"), "{msg}");
        let rec = store.load(&first).await.ok().flatten();
        assert_eq!(rec.map(|r| r.data), Some(b"first".to_vec()));
    });
}

/// Database directories are 0700 and files 0600: sessions are secrets.
#[cfg(unix)]
#[test]
fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    for engine in engines() {
        let dir = tmp();
        let store_dir = dir.path().join("store");
        let store = open(&store_dir, engine, Durability::Immediate, &clock());
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&store_dir), Some(0o700), "{engine:?}");
        let entries = std::fs::read_dir(&store_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>());
        let entries = entries.unwrap_or_default();
        assert!(!entries.is_empty());
        for f in entries {
            assert_eq!(mode(&f), Some(0o600), "{engine:?}: {}", f.display());
        }
        drop(store);
    }
}

/// A rewrite that keeps the expiry (and size) leaves the index entry and the
/// meta counts alone; one that changes either updates them. Either way the
/// index keeps exactly one entry per record and the counts stay exact.
#[test]
fn rewrites_keep_index_and_counts_exact() {
    fn ok<T>(r: session_core::StoreResult<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }
    for engine in engines() {
        let dir = tmp();
        let clock = clock();
        let store = open(dir.path(), engine, Durability::Eventual, &clock);
        let soon = Timestamp::from_millis(T0 + 1_000);
        let later = Timestamp::from_millis(T0 + 5_000);
        rt().block_on(async {
            let ids: Vec<SessionId> = (0..5).map(|_| SessionId::generate()).collect();
            let mut versions = Vec::new();
            for id in &ids {
                versions.push(ok(store.create(id, &[1; 10], soon).await));
            }
            // Same expiry, same size: only the record changes.
            let v0 = ok(store.save(&ids[0], &[2; 10], soon, None).await);
            assert_ne!(v0, versions[0]);
            // Same expiry, new size: the entry's length changes in place.
            ok(store.save(&ids[1], &[2; 20], soon, None).await);
            // New expiry: the entry moves.
            ok(store.save(&ids[2], &[2; 10], later, None).await);
            // Touch to the same expiry, then to a later one.
            assert!(ok(store.touch(&ids[3], soon).await));
            assert!(ok(store.touch(&ids[3], later).await));
            // Conditional save keeping expiry and size.
            ok(store.save(&ids[4], &[3; 10], soon, Some(versions[4])).await);

            let s = ok(store.stats().await);
            assert_eq!((s.live, s.expired, s.live_bytes), (5, 0, 60), "{engine:?}");
            let got = ok(store.load(&ids[0]).await).map(|r| (r.data, r.version));
            assert_eq!(got, Some((vec![2; 10], v0)), "{engine:?}");

            clock.advance(Duration::from_millis(2_000));
            let s = ok(store.stats().await);
            assert_eq!((s.live, s.expired, s.live_bytes), (2, 3, 20), "{engine:?}");
            assert_eq!(ok(store.delete_expired().await), 3, "{engine:?}");
            let s = ok(store.stats().await);
            assert_eq!(detail(&s, "purge_index_entries_visited"), 3, "{engine:?}");
            assert_eq!((s.live, s.expired, s.live_bytes), (2, 0, 20), "{engine:?}");
            for (i, id) in ids.iter().enumerate() {
                let live = ok(store.load(id).await).is_some();
                assert_eq!(live, i == 2 || i == 3, "{engine:?} id {i}");
            }

            clock.advance(Duration::from_millis(4_000));
            assert_eq!(ok(store.delete_expired().await), 2, "{engine:?}");
            let s = ok(store.stats().await);
            assert_eq!(detail(&s, "purge_index_entries_visited"), 5, "{engine:?}");
            assert_eq!((s.live, s.expired, s.live_bytes), (0, 0, 0), "{engine:?}");
        });
    }
}
