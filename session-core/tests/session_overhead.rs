//! Measures what the Session layer costs per request on top of the raw store
//! calls it makes (load + save), on `MemoryStore`. Prints the figure; asserts
//! only that both paths did all their work (no timing assertions).
//!
//! Run optimized for a meaningful figure:
//! `cargo test -p session-core --release --test session_overhead -- --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager};
use session_core::{ManualClock, MemoryStore, SessionId, SessionStore, Timestamp};

const REQUESTS: u64 = 10_000;
/// Rounds per path, alternating; the best round of each counts (the machine is shared).
const ROUNDS: u64 = 5;

#[test]
fn session_layer_overhead_over_raw_store_calls() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let store = Arc::new(MemoryStore::builder().clock(clock.clone()).build());
        let exp = Timestamp::from_millis(1_700_000_000_000 + 7_200_000);

        // Raw: the same two store calls a changed request makes, with the
        // counter as the whole value.
        let id = SessionId::generate();
        store.create(&id, &0u64.to_le_bytes(), exp).await.unwrap();

        // Session layer: load + get + insert + finish, on a session that also
        // holds a user name (a typical small session).
        let sessions = SessionManager::new(store.clone(), SessionConfig::default());
        let s = sessions.load(None, ClientInfo::new());
        s.insert("user", "ada@example.org").await.unwrap();
        s.insert("n", &0u64).await.unwrap();
        let Outcome::SetCookie { token, .. } = s.finish().await.unwrap() else {
            panic!("new session not created");
        };
        let token = token.expose();

        let (mut raw, mut layered) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..REQUESTS {
                let rec = store.load(&id).await.unwrap().unwrap();
                let n = u64::from_le_bytes(rec.data[..8].try_into().unwrap());
                store
                    .save(&id, &(n + 1).to_le_bytes(), exp, Some(rec.version))
                    .await
                    .unwrap();
            }
            raw = raw.min(start.elapsed());

            let start = Instant::now();
            for _ in 0..REQUESTS {
                let s = sessions.load(Some(&token), ClientInfo::new());
                let n: u64 = s.get("n").await.unwrap().unwrap();
                s.insert("n", &(n + 1)).await.unwrap();
                assert!(matches!(
                    s.finish().await.unwrap(),
                    Outcome::SetCookie { .. }
                ));
            }
            layered = layered.min(start.elapsed());
        }
        let rec = store.load(&id).await.unwrap().unwrap();
        assert_eq!(rec.data, (REQUESTS * ROUNDS).to_le_bytes());
        let s = sessions.load(Some(&token), ClientInfo::new());
        assert_eq!(s.get::<u64>("n").await.unwrap(), Some(REQUESTS * ROUNDS));

        let per = |d: Duration| d.as_secs_f64() * 1e6 / REQUESTS as f64;
        eprintln!(
            "session overhead: raw load+save {:.2} µs/request, session load+get+insert+finish \
             {:.2} µs/request, ratio {:.2}x (+{:.2} µs)",
            per(raw),
            per(layered),
            layered.as_secs_f64() / raw.as_secs_f64(),
            per(layered) - per(raw),
        );
    });
}
