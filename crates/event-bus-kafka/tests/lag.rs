//! `Transport::lag` on the tansu broker: high watermark minus committed
//! offset, per partition.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_kafka::KafkaTransport;
use openedx_events::bus::transport::{Delivery, GroupLag, Subscription, Transport, TransportErrorKind};

use common::{publish_ids, request, TansuEnv};

/// Receive until `n` deliveries arrived (a minute at most).
async fn receive_n(sub: &mut dyn Subscription, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "received {} of {n}", out.len());
        out.extend(
            sub.receive(n - out.len(), Duration::from_millis(200))
                .await
                .expect("receive"),
        );
    }
    out
}

fn total(rows: &[GroupLag]) -> u64 {
    rows.iter().map(|r| r.lag).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_is_the_high_watermark_minus_the_committed_offset() {
    let env = TansuEnv::start();
    let t: Arc<dyn Transport> = Arc::new(KafkaTransport::connect(env.fast_settings()).expect("transport"));
    assert!(t.lag("no-such-topic", None).await.expect("lag").is_empty());
    let topic = env.new_topic("lag", 2);
    publish_ids(&t, &topic, 0, 7).await;

    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    let got = receive_n(sub.as_mut(), 3).await;
    for d in &got {
        sub.ack(d.tag).await.expect("ack");
    }
    sub.flush_acks().await.expect("flush");

    let rows = t.lag(&topic, Some("g")).await.expect("lag");
    let mut partitions: Vec<&str> = rows.iter().map(|r| r.partition.as_str()).collect();
    partitions.sort_unstable();
    assert_eq!(partitions, ["0", "1"], "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.topic == topic && r.group == "g" && r.pending.is_none()),
        "{rows:?}"
    );
    assert_eq!(total(&rows), 4, "{rows:?}");

    // One more received, not acknowledged: still to handle (Kafka does not
    // say what is in a member's hands).
    let held = receive_n(sub.as_mut(), 1).await;
    assert_eq!(held.len(), 1);
    let rows = t.lag(&topic, Some("g")).await.expect("lag");
    assert_eq!(total(&rows), 4, "{rows:?}");

    // Every group of the topic: ours (a member is subscribed, and it
    // committed). Listing groups takes a DescribeGroups, which tansu 0.6
    // answers by dropping the connection once a group exists (Kafka lists
    // them): the error says so.
    match t.lag(&topic, None).await {
        Ok(all) => {
            assert!(all.iter().all(|r| r.group == "g"), "{all:?}");
            assert_eq!(total(&all), 4, "{all:?}");
        }
        Err(e) => {
            eprintln!("the broker cannot list the groups: {e}");
            assert_eq!(e.kind, TransportErrorKind::Connection, "{e}");
            assert!(e.message.contains("cannot list the consumer groups"), "{e}");
        }
    }

    // A group that never committed on the topic and has no member
    // subscribed to it: no rows (Kafka cannot tell it from an unknown one).
    assert!(t.lag(&topic, Some("no-such-group")).await.expect("lag").is_empty());
    sub.close().await.expect("close");
}
