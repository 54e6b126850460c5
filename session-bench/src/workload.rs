//! The one workload every row runs through `session_core::SessionStore`, its
//! statistics, and the `ROW` line format rows travel in between processes.
//!
//! Shared by the main binary and the peers workspace (`peers/`, included there
//! with `#[path]`), so it depends on `session-core`, `tokio` and `std` only.
//!
//! Timing: every operation is timed on its own (`Instant` before and after), the
//! phase reports the median of those latencies and its throughput (operations
//! divided by the phase's wall time). Ids are pre-generated from a seed, values
//! are printable ASCII (so peers that keep JSON strings store the same bytes).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Clock as _, ManualClock, SessionId, SessionStore, Timestamp, Update};

/// Every phase, in the order a row runs them.
pub(crate) const PHASES: [&str; 13] = [
    "create",
    "load_hit",
    "load_miss",
    "save",
    "touch",
    "update",
    "mix_c1",
    "mix_c8",
    "mix_c64",
    "save_c64",
    "mix_2proc",
    "delete",
    "delete_expired",
];

/// Concurrent tasks of the three read/write mixes.
pub(crate) const MIX_TASKS: [usize; 3] = [1, 8, 64];

/// Concurrent writers of the `save_c64` phase (group-commit check).
pub(crate) const WRITERS: usize = 64;

/// Lifetime of live records; far beyond any run.
const LIVE_TTL: Duration = Duration::from_secs(3_600);

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A store of this workspace.
    Ours,
    /// A session store from crates.io, through a thin adapter.
    Peer,
    /// The engine alone, with no session layer: the limit.
    Raw,
}

impl Kind {
    /// The word used in tables and `ROW` lines.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Peer => "peer",
            Self::Raw => "raw",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ours" => Some(Self::Ours),
            "peer" => Some(Self::Peer),
            "raw" => Some(Self::Raw),
            _ => None,
        }
    }
}

/// Which phases a row can run, and what its answers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// `touch` keeps its meaning (move the expiry only).
    pub(crate) touch: bool,
    /// `update` is a real read-modify-write.
    pub(crate) update: bool,
    /// `delete_expired` is offered.
    pub(crate) delete_expired: bool,
    /// `delete_expired` returns the exact count (peers return nothing).
    pub(crate) counts_expired: bool,
    /// Several processes can open the store at once (runs `mix_2proc`).
    pub(crate) multi_process: bool,
    /// Misses (a cache that evicts) and failed mix operations (a peer whose
    /// writes are not atomic) are noted, not fatal.
    pub(crate) lossy: bool,
}

impl Caps {
    /// A full session store.
    pub(crate) const STORE: Self = Self {
        touch: true,
        update: true,
        delete_expired: true,
        counts_expired: true,
        multi_process: false,
        lossy: false,
    };
    /// A raw engine: create, load, save, delete and the mixes only.
    pub(crate) const RAW: Self = Self {
        touch: false,
        update: false,
        delete_expired: false,
        counts_expired: false,
        multi_process: false,
        lossy: false,
    };

    /// The same, shared across processes.
    #[must_use]
    pub(crate) const fn multi_process(mut self) -> Self {
        self.multi_process = true;
        self
    }
}

/// Size of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Sessions (and operations per phase).
    pub(crate) n: usize,
    /// Bytes per value.
    pub(crate) value_size: usize,
    /// Seed of ids and access order.
    pub(crate) seed: u64,
}

/// One phase's figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PhaseResult {
    /// One of [`PHASES`].
    pub(crate) phase: String,
    /// Operations timed.
    pub(crate) ops: u64,
    /// Median latency of one operation, ns.
    pub(crate) median_ns: f64,
    /// 99th percentile latency, ns.
    pub(crate) p99_ns: f64,
    /// Operations per second over the phase's wall time.
    pub(crate) ops_per_s: f64,
}

/// All figures of one row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowResult {
    /// Display name, unique per run.
    pub(crate) row: String,
    /// What rows are compared on: same medium, same durability.
    pub(crate) medium: String,
    /// Ours, peer or raw.
    pub(crate) kind: Kind,
    /// Sessions used for this row.
    pub(crate) n: usize,
    /// Phases run, in order.
    pub(crate) phases: Vec<PhaseResult>,
    /// Remarks (anomalies, errors, reduced N).
    pub(crate) notes: Vec<String>,
}

impl RowResult {
    /// An empty result for a row about to run.
    pub(crate) fn new(row: &str, medium: &str, kind: Kind, n: usize) -> Self {
        Self {
            row: row.to_owned(),
            medium: medium.to_owned(),
            kind,
            n,
            phases: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The figures of `phase`, if it ran.
    pub(crate) fn phase(&self, phase: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

// ---------------------------------------------------------------- statistics

/// Median and 99th percentile of latencies (ns); `(0, 0)` for none.
pub(crate) fn percentiles(lat: &mut [u64]) -> (f64, f64) {
    if lat.is_empty() {
        return (0.0, 0.0);
    }
    lat.sort_unstable();
    let median = if lat.len() % 2 == 1 {
        lat[lat.len() / 2] as f64
    } else {
        let hi = lat.len() / 2;
        (lat[hi - 1] as f64 + lat[hi] as f64) / 2.0
    };
    let idx = ((lat.len() as f64) * 0.99).ceil() as usize;
    let p99 = lat[idx.clamp(1, lat.len()) - 1] as f64;
    (median, p99)
}

/// Builds a phase result from per-op latencies and the phase's wall time.
pub(crate) fn summarize(phase: &str, lat: &mut [u64], wall: Duration) -> PhaseResult {
    let (median_ns, p99_ns) = percentiles(lat);
    let secs = wall.as_secs_f64();
    PhaseResult {
        phase: phase.to_owned(),
        ops: lat.len() as u64,
        median_ns,
        p99_ns,
        ops_per_s: if secs > 0.0 {
            lat.len() as f64 / secs
        } else {
            0.0
        },
    }
}

/// `1234.5` ns as `1.23 µs`, three significant digits.
pub(crate) fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() || ns <= 0.0 {
        return "—".to_owned();
    }
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", sig3(v))
}

/// `1234567` ops/s as `1.23 M`.
pub(crate) fn fmt_rate(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        return "—".to_owned();
    }
    let (v, unit) = if r < 1e3 {
        (r, "")
    } else if r < 1e6 {
        (r / 1e3, " k")
    } else {
        (r / 1e6, " M")
    };
    format!("{}{unit}", sig3(v))
}

/// Three significant digits without trailing noise (`1.50`, `15.0`, `150`).
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

// ---------------------------------------------------------------- row lines

/// Removes what would break a tab-separated line.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\t' || c == '\n' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Serializes a row as `ROW` (one per phase) and `NOTE` lines.
pub(crate) fn to_lines(r: &RowResult) -> String {
    let mut out = String::new();
    for p in &r.phases {
        let _ = writeln!(
            out,
            "ROW\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            clean(&r.row),
            clean(&r.medium),
            r.kind.as_str(),
            r.n,
            clean(&p.phase),
            p.ops,
            p.median_ns,
            p.p99_ns,
            p.ops_per_s
        );
    }
    // A row with no phase still announces itself, before its notes.
    if r.phases.is_empty() {
        let _ = writeln!(
            out,
            "EMPTY\t{}\t{}\t{}\t{}",
            clean(&r.row),
            clean(&r.medium),
            r.kind.as_str(),
            r.n
        );
    }
    for note in &r.notes {
        let _ = writeln!(out, "NOTE\t{}\t{}", clean(&r.row), clean(note));
    }
    out
}

/// Parses what [`to_lines`] wrote (other lines are ignored), keeping row order.
pub(crate) fn from_lines(text: &str) -> Vec<RowResult> {
    let mut rows: Vec<RowResult> = Vec::new();
    fn find<'a>(
        rows: &'a mut Vec<RowResult>,
        name: &str,
        medium: &str,
        kind: Kind,
        n: usize,
    ) -> &'a mut RowResult {
        let idx = match rows.iter().position(|r| r.row == name) {
            Some(i) => i,
            None => {
                rows.push(RowResult::new(name, medium, kind, n));
                rows.len() - 1
            }
        };
        &mut rows[idx]
    }
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["ROW", row, medium, kind, n, phase, ops, median, p99, rate] => {
                let (Some(kind), Ok(n), Ok(ops), Ok(median_ns), Ok(p99_ns), Ok(ops_per_s)) = (
                    Kind::parse(kind),
                    n.parse(),
                    ops.parse(),
                    median.parse(),
                    p99.parse(),
                    rate.parse(),
                ) else {
                    continue;
                };
                find(&mut rows, row, medium, kind, n)
                    .phases
                    .push(PhaseResult {
                        phase: (*phase).to_owned(),
                        ops,
                        median_ns,
                        p99_ns,
                        ops_per_s,
                    });
            }
            ["EMPTY", row, medium, kind, n] => {
                if let (Some(kind), Ok(n)) = (Kind::parse(kind), n.parse()) {
                    find(&mut rows, row, medium, kind, n);
                }
            }
            ["NOTE", row, note] => {
                if let Some(r) = rows.iter_mut().find(|r| r.row == *row) {
                    r.notes.push((*note).to_owned());
                }
            }
            _ => {}
        }
    }
    rows
}

// ---------------------------------------------------------------- inputs

/// splitmix64: a tiny deterministic generator for ids and access order.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the bias of a 64-bit modulo is negligible here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n.max(1) as u64)) as usize
    }
}

/// `n` distinct ids from `seed` (the same on every call, in every process).
pub(crate) fn ids(seed: u64, n: usize) -> Vec<SessionId> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut b = [0u8; 32];
            for chunk in b.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            SessionId::from_bytes(b)
        })
        .collect()
}

/// A printable-ASCII value of `size` bytes; `salt` makes overwrites differ.
pub(crate) fn value(size: usize, salt: u8) -> Vec<u8> {
    (0..size)
        .map(|i| b'a' + ((i as u8).wrapping_add(salt) % 26))
        .collect()
}

// ---------------------------------------------------------------- phases

fn fail(phase: &str, e: impl std::fmt::Display) -> String {
    format!("{phase}: {e}")
}

/// The row's clock must be this `ManualClock` (expiry is moved by hand).
pub(crate) struct Workload<'a> {
    store: Arc<dyn SessionStore>,
    clock: &'a ManualClock,
    settings: Settings,
    caps: Caps,
    ids: Arc<Vec<SessionId>>,
    misses: Vec<SessionId>,
    value: Arc<Vec<u8>>,
    value2: Arc<Vec<u8>>,
    /// Anomalies seen (misses on hits and so on), reported as notes.
    pub(crate) anomalies: Vec<String>,
}

impl<'a> Workload<'a> {
    /// A workload over `store`, whose clock is `clock`.
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        clock: &'a ManualClock,
        settings: Settings,
        caps: Caps,
    ) -> Self {
        let ids = ids(settings.seed, settings.n);
        let misses = self::ids(settings.seed ^ 0x5A5A_5A5A, settings.n);
        Self {
            store,
            clock,
            settings,
            caps,
            ids: Arc::new(ids),
            misses,
            value: Arc::new(value(settings.value_size, 0)),
            value2: Arc::new(value(settings.value_size, 7)),
            anomalies: Vec::new(),
        }
    }

    fn far(&self) -> Timestamp {
        self.clock.now().saturating_add(LIVE_TTL)
    }

    fn note(&mut self, phase: &str, what: &str, count: usize) {
        if count > 0 {
            self.anomalies.push(format!("{phase}: {count} {what}"));
        }
    }

    fn order(&self, salt: u64) -> Vec<usize> {
        let mut rng = Rng::new(self.settings.seed ^ salt);
        (0..self.settings.n)
            .map(|_| rng.below(self.settings.n))
            .collect()
    }

    /// Phases `create` through `save_c64` (everything before `mix_2proc`).
    ///
    /// # Errors
    ///
    /// The first store error, as text naming the phase.
    pub(crate) async fn run_first(&mut self) -> Result<Vec<PhaseResult>, String> {
        let mut out = Vec::new();
        let n = self.settings.n;
        let far = self.far();

        // create
        let mut lat = Vec::with_capacity(n);
        let t0 = Instant::now();
        for id in self.ids.iter() {
            let t = Instant::now();
            self.store
                .create(id, &self.value, far)
                .await
                .map_err(|e| fail("create", e))?;
            lat.push(t.elapsed().as_nanos() as u64);
        }
        out.push(summarize("create", &mut lat, t0.elapsed()));

        // load (hit), uniform random
        let order = self.order(1);
        let mut lat = Vec::with_capacity(n);
        let mut missed = 0;
        let t0 = Instant::now();
        for &i in &order {
            let t = Instant::now();
            let got = self
                .store
                .load(&self.ids[i])
                .await
                .map_err(|e| fail("load_hit", e))?;
            lat.push(t.elapsed().as_nanos() as u64);
            if got.is_none_or(|r| r.data.len() != self.settings.value_size) {
                missed += 1;
            }
        }
        out.push(summarize("load_hit", &mut lat, t0.elapsed()));
        self.note("load_hit", "loads missed or returned wrong sizes", missed);

        // load (miss)
        let mut lat = Vec::with_capacity(n);
        let mut found = 0;
        let t0 = Instant::now();
        for id in &self.misses {
            let t = Instant::now();
            let got = self
                .store
                .load(id)
                .await
                .map_err(|e| fail("load_miss", e))?;
            lat.push(t.elapsed().as_nanos() as u64);
            found += usize::from(got.is_some());
        }
        out.push(summarize("load_miss", &mut lat, t0.elapsed()));
        self.note("load_miss", "absent ids were found", found);

        // save (overwrite), unconditional upsert
        let order = self.order(2);
        let mut lat = Vec::with_capacity(n);
        let t0 = Instant::now();
        for &i in &order {
            let t = Instant::now();
            self.store
                .save(&self.ids[i], &self.value2, far, None)
                .await
                .map_err(|e| fail("save", e))?;
            lat.push(t.elapsed().as_nanos() as u64);
        }
        out.push(summarize("save", &mut lat, t0.elapsed()));

        if self.caps.touch {
            let order = self.order(3);
            let later = far.saturating_add(Duration::from_secs(60));
            let mut lat = Vec::with_capacity(n);
            let mut absent = 0;
            let t0 = Instant::now();
            for &i in &order {
                let t = Instant::now();
                let hit = self
                    .store
                    .touch(&self.ids[i], later)
                    .await
                    .map_err(|e| fail("touch", e))?;
                lat.push(t.elapsed().as_nanos() as u64);
                absent += usize::from(!hit);
            }
            out.push(summarize("touch", &mut lat, t0.elapsed()));
            self.note("touch", "touches found no record", absent);
        }

        if self.caps.update {
            let order = self.order(4);
            let mut lat = Vec::with_capacity(n);
            let t0 = Instant::now();
            for &i in &order {
                let t = Instant::now();
                let mut f = |cur: Option<&session_core::Record>| {
                    // Read-modify-write: flip the first byte of what is there.
                    let mut data = cur.map_or_else(|| self.value.to_vec(), |r| r.data.clone());
                    if let Some(b) = data.first_mut() {
                        *b = if *b == b'a' { b'b' } else { b'a' };
                    }
                    Update::Put {
                        data,
                        expires_at: far,
                    }
                };
                self.store
                    .update(&self.ids[i], &mut f)
                    .await
                    .map_err(|e| fail("update", e))?;
                lat.push(t.elapsed().as_nanos() as u64);
            }
            out.push(summarize("update", &mut lat, t0.elapsed()));
        }

        for (k, tasks) in MIX_TASKS.into_iter().enumerate() {
            let phase = format!("mix_c{tasks}");
            let res = mix(
                self.store.clone(),
                self.ids.clone(),
                self.value.clone(),
                far,
                n,
                tasks,
                self.settings.seed ^ (10 + k as u64),
                0.1,
                self.caps.lossy,
            )
            .await
            .map_err(|e| fail(&phase, e))?;
            let mut lat = res.latencies;
            out.push(summarize(&phase, &mut lat, res.wall));
            self.note(&phase, "operations failed", res.errors);
        }

        let res = mix(
            self.store.clone(),
            self.ids.clone(),
            self.value2.clone(),
            far,
            n,
            WRITERS,
            self.settings.seed ^ 20,
            1.0,
            self.caps.lossy,
        )
        .await
        .map_err(|e| fail("save_c64", e))?;
        let mut lat = res.latencies;
        out.push(summarize("save_c64", &mut lat, res.wall));
        self.note("save_c64", "operations failed", res.errors);
        Ok(out)
    }

    /// Phases `delete` and `delete_expired` (after `mix_2proc`).
    ///
    /// # Errors
    ///
    /// The first store error, as text naming the phase.
    pub(crate) async fn run_last(&mut self) -> Result<Vec<PhaseResult>, String> {
        let mut out = Vec::new();
        let n = self.settings.n;

        // delete every id, in a shuffled order
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(self.settings.seed ^ 5);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut lat = Vec::with_capacity(n);
        let mut absent = 0;
        let t0 = Instant::now();
        for &i in &order {
            let t = Instant::now();
            let removed = self
                .store
                .delete(&self.ids[i])
                .await
                .map_err(|e| fail("delete", e))?;
            lat.push(t.elapsed().as_nanos() as u64);
            absent += usize::from(!removed);
        }
        out.push(summarize("delete", &mut lat, t0.elapsed()));
        if self.caps.counts_expired {
            // Raw engines and peers do not say whether something was removed.
            self.note("delete", "deletes found no record", absent);
        }

        if self.caps.delete_expired {
            let (res, removed) = fill_and_purge(
                &self.store,
                self.clock,
                &self.ids,
                &self.value,
                n.div_ceil(10),
            )
            .await?;
            if self.caps.counts_expired && removed != n.div_ceil(10) as u64 {
                self.anomalies.push(format!(
                    "delete_expired: removed {removed}, expected {}",
                    n.div_ceil(10)
                ));
            }
            out.push(res);
        }
        Ok(out)
    }
}

/// Fills `ids` (untimed, 64 writers) with `expired` of them about to expire, moves
/// the clock past them, and times one `delete_expired`. The figure is per record
/// removed: `median_ns` = wall / expired, `ops_per_s` = expired / wall.
///
/// # Errors
///
/// The first store error, as text.
pub(crate) async fn fill_and_purge(
    store: &Arc<dyn SessionStore>,
    clock: &ManualClock,
    ids: &[SessionId],
    value: &[u8],
    expired: usize,
) -> Result<(PhaseResult, u64), String> {
    let now = clock.now();
    let far = now.saturating_add(LIVE_TTL);
    let soon = now.saturating_add(Duration::from_millis(1));
    let n = ids.len();
    // Spread the expiring ones evenly: every (n / expired)-th id.
    let step = n.checked_div(expired).unwrap_or(usize::MAX).max(1);
    let ids: Arc<Vec<SessionId>> = Arc::new(ids.to_vec());
    let value: Arc<Vec<u8>> = Arc::new(value.to_vec());
    let mut handles = Vec::new();
    for t in 0..WRITERS {
        let (store, ids, value) = (store.clone(), ids.clone(), value.clone());
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < ids.len() {
                let exp = if i % step == 0 && i / step < expired {
                    soon
                } else {
                    far
                };
                // `create`: the ids were all deleted (or never written), and some
                // peers (the file store) cannot `save` what does not exist.
                store.create(&ids[i], &value, exp).await?;
                i += WRITERS;
            }
            Ok::<(), session_core::StoreError>(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| fail("delete_expired fill", e))?
            .map_err(|e| fail("delete_expired fill", e))?;
    }
    clock.advance(Duration::from_secs(1));
    // Peers judge expiry by the wall clock: let the 1 ms pass for them too.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t0 = Instant::now();
    let removed = store
        .delete_expired()
        .await
        .map_err(|e| fail("delete_expired", e))?;
    let wall = t0.elapsed();
    let per = wall.as_nanos() as f64 / expired.max(1) as f64;
    Ok((
        PhaseResult {
            phase: "delete_expired".to_owned(),
            ops: expired as u64,
            median_ns: per,
            p99_ns: per,
            ops_per_s: if wall.as_secs_f64() > 0.0 {
                expired as f64 / wall.as_secs_f64()
            } else {
                0.0
            },
        },
        removed,
    ))
}

/// What one [`mix`] measured.
#[derive(Debug, Clone)]
pub(crate) struct MixResult {
    /// Per-op latencies, ns (failed operations excluded).
    pub(crate) latencies: Vec<u64>,
    /// Wall time of the whole mix.
    pub(crate) wall: Duration,
    /// Operations that failed (only when errors are tolerated).
    pub(crate) errors: usize,
}

/// `total` operations over uniform random ids by `tasks` concurrent tasks:
/// each is a `save` with probability `write_share`, else a `load`. With
/// `tolerate`, failed operations are counted instead of ending the mix (for
/// peers whose writes are not atomic, so a racing read may fail).
///
/// # Errors
///
/// The first store error (unless tolerated).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn mix(
    store: Arc<dyn SessionStore>,
    ids: Arc<Vec<SessionId>>,
    value: Arc<Vec<u8>>,
    expires_at: Timestamp,
    total: usize,
    tasks: usize,
    seed: u64,
    write_share: f64,
    tolerate: bool,
) -> Result<MixResult, session_core::StoreError> {
    let tasks = tasks.max(1);
    let threshold = (write_share * 1_000_000.0) as usize;
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let ops = total / tasks + usize::from(t < total % tasks);
        let (store, ids, value) = (store.clone(), ids.clone(), value.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_add(t as u64 * 7919));
            let mut lat = Vec::with_capacity(ops);
            let mut errors = 0;
            for _ in 0..ops {
                let id = &ids[rng.below(ids.len())];
                let write = rng.below(1_000_000) < threshold;
                let t = Instant::now();
                let res = if write {
                    store.save(id, &value, expires_at, None).await.map(drop)
                } else {
                    store.load(id).await.map(drop)
                };
                match res {
                    Ok(()) => lat.push(t.elapsed().as_nanos() as u64),
                    Err(_) if tolerate => errors += 1,
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, session_core::StoreError>((lat, errors))
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for h in handles {
        let (lat, e) = h.await.map_err(session_core::StoreError::backend)??;
        latencies.extend(lat);
        errors += e;
    }
    Ok(MixResult {
        latencies,
        wall: t0.elapsed(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99_of_odd_and_even_sets() {
        let mut odd = vec![5, 1, 3];
        assert_eq!(percentiles(&mut odd), (3.0, 5.0));
        let mut even = vec![4, 1, 3, 2];
        assert_eq!(percentiles(&mut even), (2.5, 4.0));
        let mut hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut hundred), (50.5, 99.0));
        assert_eq!(percentiles(&mut []), (0.0, 0.0));
    }

    #[test]
    fn summary_rate_uses_wall_time() {
        let mut lat = vec![100; 1_000];
        let p = summarize("load_hit", &mut lat, Duration::from_millis(2));
        assert_eq!(p.ops, 1_000);
        assert!((p.ops_per_s - 500_000.0).abs() < 1e-6);
        assert_eq!(p.median_ns, 100.0);
    }

    #[test]
    fn numbers_format_with_three_digits() {
        assert_eq!(fmt_ns(812.0), "812 ns");
        assert_eq!(fmt_ns(1_234.0), "1.23 µs");
        assert_eq!(fmt_ns(102_400.0), "102 µs");
        assert_eq!(fmt_ns(15_500_000.0), "15.5 ms");
        assert_eq!(fmt_ns(0.0), "—");
        assert_eq!(fmt_rate(950.0), "950");
        assert_eq!(fmt_rate(1_500_000.0), "1.50 M");
        assert_eq!(fmt_rate(f64::NAN), "—");
    }

    #[test]
    fn rows_survive_the_line_format() {
        let mut r = RowResult::new("a\trow", "memory", Kind::Peer, 42);
        r.phases.push(PhaseResult {
            phase: "load_hit".into(),
            ops: 42,
            median_ns: 123.5,
            p99_ns: 900.0,
            ops_per_s: 1e6,
        });
        r.notes.push("one\nnote".into());
        let mut empty = RowResult::new("b", "sqlite", Kind::Raw, 7);
        empty.notes.push("skipped: no URL".into());
        let text = format!("noise\n{}{}", to_lines(&r), to_lines(&empty));
        let back = from_lines(&text);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].row, "a row");
        assert_eq!(back[0].phases, r.phases);
        assert_eq!(back[0].notes, vec!["one note".to_owned()]);
        assert_eq!((back[0].kind, back[0].n), (Kind::Peer, 42));
        assert_eq!((back[1].row.as_str(), back[1].n), ("b", 7));
        assert!(back[1].phases.is_empty());
        assert_eq!(back[1].notes, vec!["skipped: no URL".to_owned()]);
    }

    #[test]
    fn ids_are_distinct_and_reproducible() {
        let a = ids(9, 1_000);
        assert_eq!(a, ids(9, 1_000));
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 1_000);
        assert!(value(64, 3).iter().all(u8::is_ascii_lowercase));
    }
}
