//! The shared conformance suite, once per engine and durability mode.

use std::sync::Arc;

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{SessionStore, StoreResult};
use store_embedded_kv::{DEFAULT_MAX_VALUE_SIZE, Durability, EmbeddedStore, Engine};

struct Kv {
    engine: Engine,
    durability: Durability,
    shared: bool,
}

#[conformance_tests::async_trait]
impl Backend for Kv {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::new()
            .native_update()
            .max_value_size(DEFAULT_MAX_VALUE_SIZE);
        // redb's non-durable commits die with the process, so redb + Eventual
        // does not claim to survive the suite's SIGKILL check; everything else does.
        if self.durability == Durability::Immediate || self.engine.is_multi_process() {
            caps = caps.persistent();
        }
        if self.engine.is_multi_process() || self.shared {
            caps = caps.multi_process();
        }
        caps
    }

    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        let store = EmbeddedStore::builder()
            .path(ctx.dir().join(ctx.namespace()))
            .engine(self.engine)
            .durability(self.durability)
            .clock(ctx.clock().clone())
            .redb_multi_process(self.shared)
            .open()?;
        Ok(Arc::new(store))
    }
}

#[cfg(feature = "redb")]
mod redb_immediate {
    use super::*;
    conformance_tests::suite!(Kv {
        engine: Engine::Redb,
        durability: Durability::Immediate,
        shared: false
    });
}

#[cfg(feature = "redb")]
mod redb_eventual {
    use super::*;
    conformance_tests::suite!(Kv {
        engine: Engine::Redb,
        durability: Durability::Eventual,
        shared: false
    });
}

#[cfg(feature = "lmdb")]
mod lmdb_immediate {
    use super::*;
    conformance_tests::suite!(Kv {
        engine: Engine::Lmdb,
        durability: Durability::Immediate,
        shared: false
    });
}

#[cfg(feature = "lmdb")]
mod lmdb_eventual {
    use super::*;
    conformance_tests::suite!(Kv {
        engine: Engine::Lmdb,
        durability: Durability::Eventual,
        shared: false
    });
}

#[cfg(feature = "redb")]
mod redb_shared {
    use super::*;
    conformance_tests::suite!(Kv {
        engine: Engine::Redb,
        durability: Durability::Immediate,
        shared: true
    });
}
