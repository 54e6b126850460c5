//! The commands. Each works on any `Arc<dyn SessionStore>` the facade opens.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use session_core::session::{SessionToken, StoredSession};
use session_core::{Record, SessionId, SessionStore, StoreError};

use crate::Failure;
use crate::cli::{Args, Command};
use crate::render;

/// Records fetched per `scan` call.
const PAGE: usize = 1_000;

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let url = args.store.ok_or_else(|| {
        Failure::Usage("no store given: pass --store URL or set SESSION_STORE".into())
    })?;
    let store = open(&url).await?;
    let json = args.json;
    match args.command {
        Command::Purge { every: None } => purge_once(&*store).await,
        Command::Purge { every: Some(every) } => purge_loop(&*store, every).await,
        Command::Stats => stats(&*store, json).await,
        Command::List { expired, limit } => list(&*store, expired, limit, json).await,
        Command::Show { target } => show(&*store, &target, json).await,
        Command::Delete { target } => delete(&*store, &target).await,
        Command::Copy { to } => {
            let dest = open(&to).await?;
            copy(&*store, &*dest).await
        }
    }
}

async fn open(url: &str) -> Result<Arc<dyn SessionStore>, Failure> {
    sessions::open(url).await.map_err(|e| {
        // Only a store that fails to open is an operational failure; every
        // other error says the URL itself is wrong.
        if !matches!(e, sessions::OpenError::Store { .. }) {
            Failure::Usage(format!("{url_shown}: {e}", url_shown = redact(url)))
        } else {
            Failure::Operational(format!("cannot open {}: {e}", redact(url)))
        }
    })
}

/// Hides a password in a URL before it reaches a terminal or a log.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &auth[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn store_failure(e: StoreError) -> Failure {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        src = s.source();
    }
    Failure::Operational(msg)
}

// ---------------------------------------------------------------- purge

async fn purge_once(store: &dyn SessionStore) -> Result<(), Failure> {
    let n = store.delete_expired().await.map_err(store_failure)?;
    println!("purged {n} expired session(s)");
    Ok(())
}

async fn purge_loop(store: &dyn SessionStore, every: Duration) -> Result<(), Failure> {
    let mut stop = std::pin::pin!(shutdown_signal());
    tracing::info!(interval = %humantime::format_duration(every), "purging expired sessions until SIGTERM or Ctrl-C");
    let mut round = 0u64;
    loop {
        round += 1;
        // An error ends this round, never the loop: the next round may succeed.
        match store.delete_expired().await {
            Ok(n) => tracing::info!(round, purged = n, "purge round done"),
            Err(e) => {
                tracing::warn!(round, error = %store_failure(e).message(), "purge round failed; retrying next round")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut stop => {
                tracing::info!(rounds = round, "stopping");
                return Ok(());
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Operational(m) => m,
        }
    }
}

// ---------------------------------------------------------------- stats

async fn stats(store: &dyn SessionStore, json_out: bool) -> Result<(), Failure> {
    let st = store.stats().await.map_err(store_failure)?;
    if json_out {
        let details: serde_json::Map<String, Value> = st
            .details
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let out = json!({
            "live": st.live,
            "expired": st.expired,
            "live_bytes": st.live_bytes,
            "details": details,
        });
        println!("{out}");
        return Ok(());
    }
    let mut rows = vec![
        vec!["live sessions".to_string(), st.live.to_string()],
        vec!["expired (not purged)".to_string(), st.expired.to_string()],
        vec![
            "bytes in live sessions".to_string(),
            st.live_bytes.to_string(),
        ],
    ];
    let mut histograms = Vec::new();
    for (k, v) in &st.details {
        match parse_fill_list(v) {
            Some(fills) if k.contains("fill") && fills.len() > 1 => histograms.push((k, fills)),
            _ => rows.push(vec![k.clone(), v.clone()]),
        }
    }
    print!("{}", render::table(&["figure", "value"], &rows));
    for (name, fills) in histograms {
        println!("\n{name} (share of pages by fill level):");
        print!("{}", fill_histogram(&fills));
    }
    Ok(())
}

/// A detail like `"0.12,0.40,0.95"`: one fill fraction per page.
fn parse_fill_list(v: &str) -> Option<Vec<f64>> {
    v.split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
        })
        .collect()
}

fn fill_histogram(fills: &[f64]) -> String {
    let mut buckets = [0usize; 10];
    for f in fills {
        buckets[((f * 10.0) as usize).min(9)] += 1;
    }
    let mut out = String::new();
    for (i, n) in buckets.iter().enumerate() {
        let share = *n as f64 / fills.len() as f64;
        out.push_str(&format!(
            "{:>3}-{:>3}%  {}  {n}\n",
            i * 10,
            i * 10 + 10,
            render::bar(share, 40)
        ));
    }
    out
}

// ---------------------------------------------------------------- list

async fn list(
    store: &dyn SessionStore,
    expired: bool,
    limit: usize,
    json_out: bool,
) -> Result<(), Failure> {
    let now = store.clock().now();
    let mut rows: Vec<(SessionId, Record)> = Vec::new();
    let mut after: Option<SessionId> = None;
    'pages: loop {
        let page = store
            .scan(after.as_ref(), PAGE)
            .await
            .map_err(store_failure)?;
        let full = page.len() == PAGE;
        for (id, rec) in page {
            after = Some(id);
            if rec.is_expired_at(now) == expired {
                if rows.len() == limit {
                    break 'pages;
                }
                rows.push((id, rec));
            }
        }
        if !full {
            break;
        }
    }
    if json_out {
        let items: Vec<Value> = rows
            .iter()
            .map(|(id, r)| {
                json!({
                    "key": id.to_hex(),
                    "expires_at": render::time(r.expires_at),
                    "expires_at_ms": r.expires_at.as_millis(),
                    "size": r.data.len(),
                })
            })
            .collect();
        println!("{}", Value::Array(items));
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(id, r)| {
            vec![
                id.to_hex(),
                format!(
                    "{} ({})",
                    render::time(r.expires_at),
                    render::relative(r.expires_at, now)
                ),
                r.data.len().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render::table(&["KEY (sha-256 of token)", "EXPIRES", "BYTES"], &table)
    );
    if rows.len() == limit {
        println!("(first {limit} shown; --limit N for more)");
    }
    Ok(())
}

// ---------------------------------------------------------------- show / delete

/// Which store key a command-line target names, and how it was read.
async fn resolve(
    store: &dyn SessionStore,
    target: &str,
) -> Result<(SessionId, Option<Record>, &'static str), Failure> {
    let bad = |what: &str| {
        Failure::Usage(format!(
            "{what}: expected 64 lowercase hex characters (a cookie token or a store key), optionally prefixed with token: or key:"
        ))
    };
    if let Some(t) = target.strip_prefix("token:") {
        let id = SessionToken::parse(t)
            .map_err(|_| bad("not a session token"))?
            .session_id();
        let rec = store.load(&id).await.map_err(store_failure)?;
        return Ok((id, rec, "token"));
    }
    if let Some(k) = target.strip_prefix("key:") {
        let id = SessionId::parse(k).map_err(|_| bad("not a store key"))?;
        let rec = store.load(&id).await.map_err(store_failure)?;
        return Ok((id, rec, "key"));
    }
    let token = SessionToken::parse(target).map_err(|_| bad("not a token or key"))?;
    let by_token = token.session_id();
    if let Some(rec) = store.load(&by_token).await.map_err(store_failure)? {
        return Ok((by_token, Some(rec), "token"));
    }
    let by_key = SessionId::parse(target).map_err(|_| bad("not a token or key"))?;
    let rec = store.load(&by_key).await.map_err(store_failure)?;
    Ok((by_key, rec, "key"))
}

async fn show(store: &dyn SessionStore, target: &str, json_out: bool) -> Result<(), Failure> {
    let (id, rec, how) = resolve(store, target).await?;
    let rec = rec.ok_or_else(|| Failure::Operational(format!("no live session for that {how}")))?;
    let sess = StoredSession::decode(&rec.data).map_err(|e| {
        Failure::Operational(format!(
            "session {} holds {} bytes that are not a session envelope: {e}",
            id.to_hex(),
            rec.data.len()
        ))
    })?;
    let now = store.clock().now();
    let entries: serde_json::Map<String, Value> = sess
        .entries
        .iter()
        .map(|(k, e)| {
            let mut v = json!({ "value": e.value.describe() });
            if let Some(t) = e.expires_at {
                v["expires_at"] = json!(render::time(t));
            }
            (k.clone(), v)
        })
        .collect();
    let flash: serde_json::Map<String, Value> = sess
        .flash
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.describe())))
        .collect();
    let out = json!({
        "key": id.to_hex(),
        "found_by": how,
        "expires_at": render::time(rec.expires_at),
        "expires_in": render::relative(rec.expires_at, now),
        "version": format!("{:016x}", rec.version.as_raw()),
        "bytes": rec.data.len(),
        "format_version": sess.format_version,
        "created_at": render::time(sess.created_at),
        "address": sess.address,
        "user_agent": sess.user_agent,
        "entries": entries,
        "flash": flash,
    });
    if json_out {
        println!("{out}");
    } else {
        // Pretty JSON is the readable form for nested data.
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(Failure::op)?
        );
    }
    Ok(())
}

async fn delete(store: &dyn SessionStore, target: &str) -> Result<(), Failure> {
    let (id, _, how) = resolve(store, target).await?;
    if store.delete(&id).await.map_err(store_failure)? {
        println!("deleted session {} (found by {how})", id.to_hex());
        Ok(())
    } else {
        Err(Failure::Operational(
            "no live session for that token or key".into(),
        ))
    }
}

// ---------------------------------------------------------------- copy

async fn copy(src: &dyn SessionStore, dest: &dyn SessionStore) -> Result<(), Failure> {
    let total = src.stats().await.map_err(store_failure)?;
    let bar = indicatif::ProgressBar::new(total.live + total.expired);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} sessions  {per_sec}  ETA {eta}",
        )
        .map_err(Failure::op)?,
    );
    let now = src.clock().now();
    let (mut copied, mut skipped, mut failed) = (0u64, 0u64, 0u64);
    let mut after: Option<SessionId> = None;
    loop {
        let page = src
            .scan(after.as_ref(), PAGE)
            .await
            .map_err(store_failure)?;
        let full = page.len() == PAGE;
        for (id, rec) in page {
            after = Some(id);
            bar.inc(1);
            if rec.is_expired_at(now) {
                skipped += 1;
                continue;
            }
            // An unconditional upsert: re-running the copy converges on the same result.
            match dest.save(&id, &rec.data, rec.expires_at, None).await {
                Ok(_) => copied += 1,
                Err(e) => {
                    failed += 1;
                    bar.suspend(|| tracing::warn!(key = %id, error = %store_failure(e).message(), "copy failed"));
                }
            }
        }
        if !full {
            break;
        }
    }
    bar.finish_and_clear();
    println!("copied {copied}, skipped {skipped} (expired), failed {failed}");
    if failed > 0 {
        return Err(Failure::Operational(format!(
            "{failed} session(s) could not be copied"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("redb:///x"), "redb:///x");
    }

    #[test]
    fn fill_lists_parse_strictly() {
        assert_eq!(parse_fill_list("0.5,1"), Some(vec![0.5, 1.0]));
        assert_eq!(parse_fill_list("0.5,2"), None);
        assert_eq!(parse_fill_list("abc"), None);
        let h = fill_histogram(&[0.0, 0.05, 0.95, 1.0]);
        assert_eq!(h.lines().count(), 10);
        assert!(h.lines().next().is_some_and(|l| l.ends_with(" 2")));
    }
}
