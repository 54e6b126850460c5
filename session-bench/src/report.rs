//! Turns rows into BENCHMARKS.md (tables, ratios, targets) and an SVG chart.
//!
//! Ratios are same-run and same-medium: "× raw" is our median over the raw
//! engine's median (our overhead; lower is better), "× peer" is the best peer's
//! median over ours (our lead; higher is better).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ScalePoint;
use crate::rows::MEDIA;
use crate::workload::{Kind, PHASES, RowResult, fmt_ns, fmt_rate};

/// The machine and run the figures come from.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    cpu: String,
    cores: usize,
    kernel: String,
    date: String,
    n: usize,
    value_size: usize,
    elapsed: Duration,
    command: String,
}

impl Meta {
    pub(crate) fn collect(n: usize, value_size: usize, elapsed: Duration, command: &str) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel,
            date: utc_date(SystemTime::now()),
            n,
            value_size,
            elapsed,
            command: command.to_owned(),
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` from a system time (civil-from-days, proleptic Gregorian).
pub(crate) fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3_600,
        (rem % 3_600) / 60
    )
}

fn medium_rank(m: &str) -> usize {
    MEDIA
        .iter()
        .position(|(x, _)| *x == m)
        .unwrap_or(MEDIA.len())
}

fn kind_rank(k: Kind) -> usize {
    match k {
        Kind::Ours => 0,
        Kind::Peer => 1,
        Kind::Raw => 2,
    }
}

/// Orders rows by medium, then ours / peer / raw (stable within).
pub(crate) fn sort_rows(rows: &mut [RowResult]) {
    rows.sort_by_key(|r| (medium_rank(&r.medium), kind_rank(r.kind)));
}

fn median(r: &RowResult, phase: &str) -> Option<f64> {
    r.phase(phase).map(|p| p.median_ns).filter(|v| *v > 0.0)
}

/// What ratios compare: the median latency for one-task phases; for the
/// concurrent ones (`mix_*`, `save_c64`) the wall time per operation
/// (1 / throughput), since batching stores trade latency for throughput there.
fn cost(r: &RowResult, phase: &str) -> Option<f64> {
    if phase.starts_with("mix_") || phase.starts_with("save_c") {
        r.phase(phase)
            .map(|p| p.ops_per_s)
            .filter(|v| *v > 0.0)
            .map(|v| 1e9 / v)
    } else {
        median(r, phase)
    }
}

/// The raw row on `r`'s medium.
fn raw_of<'a>(rows: &'a [RowResult], r: &RowResult) -> Option<&'a RowResult> {
    rows.iter()
        .find(|x| x.kind == Kind::Raw && x.medium == r.medium)
}

/// The fastest peer on `r`'s medium for `phase`.
fn best_peer<'a>(rows: &'a [RowResult], r: &RowResult, phase: &str) -> Option<(&'a str, f64)> {
    rows.iter()
        .filter(|x| x.kind == Kind::Peer && x.medium == r.medium)
        .filter_map(|x| cost(x, phase).map(|m| (x.row.as_str(), m)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Our median over the raw engine's (overhead).
pub(crate) fn vs_raw(rows: &[RowResult], r: &RowResult, phase: &str) -> Option<f64> {
    Some(cost(r, phase)? / cost(raw_of(rows, r)?, phase)?)
}

/// Best peer's median over ours (lead).
pub(crate) fn vs_peer(rows: &[RowResult], r: &RowResult, phase: &str) -> Option<f64> {
    Some(best_peer(rows, r, phase)?.1 / cost(r, phase)?)
}

fn x(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}×"))
}

fn n_cell(r: &RowResult, run_n: usize) -> String {
    if r.n < run_n {
        format!("{}*", r.n)
    } else {
        r.n.to_string()
    }
}

/// The headline table: load, save, 64-task mix, and both ratios.
pub(crate) fn headline(rows: &[RowResult]) -> String {
    let run_n = rows.iter().map(|r| r.n).max().unwrap_or(0);
    let mut s = String::from(
        "| row | medium | kind | N | load (hit) | save | mix 90/10 ×64 | load × raw | save × raw | load × peer | save × peer |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let ours = r.kind == Kind::Ours;
        let ratio = |f: fn(&[RowResult], &RowResult, &str) -> Option<f64>, phase: &str| {
            if ours {
                x(f(rows, r, phase))
            } else {
                "—".into()
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} ops/s | {} | {} | {} | {} |",
            if ours {
                format!("**{}**", r.row)
            } else {
                r.row.clone()
            },
            r.medium,
            r.kind.as_str(),
            n_cell(r, run_n),
            fmt_ns(median(r, "load_hit").unwrap_or(0.0)),
            fmt_ns(median(r, "save").unwrap_or(0.0)),
            fmt_rate(r.phase("mix_c64").map_or(0.0, |p| p.ops_per_s)),
            ratio(vs_raw, "load_hit"),
            ratio(vs_raw, "save"),
            ratio(vs_peer, "load_hit"),
            ratio(vs_peer, "save"),
        );
    }
    s
}

fn phase_table(rows: &[RowResult], cell: impl Fn(&RowResult, &str) -> String) -> String {
    let mut s = String::from("| row | N |");
    for p in PHASES {
        let _ = write!(s, " {p} |");
    }
    s.push_str("\n|---|---:|");
    for _ in PHASES {
        s.push_str("---:|");
    }
    s.push('\n');
    let run_n = rows.iter().map(|r| r.n).max().unwrap_or(0);
    for r in rows {
        let _ = write!(s, "| {} | {} |", r.row, n_cell(r, run_n));
        for p in PHASES {
            let _ = write!(s, " {} |", cell(r, p));
        }
        s.push('\n');
    }
    s
}

/// One target line: met / not met with its figures.
struct Target {
    what: String,
    met: Option<bool>,
    figures: String,
}

fn verdict(t: &Target) -> &'static str {
    match t.met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "—",
    }
}

/// The shared-memory store's row name.
const MMAP: &str = "store-mmap (shared memory)";

fn find<'a>(rows: &'a [RowResult], name: &str) -> Option<&'a RowResult> {
    rows.iter().find(|r| r.row == name)
}

fn targets(rows: &[RowResult], scaling: &[ScalePoint]) -> Vec<Target> {
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.kind == Kind::Ours) {
        let (l, s) = (vs_raw(rows, r, "load_hit"), vs_raw(rows, r, "save"));
        if l.is_some() || s.is_some() {
            out.push(Target {
                what: format!("{}: overhead over raw engine ≤ 1.3× (load, save)", r.row),
                met: l.zip(s).map(|(l, s)| l <= 1.3 && s <= 1.3),
                figures: format!("load {} · save {}", x(l), x(s)),
            });
        }
    }
    for r in rows.iter().filter(|r| r.kind == Kind::Ours) {
        let (l, s) = (vs_peer(rows, r, "load_hit"), vs_peer(rows, r, "save"));
        if l.is_none() && s.is_none() {
            continue;
        }
        let need_load = match r.medium.as_str() {
            "sqlite" | "sqlite durable" => 5.0,
            "postgres" | "mysql" => 1.5,
            _ => 1.0,
        };
        let peer = best_peer(rows, r, "load_hit").map_or("—", |p| p.0);
        out.push(Target {
            what: format!(
                "{}: at least as fast as the best peer ({peer}) on load and save; load ≥ {need_load}×",
                r.row
            ),
            met: l.zip(s).map(|(l, s)| l >= need_load && s >= 1.0),
            figures: format!("load {} · save {}", x(l), x(s)),
        });
    }
    if let (Some(m), Some(moka)) = (find(rows, MMAP), find(rows, "tower-sessions-moka-store")) {
        let ratio = |p: &str| Some(median(moka, p)? / median(m, p)?);
        out.push(Target {
            what: "store-mmap beside tower-sessions-moka-store (reference only: moka is \
                   in-process, no peer shares memory across processes)"
                .into(),
            met: None,
            figures: format!(
                "moka ÷ mmap: load {} · save {}",
                x(ratio("load_hit")),
                x(ratio("save"))
            ),
        });
    }
    if let Some(m) = find(rows, MMAP) {
        let (l, s) = (median(m, "load_hit"), median(m, "save"));
        out.push(Target {
            what: "store-mmap: load ≤ 1 µs, save ≤ 1.5 µs (median)".into(),
            met: l.zip(s).map(|(l, s)| l <= 1_000.0 && s <= 1_500.0),
            figures: format!(
                "load {} · save {}",
                fmt_ns(l.unwrap_or(0.0)),
                fmt_ns(s.unwrap_or(0.0))
            ),
        });
    }
    for name in [
        "store-embedded-kv redb durable",
        "store-embedded-kv lmdb durable",
    ] {
        let Some(r) = find(rows, name) else { continue };
        let one = r.phase("save").map(|p| p.ops_per_s);
        let many = r.phase("save_c64").map(|p| p.ops_per_s);
        let gain = one.zip(many).map(|(a, b)| b / a);
        out.push(Target {
            what: format!("{name}: 64 concurrent writers ≥ 10× one writer (group commit)"),
            met: gain.map(|g| g >= 10.0),
            figures: format!(
                "{} → {} saves/s ({})",
                fmt_rate(one.unwrap_or(0.0)),
                fmt_rate(many.unwrap_or(0.0)),
                x(gain)
            ),
        });
    }
    if let [a, b, c] = scaling {
        let per = |p: &ScalePoint| p.wall.as_nanos() as f64 / p.expired.max(1) as f64;
        let flat = per(b) / per(a);
        let by_expired = c.wall.as_secs_f64() / b.wall.as_secs_f64().max(1e-12);
        out.push(Target {
            what: format!(
                "{}: delete_expired time proportional to the expired count",
                crate::SCALING_ROW
            ),
            // Per-record cost flat from 100k to 1M, and 1/10 the expired at 1M
            // takes well under half the time (a full scan would not).
            met: Some(flat <= 2.0 && by_expired <= 0.5),
            figures: format!(
                "{} → {} per expired record (N {}→{}); {} expired take {:.2}× the time of {}",
                fmt_ns(per(a)),
                fmt_ns(per(b)),
                a.n,
                b.n,
                c.expired,
                by_expired,
                b.expired
            ),
        });
    }
    out
}

/// The whole BENCHMARKS.md.
pub(crate) fn markdown(
    rows: &[RowResult],
    scaling: &[ScalePoint],
    skipped: &[String],
    meta: &Meta,
    svg_name: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Generated by `session-bench` (`{}`) on {}: {}, {} cores (shared with other work), \
         Linux {}. N = {} sessions of {} bytes; the run took {:.0} s. Re-run it to check any \
         figure; all ratios are from this one run.\n",
        meta.command,
        meta.date,
        meta.cpu,
        meta.cores,
        meta.kernel,
        meta.n,
        meta.value_size,
        meta.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "![median latency of load and save per row]({svg_name})\n"
    );
    let _ = writeln!(s, "## Headline\n");
    s.push_str(&headline(rows));
    let _ = writeln!(
        s,
        "\nLatencies are medians of single operations. **× raw** = our median ÷ the raw \
         engine's on the same medium (overhead: lower is better; target ≤ 1.3×). **× peer** = \
         the fastest crates.io peer's median ÷ ours (lead: higher is better; target ≥ 1×). \
         `N*` marks a medium that runs a smaller N (durable media pay an fsync per write, \
         servers a round trip and a commit).\n"
    );

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| target | verdict | figures |\n|---|---|---|");
    for t in targets(rows, scaling) {
        let _ = writeln!(s, "| {} | {} | {} |", t.what, verdict(&t), t.figures);
    }

    if !scaling.is_empty() {
        let _ = writeln!(
            s,
            "\n## delete_expired scaling ({})\n\n| N | expired | time | per expired record |\n|---:|---:|---:|---:|",
            crate::SCALING_ROW
        );
        for p in scaling {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                p.n,
                p.expired,
                fmt_ns(p.wall.as_nanos() as f64),
                fmt_ns(p.wall.as_nanos() as f64 / p.expired.max(1) as f64)
            );
        }
    }

    let _ = writeln!(s, "\n## Median latency per operation\n");
    s.push_str(&phase_table(rows, |r, p| {
        fmt_ns(r.phase(p).map_or(0.0, |x| x.median_ns))
    }));
    let _ = writeln!(
        s,
        "\n## Our rows per phase: × raw engine / × best peer\n\n\
         As in the headline (× raw: lower is better; × peer: higher is better), on median \
         latency; for the concurrent phases (`mix_*`, `save_c64`) on throughput, since \
         batching stores trade latency for throughput there.\n"
    );
    let ours: Vec<RowResult> = rows
        .iter()
        .filter(|r| r.kind == Kind::Ours)
        .cloned()
        .collect();
    s.push_str(&phase_table(&ours, |r, p| {
        match (vs_raw(rows, r, p), vs_peer(rows, r, p)) {
            (None, None) => "—".into(),
            (a, b) => format!("{} / {}", x(a), x(b)),
        }
    }));
    let _ = writeln!(
        s,
        "\n## Throughput (operations per second over the phase)\n"
    );
    s.push_str(&phase_table(rows, |r, p| {
        fmt_rate(r.phase(p).map_or(0.0, |x| x.ops_per_s))
    }));

    let _ = writeln!(
        s,
        "\n## How it is measured\n\n\
         * One workload through `SessionStore` for every row: N pre-generated ids, values of \
         printable ASCII. Phases: `create` (N inserts), `load_hit` (N uniform random), \
         `load_miss` (N absent ids), `save` (N random overwrites), `touch`, `update` \
         (read-modify-write), `mix_c1/c8/c64` (N operations, 90% load / 10% save, by 1, 8, 64 \
         tasks), `save_c64` (N saves by 64 tasks: group commit), `mix_2proc` (two processes, \
         one task each, on one store: stores shared across processes only), `delete` (all N), \
         `delete_expired` (refill N, 10% expired; figure per removed record).\n\
         * Each operation is timed alone; the median is over all of a phase's operations. \
         Throughput is operations ÷ the phase's wall time. `mix_2proc` reports the mean of \
         the two processes' medians and the combined throughput.\n\
         * Runtime: tokio, 2 worker threads (2 cores). Raw engines run inline; stores run \
         where they chose (see each crate's docs).\n\
         * Peers (crates.io, tower-sessions 0.14/0.15 stores) run through a thin adapter: \
         the value is one JSON string in the record map, `touch`/`update` are load + save \
         (tower-sessions has neither), `delete_expired` is the peer's `ExpiredDeletion`. \
         The sqlx peers live in `session-bench/peers/` (sqlx's SQLite cannot link beside \
         rusqlite) and are merged into this table. moka is in-process only: it sits beside \
         `store-mmap` for reference, no peer shares memory across processes.\n\
         * Raw engines do the same create/load/save/delete with no session layer: a `HashMap` \
         behind a `Mutex`, one redb / heed transaction per operation, a prepared rusqlite \
         upsert, an sqlx upsert, write(+fsync)+rename of one file.\n\
         * A `—` is a phase the row does not offer (raw engines have no touch, update or \
         expiry index; moka expires by itself)."
    );
    if !skipped.is_empty() {
        let _ = writeln!(s, "\n## Not in this run\n");
        for k in skipped {
            let _ = writeln!(s, "* {k}");
        }
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|r| r.notes.iter().map(move |n| format!("* {}: {n}", r.row)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Notes from the run\n");
        for n in notes {
            let _ = writeln!(s, "{n}");
        }
    }
    s
}

/// Horizontal bars of median load and save latency per row (log scale),
/// coloured by kind. Text is SVG `<text>`: no font files are read.
pub(crate) fn svg(rows: &[RowResult], meta: &Meta) -> Result<String, String> {
    use plotters::prelude::*;

    let rows: Vec<&RowResult> = rows
        .iter()
        .filter(|r| median(r, "load_hit").is_some() || median(r, "save").is_some())
        .collect();
    let count = rows.len().max(1) as i32;
    let height = 90 + 22 * count as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1_200, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(
                &format!(
                    "Median latency per operation (log scale, shorter is faster) · {} · N={}",
                    meta.date, meta.n
                ),
                ("sans-serif", 16),
            )
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        let all: Vec<f64> = rows
            .iter()
            .flat_map(|r| [median(r, "load_hit"), median(r, "save")])
            .flatten()
            .collect();
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
        let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 2.0;
        for (i, (panel, (phase, title))) in panels
            .iter()
            .zip([("load_hit", "load (hit)"), ("save", "save (overwrite)")])
            .enumerate()
        {
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(if i == 0 { 250 } else { 10 })
                .build_cartesian_2d((lo..hi).log_scale(), (0..count).into_segmented())
                .map_err(|e| e.to_string())?;
            let names: Vec<String> = rows.iter().map(|r| r.row.clone()).collect();
            let label = move |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(k) => {
                    let idx = (count - 1 - k) as usize;
                    if i == 0 {
                        names.get(idx).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                }
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(count as usize)
                .y_label_formatter(&label)
                .x_desc("ns per operation")
                .x_label_formatter(&|v| fmt_ns(*v))
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| e.to_string())?;
            let bars = rows.iter().enumerate().filter_map(|(k, r)| {
                let v = median(r, phase)?;
                let y = count - 1 - k as i32;
                let color = match r.kind {
                    Kind::Ours => RGBColor(0x1f, 0x77, 0xb4),
                    Kind::Peer => RGBColor(0xff, 0x7f, 0x0e),
                    Kind::Raw => RGBColor(0x99, 0x99, 0x99),
                };
                let mut rect = Rectangle::new(
                    [
                        (lo, SegmentValue::Exact(y)),
                        (v, SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                );
                rect.set_margin(3, 3, 0, 0);
                Some(rect)
            });
            chart.draw_series(bars).map_err(|e| e.to_string())?;
            if i == 1 {
                // Legend: ours / peer / raw.
                for (j, (name, color)) in [
                    ("ours", RGBColor(0x1f, 0x77, 0xb4)),
                    ("peer (crates.io)", RGBColor(0xff, 0x7f, 0x0e)),
                    ("raw engine (limit)", RGBColor(0x99, 0x99, 0x99)),
                ]
                .into_iter()
                .enumerate()
                {
                    let y = 30 + 18 * j as i32;
                    panel
                        .draw(&Rectangle::new([(420, y), (432, y + 12)], color.filled()))
                        .map_err(|e| e.to_string())?;
                    panel
                        .draw(&Text::new(name, (438, y), ("sans-serif", 12)))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::PhaseResult;

    fn row(name: &str, medium: &str, kind: Kind, load: f64, save: f64) -> RowResult {
        let mut r = RowResult::new(name, medium, kind, 100);
        for (phase, m) in [("load_hit", load), ("save", save)] {
            r.phases.push(PhaseResult {
                phase: phase.into(),
                ops: 100,
                median_ns: m,
                p99_ns: m,
                ops_per_s: 1e9 / m,
            });
        }
        r
    }

    #[test]
    fn ratios_compare_within_a_medium() {
        let mut rows = vec![
            row("raw", "sqlite", Kind::Raw, 5_000.0, 10_000.0),
            row("peer-a", "sqlite", Kind::Peer, 100_000.0, 200_000.0),
            row("ours", "sqlite", Kind::Ours, 6_000.0, 11_000.0),
            row("peer-b", "sqlite", Kind::Peer, 60_000.0, 400_000.0),
            row("mem", "memory", Kind::Ours, 100.0, 200.0),
        ];
        sort_rows(&mut rows);
        assert_eq!(rows[0].row, "mem");
        assert_eq!(rows[1].row, "ours");
        assert_eq!(rows[4].row, "raw");
        let ours = &rows[1];
        assert!((vs_raw(&rows, ours, "load_hit").unwrap() - 1.2).abs() < 1e-9);
        // best peer on load is peer-b (60 µs), on save peer-a (200 µs)
        assert!((vs_peer(&rows, ours, "load_hit").unwrap() - 10.0).abs() < 1e-9);
        assert!((vs_peer(&rows, ours, "save").unwrap() - 200.0 / 11.0).abs() < 1e-9);
        assert_eq!(vs_raw(&rows, &rows[0], "load_hit"), None);
        let table = headline(&rows);
        assert!(table.contains("| **ours** | sqlite | ours | 100 | 6.00 µs | 11.0 µs |"));
        let t = targets(&rows, &[]);
        assert!(
            t.iter()
                .any(|t| t.what.starts_with("ours: overhead") && t.met == Some(true))
        );
        assert!(
            t.iter()
                .any(|t| t.what.starts_with("ours: at least") && t.met == Some(true))
        );
    }

    #[test]
    fn dates_are_civil_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_date(t), "2023-11-14 22:13 UTC");
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01 00:00 UTC");
    }

    #[test]
    fn chart_is_an_svg_with_every_row() {
        let rows = vec![
            row("alpha", "memory", Kind::Ours, 300.0, 500.0),
            row("beta", "memory", Kind::Raw, 100.0, 150.0),
        ];
        let meta = Meta::collect(100, 1024, Duration::from_secs(1), "test");
        let svg = svg(&rows, &meta).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        assert!(svg.contains("alpha") && svg.contains("beta"));
    }
}
