//! `Transport::lag` on the machine's RabbitMQ: the ready messages of the
//! group's queue (passive `queue.declare`), which do not include what a
//! member holds unacknowledged.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_conformance::publish_logins;
use openedx_events::bus::transport::{
    Delivery, GroupLag, StartPosition, SubscribeRequest, Subscription, TransportErrorKind,
};
use openedx_events::bus::Transport;

/// A member that holds at most one unacknowledged message (`prefetch` 1),
/// so what the broker hands it ahead is known.
fn request(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer_name: format!("test-{group}"),
        start: StartPosition::Earliest,
        extras: serde_json::json!({ "prefetch": 1 })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

async fn receive_one(sub: &mut dyn Subscription) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "nothing received");
        if let Some(d) = sub.receive(1, Duration::from_millis(200)).await.expect("receive").pop() {
            return d;
        }
    }
}

/// The lag of `group` once it is `want` (the broker applies acks, hands out
/// prefetched messages and takes back released ones a moment after the
/// calls return); what it was after a few seconds otherwise.
async fn lag_once(t: &Arc<dyn Transport>, topic: &str, group: &str, want: u64) -> Vec<GroupLag> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = t.lag(topic, Some(group)).await.expect("lag");
        if got.iter().map(|r| r.lag).eq([want]) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_the_ready_messages_of_the_group_queue() {
    let t = common::connect(&common::shared_url()).await;
    let topic = format!("rmq-lag-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    assert!(
        t.lag(&topic, Some("g")).await.expect("lag").is_empty(),
        "no queue, no row"
    );
    publish_logins(&t, &topic, 0, 7, |i| i.to_string()).await;

    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    for _ in 0..3 {
        let d = receive_one(sub.as_mut()).await;
        sub.ack(d.tag).await.expect("ack");
        sub.flush_acks().await.expect("flush");
    }
    let row = |lag| GroupLag {
        topic: topic.clone(),
        group: "g".into(),
        partition: "0".into(),
        lag,
        pending: None,
    };
    // 4 left, but the broker has handed the next one to the member
    // (prefetch 1): unacknowledged messages are not in AMQP's count.
    assert_eq!(lag_once(&t, &topic, "g", 3).await, vec![row(3)]);

    // The member takes that one and does not acknowledge it: the count
    // stays (prefetch full, nothing more handed out).
    let _held = receive_one(sub.as_mut()).await;
    assert_eq!(lag_once(&t, &topic, "g", 3).await, vec![row(3)]);

    // Closed: what it held is back in the queue, and the count is all the
    // group still has to handle.
    sub.close().await.expect("close");
    assert_eq!(lag_once(&t, &topic, "g", 4).await, vec![row(4)]);

    assert!(t.lag(&topic, Some("no-such-group")).await.expect("lag").is_empty());
    let e = t.lag(&topic, None).await.expect_err("AMQP cannot list the groups");
    assert_eq!(e.kind, TransportErrorKind::Unsupported, "{e}");
}
