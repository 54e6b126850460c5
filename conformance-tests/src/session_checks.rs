//! Checks that the Session layer (`session_core::session`) works over the store:
//! a scripted multi-request login flow, and concurrent requests merging.

use std::sync::Arc;
use std::time::Duration;

use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager, SessionToken};
use session_core::{SessionId, SessionStore};

use crate::{CheckResult, Failure, Harness, ensure};

fn fail(what: &str) -> impl Fn(session_core::session::SessionError) -> Failure + '_ {
    move |e| Failure(format!("session layer: {what}: {e}"))
}

fn token_of(o: &Outcome) -> Result<String, Failure> {
    match o {
        Outcome::SetCookie { token, .. } => Ok(token.expose()),
        other => Err(Failure(format!(
            "session layer: expected a new cookie, got {other:?}"
        ))),
    }
}

fn key_of(token: &str) -> Result<SessionId, Failure> {
    SessionToken::parse(token)
        .map(|t| t.session_id())
        .map_err(|e| Failure(format!("session layer: bad token: {e}")))
}

/// Anonymous cart → login (cycle id, flash) → redirect → flash read once →
/// logout, over the store under test.
pub(crate) async fn session_layer_login_flow(h: &Harness<'_>) -> CheckResult {
    let store: Arc<dyn SessionStore> = h.store();
    let sessions = SessionManager::new(store.clone(), SessionConfig::default());
    let client = ClientInfo::new();

    let s = sessions.load(None, client.clone());
    s.insert("cart", &vec!["tea".to_string()])
        .await
        .map_err(fail("insert"))?;
    let anon = token_of(&s.finish().await.map_err(fail("finish"))?)?;

    h.clock().advance(Duration::from_secs(5));
    let s = sessions.load(Some(&anon), client.clone());
    s.cycle_id().await.map_err(fail("cycle_id"))?;
    s.insert("user", "ada").await.map_err(fail("insert"))?;
    s.flash_insert("notice", "welcome back")
        .await
        .map_err(fail("flash_insert"))?;
    let user = token_of(&s.finish().await.map_err(fail("finish"))?)?;
    ensure!(
        user != anon,
        "session layer: cycle_id must issue a new token"
    );
    ensure!(
        store.load(&key_of(&anon)?).await?.is_none(),
        "session layer: cycle_id must remove the old session from the store"
    );

    // A redirect that does not read the flash leaves the session unchanged.
    h.clock().advance(Duration::from_secs(1));
    let s = sessions.load(Some(&user), client.clone());
    let name: Option<String> = s.get("user").await.map_err(fail("get"))?;
    ensure!(
        name.as_deref() == Some("ada"),
        "session layer: data written at login must be read back"
    );
    let o = s.finish().await.map_err(fail("finish"))?;
    ensure!(
        o == Outcome::Unchanged,
        "session layer: an unchanged session must not be written, got {o:?}"
    );

    h.clock().advance(Duration::from_secs(1));
    let s = sessions.load(Some(&user), client.clone());
    let notice: Option<String> = s.flash_get("notice").await.map_err(fail("flash_get"))?;
    ensure!(
        notice.as_deref() == Some("welcome back"),
        "session layer: flash must survive a redirect that does not read it"
    );
    let cart: Option<Vec<String>> = s.get("cart").await.map_err(fail("get"))?;
    ensure!(
        cart == Some(vec!["tea".to_string()]),
        "session layer: data must survive cycle_id"
    );
    let _ = s.finish().await.map_err(fail("finish"))?;
    let s = sessions.load(Some(&user), client.clone());
    let notice: Option<String> = s.flash_get("notice").await.map_err(fail("flash_get"))?;
    ensure!(
        notice.is_none(),
        "session layer: a flash read once must be gone on the next request"
    );
    let _ = s.finish().await.map_err(fail("finish"))?;

    let s = sessions.load(Some(&user), client.clone());
    s.delete("logout").await.map_err(fail("delete"))?;
    let reason = s.delete_reason().await.map_err(fail("delete_reason"))?;
    ensure!(
        reason.as_deref() == Some("logout"),
        "session layer: delete_reason must report the reason"
    );
    let o = s.finish().await.map_err(fail("finish"))?;
    ensure!(
        o == Outcome::RemoveCookie,
        "session layer: logout must remove the cookie, got {o:?}"
    );
    ensure!(
        store.load(&key_of(&user)?).await?.is_none(),
        "session layer: logout must delete the session from the store"
    );
    Ok(())
}

/// 16 requests on one session, each setting its own key and bumping a counter,
/// all finishing at once: every key and every increment must land.
pub(crate) async fn session_layer_concurrent_requests_merge(h: &Harness<'_>) -> CheckResult {
    let store: Arc<dyn SessionStore> = h.store();
    let sessions = SessionManager::new(store, SessionConfig::default());
    let s = sessions.load(None, ClientInfo::new());
    s.insert("user", "ada").await.map_err(fail("insert"))?;
    let token = token_of(&s.finish().await.map_err(fail("finish"))?)?;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let s = sessions.load(Some(&token), ClientInfo::new());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            s.insert(&format!("k{i}"), &i).await?;
            s.update_with("n", |v: Option<u64>| v.unwrap_or(0) + 1)
                .await?;
            barrier.wait().await;
            s.finish().await
        }));
    }
    for t in tasks {
        let _ = t
            .await
            .map_err(|e| Failure(format!("task panicked: {e}")))?
            .map_err(fail("finish"))?;
    }
    let s = sessions.load(Some(&token), ClientInfo::new());
    for i in 0..16u64 {
        let v: Option<u64> = s.get(&format!("k{i}")).await.map_err(fail("get"))?;
        ensure!(
            v == Some(i),
            "session layer: concurrent request {i}'s key was lost (no per-key merge on Conflict)"
        );
    }
    let n: Option<u64> = s.get("n").await.map_err(fail("get"))?;
    ensure!(
        n == Some(16),
        "session layer: 16 concurrent increments must give 16, got {n:?}"
    );
    Ok(())
}
