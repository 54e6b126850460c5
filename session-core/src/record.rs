//! What a store keeps per id: opaque bytes, an expiry and a version token.

use std::fmt;

use crate::time::Timestamp;

/// An opaque write token used for compare-and-swap.
///
/// Every successful write of an id yields a token different from every earlier
/// token of that id, including across delete and re-create, so a stale token can
/// never match again (no ABA). Stores choose how: a store-wide counter, or 64
/// random bits ([`Version::random`]). Callers only compare tokens for equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(u64);

impl Version {
    /// Wraps a raw token, as a store reads it back from its storage.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw token, as a store writes it to its storage.
    #[must_use]
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// 64 bits from the OS CSPRNG, never zero and never equal to `previous`.
    ///
    /// For stores without a shared counter (several processes, several hosts):
    /// the chance that a token repeats within one id's history is about
    /// `writes² / 2⁶⁵`.
    #[must_use]
    pub fn random(previous: Option<Version>) -> Self {
        loop {
            let mut b = [0u8; 8];
            #[allow(clippy::expect_used)]
            getrandom::fill(&mut b).expect("OS random number generator failed");
            let v = u64::from_le_bytes(b);
            if v != 0 && Some(Self(v)) != previous {
                return Self(v);
            }
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:016x})", self.0)
    }
}

/// A stored session as a store returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session's bytes, exactly as written.
    pub data: Vec<u8>,
    /// The record is expired when `expires_at <= now`.
    pub expires_at: Timestamp,
    /// The token of the write that produced `data`.
    pub version: Version,
}

impl Record {
    /// Whether the record is expired at `now`.
    #[must_use]
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_expired_at(now)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Session data may hold secrets: show only its size.
        f.debug_struct("Record")
            .field("data_len", &self.data.len())
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish()
    }
}
