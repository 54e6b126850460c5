//! The crate's only `unsafe` code: raw copies in and out of the shared map,
//! cache prefetch hints, and the OS calls for locks and the coarse clock.
//!
//! Invariants: no reference (`&[u8]`, `&T`) into the map is ever created; every
//! access is a bounds-checked copy through a raw pointer, so other processes
//! writing the same memory can garble bytes (which the callers' checksums catch)
//! but cannot break Rust's aliasing rules. Callers copy bytes out under the page
//! lock and treat them as untrusted input.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

#[cfg(not(target_os = "linux"))]
compile_error!("store-mmap needs Linux: it relies on open-file-description locks (F_OFD_SETLKW)");

/// A writable shared mapping of a whole file, reached only through copies.
pub(crate) struct SharedMap {
    map: MmapRaw,
    len: usize,
}

impl std::fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMap").field("len", &self.len).finish()
    }
}

impl SharedMap {
    /// Maps the first `len` bytes of `file` (which must already be at least that long).
    pub(crate) fn map(file: &File, len: usize) -> io::Result<Self> {
        let map = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Self { map, len })
    }

    fn range_ok(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    /// Copies `dst.len()` bytes starting at `off` out of the map; `false` if out of bounds.
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) -> bool {
        if !self.range_ok(off, dst.len()) {
            return false;
        }
        // SAFETY: `off + dst.len() <= self.len` was checked above and the mapping is
        // `self.len` bytes long and lives as long as `self`; the files this crate maps
        // are never shrunk by it (only grown before mapping), so the range is backed.
        // `dst` is a distinct Rust allocation, so the ranges do not overlap. No
        // reference into the map is formed: the bytes are copied as untrusted data.
        unsafe {
            ptr::copy_nonoverlapping(self.map.as_ptr().add(off), dst.as_mut_ptr(), dst.len());
        }
        true
    }

    /// Copies `len` bytes starting at `off` out of the map into a new `Vec`
    /// (one copy, no zero-fill first); `None` if out of bounds.
    pub(crate) fn read_vec(&self, off: usize, len: usize) -> Option<Vec<u8>> {
        if !self.range_ok(off, len) {
            return None;
        }
        let mut v = Vec::with_capacity(len);
        // SAFETY: `off + len <= self.len` was checked above, so the source range
        // lies in the live mapping (never shrunk, see `read`). `v` has capacity
        // for `len` bytes and is a distinct allocation, so the ranges do not
        // overlap. After the copy the first `len` bytes of `v` are initialised
        // (`u8` has no invalid values), so `set_len(len)` exposes only
        // initialised memory. No reference into the map is formed.
        unsafe {
            ptr::copy_nonoverlapping(self.map.as_ptr().add(off), v.as_mut_ptr(), len);
            v.set_len(len);
        }
        Some(v)
    }

    /// Hints the CPU to start fetching the cache lines of `off..off + len`, so
    /// the misses of several independent reads overlap instead of queueing.
    /// Only a hint: it reads nothing into Rust and never faults, and ranges out
    /// of bounds are ignored.
    #[inline]
    pub(crate) fn prefetch(&self, off: usize, len: usize) {
        if !self.range_ok(off, len) {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let base = self.map.as_ptr().wrapping_add(off);
            let mut at = 0;
            while at < len {
                // SAFETY: SSE is part of the x86_64 baseline, so the instruction
                // exists on every CPU this code runs on. A prefetch is only a
                // hint: it cannot fault, writes nothing and makes no value
                // visible to Rust, so no memory-safety condition applies (the
                // address is inside the mapping anyway, checked above).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(at).cast::<i8>()) };
                at += 64;
            }
            // The last line, when the range ends past the last 64-byte step.
            if len > 0 {
                // SAFETY: as above.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(len - 1).cast::<i8>()) };
            }
        }
    }

    /// Copies `src` into the map at `off`; `false` (and nothing written) if out of bounds.
    pub(crate) fn write(&self, off: usize, src: &[u8]) -> bool {
        if !self.range_ok(off, src.len()) {
            return false;
        }
        // SAFETY: bounds checked above as in `read`; the mapping is writable
        // (MAP_SHARED, read-write). `src` is a Rust slice and cannot overlap the
        // map because no reference into the map is ever created. Concurrent
        // writers are excluded by the page lock the caller holds.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), self.map.as_mut_ptr().add(off), src.len());
        }
        true
    }

    fn atomic_at(&self, off: usize) -> Option<*mut u64> {
        if !off.is_multiple_of(8) || !self.range_ok(off, 8) {
            return None;
        }
        // SAFETY: `off + 8 <= self.len` checked above, so the result stays inside the mapping.
        let p = unsafe { self.map.as_mut_ptr().add(off) };
        // The map starts page-aligned, so an 8-aligned offset gives an 8-aligned pointer.
        (p as usize).is_multiple_of(8).then_some(p.cast::<u64>())
    }

    /// Reads an aligned little-endian `u64` with one atomic load; `None` if misaligned
    /// or out of bounds.
    pub(crate) fn load_u64(&self, off: usize) -> Option<u64> {
        let p = self.atomic_at(off)?;
        // SAFETY: `p` is 8-aligned and inside the live mapping (checked by
        // `atomic_at`), so it is valid for an `AtomicU64` for the map's lifetime.
        // Words touched without holding their page lock (lock words, the journal
        // valid word) are only ever accessed atomically; other words are also
        // copied non-atomically, but only under the page lock, whose acquire /
        // release CAS orders those accesses. No reference into the map exists.
        let a = unsafe { AtomicU64::from_ptr(p) };
        Some(u64::from_le(a.load(Ordering::Acquire)))
    }

    /// Writes an aligned little-endian `u64` with one atomic store, so a process
    /// killed at any instant leaves either the old or the new word, never a torn
    /// one. `false` if misaligned or out of bounds.
    pub(crate) fn store_u64(&self, off: usize, v: u64) -> bool {
        let Some(p) = self.atomic_at(off) else {
            return false;
        };
        // SAFETY: as in `load_u64`.
        let a = unsafe { AtomicU64::from_ptr(p) };
        a.store(v.to_le(), Ordering::Release);
        true
    }
}

impl SharedMap {
    /// One atomic compare-and-swap of an aligned `u64` (acquire on success).
    /// `Err(actual)` when the word held something else, or `Err(u64::MAX)` if
    /// the offset is misaligned or out of bounds.
    pub(crate) fn cas_u64(&self, off: usize, current: u64, new: u64) -> Result<u64, u64> {
        let p = self.atomic_at(off).ok_or(u64::MAX)?;
        // SAFETY: as in `load_u64`: aligned, in bounds, only ever accessed atomically.
        let a = unsafe { AtomicU64::from_ptr(p) };
        a.compare_exchange(
            current.to_le(),
            new.to_le(),
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .map(u64::from_le)
        .map_err(u64::from_le)
    }
}

/// Tries to take an exclusive OFD lock on byte `at` without waiting; `Ok(false)`
/// when another open file description holds it.
pub(crate) fn ofd_try_lock(file: &File, at: u64) -> io::Result<bool> {
    match fcntl_lock(file, at, libc::F_WRLCK, libc::F_OFD_SETLK) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether an open file description other than `file`'s holds a lock on byte `at`.
pub(crate) fn ofd_is_locked(file: &File, at: u64) -> io::Result<bool> {
    fcntl_lock(file, at, libc::F_WRLCK, libc::F_OFD_GETLK).map(|t| t != libc::F_UNLCK)
}

/// Takes (or waits for) an exclusive open-file-description lock on byte `at` of
/// `file`. The kernel releases it when the last descriptor of that open file is
/// closed, which includes the death of the process by SIGKILL.
pub(crate) fn ofd_lock(file: &File, at: u64) -> io::Result<()> {
    ofd(file, at, libc::F_WRLCK)
}

/// Releases a lock taken by [`ofd_lock`].
pub(crate) fn ofd_unlock(file: &File, at: u64) -> io::Result<()> {
    ofd(file, at, libc::F_UNLCK)
}

fn ofd(file: &File, at: u64, kind: libc::c_int) -> io::Result<()> {
    fcntl_lock(file, at, kind, libc::F_OFD_SETLKW).map(|_| ())
}

/// One `fcntl` lock command on the single byte `at`; returns the `l_type` the
/// kernel left in the struct (meaningful for `F_OFD_GETLK`).
fn fcntl_lock(
    file: &File,
    at: u64,
    kind: libc::c_int,
    cmd: libc::c_int,
) -> io::Result<libc::c_int> {
    let start = libc::off_t::try_from(at).map_err(io::Error::other)?;
    // SAFETY: `libc::flock` is a plain C struct of integers, for which all-zero
    // bytes are a valid value (and what OFD locks require for `l_pid`).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    loop {
        // SAFETY: the descriptor is owned by `file`, borrowed for the call, and
        // `fl` is a valid, initialised `struct flock` that lives across the call
        // (the kernel writes it back only for F_OFD_GETLK).
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &raw mut fl) };
        if r != -1 {
            return Ok(libc::c_int::from(fl.l_type));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whole-file `flock(2)`: exclusive (`true`) or unlock (`false`). Used only while
/// creating or checking the file header; independent of the OFD page locks.
pub(crate) fn flock(file: &File, exclusive: bool) -> io::Result<()> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_UN
    };
    loop {
        // SAFETY: plain syscall on a descriptor owned by `file` for the call's duration.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Wall-clock microseconds from the coarse real-time clock (updated once per
/// kernel tick, read from the vDSO without a system call), for LRU stamps that
/// only need a rough order across processes; 0 if the clock is unavailable.
pub(crate) fn coarse_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` that outlives the call, and
    // CLOCK_REALTIME_COARSE is a clock id every supported Linux kernel knows.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &raw mut ts) };
    if r != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).map_or(0, |s| {
        s.saturating_mul(1_000_000)
            .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000)
    })
}

/// The real user id of this process (for the default file name).
pub(crate) fn current_uid() -> u32 {
    // SAFETY: getuid(2) takes no arguments, touches no memory and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(len: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("m"))
            .unwrap();
        file.set_len(len).unwrap();
        (dir, file)
    }

    #[test]
    fn copies_are_bounds_checked() {
        let (_d, f) = scratch(4096);
        let m = SharedMap::map(&f, 4096).unwrap();
        assert!(m.write(4090, b"abcdef"));
        let mut b = [0u8; 6];
        assert!(m.read(4090, &mut b));
        assert_eq!(&b, b"abcdef");
        assert!(!m.write(4091, b"abcdef"));
        assert!(!m.read(usize::MAX - 2, &mut b));
        assert!(m.read(4096, &mut []));
        assert!(!m.read(4097, &mut []));
        assert!(m.store_u64(8, 0x1122_3344_5566_7788));
        assert_eq!(m.load_u64(8), Some(0x1122_3344_5566_7788));
        assert_eq!(m.load_u64(9), None);
        assert_eq!(m.load_u64(4096), None);
        assert!(!m.store_u64(4092, 1));
        assert_eq!(m.cas_u64(16, 0, 5), Ok(0));
        assert_eq!(m.cas_u64(16, 0, 6), Err(5));
        assert_eq!(m.cas_u64(17, 5, 6), Err(u64::MAX));
        assert_eq!(m.read_vec(4090, 6).as_deref(), Some(&b"abcdef"[..]));
        assert_eq!(m.read_vec(4091, 6), None);
        assert_eq!(m.read_vec(usize::MAX - 2, 6), None);
        assert_eq!(m.read_vec(4096, 0), Some(Vec::new()));
        // Hints only: in range, out of range and empty are all harmless.
        m.prefetch(0, 4096);
        m.prefetch(4000, 200);
        m.prefetch(usize::MAX - 1, 64);
        m.prefetch(4096, 0);
        // After 2020 and not going backwards by more than a tick.
        let t = coarse_micros();
        assert!(t > 1_600_000_000_000_000);
        assert!(coarse_micros() + 100_000 >= t);
        let mut w = [0u8; 8];
        assert!(m.read(8, &mut w));
        assert_eq!(u64::from_le_bytes(w), 0x1122_3344_5566_7788);
    }

    #[test]
    fn ofd_locks_exclude_other_descriptions() {
        let (d, f) = scratch(16);
        let g = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(d.path().join("m"))
            .unwrap();
        ofd_lock(&f, 3).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            ofd_lock(&g, 3).unwrap();
            tx.send(()).unwrap();
            ofd_unlock(&g, 3).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(100))
                .is_err()
        );
        ofd_unlock(&f, 3).unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();
        assert!(ofd_try_lock(&f, 5).unwrap());
        let h = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(d.path().join("m"))
            .unwrap();
        assert!(ofd_is_locked(&h, 5).unwrap());
        assert!(!ofd_try_lock(&h, 5).unwrap());
        assert!(!ofd_is_locked(&f, 5).unwrap(), "own locks never conflict");
        ofd_unlock(&f, 5).unwrap();
        assert!(!ofd_is_locked(&h, 5).unwrap());
        flock(&f, true).unwrap();
        flock(&f, false).unwrap();
        assert_eq!(current_uid(), current_uid());
    }
}
