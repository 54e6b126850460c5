//! The on-disk format of one session file, and a decoder that trusts nothing.
//!
//! A file is a fixed 72-byte header followed by the value. Every field is
//! validated before use; any mismatch is a [`CorruptFile`], never a panic.

use std::fmt;

use session_core::{ID_LEN, SessionId, Timestamp, Version};

/// First bytes of every session file. The non-ASCII first byte and the CR LF
/// catch files mangled by text-mode tools, as PNG's signature does.
pub(crate) const MAGIC: [u8; 8] = *b"\x89SESS\r\n\x1a";
/// The only format version this crate writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Size of the header in bytes.
pub(crate) const HEADER_LEN: usize = 72;
/// Largest value the format admits (and the largest limit the builder accepts).
pub const MAX_FORMAT_VALUE: usize = 256 << 20;

// Field offsets; the layout table is in the crate docs.
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 10;
const OFF_ID: usize = 12;
const OFF_EXPIRES: usize = 44;
const OFF_TOKEN: usize = 52;
const OFF_LEN: usize = 60;
const OFF_DATA_CRC: usize = 64;
const OFF_HEADER_CRC: usize = 68;

/// Why a session file failed validation. Kept as the `source()` of
/// [`StoreError::Corrupt`](session_core::StoreError::Corrupt).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptFile {
    /// Shorter than the header, or shorter than the header says.
    Truncated {
        /// Bytes found.
        found: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Longer than the header says.
    TrailingBytes {
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Does not start with the session-file signature.
    BadMagic,
    /// A format version this build does not know.
    UnknownFormat(u16),
    /// Reserved flag bits are set.
    UnknownFlags(u16),
    /// The header checksum does not match.
    HeaderChecksum,
    /// The value checksum does not match.
    DataChecksum,
    /// The declared value length exceeds [`MAX_FORMAT_VALUE`].
    Oversized(u64),
    /// The header names another session than the file name does.
    WrongId,
    /// The path holds a symlink, a directory or another non-file.
    NotAFile,
}

impl fmt::Display for CorruptFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { found, needed } => {
                write!(f, "session file truncated: {found} bytes, needs {needed}")
            }
            Self::TrailingBytes { found, expected } => {
                write!(f, "session file has {found} bytes, expected {expected}")
            }
            Self::BadMagic => f.write_str("not a session file (bad signature)"),
            Self::UnknownFormat(v) => write!(f, "unknown session file format version {v}"),
            Self::UnknownFlags(v) => write!(f, "unknown session file flags {v:#06x}"),
            Self::HeaderChecksum => f.write_str("session file header checksum mismatch"),
            Self::DataChecksum => f.write_str("session file value checksum mismatch"),
            Self::Oversized(n) => write!(f, "session file declares a {n}-byte value"),
            Self::WrongId => f.write_str("session file belongs to another id"),
            Self::NotAFile => f.write_str("session path is not a regular file"),
        }
    }
}

impl std::error::Error for CorruptFile {}

/// A validated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) id: SessionId,
    pub(crate) expires_at: Timestamp,
    pub(crate) version: Version,
    pub(crate) data_len: usize,
    pub(crate) data_crc: u32,
}

/// Serializes a record: header then value. The caller has checked the size.
pub(crate) fn encode(
    id: &SessionId,
    expires_at: Timestamp,
    version: Version,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&expires_at.as_millis().to_le_bytes());
    out.extend_from_slice(&version.as_raw().to_le_bytes());
    // The builder caps values at MAX_FORMAT_VALUE, far below u32::MAX.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    array(buf, at).map(u16::from_le_bytes)
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    array(buf, at).map(u32::from_le_bytes)
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    array(buf, at).map(u64::from_le_bytes)
}

/// Validates the header at the start of `buf` (which may hold more than the
/// header). Does not look at the value.
pub(crate) fn decode_header(buf: &[u8]) -> Result<Header, CorruptFile> {
    let truncated = CorruptFile::Truncated {
        found: buf.len(),
        needed: HEADER_LEN,
    };
    // Judge the signature on whatever prefix exists, so a short foreign file
    // is reported as foreign rather than as truncated.
    let sig_len = buf.len().min(MAGIC.len());
    if buf.get(..sig_len) != MAGIC.get(..sig_len) {
        return Err(CorruptFile::BadMagic);
    }
    let head = buf.get(..HEADER_LEN).ok_or_else(|| truncated.clone())?;
    let crc_region = head
        .get(..OFF_HEADER_CRC)
        .ok_or_else(|| truncated.clone())?;
    if u32_at(head, OFF_HEADER_CRC) != Some(crc32c::crc32c(crc_region)) {
        return Err(CorruptFile::HeaderChecksum);
    }
    // The checksum matched, so the fields below are as some writer wrote them;
    // still check each one, since a foreign writer may compute checksums too.
    let format = u16_at(head, OFF_VERSION).ok_or_else(|| truncated.clone())?;
    if format != FORMAT_VERSION {
        return Err(CorruptFile::UnknownFormat(format));
    }
    let flags = u16_at(head, OFF_FLAGS).ok_or_else(|| truncated.clone())?;
    if flags != 0 {
        return Err(CorruptFile::UnknownFlags(flags));
    }
    let id = array::<ID_LEN>(head, OFF_ID).ok_or_else(|| truncated.clone())?;
    let expires = u64_at(head, OFF_EXPIRES).ok_or_else(|| truncated.clone())?;
    let token = u64_at(head, OFF_TOKEN).ok_or_else(|| truncated.clone())?;
    let len = u32_at(head, OFF_LEN).ok_or_else(|| truncated.clone())?;
    let data_crc = u32_at(head, OFF_DATA_CRC).ok_or(truncated)?;
    let data_len = usize::try_from(len).map_err(|_| CorruptFile::Oversized(u64::from(len)))?;
    if data_len > MAX_FORMAT_VALUE {
        return Err(CorruptFile::Oversized(u64::from(len)));
    }
    Ok(Header {
        id: SessionId::from_bytes(id),
        expires_at: Timestamp::from_millis(i64::from_le_bytes(expires.to_le_bytes())),
        version: Version::from_raw(token),
        data_len,
        data_crc,
    })
}

/// Validates a whole file: header, exact length, value checksum, and (when
/// given) that it belongs to `expected_id`. Returns the header and the value.
pub(crate) fn decode<'b>(
    buf: &'b [u8],
    expected_id: Option<&SessionId>,
) -> Result<(Header, &'b [u8]), CorruptFile> {
    let header = decode_header(buf)?;
    if expected_id.is_some_and(|id| *id != header.id) {
        return Err(CorruptFile::WrongId);
    }
    // data_len <= MAX_FORMAT_VALUE, so this cannot overflow.
    let expected = HEADER_LEN + header.data_len;
    if buf.len() < expected {
        return Err(CorruptFile::Truncated {
            found: buf.len(),
            needed: expected,
        });
    }
    if buf.len() > expected {
        return Err(CorruptFile::TrailingBytes {
            found: buf.len(),
            expected,
        });
    }
    let data = buf.get(HEADER_LEN..).ok_or(CorruptFile::Truncated {
        found: buf.len(),
        needed: expected,
    })?;
    if crc32c::crc32c(data) != header.data_crc {
        return Err(CorruptFile::DataChecksum);
    }
    Ok((header, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(data: &[u8]) -> (SessionId, Vec<u8>) {
        let id = SessionId::from_bytes([0x5a; 32]);
        let bytes = encode(
            &id,
            Timestamp::from_millis(-7),
            Version::from_raw(u64::MAX),
            data,
        );
        (id, bytes)
    }

    #[test]
    fn round_trip() {
        let (id, bytes) = sample(b"hello");
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        let (h, data) = decode(&bytes, Some(&id)).unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(h.id, id);
        assert_eq!(h.expires_at, Timestamp::from_millis(-7));
        assert_eq!(h.version, Version::from_raw(u64::MAX));
        assert_eq!(decode_header(&bytes[..HEADER_LEN]).unwrap(), h);
    }

    #[test]
    fn each_defect_has_its_reason() {
        let (id, bytes) = sample(b"hello");
        assert!(matches!(
            decode(&bytes[..10], None),
            Err(CorruptFile::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1], None),
            Err(CorruptFile::Truncated { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, None),
            Err(CorruptFile::TrailingBytes { .. })
        ));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad, None), Err(CorruptFile::BadMagic));
        let mut bad = bytes.clone();
        bad[OFF_EXPIRES] ^= 1;
        assert_eq!(decode(&bad, None), Err(CorruptFile::HeaderChecksum));
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        assert_eq!(decode(&bad, None), Err(CorruptFile::DataChecksum));
        let other = SessionId::from_bytes([1; 32]);
        assert_eq!(decode(&bytes, Some(&other)), Err(CorruptFile::WrongId));
        assert!(decode(&bytes, Some(&id)).is_ok());
    }

    /// Rewrites a header field and fixes the header checksum, as a foreign
    /// writer that knows the format would.
    fn forge(bytes: &mut [u8], at: usize, field: &[u8]) {
        bytes[at..at + field.len()].copy_from_slice(field);
        let crc = crc32c::crc32c(&bytes[..OFF_HEADER_CRC]);
        bytes[OFF_HEADER_CRC..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn forged_headers_are_rejected() {
        let (_, bytes) = sample(b"x");
        let mut b = bytes.clone();
        forge(&mut b, OFF_VERSION, &2u16.to_le_bytes());
        assert_eq!(decode(&b, None), Err(CorruptFile::UnknownFormat(2)));
        let mut b = bytes.clone();
        forge(&mut b, OFF_FLAGS, &1u16.to_le_bytes());
        assert_eq!(decode(&b, None), Err(CorruptFile::UnknownFlags(1)));
        let mut b = bytes.clone();
        forge(&mut b, OFF_LEN, &u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&b, None),
            Err(CorruptFile::Oversized(u64::from(u32::MAX)))
        );
        let mut b = bytes;
        forge(&mut b, OFF_LEN, &2u32.to_le_bytes());
        assert!(matches!(
            decode(&b, None),
            Err(CorruptFile::Truncated { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Random bytes essentially never carry the signature and two valid
            // checksums, so they must be rejected.
            prop_assert!(decode(&bytes, None).is_err());
            let _ = decode_header(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_signature_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            prop_assert!(decode(&bytes, None).is_err());
        }

        #[test]
        fn any_single_mutation_is_detected(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            pos in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (id, mut bytes) = sample(&data);
            let i = pos.index(bytes.len());
            bytes[i] ^= flip;
            // CRC-32C detects every error burst of up to 32 bits, so any change
            // within one byte of one checksummed region is caught.
            prop_assert!(decode(&bytes, Some(&id)).is_err());
        }

        #[test]
        fn truncation_and_extension_are_detected(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
            extra in proptest::collection::vec(any::<u8>(), 1..20),
        ) {
            let (id, bytes) = sample(&data);
            let n = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..n], Some(&id)).is_err());
            let mut longer = bytes.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(decode(&longer, Some(&id)).is_err());
        }

        #[test]
        fn random_mutations_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..100),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let (id, original) = sample(&data);
            let mut bytes = original.clone();
            for (at, v) in edits {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            let n = cut.index(bytes.len() + 1);
            bytes.truncate(n);
            // Edits may write the same byte back; any real change must be caught
            // (two CRC-32Cs miss a random change with odds of about 2^-32).
            if bytes != original {
                prop_assert!(decode(&bytes, Some(&id)).is_err());
            }
        }
    }
}
