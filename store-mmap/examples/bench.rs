//! One-run benchmark of the mmap store against in-process baselines.
//!
//! `cargo run --release -p store-mmap --example bench` (100,000 ids, 1 KiB values,
//! the workload of issue 6). Prints medians and ratios; asserts nothing.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_core::{MemoryStore, SessionId, SessionStore, Timestamp};
use store_mmap::MmapStore;

const IDS: usize = 100_000;
const VALUE: usize = 1024;

fn ids() -> Vec<SessionId> {
    (0..IDS as u64)
        .map(|n| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            b[8..16].copy_from_slice(&n.to_le_bytes());
            SessionId::from_bytes(b)
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2] as f64
}

fn time_each<F: FnMut(usize)>(n: usize, mut f: F) -> f64 {
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let s = Instant::now();
        f(i);
        t.push(s.elapsed().as_nanos() as u64);
    }
    median(t)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The store's futures finish on first poll (all work is inline), so a
    // trivial executor measures the store, not a runtime.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn open(path: &std::path::Path) -> MmapStore {
    // 100,000 × (1 KiB + 80) needs ~108 MiB; 256 MiB keeps eviction away.
    MmapStore::builder()
        .path(path)
        .size(256 << 20)
        .pages(256)
        .open()
        .unwrap()
}

/// CPU time this process has run, from /proc/self/schedstat (ns).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs the 90/10 mix; returns (ops, CPU ns) of the measured part, after one
/// second of warm-up (first touches of the mapping fault pages in).
fn mix(path: &std::path::Path, secs: u64, seed: u64) -> (u64, u64) {
    let s = open(path);
    let ids = ids();
    let exp = Timestamp::MAX;
    let data = vec![7u8; VALUE];
    let mut x = seed | 1;
    let mut ops = 0u64;
    let mut cpu0 = 0;
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs(secs);
    let mut warming = true;
    while Instant::now() < end {
        if warming && Instant::now() >= warm {
            warming = false;
            ops = 0;
            cpu0 = cpu_ns();
        }
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = &ids[(x % IDS as u64) as usize];
            if x.is_multiple_of(10) {
                block_on(s.save(id, &data, exp, None)).unwrap();
            } else {
                block_on(s.load(id)).unwrap();
            }
            ops += 1;
        }
    }
    (ops, cpu_ns() - cpu0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let (ops, cpu) = mix(
            std::path::Path::new(&args[2]),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        );
        println!("{ops} {cpu}");
        return;
    }
    // BENCH_DIR=/dev/shm puts the file on tmpfs (no writeback of dirty pages).
    let dir = match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("bench.cache");
    let ids = ids();
    let data = vec![7u8; VALUE];
    let exp = Timestamp::MAX;

    let s = open(&path);
    let save = time_each(IDS, |i| {
        block_on(s.save(&ids[i], &data, exp, None)).unwrap();
    });
    let save2 = time_each(IDS, |i| {
        block_on(s.save(&ids[i], &data, exp, None)).unwrap();
    });
    let load = time_each(IDS, |i| {
        let r = block_on(s.load(&ids[(i * 7919) % IDS])).unwrap();
        assert!(r.is_some());
    });
    let st = block_on(s.stats()).unwrap();
    let evicted = st
        .details
        .iter()
        .find(|(k, _)| k == "evicted_live")
        .unwrap()
        .1
        .clone();

    let mem = MemoryStore::new();
    let mem_save = time_each(IDS, |i| {
        block_on(mem.save(&ids[i], &data, exp, None)).unwrap();
    });
    let mem_load = time_each(IDS, |i| {
        block_on(mem.load(&ids[(i * 7919) % IDS])).unwrap();
    });
    let map: Mutex<HashMap<SessionId, Vec<u8>>> = Mutex::new(HashMap::new());
    let map_save = time_each(IDS, |i| {
        map.lock().unwrap().insert(ids[i], data.clone());
    });
    let map_load = time_each(IDS, |i| {
        let v = map.lock().unwrap().get(&ids[(i * 7919) % IDS]).cloned();
        assert!(v.is_some());
    });

    // Lock costs: OFD fcntl pair vs an uncontended lock word (CAS + store), the
    // core of a robust shared-memory mutex or a pid-stamped lock word.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let ofd = store_mmap::bench_support::ofd_lock_pair_ns(&f, 200_000).unwrap();
    let page_lock = store_mmap::bench_support::page_lock_pair_ns(&s, 2_000_000).unwrap();
    let word = Arc::new(AtomicU64::new(0));
    let me = u64::from(std::process::id());
    let t = Instant::now();
    for _ in 0..2_000_000u32 {
        while word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {}
        word.store(0, Ordering::Release);
    }
    let cas = t.elapsed().as_nanos() as f64 / 2_000_000.0;
    let m = Mutex::new(());
    let t = Instant::now();
    for _ in 0..2_000_000u32 {
        drop(m.lock().unwrap());
    }
    let mutex = t.elapsed().as_nanos() as f64 / 2_000_000.0;

    // Two processes, 90 % load / 10 % save on shared ids, 3 s.
    let exe = std::env::current_exe().unwrap();
    let procs: u64 = std::env::var("BENCH_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let kids: Vec<_> = (0..procs)
        .map(|k| {
            Command::new(&exe)
                .args([
                    "--child",
                    path.to_str().unwrap(),
                    "3",
                    &(k + 11).to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut total, mut cpu) = (0u64, 0u64);
    for k in kids {
        let out = String::from_utf8(k.wait_with_output().unwrap().stdout).unwrap();
        let mut f = out.split_whitespace().map(|x| x.parse::<u64>().unwrap());
        total += f.next().unwrap();
        cpu += f.next().unwrap();
    }
    let mix_rate = total as f64 / 3.0;
    let per_cpu = total as f64 / (cpu as f64 / 1e9);
    println!(
        "workload: {IDS} ids, {VALUE}-byte values, release build, file in {}; medians in ns/op",
        dir.path().display()
    );
    println!(
        "mmap   save (insert) {save:>7.0}   save (overwrite) {save2:>7.0}   load {load:>7.0}   evicted_live {evicted}"
    );
    println!(
        "memory save          {mem_save:>7.0}                            load {mem_load:>7.0}   (session-core MemoryStore)"
    );
    println!(
        "hashmap insert       {map_save:>7.0}                            get+clone {map_load:>7.0}   (Mutex<HashMap>)"
    );
    println!(
        "{procs}-process 90/10 mix: {mix_rate:.0} ops/s wall-clock total, {per_cpu:.0} ops per CPU-second ({:.0} ns CPU/op)",
        1e9 / per_cpu
    );
    println!(
        "lock+unlock pair: store page lock (mutex + lock word) {page_lock:.1} ns, OFD fcntl {ofd:.0} ns, bare CAS {cas:.1} ns, std Mutex {mutex:.1} ns"
    );
    println!(
        "ratios: mmap load / HashMap get = {:.2}, mmap load / MemoryStore load = {:.2}, FastMmap 6.9 µs / mmap load = {:.1}x, FastMmap 7.5 µs / mmap save = {:.1}x, OFD pair / page lock pair = {:.0}x",
        load / map_load,
        load / mem_load,
        6_900.0 / load,
        7_500.0 / save2,
        ofd / page_lock
    );
}
