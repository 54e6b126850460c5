//! Session ids: 32 random bytes, written as exactly 64 lowercase hex characters.
//!
//! Parsing is strict (no uppercase, no padding, no other length), so an id that
//! reaches a store can be used as a file name or SQL key without escaping.

use std::fmt;
use std::str::FromStr;

/// Number of bytes in a [`SessionId`].
pub const ID_LEN: usize = 32;
/// Length of the text form of a [`SessionId`].
pub const ID_HEX_LEN: usize = 2 * ID_LEN;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A session's key in a store: 256 bits.
///
/// `Debug` and `Display` print only the first 8 hex characters followed by `…`,
/// so ids can be logged without leaking them. Use [`SessionId::to_hex`] (or
/// [`SessionId::encode_hex`]) for the full text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// Draws a fresh id from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics only if the OS random source is unavailable, which on supported
    /// platforms means the system is unusable for any cryptography.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_LEN];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut bytes).expect("OS random number generator failed");
        Self(bytes)
    }

    /// Wraps raw bytes (for instance a SHA-256 digest).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Parses raw bytes of any length; anything but exactly 32 bytes is an error.
    ///
    /// # Errors
    ///
    /// [`InvalidId`] when `bytes.len() != 32`.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, InvalidId> {
        <[u8; ID_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidId::Length(bytes.len()))
    }

    /// The full text form, without allocating.
    #[must_use]
    pub fn encode_hex(&self) -> [u8; ID_HEX_LEN] {
        let mut out = [0u8; ID_HEX_LEN];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        out
    }

    /// The full text form: 64 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.encode_hex().iter().map(|&b| char::from(b)).collect()
    }

    /// Parses the text form strictly.
    ///
    /// # Errors
    ///
    /// [`InvalidId`] for anything that is not exactly 64 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let s = s.as_bytes();
        if s.len() != ID_HEX_LEN {
            return Err(InvalidId::Length(s.len()));
        }
        let mut out = [0u8; ID_LEN];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = nibble(pair[0]).ok_or(InvalidId::Character(2 * i))?;
            let lo = nibble(pair[1]).ok_or(InvalidId::Character(2 * i + 1))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl FromStr for SessionId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&[u8]> for SessionId {
    type Error = InvalidId;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Self::try_from_slice(bytes)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.encode_hex();
        for &b in &hex[..8] {
            fmt::Write::write_char(f, char::from(b))?;
        }
        f.write_str("…")
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// Why a string or byte slice is not a [`SessionId`].
///
/// The offending input is never included, since it may be a secret or hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// Wrong length (64 hex characters or 32 bytes expected).
    #[error("invalid session id: wrong length {0}")]
    Length(usize),
    /// A character that is not `0-9` or `a-f` at this byte offset.
    #[error("invalid session id: character at offset {0} is not lowercase hex")]
    Character(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        for _ in 0..100 {
            let id = SessionId::generate();
            assert_eq!(SessionId::parse(&id.to_hex()), Ok(id));
            assert_eq!(id.to_hex().len(), 64);
        }
        let id = SessionId::from_bytes([0xab; 32]);
        assert_eq!(id.to_hex(), "ab".repeat(32));
    }

    #[test]
    fn rejects_everything_else() {
        let good = "0123456789abcdef".repeat(4);
        assert!(SessionId::parse(&good).is_ok());
        let upper = good.to_uppercase();
        let bad: Vec<String> = vec![
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            upper,
            format!("../{}", &good[3..]),
            format!("{}\0", &good[..63]),
            format!(" {}", &good[1..]),
            format!("{}\n", &good[..63]),
            format!("{}g", &good[..63]),
            format!("{}é", &good[..62]),
            "+".repeat(64),
        ];
        for s in bad {
            assert!(SessionId::parse(&s).is_err(), "accepted {s:?}");
        }
        assert_eq!(SessionId::parse("abc"), Err(InvalidId::Length(3)));
        assert_eq!(
            SessionId::parse(&format!("{}G", &good[..63])),
            Err(InvalidId::Character(63))
        );
    }

    #[test]
    fn logs_do_not_reveal_the_id() {
        let id = SessionId::generate();
        let hex = id.to_hex();
        let shown = format!("{id} {id:?}");
        assert!(!shown.contains(&hex));
        assert!(!shown.contains(&hex[..9]));
        assert!(shown.contains(&hex[..8]));
    }

    #[test]
    fn byte_slices() {
        assert!(SessionId::try_from(&[0u8; 31][..]).is_err());
        assert_eq!(
            SessionId::try_from(&[7u8; 32][..]),
            Ok(SessionId::from_bytes([7; 32]))
        );
    }

    #[test]
    fn generated_ids_differ() {
        let set: std::collections::HashSet<_> = (0..1000).map(|_| SessionId::generate()).collect();
        assert_eq!(set.len(), 1000);
    }
}
