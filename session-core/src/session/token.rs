//! Cookie tokens: 256 random bits the client holds; the store only ever sees
//! their SHA-256, so a dump of the store holds no usable token.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::id::{ID_LEN, InvalidId, SessionId};

/// The secret a client presents in its cookie: 32 bytes from the OS CSPRNG,
/// written as 64 lowercase hex characters.
///
/// The store key is [`SessionToken::session_id`] = SHA-256 of the 32 raw bytes.
/// `Debug` and `Display` never print the token; use [`SessionToken::expose`]
/// to put it in a `Set-Cookie` header.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; ID_LEN]);

impl SessionToken {
    /// A fresh token from the OS CSPRNG.
    ///
    /// # Panics
    ///
    /// Only if the OS random source is unavailable (as [`SessionId::generate`]).
    #[must_use]
    pub fn generate() -> Self {
        // SessionId::generate draws 32 bytes from the OS CSPRNG; reuse it
        // rather than a second getrandom call site.
        Self(*SessionId::generate().as_bytes())
    }

    /// Parses the text form strictly: exactly 64 lowercase hex characters.
    ///
    /// # Errors
    ///
    /// [`InvalidId`] for anything else; the input is never included in it.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        SessionId::parse(s).map(|id| Self(*id.as_bytes()))
    }

    /// The store key for this token: SHA-256 of its 32 raw bytes.
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        SessionId::from_bytes(Sha256::digest(self.0).into())
    }

    /// The full text form, for the cookie value. Treat it like a password.
    #[must_use]
    pub fn expose(&self) -> String {
        SessionId::from_bytes(self.0).to_hex()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Show the (harmless) store key prefix so logs can correlate, never the token.
        write!(f, "SessionToken(key {})", self.session_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hash() {
        let t = SessionToken::generate();
        let text = t.expose();
        assert_eq!(text.len(), 64);
        let back = SessionToken::parse(&text).ok();
        assert_eq!(back.as_ref(), Some(&t));
        assert_ne!(
            t.session_id().to_hex(),
            text,
            "the store key is not the token"
        );
        assert!(!format!("{t:?}").contains(&text[..16]));
    }

    #[test]
    fn known_digest() {
        // SHA-256 of 32 zero bytes.
        let t = SessionToken([0; 32]);
        assert_eq!(
            t.session_id().to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "zz", &"A".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(SessionToken::parse(bad).is_err());
        }
    }
}
