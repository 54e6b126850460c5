//! `session-bench`: one workload through `SessionStore`, run against every
//! store of this workspace, its crates.io peers on the same medium, and the raw
//! engine underneath (the limit), in one run on one machine.
//!
//! ```text
//! cargo run --release -p session-bench                 # full run, writes BENCHMARKS.md + benchmarks.svg
//! cargo run --release -p session-bench -- --peers      # also the sqlx peers (separate workspace peers/)
//! cargo run -p session-bench -- --quick                # smoke test of every row; writes nothing
//! ```
//!
//! Flags: `--n N` (sessions, default 100000), `--value-size B` (default 1024),
//! `--quick` (N = 200, no files written unless `--out`), `--only A,B` (rows
//! whose name or medium contains A or B), `--peers` (build and run
//! `peers/`, merging its rows), `--out FILE` (markdown; the SVG goes beside it),
//! `--no-scaling` (skip the `delete_expired` N = 100k / 1M comparison),
//! `--dir DIR` (scratch space, default the system temp dir).
//!
//! Each row gets a fresh store in a fresh directory (or server table, dropped
//! afterwards) and runs the phases of `workload::PHASES`; slow media run a
//! smaller N (`rows::MEDIA`: file 10k, servers and durable media 2k, SQLite
//! 20k), which the table marks `N*`. PostgreSQL / MySQL rows run when
//! `SESSIONS_TEST_POSTGRES_URL` / `SESSIONS_TEST_MYSQL_URL` are set.
//!
//! Invariants: only same-run, same-medium figures are compared; a row that
//! gives a wrong answer (a missed hit, a found miss, a wrong purge count) fails
//! the run (exit 1), except for caches that may evict (mmap) and peers whose
//! writes are not atomic (the file peer), where it becomes a note. No timing is
//! ever asserted.
//!
//! Row format between processes (the peers binary and `mix_2proc` children):
//! tab-separated `ROW row medium kind n phase ops median_ns p99_ns ops_per_s`
//! lines plus `NOTE row text` (see `workload::to_lines`).
//!
//! Where work runs: the workload runs on a 2-worker tokio runtime (the machine
//! has 2 cores). Raw engines run inline on the task — they are the limit, and a
//! thread handoff (≈ 45 µs measured here) would cost more than any of their
//! in-memory operations; stores run where they chose (see each crate's docs).
// heed (LMDB) opens its environment with `unsafe`; that one raw-engine call
// (in `raw.rs`) is allowed, with its SAFETY comment. Nothing else may be unsafe.
#![deny(unsafe_code)]

#[macro_use]
mod tower_adapter;
mod raw;
mod report;
mod rows;
mod workload;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Clock as _, ManualClock, SystemClock, Timestamp};

use crate::rows::{Ctx, Row};
use crate::workload::{PhaseResult, RowResult, Settings, Workload};

tower_adapter!(tower14, tower_sessions_core);
tower_adapter!(tower15, tower_sessions_core_015);

/// Parsed command line.
#[derive(Debug, Clone)]
struct Args {
    n: usize,
    value_size: usize,
    quick: bool,
    only: Vec<String>,
    peers: bool,
    out: Option<PathBuf>,
    scaling: bool,
    dir: PathBuf,
    seed: u64,
    child: Option<Child>,
}

/// The second process of `mix_2proc`.
#[derive(Debug, Clone)]
struct Child {
    row: String,
    table: String,
    clock_ms: i64,
    ops: usize,
}

fn usage() -> &'static str {
    "usage: session-bench [--n N] [--value-size BYTES] [--quick] [--only NAME[,NAME..]] \
     [--peers] [--out FILE.md] [--no-scaling] [--dir DIR]"
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        value_size: 1024,
        quick: false,
        only: Vec::new(),
        peers: false,
        out: None,
        scaling: true,
        dir: std::env::temp_dir(),
        seed: 0x5E55_1011,
        child: None,
    };
    let mut n_given = false;
    let mut child_row = None;
    let (mut table, mut clock_ms, mut ops) = (String::new(), 0i64, 0usize);
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--n" => {
                a.n = num(val()?)?.max(10);
                n_given = true;
            }
            "--value-size" => a.value_size = num(val()?)?,
            "--quick" => a.quick = true,
            "--only" => a.only.extend(
                val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_lowercase),
            ),
            "--peers" => a.peers = true,
            "--out" => a.out = Some(PathBuf::from(val()?)),
            "--no-scaling" => a.scaling = false,
            "--dir" => a.dir = PathBuf::from(val()?),
            "--seed" => a.seed = num(val()?)? as u64,
            "--child-mix" => child_row = Some(val()?),
            "--table" => table = val()?,
            "--clock" => clock_ms = val()?.parse().map_err(|e| format!("--clock: {e}"))?,
            "--ops" => ops = num(val()?)?,
            "-h" | "--help" => return Err(usage().to_owned()),
            other => return Err(format!("unknown flag {other}\n{}", usage())),
        }
    }
    if a.quick && !n_given {
        a.n = 200;
    }
    a.child = child_row.map(|row| Child {
        row,
        table,
        clock_ms,
        ops,
    });
    Ok(a)
}

fn selected(only: &[String], name: &str, medium: &str) -> bool {
    let (name, medium) = (name.to_lowercase(), medium.to_lowercase());
    only.is_empty()
        || only
            .iter()
            .any(|f| name.contains(f.as_str()) || medium.contains(f.as_str()))
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("session-bench: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &args.child {
        Some(child) => rt.block_on(run_child(&args, child)),
        None => rt.block_on(run_parent(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("session-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A directory and table name for row `idx` of this run.
fn ctx_for(args: &Args, idx: usize, row: &Row, n: usize, clock: ManualClock) -> Ctx {
    let pid = std::process::id();
    Ctx {
        dir: args
            .dir
            .join(format!("session-bench-{pid}"))
            .join(format!("{idx:02}")),
        clock,
        table: format!("sb{}_{idx}", pid % 1_000_000),
        url: row.url_env.and_then(|v| std::env::var(v).ok()),
        n,
        value_size: args.value_size,
    }
}

fn server_of(medium: &str) -> Option<raw::Server> {
    match medium {
        "postgres" => Some(raw::Server::Postgres),
        "mysql" => Some(raw::Server::MySql),
        _ => None,
    }
}

async fn run_parent(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let mut results: Vec<RowResult> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut failed = 0usize;
    let rows = rows::all();
    for (idx, row) in rows.iter().enumerate() {
        if !selected(&args.only, row.name, row.medium) {
            continue;
        }
        if let Some(var) = row.url_env
            && std::env::var(var).is_err()
        {
            skipped.push(format!("{} ({var} not set)", row.name));
            continue;
        }
        let n = rows::capped_n(row.medium, args.n);
        eprint!("{:<34} N={n:<7} ", row.name);
        let t = Instant::now();
        let mut r = RowResult::new(row.name, row.medium, row.kind, n);
        match run_row(args, idx, row, n).await {
            Ok((phases, notes)) => {
                r.phases = phases;
                if notes.is_empty() || row.caps.lossy {
                    eprintln!("ok in {:.1} s", t.elapsed().as_secs_f64());
                } else {
                    // A correct store never misses a hit or miscounts a purge.
                    failed += 1;
                    eprintln!("WRONG ANSWERS: {}", notes.join("; "));
                }
                r.notes = notes;
            }
            Err(e) => {
                failed += 1;
                eprintln!("FAILED: {e}");
                r.notes.push(format!("failed: {e}"));
            }
        }
        print!("{}", workload::to_lines(&r));
        results.push(r);
    }

    if args.peers {
        match run_peers(args) {
            Ok(peer_rows) => {
                for r in peer_rows {
                    if r.notes.iter().any(|n| n.starts_with("failed")) {
                        failed += 1;
                    }
                    if r.notes.iter().any(|n| n.starts_with("skipped")) {
                        skipped.push(format!("{} ({})", r.row, r.notes.join("; ")));
                        continue;
                    }
                    results.push(r);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("peers: FAILED: {e}");
            }
        }
    } else {
        skipped.push(
            "tower-sessions-sqlx-store peers (SQLite, PostgreSQL, MySQL): run with --peers".into(),
        );
    }
    report::sort_rows(&mut results);

    let scaling = if args.scaling && selected(&args.only, SCALING_ROW, "redb") {
        match run_scaling(args).await {
            Ok(s) => s,
            Err(e) => {
                failed += 1;
                eprintln!("delete_expired scaling: FAILED: {e}");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };

    // Every row and scaling point removed its own directory; drop their parent.
    let _ = std::fs::remove_dir_all(
        args.dir
            .join(format!("session-bench-{}", std::process::id())),
    );

    let out = match (&args.out, args.quick) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md")),
        (None, true) => None,
    };
    let meta = report::Meta::collect(args.n, args.value_size, started.elapsed(), &argv_line());
    println!("{}", report::headline(&results));
    if let Some(md_path) = out {
        // BENCHMARKS.md → benchmarks.svg beside it.
        let stem = md_path.file_stem().map_or_else(
            || "benchmarks".into(),
            |s| s.to_string_lossy().to_lowercase(),
        );
        let svg_path = md_path.with_file_name(format!("{stem}.svg"));
        let svg_name = svg_path.file_name().map_or_else(
            || "benchmarks.svg".into(),
            |s| s.to_string_lossy().into_owned(),
        );
        let svg = report::svg(&results, &meta).map_err(|e| format!("chart: {e}"))?;
        std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
        let md = report::markdown(&results, &scaling, &skipped, &meta, &svg_name);
        std::fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
        eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    }
    eprintln!(
        "{} rows, {} failed, {} skipped, {:.1} s",
        results.len(),
        failed,
        skipped.len(),
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        return Err(format!("{failed} row(s) failed"));
    }
    Ok(())
}

fn argv_line() -> String {
    let rest: Vec<String> = std::env::args().skip(1).collect();
    if rest.is_empty() {
        "cargo run --release -p session-bench".to_owned()
    } else {
        format!("cargo run --release -p session-bench -- {}", rest.join(" "))
    }
}

/// Runs every phase of one row on a fresh store.
async fn run_row(
    args: &Args,
    idx: usize,
    row: &Row,
    n: usize,
) -> Result<(Vec<PhaseResult>, Vec<String>), String> {
    let clock = ManualClock::new(SystemClock.now());
    let ctx = ctx_for(args, idx, row, n, clock.clone());
    std::fs::create_dir_all(&ctx.dir).map_err(|e| format!("{}: {e}", ctx.dir.display()))?;
    let server = server_of(row.medium);
    if let (Some(server), Some(url)) = (server, &ctx.url) {
        raw::drop_table(server, url, &ctx.table)
            .await
            .map_err(|e| format!("drop table: {e}"))?;
    }
    let settings = Settings {
        n,
        value_size: args.value_size,
        seed: args.seed,
    };
    let result = async {
        let store = (row.open)(ctx.clone())
            .await
            .map_err(|e| format!("open: {e}"))?;
        let mut wl = Workload::new(store.clone(), &clock, settings, row.caps);
        let mut phases = wl.run_first().await?;
        if row.caps.multi_process {
            phases.push(two_process_mix(args, &ctx, row, store.clone(), &settings).await?);
        }
        phases.extend(wl.run_last().await?);
        let notes = std::mem::take(&mut wl.anomalies);
        drop(wl);
        drop(store);
        Ok::<_, String>((phases, notes))
    }
    .await;
    if let (Some(server), Some(url)) = (server, &ctx.url) {
        let _ = raw::drop_table(server, url, &ctx.table).await;
    }
    let _ = std::fs::remove_dir_all(&ctx.dir);
    let _ = std::fs::remove_file(rows::mmap_path(&ctx));
    result
}

/// `mix_2proc`: this process and a child each run half of a 1-task 90/10 mix
/// on the same store at the same time. Throughput is both counts over the
/// longer wall time; the median is the mean of the two processes' medians.
async fn two_process_mix(
    args: &Args,
    ctx: &Ctx,
    row: &Row,
    store: Arc<dyn session_core::SessionStore>,
    s: &Settings,
) -> Result<PhaseResult, String> {
    let fail = |e: &dyn std::fmt::Display| format!("mix_2proc: {e}");
    let exe = std::env::current_exe().map_err(|e| fail(&e))?;
    let half = s.n / 2;
    let mut child = Command::new(exe)
        .args([
            "--child-mix",
            row.name,
            "--dir",
            &args.dir.to_string_lossy(),
            "--table",
            &ctx.table,
            "--clock",
            &ctx.clock.now().as_millis().to_string(),
            "--n",
            &s.n.to_string(),
            "--value-size",
            &s.value_size.to_string(),
            "--seed",
            &s.seed.to_string(),
            "--ops",
            &half.to_string(),
        ])
        .env("SESSION_BENCH_CHILD_DIR", &ctx.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(&e))?;
    let mut stdin = child.stdin.take().ok_or("mix_2proc: no stdin")?;
    let stdout = child.stdout.take().ok_or("mix_2proc: no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |prefix: &str| -> Result<String, String> {
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(l) if l.starts_with(prefix) => return Ok(l),
                Ok(_) => {}
                Err(e) => return Err(format!("mix_2proc: child said no {prefix}: {e}")),
            }
        }
    };
    let ready = tokio::task::block_in_place(|| wait_line("READY"));
    if let Err(e) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    writeln!(stdin, "GO").map_err(|e| fail(&e))?;
    stdin.flush().map_err(|e| fail(&e))?;
    let ids = Arc::new(workload::ids(s.seed, s.n));
    let value = Arc::new(workload::value(s.value_size, 3));
    let far = ctx.clock.now().saturating_add(Duration::from_secs(3_600));
    let mine = workload::mix(store, ids, value, far, half, 1, s.seed ^ 30, 0.1, false)
        .await
        .map_err(|e| fail(&e))?;
    let line = tokio::task::block_in_place(|| wait_line("MIX"));
    let _ = child.wait();
    let line = line?;
    let f: Vec<&str> = line.split('\t').collect();
    let (Some(ops), Some(wall_ns), Some(median)) = (
        f.get(1).and_then(|v| v.parse::<u64>().ok()),
        f.get(2).and_then(|v| v.parse::<u64>().ok()),
        f.get(3).and_then(|v| v.parse::<f64>().ok()),
    ) else {
        return Err(format!("mix_2proc: bad child line {line:?}"));
    };
    let mut lat = mine.latencies.clone();
    let own = workload::summarize("mix_2proc", &mut lat, mine.wall);
    let wall = mine.wall.max(Duration::from_nanos(wall_ns));
    let total = own.ops + ops;
    Ok(PhaseResult {
        phase: "mix_2proc".into(),
        ops: total,
        median_ns: (own.median_ns + median) / 2.0,
        p99_ns: own.p99_ns,
        ops_per_s: total as f64 / wall.as_secs_f64().max(1e-9),
    })
}

/// The child side of `mix_2proc`: open the row's store on the parent's data,
/// say READY, wait for GO, run the mix, print `MIX ops wall_ns median p99`.
async fn run_child(args: &Args, child: &Child) -> Result<(), String> {
    let rows = rows::all();
    let row = rows
        .iter()
        .find(|r| r.name == child.row)
        .ok_or_else(|| format!("no row {}", child.row))?;
    let dir = std::env::var_os("SESSION_BENCH_CHILD_DIR")
        .map(PathBuf::from)
        .ok_or("SESSION_BENCH_CHILD_DIR not set")?;
    let clock = ManualClock::new(Timestamp::from_millis(child.clock_ms));
    let ctx = Ctx {
        dir,
        clock: clock.clone(),
        table: child.table.clone(),
        url: row.url_env.and_then(|v| std::env::var(v).ok()),
        n: args.n,
        value_size: args.value_size,
    };
    let store = (row.open)(ctx).await.map_err(|e| format!("open: {e}"))?;
    println!("READY");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let ids = Arc::new(workload::ids(args.seed, args.n));
    let value = Arc::new(workload::value(args.value_size, 5));
    let far = clock.now().saturating_add(Duration::from_secs(3_600));
    let mut res = workload::mix(
        store,
        ids,
        value,
        far,
        child.ops,
        1,
        args.seed ^ 31,
        0.1,
        false,
    )
    .await
    .map_err(|e| e.to_string())?;
    let (median, p99) = workload::percentiles(&mut res.latencies);
    println!(
        "MIX\t{}\t{}\t{median}\t{p99}",
        res.latencies.len(),
        res.wall.as_nanos()
    );
    Ok(())
}

/// Builds and runs the peers workspace, returning its rows.
fn run_peers(args: &Args) -> Result<Vec<RowResult>, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("run")
        .arg("--release")
        .arg("--manifest-path")
        .arg(&manifest);
    cmd.arg("--").arg("--n").arg(args.n.to_string());
    cmd.arg("--value-size").arg(args.value_size.to_string());
    cmd.arg("--seed").arg(args.seed.to_string());
    cmd.arg("--dir").arg(&args.dir);
    if !args.only.is_empty() {
        cmd.arg("--only").arg(args.only.join(","));
    }
    // The peers build their own lock file and target dir unless told otherwise.
    if std::env::var_os("CARGO_TARGET_DIR").is_some() {
        let base = PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_default());
        cmd.env("CARGO_TARGET_DIR", base.join("peers"));
    }
    eprintln!("peers: {cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo for peers: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let rows = workload::from_lines(&text);
    if !out.status.success() && rows.is_empty() {
        return Err(format!("peers exited with {}", out.status));
    }
    Ok(rows)
}

/// Row the `delete_expired` scaling check runs on (it has an expiry index).
const SCALING_ROW: &str = "store-embedded-kv redb";

/// One point of the `delete_expired` scaling comparison.
#[derive(Debug, Clone)]
pub(crate) struct ScalePoint {
    n: usize,
    expired: usize,
    wall: Duration,
}

async fn run_scaling(args: &Args) -> Result<Vec<ScalePoint>, String> {
    let rows = rows::all();
    let row = rows
        .iter()
        .find(|r| r.name == SCALING_ROW)
        .ok_or("no scaling row")?;
    let (small, big) = if args.quick {
        (args.n, args.n * 10)
    } else {
        (100_000, 1_000_000)
    };
    let mut out = Vec::new();
    for (i, (n, expired)) in [(small, small / 10), (big, big / 10), (big, big / 100)]
        .into_iter()
        .enumerate()
    {
        eprint!("delete_expired scaling N={n} expired={expired} ");
        let clock = ManualClock::new(SystemClock.now());
        let ctx = ctx_for(args, 90 + i, row, n, clock.clone());
        std::fs::create_dir_all(&ctx.dir).map_err(|e| e.to_string())?;
        let store = (row.open)(ctx.clone()).await.map_err(|e| e.to_string())?;
        let ids = workload::ids(args.seed ^ 77, n);
        let value = workload::value(args.value_size, 1);
        let (res, removed) =
            workload::fill_and_purge(&store, &clock, &ids, &value, expired).await?;
        drop(store);
        let _ = std::fs::remove_dir_all(&ctx.dir);
        if removed != expired as u64 {
            return Err(format!("removed {removed}, expected {expired}"));
        }
        let wall = Duration::from_nanos((res.median_ns * expired as f64) as u64);
        eprintln!("{:.1} ms", wall.as_secs_f64() * 1e3);
        out.push(ScalePoint { n, expired, wall });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Kind;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_parse_and_quick_shrinks_n() {
        let a = parse_args(&argv("--quick --only redb,Memory --value-size 64")).unwrap();
        assert_eq!((a.n, a.value_size, a.quick), (200, 64, true));
        assert_eq!(a.only, vec!["redb".to_owned(), "memory".to_owned()]);
        let a = parse_args(&argv("--quick --n 1000")).unwrap();
        assert_eq!(a.n, 1000);
        assert!(parse_args(&argv("--bogus")).is_err());
        assert!(parse_args(&argv("--n")).is_err());
    }

    #[test]
    fn only_filter_matches_name_or_medium() {
        let only = vec!["durable".to_owned()];
        assert!(selected(&only, "store-file durable", "file durable"));
        assert!(selected(&only, "redb txn", "redb durable"));
        assert!(!selected(&only, "MemoryStore", "memory"));
        assert!(selected(&[], "anything", "memory"));
        assert_eq!(rows::capped_n("sqlite durable", 100_000), 2_000);
        assert_eq!(rows::capped_n("memory", 100_000), 100_000);
    }

    #[test]
    fn every_row_has_a_known_medium_and_a_unique_name() {
        let rows = rows::all();
        let mut names = std::collections::HashSet::new();
        for r in &rows {
            assert!(names.insert(r.name), "duplicate row {}", r.name);
            assert!(
                rows::MEDIA.iter().any(|(m, _)| *m == r.medium),
                "{}",
                r.medium
            );
        }
        assert!(rows.iter().any(|r| r.kind == Kind::Raw));
    }
}
