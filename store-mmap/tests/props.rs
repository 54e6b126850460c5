//! Property tests: random operation sequences against a model, with and without
//! evictions, and random bytes scribbled over pages and the header.
//!
//! The rule under damage: every read returns the right bytes, nothing, or a
//! typed error — never a panic, never another value.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use session_core::{
    Clock, ManualClock, Record, SessionId, SessionStore, StoreError, Timestamp, Update, Updated,
    Version,
};
use store_mmap::MmapStore;

const T0: i64 = 1_767_225_600_000;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn id(n: u8) -> SessionId {
    let mut b = [0u8; 32];
    b[0] = n;
    b[31] = n.wrapping_mul(37);
    SessionId::from_bytes(b)
}

fn value(n: u8, step: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ n ^ (step as u8).rotate_left(3))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Load(u8),
    Create(u8, usize, u64),
    Save(u8, usize, u64),
    SaveCas(u8, usize, u64, bool),
    Touch(u8, u64),
    Delete(u8),
    Update(u8, usize, bool),
    Advance(u64),
    DeleteExpired,
}

fn op(ids: u8, max_len: usize) -> impl Strategy<Value = Op> {
    let n = 0..ids;
    let len = 0..max_len;
    let ttl = 1u64..120;
    prop_oneof![
        4 => n.clone().prop_map(Op::Load),
        2 => (n.clone(), len.clone(), ttl.clone()).prop_map(|(a, b, c)| Op::Create(a, b, c)),
        3 => (n.clone(), len.clone(), ttl.clone()).prop_map(|(a, b, c)| Op::Save(a, b, c)),
        2 => (n.clone(), len.clone(), ttl.clone(), any::<bool>()).prop_map(|(a, b, c, d)| Op::SaveCas(a, b, c, d)),
        1 => (n.clone(), ttl).prop_map(|(a, b)| Op::Touch(a, b)),
        1 => n.clone().prop_map(Op::Delete),
        2 => (n, len, any::<bool>()).prop_map(|(a, b, c)| Op::Update(a, b, c)),
        1 => (1u64..90).prop_map(Op::Advance),
        1 => Just(Op::DeleteExpired),
    ]
}

#[derive(Default)]
struct Model {
    map: HashMap<u8, Record>,
    seen: HashMap<u8, Vec<Version>>,
}

impl Model {
    fn live(&self, n: u8, now: Timestamp) -> Option<&Record> {
        self.map.get(&n).filter(|r| !r.is_expired_at(now))
    }

    fn wrote(&mut self, n: u8, data: Vec<u8>, expires_at: Timestamp, v: Version) {
        let seen = self.seen.entry(n).or_default();
        assert!(!seen.contains(&v), "version repeated for an id");
        seen.push(v);
        self.map.insert(
            n,
            Record {
                data,
                expires_at,
                version: v,
            },
        );
    }
}

/// Runs `ops`; with `evicting`, the model forgets an id the store no longer has
/// (it was evicted) but the store must never return a value other than the
/// model's.
fn run(store: &MmapStore, clock: &ManualClock, ops: &[Op], evicting: bool) {
    block_on(async {
        let mut m = Model::default();
        for (step, op) in ops.iter().enumerate() {
            let now = clock.now();
            let at = |ttl: u64| now.saturating_add(Duration::from_secs(ttl));
            // In evicting mode, first learn whether the store still has the id.
            let n = match op {
                Op::Load(n)
                | Op::Create(n, ..)
                | Op::Save(n, ..)
                | Op::SaveCas(n, ..)
                | Op::Touch(n, _)
                | Op::Delete(n)
                | Op::Update(n, ..) => Some(*n),
                _ => None,
            };
            if let Some(n) = n {
                let got = store.load(&id(n)).await.unwrap();
                match (got, m.live(n, now)) {
                    (Some(g), Some(w)) => assert_eq!(&g, w, "step {step}: wrong record"),
                    (None, Some(_)) if evicting => {
                        m.map.remove(&n);
                    }
                    (None, None) => {}
                    (g, w) => panic!("step {step}: store {g:?} vs model {w:?}"),
                }
            }
            match op.clone() {
                Op::Load(_) | Op::Advance(0) => {}
                Op::Create(n, len, ttl) => {
                    let data = value(n, step, len);
                    let r = store.create(&id(n), &data, at(ttl)).await;
                    if m.live(n, now).is_some() {
                        assert!(matches!(r, Err(StoreError::AlreadyExists)));
                    } else {
                        m.wrote(n, data, at(ttl), r.unwrap());
                    }
                }
                Op::Save(n, len, ttl) => {
                    let data = value(n, step, len);
                    let v = store.save(&id(n), &data, at(ttl), None).await.unwrap();
                    m.wrote(n, data, at(ttl), v);
                }
                Op::SaveCas(n, len, ttl, right) => {
                    let data = value(n, step, len);
                    let cur = m.live(n, now).map(|r| r.version);
                    let expected = match (cur, right) {
                        (Some(v), true) => v,
                        _ => Version::from_raw(0xdead_beef),
                    };
                    let r = store.save(&id(n), &data, at(ttl), Some(expected)).await;
                    if cur == Some(expected) {
                        m.wrote(n, data, at(ttl), r.unwrap());
                    } else {
                        assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
                    }
                }
                Op::Touch(n, ttl) => {
                    let live = m.live(n, now).is_some();
                    assert_eq!(store.touch(&id(n), at(ttl)).await.unwrap(), live);
                    if let Some(r) = m.map.get_mut(&n).filter(|_| live) {
                        r.expires_at = at(ttl);
                    }
                }
                Op::Delete(n) => {
                    let live = m.live(n, now).is_some();
                    assert_eq!(store.delete(&id(n)).await.unwrap(), live);
                    m.map.remove(&n);
                }
                Op::Update(n, len, put) => {
                    let want = m.live(n, now).cloned();
                    let data = value(n, step, len);
                    let d2 = data.clone();
                    let mut f = |cur: Option<&Record>| {
                        assert_eq!(cur, want.as_ref());
                        if put {
                            Update::Put {
                                data: d2.clone(),
                                expires_at: at(60),
                            }
                        } else {
                            Update::Keep
                        }
                    };
                    match store.update(&id(n), &mut f).await.unwrap() {
                        Updated::Written(v) => m.wrote(n, data, at(60), v),
                        Updated::Unchanged => assert!(!put),
                    }
                }
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(s));
                }
                Op::DeleteExpired => {
                    let removed = store.delete_expired().await.unwrap();
                    let expired = m.map.values().filter(|r| r.is_expired_at(now)).count() as u64;
                    if evicting {
                        assert!(removed <= expired);
                    } else {
                        assert_eq!(removed, expired);
                    }
                    m.map.retain(|_, r| !r.is_expired_at(now));
                }
            }
        }
        // A full scan agrees with the model (in id order, no duplicates).
        let now = clock.now();
        let all = store.scan(None, usize::MAX).await.unwrap();
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let live: Vec<_> = all.iter().filter(|(_, r)| !r.is_expired_at(now)).collect();
        if !evicting {
            assert_eq!(
                live.len(),
                m.map.values().filter(|r| !r.is_expired_at(now)).count()
            );
        }
        for (sid, r) in live {
            let n = sid.as_bytes()[0];
            assert_eq!(Some(r), m.live(n, now), "scan returned another value");
        }
    });
}

fn fresh(dir: &Path, size: u64, pages: u32, clock: &ManualClock) -> MmapStore {
    MmapStore::builder()
        .path(dir.join("c"))
        .size(size)
        .pages(pages)
        .clock(clock.clone())
        .open()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_a_model(ops in proptest::collection::vec(op(24, 600), 1..150)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let s = fresh(dir.path(), 1 << 20, 4, &clock);
        run(&s, &clock, &ops, false);
    }

    /// One 32 KiB page for up to 120 ids of up to 2 KiB: evictions all the time.
    #[test]
    fn evictions_never_serve_stale_data(ops in proptest::collection::vec(op(120, 2_000), 1..300)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let s = fresh(dir.path(), 8192 + (32 << 10), 1, &clock);
        run(&s, &clock, &ops, true);
    }

    /// Random bytes over pages (and the rebuild journal) of a populated file:
    /// reads give the right value, nothing, or `Corrupt`; afterwards the store
    /// is fully usable again.
    #[test]
    fn scribbled_pages_never_give_wrong_bytes(
        saves in proptest::collection::vec((0u8..64, 0usize..700), 1..200),
        scribbles in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 1..64)), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let s = fresh(dir.path(), 4096 + 4 * (32 << 10) + 64 + (32 << 10), 4, &clock);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.path().join("c")).unwrap();
        let len = file.metadata().unwrap().len();
        let exp = clock.now().saturating_add(Duration::from_secs(3_600));
        block_on(async {
            let mut model: HashMap<u8, Vec<u8>> = HashMap::new();
            for (step, (n, l)) in saves.iter().enumerate() {
                let data = value(*n, step, *l);
                s.save(&id(*n), &data, exp, None).await.unwrap();
                model.insert(*n, data);
            }
            for (at, bytes) in &scribbles {
                // Pages only (the header is read at open; see the next test).
                let off = 4096 + u64::from(*at) % (len - 4096 - bytes.len() as u64);
                file.write_all_at(bytes, off).unwrap();
            }
            for n in 0..64u8 {
                match s.load(&id(n)).await {
                    Ok(Some(r)) => assert_eq!(Some(&r.data), model.get(&n), "wrong bytes for {n}"),
                    Ok(None) | Err(StoreError::Corrupt(_)) => {}
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            // Maintenance paths survive the damage too.
            let _ = s.stats().await.unwrap();
            for (sid, r) in s.scan(None, usize::MAX).await.unwrap() {
                assert_eq!(Some(&r.data), model.get(&sid.as_bytes()[0]), "scan gave wrong bytes");
            }
            let _ = s.delete_expired().await.unwrap();
            // And it is usable again: every id can be written and read back.
            for n in 0..64u8 {
                let data = value(n, 999, 300);
                s.save(&id(n), &data, exp, None).await.unwrap();
                assert_eq!(s.load(&id(n)).await.unwrap().unwrap().data, data);
            }
        });
    }

    /// Random bytes over the file header: opening is a typed error or a
    /// working store, never a panic.
    #[test]
    fn scribbled_header_is_a_typed_error(at in 0u64..64, bytes in proptest::collection::vec(any::<u8>(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        drop(fresh(dir.path(), 1 << 20, 4, &clock));
        let file = std::fs::OpenOptions::new().write(true).open(dir.path().join("c")).unwrap();
        file.write_all_at(&bytes, at).unwrap();
        let r = MmapStore::builder().path(dir.path().join("c")).size(1 << 20).pages(4).open();
        match r {
            Ok(s) => block_on(async {
                s.save(&id(1), b"x", Timestamp::MAX, None).await.unwrap();
            }),
            Err(StoreError::Corrupt(_) | StoreError::Config(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}
