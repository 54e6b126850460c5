//! The Session layer over `MemoryStore` with a `ManualClock`: one test per
//! semantic of issue 7, plus concurrency merges and a scripted login flow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use session_core::session::{
    Bincode, ClientInfo, Codec, Outcome, REASON_ADDRESS, REASON_EXPIRED, REASON_USER_AGENT,
    Session, SessionConfig, SessionError, SessionManager, SessionToken, StoredSession,
};
use session_core::{
    BoxError, Clock, ManualClock, MemoryStore, Record, SessionId, SessionStore, StoreError,
    StoreResult, Timestamp, Version,
};

const T0: i64 = 1_700_000_000_000;

/// Counts every store call; optionally yields before each, so concurrent
/// requests interleave at every store operation.
#[derive(Debug)]
struct CountingStore {
    inner: MemoryStore,
    calls: [AtomicU64; 5],
    yield_each: bool,
    /// This many upcoming `create` calls report `AlreadyExists` (an id collision).
    collide_creates: AtomicU64,
}

const LOAD: usize = 0;
const CREATE: usize = 1;
const SAVE: usize = 2;
const TOUCH: usize = 3;
const DELETE: usize = 4;

impl CountingStore {
    fn new(clock: &ManualClock, yield_each: bool) -> Self {
        Self {
            inner: MemoryStore::builder().clock(clock.clone()).build(),
            calls: Default::default(),
            yield_each,
            collide_creates: AtomicU64::new(0),
        }
    }

    async fn hit(&self, which: usize) {
        self.calls[which].fetch_add(1, Ordering::SeqCst);
        if self.yield_each {
            tokio::task::yield_now().await;
        }
    }

    fn count(&self, which: usize) -> u64 {
        self.calls[which].load(Ordering::SeqCst)
    }

    fn total(&self) -> u64 {
        (0..5).map(|i| self.count(i)).sum()
    }
}

#[session_core::async_trait]
impl SessionStore for CountingStore {
    fn clock(&self) -> &dyn Clock {
        self.inner.clock()
    }
    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        self.hit(LOAD).await;
        self.inner.load(id).await
    }
    async fn create(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<Version> {
        self.hit(CREATE).await;
        let collide = self
            .collide_creates
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if collide {
            return Err(StoreError::AlreadyExists);
        }
        self.inner.create(id, data, exp).await
    }
    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        exp: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        self.hit(SAVE).await;
        self.inner.save(id, data, exp, expected).await
    }
    async fn touch(&self, id: &SessionId, exp: Timestamp) -> StoreResult<bool> {
        self.hit(TOUCH).await;
        self.inner.touch(id, exp).await
    }
    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        self.hit(DELETE).await;
        self.inner.delete(id).await
    }
    async fn delete_expired(&self) -> StoreResult<u64> {
        self.inner.delete_expired().await
    }
    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        self.inner.scan(after, limit).await
    }
}

struct Env {
    clock: ManualClock,
    store: Arc<CountingStore>,
    sessions: SessionManager,
}

impl Env {
    fn with(config: SessionConfig, yield_each: bool) -> Self {
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let store = Arc::new(CountingStore::new(&clock, yield_each));
        let sessions = SessionManager::new(store.clone(), config);
        Self {
            clock,
            store,
            sessions,
        }
    }

    fn new() -> Self {
        Self::with(SessionConfig::default(), false)
    }

    fn req(&self, token: Option<&str>) -> Session {
        self.sessions.load(token, ClientInfo::new())
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A session holding `user = "ada"`; returns its cookie token.
    async fn logged_in(&self) -> String {
        let s = self.req(None);
        s.insert("user", "ada").await.unwrap();
        token_of(&s.finish().await.unwrap())
    }

    async fn live_records(&self) -> Vec<(SessionId, Record)> {
        self.store.scan(None, 1000).await.unwrap()
    }
}

fn token_of(o: &Outcome) -> String {
    match o {
        Outcome::SetCookie { token, .. } => token.expose(),
        other => panic!("expected SetCookie, got {other:?}"),
    }
}

fn max_age_of(o: &Outcome) -> Duration {
    match o {
        Outcome::SetCookie { max_age, .. } => *max_age,
        other => panic!("expected SetCookie, got {other:?}"),
    }
}

fn id_of(token: &str) -> SessionId {
    SessionToken::parse(token).unwrap().session_id()
}

#[tokio::test]
async fn untouched_sessions_cost_zero_store_calls() {
    let env = Env::new();
    let token = env.logged_in().await;
    let before = env.store.total();
    for cookie in [None, Some(token.as_str()), Some("not-a-token"), Some("")] {
        let s = env.req(cookie);
        s.keep_flash(["x"]);
        assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);
    }
    assert_eq!(env.store.total(), before);
}

#[tokio::test]
async fn an_empty_new_session_is_never_written() {
    let env = Env::new();
    let s = env.req(None);
    assert_eq!(s.get::<String>("user").await.unwrap(), None);
    assert_eq!(s.flash_get::<String>("msg").await.unwrap(), None);
    assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);
    // Inserting then removing leaves it empty too.
    let s = env.req(None);
    s.insert("a", &1u8).await.unwrap();
    assert!(s.remove("a").await.unwrap());
    assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);
    assert_eq!(env.store.total(), 0, "no token: not even a load");
}

#[tokio::test]
async fn new_sessions_get_a_random_token_and_a_hashed_store_key() {
    let env = Env::new();
    let s = env.req(None);
    s.insert("user", "ada").await.unwrap();
    let out = s.finish().await.unwrap();
    assert_eq!(max_age_of(&out), Duration::from_secs(7200));
    let token = token_of(&out);
    assert_eq!(env.store.count(CREATE), 1);
    let records = env.live_records().await;
    assert_eq!(records.len(), 1);
    let (key, rec) = &records[0];
    assert_eq!(*key, id_of(&token), "store key = SHA-256(token)");
    assert_ne!(key.to_hex(), token, "the store never sees the token");
    assert_eq!(rec.expires_at, Timestamp::from_millis(T0 + 7_200_000));
    let other = env.logged_in().await;
    assert_ne!(other, token);
}

#[tokio::test]
async fn invalid_or_unknown_tokens_are_no_session() {
    let env = Env::new();
    env.logged_in().await;
    for bad in ["../../etc/passwd", "ABCDEF", &"A".repeat(64), "\0"] {
        let s = env.req(Some(bad));
        assert_eq!(s.get::<String>("user").await.unwrap(), None);
        assert_eq!(s.delete_reason().await.unwrap(), None);
        assert_eq!(s.finish().await.unwrap(), Outcome::RemoveCookie);
    }
    assert_eq!(
        env.store.count(LOAD),
        0,
        "malformed tokens never reach the store"
    );
    let unknown = SessionToken::generate().expose();
    let s = env.req(Some(&unknown));
    assert_eq!(s.get::<String>("user").await.unwrap(), None);
    assert_eq!(
        s.delete_reason().await.unwrap().as_deref(),
        Some(REASON_EXPIRED)
    );
    // Writing into it starts a new session under a new token.
    s.insert("cart", &3u32).await.unwrap();
    let fresh = token_of(&s.finish().await.unwrap());
    assert_ne!(fresh, unknown);
}

#[tokio::test]
async fn reads_within_the_threshold_write_nothing_then_renewal_is_a_touch() {
    let env = Env::new();
    let token = env.logged_in().await;
    let version = env
        .store
        .load(&id_of(&token))
        .await
        .unwrap()
        .unwrap()
        .version;
    let writes = || env.store.count(SAVE) + env.store.count(TOUCH) + env.store.count(CREATE);
    let w0 = writes();

    env.advance(30);
    let s = env.req(Some(&token));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);
    assert_eq!(writes(), w0, "inside renew_after: no write at all");

    env.advance(31);
    let s = env.req(Some(&token));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    let out = s.finish().await.unwrap();
    assert_eq!(token_of(&out), token, "same cookie, refreshed max-age");
    assert_eq!(max_age_of(&out), Duration::from_secs(7200));
    assert_eq!(env.store.count(TOUCH), 1);
    assert_eq!(
        env.store.count(SAVE),
        0,
        "expiry-only change is a touch, not a rewrite"
    );
    let rec = env.store.load(&id_of(&token)).await.unwrap().unwrap();
    assert_eq!(rec.version, version);
    assert_eq!(
        rec.expires_at,
        Timestamp::from_millis(T0 + 61_000 + 7_200_000)
    );

    // Writing the value it already has is no change either.
    let s = env.req(Some(&token));
    s.insert("user", "ada").await.unwrap();
    assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);
    assert_eq!(env.store.count(SAVE), 0);
}

#[tokio::test]
async fn renew_after_zero_touches_on_every_access() {
    let cfg = SessionConfig::builder()
        .renew_after(Duration::ZERO)
        .build()
        .unwrap();
    let env = Env::with(cfg, false);
    let token = env.logged_in().await;
    for i in 1..=3 {
        env.clock.advance(Duration::from_millis(1));
        let s = env.req(Some(&token));
        s.get::<String>("user").await.unwrap();
        assert!(matches!(
            s.finish().await.unwrap(),
            Outcome::SetCookie { .. }
        ));
        assert_eq!(env.store.count(TOUCH), i);
    }
}

#[tokio::test]
async fn idle_sessions_expire_and_active_ones_slide() {
    let env = Env::new();
    let active = env.logged_in().await;
    let idle = env.logged_in().await;
    for _ in 0..5 {
        env.advance(3600);
        let s = env.req(Some(&active));
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
        let _ = s.finish().await.unwrap();
    }
    let s = env.req(Some(&idle));
    assert_eq!(s.get::<String>("user").await.unwrap(), None);
    assert_eq!(
        s.delete_reason().await.unwrap().as_deref(),
        Some(REASON_EXPIRED)
    );
    assert_eq!(s.finish().await.unwrap(), Outcome::RemoveCookie);
}

#[tokio::test]
async fn the_absolute_cap_ends_even_active_sessions() {
    let cfg = SessionConfig::builder()
        .max_lifetime(Some(Duration::from_secs(3 * 3600)))
        .build()
        .unwrap();
    let env = Env::with(cfg, false);
    let token = env.logged_in().await;
    env.advance(3600);
    let s = env.req(Some(&token));
    s.get::<String>("user").await.unwrap();
    assert_eq!(
        max_age_of(&s.finish().await.unwrap()),
        Duration::from_secs(7200)
    );
    env.advance(3600);
    let s = env.req(Some(&token));
    s.insert("n", &1u8).await.unwrap();
    // Sliding would give 2 h; the cap leaves 1 h.
    assert_eq!(
        max_age_of(&s.finish().await.unwrap()),
        Duration::from_secs(3600)
    );
    env.advance(3599);
    let s = env.req(Some(&token));
    assert_eq!(s.get::<u8>("n").await.unwrap(), Some(1));
    assert_eq!(
        s.finish().await.unwrap(),
        Outcome::Unchanged,
        "no renewal past the cap"
    );
    env.advance(1);
    let s = env.req(Some(&token));
    assert_eq!(s.get::<u8>("n").await.unwrap(), None);
    assert_eq!(
        s.delete_reason().await.unwrap().as_deref(),
        Some(REASON_EXPIRED)
    );
}

#[tokio::test]
async fn per_key_expiry_removes_the_key_not_the_session() {
    let env = Env::new();
    let s = env.req(None);
    s.expire_key("otp", Duration::from_secs(60)).await.unwrap();
    s.insert("otp", &123_456u32).await.unwrap();
    s.insert("user", "ada").await.unwrap();
    let token = token_of(&s.finish().await.unwrap());

    env.advance(59);
    let s = env.req(Some(&token));
    assert_eq!(s.get::<u32>("otp").await.unwrap(), Some(123_456));
    // Re-setting the value keeps the key's expiry (Catalyst semantics).
    s.insert("otp", &654_321u32).await.unwrap();
    let _ = s.finish().await.unwrap();

    env.advance(1);
    let s = env.req(Some(&token));
    assert_eq!(s.get::<u32>("otp").await.unwrap(), None);
    assert_eq!(s.keys().await.unwrap(), vec!["user".to_string()]);
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(s.delete_reason().await.unwrap(), None);
    let _ = s.finish().await.unwrap();
    let raw = env.store.load(&id_of(&token)).await.unwrap().unwrap();
    let shown = StoredSession::decode(&raw.data).unwrap();
    assert!(shown.entries.contains_key("user"));

    // remove() clears a pending per-key expiry.
    let s = env.req(Some(&token));
    s.expire_key("user", Duration::from_secs(5)).await.unwrap();
    s.remove("user").await.unwrap();
    s.insert("user", "bob").await.unwrap();
    let _ = s.finish().await.unwrap();
    env.advance(10);
    let s = env.req(Some(&token));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn flash_survives_redirects_until_read() {
    let env = Env::new();
    let token = env.logged_in().await;
    let s = env.req(Some(&token));
    s.flash_insert("notice", "saved").await.unwrap();
    s.flash_insert("other", &7u8).await.unwrap();
    let _ = s.finish().await.unwrap();

    // Two redirects that use the session but not the flash.
    for _ in 0..2 {
        let s = env.req(Some(&token));
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
        assert_eq!(s.finish().await.unwrap(), Outcome::Unchanged);
    }
    // The page that shows it: readable twice within the request, then gone.
    let s = env.req(Some(&token));
    assert_eq!(
        s.flash_get::<String>("notice").await.unwrap().as_deref(),
        Some("saved")
    );
    assert_eq!(
        s.flash_get::<String>("notice").await.unwrap().as_deref(),
        Some("saved")
    );
    let _ = s.finish().await.unwrap();
    let s = env.req(Some(&token));
    assert_eq!(s.flash_get::<String>("notice").await.unwrap(), None);
    // A key not read is untouched.
    assert_eq!(s.flash_get::<u8>("other").await.unwrap(), Some(7));
    s.keep_flash(["other"]);
    let _ = s.finish().await.unwrap();
    let s = env.req(Some(&token));
    assert_eq!(s.flash_get::<u8>("other").await.unwrap(), Some(7), "kept");
    // Read and set again: the new value survives.
    s.flash_insert("other", &8u8).await.unwrap();
    let _ = s.finish().await.unwrap();
    let s = env.req(Some(&token));
    assert_eq!(s.flash_get::<u8>("other").await.unwrap(), Some(8));
    let _ = s.finish().await.unwrap();
    let s = env.req(Some(&token));
    assert_eq!(s.flash_get::<u8>("other").await.unwrap(), None);
    let raw = env.store.load(&id_of(&token)).await.unwrap().unwrap();
    assert!(StoredSession::decode(&raw.data).unwrap().flash.is_empty());
}

#[tokio::test]
async fn flash_alone_creates_a_session_in_one_record() {
    let env = Env::new();
    let s = env.req(None);
    s.flash_insert("notice", "hi").await.unwrap();
    let token = token_of(&s.finish().await.unwrap());
    assert_eq!(env.store.count(CREATE), 1);
    assert_eq!(env.live_records().await.len(), 1);
    let s = env.req(Some(&token));
    assert_eq!(
        s.flash_get::<String>("notice").await.unwrap().as_deref(),
        Some("hi")
    );
}

#[tokio::test]
async fn cycle_id_keeps_data_and_kills_the_old_key() {
    let env = Env::new();
    let old = env.logged_in().await;
    let s = env.req(Some(&old));
    s.cycle_id().await.unwrap();
    s.insert("role", "admin").await.unwrap();
    let new = token_of(&s.finish().await.unwrap());
    assert_ne!(new, old);
    assert_eq!(env.live_records().await.len(), 1);
    assert!(env.store.load(&id_of(&old)).await.unwrap().is_none());

    let s = env.req(Some(&old));
    assert_eq!(
        s.get::<String>("user").await.unwrap(),
        None,
        "old token is dead"
    );
    let s = env.req(Some(&new));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(
        s.get::<String>("role").await.unwrap().as_deref(),
        Some("admin")
    );
    assert_eq!(s.delete_reason().await.unwrap(), None);
}

#[tokio::test]
async fn colliding_ids_are_retried_never_overwritten() {
    let env = Env::new();
    let old = env.logged_in().await;
    env.store.collide_creates.store(3, Ordering::SeqCst);
    let s = env.req(Some(&old));
    s.cycle_id().await.unwrap();
    let new = token_of(&s.finish().await.unwrap());
    assert_eq!(
        env.store.count(CREATE),
        1 + 4,
        "three collisions, then success"
    );
    let s = env.req(Some(&new));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );

    // A store where every id collides: a typed error, nothing overwritten.
    env.store.collide_creates.store(u64::MAX, Ordering::SeqCst);
    let s = env.req(None);
    s.insert("x", &1u8).await.unwrap();
    assert!(matches!(
        s.finish().await,
        Err(SessionError::Store(StoreError::Busy(_)))
    ));
    assert_eq!(env.live_records().await.len(), 1);
}

#[tokio::test]
async fn save_attempts_are_bounded() {
    let cfg = SessionConfig::builder()
        .max_save_attempts(1)
        .build()
        .unwrap();
    let env = Env::with(cfg, false);
    let token = env.logged_in().await;
    let a = env.req(Some(&token));
    let b = env.req(Some(&token));
    a.insert("a", &1u8).await.unwrap();
    b.insert("b", &2u8).await.unwrap();
    let _ = a.finish().await.unwrap();
    assert!(matches!(
        b.finish().await,
        Err(SessionError::TooManyConflicts(1))
    ));
    let s = env.req(Some(&token));
    assert_eq!(s.get::<u8>("a").await.unwrap(), Some(1));
}

#[tokio::test]
async fn delete_with_a_reason() {
    let env = Env::new();
    let token = env.logged_in().await;
    let s = env.req(Some(&token));
    s.delete("logout").await.unwrap();
    assert_eq!(s.delete_reason().await.unwrap().as_deref(), Some("logout"));
    assert_eq!(s.get::<String>("user").await.unwrap(), None);
    assert_eq!(s.finish().await.unwrap(), Outcome::RemoveCookie);
    assert!(env.live_records().await.is_empty());
    assert_eq!(env.store.count(LOAD), 0, "deleting needs no load");

    // The reason is for this request only.
    let s = env.req(Some(&token));
    assert_eq!(
        s.delete_reason().await.unwrap().as_deref(),
        Some(REASON_EXPIRED)
    );

    // Delete then write: a new session under a new token.
    let token = env.logged_in().await;
    let s = env.req(Some(&token));
    s.get::<String>("user").await.unwrap();
    s.delete("switch user").await.unwrap();
    s.insert("user", "bob").await.unwrap();
    let fresh = token_of(&s.finish().await.unwrap());
    assert_ne!(fresh, token);
    assert_eq!(env.live_records().await.len(), 1);
}

#[tokio::test]
async fn binding_to_address_and_user_agent() {
    let home = ClientInfo::new()
        .with_address("192.0.2.1".parse().unwrap())
        .with_user_agent("Firefox/140");
    let moved = ClientInfo::new()
        .with_address("198.51.100.7".parse().unwrap())
        .with_user_agent("Firefox/140");
    let new_browser = ClientInfo::new()
        .with_address("192.0.2.1".parse().unwrap())
        .with_user_agent("Chrome/150");

    // Off by default: any client may use the token.
    let env = Env::new();
    let s = env.sessions.load(None, home.clone());
    s.insert("user", "ada").await.unwrap();
    let token = token_of(&s.finish().await.unwrap());
    let s = env.sessions.load(Some(&token), moved.clone());
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    let raw = env.store.load(&id_of(&token)).await.unwrap().unwrap();
    assert_eq!(StoredSession::decode(&raw.data).unwrap().address, None);

    for (cfg, other, reason) in [
        (
            SessionConfig::builder().bind_address(true),
            &moved,
            REASON_ADDRESS,
        ),
        (
            SessionConfig::builder().bind_user_agent(true),
            &new_browser,
            REASON_USER_AGENT,
        ),
    ] {
        let env = Env::with(cfg.build().unwrap(), false);
        let s = env.sessions.load(None, home.clone());
        s.insert("user", "ada").await.unwrap();
        let token = token_of(&s.finish().await.unwrap());
        let s = env.sessions.load(Some(&token), home.clone());
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
        let s = env.sessions.load(Some(&token), other.clone());
        assert_eq!(s.get::<String>("user").await.unwrap(), None);
        assert_eq!(s.delete_reason().await.unwrap().as_deref(), Some(reason));
        assert_eq!(s.finish().await.unwrap(), Outcome::RemoveCookie);
        assert!(
            env.live_records().await.is_empty(),
            "mismatch deletes the session"
        );
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<(String, u32)>,
    coupon: Option<String>,
}

/// A user codec: bincode with every byte inverted, under a user tag.
#[derive(Debug, Clone)]
struct Inverted;

impl Codec for Inverted {
    const TAG: u8 = 200;
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(Bincode.encode(value)?.into_iter().map(|b| !b).collect())
    }
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        Bincode.decode(&bytes.iter().map(|b| !b).collect::<Vec<_>>())
    }
}

#[tokio::test]
async fn typed_values_through_codecs() {
    let env = Env::new();
    let cart = Cart {
        items: vec![("tea".into(), 2), ("ümlaut".into(), 1)],
        coupon: None,
    };
    let s = env.req(None);
    s.insert("cart", &cart).await.unwrap();
    let token = token_of(&s.finish().await.unwrap());
    let s = env.req(Some(&token));
    assert_eq!(s.get::<Cart>("cart").await.unwrap(), Some(cart.clone()));
    assert!(matches!(
        s.get::<Vec<u64>>("cart").await,
        Err(SessionError::Decode { .. })
    ));
    assert!(matches!(
        s.insert(&"k".repeat(70_000), &1u8).await,
        Err(SessionError::KeyTooLong(70_000))
    ));

    // A user codec over the same store: its values are tagged, and a value
    // written by another codec is a typed error, not garbage.
    let inverted =
        SessionManager::with_codec(env.store.clone(), SessionConfig::default(), Inverted);
    let s = inverted.load(Some(&token), ClientInfo::new());
    assert!(matches!(
        s.get::<Cart>("cart").await,
        Err(SessionError::Decode { .. })
    ));
    s.insert("inv", &cart).await.unwrap();
    let _ = s.finish().await.unwrap();
    let s = inverted.load(Some(&token), ClientInfo::new());
    assert_eq!(s.get::<Cart>("inv").await.unwrap(), Some(cart));
    let raw = env.store.load(&id_of(&token)).await.unwrap().unwrap();
    assert_eq!(
        StoredSession::decode(&raw.data).unwrap().entries["inv"]
            .value
            .codec,
        200
    );
}

#[cfg(feature = "json")]
#[tokio::test]
async fn json_codec() {
    use session_core::session::Json;
    let env = Env::new();
    let sessions = SessionManager::with_codec(env.store.clone(), SessionConfig::default(), Json);
    let s = sessions.load(None, ClientInfo::new());
    s.insert("user", &serde_json::json!({"name": "ada", "admin": true}))
        .await
        .unwrap();
    let token = token_of(&s.finish().await.unwrap());
    let s = sessions.load(Some(&token), ClientInfo::new());
    let v: serde_json::Value = s.get("user").await.unwrap().unwrap();
    assert_eq!(v["name"], "ada");
    let raw = env.store.load(&id_of(&token)).await.unwrap().unwrap();
    let shown = StoredSession::decode(&raw.data).unwrap();
    assert_eq!(
        shown.entries["user"].value.describe(),
        r#"{"admin":true,"name":"ada"}"#
    );
    // The bincode manager refuses JSON values with a typed error.
    let s = env.req(Some(&token));
    assert!(matches!(
        s.get::<String>("user").await,
        Err(SessionError::Decode { .. })
    ));
}

#[tokio::test]
async fn corrupt_records_are_no_session() {
    let env = Env::new();
    let token = SessionToken::generate();
    let id = token.session_id();
    let far = Timestamp::from_millis(T0 + 3_600_000);
    for garbage in [&b""[..], b"SESS", b"SESS\x01\x00\x00", &[0xff; 64]] {
        env.store.save(&id, garbage, far, None).await.unwrap();
        let s = env.req(Some(&token.expose()));
        assert_eq!(s.get::<String>("user").await.unwrap(), None);
        assert_eq!(s.finish().await.unwrap(), Outcome::RemoveCookie);
    }
    // Flipped bytes of a real record: never a panic.
    let good = env.logged_in().await;
    let raw = env.store.load(&id_of(&good)).await.unwrap().unwrap().data;
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x5a;
        env.store
            .save(&id_of(&good), &bad, far, None)
            .await
            .unwrap();
        let s = env.req(Some(&good));
        let _ = s.get::<String>("user").await;
        let _ = s.finish().await.unwrap();
    }
}

#[tokio::test]
async fn finish_is_once_and_handles_are_shared() {
    let env = Env::new();
    let s = env.req(None);
    let other = s.clone();
    other.insert("a", &1u8).await.unwrap();
    assert_eq!(s.get::<u8>("a").await.unwrap(), Some(1));
    let _ = s.finish().await.unwrap();
    assert!(matches!(s.finish().await, Err(SessionError::Finished)));
    assert!(matches!(
        other.get::<u8>("a").await,
        Err(SessionError::Finished)
    ));

    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    send_sync(&s);
    send(s.get::<u8>("a"));
    send(s.finish());
}

#[tokio::test]
async fn a_session_deleted_meanwhile_is_not_resurrected() {
    let env = Env::new();
    let token = env.logged_in().await;
    let a = env.req(Some(&token));
    let b = env.req(Some(&token));
    b.get::<String>("user").await.unwrap();
    a.delete("logout").await.unwrap();
    let _ = a.finish().await.unwrap();
    b.insert("late", &1u8).await.unwrap();
    assert_eq!(b.finish().await.unwrap(), Outcome::Unchanged);
    assert!(env.live_records().await.is_empty());
}

#[tokio::test]
async fn concurrent_flash_consumption_keeps_a_value_set_meanwhile() {
    let env = Env::new();
    let token = env.logged_in().await;
    let s = env.req(Some(&token));
    s.flash_insert("msg", "one").await.unwrap();
    let _ = s.finish().await.unwrap();
    let reader = env.req(Some(&token));
    assert_eq!(
        reader.flash_get::<String>("msg").await.unwrap().as_deref(),
        Some("one")
    );
    let writer = env.req(Some(&token));
    writer.flash_insert("msg", "two").await.unwrap();
    let _ = writer.finish().await.unwrap();
    let _ = reader.finish().await.unwrap();
    let s = env.req(Some(&token));
    assert_eq!(
        s.flash_get::<String>("msg").await.unwrap().as_deref(),
        Some("two")
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

const REQUESTS: usize = 16;

#[test]
fn sixteen_concurrent_requests_each_setting_a_key_all_survive() {
    runtime().block_on(async {
        let env = Env::with(SessionConfig::default(), true);
        let token = env.logged_in().await;
        let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..REQUESTS {
            let s = env.req(Some(&token));
            let barrier = barrier.clone();
            tasks.spawn(async move {
                s.insert(&format!("k{i:02}"), &i).await.unwrap();
                // Every request has loaded the same version before any saves.
                barrier.wait().await;
                s.finish().await.unwrap()
            });
        }
        while let Some(out) = tasks.join_next().await {
            assert_eq!(token_of(&out.unwrap()), token);
        }
        let s = env.req(Some(&token));
        for i in 0..REQUESTS {
            assert_eq!(s.get::<usize>(&format!("k{i:02}")).await.unwrap(), Some(i));
        }
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
        assert!(
            env.store.count(SAVE) > REQUESTS as u64,
            "the merge path ran ({} saves)",
            env.store.count(SAVE)
        );
    });
}

#[test]
fn concurrent_increments_through_update_with_are_exact() {
    runtime().block_on(async {
        let env = Env::with(SessionConfig::default(), true);
        let token = env.logged_in().await;
        let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..REQUESTS {
            let s = env.req(Some(&token));
            let barrier = barrier.clone();
            tasks.spawn(async move {
                let seen = s
                    .update_with("counter", |v: Option<u64>| v.unwrap_or(0) + 1)
                    .await
                    .unwrap();
                assert!(seen >= 1);
                s.insert(&format!("visit{i}"), &true).await.unwrap();
                barrier.wait().await;
                s.finish().await.unwrap()
            });
        }
        while let Some(out) = tasks.join_next().await {
            let _ = out.unwrap();
        }
        let s = env.req(Some(&token));
        assert_eq!(
            s.get::<u64>("counter").await.unwrap(),
            Some(REQUESTS as u64)
        );
        assert_eq!(s.keys().await.unwrap().len(), REQUESTS + 2);
    });
}

#[tokio::test]
async fn same_key_is_last_writer_wins_and_removes_merge() {
    let env = Env::new();
    let s = env.req(None);
    for k in ["a", "b", "c"] {
        s.insert(k, &0u8).await.unwrap();
    }
    let token = token_of(&s.finish().await.unwrap());
    let r1 = env.req(Some(&token));
    let r2 = env.req(Some(&token));
    r1.insert("a", &1u8).await.unwrap();
    r1.remove("b").await.unwrap();
    r2.insert("a", &2u8).await.unwrap();
    r2.expire_key("c", Duration::from_secs(10)).await.unwrap();
    let _ = r1.finish().await.unwrap();
    let _ = r2.finish().await.unwrap();
    let s = env.req(Some(&token));
    assert_eq!(s.get::<u8>("a").await.unwrap(), Some(2));
    assert_eq!(
        s.get::<u8>("b").await.unwrap(),
        None,
        "r1's remove survived r2's save"
    );
    env.advance(10);
    let s = env.req(Some(&token));
    assert_eq!(s.keys().await.unwrap(), vec!["a".to_string()]);
}

// The scripted login → cycle id → flash → redirect → logout flow and the
// 16-request merge run as conformance checks (`session_layer_*`) over
// MemoryStore and every persistent store.
