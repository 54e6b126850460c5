//! [`SessionLayer`]: loads a lazy session per request, hands it to the
//! handler through the request extensions, and finishes it on the way out.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use http::header::{CACHE_CONTROL, SET_COOKIE, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode};
use session_core::session::{Bincode, ClientInfo, Codec, SessionError, SessionManager};
use tower_layer::Layer;
use tower_service::Service;

use crate::cookie::{CookieConfig, CookieConfigError, SameSite};

/// What the service shares across requests.
struct Settings {
    cookie: CookieConfig,
    save_on_server_error: bool,
}

/// A tower [`Layer`] that gives every request a lazy session.
///
/// Per request it reads the session cookie, puts a
/// [`session_core::session::Session`] in the request extensions (take it
/// with the [`Session`](crate::Session) extractor), runs the inner service,
/// then calls `finish` and writes the `Set-Cookie` header from the
/// [`Outcome`](session_core::session::Outcome):
///
/// * a response with a 5xx status is not saved (the handler may have failed
///   half-way) unless [`save_on_server_error`](SessionLayerBuilder::save_on_server_error)
///   is on; the session's store calls made during the request (such as a
///   `delete`) have happened regardless;
/// * if saving fails the response is replaced by an empty `500`, logged at
///   error: telling the user "added to cart" when nothing was stored would be
///   worse;
/// * a response that sets the cookie also gets `Cache-Control: no-store`
///   unless it has its own, so no shared cache replays one user's cookie to another.
///
/// The client address for [`ClientInfo`] comes from axum's
/// `ConnectInfo<SocketAddr>` when the server provides it
/// (`into_make_service_with_connect_info`); it only matters when the
/// [`SessionConfig`](session_core::session::SessionConfig) binds sessions to it.
pub struct SessionLayer<C: Codec = Bincode> {
    manager: SessionManager<C>,
    settings: Arc<Settings>,
}

impl<C: Codec> Clone for SessionLayer<C> {
    fn clone(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<C: Codec> std::fmt::Debug for SessionLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.settings.cookie)
            .field("save_on_server_error", &self.settings.save_on_server_error)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> SessionLayer<C> {
    /// A layer with the default cookie: `sid`, `Path=/`, `Secure`,
    /// `HttpOnly`, `SameSite=Lax`, no `Domain`.
    #[must_use]
    pub fn new(manager: SessionManager<C>) -> Self {
        Self {
            manager,
            settings: Arc::new(Settings {
                cookie: CookieConfig::default(),
                save_on_server_error: false,
            }),
        }
    }

    /// A builder to change the cookie's attributes.
    pub fn builder(manager: SessionManager<C>) -> SessionLayerBuilder<C> {
        SessionLayerBuilder {
            manager,
            cookie: CookieConfig::default(),
            save_on_server_error: false,
        }
    }

    /// The session manager requests use.
    #[must_use]
    pub fn manager(&self) -> &SessionManager<C> {
        &self.manager
    }
}

/// Builds a [`SessionLayer`]; a setting that cannot go in a header is a
/// [`CookieConfigError`] at [`build`](Self::build).
#[must_use]
pub struct SessionLayerBuilder<C: Codec = Bincode> {
    manager: SessionManager<C>,
    cookie: CookieConfig,
    save_on_server_error: bool,
}

impl<C: Codec> std::fmt::Debug for SessionLayerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> SessionLayerBuilder<C> {
    /// The cookie name (default [`DEFAULT_COOKIE_NAME`](crate::DEFAULT_COOKIE_NAME)).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// Whether the cookie carries `Secure` (default `true`). Browsers and
    /// `reqwest` treat `http://localhost` and loopback addresses as secure, so
    /// the default works for local development too; turn it off only for
    /// plain HTTP on other hosts.
    pub fn secure(mut self, secure: bool) -> Self {
        self.cookie.secure = secure;
        self
    }

    /// The `SameSite` attribute (default [`SameSite::Lax`]).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// The cookie `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// The cookie `Domain` (default none: the cookie goes to this host only).
    pub fn domain(mut self, domain: Option<String>) -> Self {
        self.cookie.domain = domain;
        self
    }

    /// Save the session even when the response status is 5xx (default `false`).
    pub fn save_on_server_error(mut self, save: bool) -> Self {
        self.save_on_server_error = save;
        self
    }

    /// Checks the cookie settings and builds the layer.
    ///
    /// # Errors
    ///
    /// [`CookieConfigError`] for a name outside RFC 6265's token characters,
    /// a relative path or one with `;`, a domain with non-host characters,
    /// or `SameSite=None` without `Secure`.
    pub fn build(self) -> Result<SessionLayer<C>, CookieConfigError> {
        self.cookie.validate()?;
        Ok(SessionLayer {
            manager: self.manager,
            settings: Arc::new(Settings {
                cookie: self.cookie,
                save_on_server_error: self.save_on_server_error,
            }),
        })
    }
}

impl<S, C: Codec> Layer<S> for SessionLayer<C> {
    type Service = SessionService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
pub struct SessionService<S, C: Codec = Bincode> {
    inner: S,
    layer: SessionLayer<C>,
}

impl<S: Clone, C: Codec> Clone for SessionService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C: Codec> std::fmt::Debug for SessionService<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

fn client_info<B>(req: &Request<B>) -> ClientInfo {
    let mut client = ClientInfo::new();
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        client = client.with_address(addr.ip());
    }
    if let Some(ua) = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()) {
        client = client.with_user_agent(ua);
    }
    client
}

fn server_error<B: Default>() -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: Codec,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = Arc::clone(&self.layer.settings);
        let cookie = settings.cookie.read(req.headers());
        let session = self
            .layer
            .manager
            .load(cookie.as_deref(), client_info(&req));
        req.extensions_mut().insert(session.clone());
        // The clone that was polled ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            if res.status().is_server_error() && !settings.save_on_server_error {
                tracing::debug!(status = %res.status(), "not saving the session of a failed request");
                return Ok(res);
            }
            let outcome = match session.finish().await {
                Ok(outcome) => outcome,
                Err(SessionError::Finished) => {
                    tracing::warn!(
                        "the handler finished the session itself; its cookie outcome is lost"
                    );
                    return Ok(res);
                }
                Err(e) => {
                    tracing::error!(error = %e, "saving the session failed");
                    return Ok(server_error());
                }
            };
            if let Some(value) = settings.cookie.set_cookie(&outcome) {
                let headers = res.headers_mut();
                headers.append(SET_COOKIE, value);
                if !headers.contains_key(CACHE_CONTROL) {
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
            }
            Ok(res)
        })
    }
}
