//! The conformance suite on the machine's RabbitMQ (127.0.0.1:5672, or
//! `EVENT_BUS_TEST_RABBITMQ_URL`), and the restart and fault groups on a
//! RabbitMQ node of the test's own.
//!
//! - Every group the capabilities choose: `core`, `groups`,
//!   `membership_churn`, `ordered`, `persistent`. `replay` and `seek_time`
//!   are declared false (quorum queues keep no history for a new group and
//!   cannot seek), so their cases say they did not run. No exceptions.
//! - `restart`, `faults` and `network_faults`: a node of its own
//!   (`tests/common`), stopped and started again with the same data (quorum
//!   queues and persistent messages survive), or reached through the
//!   suite's fault proxy (`broker_addr` / `transport_via`).
//! - `slow_receiver` is not invoked: it proves that a backend's lease is
//!   kept while a receiver is slow, and RabbitMQ gives no lease to keep (a
//!   delivery stays with its consumer until acked or its channel closes;
//!   `keep_alive` is a no-op), so there is no short lease to configure.
//! - The queues and exchanges of the shared broker's cases are deleted when
//!   each case ends (`common::Topics`).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use event_bus_conformance::{conformance_suite, conformance_tests, BackendUnderTest};
use openedx_events::bus::Transport;

/// The shared broker; the queues and exchanges of the case's topics are
/// deleted when the case ends.
#[derive(Default)]
struct Shared(common::Topics);

#[async_trait]
impl BackendUnderTest for Shared {
    async fn transport(&self) -> Arc<dyn Transport> {
        common::connect(&common::shared_url()).await
    }

    fn topic(&self, case: &str) -> String {
        self.0.make(format!(
            "conformance-{case}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
    }
}

conformance_suite!(Shared::default());

mod restart {
    use super::*;
    use common::OwnNode;

    struct Restartable(OwnNode);

    #[async_trait]
    impl BackendUnderTest for Restartable {
        async fn transport(&self) -> Arc<dyn Transport> {
            common::connect(&self.0.url()).await
        }

        async fn restart_broker(&self) -> Result<(), String> {
            let node = &self.0;
            tokio::task::block_in_place(|| node.restart())
        }

        fn broker_addr(&self) -> Option<std::net::SocketAddr> {
            Some(self.0.addr())
        }

        async fn transport_via(&self, addr: std::net::SocketAddr) -> Option<Arc<dyn Transport>> {
            Some(common::connect(&format!("amqp://guest:guest@{addr}/%2f")).await)
        }
    }

    fn backend() -> Restartable {
        Restartable(OwnNode::start())
    }

    conformance_tests!(restart, backend());
    conformance_tests!(faults, backend());
    conformance_tests!(network_faults, backend());
}
