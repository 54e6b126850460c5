//! One-run benchmark: this store against the raw engine doing the same work.
//!
//! `cargo run --release -p store-embedded-kv --all-features --example bench [ids]`
//!
//! 1 KiB values, one transaction per write for the raw engines; the store's
//! figures go through the `SessionStore` trait on a tokio runtime.
//! "overwrite median" re-saves every id with the same expiry and size (the
//! store) or re-inserts every key (raw) and reports the median per write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{SessionId, SessionStore, Timestamp};
use store_embedded_kv::{Durability, EmbeddedStore, Engine};

const VALUE: usize = 1024;

fn per_op(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// Median of per-op latencies, µs.
fn median(lat: &mut [Duration]) -> f64 {
    lat.sort_unstable();
    lat.get(lat.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn ids(n: usize) -> Vec<SessionId> {
    (0..n).map(|_| SessionId::generate()).collect()
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[cfg(feature = "redb")]
mod raw_redb {
    use super::*;
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};
    const T: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("t");

    /// µs per insert (one transaction each), µs per read, median µs per
    /// non-durable overwrite of an existing key.
    pub(super) fn run(
        dir: &std::path::Path,
        durable_n: usize,
        n: usize,
    ) -> BenchResult<(f64, f64, f64, f64)> {
        let db = Database::create(dir.join("raw.redb"))?;
        let v = vec![7u8; VALUE];
        let mut lat = Vec::with_capacity(n);
        let mut put = |ids: &[SessionId], d: Durability| -> BenchResult<Duration> {
            lat.clear();
            let t0 = Instant::now();
            for id in ids {
                let t = Instant::now();
                let mut txn = db.begin_write()?;
                txn.set_durability(d)?;
                txn.open_table(T)?.insert(&id.as_bytes()[..], &v[..])?;
                txn.commit()?;
                lat.push(t.elapsed());
            }
            Ok(t0.elapsed())
        };
        let durable = per_op(put(&ids(durable_n), Durability::Immediate)?, durable_n);
        let all = ids(n);
        let fast = per_op(put(&all, Durability::None)?, n);
        put(&all, Durability::None)?;
        let overwrite = median(&mut lat);
        let t0 = Instant::now();
        for id in &all {
            let txn = db.begin_read()?;
            let g = txn.open_table(T)?.get(&id.as_bytes()[..])?;
            std::hint::black_box(g.map(|g| g.value().len()));
        }
        Ok((durable, fast, per_op(t0.elapsed(), n), overwrite))
    }
}

#[cfg(feature = "lmdb")]
mod raw_lmdb {
    use super::*;
    use heed::types::Bytes;
    use heed::{Database, EnvFlags, EnvOpenOptions};

    fn put_all(
        dir: &std::path::Path,
        ids: &[SessionId],
        sync: bool,
    ) -> BenchResult<(Duration, Option<Duration>, f64)> {
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(1 << 30).max_dbs(2);
        if !sync {
            // SAFETY: a benchmark's throwaway directory; NO_SYNC only risks the
            // data on an OS crash.
            unsafe {
                opts.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: a fresh directory only this benchmark touches.
        let env = unsafe { opts.open(dir) }?;
        let w = env.write_txn()?;
        let db: Database<'static, Bytes, Bytes> = env
            .create_databases_and_commit(w, |o, w| {
                Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(
                    o.create_database::<Bytes, Bytes>(w, Some("t"))?,
                ))
            })?
            .commit()
            .ok_or("aborted")?;
        let v = vec![7u8; VALUE];
        let t0 = Instant::now();
        for id in ids {
            let mut w = env.write_txn()?;
            db.put(&mut w, id.as_bytes(), &v)?;
            w.commit()?;
        }
        let put = t0.elapsed();
        if sync {
            return Ok((put, None, 0.0));
        }
        let mut lat = Vec::with_capacity(ids.len());
        for id in ids {
            let t = Instant::now();
            let mut w = env.write_txn()?;
            db.put(&mut w, id.as_bytes(), &v)?;
            w.commit()?;
            lat.push(t.elapsed());
        }
        let t0 = Instant::now();
        for id in ids {
            let r = env.read_txn()?;
            std::hint::black_box(db.get(&r, id.as_bytes())?.map(<[u8]>::len));
        }
        Ok((put, Some(t0.elapsed()), median(&mut lat)))
    }

    pub(super) fn run(
        dir: &std::path::Path,
        durable_n: usize,
        n: usize,
    ) -> BenchResult<(f64, f64, f64, f64)> {
        let (d1, d2) = (dir.join("durable"), dir.join("fast"));
        std::fs::create_dir_all(&d1)?;
        std::fs::create_dir_all(&d2)?;
        let (durable, _, _) = put_all(&d1, &ids(durable_n), true)?;
        let (fast, read, overwrite) = put_all(&d2, &ids(n), false)?;
        Ok((
            per_op(durable, durable_n),
            per_op(fast, n),
            per_op(read.unwrap_or_default(), n),
            overwrite,
        ))
    }
}

fn open(dir: &std::path::Path, engine: Engine, d: Durability) -> BenchResult<Arc<EmbeddedStore>> {
    Ok(Arc::new(
        EmbeddedStore::builder()
            .path(dir)
            .engine(engine)
            .durability(d)
            .open()?,
    ))
}

/// Durable creates/s with `writers` concurrent tasks.
fn durable_rate(
    rt: &tokio::runtime::Runtime,
    s: &Arc<EmbeddedStore>,
    writers: usize,
    per: usize,
) -> BenchResult<f64> {
    let exp = Timestamp::from_millis(i64::MAX);
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let v = vec![7u8; VALUE];
                for _ in 0..per {
                    s.create(&SessionId::generate(), &v, exp).await?;
                }
                Ok::<_, session_core::StoreError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok((writers * per) as f64 / t0.elapsed().as_secs_f64())
}

fn store_run(engine: Engine, durable_n: usize, n: usize) -> BenchResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let exp = Timestamp::from_millis(i64::MAX);
    let tmp = tempfile::tempdir()?;
    let d = open(&tmp.path().join("durable"), engine, Durability::Immediate)?;
    let r1 = durable_rate(&rt, &d, 1, durable_n)?;
    let r32 = durable_rate(&rt, &d, 32, durable_n / 8)?;
    let r64 = durable_rate(&rt, &d, 64, durable_n / 8)?;
    drop(d);
    let e = open(&tmp.path().join("eventual"), engine, Durability::Eventual)?;
    let all = ids(n);
    let v = vec![7u8; VALUE];
    let t0 = Instant::now();
    rt.block_on(async {
        for id in &all {
            e.save(id, &v, exp, None).await?;
        }
        Ok::<_, session_core::StoreError>(())
    })?;
    let save = per_op(t0.elapsed(), n);
    // Overwrite with the same expiry and size, as an app re-saving its
    // sessions does (session-bench's `save` phase): median per save.
    let mut lat = Vec::with_capacity(n);
    rt.block_on(async {
        for id in &all {
            let t = Instant::now();
            e.save(id, &v, exp, None).await?;
            lat.push(t.elapsed());
        }
        Ok::<_, session_core::StoreError>(())
    })?;
    let overwrite = median(&mut lat);
    let t0 = Instant::now();
    rt.block_on(async {
        for id in &all {
            std::hint::black_box(e.load(id).await?);
        }
        Ok::<_, session_core::StoreError>(())
    })?;
    let load = per_op(t0.elapsed(), n);
    drop(e);
    // Reopen cost (redb verifies every page checksum by default).
    let t0 = Instant::now();
    drop(open(
        &tmp.path().join("eventual"),
        engine,
        Durability::Immediate,
    )?);
    let reopen = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "{:<5} store: durable create 1 writer {r1:>8.0}/s ({:.0} µs), 32 writers {r32:>8.0}/s (x{:.1}), \
         64 writers {r64:>8.0}/s (x{:.1}); non-durable save {save:.1} µs, overwrite median \
         {overwrite:.1} µs; load {load:.2} µs; \
         reopen {reopen:.0} ms",
        engine.name(),
        1e6 / r1,
        r32 / r1,
        r64 / r1
    );
    Ok(())
}

fn main() -> BenchResult<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let durable_n = 1_000;
    println!("{n} ids, {VALUE}-byte values");
    #[cfg(feature = "redb")]
    {
        let tmp = tempfile::tempdir()?;
        let (d, f, r, o) = raw_redb::run(tmp.path(), durable_n, n)?;
        println!(
            "redb  raw:   durable insert {d:.0} µs; non-durable insert {f:.1} µs, overwrite \
             median {o:.1} µs; read {r:.2} µs"
        );
        store_run(Engine::Redb, durable_n, n)?;
    }
    #[cfg(feature = "lmdb")]
    {
        let tmp = tempfile::tempdir()?;
        let (d, f, r, o) = raw_lmdb::run(tmp.path(), durable_n, n)?;
        println!(
            "lmdb  raw:   durable insert {d:.0} µs; non-durable insert {f:.1} µs, overwrite \
             median {o:.1} µs; read {r:.2} µs"
        );
        store_run(Engine::Lmdb, durable_n, n)?;
    }
    Ok(())
}
