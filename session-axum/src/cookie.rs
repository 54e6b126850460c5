//! The session cookie: its attributes, reading it from `Cookie` headers and
//! writing the `Set-Cookie` header for an [`Outcome`].
//!
//! Invariants: `HttpOnly` is always set (scripts never see the token); names,
//! paths and domains are checked once at build time so a header built here is
//! always valid; the value written is only ever a token's 64 hex characters.

use std::fmt::Write as _;

use http::header::{COOKIE, HeaderMap, HeaderValue};
use session_core::session::Outcome;

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations (the default).
    #[default]
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// A cookie setting that cannot be put in a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieConfigError {
    /// The name is empty or holds a character outside RFC 6265's token set.
    #[error("invalid cookie name {0:?}: use letters, digits and !#$%&'*+-.^_`|~")]
    Name(String),
    /// The path is not absolute or holds a control character or `;`.
    #[error(
        "invalid cookie path {0:?}: it must start with '/' and hold no ';' or control characters"
    )]
    Path(String),
    /// The domain holds a character a host name cannot hold.
    #[error("invalid cookie domain {0:?}")]
    Domain(String),
    /// `SameSite=None` without `Secure` is rejected by browsers.
    #[error("SameSite=None requires the Secure attribute")]
    NoneWithoutSecure,
}

/// Attributes of the session cookie. `HttpOnly` is always on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CookieConfig {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
}

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
        }
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl CookieConfig {
    pub(crate) fn validate(&self) -> Result<(), CookieConfigError> {
        if self.name.is_empty() || !self.name.chars().all(is_token_char) {
            return Err(CookieConfigError::Name(self.name.clone()));
        }
        if !self.path.starts_with('/')
            || self
                .path
                .chars()
                .any(|c| c == ';' || c.is_control() || !c.is_ascii())
        {
            return Err(CookieConfigError::Path(self.path.clone()));
        }
        if let Some(d) = &self.domain {
            let ok = !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(CookieConfigError::Domain(d.clone()));
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(CookieConfigError::NoneWithoutSecure);
        }
        Ok(())
    }

    /// The value of our cookie in the request, if any.
    ///
    /// With several cookies of our name (e.g. set for different paths) the
    /// first well-formed token wins; if none is well-formed the first value is
    /// returned so the Session layer sees a malformed cookie and clears it.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Option<String> {
        let mut first: Option<&str> = None;
        for header in headers.get_all(COOKIE) {
            // A non-UTF-8 Cookie header cannot hold our (ASCII) token.
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name.trim() != self.name {
                    continue;
                }
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                if value.len() == session_core::ID_HEX_LEN
                    && value
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Some(value.to_owned());
                }
                first.get_or_insert(value);
            }
        }
        first.map(str::to_owned)
    }

    /// The `Set-Cookie` header for an outcome; `None` for [`Outcome::Unchanged`].
    pub(crate) fn set_cookie(&self, outcome: &Outcome) -> Option<HeaderValue> {
        let (value, max_age) = match outcome {
            // Rounded up: a session with 0.4 s left must not get `Max-Age=0`,
            // which would delete the cookie.
            Outcome::SetCookie { token, max_age } => (
                token.expose(),
                max_age.as_secs() + u64::from(max_age.subsec_nanos() > 0),
            ),
            Outcome::RemoveCookie => (String::new(), 0),
            Outcome::Unchanged => return None,
        };
        let mut h = format!("{}={value}; Path={}", self.name, self.path);
        if let Some(d) = &self.domain {
            let _ = write!(h, "; Domain={d}");
        }
        let _ = write!(h, "; Max-Age={max_age}");
        if max_age == 0 {
            // For clients that ignore Max-Age.
            h.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        }
        h.push_str("; HttpOnly");
        if self.secure {
            h.push_str("; Secure");
        }
        let _ = write!(h, "; SameSite={}", self.same_site.as_str());
        // Every part was validated as visible ASCII at build time; a failure
        // here would be a bug, so drop the header rather than panic.
        match HeaderValue::from_str(&h) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "cannot build Set-Cookie header");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_core::session::SessionToken;

    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn reads_our_cookie_among_others() {
        let cfg = CookieConfig::default();
        let tok = "ab".repeat(32);
        assert_eq!(cfg.read(&headers(&[])), None);
        assert_eq!(cfg.read(&headers(&["a=1; b=2"])), None);
        assert_eq!(
            cfg.read(&headers(&[&format!("a=1; sid={tok}; b=2")])),
            Some(tok.clone())
        );
        assert_eq!(
            cfg.read(&headers(&["x=y", &format!("sid=\"{tok}\"")])),
            Some(tok.clone())
        );
        // A malformed duplicate does not hide a good one; alone it is passed on.
        assert_eq!(
            cfg.read(&headers(&[&format!("sid=junk; sid={tok}")])),
            Some(tok)
        );
        assert_eq!(cfg.read(&headers(&["sid=junk"])), Some("junk".into()));
        assert_eq!(cfg.read(&headers(&["sidx=1; xsid=2"])), None);
    }

    #[test]
    fn set_cookie_attributes() {
        let cfg = CookieConfig {
            domain: Some("example.com".into()),
            path: "/app".into(),
            ..CookieConfig::default()
        };
        let token = SessionToken::generate();
        let set = cfg
            .set_cookie(&Outcome::SetCookie {
                token: token.clone(),
                max_age: Duration::from_secs(7200),
            })
            .unwrap();
        assert_eq!(
            set.to_str().unwrap(),
            format!(
                "sid={}; Path=/app; Domain=example.com; Max-Age=7200; HttpOnly; Secure; SameSite=Lax",
                token.expose()
            )
        );
        let short = cfg
            .set_cookie(&Outcome::SetCookie {
                token,
                max_age: Duration::from_millis(400),
            })
            .unwrap();
        assert!(short.to_str().unwrap().contains("; Max-Age=1;"));
        let rm = cfg.set_cookie(&Outcome::RemoveCookie).unwrap();
        assert!(rm.to_str().unwrap().starts_with("sid=; Path=/app"));
        assert!(rm.to_str().unwrap().contains("Max-Age=0"));
        assert!(cfg.set_cookie(&Outcome::Unchanged).is_none());
    }

    #[test]
    fn validation() {
        let ok = CookieConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        for (cfg, what) in [
            (
                CookieConfig {
                    name: "a b".into(),
                    ..CookieConfig::default()
                },
                "name",
            ),
            (
                CookieConfig {
                    name: String::new(),
                    ..CookieConfig::default()
                },
                "empty name",
            ),
            (
                CookieConfig {
                    path: "app".into(),
                    ..CookieConfig::default()
                },
                "relative path",
            ),
            (
                CookieConfig {
                    path: "/a;b".into(),
                    ..CookieConfig::default()
                },
                "path with ;",
            ),
            (
                CookieConfig {
                    domain: Some("a b".into()),
                    ..CookieConfig::default()
                },
                "domain",
            ),
            (
                CookieConfig {
                    same_site: SameSite::None,
                    secure: false,
                    ..CookieConfig::default()
                },
                "None without Secure",
            ),
        ] {
            assert!(cfg.validate().is_err(), "{what} should be rejected");
        }
    }
}
