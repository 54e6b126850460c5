//! Runs the real `sessionctl` binary against real stores (file, redb, SQLite)
//! seeded through the Session layer, and checks output and exit codes.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager};
use session_core::{SessionId, SessionStore, SystemClock, Timestamp};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(args)
        .env_remove("SESSION_STORE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run sessionctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a failure is exactly one line on stderr with the given exit code, no panic.
fn assert_one_line_error(out: &Output, code: i32) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("sessionctl: error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

struct Seeded {
    tokens: Vec<String>,
    live: usize,
    expired: usize,
}

/// Writes `live` Session-layer sessions (user, cart, a flash, a per-key expiry)
/// and `expired` raw records that expired a minute ago.
async fn seed(url: &str, live: usize, expired: usize) -> Seeded {
    let store = sessions::open(url).await.expect("open for seeding");
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let mut tokens = Vec::new();
    for i in 0..live {
        let s = manager.load(None, ClientInfo::new());
        s.insert("user", &format!("user{i}")).await.unwrap();
        s.insert("cart", &vec!["tea", "mug"]).await.unwrap();
        s.insert("otp", &1234u32).await.unwrap();
        s.expire_key("otp", Duration::from_secs(300)).await.unwrap();
        s.flash_insert("notice", "welcome").await.unwrap();
        match s.finish().await.unwrap() {
            Outcome::SetCookie { token, .. } => tokens.push(token.expose()),
            other => panic!("no cookie: {other:?}"),
        }
    }
    let past = session_core::Clock::now(&SystemClock).saturating_sub(Duration::from_secs(60));
    for _ in 0..expired {
        store
            .save(&SessionId::generate(), b"old", past, None)
            .await
            .unwrap();
    }
    Seeded {
        tokens,
        live,
        expired,
    }
}

fn urls(dir: &std::path::Path) -> Vec<String> {
    vec![
        format!("file://{}", dir.join("files").display()),
        format!("redb://{}", dir.join("redb").display()),
        format!("sqlite://{}", dir.join("s.db").display()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_file_redb_and_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(dir.path()) {
        let seeded = seed(&url, 5, 3).await; // the store is dropped: redb is single-process
        let url = url.as_str();

        let out = ctl(&["--store", url, "stats", "--json"]);
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["live"], seeded.live as u64, "{url}");
        assert_eq!(v["expired"], seeded.expired as u64, "{url}");

        let out = ctl(&["--store", url, "stats"]);
        assert!(text(&out.stdout).contains("live sessions"), "{url}");

        let out = ctl(&["--store", url, "list", "--json", "--limit", "100"]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), seeded.live, "{url}");
        for row in &rows {
            let key = row["key"].as_str().unwrap();
            assert!(SessionId::parse(key).is_ok());
            // Keys are hashes: no cookie token is ever listed.
            assert!(!seeded.tokens.iter().any(|t| t == key));
        }
        let out = ctl(&["--store", url, "list", "--expired", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), seeded.expired, "{url}");
        let out = ctl(&["--store", url, "list", "--limit", "2"]);
        assert!(text(&out.stdout).contains("first 2 shown"), "{url}");

        let token = &seeded.tokens[0];
        let out = ctl(&["--store", url, "show", "--json", token]);
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["found_by"], "token");
        assert!(v["entries"]["user"]["value"].is_string());
        assert!(
            v["entries"]["otp"]["expires_at"].is_string(),
            "per-key expiry shown"
        );
        assert!(v["flash"]["notice"].is_string(), "flash shown");
        let key = v["key"].as_str().unwrap().to_string();
        let out = ctl(&["--store", url, "show", &format!("key:{key}")]);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("\"found_by\": \"key\""));

        let out = ctl(&["--store", url, "purge"]);
        assert_eq!(
            text(&out.stdout).trim(),
            format!("purged {} expired session(s)", seeded.expired),
            "{url}"
        );
        let out = ctl(&["--store", url, "purge"]);
        assert_eq!(text(&out.stdout).trim(), "purged 0 expired session(s)");

        let out = ctl(&["--store", url, "delete", token]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = ctl(&["--store", url, "show", token]);
        assert_one_line_error(&out, 1);
        let out = ctl(&["--store", url, "stats", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["live"], seeded.live as u64 - 1);
        assert_eq!(v["expired"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    assert_one_line_error(&ctl(&["stats"]), 2); // no store
    assert_one_line_error(&ctl(&["--store", "gopher://x", "stats"]), 2);
    assert_one_line_error(&ctl(&["--store", "redb:///x?colour=blue", "stats"]), 2);
    assert_one_line_error(&ctl(&["--store", "not a url", "stats"]), 2);
    let err = assert_one_line_error(
        &ctl(&[
            "--store",
            "postgres://postgres:hunter2@127.0.0.1:1/test?acquire_timeout=2s",
            "stats",
        ]),
        1,
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");

    let url = format!("file://{}", dir.path().join("f").display());
    let seeded = seed(&url, 1, 0).await;
    assert_one_line_error(&ctl(&["--store", &url, "show", "../../etc/passwd"]), 2);
    assert_one_line_error(&ctl(&["--store", &url, "show", &"G".repeat(64)]), 2);
    assert_one_line_error(&ctl(&["--store", &url, "delete", "token:xyz"]), 2);
    assert_one_line_error(&ctl(&["--store", &url, "show", &"0".repeat(64)]), 1); // well-formed, absent

    // A record that is not a Session-layer envelope.
    let store = sessions::open(&url).await.unwrap();
    let id = SessionId::generate();
    let soon = session_core::Clock::now(&SystemClock).saturating_add(Duration::from_secs(600));
    store
        .save(&id, b"\xffnot an envelope", soon, None)
        .await
        .unwrap();
    let err = assert_one_line_error(
        &ctl(&["--store", &url, "show", &format!("key:{}", id.to_hex())]),
        1,
    );
    assert!(err.contains("not a session envelope"), "{err}");

    // A corrupt file on disk: a typed, one-line error for that session.
    let path = walk_files(&dir.path().join("f"))
        .into_iter()
        .find(|p| p.ends_with(id.to_hex()))
        .unwrap();
    std::fs::write(&path, b"garbage").unwrap();
    let err = assert_one_line_error(
        &ctl(&["--store", &url, "show", &format!("key:{}", id.to_hex())]),
        1,
    );
    assert!(err.to_lowercase().contains("corrupt"), "{err}");
    // The rest of the store still works.
    let out = ctl(&["--store", &url, "show", &seeded.tokens[0]]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Usage errors from clap exit 2 as well.
    assert_eq!(
        ctl(&["--store", &url, "purge", "--every", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(ctl(&["frobnicate"]).status.code(), Some(2));
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_ten_thousand_sessions_between_backends_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!(
        "file://{}?durability=none",
        dir.path().join("from").display()
    );
    let to = format!("sqlite://{}", dir.path().join("to.db").display());
    let now = session_core::Clock::now(&SystemClock);
    {
        let src = sessions::open(&from).await.unwrap();
        let mut tasks = Vec::new();
        for part in 0..8u32 {
            let src = src.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1_250u32 {
                    let n = part * 1_250 + i;
                    let data: Vec<u8> = (0..(n % 700 + 1)).map(|j| (j ^ n) as u8).collect();
                    let exp = now.saturating_add(Duration::from_secs(3_600 + u64::from(n)));
                    src.create(&SessionId::generate(), &data, exp)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for _ in 0..25 {
            src.save(
                &SessionId::generate(),
                b"x",
                now.saturating_sub(Duration::from_secs(1)),
                None,
            )
            .await
            .unwrap();
        }
    }
    let out = ctl(&["--store", &from, "copy", "--to", &to]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "copied 10000, skipped 25 (expired), failed 0"
    );

    let (src, dst) = (
        sessions::open(&from).await.unwrap(),
        sessions::open(&to).await.unwrap(),
    );
    let a = dump(&*src, now).await;
    let b = dump(&*dst, now).await;
    assert_eq!(a.len(), 10_000);
    assert!(a == b, "destination differs from the source");

    // Re-running converges on the same state.
    let out = ctl(&["--store", &from, "copy", "--to", &to]);
    assert_eq!(
        text(&out.stdout).trim(),
        "copied 10000, skipped 25 (expired), failed 0"
    );
    assert!(dump(&*dst, now).await == a);
}

async fn dump(store: &dyn SessionStore, now: Timestamp) -> Vec<(SessionId, Vec<u8>, Timestamp)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan(after.as_ref(), 1_000).await.unwrap();
        let full = page.len() == 1_000;
        for (id, r) in page {
            after = Some(id);
            if !r.is_expired_at(now) {
                out.push((id, r.data, r.expires_at));
            }
        }
        if !full {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_every_survives_rounds_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("p").display());
    seed(&url, 1, 4).await;
    let child = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(["--store", &url, "purge", "--every", "1s"])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.matches("purge round done").count() >= 2, "{err}");
    assert!(err.contains("purged=4"), "{err}");
    assert!(err.contains("stopping"), "{err}");
    let store: Arc<dyn SessionStore> = sessions::open(&url).await.unwrap();
    assert_eq!(store.stats().await.unwrap().expired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mmap_stats_show_evictions_and_a_fill_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "mmap://{}?size=4MiB&pages=16",
        dir.path().join("c.cache").display()
    );
    seed(&url, 20, 2).await;
    let out = ctl(&["--store", &url, "stats"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("evicted_live"), "{shown}");
    assert!(shown.contains("entries"), "{shown}");
    assert!(
        shown.contains("page_fill (share of pages by fill level):"),
        "{shown}"
    );
    assert_eq!(shown.matches('%').count(), 10, "{shown}");
    let out = ctl(&["--store", &url, "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["live"], 20);
    assert_eq!(
        v["details"]["page_fill"]
            .as_str()
            .unwrap()
            .split(',')
            .count(),
        16
    );
}
