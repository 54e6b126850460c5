//! The shared conformance suite against a real mapped file.
//!
//! Not claimed: `persistent`. Reopening keeps every record (see `tests/mmap.rs`),
//! but this is a cache: a full page evicts, and a writer killed during a page
//! rebuild makes the next locker clear that page, so acknowledged writes can go.

use std::sync::Arc;

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{SessionStore, StoreResult};
use store_mmap::MmapStore;

/// 64 MiB over 64 pages: 1 MiB pages, so the suite's 10,000 sessions never evict.
const SIZE: u64 = 64 << 20;
const PAGES: u32 = 64;
const LIMIT: usize = 64 << 10;

struct Mmap;

#[conformance_tests::async_trait]
impl Backend for Mmap {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .multi_process()
            .native_update()
            .max_value_size(LIMIT)
    }

    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        let store = MmapStore::builder()
            .path(ctx.dir().join(format!("{}.cache", ctx.namespace())))
            .size(SIZE)
            .pages(PAGES)
            .max_value_size(LIMIT)
            .clock(ctx.clock().clone())
            .open()?;
        Ok(Arc::new(store))
    }
}

conformance_tests::suite!(Mmap);

/// The same store, also claiming `persistent`: below capacity (this size never
/// evicts what the suite writes), reopening and SIGKILLing a writer keep every
/// acknowledged write — entries validate by checksum, a death mid-write keeps
/// what validates, a death mid-rebuild is replayed from the journal. Kept in a
/// separate run because a cache over capacity does drop (counted) sessions.
mod within_capacity {
    use super::*;

    struct MmapBelowCapacity;

    #[conformance_tests::async_trait]
    impl Backend for MmapBelowCapacity {
        fn capabilities(&self) -> Capabilities {
            Mmap.capabilities().persistent()
        }

        async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
            Mmap.open(ctx).await
        }
    }

    conformance_tests::suite!(MmapBelowCapacity);
}
