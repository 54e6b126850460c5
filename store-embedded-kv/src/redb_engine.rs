//! The redb engine: one file `sessions.redb` holding one table `kv` (the
//! logical tables are key prefixes, see `engine.rs`). Exclusive to one process
//! by default (redb's file lock; a second opener gets [`AlreadyOpen`]).

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    TableDefinition,
};
use session_core::{StoreError, StoreResult};

use crate::codec::decode_u64;
use crate::engine::{
    Engine, KvWrite, META_BYTES, META_RECORDS, RawStats, Table, WriteFn, init_meta, logical,
};
use crate::store::AlreadyOpen;

const KV: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("kv");
/// The database file inside the store's directory.
pub(crate) const FILE_NAME: &str = "sessions.redb";

/// Maps any redb error onto the store's error kinds, keeping it as the cause.
fn err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => StoreError::Io(io),
        e @ redb::Error::Corrupted(_) => StoreError::corrupt(e),
        e @ (redb::Error::UpgradeRequired(_) | redb::Error::TableTypeMismatch { .. }) => {
            StoreError::config(e)
        }
        e => StoreError::backend(e),
    }
}

pub(crate) struct RedbEngine {
    db: Database,
    path: PathBuf,
}

impl RedbEngine {
    pub(crate) fn open(
        dir: &Path,
        verify: bool,
        cache_size: usize,
        shared: bool,
    ) -> StoreResult<Self> {
        let path = dir.join(FILE_NAME);
        // Create the file owner-only before redb opens it with default modes.
        let mut oo = std::fs::OpenOptions::new();
        oo.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut oo, 0o600);
        drop(oo.open(&path)?);
        let mut b = Database::builder();
        b.set_cache_size(cache_size)
            .set_check_integrity_on_open(verify);
        if shared {
            b.set_concurrency_mode(ConcurrencyMode::MultiWriter);
        }
        let db = b.create(&path).map_err(|e| match e {
            DatabaseError::LockProtocolMismatch => {
                StoreError::busy(AlreadyOpen { path: path.clone() })
            }
            DatabaseError::DatabaseAlreadyOpen => {
                StoreError::busy(AlreadyOpen { path: path.clone() })
            }
            e => err(e),
        })?;
        let engine = Self { db, path };
        engine.write(true, &mut |w| init_meta(w))?;
        Ok(engine)
    }
}

type KvTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

struct RedbWrite<'t>(KvTable<'t>);

impl KvWrite for RedbWrite<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let k = table.key(key);
        Ok(self.0.get(&k[..]).map_err(err)?.map(|g| g.value().to_vec()))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<()> {
        let k = table.key(key);
        self.0.insert(&k[..], value).map_err(err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> StoreResult<bool> {
        let k = table.key(key);
        Ok(self.0.remove(&k[..]).map_err(err)?.is_some())
    }

    fn keys_up_to(
        &mut self,
        table: Table,
        upper: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<Vec<u8>>> {
        let (lo, hi) = ([table.prefix()], table.key(upper));
        let range = self
            .0
            .range::<&[u8]>((Bound::Included(&lo[..]), Bound::Included(&hi[..])))
            .map_err(err)?;
        let mut keys = Vec::new();
        for entry in range.take(limit) {
            let (k, _) = entry.map_err(err)?;
            keys.push(logical(k.value()));
        }
        Ok(keys)
    }
}

impl Engine for RedbEngine {
    fn get(&self, id: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(KV).map_err(err)?;
        let k = Table::Sessions.key(id);
        Ok(t.get(&k[..]).map_err(err)?.map(|g| g.value().to_vec()))
    }

    fn scan(&self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(KV).map_err(err)?;
        let (first, end) = ([Table::Sessions.prefix()], Table::Sessions.end());
        let after = after.map(|a| Table::Sessions.key(a));
        let lower = after
            .as_deref()
            .map_or(Bound::Included(&first[..]), Bound::Excluded);
        let mut rows = Vec::new();
        for entry in t
            .range::<&[u8]>((lower, Bound::Excluded(&end[..])))
            .map_err(err)?
            .take(limit)
        {
            let (k, v) = entry.map_err(err)?;
            rows.push((logical(k.value()), v.value().to_vec()));
        }
        Ok(rows)
    }

    fn stats(&self, expired_upper: &[u8]) -> StoreResult<RawStats> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(KV).map_err(err)?;
        let meta = |k: &[u8]| -> StoreResult<u64> {
            let k = Table::Meta.key(k);
            Ok(t.get(&k[..])
                .map_err(err)?
                .map_or(0, |g| decode_u64(g.value())))
        };
        let mut s = RawStats {
            records: meta(META_RECORDS)?,
            total_bytes: meta(META_BYTES)?,
            file_bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            ..RawStats::default()
        };
        let (lo, hi) = ([Table::Expiry.prefix()], Table::Expiry.key(expired_upper));
        for entry in t
            .range::<&[u8]>((Bound::Included(&lo[..]), Bound::Included(&hi[..])))
            .map_err(err)?
        {
            let (_, v) = entry.map_err(err)?;
            s.expired += 1;
            s.expired_bytes += decode_u64(v.value());
        }
        Ok(s)
    }

    fn write(&self, durable: bool, f: &mut WriteFn<'_>) -> StoreResult<()> {
        let mut txn = self.db.begin_write().map_err(err)?;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(err)?;
        let result = {
            let mut w = RedbWrite(txn.open_table(KV).map_err(err)?);
            f(&mut w)
        };
        match result {
            Ok(()) => txn.commit().map_err(err),
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    fn sync(&self) -> StoreResult<()> {
        // An empty durable commit makes every earlier non-durable one durable.
        let txn = self.db.begin_write().map_err(err)?;
        txn.commit().map_err(err)
    }
}
