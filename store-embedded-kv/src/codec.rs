//! The on-disk byte layout of records and expiry-index keys.
//!
//! Everything read back is validated as untrusted input: a short or unknown
//! value is [`StoreError::Corrupt`] for that id, never a panic.

use session_core::{Record, SessionId, StoreError, StoreResult, Timestamp, Version};

/// First byte of every session value; bump when the layout changes.
const RECORD_FORMAT: u8 = 1;
/// `format (1) + expires_at (8) + version (8)`.
const HEADER_LEN: usize = 17;
/// `expires_at (8) + id (32)`.
pub(crate) const INDEX_KEY_LEN: usize = 8 + session_core::ID_LEN;

/// A session value as stored: the header fields and the data bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) expires_at: Timestamp,
    pub(crate) version: Version,
    pub(crate) data: Vec<u8>,
}

impl Stored {
    pub(crate) fn is_live(&self, now: Timestamp) -> bool {
        !self.expires_at.is_expired_at(now)
    }

    pub(crate) fn into_record(self) -> Record {
        Record {
            data: self.data,
            expires_at: self.expires_at,
            version: self.version,
        }
    }
}

/// `[format][expires_at i64 BE][version u64 BE][data]`.
pub(crate) fn encode_record(expires_at: Timestamp, version: Version, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&expires_at.as_millis().to_be_bytes());
    out.extend_from_slice(&version.as_raw().to_be_bytes());
    out.extend_from_slice(data);
    out
}

pub(crate) fn decode_record(bytes: &[u8]) -> StoreResult<Stored> {
    let Some((&format, rest)) = bytes.split_first() else {
        return Err(StoreError::corrupt("empty session value"));
    };
    if format != RECORD_FORMAT {
        return Err(StoreError::corrupt(format!(
            "unknown session value format {format}"
        )));
    }
    let (Some(exp), Some(ver)) = (rest.first_chunk::<8>(), rest.get(8..16)) else {
        return Err(StoreError::corrupt(format!(
            "session value of {} bytes is shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        )));
    };
    let ver: [u8; 8] = ver
        .try_into()
        .map_err(|_| StoreError::corrupt("bad version field"))?;
    Ok(Stored {
        expires_at: Timestamp::from_millis(i64::from_be_bytes(*exp)),
        version: Version::from_raw(u64::from_be_bytes(ver)),
        data: rest.get(16..).unwrap_or_default().to_vec(),
    })
}

/// Maps `i64` onto `u64` so that big-endian bytes sort in numeric order.
fn sortable(t: Timestamp) -> [u8; 8] {
    ((t.as_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// Expiry-index key `(expires_at, id)`: a range scan from the start up to
/// [`index_upper`]`(now)` visits exactly the expired records.
pub(crate) fn index_key(expires_at: Timestamp, id: &SessionId) -> [u8; INDEX_KEY_LEN] {
    let mut k = [0u8; INDEX_KEY_LEN];
    let (t, rest) = k.split_at_mut(8);
    t.copy_from_slice(&sortable(expires_at));
    rest.copy_from_slice(id.as_bytes());
    k
}

/// The largest index key with `expires_at <= now` (inclusive upper bound).
pub(crate) fn index_upper(now: Timestamp) -> [u8; INDEX_KEY_LEN] {
    index_key(now, &SessionId::from_bytes([0xff; session_core::ID_LEN]))
}

/// Splits an index key back into `(expires_at, id)`.
pub(crate) fn parse_index_key(key: &[u8]) -> StoreResult<(Timestamp, SessionId)> {
    let (Some(t), Some(id)) = (key.first_chunk::<8>(), key.get(8..)) else {
        return Err(StoreError::corrupt("expiry index key too short"));
    };
    let id = SessionId::try_from_slice(id)
        .map_err(|_| StoreError::corrupt("expiry index key has a malformed id"))?;
    let raw = u64::from_be_bytes(*t) ^ (1 << 63);
    Ok((Timestamp::from_millis(raw as i64), id))
}

/// The expiry index stores each record's data length, so `stats` can sum the
/// bytes of expired records without reading them.
pub(crate) fn encode_len(len: usize) -> [u8; 8] {
    (len as u64).to_be_bytes()
}

pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_be_bytes(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let v = Version::from_raw(0xdead_beef);
        let t = Timestamp::from_millis(-5);
        let enc = encode_record(t, v, b"abc");
        let dec = decode_record(&enc).map_err(|e| e.to_string());
        assert_eq!(
            dec,
            Ok(Stored {
                expires_at: t,
                version: v,
                data: b"abc".to_vec()
            })
        );
        for bad in [&[][..], &[1u8, 2, 3][..], &[9u8; 40][..], &enc[..16]] {
            assert!(matches!(decode_record(bad), Err(StoreError::Corrupt(_))));
        }
        assert!(decode_record(&enc[..17]).is_ok_and(|s| s.data.is_empty()));
    }

    #[test]
    fn index_keys_sort_by_time_then_id() {
        let a = SessionId::from_bytes([1; 32]);
        let b = SessionId::from_bytes([2; 32]);
        let times = [i64::MIN, -1, 0, 1, 1_767_225_600_000, i64::MAX];
        let mut keys: Vec<_> = times
            .iter()
            .flat_map(|&t| {
                [
                    index_key(Timestamp::from_millis(t), &a),
                    index_key(Timestamp::from_millis(t), &b),
                ]
            })
            .collect();
        let sorted = keys.clone();
        keys.sort_unstable();
        assert_eq!(keys, sorted);
        for t in times {
            let ts = Timestamp::from_millis(t);
            assert!(index_key(ts, &b) <= index_upper(ts));
            assert!(
                index_upper(ts)
                    < index_key(ts.saturating_add(std::time::Duration::from_millis(1)), &a)
                    || t == i64::MAX
            );
            let parsed = parse_index_key(&index_key(ts, &a)).map_err(|e| e.to_string());
            assert_eq!(parsed, Ok((ts, a)));
        }
        assert!(parse_index_key(&[0; 39]).is_err());
    }
}
