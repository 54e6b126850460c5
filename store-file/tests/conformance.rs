//! The shared conformance suite, once per durability mode.

use std::sync::Arc;

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{SessionStore, StoreResult};
use store_file::{DEFAULT_MAX_VALUE_SIZE, Durability, FileStore};

struct FileBackend(Durability);

#[conformance_tests::async_trait]
impl Backend for FileBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .persistent()
            .multi_process()
            .native_update()
            .max_value_size(DEFAULT_MAX_VALUE_SIZE)
    }

    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        let store = FileStore::builder()
            .path(ctx.dir().join(ctx.namespace()))
            .durability(self.0)
            .clock(ctx.clock().clone())
            .open()?;
        Ok(Arc::new(store))
    }
}

mod immediate {
    use super::*;
    conformance_tests::suite!(FileBackend(Durability::Immediate));
}

mod no_fsync {
    use super::*;
    conformance_tests::suite!(FileBackend(Durability::None));
}
