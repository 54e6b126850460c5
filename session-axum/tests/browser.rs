//! The demo shop in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), talking only to 127.0.0.1.
//!
//! Flow: log in, add an item, see the flash once, reload and see it gone,
//! log out and see the cart empty. A screenshot of the cart page is saved as
//! `<target dir>/browser-artifacts/cart.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `SESSIONS_CHROMIUM` /
//! `SESSIONS_CHROMEDRIVER` pointing at the binaries). Without them the test
//! fails when `CI` is set and prints a loud SKIP otherwise.

mod common;
#[allow(dead_code)] // Only `app` is used here; `main` is the example's.
#[path = "../examples/demo.rs"]
mod demo;

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use sessions::session::{SessionConfig, SessionManager};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        // An explicit path wins; if it is wrong the binary counts as missing.
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in candidates {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Kills chromedriver (and with it the browser it started) when the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn connect(chromium: &Path, profile: &Path, port: u16) -> Result<Client, String> {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                "--window-size=900,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        return Err("capabilities are an object".into());
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(c) => return Ok(c),
            // chromedriver may still be starting.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("cannot start a WebDriver session: {e}")),
        }
    }
}

async fn text_of(c: &Client, css: &str) -> Result<String, fantoccini::error::CmdError> {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await?
        .text()
        .await
}

async fn exists(c: &Client, css: &str) -> Result<bool, fantoccini::error::CmdError> {
    Ok(!c.find_all(Locator::Css(css)).await?.is_empty())
}

async fn click_and_wait(c: &Client, css: &str) -> TestResult {
    let before = c.find(Locator::Css("body")).await?;
    c.find(Locator::Css(css)).await?.click().await?;
    // The form POST answers with a redirect: wait until the old page is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while before.tag_name().await.is_ok() {
        if Instant::now() > deadline {
            return Err(format!("page did not change after clicking {css}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("h1"))
        .await?;
    Ok(())
}

fn artifact_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target dir>/tmp; artifacts go next to it.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser-artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_in_headless_chromium() -> TestResult {
    let chromium = find_binary("SESSIONS_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find_binary("SESSIONS_CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let msg = "browser test needs chromium and chromedriver \
                   (apt-get install -y chromium chromium-driver)";
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            return Err(format!("FAIL: {msg}; CI is set, so this is an error").into());
        }
        let _ = std::io::stderr()
            .write_all(format!("\n*** SKIP shop_in_headless_chromium: {msg} ***\n\n").as_bytes());
        return Ok(());
    };

    let dir = tempfile::tempdir()?;
    let store = sessions::open(&format!("redb:{}", dir.path().join("sessions").display())).await?;
    let manager = SessionManager::new(store, SessionConfig::default());
    let addr = common::serve(demo::app(manager)).await;
    let base = format!("http://{addr}/");

    let port = free_port()?;
    let _driver = Driver(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", driver.display()))?,
    );
    let profile = dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile)?;
    let c = connect(&chromium, &profile, port).await?;
    let result = run_flow(&c, &base).await;
    let _ = c.close().await;
    result
}

async fn run_flow(c: &Client, base: &str) -> TestResult {
    c.goto(base).await?;
    assert!(
        exists(c, "#cart-empty").await?,
        "a new visitor's cart is empty"
    );

    // Log in.
    c.find(Locator::Css("#username"))
        .await?
        .send_keys("ada")
        .await?;
    click_and_wait(c, "#login").await?;
    assert_eq!(text_of(c, "#flash").await?, "Welcome, ada!");
    assert_eq!(text_of(c, "#user").await?, "ada");

    // The session cookie as the browser holds it.
    let cookie = c.get_named_cookie("sid").await?;
    assert_eq!(cookie.value().len(), 64);
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax")
    );

    // Add an item: the flash shows once, with the cart.
    click_and_wait(c, "#add-tea").await?;
    assert_eq!(text_of(c, "#flash").await?, "Added Green tea to your cart.");
    assert_eq!(text_of(c, ".cart-item").await?, "Green tea — €4.50");

    let png = c.screenshot().await?;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = artifact_dir();
    std::fs::create_dir_all(&out)?;
    let shot = out.join("cart.png");
    std::fs::write(&shot, &png)?;
    let _ = std::io::stderr()
        .write_all(format!("browser test: screenshot saved to {}\n", shot.display()).as_bytes());

    // Reload: the flash is gone, the cart stays.
    c.refresh().await?;
    text_of(c, "h1").await?;
    assert!(!exists(c, "#flash").await?, "the flash must not show twice");
    assert_eq!(text_of(c, ".cart-item").await?, "Green tea — €4.50");
    assert_eq!(text_of(c, "#user").await?, "ada");

    // Log out: the cart is empty, and stays so on reload.
    click_and_wait(c, "#logout").await?;
    assert_eq!(text_of(c, "#flash").await?, "You are logged out.");
    assert!(exists(c, "#cart-empty").await?);
    assert!(exists(c, "#login-form").await?);
    c.refresh().await?;
    text_of(c, "h1").await?;
    assert!(!exists(c, "#flash").await?);
    assert!(exists(c, "#cart-empty").await?);
    assert!(!exists(c, ".cart-item").await?);
    Ok(())
}
