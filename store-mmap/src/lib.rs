//! A shared-memory session cache across processes and threads, like Perl's
//! `Cache::FastMmap` without its sharp edges. Linux only.
//!
//! One file is mapped (`MAP_SHARED`) by every process that opens it; sessions
//! live in fixed-size **pages**, each with its own lock, slot table and data
//! area. It is a **cache**: when a page is full, expired sessions are dropped
//! first, then the least recently used live ones, and every live eviction is
//! counted in [`stats`](SessionStore::stats) (`evicted_live`) so an operator can
//! see the cache is too small. Below capacity, data survives closing and
//! reopening the file and a SIGKILLed writer (the conformance suite's
//! persistence and crash checks pass), not a reboot of a tmpfs or a deleted file.
//!
//! ```
//! use session_core::{SessionId, SessionStore, Timestamp};
//! use store_mmap::MmapStore;
//! # let dir = tempfile::tempdir()?;
//! let store = MmapStore::builder()
//!     .path(dir.path().join("sessions.cache")) // default: the OS temp dir
//!     .size(16 << 20)
//!     .pages(64)
//!     .open()?;
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let id = SessionId::generate();
//! let v = store.save(&id, b"hello", Timestamp::MAX, None).await?;
//! assert_eq!(store.load(&id).await?.map(|r| r.version), Some(v));
//! # Ok::<(), session_core::StoreError>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Invariants
//!
//! * No read returns bytes that fail their checksums: an entry header carries
//!   an xxh3 checksum over id, expiry, version, length and the value's own
//!   checksum, keyed by the file's seed and the page. A replaced or deleted
//!   entry has its checksum zeroed, so a stale copy can never validate again.
//!   Damaged entries are [`StoreError::Corrupt`] for that id (or skipped by
//!   `scan` and counted in `stats`), and the page is repaired on its next write.
//! * A process killed while holding a page lock blocks the others for about a
//!   millisecond. Locks are lock words in the map taken by compare-and-swap (no
//!   system call when uncontended); each open handle holds a kernel OFD lock on
//!   its own liveness byte, which the kernel drops when the process dies, and a
//!   waiter that has waited 1 ms asks the kernel whether the holder still lives
//!   and, if not, takes the lock over. The page's state word then tells what the
//!   dead holder was doing: during a single-entry write, every entry that
//!   validates is kept; during a page rebuild, the rebuild journal (written and
//!   marked valid before the page is touched) is replayed.
//! * Values larger than the per-page limit ([`MmapStore::max_value_size`]) are
//!   refused with [`StoreError::TooLarge`] before anything is touched.
//! * Versions come from a per-handle counter seeded with 64 random bits, so a
//!   token does not repeat for an id (the chance two handles' ranges meet is about
//!   `writes × handles / 2⁶⁴`), and it is never equal to the id's previous token.
//! * All `unsafe` code is in one private module (`sys`): bounds-checked copies
//!   through raw pointers, atomic words, cache prefetch hints, the coarse
//!   clock read and the lock and `getuid` syscalls. No reference into the
//!   shared map is ever created; bytes are copied out under
//!   the lock and validated as untrusted input. Miri cannot run here (no nightly
//!   toolchain), so the property tests that scribble random bytes over pages,
//!   lock words, the journal and the header stand in for it.
//!
//! # File format (version 1, little-endian)
//!
//! ```text
//! 0        header (4096 bytes): "SESSMMAP", format version, header length,
//!          page count, page size, slots per page, max value size, hash seed,
//!          file length, xxh3 checksum of the above
//! 4096     lock table: (pages + 1) × 64 bytes (one lock word per cache line;
//!          the last one is the journal's), rounded up to 4 KiB
//! ...      page 0 .. page N-1, each `page_size` bytes:
//!            page header (64): state word, (unused), evicted live / expired,
//!                              repaired / cleared counts, data used, slots used
//!                              (+ checksum), corrupt entries dropped
//!            slot table: slots × u64 (0 empty, 1 tombstone, else tag<<32 | offset)
//!            data area: entries = 80-byte header + value padded to 8 bytes;
//!                       header: checksum, id, expires_at, version, length,
//!                       value checksum, LRU stamp (µs, outside the checksum)
//! ...      journal: valid word, page index, image checksum (64), one page image
//! ```
//!
//! An id's page, first slot and tag come from xxh3 of the id keyed by the
//! file's random seed, so hostile ids cannot be aimed at one page. The file is
//! created `0600` (owner only; an existing file is chmod-ed to `0600`, and one
//! owned by another user or reached through a symlink is refused) under an
//! exclusive `flock`, sized with `set_len` before anyone maps it and given its
//! header last, so concurrent creators never map a short file (FastMmap's SIGBUS
//! race), and a creator killed half-way leaves a header-less file the next
//! opener initialises. An existing file with a foreign or damaged header is
//! [`StoreError::Corrupt`], one of another geometry [`StoreError::Config`],
//! unless [`MmapStoreBuilder::reinit`] is set. Never truncate the file while
//! processes have it mapped (they would get SIGBUS).
//!
//! # Where work runs
//!
//! Inline, on the caller's thread, with no `spawn_blocking`: an operation is a
//! page lock (in-process mutex + one CAS) and copies of one entry. Measured on
//! the development machine (2 shared cores, lightly loaded, release build,
//! 100,000 ids, 1 KiB values, file in `/tmp` on ext4; `cargo run --release -p
//! store-mmap --example bench`): load ≈ 0.63-0.65 µs and save (overwrite)
//! ≈ 0.55-0.57 µs median (an in-process `Mutex<HashMap>` get + clone: ≈ 0.54 µs),
//! two processes on a 90 % load / 10 % save mix ≈ 2.1-2.4 M ops/s in total at
//! ≈ 0.82-0.91 µs CPU per operation; lock + unlock ≈ 30 ns (an `fcntl` OFD lock
//! pair, the first design, cost ≈ 1.06 µs: 35× more, so OFD locks are now only
//! the liveness oracle). That is far below the ≈ 45 µs a hand-off to a
//! blocking thread costs.
//!
//! With 100 MB of sessions nearly every access misses the CPU caches, so the
//! time goes to memory latency, not instructions: before taking the lock an
//! operation prefetches the lock word, page header and the id's first slot, and
//! the value as soon as its entry header is found (a write prefetches its
//! destination while it checksums the value). Overlapping those misses instead
//! of taking them one after another cut load from ≈ 0.97 to ≈ 0.65 µs, save
//! from ≈ 0.90 to ≈ 0.56 µs and the mix from ≈ 1.16 to ≈ 0.84 µs CPU per
//! operation. The value is copied once, straight into the returned buffer, and
//! checked there; LRU stamps come from the coarse clock (no second precise
//! clock read). The remaining serial miss is slot → entry header: reading the
//! slot before the lock to prefetch the entry would race with a rebuild's plain
//! copy, so it is not done.
//!
//! A `scan`, `stats` or `delete_expired` call walks every page under its lock
//! (there is no expiry index: milliseconds for a full cache) and also runs
//! inline. A page rebuild (when a page's data area is full) copies the page
//! three times, about a millisecond for 1 MiB pages, once per roughly
//! `page_size / 2` bytes written to that page.
//!
//! Put the file on tmpfs (`/dev/shm`, `$XDG_RUNTIME_DIR`) when you can: on a disk
//! file system the kernel writes dirty pages back and faults them in again
//! (measured: save ≈ 0.4 µs on tmpfs vs ≈ 0.55 µs on ext4; the mix costs about
//! the same CPU per operation on both).
//!
//! # Sizing
//!
//! The default file is 256 MiB of 256 pages (sparse: untouched pages cost no
//! memory), which holds 100,000 sessions of 1 KiB without evicting. A page
//! holds at most `page_size / 256 × 3/4` entries and its data area
//! (`page_size − 64 − page_size / 32`) of entries at `80 + value` bytes each.
//! If `stats().details` shows `evicted_live` growing, live sessions are being
//! dropped: grow [`MmapStoreBuilder::size`] until it stays flat. Rule of thumb:
//! `size ≥ 1.5 × peak live sessions × (mean value size + 80)`, since hashing
//! fills pages unevenly and a full page evicts down to 7/8. Pages: at least a
//! few per core that uses the cache, so lock contention stays rare (256 by
//! default).
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod layout;
mod lock;
mod page;
mod sys;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use session_core::{
    Clock, Record, SessionId, SessionStore, SharedClock, StoreError, StoreResult, StoreStats,
    SystemClock, Timestamp, Update, UpdateFn, Updated, Version, async_trait,
};

use crate::layout::{Geometry, HEADER_USED, HeaderError};
use crate::lock::{Held, Lock};
use crate::page::{Page, Probe};
use crate::sys::SharedMap;

/// Default size of a new cache file: 256 MiB (sparse; pages cost memory once touched).
pub const DEFAULT_SIZE: u64 = 256 << 20;
/// Default number of pages (independently locked shards).
pub const DEFAULT_PAGES: u32 = 256;

/// A shared-memory session cache. See the [crate docs](crate).
///
/// Cheap to share: put it in an `Arc` and use it from any number of threads;
/// open it again (same path and geometry) from other processes. The closure
/// given to [`update`](SessionStore::update) runs under the page lock, so it
/// must not call this store itself (it would wait for itself).
#[derive(Debug)]
pub struct MmapStore {
    file: File,
    map: SharedMap,
    geo: Geometry,
    seed: u64,
    // One mutex per page in front of the page's lock word: the word names a
    // handle, not a thread, so this handle's threads are excluded here.
    locks: Box<[Mutex<()>]>,
    journal_lock: Mutex<()>,
    /// This handle's id in lock words; its liveness byte is locked while `file` is open.
    handle_id: u64,
    last_stamp: AtomicU64,
    next_version: AtomicU64,
    clock: SharedClock,
    path: PathBuf,
}

/// Builder for [`MmapStore`]. Size and page count shape a new file; an existing
/// file must have the same shape (or be re-initialised with [`reinit`](Self::reinit)).
#[derive(Debug, Clone)]
#[must_use]
pub struct MmapStoreBuilder {
    path: Option<PathBuf>,
    size: u64,
    pages: u32,
    max_value_size: Option<usize>,
    clock: SharedClock,
    reinit: bool,
}

impl MmapStoreBuilder {
    /// The cache file (default: `session-store-mmap-<uid>.cache` in the OS temp dir).
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Approximate file size in bytes (default [`DEFAULT_SIZE`]); each page gets
    /// `(size − 4096) / pages` rounded down to 4 KiB, at least 16 KiB.
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = bytes;
        self
    }

    /// Number of pages, each with its own lock (default [`DEFAULT_PAGES`]).
    pub fn pages(mut self, pages: u32) -> Self {
        self.pages = pages;
        self
    }

    /// Largest value accepted (default and maximum: a quarter of a page's data
    /// area less the entry header).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// Judge expiry by this clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Judge expiry by this shared clock.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Re-initialise (empty) an existing file whose header is foreign, damaged or
    /// of another geometry, instead of failing. Only safe when no other process
    /// has that file open.
    pub fn reinit(mut self, yes: bool) -> Self {
        self.reinit = yes;
        self
    }

    /// Opens (creating if needed) the cache file and maps it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an impossible geometry, a file owned by another
    /// user or of another geometry; [`StoreError::Corrupt`] for a foreign or
    /// damaged header (unless [`reinit`](Self::reinit)); [`StoreError::Io`] when
    /// the OS refuses.
    pub fn open(self) -> StoreResult<MmapStore> {
        let want = Geometry::compute(self.size, self.pages, self.max_value_size)
            .map_err(StoreError::config)?;
        let path = self.path.unwrap_or_else(default_path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Refuse a symlink planted at the path (the default lives in /tmp).
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(StoreError::config(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        if meta.uid() != sys::current_uid() {
            return Err(StoreError::config(format!(
                "{} belongs to another user; refusing to share it",
                path.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        sys::flock(&file, true)?;
        let checked = init_or_check(&file, want, self.reinit);
        let unlocked = sys::flock(&file, false);
        let (geo, seed) = checked?;
        unlocked?;
        let len = usize::try_from(geo.file_len())
            .map_err(|_| StoreError::config("cache file too large for this platform"))?;
        let map = SharedMap::map(&file, len)?;
        let handle_id = lock::claim_handle_id(&file)?;
        Ok(MmapStore {
            file,
            map,
            geo,
            seed,
            locks: (0..geo.pages).map(|_| Mutex::new(())).collect(),
            journal_lock: Mutex::new(()),
            handle_id,
            last_stamp: AtomicU64::new(0),
            next_version: AtomicU64::new(Version::random(None).as_raw()),
            clock: self.clock,
            path,
        })
    }
}

/// Measurement hooks for the crate's benchmark example. Not part of the API:
/// hidden from the docs and free to change.
#[doc(hidden)]
pub mod bench_support {
    use std::fs::File;
    use std::io;
    use std::time::Instant;

    /// Mean nanoseconds of one uncontended OFD lock + unlock pair on `file`
    /// (the design this crate measured and replaced with lock words).
    pub fn ofd_lock_pair_ns(file: &File, iters: u32) -> io::Result<f64> {
        let t = Instant::now();
        for _ in 0..iters {
            crate::sys::ofd_lock(file, 7)?;
            crate::sys::ofd_unlock(file, 7)?;
        }
        Ok(t.elapsed().as_nanos() as f64 / f64::from(iters.max(1)))
    }

    /// Mean nanoseconds of one uncontended page lock + unlock of `store`
    /// (in-process mutex + lock-word CAS), the path every operation takes.
    pub fn page_lock_pair_ns(store: &crate::MmapStore, iters: u32) -> io::Result<f64> {
        let t = Instant::now();
        for _ in 0..iters {
            drop(store.lock(0).map_err(io::Error::other)?);
        }
        Ok(t.elapsed().as_nanos() as f64 / f64::from(iters.max(1)))
    }
}

fn default_path() -> PathBuf {
    std::env::temp_dir().join(format!("session-store-mmap-{}.cache", sys::current_uid()))
}

/// Under the creation `flock`: validates the header, or writes a fresh one.
fn init_or_check(file: &File, want: Geometry, reinit: bool) -> StoreResult<(Geometry, u64)> {
    let len = file.metadata()?.len();
    let mut hdr = [0u8; HEADER_USED];
    if len >= HEADER_USED as u64 {
        file.read_exact_at(&mut hdr, 0)?;
    }
    let refusal = match layout::decode_header(&hdr) {
        Ok((geo, seed)) if geo == want && len >= geo.file_len() => return Ok((geo, seed)),
        Ok((geo, _)) if geo != want => StoreError::config(format!(
            "cache file has geometry {geo:?}, the builder asks for {want:?}"
        )),
        Ok(_) => StoreError::corrupt("cache file is shorter than its header says"),
        // A fresh file, or one whose creator died before writing the header.
        Err(HeaderError::Uninitialised) => return initialise(file, want, len),
        Err(e) => StoreError::corrupt(e),
    };
    if reinit {
        initialise(file, want, len)
    } else {
        Err(refusal)
    }
}

fn initialise(file: &File, geo: Geometry, len: u64) -> StoreResult<(Geometry, u64)> {
    // Grow only: another process may still map a longer file, and shrinking it
    // would SIGBUS them.
    if len < geo.file_len() {
        file.set_len(geo.file_len())?;
    }
    if len > 0 {
        // Reused file: empty every slot table (page headers are written below).
        let zeros = vec![0u8; geo.data_start()];
        for p in 0..geo.pages {
            file.write_all_at(&zeros, geo.page_off(p) as u64)?;
        }
        file.write_all_at(&[0u8; 64], geo.journal_off() as u64)?;
        file.write_all_at(&vec![0u8; geo.locks_len()], geo.lock_off(0) as u64)?;
    }
    let seed = Version::random(None).as_raw();
    for p in 0..geo.pages {
        let hdr = layout::PageHdr {
            data_used: geo.data_start() as u32,
            ..Default::default()
        };
        file.write_all_at(
            &hdr.encode(layout::page_seed(seed, p)),
            geo.page_off(p) as u64,
        )?;
    }
    file.write_all_at(&layout::encode_header(&geo, seed), 0)?;
    Ok((geo, seed))
}

impl MmapStore {
    /// A builder with the defaults.
    pub fn builder() -> MmapStoreBuilder {
        MmapStoreBuilder {
            path: None,
            size: DEFAULT_SIZE,
            pages: DEFAULT_PAGES,
            max_value_size: None,
            clock: Arc::new(SystemClock),
            reinit: false,
        }
    }

    /// The largest value this store accepts.
    #[must_use]
    pub fn max_value_size(&self) -> usize {
        self.geo.max_value as usize
    }

    /// The cache file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of pages (independently locked shards).
    #[must_use]
    pub fn pages(&self) -> u32 {
        self.geo.pages
    }

    /// Bytes per page.
    #[must_use]
    pub fn page_size(&self) -> u32 {
        self.geo.page_size
    }

    /// Byte offset of page `page` in the file, for inspection and fault
    /// injection; `page == pages()` gives the rebuild journal.
    #[must_use]
    pub fn page_offset(&self, page: u32) -> u64 {
        self.geo.page_offset_checked(page)
    }

    fn lock(&self, page: u32) -> StoreResult<Held<'_>> {
        let local = self
            .locks
            .get(page as usize)
            .ok_or_else(|| StoreError::backend("page index out of range"))?;
        Ok(self.lock_word(page, local).acquire()?)
    }

    fn lock_word<'a>(&'a self, i: u32, local: &'a Mutex<()>) -> Lock<'a> {
        Lock {
            map: &self.map,
            file: &self.file,
            local,
            word: self.geo.lock_off(i),
            me: self.handle_id,
        }
    }

    /// The journal's lock word sits just past the pages' ones.
    fn journal(&self) -> Lock<'_> {
        self.lock_word(self.geo.pages, &self.journal_lock)
    }

    /// Runs `f` on the id's page under its lock.
    fn with_page<T>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut Page<'_>, layout::Hashed, Probe, i64) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let h = layout::hash_id(id.as_bytes(), &self.geo, self.seed);
        self.prefetch(h);
        let now = self.clock.now().as_millis();
        let _g = self.lock(h.page)?;
        let mut page = Page::open(
            &self.map,
            self.geo,
            self.seed,
            h.page,
            (now, self.stamp()),
            self.journal(),
        )?;
        let probe = page.probe(id.as_bytes(), h);
        f(&mut page, h, probe, now)
    }

    /// Starts fetching the cache lines an operation on `h` will touch (lock
    /// word, page header, the id's first slot), so their misses overlap instead
    /// of running one after another. Hints only: nothing is read here (the slot
    /// word may be rewritten by a lock holder right now; it is read under the
    /// lock later).
    fn prefetch(&self, h: layout::Hashed) {
        let base = self.geo.page_off(h.page);
        self.map.prefetch(self.geo.lock_off(h.page), 8);
        self.map.prefetch(base, layout::PAGE_HDR);
        self.map.prefetch(
            base + layout::PAGE_HDR + h.start as usize * layout::SLOT_LEN,
            layout::SLOT_LEN,
        );
    }

    /// An LRU stamp: wall-clock microseconds (comparable across processes;
    /// the coarse clock is enough for eviction order and costs no syscall),
    /// strictly increasing within this handle so back-to-back accesses order.
    fn stamp(&self) -> u64 {
        let now = sys::coarse_micros();
        let mut cur = self.last_stamp.load(Ordering::Relaxed);
        loop {
            let next = now.max(cur.wrapping_add(1));
            match self.last_stamp.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(c) => cur = c,
            }
        }
    }

    fn check_size(&self, data: &[u8]) -> StoreResult<()> {
        if data.len() > self.geo.max_value as usize {
            return Err(StoreError::TooLarge {
                size: data.len(),
                limit: self.geo.max_value as usize,
            });
        }
        Ok(())
    }

    fn fresh_version(&self, previous: Option<u64>) -> u64 {
        loop {
            let v = self.next_version.fetch_add(1, Ordering::Relaxed);
            if v != 0 && Some(v) != previous {
                return v;
            }
        }
    }

    /// The id's record, expired or not; `Err(Corrupt)` if it fails validation.
    fn read_raw(page: &mut Page<'_>, probe: &Probe) -> StoreResult<Option<Record>> {
        let corrupt = || StoreError::corrupt("session entry fails its checksum");
        if probe.suspect > 0 {
            // A damaged entry with this id's tag, or a second entry for the id:
            // do not guess which bytes are right.
            return Err(corrupt());
        }
        match page.copy_found(probe) {
            Ok(Some(c)) => Ok(Some(Record {
                data: c.data,
                expires_at: Timestamp::from_millis(c.head.expires),
                version: Version::from_raw(c.head.version),
            })),
            Ok(None) => Ok(None),
            Err(()) => Err(corrupt()),
        }
    }

    fn live(probe: &Probe, now: i64) -> Option<u64> {
        probe
            .found
            .as_ref()
            .filter(|(_, _, h)| h.expires > now)
            .map(|(_, _, h)| h.version)
    }

    fn write(
        &self,
        page: &mut Page<'_>,
        id: &SessionId,
        h: layout::Hashed,
        probe: Probe,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version> {
        let prev = probe.found.as_ref().map(|(_, _, h)| h.version);
        let v = self.fresh_version(prev);
        page.put(id.as_bytes(), h, probe, data, expires_at.as_millis(), v)?;
        Ok(Version::from_raw(v))
    }

    /// Whole-store walk under each page's lock in turn.
    fn for_each_page(
        &self,
        mut f: impl FnMut(&mut Page<'_>, i64) -> StoreResult<()>,
    ) -> StoreResult<()> {
        for p in 0..self.geo.pages {
            let now = self.clock.now().as_millis();
            let _g = self.lock(p)?;
            let mut page = Page::open(
                &self.map,
                self.geo,
                self.seed,
                p,
                (now, self.stamp()),
                self.journal(),
            )?;
            f(&mut page, now)?;
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MmapStore {
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        self.with_page(id, |page, _, probe, now| {
            if probe
                .found
                .as_ref()
                .is_some_and(|(_, _, h)| h.expires <= now)
                && probe.suspect == 0
            {
                return Ok(None);
            }
            Ok(Self::read_raw(page, &probe)?.filter(|r| r.expires_at.as_millis() > now))
        })
    }

    async fn create(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<Version> {
        self.check_size(data)?;
        self.with_page(id, |page, h, probe, now| {
            if Self::live(&probe, now).is_some() {
                return Err(StoreError::AlreadyExists);
            }
            self.write(page, id, h, probe, data, expires_at)
        })
    }

    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        expires_at: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        self.check_size(data)?;
        self.with_page(id, |page, h, probe, now| {
            if let Some(v) = expected
                && Self::live(&probe, now) != Some(v.as_raw())
            {
                return Err(StoreError::Conflict);
            }
            self.write(page, id, h, probe, data, expires_at)
        })
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> StoreResult<bool> {
        self.with_page(id, |page, _, probe, now| {
            if Self::live(&probe, now).is_none() {
                return Ok(false);
            }
            page.retime(&probe, expires_at.as_millis());
            Ok(true)
        })
    }

    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        self.with_page(id, |page, _, probe, now| {
            let was_live = Self::live(&probe, now).is_some();
            page.remove(&probe);
            if probe.suspect > 0 {
                // Damaged or duplicate entries for this tag: rebuild so none can
                // resurface as this id's value later.
                page.rebuild(None)?;
            }
            Ok(was_live)
        })
    }

    async fn delete_expired(&self) -> StoreResult<u64> {
        let mut n = 0u64;
        self.for_each_page(|page, now| {
            let mut dead = Vec::new();
            page.for_each_head(|s, h| {
                if h.expires <= now {
                    dead.push(s);
                }
            });
            for s in dead {
                page.kill_slot(s);
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }

    async fn update(&self, id: &SessionId, f: &mut UpdateFn<'_>) -> StoreResult<Updated> {
        // The read-modify-write runs under the page lock: no retries, no lost
        // updates across threads or processes. `f` must not call this store.
        self.with_page(id, |page, h, probe, now| {
            let current = Self::read_raw(page, &probe)?.filter(|r| r.expires_at.as_millis() > now);
            match f(current.as_ref()) {
                Update::Keep => Ok(Updated::Unchanged),
                Update::Put { data, expires_at } => {
                    self.check_size(&data)?;
                    Ok(Updated::Written(
                        self.write(page, id, h, probe, &data, expires_at)?,
                    ))
                }
            }
        })
    }

    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Pass 1: ids only (headers, no values), so a page of `limit` costs one
        // walk of the slot tables plus `limit` value copies.
        let mut ids: Vec<[u8; 32]> = Vec::new();
        let floor = after.map(|a| *a.as_bytes());
        self.for_each_page(|page, _| {
            page.for_each_head(|_, h| {
                if floor.is_none_or(|f| h.id > f) {
                    ids.push(h.id);
                }
            });
            Ok(())
        })?;
        ids.sort_unstable();
        ids.dedup();
        // Pass 2: copy each value under its page lock. An id written or deleted
        // in between shows its newer state (or is gone); a damaged one is skipped
        // here and counted by `stats`.
        let mut out = Vec::with_capacity(limit.min(ids.len()));
        for raw in ids {
            if out.len() == limit {
                break;
            }
            let id = SessionId::from_bytes(raw);
            if let Ok(Some(rec)) =
                self.with_page(&id, |page, _, probe, _| Self::read_raw(page, &probe))
            {
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let mut s = StoreStats::default();
        let (mut ev_live, mut ev_exp, mut repaired, mut cleared, mut dropped) = (0u64, 0, 0, 0, 0);
        let mut used = 0u64;
        // Per-page fill of the data area, for `sessionctl stats`' histogram.
        let mut fill = Vec::with_capacity(self.geo.pages as usize);
        let data_cap = (self.geo.data_cap() as u64).max(1);
        self.for_each_page(|page, now| {
            page.for_each_head(|_, h| {
                if h.expires <= now {
                    s.expired += 1;
                } else {
                    s.live += 1;
                    s.live_bytes += u64::from(h.len);
                }
            });
            let hdr = page.header();
            ev_live += hdr.evicted_live;
            ev_exp += hdr.evicted_expired;
            repaired += u64::from(hdr.repaired);
            cleared += u64::from(hdr.cleared);
            dropped += hdr.corrupt_dropped;
            let page_used = u64::from(hdr.data_used).saturating_sub(self.geo.data_start() as u64);
            used += page_used;
            fill.push(format!(
                "{:.3}",
                (page_used as f64 / data_cap as f64).min(1.0)
            ));
            Ok(())
        })?;
        let cap = self.geo.data_cap() as u64 * u64::from(self.geo.pages);
        s.details = vec![
            ("entries".into(), (s.live + s.expired).to_string()),
            ("evicted_live".into(), ev_live.to_string()),
            ("evicted_expired".into(), ev_exp.to_string()),
            ("pages".into(), self.geo.pages.to_string()),
            ("page_size".into(), self.geo.page_size.to_string()),
            ("max_value_size".into(), self.geo.max_value.to_string()),
            ("data_capacity_bytes".into(), cap.to_string()),
            ("data_used_bytes".into(), used.to_string()),
            ("pages_repaired".into(), repaired.to_string()),
            ("pages_cleared".into(), cleared.to_string()),
            ("corrupt_entries_dropped".into(), dropped.to_string()),
            ("page_fill".into(), fill.join(",")),
        ];
        Ok(s)
    }
}
