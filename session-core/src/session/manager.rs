//! [`SessionManager`]: a store, a configuration and a codec; hands out one
//! lazy [`Session`] per request.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::store::SessionStore;

use super::codec::{Bincode, Codec};
use super::config::SessionConfig;
use super::envelope::{MAX_BIND_LEN, truncate_utf8};
use super::handle::Session;

/// What the HTTP layer knows about the client, for optional session binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub(crate) address: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl ClientInfo {
    /// Nothing known about the client.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The client's address (the real client, not the proxy's, if behind one).
    #[must_use]
    pub fn with_address(mut self, address: IpAddr) -> Self {
        self.address = Some(address.to_string());
        self
    }

    /// The client's `User-Agent` header (only the first 1024 bytes are compared).
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = Some(truncate_utf8(user_agent, MAX_BIND_LEN).to_owned());
        self
    }
}

pub(crate) struct Shared<C> {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) config: SessionConfig,
    pub(crate) codec: C,
}

/// Turns a store into sessions. Cheap to clone (one `Arc`); share one per app.
///
/// ```
/// use std::sync::Arc;
/// use session_core::MemoryStore;
/// use session_core::session::{ClientInfo, Outcome, SessionConfig, SessionManager};
///
/// # tokio_test_block(async {
/// let manager = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
///
/// // Request 1: no cookie; log in.
/// let session = manager.load(None, ClientInfo::new());
/// session.insert("user_id", &42u64).await?;
/// let Outcome::SetCookie { token, .. } = session.finish().await? else { unreachable!() };
///
/// // Request 2: the cookie comes back.
/// let session = manager.load(Some(&token.expose()), ClientInfo::new());
/// assert_eq!(session.get::<u64>("user_id").await?, Some(42));
/// assert_eq!(session.finish().await?, Outcome::Unchanged);
/// # Ok::<(), session_core::session::SessionError>(())
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub struct SessionManager<C: Codec = Bincode> {
    shared: Arc<Shared<C>>,
}

impl SessionManager<Bincode> {
    /// Sessions over `store` with the default [`Bincode`] codec.
    #[must_use]
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self::with_codec(store, config, Bincode)
    }
}

impl<C: Codec> SessionManager<C> {
    /// Sessions over `store` whose values go through `codec`.
    #[must_use]
    pub fn with_codec(store: Arc<dyn SessionStore>, config: SessionConfig, codec: C) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                codec,
            }),
        }
    }

    /// The session for one request, given the cookie's value (if any).
    ///
    /// Costs no store call: the store is read on first use. A cookie value that
    /// is not a well-formed token is treated as no session (logged at debug,
    /// never echoed).
    #[must_use]
    pub fn load(&self, cookie_token: Option<&str>, client: ClientInfo) -> Session<C> {
        Session::new(Arc::clone(&self.shared), cookie_token, client)
    }

    /// The store sessions live in.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.shared.store
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }
}

impl<C: Codec> Clone for SessionManager<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Codec> fmt::Debug for SessionManager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.shared.config)
            .field("codec", &self.shared.codec)
            .finish_non_exhaustive()
    }
}
