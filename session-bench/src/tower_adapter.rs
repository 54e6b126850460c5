//! A thin adapter that runs a `tower_sessions_core::SessionStore` (a peer from
//! crates.io) under our `session_core::SessionStore`, so the one workload drives
//! it. Shared with the peers workspace through `#[path]`.
//!
//! What a tower-sessions user does, nothing cleverer: the value travels as one
//! JSON string under key `"v"` of the record's map (values are ASCII, so the
//! bytes round-trip), `touch` and `update` are load + save (tower-sessions has
//! no touch and no compare-and-swap), and expiry maps onto the wall clock:
//! `expires_at - clock.now()` from `OffsetDateTime::now_utc()`.
//!
//! The macro expands once per `tower-sessions-core` version a peer needs.

/// Defines `pub mod $name` with `Adapter<S>` over `$core` (a
/// `tower-sessions-core` crate name).
macro_rules! tower_adapter {
    ($name:ident, $core:ident) => {
        /// Adapter for peers built on this `tower-sessions-core` version.
        // Each expansion serves different peers, so one constructor may go unused.
        #[allow(dead_code)]
        pub(crate) mod $name {
            use std::collections::HashMap;
            use std::fmt;
            use std::future::Future;
            use std::pin::Pin;
            use std::sync::Arc;

            use session_core::{
                Clock, ManualClock, Record, SessionId, SessionStore, StoreError, StoreResult,
                Timestamp, Version,
            };
            use $core::session::{Id, Record as TowerRecord};
            use $core::session_store::Error as TowerError;
            use $core::{ExpiredDeletion, SessionStore as TowerStore};

            type Purge<S> = Box<
                dyn for<'a> Fn(
                        &'a S,
                    )
                        -> Pin<Box<dyn Future<Output = Result<(), TowerError>> + Send + 'a>>
                    + Send
                    + Sync,
            >;

            /// Our trait over a tower-sessions store `S`.
            pub(crate) struct Adapter<S> {
                inner: Arc<S>,
                clock: ManualClock,
                purge: Option<Purge<S>>,
            }

            impl<S> fmt::Debug for Adapter<S> {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("Adapter")
                }
            }

            impl<S: TowerStore> Adapter<S> {
                /// A store without `delete_expired` (e.g. moka, which evicts by itself).
                pub(crate) fn new(inner: S, clock: ManualClock) -> Self {
                    Self {
                        inner: Arc::new(inner),
                        clock,
                        purge: None,
                    }
                }
            }

            impl<S: TowerStore + ExpiredDeletion> Adapter<S> {
                /// A store whose `ExpiredDeletion` serves `delete_expired`.
                pub(crate) fn with_expired_deletion(inner: S, clock: ManualClock) -> Self {
                    Self {
                        inner: Arc::new(inner),
                        clock,
                        purge: Some(Box::new(|s: &S| s.delete_expired())),
                    }
                }
            }

            fn to_id(id: &SessionId) -> Id {
                let mut b = [0u8; 16];
                b.copy_from_slice(&id.as_bytes()[..16]);
                Id(i128::from_le_bytes(b))
            }

            fn backend(e: TowerError) -> StoreError {
                StoreError::backend(e)
            }

            impl<S: TowerStore> Adapter<S> {
                fn wall_of(&self, t: Timestamp) -> time::OffsetDateTime {
                    let ms = t.as_millis().saturating_sub(self.clock.now().as_millis());
                    time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ms)
                }

                fn ours_of(&self, t: time::OffsetDateTime) -> Timestamp {
                    let left = t - time::OffsetDateTime::now_utc();
                    Timestamp::from_millis(
                        self.clock
                            .now()
                            .as_millis()
                            .saturating_add(left.whole_milliseconds() as i64),
                    )
                }

                fn record(
                    &self,
                    id: &SessionId,
                    data: &[u8],
                    expires_at: Timestamp,
                ) -> StoreResult<TowerRecord> {
                    let text = String::from_utf8(data.to_vec())
                        .map_err(|_| StoreError::config("peer adapter takes UTF-8 values"))?;
                    let mut map = HashMap::with_capacity(1);
                    map.insert("v".to_owned(), serde_json::Value::String(text));
                    Ok(TowerRecord {
                        id: to_id(id),
                        data: map,
                        expiry_date: self.wall_of(expires_at),
                    })
                }

                async fn load_tower(&self, id: &SessionId) -> StoreResult<Option<TowerRecord>> {
                    let rec = self.inner.load(&to_id(id)).await.map_err(backend)?;
                    // Some peers (the file store) return expired records.
                    Ok(rec.filter(|r| r.expiry_date > time::OffsetDateTime::now_utc()))
                }
            }

            #[session_core::async_trait]
            impl<S: TowerStore> SessionStore for Adapter<S> {
                fn clock(&self) -> &dyn Clock {
                    &self.clock
                }

                async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
                    Ok(self.load_tower(id).await?.map(|r| Record {
                        expires_at: self.ours_of(r.expiry_date),
                        data: r
                            .data
                            .get("v")
                            .and_then(serde_json::Value::as_str)
                            .map(|s| s.as_bytes().to_vec())
                            .unwrap_or_default(),
                        version: Version::from_raw(1),
                    }))
                }

                async fn create(
                    &self,
                    id: &SessionId,
                    data: &[u8],
                    expires_at: Timestamp,
                ) -> StoreResult<Version> {
                    let mut rec = self.record(id, data, expires_at)?;
                    self.inner.create(&mut rec).await.map_err(backend)?;
                    Ok(Version::from_raw(1))
                }

                async fn save(
                    &self,
                    id: &SessionId,
                    data: &[u8],
                    expires_at: Timestamp,
                    _expected: Option<Version>,
                ) -> StoreResult<Version> {
                    // No compare-and-swap in tower-sessions: last writer wins.
                    let rec = self.record(id, data, expires_at)?;
                    self.inner.save(&rec).await.map_err(backend)?;
                    Ok(Version::from_raw(1))
                }

                async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
                    // tower-sessions renews expiry by saving the whole record.
                    match self.load_tower(id).await? {
                        Some(mut rec) => {
                            rec.expiry_date = self.wall_of(expires_at);
                            self.inner.save(&rec).await.map_err(backend)?;
                            Ok(true)
                        }
                        None => Ok(false),
                    }
                }

                async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
                    self.inner.delete(&to_id(id)).await.map_err(backend)?;
                    Ok(true)
                }

                async fn delete_expired(&self) -> StoreResult<u64> {
                    match &self.purge {
                        Some(purge) => {
                            purge(&self.inner).await.map_err(backend)?;
                            Ok(0)
                        }
                        None => Err(StoreError::config("this peer has no delete_expired")),
                    }
                }

                async fn scan(
                    &self,
                    _after: Option<&SessionId>,
                    _limit: usize,
                ) -> StoreResult<Vec<(SessionId, Record)>> {
                    Err(StoreError::config(
                        "tower-sessions stores cannot list records",
                    ))
                }
            }
        }
    };
}
