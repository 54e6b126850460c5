//! The [`Session`] extractor.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use session_core::session::{Bincode, Codec};

/// The request's session, as an axum extractor. Needs [`SessionLayer`](crate::SessionLayer)
/// (with the same codec) around the route.
///
/// Derefs to [`session_core::session::Session`]: `get`, `insert`,
/// `update_with`, `flash_insert`, `flash_get`, `cycle_id`, `delete`, …
/// Do not call `finish`: the layer does, after the handler.
///
/// ```no_run
/// use session_axum::Session;
///
/// async fn visits(session: Session) -> String {
///     match session.update_with("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await {
///         Ok(n) => format!("visit number {n}"),
///         Err(e) => format!("session error: {e}"),
///     }
/// }
/// ```
pub struct Session<C: Codec = Bincode>(pub session_core::session::Session<C>);

impl<C: Codec> Clone for Session<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: Codec> std::fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<C: Codec> Deref for Session<C> {
    type Target = session_core::session::Session<C>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The rejection when no [`SessionLayer`](crate::SessionLayer) ran for the request:
/// a `500`, since it is a wiring mistake in the app, not the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no SessionLayer (with this codec) wraps this route")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync, C: Codec> FromRequestParts<S> for Session<C> {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<session_core::session::Session<C>>()
            .cloned()
            .map(Session)
            .ok_or(MissingSessionLayer)
    }
}
