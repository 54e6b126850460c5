//! What the store needs from an engine: three logical byte-keyed tables,
//! snapshot reads from any thread, and write transactions.
//!
//! The three tables share **one** physical engine table, told apart by a
//! one-byte key prefix: a commit then rewrites one B-tree path instead of three
//! (measured with redb: 3 inserts into 3 tables 43 µs per non-durable commit,
//! into 1 table 27 µs, 1 insert 25 µs).
//!
//! Each extra leaf a commit touches still costs: with redb, one insert 16.8 µs
//! median, plus an index entry 21.2 µs, plus the two meta counts 26.7 µs. So
//! `writer.rs` writes the index entry and the counts only when they change.
//!
//! Keeping the engine surface this small puts every session rule in one place
//! (`writer.rs`, `store.rs`) for both redb and LMDB.

use session_core::StoreResult;

/// The tables of a store. Keys and values are raw bytes (see `codec.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `id (32 bytes) -> record`.
    Sessions,
    /// `(expires_at, id) -> data length`: the expiry index.
    Expiry,
    /// Store-wide figures (`format`, `records`, `bytes`).
    Meta,
}

impl Table {
    /// The key prefix of this table.
    pub(crate) fn prefix(self) -> u8 {
        match self {
            Self::Sessions => b's',
            Self::Expiry => b'x',
            Self::Meta => b'm',
        }
    }

    /// The physical key of `key` in this table.
    pub(crate) fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(self.prefix());
        k.extend_from_slice(key);
        k
    }

    /// The first physical key after every key of this table.
    pub(crate) fn end(self) -> [u8; 1] {
        [self.prefix() + 1]
    }
}

/// Strips the table prefix from a physical key.
pub(crate) fn logical(key: &[u8]) -> Vec<u8> {
    key.get(1..).unwrap_or_default().to_vec()
}

/// Meta key of the number of stored records (live or expired).
pub(crate) const META_RECORDS: &[u8] = b"records";
/// Meta key of the schema format.
pub(crate) const META_FORMAT: &[u8] = b"format";
/// Meta key of the total data bytes of all stored records.
pub(crate) const META_BYTES: &[u8] = b"bytes";
/// The schema format this crate writes.
pub(crate) const FORMAT: u64 = 1;

/// Counts from one read snapshot, for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawStats {
    pub(crate) records: u64,
    pub(crate) expired: u64,
    pub(crate) expired_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) file_bytes: u64,
}

/// Operations inside one write transaction.
pub(crate) trait KvWrite {
    fn get(&mut self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<()>;
    fn delete(&mut self, table: Table, key: &[u8]) -> StoreResult<bool>;
    /// Up to `limit` keys from the start of `table` up to `upper` inclusive.
    fn keys_up_to(&mut self, table: Table, upper: &[u8], limit: usize)
    -> StoreResult<Vec<Vec<u8>>>;
}

/// The body of a write transaction; an `Err` aborts it.
pub(crate) type WriteFn<'a> = dyn FnMut(&mut dyn KvWrite) -> StoreResult<()> + 'a;

/// An open database.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Reads one session value from a fresh snapshot.
    fn get(&self, id: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Session entries with keys strictly after `after`, ascending, at most `limit`.
    fn scan(&self, after: Option<&[u8]>, limit: usize) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Counts for `stats`; `expired_upper` is the inclusive index bound of expired records.
    fn stats(&self, expired_upper: &[u8]) -> StoreResult<RawStats>;
    /// Runs `f` in one write transaction and commits it, fsyncing iff `durable`.
    fn write(&self, durable: bool, f: &mut WriteFn<'_>) -> StoreResult<()>;
    /// Makes every earlier commit durable.
    fn sync(&self) -> StoreResult<()>;
}

/// Checks (or, on a new database, writes) the schema format.
pub(crate) fn init_meta(w: &mut dyn KvWrite) -> StoreResult<()> {
    match w.get(Table::Meta, META_FORMAT)? {
        None => {
            w.put(Table::Meta, META_FORMAT, &FORMAT.to_be_bytes())?;
            w.put(Table::Meta, META_RECORDS, &0u64.to_be_bytes())?;
            w.put(Table::Meta, META_BYTES, &0u64.to_be_bytes())
        }
        Some(v) if v.as_slice() == FORMAT.to_be_bytes() => Ok(()),
        Some(v) => Err(session_core::StoreError::config(format!(
            "database has schema format {:?}, this build reads format {FORMAT}",
            crate::codec::decode_u64(&v)
        ))),
    }
}
