//! Any of our stores as a [`tower_sessions::SessionStore`] (feature `tower-sessions`).
//!
//! For apps that already use tower-sessions' `SessionManagerLayer` and only
//! want a backend from this project.
//!
//! See [`TowerSessionsStore`] for how records are mapped.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use session_core::{SessionId, SessionStore, StoreError, Timestamp};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, Error as TowerError, ExpiredDeletion};

/// How many fresh ids `create` draws before giving up (a collision of 128
/// random bits is astronomically unlikely; a loop here means a broken RNG).
const CREATE_ATTEMPTS: u32 = 8;

/// One of our stores behind tower-sessions' [`SessionStore`](tower_sessions::SessionStore)
/// and [`ExpiredDeletion`] traits.
///
/// # Mapping
///
/// * **Key.** A tower-sessions [`Id`] is an `i128` (128 random bits) while our
///   [`SessionId`] is 32 bytes. The store key is SHA-256 of the id's 16
///   little-endian bytes (the bytes tower-sessions base64-encodes into the
///   cookie), so, as with our own Session layer, a copy of the store holds no
///   usable cookie value. The id itself is not stored.
/// * **Value.** JSON (`serde_json`, which tower-sessions already uses for its
///   values): `{"data": {…}, "expiry_ns": <unix nanoseconds>}`. The record's
///   `expires_at` is `expiry_date` rounded down to milliseconds; the exact
///   expiry travels in the value so a load returns what was saved.
/// * **Create.** Our `create` refuses a live id (`AlreadyExists`); the adapter
///   then draws a new [`Id`] and tries again, as tower-sessions asks of stores.
/// * **Errors.** tower-sessions' error type holds strings only; the store
///   error's text (with its causes) goes into `Backend`, a record that does
///   not decode into `Decode`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use session_axum::TowerSessionsStore;
/// use tower_sessions::SessionManagerLayer;
///
/// let store = TowerSessionsStore::new(Arc::new(session_core::MemoryStore::new()));
/// let layer = SessionManagerLayer::new(store);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TowerSessionsStore {
    store: Arc<dyn SessionStore>,
}

impl fmt::Debug for TowerSessionsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessionsStore").finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct StoredRef<'a> {
    data: &'a HashMap<String, serde_json::Value>,
    expiry_ns: i128,
}

#[derive(Deserialize)]
struct Stored {
    data: HashMap<String, serde_json::Value>,
    expiry_ns: i128,
}

impl TowerSessionsStore {
    /// Wraps a store.
    #[must_use]
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    /// The wrapped store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The store key of a tower-sessions id: SHA-256 of its 16 little-endian bytes.
    #[must_use]
    pub fn key_for(id: &Id) -> SessionId {
        SessionId::from_bytes(Sha256::digest(id.0.to_le_bytes()).into())
    }
}

fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    serde_json::to_vec(&StoredRef {
        data: &record.data,
        expiry_ns: record.expiry_date.unix_timestamp_nanos(),
    })
    .map_err(|e| TowerError::Encode(e.to_string()))
}

fn expires_at(record: &Record) -> Timestamp {
    let ms = record
        .expiry_date
        .unix_timestamp_nanos()
        .div_euclid(1_000_000);
    Timestamp::from_millis(i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }))
}

fn backend(e: StoreError) -> TowerError {
    match e {
        StoreError::Corrupt(_) => TowerError::Decode(full_message(&e)),
        _ => TowerError::Backend(full_message(&e)),
    }
}

/// The error and its causes on one line (tower-sessions keeps only a string).
fn full_message(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

#[session_core::async_trait]
impl tower_sessions::SessionStore for TowerSessionsStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let bytes = encode(record)?;
        let exp = expires_at(record);
        for _ in 0..CREATE_ATTEMPTS {
            match self
                .store
                .create(&Self::key_for(&record.id), &bytes, exp)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::AlreadyExists) => {
                    tracing::warn!("tower-sessions id collision; drawing a new id");
                    record.id = Id::default();
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(TowerError::Backend(format!(
            "{CREATE_ATTEMPTS} freshly drawn session ids all existed already"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let bytes = encode(record)?;
        self.store
            .save(&Self::key_for(&record.id), &bytes, expires_at(record), None)
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(rec) = self.store.load(&Self::key_for(id)).await.map_err(backend)? else {
            return Ok(None);
        };
        let stored: Stored =
            serde_json::from_slice(&rec.data).map_err(|e| TowerError::Decode(e.to_string()))?;
        let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(stored.expiry_ns)
            .map_err(|e| TowerError::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data: stored.data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .delete(&Self::key_for(id))
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

#[session_core::async_trait]
impl ExpiredDeletion for TowerSessionsStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let n = self.store.delete_expired().await.map_err(backend)?;
        tracing::debug!(deleted = n, "deleted expired sessions");
        Ok(())
    }
}
