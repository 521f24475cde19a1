//! The memory backend against the conformance suite: every group its
//! capabilities choose.

use std::sync::Arc;

use async_trait::async_trait;
use event_bus_conformance::{conformance_suite, BackendUnderTest};
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

// Every group the capabilities choose. `persistent` is declared false
// (nothing survives the process), yet within one process a closed
// subscriber's messages do go back to its group, which is what the
// `persistent` group's close/reopen cases check. No broker to restart.
conformance_suite!(backend());
