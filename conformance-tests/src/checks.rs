//! The checks: one async function per rule of the store contract.
//!
//! Each returns `Err(Failure)` with a message that names the rule it saw broken.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Record, SessionId, SessionStore, StoreError, StoreStats, Timestamp, Update, Updated, Version,
};

use crate::child;
use crate::session_checks::{session_layer_concurrent_requests_merge, session_layer_login_flow};
use crate::{Check, CheckResult, Failure, Harness, Needs, ensure};

macro_rules! table {
    ($($name:ident : $needs:ident),* $(,)?) => {
        /// Every check, in the order the suite lists them.
        pub static CHECKS: &[Check] = &[
            $(Check { name: stringify!($name), needs: Needs::$needs, run: |h| Box::pin($name(h)) }),*
        ];
    };
}

table! {
    load_absent_is_none: Nothing,
    load_live_returns_what_was_written: Nothing,
    load_expired_is_none: Nothing,
    expiry_boundary_is_expired: Nothing,
    expiry_one_ms_before_boundary_is_live: Nothing,
    create_returns_version_seen_by_load: Nothing,
    create_on_live_id_already_exists: Nothing,
    create_on_expired_id_replaces_it: Nothing,
    create_already_expired_is_invisible: Nothing,
    create_distinct_ids_are_independent: Nothing,
    save_none_inserts_when_absent: Nothing,
    save_none_overwrites_live: Nothing,
    save_none_replaces_expired: Nothing,
    save_with_current_version_gives_new_version: Nothing,
    save_with_stale_version_conflicts: Nothing,
    save_with_version_on_absent_conflicts: Nothing,
    save_with_version_on_expired_conflicts: Nothing,
    save_into_the_past_expires_the_record: Nothing,
    versions_never_repeat_across_delete_and_recreate: Nothing,
    versions_never_repeat_across_many_saves: Nothing,
    touch_moves_expiry_keeps_data_and_version: Nothing,
    touch_absent_is_false: Nothing,
    touch_expired_is_false_and_does_not_resurrect: Nothing,
    touch_into_the_past_expires_the_record: Nothing,
    touch_then_cas_with_same_version_succeeds: Nothing,
    delete_live_is_true_then_absent: Nothing,
    delete_absent_is_false: Nothing,
    delete_is_idempotent: Nothing,
    delete_expired_record_is_false: Nothing,
    delete_then_create_succeeds: Nothing,
    delete_expired_counts_exactly_and_keeps_live: Nothing,
    delete_expired_on_empty_store_is_zero: Nothing,
    delete_expired_counts_the_boundary: Nothing,
    delete_expired_twice_second_is_zero: Nothing,
    delete_expired_spares_touched_records: Nothing,
    update_absent_sees_none_and_creates: Nothing,
    update_live_sees_record_and_writes: Nothing,
    update_keep_writes_nothing: Nothing,
    update_expired_sees_none: Nothing,
    update_concurrent_increments_are_exact: Nothing,
    value_empty_round_trips: Nothing,
    value_every_byte_round_trips: Nothing,
    value_largest_allowed_round_trips: Nothing,
    value_one_byte_over_limit_is_too_large: SizeLimit,
    value_too_large_on_create_writes_nothing: SizeLimit,
    ten_thousand_sessions_round_trip: Nothing,
    ids_sharing_a_prefix_are_independent: Nothing,
    extreme_ids_round_trip: Nothing,
    concurrent_create_exactly_one_wins: Nothing,
    concurrent_cas_one_winner_per_version: Nothing,
    concurrent_distinct_ids_do_not_interfere: Nothing,
    scan_pages_cover_every_live_record_in_order: Nothing,
    stats_count_live_and_expired: Nothing,
    works_through_arc_dyn: Nothing,
    session_layer_login_flow: Nothing,
    session_layer_concurrent_requests_merge: Nothing,
    reopen_keeps_records: Persistent,
    reopen_keeps_deletes_and_touches: Persistent,
    reopen_versions_stay_valid_for_cas: Persistent,
    reopen_versions_never_repeat: Persistent,
    crash_keeps_acknowledged_writes: Persistent,
    multi_process_cas_increments_are_exact: MultiProcess,
    multi_process_create_race_has_one_winner: MultiProcess,
    multi_process_writes_are_visible_without_reopen: MultiProcess,
}

const HOUR: u64 = 3_600;

fn new_id() -> SessionId {
    SessionId::generate()
}

/// Describes a result for a failure message without dumping session bytes.
fn show<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    }
}

pub(crate) async fn live(store: &dyn SessionStore, id: &SessionId) -> Result<Record, Failure> {
    store
        .load(id)
        .await?
        .ok_or_else(|| Failure(format!("load: live record {id} is missing")))
}

pub(crate) fn counter(rec: Option<&Record>) -> Result<u64, Failure> {
    match rec {
        None => Ok(0),
        Some(r) => <[u8; 8]>::try_from(r.data.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| Failure(format!("counter record has {} bytes, not 8", r.data.len()))),
    }
}

// ---------------------------------------------------------------- load

async fn load_absent_is_none(h: &Harness<'_>) -> CheckResult {
    let r = h.store().load(&new_id()).await?;
    ensure!(r.is_none(), "load: an absent id must give None, got {r:?}");
    Ok(())
}

async fn load_live_returns_what_was_written(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(HOUR);
    let v = s.create(&id, b"payload \x00\xff bytes", exp).await?;
    let r = live(&*s, &id).await?;
    ensure!(
        r.data == b"payload \x00\xff bytes",
        "load: data must be returned byte-exact"
    );
    ensure!(
        r.expires_at == exp,
        "load: expires_at must be as written: {:?} != {:?}",
        r.expires_at,
        exp
    );
    ensure!(
        r.version == v,
        "load: version must be the one create returned"
    );
    Ok(())
}

async fn load_expired_is_none(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"x", h.in_secs(10)).await?;
    h.clock().advance(Duration::from_secs(11));
    let r = s.load(&id).await?;
    ensure!(
        r.is_none(),
        "load: an expired record must never be returned, got {r:?}"
    );
    Ok(())
}

async fn expiry_boundary_is_expired(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(10);
    s.create(&id, b"x", exp).await?;
    h.clock().set(exp);
    let r = s.load(&id).await?;
    ensure!(
        r.is_none(),
        "expiry: a record with expires_at == now is expired, but load returned it"
    );
    Ok(())
}

async fn expiry_one_ms_before_boundary_is_live(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(10);
    s.create(&id, b"x", exp).await?;
    h.clock().set(Timestamp::from_millis(exp.as_millis() - 1));
    ensure!(
        s.load(&id).await?.is_some(),
        "expiry: a record with expires_at == now + 1 ms is live, but load said None"
    );
    ensure!(
        s.touch(&id, exp).await?,
        "expiry: touch must see a record 1 ms before its expiry as live"
    );
    Ok(())
}

// ---------------------------------------------------------------- create

async fn create_returns_version_seen_by_load(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"a", h.in_secs(HOUR)).await?;
    let r = live(&*s, &id).await?;
    ensure!(
        r.version == v,
        "create: the returned version must equal the loaded one ({v:?} vs {:?})",
        r.version
    );
    Ok(())
}

async fn create_on_live_id_already_exists(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"first", h.in_secs(HOUR)).await?;
    let r = s.create(&id, b"second", h.in_secs(2 * HOUR)).await;
    ensure!(
        matches!(r, Err(StoreError::AlreadyExists)),
        "create: on a live id must be AlreadyExists, got {}",
        show(&r)
    );
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.data == b"first" && rec.version == v && rec.expires_at == h.in_secs(HOUR),
        "create: a failed create must leave the live record untouched"
    );
    Ok(())
}

async fn create_on_expired_id_replaces_it(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"old", h.in_secs(5)).await?;
    h.clock().advance(Duration::from_secs(5));
    let r = s.create(&id, b"new", h.in_secs(HOUR)).await;
    ensure!(
        r.is_ok(),
        "create: an expired record may be replaced, but create gave {}",
        show(&r)
    );
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.data == b"new",
        "create: after replacing an expired record, load must give the new data"
    );
    ensure!(
        rec.version != v1,
        "create: replacing an expired record must yield a new version"
    );
    Ok(())
}

async fn create_already_expired_is_invisible(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let r = s.create(&id, b"dead", h.now()).await;
    ensure!(
        r.is_ok(),
        "create: creating an already-expired record is allowed, got {}",
        show(&r)
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "create: a record created already expired must not be loadable"
    );
    let r = s.create(&id, b"alive", h.in_secs(HOUR)).await;
    ensure!(
        r.is_ok(),
        "create: an expired record must not block create, got {}",
        show(&r)
    );
    ensure!(
        live(&*s, &id).await?.data == b"alive",
        "create: load must see the live record"
    );
    Ok(())
}

async fn create_distinct_ids_are_independent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let (a, b) = (new_id(), new_id());
    s.create(&a, b"a", h.in_secs(HOUR)).await?;
    s.create(&b, b"b", h.in_secs(HOUR)).await?;
    ensure!(
        live(&*s, &a).await?.data == b"a",
        "create: one id's data must not leak into another"
    );
    ensure!(
        live(&*s, &b).await?.data == b"b",
        "create: one id's data must not leak into another"
    );
    s.delete(&a).await?;
    ensure!(
        s.load(&b).await?.is_some(),
        "delete: deleting one id must not affect another"
    );
    Ok(())
}

// ---------------------------------------------------------------- save

async fn save_none_inserts_when_absent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.save(&id, b"upsert", h.in_secs(HOUR), None).await?;
    let r = live(&*s, &id).await?;
    ensure!(
        r.data == b"upsert" && r.version == v,
        "save(None): must insert an absent record and return its version"
    );
    Ok(())
}

async fn save_none_overwrites_live(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"one", h.in_secs(HOUR)).await?;
    let v2 = s.save(&id, b"two", h.in_secs(2 * HOUR), None).await?;
    let r = live(&*s, &id).await?;
    ensure!(
        r.data == b"two" && r.expires_at == h.in_secs(2 * HOUR),
        "save(None): must overwrite data and expiry"
    );
    ensure!(
        v2 != v1 && r.version == v2,
        "save(None): must yield a new version, returned and loaded alike"
    );
    Ok(())
}

async fn save_none_replaces_expired(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"one", h.in_secs(1)).await?;
    h.clock().advance(Duration::from_secs(2));
    let v2 = s.save(&id, b"two", h.in_secs(HOUR), None).await?;
    ensure!(
        v2 != v1,
        "save(None): replacing an expired record must yield a new version"
    );
    ensure!(
        live(&*s, &id).await?.data == b"two",
        "save(None): must replace an expired record"
    );
    Ok(())
}

async fn save_with_current_version_gives_new_version(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"one", h.in_secs(HOUR)).await?;
    let v2 = s.save(&id, b"two", h.in_secs(HOUR), Some(v1)).await;
    ensure!(
        v2.is_ok(),
        "save(Some(current)): must succeed, got {}",
        show(&v2)
    );
    let v2 = v2?;
    ensure!(
        v2 != v1,
        "save(Some(current)): must yield a version different from the expected one"
    );
    let r = live(&*s, &id).await?;
    ensure!(
        r.data == b"two" && r.version == v2,
        "save(Some(current)): load must see the new data and version"
    );
    let v3 = s.save(&id, b"three", h.in_secs(HOUR), Some(v2)).await?;
    ensure!(
        v3 != v2 && v3 != v1,
        "save: every write must yield a fresh version"
    );
    Ok(())
}

async fn save_with_stale_version_conflicts(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"one", h.in_secs(HOUR)).await?;
    let v2 = s.save(&id, b"two", h.in_secs(HOUR), Some(v1)).await?;
    let r = s.save(&id, b"stale", h.in_secs(HOUR), Some(v1)).await;
    ensure!(
        matches!(r, Err(StoreError::Conflict)),
        "save(Some(stale)): must be Conflict (expected is ignored?), got {}",
        show(&r)
    );
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.data == b"two" && rec.version == v2,
        "save(Some(stale)): a conflicting save must write nothing"
    );
    Ok(())
}

async fn save_with_version_on_absent_conflicts(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let other = s.create(&new_id(), b"x", h.in_secs(HOUR)).await?;
    let r = s.save(&id, b"x", h.in_secs(HOUR), Some(other)).await;
    ensure!(
        matches!(r, Err(StoreError::Conflict)),
        "save(Some(v)) on an absent id must be Conflict, got {}",
        show(&r)
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "save(Some(v)) on an absent id must not create it"
    );
    Ok(())
}

async fn save_with_version_on_expired_conflicts(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"x", h.in_secs(1)).await?;
    h.clock().advance(Duration::from_secs(1));
    let r = s.save(&id, b"y", h.in_secs(HOUR), Some(v)).await;
    ensure!(
        matches!(r, Err(StoreError::Conflict)),
        "save(Some(v)) on an expired record must be Conflict, got {}",
        show(&r)
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "save(Some(v)) on an expired record must not resurrect it"
    );
    Ok(())
}

async fn save_into_the_past_expires_the_record(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"x", h.in_secs(HOUR)).await?;
    s.save(&id, b"y", h.now(), Some(v)).await?;
    ensure!(
        s.load(&id).await?.is_none(),
        "save: a record saved with expires_at <= now must be expired"
    );
    Ok(())
}

async fn versions_never_repeat_across_delete_and_recreate(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let mut seen = HashSet::new();
    for round in 0..40 {
        let v = s.create(&id, b"c", h.in_secs(HOUR)).await?;
        ensure!(
            seen.insert(v),
            "versions: create #{round} after delete reused an earlier version {v:?} (ABA)"
        );
        let v = s.save(&id, b"s", h.in_secs(HOUR), Some(v)).await?;
        ensure!(
            seen.insert(v),
            "versions: save after re-create reused an earlier version {v:?} (ABA)"
        );
        ensure!(s.delete(&id).await?, "delete: must remove the live record");
    }
    Ok(())
}

async fn versions_never_repeat_across_many_saves(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let mut v = s.create(&id, b"0", h.in_secs(HOUR)).await?;
    let mut seen = HashSet::from([v]);
    for i in 1..300u32 {
        let expected = if i % 2 == 0 { Some(v) } else { None };
        v = s
            .save(&id, &i.to_le_bytes(), h.in_secs(HOUR), expected)
            .await?;
        ensure!(
            seen.insert(v),
            "versions: save #{i} repeated an earlier version {v:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- touch

async fn touch_moves_expiry_keeps_data_and_version(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"keep me", h.in_secs(10)).await?;
    let later = h.in_secs(HOUR);
    ensure!(
        s.touch(&id, later).await?,
        "touch: a live record must give true"
    );
    let r = live(&*s, &id).await?;
    ensure!(
        r.expires_at == later,
        "touch: must move expires_at to the new value"
    );
    ensure!(r.data == b"keep me", "touch: must not change data");
    ensure!(r.version == v, "touch: must not change the version");
    h.clock().advance(Duration::from_secs(20));
    ensure!(
        s.load(&id).await?.is_some(),
        "touch: the record must live past its old expiry"
    );
    Ok(())
}

async fn touch_absent_is_false(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    ensure!(
        !s.touch(&id, h.in_secs(HOUR)).await?,
        "touch: an absent id must give false"
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "touch: must not create a record"
    );
    Ok(())
}

async fn touch_expired_is_false_and_does_not_resurrect(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"x", h.in_secs(1)).await?;
    h.clock().advance(Duration::from_secs(1));
    ensure!(
        !s.touch(&id, h.in_secs(HOUR)).await?,
        "touch: an expired record must give false"
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "touch: must not resurrect an expired record"
    );
    Ok(())
}

async fn touch_into_the_past_expires_the_record(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"x", h.in_secs(HOUR)).await?;
    ensure!(
        s.touch(&id, h.now()).await?,
        "touch: a live record must give true"
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "touch: moving expires_at to now must expire the record"
    );
    Ok(())
}

async fn touch_then_cas_with_same_version_succeeds(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"x", h.in_secs(10)).await?;
    s.touch(&id, h.in_secs(HOUR)).await?;
    let r = s.save(&id, b"y", h.in_secs(HOUR), Some(v)).await;
    ensure!(
        r.is_ok(),
        "touch: must keep the version, so save(Some(v)) after it succeeds; got {}",
        show(&r)
    );
    Ok(())
}

// ---------------------------------------------------------------- delete

async fn delete_live_is_true_then_absent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"x", h.in_secs(HOUR)).await?;
    ensure!(s.delete(&id).await?, "delete: a live record must give true");
    ensure!(
        s.load(&id).await?.is_none(),
        "delete: the record must be gone"
    );
    Ok(())
}

async fn delete_absent_is_false(h: &Harness<'_>) -> CheckResult {
    ensure!(
        !h.store().delete(&new_id()).await?,
        "delete: an absent id must give false"
    );
    Ok(())
}

async fn delete_is_idempotent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"x", h.in_secs(HOUR)).await?;
    ensure!(
        s.delete(&id).await?,
        "delete: first delete of a live record must give true"
    );
    ensure!(
        !s.delete(&id).await?,
        "delete: second delete must give false"
    );
    ensure!(
        !s.delete(&id).await?,
        "delete: third delete must give false"
    );
    Ok(())
}

async fn delete_expired_record_is_false(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"x", h.in_secs(1)).await?;
    h.clock().advance(Duration::from_secs(2));
    ensure!(
        !s.delete(&id).await?,
        "delete: an expired record is not live, so delete must give false"
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "delete: an expired record stays invisible"
    );
    Ok(())
}

async fn delete_then_create_succeeds(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"x", h.in_secs(HOUR)).await?;
    s.delete(&id).await?;
    let r = s.create(&id, b"y", h.in_secs(HOUR)).await;
    ensure!(
        r.is_ok(),
        "create: after delete must succeed, got {}",
        show(&r)
    );
    ensure!(
        r? != v1,
        "versions: re-create after delete must not reuse the old version"
    );
    let old = s.save(&id, b"z", h.in_secs(HOUR), Some(v1)).await;
    ensure!(
        matches!(old, Err(StoreError::Conflict)),
        "save: a version from before delete must Conflict, got {}",
        show(&old)
    );
    Ok(())
}

// ---------------------------------------------------------------- delete_expired

async fn delete_expired_counts_exactly_and_keeps_live(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let mut short = Vec::new();
    let mut long = Vec::new();
    for i in 0..30u32 {
        let id = new_id();
        if i % 3 == 0 {
            s.create(&id, b"live", h.in_secs(HOUR)).await?;
            long.push(id);
        } else {
            s.create(&id, b"dies", h.in_secs(60)).await?;
            short.push(id);
        }
    }
    h.clock().advance(Duration::from_secs(61));
    let n = s.delete_expired().await?;
    ensure!(
        n == short.len() as u64,
        "delete_expired: must return the exact count {} of expired records, got {n}",
        short.len()
    );
    for id in &long {
        ensure!(
            live(&*s, id).await?.data == b"live",
            "delete_expired: must keep live records"
        );
    }
    for id in &short {
        ensure!(
            s.load(id).await?.is_none(),
            "delete_expired: expired records must be gone"
        );
    }
    Ok(())
}

async fn delete_expired_on_empty_store_is_zero(h: &Harness<'_>) -> CheckResult {
    let n = h.store().delete_expired().await?;
    ensure!(
        n == 0,
        "delete_expired: an empty store must give 0, got {n}"
    );
    Ok(())
}

async fn delete_expired_counts_the_boundary(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let exp = h.in_secs(100);
    let (a, b) = (new_id(), new_id());
    s.create(&a, b"a", exp).await?;
    s.create(&b, b"b", Timestamp::from_millis(exp.as_millis() + 1))
        .await?;
    h.clock().set(exp);
    let n = s.delete_expired().await?;
    ensure!(
        n == 1,
        "delete_expired: a record with expires_at == now is expired and must be counted (expected 1, got {n})"
    );
    ensure!(
        s.load(&b).await?.is_some(),
        "delete_expired: a record expiring 1 ms after now must stay"
    );
    Ok(())
}

async fn delete_expired_twice_second_is_zero(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    for _ in 0..5 {
        s.create(&new_id(), b"x", h.in_secs(1)).await?;
    }
    h.clock().advance(Duration::from_secs(1));
    let first = s.delete_expired().await?;
    let second = s.delete_expired().await?;
    ensure!(
        first == 5,
        "delete_expired: first call must count 5, got {first}"
    );
    ensure!(
        second == 0,
        "delete_expired: a second call must count 0, got {second}"
    );
    Ok(())
}

async fn delete_expired_spares_touched_records(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let (a, b) = (new_id(), new_id());
    s.create(&a, b"a", h.in_secs(10)).await?;
    s.create(&b, b"b", h.in_secs(HOUR)).await?;
    s.touch(&a, h.in_secs(2 * HOUR)).await?;
    s.touch(&b, h.in_secs(5)).await?;
    h.clock().advance(Duration::from_secs(20));
    let n = s.delete_expired().await?;
    ensure!(
        n == 1,
        "delete_expired: must judge the touched expiry (expected 1, got {n}); is the expiry index updated by touch?"
    );
    ensure!(
        s.load(&a).await?.is_some(),
        "delete_expired: removed a record whose expiry touch had extended"
    );
    ensure!(
        s.load(&b).await?.is_none(),
        "touch: shortening expiry must take effect"
    );
    Ok(())
}

// ---------------------------------------------------------------- update

async fn update_absent_sees_none_and_creates(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(HOUR);
    let mut saw_some = false;
    let r = s
        .update(&id, &mut |cur| {
            saw_some |= cur.is_some();
            Update::Put {
                data: b"made".to_vec(),
                expires_at: exp,
            }
        })
        .await?;
    ensure!(!saw_some, "update: must pass None for an absent id");
    let Updated::Written(v) = r else {
        return Err(Failure("update: a Put must report Written".into()));
    };
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.data == b"made" && rec.version == v && rec.expires_at == exp,
        "update: must create the record it returned"
    );
    Ok(())
}

async fn update_live_sees_record_and_writes(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"before", h.in_secs(HOUR)).await?;
    let exp = h.in_secs(2 * HOUR);
    let mut seen = None;
    let r = s
        .update(&id, &mut |cur| {
            seen = cur.map(|r| (r.data.clone(), r.version));
            Update::Put {
                data: b"after".to_vec(),
                expires_at: exp,
            }
        })
        .await?;
    ensure!(
        seen == Some((b"before".to_vec(), v1)),
        "update: must pass the live record to the closure"
    );
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.data == b"after" && rec.expires_at == exp,
        "update: must write the closure's value"
    );
    ensure!(
        r == Updated::Written(rec.version) && rec.version != v1,
        "update: must report the new, fresh version"
    );
    Ok(())
}

async fn update_keep_writes_nothing(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"same", h.in_secs(HOUR)).await?;
    let r = s.update(&id, &mut |_| Update::Keep).await?;
    ensure!(
        r == Updated::Unchanged,
        "update: Keep must report Unchanged"
    );
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.version == v && rec.data == b"same",
        "update: Keep must not write"
    );
    let absent = new_id();
    s.update(&absent, &mut |_| Update::Keep).await?;
    ensure!(
        s.load(&absent).await?.is_none(),
        "update: Keep on an absent id must not create it"
    );
    Ok(())
}

async fn update_expired_sees_none(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    s.create(&id, b"old", h.in_secs(1)).await?;
    h.clock().advance(Duration::from_secs(1));
    let mut saw = None;
    let exp = h.in_secs(HOUR);
    s.update(&id, &mut |cur| {
        saw = Some(cur.is_some());
        Update::Put {
            data: b"new".to_vec(),
            expires_at: exp,
        }
    })
    .await?;
    ensure!(
        saw == Some(false),
        "update: an expired record must be passed as None"
    );
    ensure!(
        live(&*s, &id).await?.data == b"new",
        "update: must replace the expired record"
    );
    Ok(())
}

async fn update_concurrent_increments_are_exact(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(HOUR);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let mut bad = None;
                s.update(&id, &mut |cur| match counter(cur) {
                    Ok(n) => Update::Put {
                        data: (n + 1).to_le_bytes().to_vec(),
                        expires_at: exp,
                    },
                    Err(e) => {
                        bad = Some(e);
                        Update::Keep
                    }
                })
                .await?;
                if let Some(e) = bad {
                    return Err(e);
                }
            }
            Ok::<(), Failure>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| Failure(format!("task panicked: {e}")))??;
    }
    let n = counter(Some(&live(&*s, &id).await?))?;
    ensure!(
        n == 1_600,
        "update: 8 tasks x 200 increments must give exactly 1600, got {n} (lost updates)"
    );
    Ok(())
}

// ---------------------------------------------------------------- values

async fn round_trip(h: &Harness<'_>, data: &[u8], what: &str) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, data, h.in_secs(HOUR)).await;
    ensure!(
        v.is_ok(),
        "values: creating {what} ({} bytes) must succeed, got {}",
        data.len(),
        show(&v)
    );
    let r = live(&*s, &id).await?;
    ensure!(
        r.data.len() == data.len(),
        "values: {what} came back with {} bytes instead of {} (truncation?)",
        r.data.len(),
        data.len()
    );
    ensure!(r.data == data, "values: {what} must round-trip byte-exact");
    let id2 = new_id();
    s.save(&id2, data, h.in_secs(HOUR), None).await?;
    ensure!(
        live(&*s, &id2).await?.data == data,
        "values: {what} must round-trip through save too"
    );
    Ok(())
}

async fn value_empty_round_trips(h: &Harness<'_>) -> CheckResult {
    round_trip(h, b"", "an empty value").await
}

async fn value_every_byte_round_trips(h: &Harness<'_>) -> CheckResult {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..=255u8).rev());
    round_trip(h, &data, "a value holding every byte value").await
}

fn limit_or_default(h: &Harness<'_>) -> usize {
    h.capabilities().max_value_size.unwrap_or(4 << 20)
}

fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

async fn value_largest_allowed_round_trips(h: &Harness<'_>) -> CheckResult {
    let data = patterned(limit_or_default(h));
    round_trip(h, &data, "the largest allowed value").await
}

async fn value_one_byte_over_limit_is_too_large(h: &Harness<'_>) -> CheckResult {
    let limit = limit_or_default(h);
    let s = h.store();
    let id = new_id();
    let v = s.create(&id, b"original", h.in_secs(HOUR)).await?;
    let big = patterned(limit + 1);
    let r = s.save(&id, &big, h.in_secs(HOUR), None).await;
    ensure!(
        matches!(r, Err(StoreError::TooLarge { size, limit: l }) if size == limit + 1 && l == limit),
        "values: a value one byte over the limit must be TooLarge {{ size: {}, limit: {limit} }}, got {}",
        limit + 1,
        show(&r)
    );
    let r = s.save(&id, &big, h.in_secs(HOUR), Some(v)).await;
    ensure!(
        matches!(r, Err(StoreError::TooLarge { .. })),
        "values: TooLarge applies to save(Some(v)) too, got {}",
        show(&r)
    );
    let rec = live(&*s, &id).await?;
    ensure!(
        rec.data == b"original" && rec.version == v,
        "values: a rejected value must leave the old value in place"
    );
    let r = s
        .update(&id, &mut |_| Update::Put {
            data: big.clone(),
            expires_at: Timestamp::MAX,
        })
        .await;
    ensure!(
        matches!(r, Err(StoreError::TooLarge { .. })),
        "values: TooLarge applies to update too, got {}",
        show(&r)
    );
    ensure!(
        live(&*s, &id).await?.version == v,
        "values: a rejected update must leave the old value in place"
    );
    Ok(())
}

async fn value_too_large_on_create_writes_nothing(h: &Harness<'_>) -> CheckResult {
    let limit = limit_or_default(h);
    let s = h.store();
    let id = new_id();
    let r = s.create(&id, &patterned(limit + 1), h.in_secs(HOUR)).await;
    ensure!(
        matches!(r, Err(StoreError::TooLarge { .. })),
        "values: create over the limit must be TooLarge, got {}",
        show(&r)
    );
    ensure!(
        s.load(&id).await?.is_none(),
        "values: a rejected create must write nothing"
    );
    ensure!(
        s.create(&id, b"fits", h.in_secs(HOUR)).await.is_ok(),
        "values: the id must stay free after a rejected create"
    );
    Ok(())
}

async fn ten_thousand_sessions_round_trip(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let ids: Arc<Vec<SessionId>> = Arc::new((0..10_000).map(|_| new_id()).collect());
    let exp = h.in_secs(HOUR);
    let data_of = |i: usize, id: &SessionId| {
        let mut d = id.as_bytes().to_vec();
        d.extend_from_slice(&(i as u64).to_le_bytes());
        d.resize(64 + i % 200, (i % 251) as u8);
        d
    };
    let mut tasks = Vec::new();
    for part in 0..8usize {
        let (s, ids) = (s.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in (part..ids.len()).step_by(8) {
                versions.push((i, s.create(&ids[i], &data_of(i, &ids[i]), exp).await?));
            }
            Ok::<_, StoreError>(versions)
        }));
    }
    let mut versions = HashMap::new();
    for t in tasks {
        versions.extend(
            t.await
                .map_err(|e| Failure(format!("task panicked: {e}")))??,
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let r = live(&*s, id).await?;
        ensure!(
            r.data == data_of(i, id),
            "scale: session #{i} of 10,000 did not round-trip"
        );
        ensure!(
            Some(&r.version) == versions.get(&i),
            "scale: session #{i} has another version than create returned"
        );
    }
    let stats = s.stats().await?;
    ensure!(
        stats.live == 10_000,
        "stats: 10,000 live sessions expected, got {}",
        stats.live
    );
    Ok(())
}

async fn ids_sharing_a_prefix_are_independent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let base = *new_id().as_bytes();
    let mut ids = Vec::new();
    for last in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
        let mut b = base;
        b[31] = last;
        ids.push(SessionId::from_bytes(b));
    }
    for (i, id) in ids.iter().enumerate() {
        s.create(id, &[i as u8; 3], h.in_secs(HOUR)).await?;
    }
    s.delete(&ids[1]).await?;
    for (i, id) in ids.iter().enumerate() {
        let r = s.load(id).await?;
        if i == 1 {
            ensure!(
                r.is_none(),
                "ids: deleting one id removed nothing or the wrong one"
            );
        } else {
            ensure!(
                r.map(|r| r.data) == Some(vec![i as u8; 3]),
                "ids: ids differing only in the last byte must be independent"
            );
        }
    }
    Ok(())
}

async fn extreme_ids_round_trip(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    for (n, b) in [
        (0u8, [0u8; 32]),
        (1, [0xff; 32]),
        (2, [0x2f; 32]),
        (3, [0x2e; 32]),
    ] {
        let id = SessionId::from_bytes(b);
        s.create(&id, &[n], h.in_secs(HOUR)).await?;
        ensure!(
            live(&*s, &id).await?.data == [n],
            "ids: id {} must round-trip",
            id.to_hex()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- concurrency

/// Starts 16 tasks at a barrier, task `i` writing the one byte `[i]` with `write`;
/// returns the winners `(i, version)` and checks that every loser got `lost`.
async fn race16<F, Fut>(
    s: &Arc<dyn SessionStore>,
    lost: fn(&StoreError) -> bool,
    write: F,
) -> Result<Vec<(u8, Version)>, Failure>
where
    F: Fn(Arc<dyn SessionStore>, u8) -> Fut,
    Fut: std::future::Future<Output = Result<Version, StoreError>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (fut, barrier) = (write(s.clone(), i), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (i, fut.await)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t
            .await
            .map_err(|e| Failure(format!("task panicked: {e}")))?;
        match r {
            Ok(v) => winners.push((i, v)),
            Err(e) if lost(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(winners)
}

/// The single winner's byte and version must be what the store holds.
async fn check_single_winner(
    s: &dyn SessionStore,
    id: &SessionId,
    winners: &[(u8, Version)],
    what: &str,
) -> CheckResult {
    ensure!(
        winners.len() == 1,
        "{what}: 16 concurrent writers must have exactly one winner, got {}",
        winners.len()
    );
    let rec = live(s, id).await?;
    ensure!(
        rec.data == [winners[0].0] && rec.version == winners[0].1,
        "{what}: the stored record must be the winner's"
    );
    Ok(())
}

async fn concurrent_create_exactly_one_wins(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(HOUR);
    let winners = race16(
        &s,
        |e| matches!(e, StoreError::AlreadyExists),
        |s, i| async move { s.create(&id, &[i], exp).await },
    )
    .await?;
    check_single_winner(
        &*s,
        &id,
        &winners,
        "create (16 concurrent creates of one id)",
    )
    .await
}

async fn concurrent_cas_one_winner_per_version(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let exp = h.in_secs(HOUR);
    let v0 = s.create(&id, b"start", exp).await?;
    let winners = race16(
        &s,
        |e| matches!(e, StoreError::Conflict),
        |s, i| async move { s.save(&id, &[i], exp, Some(v0)).await },
    )
    .await?;
    check_single_winner(
        &*s,
        &id,
        &winners,
        "save (16 concurrent save(Some(v)) with one version)",
    )
    .await
}

async fn concurrent_distinct_ids_do_not_interfere(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let exp = h.in_secs(HOUR);
    let mut tasks = Vec::new();
    for t in 0..16u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            for i in 0..40u8 {
                let id = SessionId::generate();
                let v = s.create(&id, &[t, i], exp).await?;
                let v = s.save(&id, &[t, i, 1], exp, Some(v)).await?;
                if i % 4 == 0 {
                    s.delete(&id).await?;
                } else {
                    kept.push((id, vec![t, i, 1], v));
                }
            }
            Ok::<_, StoreError>(kept)
        }));
    }
    for t in tasks {
        for (id, data, v) in t
            .await
            .map_err(|e| Failure(format!("task panicked: {e}")))??
        {
            let r = live(&*s, &id).await?;
            ensure!(
                r.data == data && r.version == v,
                "concurrency: parallel writers to distinct ids must not disturb each other"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- inspection

async fn scan_pages_cover_every_live_record_in_order(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let mut live_set = BTreeMap::new();
    let mut dead = HashSet::new();
    for i in 0..250u32 {
        let id = new_id();
        let v = s.create(&id, &i.to_le_bytes(), h.in_secs(HOUR)).await?;
        live_set.insert(id, (i.to_le_bytes().to_vec(), v));
    }
    for _ in 0..20 {
        let id = new_id();
        s.create(&id, b"dead", h.in_secs(1)).await?;
        dead.insert(id);
    }
    h.clock().advance(Duration::from_secs(1));
    let now = h.now();
    let mut after: Option<SessionId> = None;
    let mut found = BTreeMap::new();
    for _ in 0..1_000 {
        let page = s.scan(after.as_ref(), 7).await?;
        ensure!(
            page.len() <= 7,
            "scan: a page must hold at most `limit` records, got {}",
            page.len()
        );
        for (id, rec) in &page {
            ensure!(
                after.is_none_or(|a| *id > a),
                "scan: ids must be strictly ascending and greater than `after`"
            );
            after = Some(*id);
            if rec.is_expired_at(now) {
                ensure!(
                    dead.contains(id),
                    "scan: returned an expired record that was never written"
                );
            } else {
                ensure!(
                    found.insert(*id, (rec.data.clone(), rec.version)).is_none(),
                    "scan: a record appeared twice"
                );
            }
        }
        if page.len() < 7 {
            break;
        }
    }
    ensure!(
        found == live_set,
        "scan: a full walk must return every live record exactly once with its data and version ({} of {} found)",
        found.len(),
        live_set.len()
    );
    Ok(())
}

async fn stats_count_live_and_expired(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let mut bytes = 0u64;
    for i in 0..30usize {
        let data = vec![7u8; i * 10];
        bytes += data.len() as u64;
        s.create(&new_id(), &data, h.in_secs(HOUR)).await?;
    }
    for _ in 0..10 {
        s.create(&new_id(), b"short", h.in_secs(1)).await?;
    }
    h.clock().advance(Duration::from_secs(1));
    let st: StoreStats = s.stats().await?;
    ensure!(
        st.live == 30,
        "stats: live must count 30 live records, got {}",
        st.live
    );
    ensure!(
        st.live_bytes == bytes,
        "stats: live_bytes must be {bytes}, got {}",
        st.live_bytes
    );
    ensure!(
        st.expired <= 10,
        "stats: at most 10 expired records exist, got {}",
        st.expired
    );
    s.delete_expired().await?;
    let st = s.stats().await?;
    ensure!(
        st.live == 30 && st.expired == 0,
        "stats: after delete_expired expected 30 live / 0 expired, got {} / {}",
        st.live,
        st.expired
    );
    Ok(())
}

async fn works_through_arc_dyn(h: &Harness<'_>) -> CheckResult {
    async fn generic<S: SessionStore + ?Sized>(
        s: &S,
        id: &SessionId,
        exp: Timestamp,
    ) -> Result<Version, StoreError> {
        let v = s.create(id, b"generic", exp).await?;
        s.save(id, b"generic2", exp, Some(v)).await
    }
    let arc: Arc<dyn SessionStore> = h.store();
    let boxed: Box<Arc<dyn SessionStore>> = Box::new(arc.clone());
    let id = new_id();
    let v = generic(&*boxed, &id, h.in_secs(HOUR)).await?;
    let r = live(&*arc, &id).await?;
    ensure!(
        r.version == v && r.data == b"generic2",
        "object safety: calls through Box<Arc<dyn SessionStore>> must reach the store"
    );
    Ok(())
}

// ---------------------------------------------------------------- persistence

async fn reopen_keeps_records(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let mut expect = Vec::new();
    for i in 0..60u32 {
        let id = new_id();
        let mut v = s
            .create(
                &id,
                &patterned(i as usize * 37),
                h.in_secs(HOUR + u64::from(i)),
            )
            .await?;
        if i % 3 == 0 {
            v = s
                .save(&id, &i.to_be_bytes(), h.in_secs(2 * HOUR), Some(v))
                .await?;
        }
        expect.push((id, live(&*s, &id).await?, v));
    }
    drop(s);
    let s = h.reopen().await?;
    for (id, rec, v) in &expect {
        let r = s.load(id).await?;
        ensure!(
            r.as_ref() == Some(rec),
            "persistence: record {id} changed or vanished across reopen"
        );
        ensure!(
            rec.version == *v,
            "persistence: version changed across reopen"
        );
    }
    Ok(())
}

async fn reopen_keeps_deletes_and_touches(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let (a, b, c) = (new_id(), new_id(), new_id());
    s.create(&a, b"a", h.in_secs(HOUR)).await?;
    s.create(&b, b"b", h.in_secs(10)).await?;
    let vc = s.create(&c, b"c", h.in_secs(HOUR)).await?;
    s.delete(&a).await?;
    s.touch(&b, h.in_secs(3 * HOUR)).await?;
    drop(s);
    let s = h.reopen().await?;
    ensure!(
        s.load(&a).await?.is_none(),
        "persistence: a deleted record came back after reopen"
    );
    let rb = live(&*s, &b).await?;
    ensure!(
        rb.expires_at == h.in_secs(3 * HOUR),
        "persistence: touch was lost across reopen"
    );
    let rc = live(&*s, &c).await?;
    ensure!(
        rc.version == vc && rc.data == b"c",
        "persistence: an untouched record changed across reopen"
    );
    Ok(())
}

async fn reopen_versions_stay_valid_for_cas(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = new_id();
    let v1 = s.create(&id, b"x", h.in_secs(HOUR)).await?;
    drop(s);
    let s = h.reopen().await?;
    let r = s.save(&id, b"y", h.in_secs(HOUR), Some(v1)).await;
    ensure!(
        r.is_ok(),
        "persistence: save(Some(v)) with the version from before reopen must succeed, got {}",
        show(&r)
    );
    let r = s.save(&id, b"z", h.in_secs(HOUR), Some(v1)).await;
    ensure!(
        matches!(r, Err(StoreError::Conflict)),
        "persistence: a stale version must still Conflict after reopen, got {}",
        show(&r)
    );
    Ok(())
}

async fn reopen_versions_never_repeat(h: &Harness<'_>) -> CheckResult {
    let id = new_id();
    let mut seen = HashSet::new();
    for round in 0..4 {
        let s = if round == 0 {
            h.store()
        } else {
            h.reopen().await?
        };
        let v = s.create(&id, b"x", h.in_secs(HOUR)).await?;
        ensure!(
            seen.insert(v),
            "versions: create after reopen #{round} reused version {v:?} (ABA across restarts)"
        );
        let v = s.save(&id, b"y", h.in_secs(HOUR), None).await?;
        ensure!(
            seen.insert(v),
            "versions: save after reopen #{round} reused version {v:?} (ABA across restarts)"
        );
        s.delete(&id).await?;
    }
    Ok(())
}

async fn crash_keeps_acknowledged_writes(h: &Harness<'_>) -> CheckResult {
    child::crash_parent(h).await
}

// ---------------------------------------------------------------- multi-process

async fn multi_process_cas_increments_are_exact(h: &Harness<'_>) -> CheckResult {
    child::cas_parent(h).await
}

async fn multi_process_create_race_has_one_winner(h: &Harness<'_>) -> CheckResult {
    child::create_race_parent(h).await
}

async fn multi_process_writes_are_visible_without_reopen(h: &Harness<'_>) -> CheckResult {
    child::visibility_parent(h).await
}
