//! Operations on one page, run by a caller that holds the page's lock.
//!
//! A page is `[page header | slot table | data area]`. Entries are appended to
//! the data area (bump allocation); a slot word `tag << 32 | offset` points at
//! the current entry of an id, so replacing a value is "append, then switch the
//! slot with one atomic store". When the data area or the slot table is full the
//! page is rebuilt: expired entries go first, then least-recently-used live ones.
//!
//! Crash safety: single-entry writes run with the page state `WRITING`; a later
//! locker that finds it keeps every entry that still validates (a torn entry
//! fails its checksum, a slot word is never torn, and a replaced or deleted
//! entry has its checksum zeroed so it can never validate again). Whole-page
//! rebuilds run with `REBUILDING` and go through the store-wide journal: the new
//! image is written there and marked valid before the page is overwritten, and
//! the mark is cleared before the page is marked clean. A later locker replays a
//! valid journal; without one the page is either untouched or fully rewritten,
//! and it keeps what validates. No entry is served unless its checksums match.

use std::io;

use crate::layout::{
    self, EH_ACCESS, ENTRY_HDR, Geometry, Hashed, Head, JOURNAL_HDR, PAGE_HDR, PH_STATE, PageHdr,
    SLOT_EMPTY, SLOT_LEN, SLOT_TOMB, STATE_CLEAN, STATE_REBUILDING, STATE_WRITING,
};
use crate::lock::Lock;
use crate::sys::SharedMap;

thread_local! {
    /// Rebuild scratch (copy of the old page, new image), reused so a rebuild
    /// does not fault in two fresh page-sized allocations every time.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Most bytes of a value prefetched ahead of a copy: enough for typical
/// sessions; past that the hardware prefetcher keeps up with a long copy.
const PREFETCH_MAX: usize = 4096;

/// Journal valid word ("JOURNAL1"): a magic rather than 1, so damage rarely fakes it.
const JOURNAL_VALID: u64 = u64::from_le_bytes(*b"JOURNAL1");

/// One page of a mapped file; valid only while its lock is held.
pub(crate) struct Page<'a> {
    map: &'a SharedMap,
    geo: Geometry,
    seed: u64,
    idx: u32,
    base: usize,
    pseed: u64,
    hdr: PageHdr,
    /// The caller's clock reading, for expiry decisions while rebuilding.
    now: i64,
    /// LRU stamp of this operation.
    stamp: u64,
    journal: Lock<'a>,
}

/// What probing an id's chain found.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    /// The slot and entry of the id, if exactly one valid entry matched.
    pub(crate) found: Option<(usize, usize, Head)>,
    /// First tombstone or the empty slot that ended the chain.
    free: Option<(usize, bool)>,
    /// Matching-tag slots whose entries fail validation, or duplicate matches.
    pub(crate) suspect: u32,
}

/// An entry copied out of a page, validated.
pub(crate) struct Copied {
    pub(crate) head: Head,
    pub(crate) data: Vec<u8>,
}

/// A full page was reorganised: how many entries went and why.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Evicted {
    pub(crate) expired: u64,
    pub(crate) live: u64,
}

impl<'a> Page<'a> {
    /// Opens page `idx` for the lock holder, repairing it first if a previous
    /// holder died mid-write or its header is damaged.
    pub(crate) fn open(
        map: &'a SharedMap,
        geo: Geometry,
        seed: u64,
        idx: u32,
        (now, stamp): (i64, u64),
        journal: Lock<'a>,
    ) -> io::Result<Self> {
        let mut p = Self {
            map,
            geo,
            seed,
            idx,
            base: geo.page_off(idx),
            pseed: layout::page_seed(seed, idx),
            hdr: PageHdr::default(),
            now,
            stamp,
            journal,
        };
        p.hdr = p.read_hdr();
        match p.hdr.state {
            STATE_CLEAN if p.hdr.is_sound(&geo, p.pseed) => {}
            STATE_CLEAN | STATE_WRITING => {
                p.hdr.repaired = p.hdr.repaired.wrapping_add(1);
                p.rebuild(None)?;
            }
            STATE_REBUILDING => {
                {
                    let _j = p.journal.acquire()?;
                    p.replay_journal();
                }
                let repaired = p.hdr.repaired.wrapping_add(1);
                p.hdr = p.read_hdr();
                p.hdr.repaired = repaired;
                if p.hdr.state == STATE_CLEAN && p.hdr.is_sound(&geo, p.pseed) {
                    p.write_stats();
                } else {
                    // No journal: the rebuilder died before it touched this page
                    // or after it finished, so what validates is consistent.
                    p.rebuild(None)?;
                }
            }
            _ => p.clear(),
        }
        Ok(p)
    }

    /// Under the journal lock: if a rebuilder died with a valid journal, finish
    /// its work (for whichever page it was) and retire the journal. A valid
    /// journal under our lock always belongs to a dead rebuilder, since a live
    /// one holds the journal lock until it has retired its journal.
    fn replay_journal(&self) {
        let jo = self.geo.journal_off();
        if self.map.load_u64(jo) != Some(JOURNAL_VALID) {
            return;
        }
        let mut jh = [0u8; 16];
        let mut img = vec![0u8; self.geo.page_size as usize];
        let ok = self.map.read(jo + 8, &mut jh) && self.map.read(jo + JOURNAL_HDR, &mut img);
        let page = u32::from_le_bytes([jh[0], jh[1], jh[2], jh[3]]);
        let sum =
            u64::from_le_bytes([jh[8], jh[9], jh[10], jh[11], jh[12], jh[13], jh[14], jh[15]]);
        if ok && page < self.geo.pages && layout::data_sum(&img, self.seed) == sum {
            let base = self.geo.page_off(page);
            if let Some(rest) = img.get(8..) {
                self.map.write(base + 8, rest);
            }
            self.map.store_u64(jo, 0);
            self.map.store_u64(base + PH_STATE, STATE_CLEAN);
        } else {
            // Damaged journal: its page (if any) is still REBUILDING and its
            // next locker keeps what validates.
            self.map.store_u64(jo, 0);
        }
    }

    fn read_hdr(&self) -> PageHdr {
        let mut b = [0u8; PAGE_HDR];
        self.map.read(self.base, &mut b);
        PageHdr::decode(&b)
    }

    fn set_state(&self, s: u64) {
        self.map.store_u64(self.base + PH_STATE, s);
    }

    fn slot(&self, i: usize) -> u64 {
        self.map
            .load_u64(self.base + PAGE_HDR + i * SLOT_LEN)
            .unwrap_or(SLOT_EMPTY)
    }

    fn set_slot(&self, i: usize, v: u64) {
        self.map.store_u64(self.base + PAGE_HDR + i * SLOT_LEN, v);
    }

    /// The LRU stamp for this operation: wall-clock microseconds, made strictly
    /// increasing per handle by the caller. Kept per entry only, so a read
    /// dirties no shared page-header cache line.
    fn next_tick(&mut self) -> u64 {
        self.stamp
    }

    pub(crate) fn header(&self) -> &PageHdr {
        &self.hdr
    }

    /// Reads and validates the entry header at page offset `off`.
    fn head_at(&self, off: usize) -> Option<Head> {
        if off < self.geo.data_start() || !off.is_multiple_of(8) {
            return None;
        }
        let end = self.hdr.data_used as usize;
        if off.checked_add(ENTRY_HDR)? > end {
            return None;
        }
        let mut b = [0u8; ENTRY_HDR];
        if !self.map.read(self.base + off, &mut b) {
            return None;
        }
        let h = Head::decode(&b, self.pseed, self.geo.max_value)?;
        (off + layout::entry_size(h.len as usize) <= end).then_some(h)
    }

    /// Copies out and checks the value of a validated entry header.
    pub(crate) fn data_at(&self, off: usize, head: &Head) -> Option<Vec<u8>> {
        // Straight into the returned buffer (no zero-fill), checked on that copy.
        let data = self
            .map
            .read_vec(self.base + off + ENTRY_HDR, head.len as usize)?;
        (layout::data_sum(&data, self.seed) == head.data_sum).then_some(data)
    }

    /// Walks the id's whole probe chain (so a duplicate left by damage is noticed
    /// rather than resurrected later).
    pub(crate) fn probe(&self, id: &[u8; 32], h: Hashed) -> Probe {
        let slots = self.geo.slots as usize;
        let mut p = Probe::default();
        for i in 0..slots {
            let s = (h.start as usize + i) % slots;
            let v = self.slot(s);
            if v == SLOT_EMPTY {
                p.free.get_or_insert((s, true));
                break;
            }
            if v == SLOT_TOMB {
                p.free.get_or_insert((s, false));
                continue;
            }
            if (v >> 32) as u32 != h.tag {
                continue;
            }
            let off = (v & 0xffff_ffff) as usize;
            match self.head_at(off) {
                Some(head) if head.id == *id => {
                    if p.found.is_some() {
                        p.suspect += 1;
                    } else {
                        // A load copies this value next: start fetching it while
                        // the rest of the chain is walked (a hint, read nothing).
                        self.map.prefetch(
                            self.base + off + ENTRY_HDR,
                            (head.len as usize).min(PREFETCH_MAX),
                        );
                        p.found = Some((s, off, head));
                    }
                }
                Some(_) => {}
                None => p.suspect += 1,
            }
        }
        p
    }

    /// Copies out the entry the probe found, bumping its LRU tick.
    /// `Err(())` when the value fails its checksum.
    pub(crate) fn copy_found(&mut self, probe: &Probe) -> Result<Option<Copied>, ()> {
        let Some((_, off, head)) = probe.found else {
            return Ok(None);
        };
        let data = self.data_at(off, &head).ok_or(())?;
        let tick = self.next_tick();
        self.map
            .write(self.base + off + EH_ACCESS, &tick.to_le_bytes());
        Ok(Some(Copied { head, data }))
    }

    /// Whether `put` can proceed without reorganising the page.
    fn has_room(&self, probe: &Probe, len: usize) -> bool {
        let fits =
            self.hdr.data_used as usize + layout::entry_size(len) <= self.geo.page_size as usize;
        let slot_ok = probe.found.is_some()
            || match probe.free {
                Some((_, false)) => true,
                Some((_, true)) => self.hdr.slots_used < self.geo.max_slots_used(),
                None => false,
            };
        fits && slot_ok && probe.suspect == 0
    }

    /// Writes `data` as the id's current entry. Returns what had to be evicted.
    pub(crate) fn put(
        &mut self,
        id: &[u8; 32],
        h: Hashed,
        mut probe: Probe,
        data: &[u8],
        expires: i64,
        version: u64,
    ) -> io::Result<Evicted> {
        let mut ev = Evicted::default();
        if !self.has_room(&probe, data.len()) {
            ev = self.rebuild(Some((id, layout::entry_size(data.len()))))?;
            probe = self.probe(id, h);
        }
        let slot = match (probe.found, probe.free) {
            (Some((s, _, _)), _) => s,
            (None, Some((s, _))) => s,
            // A rebuild always leaves a free slot (at most 3/4 are used), so
            // this is unreachable; fail loudly rather than drop the write.
            (None, None) => return Err(io::Error::other("no free slot after a page rebuild")),
        };
        let fresh_slot = probe.found.is_none() && matches!(probe.free, Some((_, true)));
        let off = self.hdr.data_used as usize;
        // Fetch the destination lines while the value's checksum is computed.
        self.map.prefetch(
            self.base + off,
            layout::entry_size(data.len()).min(PREFETCH_MAX),
        );
        let tick = self.next_tick();
        let head = Head {
            id: *id,
            expires,
            version,
            len: data.len() as u32,
            data_sum: layout::data_sum(data, self.seed),
            access: tick,
        };
        self.set_state(STATE_WRITING);
        self.map.write(self.base + off, &head.encode(self.pseed));
        self.map.write(self.base + off + ENTRY_HDR, data);
        self.set_slot(slot, (u64::from(h.tag) << 32) | off as u64);
        if let Some((_, old, _)) = probe.found {
            // The replaced entry must never validate again (no stale resurrection).
            self.map.store_u64(self.base + old, 0);
        }
        self.hdr.data_used += layout::entry_size(data.len()) as u32;
        if fresh_slot {
            self.hdr.slots_used += 1;
        }
        self.write_counts();
        self.set_state(STATE_CLEAN);
        Ok(ev)
    }

    /// Rewrites the found entry's expiry in place (data and version unchanged).
    pub(crate) fn retime(&mut self, probe: &Probe, expires: i64) {
        let Some((_, off, head)) = probe.found else {
            return;
        };
        let tick = self.next_tick();
        let new = Head {
            expires,
            access: tick,
            ..head
        };
        self.set_state(STATE_WRITING);
        self.map.write(self.base + off, &new.encode(self.pseed));
        self.set_state(STATE_CLEAN);
    }

    /// Removes the found entry (one atomic slot store: no dirty window).
    pub(crate) fn remove(&self, probe: &Probe) {
        if let Some((s, off, _)) = probe.found {
            self.set_slot(s, SLOT_TOMB);
            self.map.store_u64(self.base + off, 0);
        }
    }

    /// Calls `f(slot, entry header)` for every entry whose header validates.
    pub(crate) fn for_each_head(&self, mut f: impl FnMut(usize, &Head)) {
        for s in 0..self.geo.slots as usize {
            let v = self.slot(s);
            if v == SLOT_EMPTY || v == SLOT_TOMB {
                continue;
            }
            if let Some(head) = self.head_at((v & 0xffff_ffff) as usize) {
                f(s, &head);
            }
        }
    }

    /// Tombstones the given slot and invalidates its entry (the expiry sweep).
    pub(crate) fn kill_slot(&self, s: usize) {
        let v = self.slot(s);
        self.set_slot(s, SLOT_TOMB);
        if v != SLOT_EMPTY && v != SLOT_TOMB {
            self.map
                .store_u64(self.base + (v & 0xffff_ffff) as usize, 0);
        }
    }

    /// Writes the statistics part of the header (not checksummed).
    fn write_stats(&self) {
        let img = self.hdr.encode(self.pseed);
        self.map.write(self.base + 16, &img[16..40]);
        self.map.write(self.base + 56, &img[56..64]);
    }

    fn write_counts(&self) {
        let (at, b) = PageHdr::counts_bytes(self.hdr.data_used, self.hdr.slots_used, self.pseed);
        self.map.write(self.base + at, &b);
    }

    /// Empties the page (after a death mid-rebuild, or a damaged state word).
    fn clear(&mut self) {
        self.set_state(STATE_REBUILDING);
        let zeros = vec![0u8; self.geo.slots as usize * SLOT_LEN];
        self.map.write(self.base + PAGE_HDR, &zeros);
        self.hdr.cleared = self.hdr.cleared.wrapping_add(1);
        self.hdr.data_used = self.geo.data_start() as u32;
        self.hdr.slots_used = 0;
        self.hdr.state = STATE_REBUILDING;
        let img = self.hdr.encode(self.pseed);
        self.map.write(self.base + 8, &img[8..]);
        self.set_state(STATE_CLEAN);
        self.hdr.state = STATE_CLEAN;
    }

    /// Rewrites the page from the entries that validate, dropping duplicates and
    /// damage. With `room = Some((id, need))` it also drops `id`'s entry (about to
    /// be replaced) and evicts until `need` more bytes and one more slot fit:
    /// expired entries first, then the least recently used live ones, down to 7/8
    /// of the page so the next writes do not rebuild again at once.
    pub(crate) fn rebuild(&mut self, room: Option<(&[u8; 32], usize)>) -> io::Result<Evicted> {
        SCRATCH.with_borrow_mut(|(buf, img)| self.rebuild_in(room, buf, img))
    }

    fn rebuild_in(
        &mut self,
        room: Option<(&[u8; 32], usize)>,
        buf: &mut Vec<u8>,
        img: &mut Vec<u8>,
    ) -> io::Result<Evicted> {
        let now = self.now;
        let ps = self.geo.page_size as usize;
        buf.clear();
        buf.resize(ps, 0);
        if !self.map.read(self.base, buf) {
            self.clear();
            return Ok(Evicted::default());
        }
        // Parse from the private copy: nothing another process does can change it.
        let mut entries: Vec<(Head, usize)> = Vec::new();
        let mut dropped = 0u64;
        for s in 0..self.geo.slots as usize {
            let at = PAGE_HDR + s * SLOT_LEN;
            let mut w = [0u8; 8];
            if let Some(b) = buf.get(at..at + 8) {
                w.copy_from_slice(b);
            }
            let v = u64::from_le_bytes(w);
            if v == SLOT_EMPTY || v == SLOT_TOMB {
                continue;
            }
            match self.parse_in(buf, (v & 0xffff_ffff) as usize) {
                Some(e) => entries.push(e),
                None => dropped += 1,
            }
        }
        // Two valid entries for one id can only come from damage: keep neither.
        entries.sort_unstable_by_key(|e| e.0.id);
        let mut kept: Vec<(Head, usize)> = Vec::with_capacity(entries.len());
        let mut i = 0;
        while i < entries.len() {
            let mut j = i + 1;
            while j < entries.len() && entries[j].0.id == entries[i].0.id {
                j += 1;
            }
            if j - i == 1 {
                kept.push(entries[i]);
            } else {
                dropped += (j - i) as u64;
            }
            i = j;
        }
        let mut ev = Evicted::default();
        if let Some((id, need)) = room {
            kept.retain(|(h, _)| h.id != *id);
            let before = kept.len();
            kept.retain(|(h, _)| h.expires > now);
            ev.expired = (before - kept.len()) as u64;
            let cap = self.geo.data_cap();
            let max_n = self.geo.max_slots_used() as usize;
            let mut bytes: usize = kept
                .iter()
                .map(|(h, _)| layout::entry_size(h.len as usize))
                .sum();
            if bytes + need > cap || kept.len() + 1 > max_n {
                // Evict to 7/8 of capacity, oldest access first.
                kept.sort_unstable_by_key(|(h, _)| h.access);
                let (byte_goal, n_goal) = (cap / 8 * 7, max_n / 8 * 7);
                let mut cut = 0;
                while cut < kept.len()
                    && (bytes + need > byte_goal.max(need) || kept.len() - cut + 1 > n_goal)
                {
                    bytes -= layout::entry_size(kept[cut].0.len as usize);
                    cut += 1;
                }
                kept.drain(..cut);
                ev.live = cut as u64;
            }
        }
        self.hdr.evicted_expired = self.hdr.evicted_expired.wrapping_add(ev.expired);
        self.hdr.evicted_live = self.hdr.evicted_live.wrapping_add(ev.live);
        self.hdr.corrupt_dropped = self.hdr.corrupt_dropped.wrapping_add(dropped);

        // Build the new page image privately, then copy it in one go.
        img.clear();
        img.resize(ps, 0);
        let slots = self.geo.slots as usize;
        let mut cursor = self.geo.data_start();
        let mut used = 0u32;
        for (head, off) in &kept {
            let size = layout::entry_size(head.len as usize);
            let (Some(src), true) = (buf.get(*off..*off + size), cursor + size <= ps) else {
                continue;
            };
            img[cursor..cursor + size].copy_from_slice(src);
            let h = layout::hash_id(&head.id, &self.geo, self.seed);
            for k in 0..slots {
                let s = (h.start as usize + k) % slots;
                let at = PAGE_HDR + s * SLOT_LEN;
                if img[at..at + 8] == [0u8; 8] {
                    let word = (u64::from(h.tag) << 32) | cursor as u64;
                    img[at..at + 8].copy_from_slice(&word.to_le_bytes());
                    used += 1;
                    break;
                }
            }
            cursor += size;
        }
        self.hdr.data_used = cursor as u32;
        self.hdr.slots_used = used;
        self.hdr.state = STATE_REBUILDING;
        img[..PAGE_HDR].copy_from_slice(&self.hdr.encode(self.pseed));

        let jo = self.geo.journal_off();
        let journal = self.journal.acquire()?;
        self.replay_journal();
        self.set_state(STATE_REBUILDING);
        let mut jh = [0u8; 16];
        jh[..4].copy_from_slice(&self.idx.to_le_bytes());
        jh[8..].copy_from_slice(&layout::data_sum(img, self.seed).to_le_bytes());
        self.map.write(jo + JOURNAL_HDR, img);
        self.map.write(jo + 8, &jh);
        self.map.store_u64(jo, JOURNAL_VALID);
        self.map.write(self.base + 8, &img[8..]);
        // Retire the journal before the page says clean: a valid journal then
        // always means "this rebuild did not finish".
        self.map.store_u64(jo, 0);
        drop(journal);
        self.set_state(STATE_CLEAN);
        self.hdr.state = STATE_CLEAN;
        Ok(ev)
    }

    /// Parses and fully validates the entry at `off` of a private page copy.
    fn parse_in(&self, buf: &[u8], off: usize) -> Option<(Head, usize)> {
        if off < self.geo.data_start() || !off.is_multiple_of(8) {
            return None;
        }
        let head = Head::decode(buf.get(off..)?, self.pseed, self.geo.max_value)?;
        let data = buf.get(off + ENTRY_HDR..off + ENTRY_HDR + head.len as usize)?;
        if off + layout::entry_size(head.len as usize) > buf.len()
            || layout::data_sum(data, self.seed) != head.data_sum
            || layout::hash_id(&head.id, &self.geo, self.seed).page != self.idx
        {
            return None;
        }
        Some((head, off))
    }
}
