//! The Session layer over a persistent store: the scripted login → cycle id →
//! flash → redirect → logout flow, and concurrent requests merging, on `FileStore`.
use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager, SessionToken};
use session_core::{ManualClock, SessionId, SessionStore, Timestamp};
use std::sync::Arc;
use std::time::Duration;

fn token_of(o: &Outcome) -> String {
    match o {
        Outcome::SetCookie { token, .. } => token.expose(),
        other => panic!("{other:?}"),
    }
}
fn id_of(token: &str) -> SessionId {
    SessionToken::parse(token).unwrap().session_id()
}

/// login → cycle id → flash → redirect → read flash → logout, over any store
/// judged by `clock`.
async fn scripted_flow(store: Arc<dyn SessionStore>, clock: &ManualClock) {
    let sessions = SessionManager::new(store.clone(), SessionConfig::default());
    let client = ClientInfo::new();

    // Anonymous visitor puts something in the cart.
    let s = sessions.load(None, client.clone());
    s.insert("cart", &vec!["tea".to_string()]).await.unwrap();
    let anon = token_of(&s.finish().await.unwrap());

    // Login: cycle the id, remember the user, flash a greeting, redirect.
    clock.advance(Duration::from_secs(5));
    let s = sessions.load(Some(&anon), client.clone());
    s.cycle_id().await.unwrap();
    s.insert("user", "ada").await.unwrap();
    s.flash_insert("notice", "welcome back").await.unwrap();
    let user = token_of(&s.finish().await.unwrap());
    assert_ne!(user, anon);
    assert!(store.load(&id_of(&anon)).await.unwrap().is_none());

    // The redirect target does not show flash; another redirect.
    clock.advance(Duration::from_secs(1));
    let s = sessions.load(Some(&user), client.clone());
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);

    // The page shows the flash and the cart survived login.
    clock.advance(Duration::from_secs(1));
    let s = sessions.load(Some(&user), client.clone());
    assert_eq!(
        s.flash_get::<String>("notice").await.unwrap().as_deref(),
        Some("welcome back")
    );
    assert_eq!(
        s.get::<Vec<String>>("cart").await.unwrap(),
        Some(vec!["tea".to_string()])
    );
    let _ = s.finish().await.unwrap();
    let s = sessions.load(Some(&user), client.clone());
    assert_eq!(s.flash_get::<String>("notice").await.unwrap(), None);
    let _ = s.finish().await.unwrap();

    // Logout.
    let s = sessions.load(Some(&user), client.clone());
    s.delete("logout").await.unwrap();
    assert_eq!(s.delete_reason().await.unwrap().as_deref(), Some("logout"));
    assert_eq!(s.finish().await.unwrap(), Outcome::RemoveCookie);
    let s = sessions.load(Some(&user), client.clone());
    assert_eq!(s.get::<String>("user").await.unwrap(), None);
    assert!(store.load(&id_of(&user)).await.unwrap().is_none());
}

#[tokio::test]
async fn scripted_login_flow_over_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let store = Arc::new(
        store_file::FileStore::builder()
            .path(dir.path().join("s"))
            .clock(clock.clone())
            .open()
            .unwrap(),
    );
    scripted_flow(store, &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_writers_over_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let store = Arc::new(
        store_file::FileStore::builder()
            .path(dir.path().join("s"))
            .clock(clock.clone())
            .open()
            .unwrap(),
    );
    let sessions = SessionManager::new(store, SessionConfig::default());
    let s = sessions.load(None, ClientInfo::new());
    s.insert("user", "ada").await.unwrap();
    let token = token_of(&s.finish().await.unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let s = sessions.load(Some(&token), ClientInfo::new());
        let b = barrier.clone();
        tasks.push(tokio::spawn(async move {
            s.insert(&format!("k{i}"), &i).await.unwrap();
            s.update_with("n", |v: Option<u64>| v.unwrap_or(0) + 1)
                .await
                .unwrap();
            b.wait().await;
            s.finish().await.unwrap()
        }));
    }
    for t in tasks {
        let _ = t.await.unwrap();
    }
    let s = sessions.load(Some(&token), ClientInfo::new());
    for i in 0..16u64 {
        assert_eq!(s.get::<u64>(&format!("k{i}")).await.unwrap(), Some(i));
    }
    assert_eq!(s.get::<u64>("n").await.unwrap(), Some(16));
}
