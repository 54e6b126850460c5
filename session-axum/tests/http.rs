//! End-to-end over real HTTP: the demo shop on 127.0.0.1:0 with a
//! cookie-keeping client, cookie attributes, bad cookies, concurrent
//! requests, 5xx handling.

mod common;
#[allow(dead_code)] // Only `app` and `CATALOG` are used here; `main` is the example's.
#[path = "../examples/demo.rs"]
mod demo;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use session_axum::{SameSite, Session, SessionLayer};
use sessions::SessionStore;
use sessions::session::{SessionConfig, SessionManager};
use tokio::sync::Barrier;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn client(jar: &Arc<Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(Arc::clone(jar))
        .build()
        .expect("client")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn sid(jar: &Jar, base: &reqwest::Url) -> Option<String> {
    let header = jar.cookies(base)?;
    let text = header.to_str().ok()?.to_owned();
    text.split("; ")
        .find_map(|kv| kv.strip_prefix("sid="))
        .map(str::to_owned)
}

async fn shop_flow(store: Arc<dyn SessionStore>) -> TestResult {
    let manager = SessionManager::new(Arc::clone(&store), SessionConfig::default());
    let addr = common::serve(demo::app(manager)).await;
    let base: reqwest::Url = format!("http://{addr}/").parse()?;
    let jar = Arc::new(Jar::default());
    let c = client(&jar);

    // A first look: no session is created for an anonymous page view.
    let res = c.get(base.clone()).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(SET_COOKIE).is_none());
    let page = res.text().await?;
    assert!(page.contains("id=\"cart-empty\"") && page.contains("login-form"));
    assert_eq!(
        store.stats().await?.live,
        0,
        "an empty session is never written"
    );

    // Add to cart as a guest: redirect, flash shown once, item in the cart.
    let page = c
        .post(base.join("cart")?)
        .form(&[("item", "tea")])
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("Added Green tea to your cart."), "{page}");
    assert!(page.contains("data-item=\"tea\""));
    let guest_token = sid(&jar, &base).ok_or("no cookie after adding to cart")?;

    // Log in: the id is cycled, the cart is kept, the welcome flash shows.
    let page = c
        .post(base.join("login")?)
        .form(&[("username", "ada <script>")])
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("Welcome, ada &lt;script&gt;!"), "{page}");
    assert!(page.contains("id=\"user\">ada &lt;script&gt;</strong>"));
    assert!(page.contains("data-item=\"tea\""), "cart survives login");
    let user_token = sid(&jar, &base).ok_or("no cookie after login")?;
    assert_ne!(guest_token, user_token, "login must cycle the session id");

    // The pre-login token is now worthless: it gets a fresh, empty session.
    let res = no_redirects()
        .get(base.clone())
        .header(COOKIE, format!("sid={guest_token}"))
        .send()
        .await?;
    let page = res.text().await?;
    assert!(page.contains("login-form") && page.contains("cart-empty"));

    // Reload: the flash was consumed.
    let page = c.get(base.clone()).send().await?.text().await?;
    assert!(
        !page.contains("id=\"flash\""),
        "flash must show once: {page}"
    );
    assert!(page.contains("data-item=\"tea\""));

    // Two more items, then log out: cart gone, logout notice once.
    for item in ["mug", "kettle"] {
        c.post(base.join("cart")?)
            .form(&[("item", item)])
            .send()
            .await?
            .error_for_status()?;
    }
    let page = c.get(base.clone()).send().await?.text().await?;
    assert_eq!(page.matches("class=\"cart-item\"").count(), 3);
    assert!(page.contains("€55.50"), "{page}");

    let page = c.post(base.join("logout")?).send().await?.text().await?;
    assert!(page.contains("You are logged out."));
    assert!(page.contains("cart-empty") && page.contains("login-form"));
    let page = c.get(base.clone()).send().await?.text().await?;
    assert!(!page.contains("id=\"flash\"") && page.contains("cart-empty"));

    // An unknown product is a 400, not a crash.
    let res = c
        .post(base.join("cart")?)
        .form(&[("item", "nope")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_flow_memory() -> TestResult {
    shop_flow(sessions::open("memory:").await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_flow_default_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let url = format!("redb:{}", dir.path().join("sessions").display());
    shop_flow(sessions::open(&url).await?).await
}

fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn cookie_attributes() -> TestResult {
    let manager = SessionManager::new(
        sessions::open("memory:").await?,
        SessionConfig::builder()
            .ttl(Duration::from_secs(600))
            .build()?,
    );
    let addr = common::serve(demo::app(manager.clone())).await;
    let res = no_redirects()
        .post(format!("http://{addr}/cart"))
        .form(&[("item", "tea")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let header = set_cookie(&res);
    let (value, attrs) = header
        .strip_prefix("sid=")
        .and_then(|h| h.split_once("; "))
        .ok_or_else(|| format!("unexpected Set-Cookie {header:?}"))?;
    assert_eq!(value.len(), 64);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(attrs, "Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax");
    assert_eq!(
        res.headers().get(CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );

    // Every attribute configurable except HttpOnly.
    let layer = SessionLayer::builder(manager)
        .cookie_name("shop_session")
        .secure(false)
        .same_site(SameSite::Strict)
        .path("/shop")
        .domain(Some("shop.example".into()))
        .build()?;
    let app =
        Router::new()
            .route(
                "/shop/set",
                get(|s: Session| async move {
                    s.insert("k", &1u8).await.map(|()| "ok").map_err(|_| "err")
                }),
            )
            .layer(layer);
    let addr = common::serve(app).await;
    let res = no_redirects()
        .get(format!("http://{addr}/shop/set"))
        .send()
        .await?;
    let header = set_cookie(&res);
    let attrs = header
        .strip_prefix("shop_session=")
        .and_then(|h| h.split_once("; "))
        .map(|(_, a)| a)
        .ok_or_else(|| format!("unexpected Set-Cookie {header:?}"))?;
    assert_eq!(
        attrs,
        "Path=/shop; Domain=shop.example; Max-Age=600; HttpOnly; SameSite=Strict"
    );

    // Settings that cannot go in a header are refused at build time.
    let m = SessionManager::new(sessions::open("memory:").await?, SessionConfig::default());
    assert!(
        SessionLayer::builder(m.clone())
            .cookie_name("a b")
            .build()
            .is_err()
    );
    assert!(
        SessionLayer::builder(m)
            .same_site(SameSite::None)
            .secure(false)
            .build()
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn bad_cookies_are_a_fresh_session() -> TestResult {
    let store = sessions::open("memory:").await?;
    let manager = SessionManager::new(Arc::clone(&store), SessionConfig::default());
    let addr = common::serve(demo::app(manager)).await;
    let http = no_redirects();

    // A real session to tamper with.
    let res = http
        .post(format!("http://{addr}/cart"))
        .form(&[("item", "mug")])
        .send()
        .await?;
    let header = set_cookie(&res);
    let token = header
        .strip_prefix("sid=")
        .and_then(|h| h.get(..64))
        .ok_or("no token")?
        .to_owned();
    let mut flipped = token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped)?;

    for bad in [
        "garbage".to_owned(),
        String::new(),
        token.to_uppercase(),
        format!("{token}00"),
        flipped,
        "../../etc/passwd".to_owned(),
        "%00".repeat(30),
    ] {
        let res = http
            .get(format!("http://{addr}/"))
            .header(COOKIE, format!("sid={bad}"))
            .send()
            .await?;
        assert_eq!(res.status(), StatusCode::OK, "cookie {bad:?}");
        let header = set_cookie(&res);
        assert!(
            header.starts_with("sid=; ") && header.contains("Max-Age=0"),
            "a bad cookie is removed, got {header:?} for {bad:?}"
        );
        let page = res.text().await?;
        assert!(page.contains("cart-empty"), "fresh session for {bad:?}");
    }
    // A write with a bad cookie starts a new session instead of failing.
    let res = http
        .post(format!("http://{addr}/cart"))
        .header(COOKIE, "sid=garbage")
        .form(&[("item", "tea")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&res).contains("Max-Age=7200"));
    // The genuine session is untouched by all that.
    let page = http
        .get(format!("http://{addr}/"))
        .header(COOKIE, format!("sid={token}"))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("data-item=\"mug\""));
    assert_eq!(store.stats().await?.live, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_both_land() -> TestResult {
    let manager = SessionManager::new(sessions::open("memory:").await?, SessionConfig::default());
    // Both requests load the session, then meet here, then write: the second
    // save hits a version conflict and the Session layer merges.
    let barrier = Arc::new(Barrier::new(2));
    let app = Router::new()
        .route(
            "/add/{item}",
            post(
                move |s: Session, axum::extract::Path(item): axum::extract::Path<String>| {
                    let barrier = Arc::clone(&barrier);
                    async move {
                        let before: Vec<String> =
                            s.get("cart").await.ok().flatten().unwrap_or_default();
                        barrier.wait().await;
                        let after = s
                            .update_with("cart", move |c: Option<Vec<String>>| {
                                let mut c = c.unwrap_or_default();
                                c.push(item.clone());
                                c
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>(format!("{} -> {}", before.len(), after.len()))
                    }
                },
            ),
        )
        .route(
            "/cart",
            get(|s: Session| async move {
                let cart: Vec<String> = s.get("cart").await.ok().flatten().unwrap_or_default();
                cart.join(",")
            }),
        )
        .route(
            "/seed",
            post(|s: Session| async move {
                s.insert("cart", &vec!["seed".to_owned()])
                    .await
                    .map_err(|e| e.to_string())
            }),
        )
        .layer(SessionLayer::new(manager));
    let addr = common::serve(app).await;
    let jar = Arc::new(Jar::default());
    let c = client(&jar);
    c.post(format!("http://{addr}/seed"))
        .send()
        .await?
        .error_for_status()?;

    for round in 0..3 {
        let (a, b) = tokio::join!(
            c.post(format!("http://{addr}/add/a{round}")).send(),
            c.post(format!("http://{addr}/add/b{round}")).send(),
        );
        let (a, b) = (
            a?.error_for_status()?.text().await?,
            b?.error_for_status()?.text().await?,
        );
        // Both saw the same cart before writing: a real race.
        assert_eq!(a.split(" -> ").next(), b.split(" -> ").next(), "{a} / {b}");
    }
    let cart = c
        .get(format!("http://{addr}/cart"))
        .send()
        .await?
        .text()
        .await?;
    let mut items: Vec<&str> = cart.split(',').collect();
    items.sort_unstable();
    assert_eq!(
        items,
        ["a0", "a1", "a2", "b0", "b1", "b2", "seed"],
        "{cart}"
    );
    Ok(())
}

#[tokio::test]
async fn server_errors_are_not_saved_unless_configured() -> TestResult {
    for save_on_error in [false, true] {
        let manager =
            SessionManager::new(sessions::open("memory:").await?, SessionConfig::default());
        let layer = SessionLayer::builder(manager)
            .save_on_server_error(save_on_error)
            .build()?;
        let app = Router::new()
            .route(
                "/fail",
                post(|s: Session| async move {
                    let _ = s.insert("half", &"done").await;
                    StatusCode::INTERNAL_SERVER_ERROR
                }),
            )
            .route(
                "/ok",
                post(|s: Session| async move {
                    let _ = s.insert("ok", &true).await;
                    StatusCode::OK
                }),
            )
            .route(
                "/read",
                get(|s: Session| async move {
                    let v: Option<String> = s.get("half").await.ok().flatten();
                    v.unwrap_or_default()
                }),
            )
            .layer(layer);
        let addr = common::serve(app).await;
        let jar = Arc::new(Jar::default());
        let c = client(&jar);
        c.post(format!("http://{addr}/ok"))
            .send()
            .await?
            .error_for_status()?;
        let res = c.post(format!("http://{addr}/fail")).send().await?;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let read = c
            .get(format!("http://{addr}/read"))
            .send()
            .await?
            .text()
            .await?;
        let expected = if save_on_error { "done" } else { "" };
        assert_eq!(read, expected, "save_on_server_error = {save_on_error}");
    }
    Ok(())
}

#[tokio::test]
async fn extractor_without_layer_is_a_500() -> TestResult {
    let app = Router::new().route("/", get(|_s: Session| async { "unreachable" }));
    let addr = common::serve(app).await;
    let res = no_redirects().get(format!("http://{addr}/")).send().await?;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    Ok(())
}
