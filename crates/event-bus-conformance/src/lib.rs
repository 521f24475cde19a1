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
//! suite; the backend's [`Capabilities`](openedx_events::bus::transport::Capabilities)
//! choose the groups that run, as Watermill's `Features` do, so the file
//! states only its exceptions, each with its reason:
//!
//! ```text
//! struct Memory(MemoryBroker);
//! #[async_trait]
//! impl BackendUnderTest for Memory {
//!     async fn transport(&self) -> Arc<dyn Transport> { Arc::new(self.0.transport()) }
//! }
//! fn backend() -> Memory { Memory(MemoryBroker::new()) }
//! event_bus_conformance::conformance_suite!(backend());
//! // or, with exceptions:
//! event_bus_conformance::conformance_suite!(backend(), except {
//!     membership_churn: "why this backend cannot show it here",
//! });
//! ```
//!
//! The groups that need a broker of the test's own (`restart`, `faults`,
//! `network_faults`, `slow_receiver`) are invoked beside it, each with its
//! fixture: `conformance_tests!(restart, own_server())`.

pub mod consume_loop;
pub mod fault_proxy;
pub mod faults;
pub mod pubsub;
pub mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::Capabilities;
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

/// The groups a backend's capabilities choose, on `$make`: `core` always;
/// `groups` and `membership_churn` with `consumer_groups`; `ordered` with
/// `ordered_per_key`; `persistent` always (a closed subscriber's messages go
/// back to its group; surviving the broker is `restart`'s); `replay` with
/// `replay_from_start`; `seek_time` with `seek_time`.
///
/// A case of a group whose capability the transport does not declare
/// checks that the declaration says so and prints that it did not run
/// (libtest has no run-time skip; Watermill's suite skips the same way).
/// `except { group: "reason", ... }` leaves groups out altogether, for what
/// the backend promises but cannot show here; the reason is required.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr $(,)?) => {
        $crate::conformance_suite!($make, except {});
    };
    ($make:expr, except { $($group:ident : $why:literal),* $(,)? } $(,)?) => {
        $( const _: &str = $why; )*
        $crate::__unless_excepted!(core; $($group),*; $crate::conformance_tests!(core, $make););
        $crate::__unless_excepted!(groups; $($group),*; $crate::conformance_tests!(groups, $make););
        $crate::__unless_excepted!(membership_churn; $($group),*;
            $crate::conformance_tests!(membership_churn, $make););
        $crate::__unless_excepted!(ordered; $($group),*; $crate::conformance_tests!(ordered, $make););
        $crate::__unless_excepted!(persistent; $($group),*; $crate::conformance_tests!(persistent, $make););
        $crate::__unless_excepted!(replay; $($group),*; $crate::conformance_tests!(replay, $make););
        $crate::__unless_excepted!(seek_time; $($group),*; $crate::conformance_tests!(seek_time, $make););
    };
}

/// `$body` unless `$group` is one of the listed groups (declarative macros
/// cannot compare two identifiers, so each group name is matched literally).
#[doc(hidden)]
#[macro_export]
macro_rules! __unless_excepted {
    (core; core $(, $rest:ident)*; $($body:tt)*) => {};
    (groups; groups $(, $rest:ident)*; $($body:tt)*) => {};
    (membership_churn; membership_churn $(, $rest:ident)*; $($body:tt)*) => {};
    (ordered; ordered $(, $rest:ident)*; $($body:tt)*) => {};
    (persistent; persistent $(, $rest:ident)*; $($body:tt)*) => {};
    (replay; replay $(, $rest:ident)*; $($body:tt)*) => {};
    (seek_time; seek_time $(, $rest:ident)*; $($body:tt)*) => {};
    ($group:ident; $other:ident $(, $rest:ident)*; $($body:tt)*) => {
        $crate::__unless_excepted!($group; $($rest),*; $($body)*);
    };
    ($group:ident; ; $($body:tt)*) => { $($body)* };
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
        $crate::__conformance_cases!(core; $make;
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
        $crate::__conformance_cases!(groups; $make;
            pubsub::concurrent_subscribe,
            pubsub::two_groups_each_get_everything
        );
    };
    (membership_churn, $make:expr) => {
        $crate::__conformance_cases!(membership_churn; $make; pubsub::concurrent_close);
    };
    (ordered, $make:expr) => {
        $crate::__conformance_cases!(ordered; $make;
            pubsub::no_next_message_before_ack,
            pubsub::per_key_order
        );
    };
    (persistent, $make:expr) => {
        $crate::__conformance_cases!(persistent; $make;
            pubsub::continue_after_subscribe_close,
            pubsub::unacked_messages_redelivered_after_close
        );
    };
    (replay, $make:expr) => {
        $crate::__conformance_cases!(replay; $make; pubsub::new_group_receives_old_messages);
    };
    (seek_time, $make:expr) => {
        $crate::__conformance_cases!(seek_time; $make; consume_loop::replay_from_time);
    };
    (restart, $make:expr) => {
        $crate::__conformance_cases!(restart; $make; pubsub::reconnect_after_broker_restart);
    };
    (faults, $make:expr) => {
        $crate::__conformance_cases!(faults; $make;
            faults::consume_through_broker_restarts,
            faults::produce_through_broker_restart
        );
    };
    (slow_receiver, $make:expr) => {
        $crate::__conformance_cases!(slow_receiver; $make; faults::slow_receiver_keeps_its_lease);
    };
    (network_faults, $make:expr) => {
        $crate::__conformance_cases!(network_faults; $make;
            faults::blackhole_then_heal,
            faults::connection_reset_mid_stream
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($group:ident; $make:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $make;
                if !$crate::declares(stringify!($group), stringify!($case), &backend).await {
                    return;
                }
                $crate::run_case(stringify!($case), &backend, |b| Box::pin($crate::$module::$case(b))).await;
            }
        )*
    };
}

/// A capability's name and how to read it from [`Capabilities`].
pub type CapabilityCheck = (&'static str, fn(&Capabilities) -> bool);

/// The capability a group's cases need, if any.
pub fn required_capability(group: &str) -> Option<CapabilityCheck> {
    match group {
        "groups" | "membership_churn" => Some(("consumer_groups", |c| c.consumer_groups)),
        "ordered" => Some(("ordered_per_key", |c| c.ordered_per_key)),
        "replay" => Some(("replay_from_start", |c| c.replay_from_start)),
        "seek_time" => Some(("seek_time", |c| c.seek_time)),
        "restart" | "faults" => Some(("persistent", |c| c.persistent)),
        _ => None,
    }
}

/// Whether `backend`'s transport declares what `group` needs; when it does
/// not, says on stderr that `case` did not run and why.
pub async fn declares<B: BackendUnderTest>(group: &str, case: &str, backend: &B) -> bool {
    let Some((name, has)) = required_capability(group) else {
        return true;
    };
    let transport = backend.transport().await;
    let capabilities = transport.capabilities();
    if has(&capabilities) {
        return true;
    }
    eprintln!(
        "conformance: {case} ({group}) not run: the {} transport declares {name} = false",
        transport.name()
    );
    false
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
