//! [`Session`]: one request's lazy view of one session, and the change log
//! that lets `finish` merge with concurrent requests instead of overwriting them.
//!
//! Invariant: the persisted result of a request is always
//! `changes.apply(base)`, where `base` is the latest record read from the
//! store. `view` only answers reads during the request. On a version
//! conflict `base` is re-read and the same changes are applied again, so
//! another request's changes to other keys survive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::id::SessionId;
use crate::record::Version;
use crate::store::YieldNow;
use crate::time::Timestamp;

use super::codec::Codec;
use super::envelope::{MAX_KEY_LEN, StoredEntry, StoredSession, StoredValue};
use super::error::{SessionError, SessionResult};
use super::manager::{ClientInfo, Shared};
use super::token::SessionToken;

/// Delete reason when the record is gone, expired or past its lifetime cap.
pub const REASON_EXPIRED: &str = "session expired";
/// Delete reason when address binding is on and the address changed.
pub const REASON_ADDRESS: &str = "address mismatch";
/// Delete reason when user-agent binding is on and the user agent changed.
pub const REASON_USER_AGENT: &str = "user agent mismatch";

/// How often `finish` draws a fresh token when `create` reports a collision.
const CREATE_ATTEMPTS: u32 = 8;

/// What the HTTP layer must do with the session cookie after the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Set the cookie to `token.expose()` with this max-age (a new session, a
    /// cycled id, or a renewed expiry).
    SetCookie {
        /// The cookie value.
        token: SessionToken,
        /// Time until the session expires.
        max_age: Duration,
    },
    /// Remove the cookie: the session was deleted, or the client's cookie named
    /// no live session.
    RemoveCookie,
    /// Leave the cookie alone.
    Unchanged,
}

type UpdateOp = Box<dyn FnMut(Option<&StoredValue>) -> SessionResult<StoredValue> + Send>;

enum KeyOp {
    Set(StoredValue),
    Remove,
    Update(UpdateOp),
}

#[derive(Default)]
struct KeyChanges {
    // Only the ops since the last `Set`/`Remove` matter: those two ignore history.
    ops: Vec<KeyOp>,
    expiry: Option<Timestamp>,
}

/// This request's own changes, re-applicable to any base record.
#[derive(Default)]
struct Changes {
    cleared: bool,
    keys: BTreeMap<String, KeyChanges>,
    flash_set: BTreeMap<String, StoredValue>,
    // The value each consumed flash key had when read: a concurrent request
    // that re-set the key meanwhile keeps its new value.
    flash_read: BTreeMap<String, StoredValue>,
    flash_keep: BTreeSet<String>,
}

impl Changes {
    fn apply(&mut self, base: &StoredSession, now: Timestamp) -> SessionResult<StoredSession> {
        let mut s = base.clone();
        s.drop_expired_keys(now);
        if self.cleared {
            s.entries.clear();
        }
        for (key, kc) in &mut self.keys {
            for op in &mut kc.ops {
                apply_op(&mut s, key, op)?;
            }
            if let (Some(t), Some(e)) = (kc.expiry, s.entries.get_mut(key)) {
                e.expires_at = Some(t);
            }
        }
        s.drop_expired_keys(now);
        for (key, read) in &self.flash_read {
            let consumed = !self.flash_keep.contains(key) && !self.flash_set.contains_key(key);
            if consumed && s.flash.get(key) == Some(read) {
                s.flash.remove(key);
            }
        }
        for (key, v) in &self.flash_set {
            s.flash.insert(key.clone(), v.clone());
        }
        Ok(s)
    }
}

fn apply_op(s: &mut StoredSession, key: &str, op: &mut KeyOp) -> SessionResult<()> {
    match op {
        KeyOp::Set(v) => set_value(s, key, v.clone(), None),
        KeyOp::Remove => {
            s.entries.remove(key);
        }
        KeyOp::Update(f) => {
            let v = f(s.entries.get(key).map(|e| &e.value))?;
            set_value(s, key, v, None);
        }
    }
    Ok(())
}

/// Sets a value, keeping the key's per-key expiry (as Catalyst does) unless
/// a pending one is given.
fn set_value(s: &mut StoredSession, key: &str, value: StoredValue, expiry: Option<Timestamp>) {
    match s.entries.get_mut(key) {
        Some(e) => {
            e.value = value;
            if expiry.is_some() {
                e.expires_at = expiry;
            }
        }
        None => {
            s.entries.insert(
                key.to_owned(),
                StoredEntry {
                    value,
                    expires_at: expiry,
                },
            );
        }
    }
}

struct Meta {
    token: SessionToken,
    id: SessionId,
    version: Version,
    expires_at: Timestamp,
}

struct Loaded {
    /// `None`: a new session, not in the store (yet).
    existing: Option<Meta>,
    /// The record as read (per-key-expired entries dropped), or a fresh empty one.
    base: StoredSession,
    /// `changes.apply(base)` without flash consumption: what reads see.
    view: StoredSession,
}

// One per request, inside the state mutex: boxing `Loaded` would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Phase {
    Unloaded,
    Loaded(Loaded),
    Finished,
}

#[derive(Clone)]
enum ClientToken {
    None,
    Invalid,
    Valid(SessionToken),
}

struct State {
    client_token: ClientToken,
    phase: Phase,
    changes: Changes,
    delete_reason: Option<String>,
    cycle: bool,
    clear_cookie: bool,
}

struct Inner<C> {
    shared: Arc<Shared<C>>,
    client: ClientInfo,
    state: Mutex<State>,
}

/// One request's session: lazy, typed, and safe to share across a handler.
///
/// Nothing reaches the store until a method that needs data runs; a request
/// that never touches the session costs zero store calls. Call
/// [`finish`](Self::finish) once at the end and apply its [`Outcome`] to the
/// response.
///
/// Cloning gives another handle to the same session (`Send + Sync`). Methods
/// never hold a lock across an `.await`; if two clones trigger the first load
/// at the same moment, the store may be read twice and the first result wins.
pub struct Session<C: Codec = super::codec::Bincode> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Session<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Codec> fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        let phase = match &st.phase {
            Phase::Unloaded => "unloaded",
            Phase::Loaded(l) if l.existing.is_some() => "loaded",
            Phase::Loaded(_) => "new",
            Phase::Finished => "finished",
        };
        f.debug_struct("Session")
            .field("phase", &phase)
            .field("delete_reason", &st.delete_reason)
            .finish_non_exhaustive()
    }
}

struct Fetched {
    loaded: Loaded,
    reason: Option<&'static str>,
    clear_cookie: bool,
}

impl<C: Codec> Session<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, cookie: Option<&str>, client: ClientInfo) -> Self {
        let client_token = match cookie {
            None => ClientToken::None,
            Some(text) => match SessionToken::parse(text) {
                Ok(t) => ClientToken::Valid(t),
                Err(e) => {
                    // The value itself is never logged: it is attacker-controlled.
                    tracing::debug!(error = %e, "ignoring malformed session cookie");
                    ClientToken::Invalid
                }
            },
        };
        Self {
            inner: Arc::new(Inner {
                shared,
                client,
                state: Mutex::new(State {
                    client_token,
                    phase: Phase::Unloaded,
                    changes: Changes::default(),
                    delete_reason: None,
                    cycle: false,
                    clear_cookie: false,
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock and no path leaves the state
        // half-written, so a poisoned lock still guards consistent data.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Timestamp {
        self.inner.shared.store.clock().now()
    }

    fn codec(&self) -> &C {
        &self.inner.shared.codec
    }

    /// Runs `f` on the loaded state; the caller has awaited `ensure_loaded`.
    fn with_loaded<R>(&self, f: impl FnOnce(&mut Loaded, &mut Changes) -> R) -> SessionResult<R> {
        let mut st = self.lock();
        let st = &mut *st;
        match &mut st.phase {
            Phase::Loaded(l) => Ok(f(l, &mut st.changes)),
            Phase::Finished => Err(SessionError::Finished),
            // ensure_loaded ran first; only a concurrent finish can get here,
            // and that sets Finished.
            Phase::Unloaded => Err(SessionError::Finished),
        }
    }

    fn fresh(&self, now: Timestamp) -> Loaded {
        let cfg = &self.inner.shared.config;
        let mut s = StoredSession::new(now);
        if cfg.bind_address {
            s.address.clone_from(&self.inner.client.address);
        }
        if cfg.bind_user_agent {
            s.user_agent.clone_from(&self.inner.client.user_agent);
        }
        Loaded {
            existing: None,
            base: s.clone(),
            view: s,
        }
    }

    async fn ensure_loaded(&self) -> SessionResult<()> {
        let token = {
            let st = self.lock();
            match st.phase {
                Phase::Finished => return Err(SessionError::Finished),
                Phase::Loaded(_) => return Ok(()),
                Phase::Unloaded => st.client_token.clone(),
            }
        };
        let fetched = self.fetch(token).await?;
        let mut st = self.lock();
        match st.phase {
            Phase::Unloaded => {
                st.phase = Phase::Loaded(fetched.loaded);
                if let Some(r) = fetched.reason {
                    st.delete_reason = Some(r.to_owned());
                }
                st.clear_cookie |= fetched.clear_cookie;
                Ok(())
            }
            Phase::Loaded(_) => Ok(()),
            Phase::Finished => Err(SessionError::Finished),
        }
    }

    async fn fetch(&self, token: ClientToken) -> SessionResult<Fetched> {
        let shared = &self.inner.shared;
        let now = self.now();
        let none = |reason, clear_cookie| Fetched {
            loaded: self.fresh(now),
            reason,
            clear_cookie,
        };
        let token = match token {
            ClientToken::None => return Ok(none(None, false)),
            ClientToken::Invalid => return Ok(none(None, true)),
            ClientToken::Valid(t) => t,
        };
        let id = token.session_id();
        let rec = match shared.store.load(&id).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(none(Some(REASON_EXPIRED), true)),
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!(key = %id, error = %e, "corrupt session record; treating as no session");
                return Ok(none(None, true));
            }
            Err(e) => return Err(e.into()),
        };
        let mut stored = match StoredSession::decode(&rec.data) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(key = %id, error = %e, "undecodable session record; treating as no session");
                return Ok(none(None, true));
            }
        };
        let cfg = &shared.config;
        let reason = if cfg
            .max_lifetime
            .is_some_and(|cap| stored.created_at.saturating_add(cap).is_expired_at(now))
        {
            Some(REASON_EXPIRED)
        } else if cfg.bind_address && stored.address != self.inner.client.address {
            Some(REASON_ADDRESS)
        } else if cfg.bind_user_agent && stored.user_agent != self.inner.client.user_agent {
            Some(REASON_USER_AGENT)
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::debug!(key = %id, reason, "deleting session");
            shared.store.delete(&id).await?;
            return Ok(none(Some(reason), true));
        }
        stored.drop_expired_keys(now);
        Ok(Fetched {
            loaded: Loaded {
                existing: Some(Meta {
                    token,
                    id,
                    version: rec.version,
                    expires_at: rec.expires_at,
                }),
                base: stored.clone(),
                view: stored,
            },
            reason: None,
            clear_cookie: false,
        })
    }

    fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> SessionResult<StoredValue> {
        if key.len() > MAX_KEY_LEN {
            return Err(SessionError::KeyTooLong(key.len()));
        }
        let bytes = self
            .codec()
            .encode(value)
            .map_err(|source| SessionError::Encode {
                key: key.to_owned(),
                source,
            })?;
        if u32::try_from(bytes.len()).is_err() {
            return Err(SessionError::Encode {
                key: key.to_owned(),
                source: "encoded value exceeds 4 GiB".into(),
            });
        }
        Ok(StoredValue {
            codec: C::TAG,
            bytes,
        })
    }

    /// Reads a value; `None` if the key is absent (or its per-key expiry passed).
    ///
    /// # Errors
    ///
    /// [`SessionError::Decode`] if the stored value is not a `T` (or was written
    /// by another codec); [`SessionError::Store`] if loading failed.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> SessionResult<Option<T>> {
        self.ensure_loaded().await?;
        let now = self.now();
        let value = self.with_loaded(|l, _| {
            l.view
                .entries
                .get(key)
                .filter(|e| e.expires_at.is_none_or(|t| !t.is_expired_at(now)))
                .map(|e| e.value.clone())
        })?;
        value
            .map(|v| decode_value(self.codec(), key, &v))
            .transpose()
    }

    /// The keys currently set (per-key-expired ones excluded), in order.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn keys(&self) -> SessionResult<Vec<String>> {
        self.ensure_loaded().await?;
        let now = self.now();
        self.with_loaded(|l, _| {
            l.view
                .entries
                .iter()
                .filter(|(_, e)| e.expires_at.is_none_or(|t| !t.is_expired_at(now)))
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    /// Sets a value. A per-key expiry set earlier with [`expire_key`](Self::expire_key) stays.
    ///
    /// # Errors
    ///
    /// [`SessionError::Encode`], [`SessionError::KeyTooLong`], or
    /// [`SessionError::Store`] if loading failed.
    pub async fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> SessionResult<()> {
        let v = self.encode(key, value)?;
        self.ensure_loaded().await?;
        self.with_loaded(|l, ch| {
            let kc = ch.keys.entry(key.to_owned()).or_default();
            set_value(&mut l.view, key, v.clone(), kc.expiry);
            kc.ops = vec![KeyOp::Set(v)];
        })
    }

    /// Removes a key; returns whether it was set.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn remove(&self, key: &str) -> SessionResult<bool> {
        self.ensure_loaded().await?;
        self.with_loaded(|l, ch| {
            let kc = ch.keys.entry(key.to_owned()).or_default();
            kc.ops = vec![KeyOp::Remove];
            kc.expiry = None;
            l.view.entries.remove(key).is_some()
        })
    }

    /// Removes every key (flash stays).
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn clear(&self) -> SessionResult<()> {
        self.ensure_loaded().await?;
        self.with_loaded(|l, ch| {
            l.view.entries.clear();
            ch.cleared = true;
            ch.keys.clear();
        })
    }

    /// Read-modify-write of one key that survives concurrent requests: `f`
    /// gets the current value (or `None`) and returns the new one, which is
    /// returned too.
    ///
    /// If another request changed the session before this one saves, `f` runs
    /// again on the value that request wrote, so increments from concurrent
    /// requests all count. `f` may therefore run several times; keep it pure.
    ///
    /// # Errors
    ///
    /// [`SessionError::Decode`] if the current value is not a `T`,
    /// [`SessionError::Encode`], or [`SessionError::Store`] if loading failed.
    pub async fn update_with<T, F>(&self, key: &str, mut f: F) -> SessionResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T + Send + 'static,
    {
        if key.len() > MAX_KEY_LEN {
            return Err(SessionError::KeyTooLong(key.len()));
        }
        self.ensure_loaded().await?;
        let codec = self.codec().clone();
        let owned_key = key.to_owned();
        let mut op: UpdateOp = Box::new(move |current| {
            let old = current
                .map(|v| decode_value::<C, T>(&codec, &owned_key, v))
                .transpose()?;
            let bytes = codec
                .encode(&f(old))
                .map_err(|source| SessionError::Encode {
                    key: owned_key.clone(),
                    source,
                })?;
            Ok(StoredValue {
                codec: C::TAG,
                bytes,
            })
        });
        // Run the closure outside the lock (it is user code), then record it.
        let current = self.with_loaded(|l, _| l.view.entries.get(key).map(|e| e.value.clone()))?;
        let new = op(current.as_ref())?;
        let result = decode_value(self.codec(), key, &new)?;
        self.with_loaded(|l, ch| {
            let kc = ch.keys.entry(key.to_owned()).or_default();
            set_value(&mut l.view, key, new, kc.expiry);
            kc.ops.push(KeyOp::Update(op));
        })?;
        Ok(result)
    }

    /// Makes `key` vanish `ttl` from now while the session lives on
    /// (Catalyst's `session_expire_key`). Applies to the key's current or
    /// later value in this request; [`remove`](Self::remove) clears it.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn expire_key(&self, key: &str, ttl: Duration) -> SessionResult<()> {
        self.ensure_loaded().await?;
        let at = self.now().saturating_add(ttl);
        self.with_loaded(|l, ch| {
            ch.keys.entry(key.to_owned()).or_default().expiry = Some(at);
            if let Some(e) = l.view.entries.get_mut(key) {
                e.expires_at = Some(at);
            }
        })
    }

    /// Sets a flash value: it survives until a later request reads it with
    /// [`flash_get`](Self::flash_get) (any number of requests that do not read
    /// it, e.g. redirects, leave it alone).
    ///
    /// # Errors
    ///
    /// [`SessionError::Encode`], [`SessionError::KeyTooLong`], or
    /// [`SessionError::Store`] if loading failed.
    pub async fn flash_insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> SessionResult<()> {
        let v = self.encode(key, value)?;
        self.ensure_loaded().await?;
        self.with_loaded(|l, ch| {
            l.view.flash.insert(key.to_owned(), v.clone());
            ch.flash_set.insert(key.to_owned(), v);
        })
    }

    /// Reads a flash value. Reading consumes it: it is gone after this request
    /// unless this request sets it again or calls [`keep_flash`](Self::keep_flash).
    /// Within the request it stays readable.
    ///
    /// # Errors
    ///
    /// [`SessionError::Decode`] if it is not a `T`; [`SessionError::Store`] if loading failed.
    pub async fn flash_get<T: DeserializeOwned>(&self, key: &str) -> SessionResult<Option<T>> {
        self.ensure_loaded().await?;
        let value = self.with_loaded(|l, ch| {
            let v = l.view.flash.get(key).cloned();
            if let Some(v) = &v
                && !ch.flash_set.contains_key(key)
            {
                ch.flash_read.insert(key.to_owned(), v.clone());
            }
            v
        })?;
        value
            .map(|v| decode_value(self.codec(), key, &v))
            .transpose()
    }

    /// Keeps these flash keys for the next request even if this one read them.
    pub fn keep_flash<I, S>(&self, keys: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut st = self.lock();
        st.changes
            .flash_keep
            .extend(keys.into_iter().map(Into::into));
    }

    /// Gives the session a new token and store key at [`finish`](Self::finish),
    /// keeping its data and deleting the old key. Call it on login so a token
    /// planted before login is worthless after it (session fixation).
    ///
    /// Changes other requests make to the old key after this request loaded it
    /// are not carried over.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn cycle_id(&self) -> SessionResult<()> {
        self.ensure_loaded().await?;
        let mut st = self.lock();
        if matches!(st.phase, Phase::Finished) {
            return Err(SessionError::Finished);
        }
        st.cycle = true;
        Ok(())
    }

    /// Deletes the session from the store now. The rest of the request sees an
    /// empty new session (written only if something is put in it) and
    /// [`delete_reason`](Self::delete_reason) returns `reason`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the delete failed.
    pub async fn delete(&self, reason: &str) -> SessionResult<()> {
        let id = {
            let st = self.lock();
            match (&st.phase, &st.client_token) {
                (Phase::Finished, _) => return Err(SessionError::Finished),
                (Phase::Loaded(l), _) => l.existing.as_ref().map(|m| m.id),
                (Phase::Unloaded, ClientToken::Valid(t)) => Some(t.session_id()),
                (Phase::Unloaded, _) => None,
            }
        };
        if let Some(id) = id {
            self.inner.shared.store.delete(&id).await?;
        }
        let fresh = self.fresh(self.now());
        let mut st = self.lock();
        if matches!(st.phase, Phase::Finished) {
            return Err(SessionError::Finished);
        }
        st.phase = Phase::Loaded(fresh);
        st.changes = Changes::default();
        st.cycle = false;
        st.delete_reason = Some(reason.to_owned());
        st.clear_cookie = true;
        Ok(())
    }

    /// Why the session was deleted during this request, if it was: the reason
    /// given to [`delete`](Self::delete), or [`REASON_EXPIRED`],
    /// [`REASON_ADDRESS`], [`REASON_USER_AGENT`] found on load. Loads the
    /// session to find out.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn delete_reason(&self) -> SessionResult<Option<String>> {
        self.ensure_loaded().await?;
        Ok(self.lock().delete_reason.clone())
    }

    /// Saves what changed and says what to do with the cookie. Call once per
    /// request; later calls (and other methods) return [`SessionError::Finished`].
    ///
    /// * untouched session: no store call, [`Outcome::Unchanged`];
    /// * new session: created only if it holds data or flash;
    /// * unchanged session: a `touch` if the expiry moves by at least
    ///   `renew_after`, else nothing;
    /// * changed session: `save(.., Some(version))`; on a conflict the record is
    ///   re-read and this request's changes re-applied, up to
    ///   `max_save_attempts` times.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] for store failures,
    /// [`SessionError::TooManyConflicts`], or errors re-running an
    /// [`update_with`](Self::update_with) closure.
    pub async fn finish(&self) -> SessionResult<Outcome> {
        let (phase, mut changes, cycle, clear_cookie) = {
            let mut st = self.lock();
            let phase = std::mem::replace(&mut st.phase, Phase::Finished);
            if matches!(phase, Phase::Finished) {
                return Err(SessionError::Finished);
            }
            (
                phase,
                std::mem::take(&mut st.changes),
                st.cycle,
                st.clear_cookie,
            )
        };
        let Phase::Loaded(loaded) = phase else {
            // Never touched: no store call at all.
            return Ok(Outcome::Unchanged);
        };
        let now = self.now();
        let store = &self.inner.shared.store;
        let Loaded {
            existing, mut base, ..
        } = loaded;
        let Some(mut meta) = existing else {
            let fin = changes.apply(&base, now)?;
            if fin.is_empty() {
                return Ok(if clear_cookie {
                    Outcome::RemoveCookie
                } else {
                    Outcome::Unchanged
                });
            }
            return self.create_new(&fin, now).await;
        };
        if cycle {
            let fin = changes.apply(&base, now)?;
            let outcome = if fin.is_empty() {
                Outcome::RemoveCookie
            } else {
                self.create_new(&fin, now).await?
            };
            store.delete(&meta.id).await?;
            return Ok(outcome);
        }
        let attempts = self.inner.shared.config.max_save_attempts;
        for attempt in 0..attempts {
            let fin = changes.apply(&base, now)?;
            let expires_at = self.expiry_for(&fin, now);
            if fin == base {
                let renew = self.inner.shared.config.renew_after;
                if expires_at > meta.expires_at
                    && expires_at >= meta.expires_at.saturating_add(renew)
                {
                    if store.touch(&meta.id, expires_at).await? {
                        return Ok(set_cookie(meta.token, expires_at, now));
                    }
                    tracing::debug!(key = %meta.id, "session vanished before renewal");
                }
                return Ok(Outcome::Unchanged);
            }
            match store
                .save(&meta.id, &fin.encode(), expires_at, Some(meta.version))
                .await
            {
                Ok(_) => return Ok(set_cookie(meta.token, expires_at, now)),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            // Another request wrote first: merge onto what it wrote.
            let rec = match store.load(&meta.id).await {
                Ok(Some(rec)) => rec,
                Ok(None) | Err(StoreError::Corrupt(_)) => {
                    // Deleted (logout) or cycled meanwhile: do not resurrect it.
                    tracing::debug!(key = %meta.id, "session vanished under a concurrent request; its changes are dropped");
                    return Ok(Outcome::Unchanged);
                }
                Err(e) => return Err(e.into()),
            };
            base = match StoredSession::decode(&rec.data) {
                Ok(mut s) => {
                    s.drop_expired_keys(now);
                    s
                }
                Err(e) => {
                    tracing::warn!(key = %meta.id, error = %e, "undecodable session record on merge; changes dropped");
                    return Ok(Outcome::Unchanged);
                }
            };
            meta.version = rec.version;
            meta.expires_at = rec.expires_at;
            for _ in 0..attempt.min(8) {
                YieldNow(false).await;
            }
        }
        Err(SessionError::TooManyConflicts(attempts))
    }

    fn expiry_for(&self, s: &StoredSession, now: Timestamp) -> Timestamp {
        let cfg = &self.inner.shared.config;
        let sliding = now.saturating_add(cfg.ttl);
        match cfg.max_lifetime {
            Some(cap) => sliding.min(s.created_at.saturating_add(cap)),
            None => sliding,
        }
    }

    async fn create_new(&self, fin: &StoredSession, now: Timestamp) -> SessionResult<Outcome> {
        let bytes = fin.encode();
        let expires_at = self.expiry_for(fin, now);
        for _ in 0..CREATE_ATTEMPTS {
            let token = SessionToken::generate();
            match self
                .inner
                .shared
                .store
                .create(&token.session_id(), &bytes, expires_at)
                .await
            {
                Ok(_) => return Ok(set_cookie(token, expires_at, now)),
                // Astronomically unlikely with 256 random bits; never overwrite.
                Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::busy("every freshly drawn session id already existed").into())
    }
}

fn set_cookie(token: SessionToken, expires_at: Timestamp, now: Timestamp) -> Outcome {
    Outcome::SetCookie {
        token,
        max_age: expires_at.duration_since(now),
    }
}

fn decode_value<C: Codec, T: DeserializeOwned>(
    codec: &C,
    key: &str,
    v: &StoredValue,
) -> SessionResult<T> {
    if v.codec != C::TAG && v.codec != 0 && C::TAG != 0 {
        return Err(SessionError::Decode {
            key: key.to_owned(),
            source: format!(
                "value was written by codec {} ({}), this session uses {}",
                v.codec,
                super::codec::codec_name(v.codec),
                C::TAG
            )
            .into(),
        });
    }
    codec
        .decode(&v.bytes)
        .map_err(|source| SessionError::Decode {
            key: key.to_owned(),
            source,
        })
}
