//! The conformance suite with Key_Shared subscriptions
//! (`EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE=key_shared`), on pulsar-lite through
//! the checksum-restoring proxy, or on the Apache Pulsar at `PULSAR_URL`.
//! With Key_Shared the backend promises per-key order, so the `ordered`
//! group runs here, with `groups` and every case of `core` and `persistent`
//! pulsar-lite can show. (`replay`, `seek_time` and `restart` do not depend
//! on the subscription type: they run with Shared in `conformance.rs`.)
//!
//! What pulsar-lite cannot show with Key_Shared, and why (both shown with
//! the official Python client and no proxy, so they are the broker's, not
//! pulsar-rs's or this backend's; Shared subscriptions on the same broker do
//! not have them, and the same cases pass with Shared in `conformance.rs`):
//!
//! 1. Its Key_Shared dispatcher delivers a message at most twice: after one
//!    redelivery (by a nack or by its consumer closing), a further nack or
//!    close never brings it back. `pulsar_lite_key_shared_redelivers_at_most_once`
//!    below measures it. The four cases that need a third delivery are not
//!    generated for Key_Shared here (each is commented out in the list below
//!    with that reason); they run under Shared subscriptions in
//!    `conformance.rs`. Against a real Pulsar (`PULSAR_URL`), uncomment them.
//! 2. The broker stalls when several Key_Shared topics are produced to and
//!    consumed at once: with 6 topics (10 producers × 100 messages each),
//!    the consumers got 50 to 490 of their 1000 messages in 15 s, sends
//!    timed out, and a GetLastMessageId went unanswered; the same with
//!    Shared: 1000 of 1000 at once; one Key_Shared topic at a time: 1000 of
//!    1000 (`tests/python/key_shared_redelivery_probe.py URL concurrent`).
//!    So the cases here run one at a time, on a broker of their own (this
//!    test binary's).
//!
//! One case is left out for a reason of this backend's own, not the
//! broker's: `retry_does_not_block_the_stream`, whose outcome under
//! Key_Shared depends on whether the later messages of a nacked key were
//! already taken with it (see the list below and `PulsarSubscription`).

mod support;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use event_bus_conformance::BackendUnderTest;
use openedx_events::bus::Transport;
use support::TestBroker;

struct KeyShared;

#[async_trait]
impl BackendUnderTest for KeyShared {
    async fn transport(&self) -> Arc<dyn Transport> {
        let broker = TestBroker::shared();
        let mut settings = broker.settings();
        settings.set("EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE", "key_shared");
        let t = broker.transport_with(settings).await;
        assert!(t.capabilities().ordered_per_key, "Key_Shared promises per-key order");
        t
    }
}

/// One case at a time (see the module docs, point 2).
async fn turn() -> tokio::sync::OwnedMutexGuard<()> {
    static TURN: OnceLock<Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    TURN.get_or_init(Default::default).clone().lock_owned().await
}

/// One `#[tokio::test]` per case, through the suite's own `run_case` and
/// case functions, unchanged; each waits for its turn first.
macro_rules! cases {
    ($($(#[$attr:meta])* $module:ident :: $case:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let _turn = turn().await;
                event_bus_conformance::run_case(stringify!($case), &KeyShared, |b| {
                    Box::pin(event_bus_conformance::$module::$case(b))
                })
                .await;
            }
        )*
    };
}

cases!(
    // ordered
    pubsub::no_next_message_before_ack,
    pubsub::per_key_order,
    // groups
    pubsub::concurrent_subscribe,
    pubsub::two_groups_each_get_everything,
    // persistent
    // Not run on Key_Shared here (it runs under Shared in conformance.rs): pulsar-lite's Key_Shared never delivers a message a third time (messages prefetched but not acked come back on each close, and are lost at the second close).
    // pubsub::continue_after_subscribe_close,
    pubsub::unacked_messages_redelivered_after_close,
    // core
    pubsub::publish_subscribe,
    pubsub::many_topics,
    pubsub::resend_on_nack,
    pubsub::concurrent_close,
    // Not run on Key_Shared here (it runs under Shared in conformance.rs): pulsar-lite's Key_Shared never delivers a message a third time (3 members each nack it, then a 4th must get it).
    // pubsub::continue_after_errors,
    pubsub::publisher_flush,
    pubsub::topic_isolation,
    pubsub::header_and_metadata_fidelity,
    pubsub::payload_near_size_limit,
    consume_loop::dead_letter_with_reason,
    // Not run on Key_Shared here (it runs under Shared in conformance.rs): pulsar-lite's Key_Shared never delivers a message a third time (the receiver fails twice, then succeeds).
    // consume_loop::retry_with_backoff,
    // Not run on Key_Shared (it runs under Shared in conformance.rs): with a zero in-place retry budget, the three messages of one key are handled [1, 2, 0] when they came in one batch, but [0, 1, 2] when 1 and 2 arrive after 0's nack, because Key_Shared holds the nacked key back; the case expects the first, so its outcome depends on timing here (seen failing in CI).
    // consume_loop::retry_does_not_block_the_stream,
    consume_loop::poison_messages_do_not_stop_the_stream,
    // Not run on Key_Shared here (it runs under Shared in conformance.rs): pulsar-lite's Key_Shared never delivers a message a third time (handed back by a nack at shutdown, then by the close, then due to the restarted consumer).
    // consume_loop::graceful_shutdown_with_in_flight_messages,
    consume_loop::duplicate_event_id,
    consume_loop::dead_letters_can_be_requeued,
);

/// The evidence for the Key_Shared cases left out above (point 1), with the official
/// Python client and no proxy (`tests/python/key_shared_redelivery_probe.py`):
/// three consumers in turn receive 3 messages without acknowledging and
/// close, then a fourth acknowledges. A correct broker delivers the 3 to
/// each. On pulsar-lite, Shared does, Key_Shared stops after the second.
/// If this fails because Key_Shared got fixed, enable those cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_lite_key_shared_redelivers_at_most_once() {
    let _turn = turn().await;
    let broker = TestBroker::shared();
    let url = broker.direct_url();
    let out = tokio::task::spawn_blocking(move || {
        let python = support::pulsar_lite::venv_python().unwrap_or_else(|e| panic!("{e}"));
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/key_shared_redelivery_probe.py");
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the probe: {e}"))
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(str::to_string)
        .unwrap_or_default();
    let counts: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(
        counts["Shared"],
        serde_json::json!([3, 3, 3, 3]),
        "Shared redelivers every time"
    );
    if broker.is_lite() {
        assert_ne!(
            counts["KeyShared"],
            serde_json::json!([3, 3, 3, 3]),
            "pulsar-lite's Key_Shared redelivers now: enable the Key_Shared cases left out above"
        );
    } else {
        assert_eq!(
            counts["KeyShared"],
            serde_json::json!([3, 3, 3, 3]),
            "Key_Shared redelivers every time"
        );
    }
}
