//! A walk through one visitor's requests: login with id cycling, a flash
//! message across a redirect, a counter, and logout — printing what reaches the
//! store at each step.
//!
//! `cargo run -p session-core --example tour`

use std::sync::Arc;

use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager};
use session_core::{MemoryStore, SessionStore};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn cookie(outcome: &Outcome, jar: &mut Option<String>) -> String {
    match outcome {
        Outcome::SetCookie { token, max_age } => {
            *jar = Some(token.expose());
            format!("Set-Cookie (Max-Age={}s)", max_age.as_secs())
        }
        Outcome::RemoveCookie => {
            *jar = None;
            "cookie removed".into()
        }
        Outcome::Unchanged => "no cookie change".into(),
    }
}

async fn stored(store: &dyn SessionStore) -> Result<String, AnyError> {
    let st = store.stats().await?;
    Ok(format!(
        "store: {} live session(s), {} bytes",
        st.live, st.live_bytes
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), AnyError> {
    let store = Arc::new(MemoryStore::new());
    let sessions = SessionManager::new(store.clone(), SessionConfig::default());
    let mut jar: Option<String> = None;
    let client = ClientInfo::new();

    // 1. An anonymous page view that never touches the session: zero store calls.
    let s = sessions.load(jar.as_deref(), client.clone());
    println!(
        "GET /            -> {}; {}",
        cookie(&s.finish().await?, &mut jar),
        stored(&*store).await?
    );

    // 2. Login: new id (anti-fixation), user stored, flash for the next page.
    let s = sessions.load(jar.as_deref(), client.clone());
    s.cycle_id().await?;
    s.insert("user", "ada").await?;
    s.flash_insert("notice", "Welcome back, ada!").await?;
    println!(
        "POST /login     -> {}; {}",
        cookie(&s.finish().await?, &mut jar),
        stored(&*store).await?
    );

    // 3. The redirect target reads the flash once; a counter is bumped safely.
    let s = sessions.load(jar.as_deref(), client.clone());
    let notice: Option<String> = s.flash_get("notice").await?;
    let visits: u64 = s
        .update_with("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    println!(
        "GET /home       -> flash {notice:?}, visits {visits}; {}",
        cookie(&s.finish().await?, &mut jar)
    );

    // 4. Reloading shows the flash is gone.
    let s = sessions.load(jar.as_deref(), client.clone());
    let notice: Option<String> = s.flash_get("notice").await?;
    let user: Option<String> = s.get("user").await?;
    println!(
        "GET /home       -> flash {notice:?}, user {user:?}; {}",
        cookie(&s.finish().await?, &mut jar)
    );

    // 5. Logout deletes the session with a reason.
    let s = sessions.load(jar.as_deref(), client.clone());
    s.delete("logout").await?;
    let reason = s.delete_reason().await?;
    println!(
        "POST /logout    -> reason {reason:?}; {}; {}",
        cookie(&s.finish().await?, &mut jar),
        stored(&*store).await?
    );
    Ok(())
}
