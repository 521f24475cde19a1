//! # event-bus-conformance
//!
//! The behaviour every openedx-event-bus backend must show against its real
//! broker: Watermill's universal pub/sub cases (publish-subscribe with ids,
//! payloads and metadata intact, concurrency, topic isolation, redelivery
//! after nack, ordering, close and reopen, consumer groups, broker restart)
//! and the event bus's own (dead letters with reason, retries with backoff
//! that do not block the stream, poison messages, graceful shutdown with
//! in-flight messages, replay from a time, header fidelity, payloads near the
//! size limit, duplicate event ids).
//!
//! A backend's test file describes how to reach the broker and invokes the
//! groups of cases whose promises it makes; a group it does not invoke is a
//! promise it does not make (say why in a comment there):
//!
//! ```text
//! struct Memory(MemoryBroker);
//! #[async_trait]
//! impl BackendUnderTest for Memory {
//!     async fn transport(&self) -> Arc<dyn Transport> { Arc::new(self.0.transport()) }
//! }
//! fn backend() -> Memory { Memory(MemoryBroker::new()) }
//! event_bus_conformance::conformance_tests!(core, backend());
//! event_bus_conformance::conformance_tests!(groups, backend());
//! event_bus_conformance::conformance_tests!(ordered, backend());
//! ```

pub mod consume_loop;
pub mod fault_proxy;
pub mod faults;
pub mod pubsub;
pub mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::Transport;

pub use support::*;

/// How the suite reaches the backend under test.
#[async_trait]
pub trait BackendUnderTest: Send + Sync {
    /// A new connection to the broker, as a new process would open. Every
    /// call must give an independent connection to the same broker.
    async fn transport(&self) -> Arc<dyn Transport>;

    /// Restart the broker (for the `restart` group); when it returns, the
    /// broker is accepting connections again.
    async fn restart_broker(&self) -> Result<(), String> {
        Err("this backend has no restart command".into())
    }

    /// A unique topic name for a case.
    fn topic(&self, case: &str) -> String {
        format!(
            "conformance-{case}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }

    /// How long to wait for messages before failing a case.
    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Events a fault case sends (`faults` group): 5000, or
    /// `EVENT_BUS_FAULT_EVENTS` (the long soak, `scripts/faults.sh --long`).
    fn fault_events(&self) -> usize {
        std::env::var("EVENT_BUS_FAULT_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n >= 10)
            .unwrap_or(5000)
    }

    /// The longest stall a fault case accepts after the fault ended: a
    /// bound far below any claim or session timeout, so an event left
    /// behind until one fires fails the case.
    fn stall_bound(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// How long the network stays black-holed (`network_faults` group).
    fn blackhole_time(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Subscription extras that make the backend's lease (claim idle time,
    /// session) short, and that lease, for the `slow_receiver` group.
    fn short_lease(&self) -> Option<(serde_json::Map<String, serde_json::Value>, Duration)> {
        None
    }

    /// The broker's address, for the `network_faults` group's proxy.
    fn broker_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// A connection to the broker through `addr` (the fault proxy) instead
    /// of its own address, for the `network_faults` group.
    async fn transport_via(&self, addr: std::net::SocketAddr) -> Option<Arc<dyn Transport>> {
        let _ = addr;
        None
    }

    /// Extra options the backend needs on every subscription (e.g. a short
    /// idle time before claiming), merged into `SubscribeRequest::extras`.
    fn subscribe_extras(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// Generate one `#[tokio::test]` per case of a group, each with its own
/// backend from `$make` (an expression).
///
/// Groups: `core` (every backend), `groups` (consumer groups),
/// `membership_churn` (many members of a group join and leave at once, then
/// one member gets everything), `ordered`
/// (per-key order and ordered redelivery), `persistent` (messages survive a
/// subscriber's close; unacknowledged ones are redelivered), `replay` (a new
/// group reads older messages), `seek_time` (replay from a time), `restart`
/// (survive a broker restart), `faults` (a consumer and a producer through
/// broker restarts, measured: [`faults`]), `network_faults` (black-hole and
/// connection resets through [`fault_proxy::FaultProxy`]), `slow_receiver`
/// (a receiver slower than the lease keeps its messages).
#[macro_export]
macro_rules! conformance_tests {
    (core, $make:expr) => {
        $crate::__conformance_cases!($make;
            pubsub::publish_subscribe,
            pubsub::many_topics,
            pubsub::resend_on_nack,
            pubsub::continue_after_errors,
            pubsub::publisher_flush,
            pubsub::topic_isolation,
            pubsub::header_and_metadata_fidelity,
            pubsub::payload_near_size_limit,
            consume_loop::dead_letter_with_reason,
            consume_loop::retry_with_backoff,
            consume_loop::retry_does_not_block_the_stream,
            consume_loop::poison_messages_do_not_stop_the_stream,
            consume_loop::graceful_shutdown_with_in_flight_messages,
            consume_loop::duplicate_event_id,
            consume_loop::dead_letters_can_be_requeued
        );
    };
    (groups, $make:expr) => {
        $crate::__conformance_cases!($make;
            pubsub::concurrent_subscribe,
            pubsub::two_groups_each_get_everything
        );
    };
    (membership_churn, $make:expr) => {
        $crate::__conformance_cases!($make; pubsub::concurrent_close);
    };
    (ordered, $make:expr) => {
        $crate::__conformance_cases!($make;
            pubsub::no_next_message_before_ack,
            pubsub::per_key_order
        );
    };
    (persistent, $make:expr) => {
        $crate::__conformance_cases!($make;
            pubsub::continue_after_subscribe_close,
            pubsub::unacked_messages_redelivered_after_close
        );
    };
    (replay, $make:expr) => {
        $crate::__conformance_cases!($make; pubsub::new_group_receives_old_messages);
    };
    (seek_time, $make:expr) => {
        $crate::__conformance_cases!($make; consume_loop::replay_from_time);
    };
    (restart, $make:expr) => {
        $crate::__conformance_cases!($make; pubsub::reconnect_after_broker_restart);
    };
    (faults, $make:expr) => {
        $crate::__conformance_cases!($make;
            faults::consume_through_broker_restarts,
            faults::produce_through_broker_restart
        );
    };
    (slow_receiver, $make:expr) => {
        $crate::__conformance_cases!($make; faults::slow_receiver_keeps_its_lease);
    };
    (network_faults, $make:expr) => {
        $crate::__conformance_cases!($make;
            faults::blackhole_then_heal,
            faults::connection_reset_mid_stream
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($make:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $make;
                $crate::run_case(stringify!($case), &backend, |b| Box::pin($crate::$module::$case(b))).await;
            }
        )*
    };
}

/// Run one case with an overall time limit, so a hung broker fails the case
/// with a clear message instead of hanging the test run.
pub async fn run_case<'a, B: BackendUnderTest>(
    name: &str,
    backend: &'a B,
    case: impl FnOnce(&'a B) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
) {
    let limit = backend.patience() * 4;
    if tokio::time::timeout(limit, case(backend)).await.is_err() {
        panic!("conformance case {name} did not finish within {limit:?}");
    }
}
