//! How typed session values become bytes: [`Bincode`] by default, [`Json`]
//! with the `json` feature, or any [`Codec`] of the user's.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::BoxError;

/// Turns session values into bytes and back.
///
/// Every stored value carries its codec's [`TAG`](Codec::TAG), so a value
/// written by one codec is never silently misread by another (a typed error
/// instead). Tags `1..=127` are reserved for this crate; pick `128..=255` for
/// your own codec, or `0` to skip the check.
///
/// `decode` sees bytes from the store: it must return an error, never panic,
/// on any input.
pub trait Codec: Clone + Send + Sync + fmt::Debug + 'static {
    /// Written next to every value this codec encodes.
    const TAG: u8;

    /// Encodes a value.
    ///
    /// # Errors
    ///
    /// When the value cannot be represented in this format.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError>;

    /// Decodes a value.
    ///
    /// # Errors
    ///
    /// When `bytes` is not a valid encoding of a `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError>;
}

/// Largest allocation a decoded value may claim; bounds what a hostile length
/// prefix can make the decoder reserve.
const DECODE_LIMIT: usize = 64 << 20;

/// The default codec: bincode 2 (standard config: little endian, varint), through serde.
///
/// Compact and fast. Like every non-self-describing format it cannot decode
/// types that need `deserialize_any` (`serde_json::Value`, untagged enums,
/// `#[serde(flatten)]`); use `Json` (feature `json`) for those.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl Codec for Bincode {
    const TAG: u8 = 1;

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(bincode::serde::encode_to_vec(
            value,
            bincode::config::standard(),
        )?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
        let (value, used) = bincode::serde::decode_from_slice(bytes, config)?;
        if used != bytes.len() {
            return Err(format!(
                "{} trailing bytes after value",
                bytes.len().saturating_sub(used)
            )
            .into());
        }
        Ok(value)
    }
}

/// JSON through `serde_json` (feature `json`): larger, but self-describing and
/// readable in `sessionctl show`.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const TAG: u8 = 2;

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// A human name for a codec tag, for inspection tools.
#[must_use]
pub fn codec_name(tag: u8) -> &'static str {
    match tag {
        0 => "unspecified",
        1 => "bincode",
        2 => "json",
        128..=255 => "user",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bincode_round_trip_and_garbage() {
        let c = Bincode;
        let bytes = c.encode(&(7u32, "x".to_string(), vec![1u8, 2])).ok();
        let back: Option<(u32, String, Vec<u8>)> = bytes.and_then(|b| c.decode(&b).ok());
        assert_eq!(back, Some((7, "x".into(), vec![1, 2])));
        // A hostile length prefix must not allocate or panic.
        let hostile = [0xfcu8, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(c.decode::<Vec<u64>>(&hostile).is_err());
        assert!(c.decode::<String>(&[]).is_err());
        assert!(
            c.decode::<u8>(&[1, 2]).is_err(),
            "trailing bytes are an error"
        );
    }
}
