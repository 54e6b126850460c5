//! The reference `MemoryStore` passes the whole suite (what it claims: no
//! persistence, one process, a native `update`, a size limit).
use std::sync::Arc;

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{MemoryStore, SessionStore, StoreResult, async_trait};

const LIMIT: usize = 256 * 1024;

struct Memory;

#[async_trait]
impl Backend for Memory {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().native_update().max_value_size(LIMIT)
    }

    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        Ok(Arc::new(
            MemoryStore::builder()
                .clock(ctx.clock().clone())
                .max_value_size(LIMIT)
                .build(),
        ))
    }
}

conformance_tests::suite!(Memory);
