//! The blocking side of the store: paths, stripe locks, atomic writes and walks.
//!
//! Invariants: a session file is only ever created or replaced by `rename` of a
//! fully written temp file in the same directory, and every write or removal of
//! an id happens while holding that id's stripe lock, so temp files of an id
//! exist only while its lock is held (or after a crash, when nobody holds it).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use rustix::fs::{FlockOperation, OFlags, flock};
use rustix::io::Errno;
use session_core::{
    ID_HEX_LEN, Record, SessionId, SharedClock, StoreError, StoreResult, Timestamp, Version,
};

use crate::Durability;
use crate::format::{self, CorruptFile, HEADER_LEN, Header};

/// Number of lock stripes (lock files under `.locks/`).
pub(crate) const STRIPES: u32 = 256;
/// Name of the directory holding the stripe lock files.
pub(crate) const LOCK_DIR: &str = ".locks";
/// Prefix of temp files: `.tmp.<id hex>.<random hex>`.
const TMP_PREFIX: &str = ".tmp.";
/// First read of a session file; one `read` covers every file up to this size.
const FIRST_READ: usize = 16 * 1024;
/// How often a writer retries when `delete_expired` removed its empty
/// directory between `mkdir` and creating the temp file.
const DIR_RACE_RETRIES: usize = 16;

/// Everything the blocking operations need; shared by the async handle.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) locks: PathBuf,
    pub(crate) durability: Durability,
    pub(crate) max_value_size: usize,
    pub(crate) clock: SharedClock,
    /// One slot per stripe, holding that stripe's lock file once opened.
    pub(crate) stripes: Stripes,
    /// Random per store; with `tmp_counter`, names temp files without a
    /// `getrandom` call per write (`O_EXCL` still catches any collision).
    pub(crate) tmp_base: u64,
    pub(crate) tmp_counter: AtomicU64,
}

/// One stripe: its lock file, opened once and kept, and an in-process flag.
///
/// A `flock` belongs to the open file description, so two threads locking
/// one shared descriptor would both succeed. The `busy` flag (a mutex plus
/// condvar, so the holder may move between threads) excludes threads of
/// this store first; only its holder then `flock`s the shared descriptor,
/// which excludes other processes and other `FileStore`s opened on the same
/// root (each has descriptors of its own).
#[derive(Debug, Default)]
pub(crate) struct Stripe {
    state: Mutex<StripeState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct StripeState {
    busy: bool,
    file: Option<Arc<File>>,
}

impl Stripe {
    fn state(&self) -> MutexGuard<'_, StripeState> {
        // The state is a flag and a handle, valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A store's stripe slots (a newtype so `Debug` does not print 256 of them).
pub(crate) struct Stripes(Box<[Arc<Stripe>]>);

impl std::ops::Deref for Stripes {
    type Target = [Arc<Stripe>];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for Stripes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stripes({})", self.0.len())
    }
}

/// Fresh stripe slots for a store.
pub(crate) fn new_stripes() -> Stripes {
    Stripes((0..STRIPES).map(|_| Arc::default()).collect())
}

/// A stripe held by this store: its `busy` flag set and (once `file` is set)
/// an exclusive `flock` on its lock file. Dropping it unlocks; if the process
/// dies the kernel releases the `flock`.
#[derive(Debug)]
pub(crate) struct StripeLock {
    stripe: Arc<Stripe>,
    /// The descriptor whose `flock` this guard holds, once taken.
    file: Option<Arc<File>>,
}

impl Drop for StripeLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Cannot fail on a valid descriptor; nothing useful to do if it did.
            let _ = flock(&*file, FlockOperation::Unlock);
        }
        self.stripe.state().busy = false;
        self.stripe.freed.notify_one();
    }
}

/// What `read_record` found.
pub(crate) type Found = Option<(Header, Vec<u8>)>;

fn corrupt(e: CorruptFile) -> StoreError {
    StoreError::corrupt(e)
}

fn is_hex_name(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn stripe_of(id: &SessionId) -> u32 {
    // Hash all 32 bytes so ids that share a prefix (or are all zeros) spread.
    crc32c::crc32c(id.as_bytes()) % STRIPES
}

/// What opening a session path found.
enum Opened {
    Missing,
    /// A symlink (never followed) or something that cannot be read as a file.
    NotAFile,
    File(File),
}

fn open_session(path: &Path) -> io::Result<Opened> {
    let opened = OpenOptions::new()
        .read(true)
        // Session files are never symlinks; do not follow one planted there.
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    match opened {
        Ok(f) => Ok(Opened::File(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Opened::Missing),
        Err(e) => not_a_file(e).map(|_| Opened::NotAFile),
    }
}

/// `ELOOP` (a symlink under `O_NOFOLLOW`) and `EISDIR` (a directory) mean the
/// path holds something other than a session file; other errors are I/O errors.
fn not_a_file(e: io::Error) -> io::Result<CorruptFile> {
    let code = e.raw_os_error();
    if code == Some(Errno::LOOP.raw_os_error()) || code == Some(Errno::ISDIR.raw_os_error()) {
        Ok(CorruptFile::NotAFile)
    } else {
        Err(e)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn live(h: &Header, now: Timestamp) -> bool {
    !h.expires_at.is_expired_at(now)
}

impl Inner {
    /// `root/ab/cd`, the directory of `id`'s file.
    pub(crate) fn leaf_dir(&self, hex: &str) -> PathBuf {
        let mut p = PathBuf::with_capacity(self.root.as_os_str().len() + 8 + ID_HEX_LEN + 8);
        p.push(&self.root);
        p.push(hex.get(0..2).unwrap_or("00"));
        p.push(hex.get(2..4).unwrap_or("00"));
        p
    }

    /// `root/ab/cd/abcd…`, the path of `id`'s file.
    pub(crate) fn file_path(&self, id: &SessionId) -> PathBuf {
        let hex = id.to_hex();
        let mut p = self.leaf_dir(&hex);
        p.push(&hex);
        p
    }

    fn lock_path(&self, stripe: u32) -> PathBuf {
        self.locks.join(format!("{stripe:02x}"))
    }

    fn open_lock_file(&self, stripe: u32) -> io::Result<File> {
        let path = self.lock_path(stripe);
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
        };
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Someone removed `.locks`; recreate it rather than fail forever.
                DirBuilder::new()
                    .mode(0o700)
                    .create(&self.locks)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                open()
            }
            other => other,
        }
    }

    /// Checks that stripe lock files can be created and opened (keeping
    /// stripe 0's descriptor for later use).
    pub(crate) fn probe_locks(&self) -> io::Result<()> {
        let Some(stripe) = self.stripes.first() else {
            return Err(io::Error::other("no lock stripes"));
        };
        let mut state = stripe.state();
        if state.file.is_none() {
            state.file = Some(Arc::new(self.open_lock_file(0)?));
        }
        Ok(())
    }

    /// Takes `id`'s stripe lock, waiting for other threads and processes.
    pub(crate) fn lock(&self, id: &SessionId) -> StoreResult<StripeLock> {
        Ok(self
            .acquire(id, true)?
            .ok_or_else(|| io::Error::other("lock not taken"))?)
    }

    /// Takes `id`'s stripe lock only if nobody holds it.
    fn try_lock(&self, id: &SessionId) -> io::Result<Option<StripeLock>> {
        self.acquire(id, false)
    }

    fn acquire(&self, id: &SessionId, wait: bool) -> io::Result<Option<StripeLock>> {
        let n = stripe_of(id);
        let Some(stripe) = self.stripes.get(n as usize) else {
            return Err(io::Error::other("stripe out of range"));
        };
        let mut state = stripe.state();
        while state.busy {
            if !wait {
                return Ok(None);
            }
            state = stripe
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.busy = true;
        let mut file = state.file.clone();
        drop(state);
        // From here the guard owns the busy flag; dropping it (on any error
        // or `None` below) clears the flag and undoes a taken flock.
        let mut guard = StripeLock {
            stripe: Arc::clone(stripe),
            file: None,
        };
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        loop {
            let f = match file.take() {
                Some(f) => f,
                None => {
                    let f = Arc::new(self.open_lock_file(n)?);
                    guard.stripe.state().file = Some(Arc::clone(&f));
                    f
                }
            };
            match flock(&*f, op) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) if !wait => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            guard.file = Some(Arc::clone(&f));
            // A lock file unlinked since we opened it (someone removed
            // `.locks`) no longer excludes anyone: reopen by name and lock again.
            if f.metadata()?.nlink() > 0 {
                return Ok(Some(guard));
            }
            if let Some(stale) = guard.file.take() {
                let _ = flock(&*stale, FlockOperation::Unlock);
            }
        }
    }

    /// Reads a whole session file, bounded: never more than the header
    /// declares (plus one byte to detect trailing garbage).
    fn read_bytes(path: &Path) -> io::Result<Option<Result<Vec<u8>, CorruptFile>>> {
        let mut file = match open_session(path)? {
            Opened::Missing => return Ok(None),
            Opened::NotAFile => return Ok(Some(Err(CorruptFile::NotAFile))),
            Opened::File(f) => f,
        };
        let mut buf = Vec::with_capacity(FIRST_READ);
        if let Err(e) = (&mut file).take(FIRST_READ as u64).read_to_end(&mut buf) {
            return not_a_file(e).map(|c| Some(Err(c)));
        }
        if buf.len() == FIRST_READ {
            // A large file: trust the declared length only as far as the format
            // allows, then read exactly that much more (+1 to see trailing bytes).
            let want = match format::decode_header(&buf) {
                Ok(h) => HEADER_LEN + h.data_len + 1,
                // Undecodable: what we have is enough to report it.
                Err(_) => return Ok(Some(Ok(buf))),
            };
            let more = want.saturating_sub(buf.len());
            buf.reserve_exact(more);
            file.take(more as u64).read_to_end(&mut buf)?;
        }
        Ok(Some(Ok(buf)))
    }

    /// Reads and validates `id`'s file. `None` if there is none.
    pub(crate) fn read_record(&self, id: &SessionId) -> StoreResult<Found> {
        self.read_record_at(&self.file_path(id), id)
    }

    fn read_record_at(&self, path: &Path, id: &SessionId) -> StoreResult<Found> {
        let Some(read) = Self::read_bytes(path)? else {
            return Ok(None);
        };
        let mut buf = read.map_err(corrupt)?;
        let header = format::decode(&buf, Some(id)).map_err(corrupt)?.0;
        // decode checked buf.len() == HEADER_LEN + data_len.
        buf.drain(..HEADER_LEN.min(buf.len()));
        Ok(Some((header, buf)))
    }

    /// Reads only the header of a file. `None` if there is none.
    fn read_header(path: &Path) -> io::Result<Option<Result<Header, CorruptFile>>> {
        let file = match open_session(path)? {
            Opened::Missing => return Ok(None),
            Opened::NotAFile => return Ok(Some(Err(CorruptFile::NotAFile))),
            Opened::File(f) => f,
        };
        let mut buf = Vec::with_capacity(HEADER_LEN);
        if let Err(e) = file.take(HEADER_LEN as u64).read_to_end(&mut buf) {
            return not_a_file(e).map(|c| Some(Err(c)));
        }
        Ok(Some(format::decode_header(&buf)))
    }

    /// The live record of `id` at `now`, if any.
    pub(crate) fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        let now = self.clock.now();
        Ok(self.read_record(id)?.and_then(|(h, data)| {
            live(&h, now).then_some(Record {
                data,
                expires_at: h.expires_at,
                version: h.version,
            })
        }))
    }

    pub(crate) fn check_size(&self, len: usize) -> StoreResult<()> {
        if len > self.max_value_size {
            return Err(StoreError::TooLarge {
                size: len,
                limit: self.max_value_size,
            });
        }
        Ok(())
    }

    /// Creates `dir`'s two fan-out levels if missing, fsyncing each parent
    /// whose entries changed.
    fn make_leaf(&self, leaf: &Path) -> io::Result<()> {
        let mut builder = DirBuilder::new();
        builder.mode(0o700);
        let Some(top) = leaf.parent() else {
            return Err(io::Error::other("session directory has no parent"));
        };
        for (dir, parent) in [(top, &*self.root), (leaf, top)] {
            match builder.create(dir) {
                Ok(()) => {
                    if self.durability == Durability::Immediate {
                        sync_dir(parent)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a fresh temp file next to `id`'s file, creating directories as
    /// needed. Retries when a concurrent purge removed an empty directory.
    fn create_temp(&self, leaf: &Path, hex: &str) -> io::Result<(PathBuf, File)> {
        let mut last = None;
        for _ in 0..DIR_RACE_RETRIES {
            let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
            let tmp = leaf.join(format!(
                "{TMP_PREFIX}{hex}.{:016x}",
                self.tmp_base.wrapping_add(n)
            ));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp);
            match opened {
                Ok(f) => return Ok((tmp, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match self.make_leaf(leaf) {
                        // NotFound: the top directory went between the two mkdirs.
                        Err(e2) if e2.kind() != io::ErrorKind::NotFound => return Err(e2),
                        _ => {}
                    }
                    last = Some(e);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("cannot create a temp file")))
    }

    /// Atomically replaces `id`'s file with `bytes`. Caller holds the lock.
    pub(crate) fn write_file(&self, id: &SessionId, bytes: &[u8]) -> StoreResult<()> {
        let hex = id.to_hex();
        let leaf = self.leaf_dir(&hex);
        let (tmp, mut file) = self.create_temp(&leaf, &hex)?;
        let result = (|| {
            file.write_all(bytes)?;
            if self.durability == Durability::Immediate {
                file.sync_data()?;
            }
            drop(file);
            fs::rename(&tmp, leaf.join(&hex))?;
            if self.durability == Durability::Immediate {
                // Makes the rename itself durable (new file or replacement).
                sync_dir(&leaf)?;
            }
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(())
    }

    pub(crate) fn create(&self, id: &SessionId, bytes: &[u8]) -> StoreResult<()> {
        let _lock = self.lock(id)?;
        let now = self.clock.now();
        if let Some((h, _)) = self.read_record(id)?
            && live(&h, now)
        {
            return Err(StoreError::AlreadyExists);
        }
        self.write_file(id, bytes)
    }

    pub(crate) fn save(
        &self,
        id: &SessionId,
        bytes: &[u8],
        expected: Option<Version>,
    ) -> StoreResult<()> {
        let _lock = self.lock(id)?;
        if let Some(v) = expected {
            let now = self.clock.now();
            match self.read_record(id)? {
                Some((h, _)) if live(&h, now) && h.version == v => {}
                _ => return Err(StoreError::Conflict),
            }
        }
        self.write_file(id, bytes)
    }

    pub(crate) fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
        let _lock = self.lock(id)?;
        let now = self.clock.now();
        match self.read_record(id)? {
            Some((h, data)) if live(&h, now) => {
                let bytes = format::encode(id, expires_at, h.version, &data);
                self.write_file(id, &bytes)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub(crate) fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        let _lock = self.lock(id)?;
        let now = self.clock.now();
        let path = self.file_path(id);
        let was_live = match Self::read_header(&path)? {
            None => return Ok(false),
            // A corrupt file is removed too (that is how an operator clears it),
            // but it was not a live record.
            Some(h) => h.is_ok_and(|h| h.id == *id && live(&h, now)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if self.durability == Durability::Immediate {
            // A logged-out session must not come back after a power cut.
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(was_live)
    }

    /// Sorted names in `dir` that are `len` lowercase hex characters, optionally
    /// only those `>= from`.
    fn hex_entries(dir: &Path, len: usize, from: Option<&str>) -> io::Result<Vec<String>> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string()
                && is_hex_name(&name, len)
                && from.is_none_or(|f| name.as_str() >= f)
            {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Records with ids strictly after `after`, ascending, at most `limit`.
    /// Corrupt files are skipped (they are counted by `stats`).
    pub(crate) fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let after_hex = after.map(SessionId::to_hex);
        let a1 = after_hex.as_deref().and_then(|h| h.get(0..2));
        let a2 = after_hex.as_deref().and_then(|h| h.get(0..4));
        for d1 in Self::hex_entries(&self.root, 2, a1)? {
            let p1 = self.root.join(&d1);
            for d2 in Self::hex_entries(&p1, 2, None)? {
                let prefix = format!("{d1}{d2}");
                if a2.is_some_and(|a| prefix.as_str() < a) {
                    continue;
                }
                let p2 = p1.join(&d2);
                for name in Self::hex_entries(&p2, ID_HEX_LEN, after_hex.as_deref())? {
                    if after_hex.as_deref() == Some(name.as_str()) || !name.starts_with(&prefix) {
                        continue;
                    }
                    let Ok(id) = SessionId::parse(&name) else {
                        continue;
                    };
                    match self.read_record_at(&p2.join(&name), &id) {
                        Ok(Some((h, data))) => out.push((
                            id,
                            Record {
                                data,
                                expires_at: h.expires_at,
                                version: h.version,
                            },
                        )),
                        Ok(None) | Err(StoreError::Corrupt(_)) => continue,
                        Err(e) => return Err(e),
                    }
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Walks every fan-out directory, calling `f` for each session file and
    /// temp file. `f` returns whether it removed the entry, so empty
    /// directories can be removed afterwards when `prune` is set.
    fn walk(
        &self,
        prune: bool,
        mut f: impl FnMut(Entry<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        for d1 in Self::hex_entries(&self.root, 2, None)? {
            let p1 = self.root.join(&d1);
            let mut leaves_left = 0usize;
            for d2 in Self::hex_entries(&p1, 2, None)? {
                let p2 = p1.join(&d2);
                let prefix = format!("{d1}{d2}");
                let mut left = 0usize;
                let rd = match fs::read_dir(&p2) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in rd {
                    let entry = entry?;
                    let path = entry.path();
                    let name = entry.file_name();
                    let name = name.to_str().unwrap_or("");
                    let kind = if is_hex_name(name, ID_HEX_LEN) && name.starts_with(&prefix) {
                        SessionId::parse(name)
                            .ok()
                            .map(|id| Entry::Session { id, path: &path })
                    } else {
                        name.strip_prefix(TMP_PREFIX)
                            .and_then(|rest| rest.get(..ID_HEX_LEN))
                            .and_then(|hex| SessionId::parse(hex).ok())
                            .map(|id| Entry::Temp { id, path: &path })
                    };
                    let removed = match kind {
                        Some(e) => f(e)?,
                        None => {
                            f(Entry::Foreign)?;
                            false
                        }
                    };
                    if !removed {
                        left += 1;
                    }
                }
                if prune && left == 0 {
                    // Fails harmlessly if a writer just created something here;
                    // writers recreate directories a purge removed under them.
                    match fs::remove_dir(&p2) {
                        Ok(()) => continue,
                        Err(_) => leaves_left += 1,
                    }
                } else {
                    leaves_left += 1;
                }
            }
            if prune && leaves_left == 0 {
                // Fails harmlessly if anything else lives here.
                let _ = fs::remove_dir(&p1);
            }
        }
        Ok(())
    }

    /// Removes every expired record and orphaned temp file and every empty
    /// fan-out directory. Returns the number of records removed.
    pub(crate) fn delete_expired(&self) -> StoreResult<u64> {
        let now = self.clock.now();
        let mut removed = 0u64;
        self.walk(true, |entry| match entry {
            Entry::Session { id, path } => {
                match Self::read_header(path)? {
                    Some(Ok(h)) if h.id == id && !live(&h, now) => {}
                    _ => return Ok(false),
                }
                // Check again under the lock: a writer may have renewed it.
                let _lock = self.lock(&id).map_err(store_to_io)?;
                match Self::read_header(path)? {
                    Some(Ok(h)) if h.id == id && !live(&h, now) => {}
                    _ => return Ok(false),
                }
                match fs::remove_file(path) {
                    Ok(()) => {
                        removed += 1;
                        Ok(true)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                    Err(e) => Err(e),
                }
            }
            Entry::Temp { id, path } => {
                // Temp files exist only while their id's lock is held; if
                // nobody holds it, the writer died and the file is garbage.
                let Some(_lock) = self.try_lock(&id)? else {
                    return Ok(false);
                };
                match fs::remove_file(path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                    Err(e) => Err(e),
                }
            }
            Entry::Foreign => Ok(false),
        })?;
        Ok(removed)
    }

    /// Counts by reading headers only.
    pub(crate) fn stats(&self) -> StoreResult<Tally> {
        let now = self.clock.now();
        let mut t = Tally::default();
        self.walk(false, |entry| {
            match entry {
                Entry::Session { id, path } => match Self::read_header(path)? {
                    Some(Ok(h)) if h.id == id => {
                        if live(&h, now) {
                            t.live += 1;
                            t.live_bytes += h.data_len as u64;
                        } else {
                            t.expired += 1;
                        }
                    }
                    Some(_) => t.corrupt += 1,
                    None => {}
                },
                Entry::Temp { .. } => t.temp_files += 1,
                Entry::Foreign => t.foreign += 1,
            }
            Ok(false)
        })?;
        Ok(t)
    }
}

fn store_to_io(e: StoreError) -> io::Error {
    match e {
        StoreError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// One directory entry met by [`Inner::walk`].
enum Entry<'a> {
    /// A file named like a session id in the matching fan-out directory.
    Session { id: SessionId, path: &'a Path },
    /// A writer's temp file for `id`.
    Temp { id: SessionId, path: &'a Path },
    /// Anything else; left alone.
    Foreign,
}

/// Counts gathered by [`Inner::stats`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) live: u64,
    pub(crate) expired: u64,
    pub(crate) live_bytes: u64,
    pub(crate) corrupt: u64,
    pub(crate) temp_files: u64,
    pub(crate) foreign: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::ManualClock;
    use std::sync::Arc;

    fn inner(root: &Path) -> Inner {
        let locks = root.join(LOCK_DIR);
        fs::create_dir_all(&locks).unwrap();
        Inner {
            root: root.to_path_buf(),
            locks,
            durability: Durability::None,
            max_value_size: 1 << 20,
            clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_000))),
            stripes: new_stripes(),
            tmp_base: 0,
            tmp_counter: AtomicU64::new(0),
        }
    }

    #[test]
    fn temp_files_go_only_when_their_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let s = inner(dir.path());
        let id = SessionId::generate();
        let bytes = format::encode(&id, Timestamp::MAX, Version::from_raw(7), b"v");
        s.save(&id, &bytes, None).unwrap();
        let hex = id.to_hex();
        let tmp = s
            .leaf_dir(&hex)
            .join(format!("{TMP_PREFIX}{hex}.0123456789abcdef"));
        fs::write(&tmp, b"partial").unwrap();

        // A writer (another descriptor, as another process would have) holds the
        // lock: its temp file is a write in progress and stays.
        let held = s.lock(&id).unwrap();
        assert_eq!(s.delete_expired().unwrap(), 0);
        assert!(tmp.exists());
        assert_eq!(s.stats().unwrap().temp_files, 1);
        drop(held);

        // The writer died (its descriptor closed): the file is garbage.
        assert_eq!(s.delete_expired().unwrap(), 0);
        assert!(!tmp.exists());
        assert_eq!(s.load(&id).unwrap().unwrap().data, b"v");
    }

    #[test]
    fn stripe_lock_excludes_other_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let s = inner(dir.path());
        let id = SessionId::generate();
        let held = s.lock(&id).unwrap();
        assert!(s.try_lock(&id).unwrap().is_none());
        drop(held);
        assert!(s.try_lock(&id).unwrap().is_some());
    }

    #[test]
    fn stripe_lock_excludes_another_store_on_the_same_root() {
        // Two stores keep descriptors of their own, as two processes would.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (inner(dir.path()), inner(dir.path()));
        let id = SessionId::generate();
        let held = a.lock(&id).unwrap();
        assert!(b.try_lock(&id).unwrap().is_none());
        drop(held);
        let held = b.lock(&id).unwrap();
        assert!(a.try_lock(&id).unwrap().is_none());
        drop(held);
        assert!(a.try_lock(&id).unwrap().is_some());
    }

    #[test]
    fn stripe_lock_reopens_a_removed_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = inner(dir.path());
        let id = SessionId::generate();
        drop(a.lock(&id).unwrap());
        // The cached descriptor now names an unlinked file.
        fs::remove_dir_all(&a.locks).unwrap();
        let held = a.lock(&id).unwrap();
        assert!(a.lock_path(stripe_of(&id)).exists());
        // A newcomer opens the file by name and must see the lock.
        let b = inner(dir.path());
        assert!(b.try_lock(&id).unwrap().is_none());
        drop(held);
        assert!(b.try_lock(&id).unwrap().is_some());
    }
}
