//! The file format: header, geometry, page header and entry header, encoded and
//! decoded from owned byte arrays (never from the map itself).
//!
//! All integers are little-endian. Every decoder treats its input as untrusted.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes reserved for the file header (one OS page).
pub(crate) const HEADER_LEN: usize = 4096;
/// Bytes of the header that are meaningful (the rest is zero).
pub(crate) const HEADER_USED: usize = 56;
/// Bytes of a page header.
pub(crate) const PAGE_HDR: usize = 64;
/// Bytes of an entry header; the value follows, padded to 8 bytes.
pub(crate) const ENTRY_HDR: usize = 80;
/// Bytes per lock word slot in the lock table.
pub(crate) const LOCK_LEN: usize = 64;
/// Bytes of the journal header: valid word, page index, image checksum.
pub(crate) const JOURNAL_HDR: usize = 64;
/// Bytes of one slot (tag in the high half, entry offset in the low half).
pub(crate) const SLOT_LEN: usize = 8;

pub(crate) const MAGIC: [u8; 8] = *b"SESSMMAP";
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Slot word of a never-used slot: ends a probe chain.
pub(crate) const SLOT_EMPTY: u64 = 0;
/// Slot word of a deleted entry: probing continues past it.
pub(crate) const SLOT_TOMB: u64 = 1;

/// Page state word: no write in progress.
pub(crate) const STATE_CLEAN: u64 = 0;
/// A single-entry write is in progress: a later locker keeps entries that validate.
pub(crate) const STATE_WRITING: u64 = 1;
/// The page is being rewritten as a whole: a later locker clears it.
pub(crate) const STATE_REBUILDING: u64 = 2;

/// Smallest and largest page sizes a geometry may have.
pub(crate) const MIN_PAGE: u32 = 16 << 10;
pub(crate) const MAX_PAGE: u32 = 256 << 20;
/// Most pages a file may have.
pub(crate) const MAX_PAGES: u32 = 1 << 16;

/// The fixed shape of a cache file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) pages: u32,
    pub(crate) page_size: u32,
    pub(crate) slots: u32,
    pub(crate) max_value: u32,
}

impl Geometry {
    /// The geometry for a file of about `size` bytes split into `pages` pages.
    pub(crate) fn compute(size: u64, pages: u32, max_value: Option<usize>) -> Result<Self, String> {
        if pages == 0 || pages > MAX_PAGES {
            return Err(format!("page count {pages} is not in 1..={MAX_PAGES}"));
        }
        let per_page = size
            .saturating_sub(HEADER_LEN as u64 + (u64::from(pages) + 1) * LOCK_LEN as u64)
            / u64::from(pages);
        let page_size =
            u32::try_from(per_page.min(u64::from(MAX_PAGE))).unwrap_or(MAX_PAGE) & !4095;
        if page_size < MIN_PAGE {
            return Err(format!(
                "{size} bytes over {pages} pages leaves {page_size}-byte pages; need at least {MIN_PAGE}"
            ));
        }
        // One slot per 256 bytes of page: values averaging under ~200 bytes run
        // out of slots before data space, which only means earlier eviction.
        let slots = (page_size / 256).clamp(64, 1 << 20);
        let mut geo = Self {
            pages,
            page_size,
            slots,
            max_value: 0,
        };
        let cap = geo.value_cap();
        geo.max_value = match max_value {
            None => cap,
            Some(m) if m >= 1 && m <= cap as usize => m as u32,
            Some(m) => {
                return Err(format!(
                    "max_value_size {m} is not in 1..={cap} for {page_size}-byte pages"
                ));
            }
        };
        Ok(geo)
    }

    /// Largest value a page of this geometry accepts: a quarter of its data area,
    /// so a full page can always make room for one more value by evicting.
    fn value_cap(&self) -> u32 {
        let quarter = (self.page_size as usize - self.data_start()) / 4;
        u32::try_from(quarter.saturating_sub(ENTRY_HDR) & !7).unwrap_or(0)
    }

    /// Checks a geometry read from a file header.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let ok = (1..=MAX_PAGES).contains(&self.pages)
            && (MIN_PAGE..=MAX_PAGE).contains(&self.page_size)
            && self.page_size.is_multiple_of(4096)
            && self.slots >= 64
            && (self.slots as usize * SLOT_LEN) <= self.page_size as usize / 2
            && self.max_value >= 1
            && self.max_value <= self.value_cap();
        if ok {
            Ok(())
        } else {
            Err(format!("impossible geometry {self:?}"))
        }
    }

    pub(crate) fn data_start(&self) -> usize {
        PAGE_HDR + self.slots as usize * SLOT_LEN
    }

    /// Offset of lock word `i` (pages `0..pages`, then the journal's): one
    /// cache line each, so neighbouring pages' lockers do not false-share.
    pub(crate) fn lock_off(&self, i: u32) -> usize {
        HEADER_LEN + i as usize * LOCK_LEN
    }

    /// Bytes of the lock table, rounded up to whole 4 KiB pages.
    pub(crate) fn locks_len(&self) -> usize {
        ((self.pages as usize + 1) * LOCK_LEN).div_ceil(4096) * 4096
    }

    /// [`page_off`](Self::page_off) for any `page`, clamped to the journal.
    pub(crate) fn page_offset_checked(&self, page: u32) -> u64 {
        self.page_off(page.min(self.pages)) as u64
    }

    pub(crate) fn page_off(&self, page: u32) -> usize {
        HEADER_LEN + self.locks_len() + page as usize * self.page_size as usize
    }

    /// Where the rebuild journal starts: a 64-byte journal header, then room
    /// for one page image.
    pub(crate) fn journal_off(&self) -> usize {
        self.page_off(self.pages)
    }

    pub(crate) fn file_len(&self) -> u64 {
        HEADER_LEN as u64
            + self.locks_len() as u64
            + u64::from(self.pages) * u64::from(self.page_size)
            + JOURNAL_HDR as u64
            + u64::from(self.page_size)
    }

    /// Most occupied slots (entries and tombstones) a page may have: 3/4 keeps
    /// linear-probing chains short.
    pub(crate) fn max_slots_used(&self) -> u32 {
        self.slots / 4 * 3
    }

    pub(crate) fn data_cap(&self) -> usize {
        self.page_size as usize - self.data_start()
    }
}

/// Space an entry with a `len`-byte value takes in a page's data area.
pub(crate) fn entry_size(len: usize) -> usize {
    ENTRY_HDR + len.div_ceil(8) * 8
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    if let Some(s) = b.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Why a file header was refused.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// Zero magic: nobody finished creating this file yet.
    Uninitialised,
    Foreign,
    Version(u32),
    Checksum,
    Geometry(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uninitialised => f.write_str("the cache file has no header yet"),
            Self::Foreign => f.write_str("not a store-mmap cache file (wrong magic)"),
            Self::Version(v) => write!(
                f,
                "cache file format version {v} is not supported (want {FORMAT_VERSION})"
            ),
            Self::Checksum => f.write_str("cache file header checksum mismatch"),
            Self::Geometry(e) => write!(f, "cache file header: {e}"),
        }
    }
}

impl std::error::Error for HeaderError {}

pub(crate) fn encode_header(geo: &Geometry, seed: u64) -> [u8; HEADER_USED] {
    let mut b = [0u8; HEADER_USED];
    b[..8].copy_from_slice(&MAGIC);
    put_u32(&mut b, 8, FORMAT_VERSION);
    put_u32(&mut b, 12, HEADER_LEN as u32);
    put_u32(&mut b, 16, geo.pages);
    put_u32(&mut b, 20, geo.page_size);
    put_u32(&mut b, 24, geo.slots);
    put_u32(&mut b, 28, geo.max_value);
    put_u64(&mut b, 32, seed);
    put_u64(&mut b, 40, geo.file_len());
    let sum = xxh3_64_with_seed(&b[..48], 0);
    put_u64(&mut b, 48, sum);
    b
}

pub(crate) fn decode_header(b: &[u8; HEADER_USED]) -> Result<(Geometry, u64), HeaderError> {
    if b[..8] == [0u8; 8] {
        return Err(HeaderError::Uninitialised);
    }
    if b[..8] != MAGIC {
        return Err(HeaderError::Foreign);
    }
    if xxh3_64_with_seed(&b[..48], 0) != le_u64(b, 48) {
        return Err(HeaderError::Checksum);
    }
    let version = le_u32(b, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    if le_u32(b, 12) as usize != HEADER_LEN {
        return Err(HeaderError::Geometry("wrong header length".into()));
    }
    let geo = Geometry {
        pages: le_u32(b, 16),
        page_size: le_u32(b, 20),
        slots: le_u32(b, 24),
        max_value: le_u32(b, 28),
    };
    geo.validate().map_err(HeaderError::Geometry)?;
    if le_u64(b, 40) != geo.file_len() {
        return Err(HeaderError::Geometry(
            "file length disagrees with geometry".into(),
        ));
    }
    Ok((geo, le_u64(b, 32)))
}

/// Where an id lives: its page, the first slot of its probe chain, and a tag
/// that lets probing skip most foreign slots without reading their entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hashed {
    pub(crate) page: u32,
    pub(crate) start: u32,
    pub(crate) tag: u32,
}

pub(crate) fn hash_id(id: &[u8; 32], geo: &Geometry, seed: u64) -> Hashed {
    // Keyed by the file's random seed, so hostile ids cannot be chosen to pile
    // into one page without knowing the seed.
    let h = xxh3_64_with_seed(id, seed);
    let lo = h & 0xffff_ffff;
    let hi = h >> 32;
    Hashed {
        page: ((lo * u64::from(geo.pages)) >> 32) as u32,
        start: ((hi * u64::from(geo.slots)) >> 32) as u32,
        tag: hi as u32,
    }
}

/// The seed for checksums of one page's entries and header: a copied entry or
/// header from another page or another file does not validate.
pub(crate) fn page_seed(seed: u64, page: u32) -> u64 {
    seed ^ u64::from(page)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

pub(crate) fn data_sum(data: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(data, seed)
}

/// A page header, decoded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PageHdr {
    pub(crate) state: u64,
    pub(crate) tick: u64,
    pub(crate) evicted_live: u64,
    pub(crate) evicted_expired: u64,
    pub(crate) repaired: u32,
    pub(crate) cleared: u32,
    pub(crate) data_used: u32,
    pub(crate) slots_used: u32,
    pub(crate) sum: u64,
    pub(crate) corrupt_dropped: u64,
}

/// Offsets inside a page header.
pub(crate) const PH_STATE: usize = 0;
const PH_COUNTS: usize = 40;

impl PageHdr {
    pub(crate) fn decode(b: &[u8; PAGE_HDR]) -> Self {
        Self {
            state: le_u64(b, 0),
            tick: le_u64(b, 8),
            evicted_live: le_u64(b, 16),
            evicted_expired: le_u64(b, 24),
            repaired: le_u32(b, 32),
            cleared: le_u32(b, 36),
            data_used: le_u32(b, 40),
            slots_used: le_u32(b, 44),
            sum: le_u64(b, 48),
            corrupt_dropped: le_u64(b, 56),
        }
    }

    pub(crate) fn encode(&self, pseed: u64) -> [u8; PAGE_HDR] {
        let mut b = [0u8; PAGE_HDR];
        put_u64(&mut b, 0, self.state);
        put_u64(&mut b, 8, self.tick);
        put_u64(&mut b, 16, self.evicted_live);
        put_u64(&mut b, 24, self.evicted_expired);
        put_u32(&mut b, 32, self.repaired);
        put_u32(&mut b, 36, self.cleared);
        put_u32(&mut b, 40, self.data_used);
        put_u32(&mut b, 44, self.slots_used);
        put_u64(
            &mut b,
            48,
            Self::counts_sum(self.data_used, self.slots_used, pseed),
        );
        put_u64(&mut b, 56, self.corrupt_dropped);
        b
    }

    /// The checksum covers the two fields that steer writes (where the next entry
    /// goes, how full the slot table is); the rest are hints and statistics.
    pub(crate) fn counts_sum(data_used: u32, slots_used: u32, pseed: u64) -> u64 {
        let mut b = [0u8; 8];
        put_u32(&mut b, 0, data_used);
        put_u32(&mut b, 4, slots_used);
        xxh3_64_with_seed(&b, pseed)
    }

    /// The 16 bytes at [`PH_COUNTS`]: `data_used`, `slots_used` and their checksum.
    pub(crate) fn counts_bytes(data_used: u32, slots_used: u32, pseed: u64) -> (usize, [u8; 16]) {
        let mut b = [0u8; 16];
        put_u32(&mut b, 0, data_used);
        put_u32(&mut b, 4, slots_used);
        put_u64(&mut b, 8, Self::counts_sum(data_used, slots_used, pseed));
        (PH_COUNTS, b)
    }

    /// Whether the write-steering fields are intact and in range.
    pub(crate) fn is_sound(&self, geo: &Geometry, pseed: u64) -> bool {
        self.sum == Self::counts_sum(self.data_used, self.slots_used, pseed)
            && (geo.data_start()..=geo.page_size as usize).contains(&(self.data_used as usize))
            && self.data_used.is_multiple_of(8)
            && self.slots_used <= geo.slots
    }
}

/// An entry header, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) id: [u8; 32],
    pub(crate) expires: i64,
    pub(crate) version: u64,
    pub(crate) len: u32,
    pub(crate) data_sum: u64,
    pub(crate) access: u64,
}

/// Offset of the (unchecksummed) access tick inside an entry header.
pub(crate) const EH_ACCESS: usize = 72;

impl Head {
    pub(crate) fn encode(&self, pseed: u64) -> [u8; ENTRY_HDR] {
        let mut b = [0u8; ENTRY_HDR];
        b[8..40].copy_from_slice(&self.id);
        put_u64(&mut b, 40, self.expires as u64);
        put_u64(&mut b, 48, self.version);
        put_u32(&mut b, 56, self.len);
        put_u64(&mut b, 64, self.data_sum);
        put_u64(&mut b, 72, self.access);
        let sum = xxh3_64_with_seed(&b[8..72], pseed);
        put_u64(&mut b, 0, sum);
        b
    }

    /// `None` when the checksum, padding or length does not validate.
    pub(crate) fn decode(b: &[u8], pseed: u64, max_value: u32) -> Option<Self> {
        let b = b.get(..ENTRY_HDR)?;
        if xxh3_64_with_seed(&b[8..72], pseed) != le_u64(b, 0) || le_u32(b, 60) != 0 {
            return None;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[8..40]);
        let len = le_u32(b, 56);
        if len > max_value {
            return None;
        }
        Some(Self {
            id,
            expires: le_u64(b, 40) as i64,
            version: le_u64(b, 48),
            len,
            data_sum: le_u64(b, 64),
            access: le_u64(b, 72),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_geometry_fits_a_kib_and_validates() {
        let g = Geometry::compute(128 << 20, 256, None).unwrap();
        assert!(g.max_value >= 64 << 10);
        g.validate().unwrap();
        let small = Geometry::compute(1 << 20, 16, Some(1024)).unwrap();
        small.validate().unwrap();
        assert!(Geometry::compute(1 << 20, 0, None).is_err());
        assert!(Geometry::compute(1 << 20, 1 << 10, None).is_err());
        assert!(Geometry::compute(1 << 20, 16, Some(1 << 20)).is_err());
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let g = Geometry::compute(1 << 20, 16, None).unwrap();
        let h = encode_header(&g, 42);
        assert_eq!(decode_header(&h).unwrap(), (g, 42));
        let mut bad = h;
        bad[20] ^= 1;
        assert!(matches!(decode_header(&bad), Err(HeaderError::Checksum)));
        let mut foreign = h;
        foreign[0] = b'X';
        assert!(matches!(decode_header(&foreign), Err(HeaderError::Foreign)));
        assert!(matches!(
            decode_header(&[0; HEADER_USED]),
            Err(HeaderError::Uninitialised)
        ));
    }

    #[test]
    fn entry_heads_check_themselves() {
        let h = Head {
            id: [7; 32],
            expires: -5,
            version: 9,
            len: 3,
            data_sum: 1,
            access: 2,
        };
        let b = h.encode(11);
        assert_eq!(Head::decode(&b, 11, 10), Some(h));
        assert_eq!(Head::decode(&b, 12, 10), None);
        assert_eq!(Head::decode(&b, 11, 2), None);
        assert_eq!(Head::decode(&b[..79], 11, 10), None);
        let mut flipped = b;
        flipped[45] ^= 0x10;
        assert_eq!(Head::decode(&flipped, 11, 10), None);
        // The access tick is a hint outside the checksum.
        let mut touched = b;
        touched[EH_ACCESS] = 99;
        assert!(Head::decode(&touched, 11, 10).is_some());
    }
}
