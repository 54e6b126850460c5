//! A small shop on axum with server-side sessions: log in (the session id is
//! cycled), add to cart, a flash message after each redirect, log out.
//!
//! ```text
//! cargo run --release -p session-axum --example demo                      # redb under ./data/
//! cargo run --release -p session-axum --example demo -- --store memory:
//! cargo run --release -p session-axum --example demo --features sessions/sqlite -- \
//!     --store sqlite:data/sessions.db --addr 127.0.0.1:8080
//! ```
//!
//! Backends other than the default redb need their `sessions` feature
//! (`--features sessions/full` for all); without it `--store` says which.
//!
//! The tests (`tests/http.rs`, `tests/browser.rs`) run this very app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use session_axum::{Session, SessionLayer};
use sessions::session::{SessionConfig, SessionError, SessionManager};

/// What the shop sells: (id, name, price in cents).
pub(crate) const CATALOG: &[(&str, &str, u32)] = &[
    ("tea", "Green tea", 450),
    ("mug", "Stoneware mug", 1200),
    ("kettle", "Copper kettle", 3900),
];

const DEFAULT_STORE: &str = "redb:data/sessions";
const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// The shop's routes behind the session layer.
pub(crate) fn app(manager: SessionManager) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/cart", post(add_to_cart))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(manager))
}

/// A session failure becomes a plain 500 page (and the layer does not save).
pub(crate) struct AppError(SessionError);

impl From<SessionError> for AppError {
    fn from(e: SessionError) -> Self {
        Self(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html("<h1>Something went wrong</h1><p>Please try again.</p>"),
        )
            .into_response()
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn price(cents: u32) -> String {
    format!("€{}.{:02}", cents / 100, cents % 100)
}

async fn home(session: Session) -> Result<Html<String>, AppError> {
    let user: Option<String> = session.get("user").await?;
    let cart: Vec<String> = session.get("cart").await?.unwrap_or_default();
    let notice: Option<String> = session.flash_get("notice").await?;

    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Session shop</title>\
         <style>body{font-family:sans-serif;max-width:40em;margin:2em auto}\
         .flash{background:#e6f4ea;border:1px solid #34a853;padding:.5em 1em}\
         li{margin:.3em 0}form{display:inline}</style></head><body>\
         <h1>Session shop</h1>",
    );
    if let Some(n) = notice {
        page.push_str(&format!(
            "<p id=\"flash\" class=\"flash\">{}</p>",
            escape(&n)
        ));
    }
    match &user {
        Some(u) => page.push_str(&format!(
            "<div>Signed in as <strong id=\"user\">{}</strong> \
             <form method=\"post\" action=\"/logout\"><button id=\"logout\">Log out</button></form></div>",
            escape(u)
        )),
        None => page.push_str(
            "<form id=\"login-form\" method=\"post\" action=\"/login\">\
             <label>Name <input id=\"username\" name=\"username\" maxlength=\"32\" required></label> \
             <button id=\"login\">Log in</button></form>",
        ),
    }
    page.push_str("<h2>Products</h2><ul>");
    for (id, name, cents) in CATALOG {
        page.push_str(&format!(
            "<li>{name} — {} <form method=\"post\" action=\"/cart\">\
             <input type=\"hidden\" name=\"item\" value=\"{id}\">\
             <button id=\"add-{id}\">Add to cart</button></form></li>",
            price(*cents)
        ));
    }
    page.push_str("</ul><h2>Your cart</h2>");
    if cart.is_empty() {
        page.push_str("<p id=\"cart-empty\">Your cart is empty.</p>");
    } else {
        let mut total = 0;
        page.push_str("<ul id=\"cart\">");
        for item in &cart {
            if let Some((id, name, cents)) = CATALOG.iter().find(|(id, ..)| id == item) {
                total += cents;
                page.push_str(&format!(
                    "<li class=\"cart-item\" data-item=\"{id}\">{name} — {}</li>",
                    price(*cents)
                ));
            }
        }
        page.push_str(&format!(
            "</ul><p>Total: <strong id=\"total\">{}</strong></p>",
            price(total)
        ));
    }
    page.push_str("</body></html>");
    Ok(Html(page))
}

#[derive(Deserialize)]
pub(crate) struct Login {
    username: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<Response, AppError> {
    let name = form.username.trim();
    if name.is_empty() || name.chars().count() > 32 {
        session
            .flash_insert("notice", "Please enter a name of 1 to 32 characters.")
            .await?;
        return Ok(Redirect::to("/").into_response());
    }
    // A token planted before login is worthless after it (session fixation).
    session.cycle_id().await?;
    session.insert("user", name).await?;
    session
        .flash_insert("notice", &format!("Welcome, {name}!"))
        .await?;
    Ok(Redirect::to("/").into_response())
}

#[derive(Deserialize)]
pub(crate) struct AddItem {
    item: String,
}

async fn add_to_cart(session: Session, Form(form): Form<AddItem>) -> Result<Response, AppError> {
    let Some((id, name, _)) = CATALOG.iter().find(|(id, ..)| *id == form.item) else {
        return Ok((StatusCode::BAD_REQUEST, Html("<p>No such product.</p>")).into_response());
    };
    let id = (*id).to_owned();
    // update_with re-runs on a concurrent change: two tabs adding at once both land.
    session
        .update_with("cart", move |cart: Option<Vec<String>>| {
            let mut cart = cart.unwrap_or_default();
            cart.push(id.clone());
            cart
        })
        .await?;
    session
        .flash_insert("notice", &format!("Added {name} to your cart."))
        .await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Result<Response, AppError> {
    session.delete("logout").await?;
    session
        .flash_insert("notice", "You are logged out.")
        .await?;
    Ok(Redirect::to("/").into_response())
}

struct Args {
    store: String,
    addr: SocketAddr,
}

const USAGE: &str = "usage: demo [--store URL] [--addr HOST:PORT]\n\
    \n  --store URL   where sessions live (default redb:data/sessions); see the `sessions` crate docs\
    \n  --addr ADDR   where to listen (default 127.0.0.1:3000)";

fn parse_args() -> Result<Args, String> {
    let mut store = DEFAULT_STORE.to_owned();
    let mut addr = DEFAULT_ADDR.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--store" => store = args.next().ok_or("--store needs a URL")?,
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("bad --addr {addr:?}: {e}"))?;
    Ok(Args { store, addr })
}

/// Resolves on Ctrl-C or SIGTERM, so the store is closed cleanly either way.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = sessions::StoreUrl::parse(&args.store)?;
    let store = url.open().await?;
    let manager = SessionManager::new(Arc::clone(&store), SessionConfig::default());
    let sweeper = session_axum::spawn_expired_deletion(Arc::clone(&store), Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    // StoreUrl's Display hides a password.
    tracing::info!(store = %url, "shop on http://{}/", listener.local_addr()?);
    axum::serve(
        listener,
        app(manager).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    sweeper.abort();
    Ok(())
}

#[allow(dead_code)] // The tests include this file for `app` only.
#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("demo: {msg}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}
