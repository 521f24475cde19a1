//! `Transport::lag` on the machine's NATS: `num_pending + num_ack_pending`
//! of the group's durable consumer.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_conformance::publish_logins;
use openedx_events::bus::transport::{Delivery, GroupLag, StartPosition, SubscribeRequest, Subscription};
use openedx_events::bus::Transport;

fn request(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer_name: "m".into(),
        start: StartPosition::Earliest,
        extras: Default::default(),
    }
}

async fn receive_n(sub: &mut dyn Subscription, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
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

/// The lag of `group` once it is `want` (acks reach the server a moment
/// after they are flushed); what it was after a few seconds otherwise.
async fn lag_once(t: &Arc<dyn Transport>, topic: &str, group: &str, want: &[GroupLag]) -> Vec<GroupLag> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = t.lag(topic, Some(group)).await.expect("lag");
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lag_counts_what_the_group_has_not_acknowledged() {
    let t: Arc<dyn Transport> = support::connect(&support::settings(&support::shared_url(), &[])).await;
    let topic = format!("nats-lag-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    assert!(
        t.lag(&topic, None).await.expect("lag").is_empty(),
        "no stream, no groups"
    );
    publish_logins(&t, &topic, 0, 7, |i| i.to_string()).await;

    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    let got = receive_n(sub.as_mut(), 3).await;
    for d in &got {
        sub.ack(d.tag).await.expect("ack");
    }
    sub.flush_acks().await.expect("flush");
    let row = |lag, pending| GroupLag {
        topic: topic.clone(),
        group: "g".into(),
        partition: "0".into(),
        lag,
        pending: Some(pending),
    };
    assert_eq!(lag_once(&t, &topic, "g", &[row(4, 0)]).await, vec![row(4, 0)]);

    // One more received, not acknowledged: still to handle, and pending.
    assert_eq!(receive_n(sub.as_mut(), 1).await.len(), 1);
    assert_eq!(lag_once(&t, &topic, "g", &[row(4, 1)]).await, vec![row(4, 1)]);
    assert_eq!(t.lag(&topic, None).await.expect("lag"), vec![row(4, 1)]);
    assert!(t.lag(&topic, Some("no-such-group")).await.expect("lag").is_empty());
    sub.close().await.expect("close");
}
