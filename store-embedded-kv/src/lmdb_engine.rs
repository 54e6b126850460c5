//! The LMDB engine (heed): `data.mdb` + `lock.mdb` in the store's directory,
//! one named database `kv` (logical tables are key prefixes, see `engine.rs`),
//! shared safely by any number of processes (LMDB's own cross-process locks).
//!
//! This is the crate's only `unsafe`: heed marks opening an environment
//! `unsafe` because LMDB maps the file into memory.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, WithoutTls};
use session_core::{StoreError, StoreResult};

use crate::codec::decode_u64;
use crate::engine::{
    Engine, KvWrite, META_BYTES, META_RECORDS, RawStats, Table, WriteFn, init_meta, logical,
};

type Db = Database<'static, Bytes, Bytes>;

/// The map is full: the database holds as much as `lmdb_map_size` allows.
#[derive(Debug)]
struct MapFull {
    map_size: usize,
    source: heed::Error,
}

impl fmt::Display for MapFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LMDB map of {} bytes is full; delete expired sessions or open with a larger \
             EmbeddedStoreBuilder::lmdb_map_size",
            self.map_size
        )
    }
}

impl std::error::Error for MapFull {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub(crate) struct LmdbEngine {
    env: Env<WithoutTls>,
    kv: Db,
    map_size: usize,
    data_file: PathBuf,
}

impl LmdbEngine {
    fn err(&self, e: heed::Error) -> StoreError {
        map_err(e, self.map_size)
    }

    #[allow(unsafe_code)]
    pub(crate) fn open(dir: &Path, map_size: usize, durable: bool) -> StoreResult<Self> {
        // A multiple of every page size in use (4, 16, 64 KiB).
        let map_size = map_size
            .max(1 << 20)
            .div_ceil(1 << 16)
            .saturating_mul(1 << 16);
        let mut opts = EnvOpenOptions::new().read_txn_without_tls();
        opts.map_size(map_size).max_dbs(4);
        if !durable {
            // SAFETY: MDB_NOSYNC only drops the fsync at commit. heed marks it
            // unsafe because an OS crash may then leave a corrupt file; that is
            // the documented risk of `Durability::Eventual`, which the caller chose.
            unsafe {
                opts.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the mapped files are changed only through LMDB, whose lock
        // file coordinates every process and thread (NO_LOCK is never set).
        // The crate docs require that nothing else truncates or rewrites
        // `data.mdb` while a store has it open. heed itself refuses a second
        // open of the same path in this process (`EnvAlreadyOpened`).
        let env = unsafe { opts.open(dir) }.map_err(|e| map_err(e, map_size))?;
        // Reader slots of killed processes would pin old pages forever.
        let _ = env.clear_stale_readers();
        let wtxn = env.write_txn().map_err(|e| map_err(e, map_size))?;
        let kv = env
            .create_databases_and_commit(wtxn, |o, w| {
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(
                    o.create_database::<Bytes, Bytes>(w, Some("kv"))?,
                ))
            })
            .map_err(|e| map_err(e, map_size))?
            .commit()
            .ok_or_else(|| StoreError::backend("creating the LMDB tables was aborted"))?;
        let engine = Self {
            env,
            kv,
            map_size,
            data_file: dir.join("data.mdb"),
        };
        engine.write(true, &mut |w| init_meta(w))?;
        Ok(engine)
    }
}

fn map_err(e: heed::Error, map_size: usize) -> StoreError {
    match e {
        heed::Error::Io(io) => StoreError::Io(io),
        heed::Error::Mdb(MdbError::MapFull) => StoreError::backend(MapFull {
            map_size,
            source: e,
        }),
        heed::Error::Mdb(
            MdbError::Corrupted
            | MdbError::Invalid
            | MdbError::Panic
            | MdbError::PageNotFound
            | MdbError::VersionMismatch
            | MdbError::BadTxn,
        ) => StoreError::corrupt(e),
        heed::Error::Mdb(MdbError::MapResized) => StoreError::config(format!(
            "another process grew the LMDB map beyond {map_size} bytes; open every process \
             with the same lmdb_map_size"
        )),
        heed::Error::EnvAlreadyOpened => StoreError::busy(e),
        e => StoreError::backend(e),
    }
}

struct LmdbWrite<'a, 'e> {
    txn: &'a mut heed::RwTxn<'e>,
    engine: &'a LmdbEngine,
}

impl KvWrite for LmdbWrite<'_, '_> {
    fn get(&mut self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let e = self.engine;
        Ok(e.kv
            .get(self.txn, &table.key(key))
            .map_err(|x| e.err(x))?
            .map(<[u8]>::to_vec))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<()> {
        let e = self.engine;
        e.kv.put(self.txn, &table.key(key), value)
            .map_err(|x| e.err(x))
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> StoreResult<bool> {
        let e = self.engine;
        e.kv.delete(self.txn, &table.key(key)).map_err(|x| e.err(x))
    }

    fn keys_up_to(
        &mut self,
        table: Table,
        upper: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<Vec<u8>>> {
        let e = self.engine;
        let (lo, hi) = ([table.prefix()], table.key(upper));
        let range = (Bound::Included(&lo[..]), Bound::Included(&hi[..]));
        let mut keys = Vec::new();
        for entry in
            e.kv.range(self.txn, &range)
                .map_err(|x| e.err(x))?
                .take(limit)
        {
            let (k, _) = entry.map_err(|x| e.err(x))?;
            keys.push(logical(k));
        }
        Ok(keys)
    }
}

impl Engine for LmdbEngine {
    fn get(&self, id: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let txn = self.env.read_txn().map_err(|e| self.err(e))?;
        Ok(self
            .kv
            .get(&txn, &Table::Sessions.key(id))
            .map_err(|e| self.err(e))?
            .map(<[u8]>::to_vec))
    }

    fn scan(&self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.env.read_txn().map_err(|e| self.err(e))?;
        let (first, end) = ([Table::Sessions.prefix()], Table::Sessions.end());
        let after = after.map(|a| Table::Sessions.key(a));
        let lower = after
            .as_deref()
            .map_or(Bound::Included(&first[..]), Bound::Excluded);
        let range = (lower, Bound::Excluded(&end[..]));
        let mut rows = Vec::new();
        for entry in self
            .kv
            .range(&txn, &range)
            .map_err(|e| self.err(e))?
            .take(limit)
        {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            rows.push((logical(k), v.to_vec()));
        }
        Ok(rows)
    }

    fn stats(&self, expired_upper: &[u8]) -> StoreResult<RawStats> {
        let txn = self.env.read_txn().map_err(|e| self.err(e))?;
        let meta = |k: &[u8]| -> StoreResult<u64> {
            Ok(self
                .kv
                .get(&txn, &Table::Meta.key(k))
                .map_err(|e| self.err(e))?
                .map_or(0, decode_u64))
        };
        let mut s = RawStats {
            records: meta(META_RECORDS)?,
            total_bytes: meta(META_BYTES)?,
            file_bytes: std::fs::metadata(&self.data_file).map_or(0, |m| m.len()),
            ..RawStats::default()
        };
        let (lo, hi) = ([Table::Expiry.prefix()], Table::Expiry.key(expired_upper));
        let range = (Bound::Included(&lo[..]), Bound::Included(&hi[..]));
        for entry in self.kv.range(&txn, &range).map_err(|e| self.err(e))? {
            let (_, v) = entry.map_err(|e| self.err(e))?;
            s.expired += 1;
            s.expired_bytes += decode_u64(v);
        }
        Ok(s)
    }

    fn write(&self, _durable: bool, f: &mut WriteFn<'_>) -> StoreResult<()> {
        // Durability is the environment's MDB_NOSYNC flag, fixed at open.
        let mut txn = self.env.write_txn().map_err(|e| self.err(e))?;
        let result = f(&mut LmdbWrite {
            txn: &mut txn,
            engine: self,
        });
        match result {
            Ok(()) => txn.commit().map_err(|e| self.err(e)),
            Err(e) => {
                txn.abort();
                Err(e)
            }
        }
    }

    fn sync(&self) -> StoreResult<()> {
        self.env.force_sync().map_err(|e| self.err(e))
    }
}
