//! The memory backend against the conformance suite. It runs every group
//! but `persistent`'s restart story and `restart`: nothing survives the
//! process, and there is no broker to restart.

use std::sync::Arc;

use async_trait::async_trait;
use event_bus_conformance::{conformance_tests, BackendUnderTest};
use openedx_events::bus::memory::MemoryBroker;
use openedx_events::bus::Transport;

struct Memory(MemoryBroker);

#[async_trait]
impl BackendUnderTest for Memory {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.0.transport())
    }
}

fn backend() -> Memory {
    Memory(MemoryBroker::new())
}

conformance_tests!(core, backend());
conformance_tests!(groups, backend());
conformance_tests!(membership_churn, backend());
conformance_tests!(ordered, backend());
conformance_tests!(replay, backend());
conformance_tests!(seek_time, backend());
// Within one process a closed subscriber's messages do go back to its group,
// so the close/reopen cases apply too (nothing survives the process itself).
conformance_tests!(persistent, backend());
