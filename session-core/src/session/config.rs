//! [`SessionConfig`] and its builder.

use std::time::Duration;

use super::error::ConfigError;

/// Default session TTL: 7200 s, as Catalyst.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7200);
/// Default interval after which an access moves the expiry (capped at half the TTL).
pub const DEFAULT_RENEW_AFTER: Duration = Duration::from_secs(60);
/// Default bound on save attempts under concurrent updates of one session.
pub const DEFAULT_MAX_SAVE_ATTEMPTS: u32 = 32;

/// How sessions behave. Build with [`SessionConfig::builder`]; `Default` is the
/// builder's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub(crate) ttl: Duration,
    pub(crate) renew_after: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) bind_address: bool,
    pub(crate) bind_user_agent: bool,
    pub(crate) max_save_attempts: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            renew_after: DEFAULT_RENEW_AFTER,
            max_lifetime: None,
            bind_address: false,
            bind_user_agent: false,
            max_save_attempts: DEFAULT_MAX_SAVE_ATTEMPTS,
        }
    }
}

impl SessionConfig {
    /// A builder with the defaults.
    pub fn builder() -> SessionConfigBuilder {
        SessionConfigBuilder {
            cfg: Self::default(),
            renew_after_set: false,
        }
    }

    /// Idle timeout: a session not accessed for this long expires.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long after the last expiry write an access moves the expiry again.
    #[must_use]
    pub fn renew_after(&self) -> Duration {
        self.renew_after
    }

    /// The absolute lifetime cap, if any.
    #[must_use]
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// Whether sessions are bound to the client address.
    #[must_use]
    pub fn bind_address(&self) -> bool {
        self.bind_address
    }

    /// Whether sessions are bound to the user agent.
    #[must_use]
    pub fn bind_user_agent(&self) -> bool {
        self.bind_user_agent
    }

    /// Bound on save attempts under concurrent updates.
    #[must_use]
    pub fn max_save_attempts(&self) -> u32 {
        self.max_save_attempts
    }
}

/// Builder for [`SessionConfig`]; a bad combination is a [`ConfigError`] at [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionConfigBuilder {
    cfg: SessionConfig,
    renew_after_set: bool,
}

impl SessionConfigBuilder {
    /// Idle timeout (default [`DEFAULT_TTL`], 7200 s). Each access slides it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.cfg.ttl = ttl;
        self
    }

    /// Sliding renewal is written only once the expiry would move by at least
    /// this much (default: 60 s, or half the TTL if that is shorter). Until
    /// then an unchanged session costs no write; after it, one `touch`.
    ///
    /// This is Catalyst's `expiry_threshold` seen from the other end: the
    /// expiry is renewed when less than `ttl - renew_after` remains. Zero
    /// renews on every access.
    pub fn renew_after(mut self, d: Duration) -> Self {
        self.cfg.renew_after = d;
        self.renew_after_set = true;
        self
    }

    /// Absolute lifetime cap counted from creation: no renewal moves the expiry
    /// past `created + cap` (default: none). Cycling the id keeps the creation time.
    pub fn max_lifetime(mut self, cap: Option<Duration>) -> Self {
        self.cfg.max_lifetime = cap;
        self
    }

    /// Bind sessions to the client address: a request from another address
    /// deletes the session ("address mismatch"). Off by default: behind proxies,
    /// NAT pools and mobile networks the address of one user changes between
    /// requests, and behind a reverse proxy every user may share one address
    /// unless the integration passes the real client address.
    pub fn bind_address(mut self, on: bool) -> Self {
        self.cfg.bind_address = on;
        self
    }

    /// Bind sessions to the `User-Agent` header ("user agent mismatch" on change).
    /// Off by default: a browser update changes it and logs the user out.
    pub fn bind_user_agent(mut self, on: bool) -> Self {
        self.cfg.bind_user_agent = on;
        self
    }

    /// How many times `finish` tries to save when concurrent requests keep
    /// changing the same session (default [`DEFAULT_MAX_SAVE_ATTEMPTS`]).
    pub fn max_save_attempts(mut self, n: u32) -> Self {
        self.cfg.max_save_attempts = n;
        self
    }

    /// Checks and builds the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero TTL or cap, zero attempts, or a `renew_after`
    /// not shorter than the TTL.
    pub fn build(mut self) -> Result<SessionConfig, ConfigError> {
        let c = &mut self.cfg;
        if c.ttl.is_zero() {
            return Err(ConfigError::ZeroTtl);
        }
        if !self.renew_after_set {
            c.renew_after = DEFAULT_RENEW_AFTER.min(c.ttl / 2);
        }
        if c.renew_after >= c.ttl {
            return Err(ConfigError::RenewAfterTooLong {
                renew_after: c.renew_after,
                ttl: c.ttl,
            });
        }
        if c.max_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroMaxLifetime);
        }
        if c.max_save_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        Ok(self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = SessionConfig::builder().build();
        assert_eq!(c.as_ref().map(SessionConfig::ttl), Ok(DEFAULT_TTL));
        assert_eq!(c.map(|c| c.renew_after), Ok(DEFAULT_RENEW_AFTER));
        let short = SessionConfig::builder()
            .ttl(Duration::from_secs(10))
            .build();
        assert_eq!(short.map(|c| c.renew_after), Ok(Duration::from_secs(5)));
        assert_eq!(
            SessionConfig::builder().ttl(Duration::ZERO).build(),
            Err(ConfigError::ZeroTtl)
        );
        assert!(matches!(
            SessionConfig::builder()
                .ttl(Duration::from_secs(10))
                .renew_after(Duration::from_secs(10))
                .build(),
            Err(ConfigError::RenewAfterTooLong { .. })
        ));
        assert_eq!(
            SessionConfig::builder()
                .max_lifetime(Some(Duration::ZERO))
                .build(),
            Err(ConfigError::ZeroMaxLifetime)
        );
        assert_eq!(
            SessionConfig::builder().max_save_attempts(0).build(),
            Err(ConfigError::ZeroAttempts)
        );
    }
}
