//! One-run measurements behind the crate's "where work runs" choices:
//! `cargo bench -p store-file`. Prints ns per operation for 1 KiB values and
//! the ratios the crate docs quote. Not a criterion bench on purpose: it runs
//! in seconds and every figure comes from the same run.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use session_core::{SessionId, SessionStore, Timestamp};
use store_file::{Durability, FileStore};

const VALUE: usize = 1024;

/// Polls a future that never waits (the store's inline paths) to completion.
fn now_or_never<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn per_op(n: u32, mut f: impl FnMut(u32)) -> f64 {
    for i in 0..n.min(100) {
        f(i); // warm up
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn store(dir: &Path, name: &str, durability: Durability) -> Arc<FileStore> {
    Arc::new(
        FileStore::builder()
            .path(dir.join(name))
            .durability(durability)
            .open()
            .expect("open store"),
    )
}

fn main() {
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("temp dir");
    // Figures that need a runtime enter it rather than `block_on`: the bench
    // thread polls join handles itself, outside tokio's cooperative budget.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let value = vec![0x5au8; VALUE];
    let far = Timestamp::MAX;

    // Raw engine figures.
    let raw_path = dir.path().join("raw");
    let fsync_ns = {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&raw_path)
            .expect("raw file");
        per_op(200, |_| {
            f.write_all(&value).expect("write");
            f.sync_data().expect("fdatasync");
        })
    };
    let fs_ = store(dir.path(), "plain", Durability::None);
    let id = SessionId::generate();
    now_or_never(fs_.save(&id, &value, far, None)).expect("save");
    let session_path = fs_.file_path(&id);
    let raw_read_ns = per_op(50_000, |_| {
        black_box(fs::read(&session_path).expect("read"));
    });
    let raw_open_read_ns = per_op(50_000, |_| {
        let mut f = File::open(&session_path).expect("open");
        let mut buf = Vec::with_capacity(4096);
        std::io::Read::read_to_end(&mut f, &mut buf).expect("read");
        black_box(buf);
    });
    let handoff_ns = {
        let _in_runtime = rt.enter();
        per_op(20_000, |_| {
            // A round trip through the blocking pool, as a store would pay it.
            black_box(futures_block(tokio::task::spawn_blocking(|| 1u8)).expect("join"));
        })
    };

    // Store figures.
    let load_ns = per_op(50_000, |_| {
        black_box(now_or_never(fs_.load(&id)).expect("load"));
    });
    let load_blocking_ns = {
        let _in_runtime = rt.enter();
        per_op(20_000, |_| {
            let s = Arc::clone(&fs_);
            black_box(
                futures_block(tokio::task::spawn_blocking(move || {
                    now_or_never(s.load(&id))
                }))
                .expect("join")
                .expect("load"),
            );
        })
    };
    // The floor for an atomic replace without fsync: create, write, rename.
    let raw_replace_ns = {
        let target = dir.path().join("replace-target");
        per_op(2_000, |i| {
            let tmp = dir.path().join(format!(".tmp{i}"));
            let mut f = File::create(&tmp).expect("create");
            f.write_all(&value).expect("write");
            drop(f);
            fs::rename(&tmp, &target).expect("rename");
        })
    };
    let ids: Vec<SessionId> = (0..1000).map(|_| SessionId::generate()).collect();
    // Outside a runtime the store runs writes inline: the cost of the work itself.
    let save_none_inline_ns = per_op(2_000, |i| {
        let id = &ids[(i % 1000) as usize];
        now_or_never(fs_.save(id, &value, far, None)).expect("save");
    });
    let save_none_ns = {
        let _in_runtime = rt.enter();
        per_op(2_000, |i| {
            let id = &ids[(i % 1000) as usize];
            futures_block(fs_.save(id, &value, far, None)).expect("save");
        })
    };
    let create_none_ns = {
        let _in_runtime = rt.enter();
        let fresh: Vec<SessionId> = (0..2_200).map(|_| SessionId::generate()).collect();
        let mut next = fresh.iter();
        per_op(2_000, |_| {
            let id = next.next().expect("enough ids");
            futures_block(fs_.create(id, &value, far)).expect("create");
        })
    };
    let durable = store(dir.path(), "durable", Durability::Immediate);
    let save_immediate_ns = {
        let _in_runtime = rt.enter();
        per_op(200, |i| {
            let id = &ids[(i % 50) as usize];
            futures_block(durable.save(id, &value, far, None)).expect("save");
        })
    };

    let peer_ns = 632_000.0;
    println!("store-file, 1 KiB values, one run (ns per op)");
    println!("  raw fdatasync of 1 KiB            {fsync_ns:>10.0}");
    println!("  raw fs::read of a session file    {raw_read_ns:>10.0}");
    println!("  raw open+read_to_end+close        {raw_open_read_ns:>10.0}");
    println!("  spawn_blocking round trip         {handoff_ns:>10.0}");
    println!(
        "  load (inline)                     {load_ns:>10.0}  = {:.2}x fs::read, {:.2}x open+read+close",
        load_ns / raw_read_ns,
        load_ns / raw_open_read_ns
    );
    println!(
        "  load via spawn_blocking           {load_blocking_ns:>10.0}  = {:.1}x inline",
        load_blocking_ns / load_ns
    );
    println!("  raw create+write+rename (no fsync) {raw_replace_ns:>9.0}");
    println!(
        "  save(None), None, inline          {save_none_inline_ns:>10.0}  = {:.2}x raw replace, {:.1}x a handoff",
        save_none_inline_ns / raw_replace_ns,
        save_none_inline_ns / handoff_ns
    );
    println!(
        "  save(None), None, spawn_blocking  {save_none_ns:>10.0}  = {:.2}x inline",
        save_none_ns / save_none_inline_ns
    );
    println!("  create, None, spawn_blocking      {create_none_ns:>10.0}");
    println!(
        "  save(None), Immediate             {save_immediate_ns:>10.0}  = {:.2}x raw fdatasync",
        save_immediate_ns / fsync_ns
    );
    println!(
        "  vs tower-sessions-file-store 0.3 load (632 us, from the issue): {:.0}x faster",
        peer_ns / load_ns
    );
}

/// Blocks the bench thread on a future that needs the runtime (a join handle),
/// by parking between polls.
fn futures_block<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
