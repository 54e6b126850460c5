//! Locks across threads and processes that a SIGKILLed holder cannot wedge.
//!
//! A page lock is an in-process mutex (threads of one handle) followed by a
//! lock word in the shared map, taken with one compare-and-swap: the uncontended
//! path makes no system call. The word holds the 48-bit id of the holding store
//! handle. Every open handle keeps an OFD lock on its own *liveness byte* of the
//! file for as long as it lives, and the kernel drops that lock the moment the
//! process dies. A waiter that has waited about a millisecond asks the kernel
//! (`F_OFD_GETLK`) whether the holder's liveness byte is still locked; if not,
//! the holder is dead and the waiter takes the word over with another CAS. The
//! page it then opens carries its own state word, so a half-done write is
//! repaired before anything is read.

use std::fs::File;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::sys::{self, SharedMap};

/// First liveness byte (far past any real file offset; locks need no data there).
const LIVE_BASE: u64 = 1 << 52;
/// Handle ids are 48 bits, so two live handles sharing one is a 2⁻⁴⁸ event, and
/// it is checked at open anyway.
const ID_MASK: u64 = (1 << 48) - 1;
/// How often a waiter asks whether the holder is still alive.
const LIVENESS_EVERY: Duration = Duration::from_millis(1);

/// Picks a fresh handle id and locks its liveness byte for the life of `file`.
pub(crate) fn claim_handle_id(file: &File) -> io::Result<u64> {
    loop {
        let id = session_core::Version::random(None).as_raw() & ID_MASK;
        if id != 0 && sys::ofd_try_lock(file, LIVE_BASE + id)? {
            return Ok(id);
        }
    }
}

/// One lock word of the map, its in-process mutex, and who we are.
#[derive(Clone, Copy)]
pub(crate) struct Lock<'a> {
    pub(crate) map: &'a SharedMap,
    pub(crate) file: &'a File,
    pub(crate) local: &'a Mutex<()>,
    pub(crate) word: usize,
    pub(crate) me: u64,
}

/// A held [`Lock`]; released on drop.
pub(crate) struct Held<'a> {
    _local: MutexGuard<'a, ()>,
    lock: Lock<'a>,
}

impl<'a> Lock<'a> {
    pub(crate) fn acquire(self) -> io::Result<Held<'a>> {
        // What the lock guards lives in the map and carries its own state word,
        // so a panic in another holder does not make continuing unsafe.
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let mut spins = 0u32;
        let mut next_check: Option<Instant> = None;
        loop {
            let owner = match self.map.cas_u64(self.word, 0, self.me) {
                Ok(_) => break,
                Err(u64::MAX) => return Err(io::Error::other("lock word outside the map")),
                Err(owner) => owner,
            };
            // Our own id while our mutex is held means a stale word: take it.
            if owner == self.me && self.map.cas_u64(self.word, owner, self.me).is_ok() {
                break;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
                continue;
            }
            if spins < 128 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
            let now = Instant::now();
            let due = *next_check.get_or_insert(now + LIVENESS_EVERY);
            if now >= due {
                next_check = Some(now + LIVENESS_EVERY);
                if !self.alive(owner)? && self.map.cas_u64(self.word, owner, self.me).is_ok() {
                    break;
                }
            }
        }
        Ok(Held {
            _local: local,
            lock: self,
        })
    }

    fn alive(&self, owner: u64) -> io::Result<bool> {
        if owner & !ID_MASK != 0 {
            // Not an id at all: a damaged word, nobody to wait for.
            return Ok(false);
        }
        sys::ofd_is_locked(self.file, LIVE_BASE + owner)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Fails only if a waiter judged us dead (impossible while we live) or
        // the word was damaged; either way it is not ours to clear then.
        let _ = self.lock.map.cas_u64(self.lock.word, self.lock.me, 0);
    }
}
