//! Our stores behind tower-sessions: a small axum app using
//! `tower_sessions::SessionManagerLayer`, plus the adapter's own rules.
#![cfg(feature = "tower-sessions")]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use session_axum::TowerSessionsStore;
use session_core::{ManualClock, MemoryStore, SessionStore as _, Timestamp};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions::{Session, SessionManagerLayer, SessionStore};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn count(session: Session) -> String {
    let n: u64 = session.get("n").await.ok().flatten().unwrap_or(0) + 1;
    match session.insert("n", n).await {
        Ok(()) => n.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[tokio::test]
async fn axum_app_with_session_manager_layer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let redb = format!("redb:{}", dir.path().join("ts").display());
    for url in ["memory:".to_owned(), redb] {
        let store = sessions::open(&url).await?;
        let layer = SessionManagerLayer::new(TowerSessionsStore::new(Arc::clone(&store)));
        let app = Router::new().route("/", get(count)).layer(layer);
        let addr = common::serve(app).await;
        let client = reqwest::Client::builder().cookie_store(true).build()?;
        for expected in 1..=3 {
            let body = client
                .get(format!("http://{addr}/"))
                .send()
                .await?
                .text()
                .await?;
            assert_eq!(body, expected.to_string(), "{url}");
        }
        // A second visitor has its own session.
        let other = reqwest::Client::builder().cookie_store(true).build()?;
        let body = other
            .get(format!("http://{addr}/"))
            .send()
            .await?
            .text()
            .await?;
        assert_eq!(body, "1");
        assert_eq!(store.stats().await?.live, 2, "{url}");
    }
    Ok(())
}

fn record(expiry: OffsetDateTime) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("k".to_owned(), serde_json::json!({"a": [1, 2, 3]}));
    Record {
        id: Id::default(),
        data,
        expiry_date: expiry,
    }
}

#[tokio::test]
async fn adapter_rules() -> TestResult {
    let now = OffsetDateTime::now_utc();
    let later = now + time::Duration::hours(1);
    let inner = Arc::new(MemoryStore::new());
    let store = TowerSessionsStore::new(inner.clone());

    // Round trip, keyed by SHA-256 of the id (the id is not the key).
    let mut r = record(later);
    store.create(&mut r).await?;
    let back = store.load(&r.id).await?.ok_or("created record not found")?;
    assert_eq!(back, r);
    let key = TowerSessionsStore::key_for(&r.id);
    assert!(inner.load(&key).await?.is_some());
    assert_ne!(&key.as_bytes()[..16], &r.id.0.to_le_bytes()[..]);

    // create honours collisions: the id is redrawn, the old record untouched.
    let mut dup = record(later);
    dup.id = r.id;
    dup.data.insert("other".into(), serde_json::json!(true));
    store.create(&mut dup).await?;
    assert_ne!(dup.id, r.id, "a colliding create must draw a new id");
    assert_eq!(store.load(&r.id).await?.as_ref(), Some(&r));
    assert_eq!(store.load(&dup.id).await?.as_ref(), Some(&dup));

    // save upserts; delete removes.
    let mut changed = r.clone();
    changed.data.insert("k".into(), serde_json::json!("v2"));
    store.save(&changed).await?;
    assert_eq!(store.load(&r.id).await?.as_ref(), Some(&changed));
    store.delete(&r.id).await?;
    assert_eq!(store.load(&r.id).await?, None);

    // A record that is not ours to decode is a Decode error, not a panic.
    inner
        .save(
            &TowerSessionsStore::key_for(&r.id),
            b"\xff\x00garbage",
            Timestamp::from_millis(i64::MAX),
            None,
        )
        .await?;
    assert!(matches!(
        store.load(&r.id).await,
        Err(tower_sessions::session_store::Error::Decode(_))
    ));
    Ok(())
}

#[tokio::test]
async fn expired_deletion() -> TestResult {
    let t0 = OffsetDateTime::from_unix_timestamp(2_000_000_000)?;
    let clock = ManualClock::new(Timestamp::from_millis(2_000_000_000_000));
    let inner = Arc::new(MemoryStore::builder().clock(clock.clone()).build());
    let store = TowerSessionsStore::new(inner.clone());
    let mut short = record(t0 + time::Duration::seconds(10));
    let mut long = record(t0 + time::Duration::hours(1));
    store.create(&mut short).await?;
    store.create(&mut long).await?;
    clock.set(Timestamp::from_millis(2_000_000_010_000));
    assert_eq!(
        store.load(&short.id).await?,
        None,
        "expired at its expiry_date"
    );
    store.delete_expired().await?;
    let stats = inner.stats().await?;
    assert_eq!((stats.live, stats.expired), (1, 0));
    assert!(store.load(&long.id).await?.is_some());
    Ok(())
}
