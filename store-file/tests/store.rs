//! File-store specifics the shared suite cannot know: corrupt files on disk,
//! modes, configuration errors, purging, hostile ids.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use session_core::{ManualClock, SessionId, SessionStore, StoreError, Timestamp, Update, Updated};
use store_file::{ConfigError, CorruptFile, Durability, FileStore, MAX_FORMAT_VALUE};

const T0: i64 = 1_700_000_000_000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

fn open(dir: &Path, clock: &ManualClock) -> FileStore {
    FileStore::builder()
        .path(dir.join("s"))
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn later() -> Timestamp {
    Timestamp::from_millis(T0 + 3_600_000)
}

fn is_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) -> Option<CorruptFile> {
    match r {
        Err(StoreError::Corrupt(e)) => e.downcast_ref::<CorruptFile>().cloned(),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Damages `victim`'s file with `damage`, then checks that `victim` is
/// `Corrupt` for every reading operation while `bystander` keeps working, and
/// that an unconditional save repairs it.
fn corrupt_case(damage: impl FnOnce(&FileStore, &SessionId, &SessionId)) -> Option<CorruptFile> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = open(dir.path(), &clock);
    let (victim, bystander) = (SessionId::generate(), SessionId::generate());
    rt().block_on(async {
        store
            .create(&victim, b"victim data", later())
            .await
            .unwrap();
        let vb = store
            .create(&bystander, b"bystander", later())
            .await
            .unwrap();
        damage(&store, &victim, &bystander);

        let reason = is_corrupt(store.load(&victim).await);
        is_corrupt(store.create(&victim, b"x", later()).await);
        is_corrupt(store.touch(&victim, later()).await);
        is_corrupt(
            store
                .save(
                    &victim,
                    b"x",
                    later(),
                    Some(session_core::Version::from_raw(1)),
                )
                .await,
        );
        is_corrupt(store.update(&victim, &mut |_| Update::Keep).await);

        // Everyone else is unaffected, and whole-store operations go on.
        let rec = store.load(&bystander).await.unwrap().unwrap();
        assert_eq!((rec.data.as_slice(), rec.version), (&b"bystander"[..], vb));
        store
            .save(&bystander, b"b2", later(), Some(vb))
            .await
            .unwrap();
        let page = store.scan(None, 100).await.unwrap();
        assert_eq!(page.len(), 1, "scan skips the corrupt file");
        assert_eq!(page[0].0, bystander);
        // stats reads headers only: damage past the header shows on load.
        let stats = store.stats().await.unwrap();
        let corrupt = if stats
            .details
            .contains(&("corrupt_files".into(), "1".into()))
        {
            1
        } else {
            0
        };
        assert_eq!(stats.live + corrupt, 2);
        assert_eq!(store.delete_expired().await.unwrap(), 0);

        // An unconditional save replaces the damage.
        let v = store.save(&victim, b"fresh", later(), None).await.unwrap();
        let rec = store.load(&victim).await.unwrap().unwrap();
        assert_eq!((rec.data.as_slice(), rec.version), (&b"fresh"[..], v));
        reason
    })
}

#[test]
fn truncated_file_is_corrupt_for_that_id_only() {
    let reason = corrupt_case(|s, victim, _| {
        let p = s.file_path(victim);
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    });
    assert!(
        matches!(reason, Some(CorruptFile::Truncated { .. })),
        "{reason:?}"
    );
    let reason = corrupt_case(|s, victim, _| {
        fs::write(s.file_path(victim), b"").unwrap();
    });
    assert!(
        matches!(reason, Some(CorruptFile::Truncated { .. })),
        "{reason:?}"
    );
}

#[test]
fn flipped_byte_is_corrupt_for_that_id_only() {
    let reason = corrupt_case(|s, victim, _| {
        let p = s.file_path(victim);
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&p, bytes).unwrap();
    });
    assert_eq!(reason, Some(CorruptFile::DataChecksum));
    let reason = corrupt_case(|s, victim, _| {
        let p = s.file_path(victim);
        let mut bytes = fs::read(&p).unwrap();
        bytes[50] ^= 0x40; // inside expires_at
        fs::write(&p, bytes).unwrap();
    });
    assert_eq!(reason, Some(CorruptFile::HeaderChecksum));
}

#[test]
fn foreign_file_is_corrupt_for_that_id_only() {
    let reason = corrupt_case(|s, victim, _| {
        fs::write(s.file_path(victim), b"{\"user\": \"not a session file\"}\n").unwrap();
    });
    assert_eq!(reason, Some(CorruptFile::BadMagic));
    let reason = corrupt_case(|s, victim, _| {
        fs::write(s.file_path(victim), vec![0xffu8; 1 << 20]).unwrap();
    });
    assert_eq!(reason, Some(CorruptFile::BadMagic));
}

#[test]
fn file_under_the_wrong_name_is_corrupt() {
    let reason = corrupt_case(|s, victim, bystander| {
        // An attacker with write access copies a session to another id.
        fs::copy(s.file_path(bystander), s.file_path(victim)).unwrap();
    });
    assert_eq!(reason, Some(CorruptFile::WrongId));
}

#[test]
fn planted_symlink_is_not_followed() {
    let reason = corrupt_case(|s, victim, bystander| {
        let p = s.file_path(victim);
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(s.file_path(bystander), &p).unwrap();
    });
    assert_eq!(reason, Some(CorruptFile::NotAFile));
}

#[test]
fn directory_in_place_of_a_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = open(dir.path(), &clock);
    let (victim, other) = (SessionId::generate(), SessionId::generate());
    rt().block_on(async {
        store.create(&other, b"fine", later()).await.unwrap();
        let p = store.file_path(&victim);
        fs::create_dir_all(&p).unwrap();
        assert_eq!(
            is_corrupt(store.load(&victim).await),
            Some(CorruptFile::NotAFile)
        );
        is_corrupt(store.create(&victim, b"x", later()).await);
        assert_eq!(store.load(&other).await.unwrap().unwrap().data, b"fine");
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        assert_eq!(store.scan(None, 10).await.unwrap().len(), 1);
    });
}

#[test]
fn delete_removes_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = open(dir.path(), &clock);
    let id = SessionId::generate();
    rt().block_on(async {
        store.create(&id, b"abc", later()).await.unwrap();
        fs::write(store.file_path(&id), b"garbage").unwrap();
        assert!(
            !store.delete(&id).await.unwrap(),
            "a corrupt file is not a live record"
        );
        assert!(!store.file_path(&id).exists());
        assert!(store.load(&id).await.unwrap().is_none());
        store.create(&id, b"again", later()).await.unwrap();
    });
}

#[test]
fn files_are_0600_and_dirs_0700() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let root = dir.path().join("a/b/root");
    let store = FileStore::builder()
        .path(&root)
        .clock(clock.clone())
        .open()
        .unwrap();
    let id = SessionId::generate();
    rt().block_on(async {
        store.create(&id, b"secret", later()).await.unwrap();
        store.touch(&id, later()).await.unwrap();
    });
    let file = store.file_path(&id);
    assert_eq!(mode(&file), 0o600);
    let leaf = file.parent().unwrap();
    assert_eq!(mode(leaf), 0o700);
    assert_eq!(mode(leaf.parent().unwrap()), 0o700);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join(".locks")), 0o700);
    for lock in fs::read_dir(root.join(".locks")).unwrap() {
        assert_eq!(mode(&lock.unwrap().path()), 0o600);
    }
    // The fan-out is two levels of the id's leading hex.
    let hex = id.to_hex();
    assert_eq!(file, root.join(&hex[0..2]).join(&hex[2..4]).join(&hex));
}

fn config_error(b: store_file::FileStoreBuilder) -> ConfigError {
    match b.open() {
        Err(StoreError::Config(e)) => match e.downcast::<ConfigError>() {
            Ok(c) => *c,
            Err(e) => panic!("Config error of another type: {e}"),
        },
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        config_error(FileStore::builder()),
        ConfigError::NoPath
    ));
    assert!(matches!(
        config_error(FileStore::builder().path("")),
        ConfigError::EmptyPath
    ));
    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        config_error(FileStore::builder().path(&file)),
        ConfigError::NotADirectory(_)
    ));
    assert!(matches!(
        config_error(FileStore::builder().path(file.join("below"))),
        ConfigError::Unusable(..)
    ));
    assert!(matches!(
        config_error(
            FileStore::builder()
                .path(dir.path().join("ok"))
                .max_value_size(MAX_FORMAT_VALUE + 1)
        ),
        ConfigError::LimitTooLarge { .. }
    ));
    // A read-only root cannot hold locks.
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    let probe = fs::File::create(ro.join("probe")).is_ok(); // root ignores modes
    if !probe {
        assert!(matches!(
            config_error(FileStore::builder().path(&ro)),
            ConfigError::Unusable(..)
        ));
    }
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
    // An existing directory is fine, and so is reopening.
    FileStore::builder().path(&ro).open().unwrap();
    FileStore::builder().path(&ro).open().unwrap();
}

#[test]
fn too_large_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = FileStore::builder()
        .path(dir.path().join("s"))
        .clock(clock)
        .max_value_size(10)
        .open()
        .unwrap();
    let id = SessionId::generate();
    rt().block_on(async {
        let v = store.create(&id, &[1; 10], later()).await.unwrap();
        let err = store.save(&id, &[2; 11], later(), None).await.unwrap_err();
        assert!(matches!(
            err,
            StoreError::TooLarge {
                size: 11,
                limit: 10
            }
        ));
        let err = store
            .update(&id, &mut |_| Update::Put {
                data: vec![3; 11],
                expires_at: later(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }));
        let rec = store.load(&id).await.unwrap().unwrap();
        assert_eq!((rec.data, rec.version), (vec![1; 10], v));
        // The lock taken by the failed update was released.
        assert!(matches!(
            store.update(&id, &mut |_| Update::Keep).await.unwrap(),
            Updated::Unchanged
        ));
    });
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn delete_expired_prunes_dirs_and_orphaned_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = open(dir.path(), &clock);
    let root = store.root().to_path_buf();
    let soon = Timestamp::from_millis(T0 + 1_000);
    rt().block_on(async {
        let expiring: Vec<SessionId> = (0..20).map(|_| SessionId::generate()).collect();
        for id in &expiring {
            store.create(id, b"old", soon).await.unwrap();
        }
        let keep = SessionId::generate();
        store.create(&keep, b"keep", later()).await.unwrap();
        // A crashed writer's temp file (nobody holds its lock).
        let orphan_id = expiring[0];
        let leaf = store.file_path(&orphan_id).parent().unwrap().to_path_buf();
        let orphan = leaf.join(format!(".tmp.{}.deadbeefdeadbeef", orphan_id.to_hex()));
        fs::write(&orphan, b"half a write").unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.live, stats.expired), (21, 0));
        assert!(stats.details.contains(&("temp_files".into(), "1".into())));

        // Nothing is expired yet: only the orphan goes.
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        assert!(!orphan.exists());

        clock.set(soon);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.live, stats.expired, stats.live_bytes), (1, 20, 4));
        assert_eq!(store.delete_expired().await.unwrap(), 20);
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        let hex = keep.to_hex();
        let mut want = vec![
            ".locks".to_string(),
            hex[0..2].to_string(),
            format!("{}/{}", &hex[0..2], &hex[2..4]),
            format!("{}/{}/{hex}", &hex[0..2], &hex[2..4]),
        ];
        let mut got: Vec<String> = tree(&root)
            .into_iter()
            .filter(|p| !p.starts_with(".locks/"))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "empty fan-out directories are removed");

        // Writers recreate pruned directories.
        for id in &expiring {
            store.create(id, b"new", later()).await.unwrap();
        }
        assert_eq!(store.stats().await.unwrap().live, 21);
    });
}

#[test]
fn foreign_entries_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = open(dir.path(), &clock);
    let root = store.root().to_path_buf();
    fs::write(root.join("README"), b"operator notes").unwrap();
    fs::create_dir_all(root.join("zz/notes")).unwrap();
    fs::create_dir_all(root.join("ab/cd")).unwrap();
    fs::write(root.join("ab/cd/notes.txt"), b"x").unwrap();
    rt().block_on(async {
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        assert!(store.scan(None, 10).await.unwrap().is_empty());
        let stats = store.stats().await.unwrap();
        assert!(
            stats
                .details
                .contains(&("foreign_files".into(), "1".into()))
        );
    });
    assert!(root.join("README").exists());
    assert!(root.join("zz/notes").exists());
    assert!(root.join("ab/cd/notes.txt").exists());
}

#[test]
fn scan_walks_fan_out_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = open(dir.path(), &clock);
    rt().block_on(async {
        let mut ids: Vec<SessionId> = (0..300).map(|_| SessionId::generate()).collect();
        // Neighbours that share fan-out directories and differ late.
        for last in [0u8, 1, 0xff] {
            let mut b = [0x12; 32];
            b[31] = last;
            ids.push(SessionId::from_bytes(b));
        }
        for id in &ids {
            store.save(id, id.as_bytes(), later(), None).await.unwrap();
        }
        ids.sort();
        for page in [1usize, 7, 1000] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let got = store.scan(after.as_ref(), page).await.unwrap();
                assert!(got.len() <= page);
                for (id, rec) in &got {
                    assert_eq!(rec.data, id.as_bytes());
                }
                seen.extend(got.iter().map(|(id, _)| *id));
                match got.last() {
                    Some((id, _)) if got.len() == page => after = Some(*id),
                    _ => break,
                }
            }
            assert_eq!(seen, ids, "page size {page}");
        }
        // Starting after an id that is not stored.
        let probe = SessionId::from_bytes([0x12; 32]);
        let got = store.scan(Some(&probe), 2).await.unwrap();
        let want: Vec<SessionId> = ids.iter().copied().filter(|i| *i > probe).take(2).collect();
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), want);
    });
}

#[test]
fn works_without_a_tokio_runtime() {
    // Blocking work runs inline when there is no runtime to hand it to.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = Arc::new(open(dir.path(), &clock));
    let id = SessionId::generate();
    let fut = async {
        store.create(&id, b"x", later()).await.unwrap();
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        store.load(&id).await.unwrap().unwrap()
    };
    let rec = futures_lite_block_on(fut);
    assert_eq!(rec.data, b"x");
}

/// A minimal executor, so this test runs outside any tokio runtime.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn durability_none_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = FileStore::builder()
        .path(dir.path().join("s"))
        .durability(Durability::None)
        .clock(clock)
        .open()
        .unwrap();
    assert_eq!(store.durability(), Durability::None);
    let id = SessionId::generate();
    rt().block_on(async {
        let v = store.create(&id, b"fast", later()).await.unwrap();
        assert!(store.touch(&id, later()).await.unwrap());
        let rec = store.load(&id).await.unwrap().unwrap();
        assert_eq!((rec.data.as_slice(), rec.version), (&b"fast"[..], v));
    });
}

#[test]
fn hostile_ids_never_parse() {
    let good = "0123456789abcdef".repeat(4);
    let hostile = [
        format!("../{}", &good[3..]),
        format!("..%2f{}", &good[5..]),
        format!("%2e%2e{}", &good[6..]),
        format!("/{}", &good[1..]),
        format!("{}/", &good[..63]),
        format!("{}\0", &good[..63]),
        format!("\0{}", &good[1..]),
        good[..63].to_string(),
        format!("{good}0"),
        good.to_uppercase(),
        format!("{}A", &good[..63]),
        "..".repeat(32),
        format!("{}..", &good[..62]),
    ];
    for s in &hostile {
        assert!(SessionId::parse(s).is_err(), "accepted {s:?}");
    }
}

#[test]
fn purge_races_neither_lose_renewals_nor_break_writers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = Arc::new(open(dir.path(), &clock));
    let past = Timestamp::from_millis(T0); // expires_at <= now: expired
    rt().block_on(async {
        for round in 0..100u8 {
            // Same fan-out directory: the purge empties it while `fresh` is
            // being created there.
            let mut b = [round; 32];
            b[31] = 0;
            let stale = SessionId::from_bytes(b);
            b[31] = 1;
            let renewed = SessionId::from_bytes(b);
            b[31] = 2;
            let fresh = SessionId::from_bytes(b);
            store.save(&stale, b"old", past, None).await.unwrap();
            store.save(&renewed, b"old", past, None).await.unwrap();

            let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
            let purge = tokio::spawn(async move { s1.delete_expired().await });
            let renew = tokio::spawn(async move { s2.save(&renewed, b"new", later(), None).await });
            let create = tokio::spawn(async move { s3.create(&fresh, b"new", later()).await });
            let purged = purge.await.unwrap().unwrap();
            renew.await.unwrap().unwrap();
            create.await.unwrap().unwrap();

            // The stale record is purged; `renewed` is purged only if the purge
            // reached it before the renewal, which then recreated it.
            assert!((1..=2).contains(&purged), "round {round}: purged {purged}");
            assert_eq!(store.delete_expired().await.unwrap(), 0, "round {round}");
            for id in [renewed, fresh] {
                let rec = store.load(&id).await.unwrap();
                assert_eq!(rec.map(|r| r.data), Some(b"new".to_vec()), "round {round}");
            }
            assert!(store.load(&stale).await.unwrap().is_none());
            store.delete(&renewed).await.unwrap();
            store.delete(&fresh).await.unwrap();
        }
    });
}
