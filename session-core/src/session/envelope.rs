//! The session envelope: what the Session layer keeps in a store record.
//!
//! See [`StoredSession`] for the byte layout. Decoding never panics and
//! never allocates more than the input's size.

use std::collections::BTreeMap;
use std::fmt;

use crate::time::Timestamp;

use super::codec::codec_name;

const MAGIC: &[u8; 4] = b"SESS";
/// The envelope format version this build writes (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;
/// Longest key, in bytes, the envelope can hold.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;
/// Longest bound client string (address, user agent) kept; longer ones are cut
/// at a character boundary before storing and before comparing.
pub const MAX_BIND_LEN: usize = 1024;

const FLAG_ADDRESS: u8 = 1;
const FLAG_AGENT: u8 = 2;

/// One encoded value and the codec that wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// The [`Codec::TAG`](super::Codec::TAG) of the codec that wrote `bytes`.
    pub codec: u8,
    /// The encoded value.
    pub bytes: Vec<u8>,
}

impl StoredValue {
    /// A readable rendering for inspection tools: JSON values as text, other
    /// codecs as hex (values may hold secrets; callers decide whether to show them).
    #[must_use]
    pub fn describe(&self) -> String {
        if self.codec == 2
            && let Ok(text) = std::str::from_utf8(&self.bytes)
        {
            return text.to_owned();
        }
        let hex: String = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", codec_name(self.codec))
    }
}

impl fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show codec and size only.
        write!(
            f,
            "StoredValue({}, {} bytes)",
            codec_name(self.codec),
            self.bytes.len()
        )
    }
}

/// A user entry: its value and, if set by `expire_key`, when it vanishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The value.
    pub value: StoredValue,
    /// The key is gone once `expires_at <= now` (the session lives on).
    pub expires_at: Option<Timestamp>,
}

/// A decoded session record: what [`StoredSession::decode`] returns for a
/// store record's bytes, and what `sessionctl show` prints.
///
/// Format version 1, all integers little endian, every length checked against
/// the bytes that remain (decoding never panics and never allocates more than
/// the input's size):
///
/// ```text
/// magic     4 bytes  "SESS"
/// version   u8       1
/// flags     u8       bit 0: address present, bit 1: user agent present (others 0)
/// created   i64      unix ms
/// [address  u16 len + UTF-8]      if flag bit 0
/// [agent    u16 len + UTF-8]      if flag bit 1
/// entries   u32 count, then per entry, keys strictly ascending:
///             key u16 len + UTF-8, codec u8, has_expiry u8 (0|1), [expires i64],
///             value u32 len + bytes
/// flash     u32 count, then per entry, keys strictly ascending:
///             key u16 len + UTF-8, codec u8, value u32 len + bytes
/// (no trailing bytes)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSession {
    /// Envelope format version the bytes were written in.
    pub format_version: u8,
    /// When the session was created (the absolute lifetime cap counts from here).
    pub created_at: Timestamp,
    /// The client address the session is bound to, if address binding was on.
    pub address: Option<String>,
    /// The user agent the session is bound to, if user-agent binding was on.
    pub user_agent: Option<String>,
    /// User data, by key.
    pub entries: BTreeMap<String, StoredEntry>,
    /// Flash data, by key.
    pub flash: BTreeMap<String, StoredValue>,
}

/// Why a record's bytes are not a valid session envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes do not start with the envelope magic.
    #[error("not a session envelope (bad magic)")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("unsupported session envelope version {0}")]
    UnsupportedVersion(u8),
    /// The bytes end before the structure does.
    #[error("session envelope truncated at offset {0}")]
    Truncated(usize),
    /// A structural rule is broken (flags, ordering, UTF-8, trailing bytes).
    #[error("malformed session envelope at offset {offset}: {what}")]
    Malformed {
        /// Byte offset where the problem was found.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl StoredSession {
    /// An empty session created at `created_at`.
    #[must_use]
    pub fn new(created_at: Timestamp) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            created_at,
            address: None,
            user_agent: None,
            entries: BTreeMap::new(),
            flash: BTreeMap::new(),
        }
    }

    /// Whether there is neither user data nor flash.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.flash.is_empty()
    }

    /// Drops entries whose per-key expiry has passed at `now`.
    pub fn drop_expired_keys(&mut self, now: Timestamp) {
        self.entries
            .retain(|_, e| e.expires_at.is_none_or(|t| !t.is_expired_at(now)));
    }

    /// Encodes in the current format version.
    ///
    /// Keys longer than [`MAX_KEY_LEN`] and bound strings longer than
    /// [`MAX_BIND_LEN`] never reach here: the Session layer rejects or cuts them.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload_hint());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        let mut flags = 0;
        if self.address.is_some() {
            flags |= FLAG_ADDRESS;
        }
        if self.user_agent.is_some() {
            flags |= FLAG_AGENT;
        }
        out.push(flags);
        out.extend_from_slice(&self.created_at.as_millis().to_le_bytes());
        for s in [&self.address, &self.user_agent].into_iter().flatten() {
            put_short(&mut out, truncate_utf8(s, MAX_BIND_LEN).as_bytes());
        }
        put_count(&mut out, self.entries.len());
        for (k, e) in &self.entries {
            put_short(&mut out, truncate_utf8(k, MAX_KEY_LEN).as_bytes());
            out.push(e.value.codec);
            match e.expires_at {
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.as_millis().to_le_bytes());
                }
                None => out.push(0),
            }
            put_long(&mut out, &e.value.bytes);
        }
        put_count(&mut out, self.flash.len());
        for (k, v) in &self.flash {
            put_short(&mut out, truncate_utf8(k, MAX_KEY_LEN).as_bytes());
            out.push(v.codec);
            put_long(&mut out, &v.bytes);
        }
        out
    }

    fn payload_hint(&self) -> usize {
        let e: usize = self
            .entries
            .iter()
            .map(|(k, e)| k.len() + e.value.bytes.len() + 16)
            .sum();
        let f: usize = self
            .flash
            .iter()
            .map(|(k, v)| k.len() + v.bytes.len() + 8)
            .sum();
        e + f
    }

    /// Decodes untrusted bytes (a store record's `data`).
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] for anything that is not a well-formed envelope of a
    /// version this build reads. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        if flags & !(FLAG_ADDRESS | FLAG_AGENT) != 0 {
            return Err(r.malformed("unknown flag bits"));
        }
        let created_at = Timestamp::from_millis(r.i64()?);
        let address = if flags & FLAG_ADDRESS != 0 {
            Some(r.short_str()?)
        } else {
            None
        };
        let user_agent = if flags & FLAG_AGENT != 0 {
            Some(r.short_str()?)
        } else {
            None
        };

        let mut entries = BTreeMap::new();
        let n = r.u32()?;
        for _ in 0..n {
            let key = r.short_str()?;
            let codec = r.u8()?;
            let expires_at = match r.u8()? {
                0 => None,
                1 => Some(Timestamp::from_millis(r.i64()?)),
                _ => return Err(r.malformed("expiry flag is not 0 or 1")),
            };
            let bytes = r.long_bytes()?;
            if entries
                .last_key_value()
                .is_some_and(|(last, _)| *last >= key)
            {
                return Err(r.malformed("entry keys not strictly ascending"));
            }
            let value = StoredValue { codec, bytes };
            entries.insert(key, StoredEntry { value, expires_at });
        }

        let mut flash = BTreeMap::new();
        let n = r.u32()?;
        for _ in 0..n {
            let key = r.short_str()?;
            let codec = r.u8()?;
            let bytes = r.long_bytes()?;
            if flash.last_key_value().is_some_and(|(last, _)| *last >= key) {
                return Err(r.malformed("flash keys not strictly ascending"));
            }
            flash.insert(key, StoredValue { codec, bytes });
        }
        if r.pos != bytes.len() {
            return Err(r.malformed("trailing bytes"));
        }
        Ok(Self {
            format_version: version,
            created_at,
            address,
            user_agent,
            entries,
            flash,
        })
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn put_short(out: &mut Vec<u8>, b: &[u8]) {
    // Callers truncate to u16::MAX first.
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b.get(..usize::from(len)).unwrap_or(b));
}

fn put_long(out: &mut Vec<u8>, b: &[u8]) {
    // The Session layer rejects values over 4 GiB before they get here.
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b.get(..len as usize).unwrap_or(b));
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(EnvelopeError::Truncated(self.pos))?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(EnvelopeError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let at = self.pos;
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| EnvelopeError::Truncated(at))
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, EnvelopeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn short_str(&mut self) -> Result<String, EnvelopeError> {
        let len = u16::from_le_bytes(self.array()?);
        let at = self.pos;
        let b = self.take(usize::from(len))?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| EnvelopeError::Malformed {
                offset: at,
                what: "string is not UTF-8",
            })
    }

    fn long_bytes(&mut self) -> Result<Vec<u8>, EnvelopeError> {
        let len = u32::from_le_bytes(self.array()?);
        Ok(self.take(len as usize)?.to_vec())
    }

    fn malformed(&self, what: &'static str) -> EnvelopeError {
        EnvelopeError::Malformed {
            offset: self.pos,
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredSession {
        let mut s = StoredSession::new(Timestamp::from_millis(1_700_000_000_000));
        s.address = Some("192.0.2.1".into());
        s.user_agent = Some("curl/8 é".into());
        s.entries.insert(
            "user".into(),
            StoredEntry {
                value: StoredValue {
                    codec: 1,
                    bytes: vec![0, 1, 255],
                },
                expires_at: Some(Timestamp::from_millis(-5)),
            },
        );
        s.entries.insert(
            "".into(),
            StoredEntry {
                value: StoredValue {
                    codec: 2,
                    bytes: vec![],
                },
                expires_at: None,
            },
        );
        s.flash.insert(
            "msg".into(),
            StoredValue {
                codec: 2,
                bytes: b"\"hi\"".to_vec(),
            },
        );
        s
    }

    #[test]
    fn round_trip() {
        for s in [StoredSession::new(Timestamp::EPOCH), sample()] {
            let bytes = s.encode();
            assert_eq!(StoredSession::decode(&bytes), Ok(s));
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_or_a_valid_value() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                StoredSession::decode(&bytes[..len]).is_err(),
                "prefix {len} accepted"
            );
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // Must not panic; if it decodes, it must re-encode to the same bytes.
                if let Ok(s) = StoredSession::decode(&b) {
                    assert_eq!(s.encode(), b);
                }
            }
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(StoredSession::decode(&extra).is_err());
    }

    #[test]
    fn hostile_lengths_and_versions() {
        let mut b = StoredSession::new(Timestamp::EPOCH).encode();
        b[4] = 2;
        assert_eq!(
            StoredSession::decode(&b),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert_eq!(
            StoredSession::decode(b"nope-nope-nope"),
            Err(EnvelopeError::BadMagic)
        );
        // Huge entry count with nothing behind it.
        let mut b = StoredSession::new(Timestamp::EPOCH).encode();
        let n = b.len();
        b[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            StoredSession::decode(&b),
            Err(EnvelopeError::Truncated(_))
        ));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
