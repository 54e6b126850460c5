//! Measures what `SessionLayer` adds per request, in process (no sockets):
//! an axum router called directly with and without the layer. Prints the
//! figures; asserts only that every request did its work (no timing assertions).
//!
//! Run optimized for a meaningful figure:
//! `cargo test -p session-axum --release --test layer_overhead -- --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use session_axum::{Session, SessionLayer};
use session_core::MemoryStore;
use session_core::session::{ClientInfo, SessionConfig, SessionManager};
use tower::ServiceExt as _;

const REQUESTS: u32 = 5_000;
/// Rounds per path, alternating; the best round of each counts (the machine is shared).
const ROUNDS: u32 = 5;

async fn run(app: &Router, cookie: Option<&str>) -> Duration {
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let mut req = Request::builder().uri("/");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
    }
    start.elapsed()
}

#[tokio::test]
async fn session_layer_overhead() {
    let store = Arc::new(MemoryStore::new());
    let manager = SessionManager::new(store, SessionConfig::default());

    let plain = Router::new().route("/", get(|| async { "hi" }));
    let untouched = Router::new()
        .route("/", get(|_s: Session| async { "hi" }))
        .layer(SessionLayer::new(manager.clone()));
    let counting = Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                s.update_with("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .await
                    .map(|n| n.to_string())
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
            }),
        )
        .layer(SessionLayer::new(manager.clone()));

    // One session to count in, created through the layer.
    let res = counting
        .clone()
        .oneshot(
            Request::builder()
                .uri("/")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let set = res
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a new session sets its cookie")
        .to_owned();

    // The Session layer alone doing the same work, without HTTP.
    let token = set.trim_start_matches("sid=").to_owned();
    let direct = || async {
        let start = Instant::now();
        for _ in 0..REQUESTS {
            let s = manager.load(Some(&token), ClientInfo::new());
            s.update_with("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                .await
                .expect("update");
            let _ = s.finish().await.expect("finish");
        }
        start.elapsed()
    };

    let mut best = [Duration::MAX; 4];
    for _ in 0..ROUNDS {
        best[0] = best[0].min(run(&plain, None).await);
        best[1] = best[1].min(run(&untouched, Some(&set)).await);
        best[2] = best[2].min(direct().await);
        best[3] = best[3].min(run(&counting, Some(&set)).await);
    }
    let s = manager.load(Some(&token), ClientInfo::new());
    let n: Option<u64> = s.get("n").await.expect("get");
    assert_eq!(n, Some(1 + 2 * u64::from(REQUESTS * ROUNDS)));

    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(REQUESTS);
    eprintln!(
        "layer overhead: plain handler {:.2} µs; with SessionLayer, session untouched {:.2} µs \
         (+{:.2} µs); counter via Session layer alone {:.2} µs; the same through axum + \
         SessionLayer {:.2} µs (ratio {:.2}x, +{:.2} µs)",
        us(best[0]),
        us(best[1]),
        us(best[1]) - us(best[0]),
        us(best[2]),
        us(best[3]),
        best[3].as_secs_f64() / best[2].as_secs_f64(),
        us(best[3]) - us(best[2]),
    );
}
