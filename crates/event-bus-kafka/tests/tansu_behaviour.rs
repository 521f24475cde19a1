//! Kafka-specific behaviour on the tansu broker (a Kafka-compatible broker;
//! storage as `TansuBroker::start_for_tests` picks: SQLite when available,
//! else in-memory) with the schema registry test double: the default (eager) rebalance commits what was acknowledged
//! before revoking, replay from a time (`seek` while assigned, the Python
//! `offset_time` extra, and the Python `reset_only` mode), where a new group
//! starts, and a subscription to a topic that does not exist yet.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_kafka::testing::create_topics;
use event_bus_kafka::{KafkaSettings, KafkaTransport};
use openedx_events::bus::transport::{Delivery, SeekTarget, StartPosition, Subscription, Transport};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{publish_ids as publish, request, TansuEnv as Env};

impl Env {
    fn settings(&self) -> KafkaSettings {
        let mut s = self.fast_settings();
        s.client_config.insert("heartbeat.interval.ms".into(), "500".into());
        s
    }

    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(KafkaTransport::connect(self.settings()).expect("transport"))
    }

    fn topic(&self, partitions: i32) -> String {
        self.new_topic("tansu", partitions)
    }
}

fn id(d: &Delivery) -> Uuid {
    d.event.as_ref().expect("an event").metadata.id
}

/// Receive (acking) until `want` arrived; returns everything received.
async fn receive_ids(sub: &mut dyn Subscription, want: &HashSet<Uuid>) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out: Vec<Delivery> = Vec::new();
    while !want.iter().all(|w| out.iter().any(|d| id(d) == *w)) {
        assert!(
            Instant::now() < deadline,
            "received {} messages, not all of {}",
            out.len(),
            want.len()
        );
        for d in sub.receive(50, Duration::from_millis(200)).await.expect("receive") {
            sub.ack(d.tag).await.expect("ack");
            out.push(d);
        }
        sub.flush_acks().await.expect("flush");
    }
    out
}

/// Receive (acking) for a while.
async fn drain(sub: &mut dyn Subscription, window: Duration) -> Vec<Delivery> {
    let until = Instant::now() + window;
    let mut out = Vec::new();
    while Instant::now() < until {
        for d in sub.receive(50, Duration::from_millis(100)).await.expect("receive") {
            sub.ack(d.tag).await.expect("ack");
            out.push(d);
        }
        sub.flush_acks().await.expect("flush");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eager_rebalance_commits_acknowledged_offsets_before_revoking() {
    let env = Env::start();
    let topic = env.topic(2);
    let t = env.transport();
    publish(&t, &topic, 0, 20).await;
    let mut a = t.subscribe(&request(&topic, "g")).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 20 {
        assert!(Instant::now() < deadline, "received {} of 20", got.len());
        got.extend(a.receive(20, Duration::from_millis(200)).await.unwrap());
    }
    for d in &got {
        a.ack(d.tag).await.unwrap();
    }
    // No flush_acks: only the revocation can commit these.
    assert_eq!(env.committed(&topic, "g", 2), vec![-1, -1]);
    let t2 = env.transport();
    let mut b = t2.subscribe(&request(&topic, "g")).await.unwrap();
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let a_task = tokio::spawn(async move {
        let mut extra = Vec::new();
        while !s2.is_cancelled() {
            extra.extend(a.receive(10, Duration::from_millis(100)).await.unwrap_or_default());
        }
        (a, extra)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut b_got = Vec::new();
    loop {
        b_got.extend(b.receive(10, Duration::from_millis(200)).await.expect("receive b"));
        let committed = env.committed(&topic, "g", 2);
        if committed.iter().sum::<i64>() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "no commit at the revocation: {committed:?}");
    }
    b_got.extend(drain(b.as_mut(), Duration::from_secs(3)).await);
    stop.cancel();
    let (mut a, a_extra) = a_task.await.unwrap();
    assert!(b_got.is_empty(), "acknowledged messages came back: {}", b_got.len());
    assert!(a_extra.is_empty());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seek_to_a_time_while_assigned_replays_and_keeps_consuming() {
    let env = Env::start();
    let topic = env.topic(3);
    let t = env.transport();
    let before = publish(&t, &topic, 0, 6).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = publish(&t, &topic, 6, 6).await;
    let mut sub = t.subscribe(&request(&topic, "g")).await.unwrap();
    let all: HashSet<Uuid> = before.iter().chain(after.iter()).copied().collect();
    receive_ids(sub.as_mut(), &all).await;
    assert_eq!(env.committed(&topic, "g", 3).iter().sum::<i64>(), 12);
    // Assigned now: move back to `at`.
    sub.seek(&SeekTarget::Time(at)).await.expect("seek");
    let want: HashSet<Uuid> = after.iter().copied().collect();
    let again = receive_ids(sub.as_mut(), &want).await;
    let old: HashSet<Uuid> = before.iter().copied().collect();
    assert!(
        again.iter().all(|d| !old.contains(&id(d))),
        "nothing from before the time"
    );
    // And it keeps consuming new messages.
    let newer = publish(&t, &topic, 12, 3).await;
    receive_ids(sub.as_mut(), &newer.iter().copied().collect()).await;
    assert_eq!(env.committed(&topic, "g", 3).iter().sum::<i64>(), 15);
    // Earliest replays everything.
    sub.seek(&SeekTarget::Earliest).await.expect("seek");
    let everything: HashSet<Uuid> = all.iter().chain(newer.iter()).copied().collect();
    receive_ids(sub.as_mut(), &everything).await;
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offset_time_extra_replays_from_that_time() {
    let env = Env::start();
    let topic = env.topic(3);
    let t = env.transport();
    // The group has read everything already.
    let before = publish(&t, &topic, 0, 6).await;
    let mut sub = t.subscribe(&request(&topic, "g")).await.unwrap();
    receive_ids(sub.as_mut(), &before.iter().copied().collect()).await;
    sub.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = publish(&t, &topic, 6, 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = publish(&t, &topic, 12, 3).await;
    // As Python's --extra '{"offset_time": "..."}', but it goes on consuming.
    let mut r = request(&topic, "g");
    r.extras.insert("offset_time".into(), at.to_rfc3339().into());
    let mut sub = t.subscribe(&r).await.unwrap();
    let want: HashSet<Uuid> = after.iter().chain(later.iter()).copied().collect();
    let got = receive_ids(sub.as_mut(), &want).await;
    let old: HashSet<Uuid> = before.iter().copied().collect();
    assert!(got.iter().all(|d| !old.contains(&id(d))));
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_only_mode_moves_the_group_and_delivers_nothing() {
    let env = Env::start();
    let topic = env.topic(1);
    let t = env.transport();
    publish(&t, &topic, 0, 4).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    publish(&t, &topic, 4, 3).await;
    let mut r = request(&topic, "g");
    r.extras.insert("offset_time".into(), at.to_rfc3339().into());
    r.extras.insert("offset_time_mode".into(), "reset_only".into());
    let mut sub = t.subscribe(&r).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.committed(&topic, "g", 1)[0] < 0 {
        assert!(Instant::now() < deadline, "the offsets were not reset");
        assert!(sub.receive(10, Duration::from_millis(200)).await.unwrap().is_empty());
    }
    assert!(
        drain(sub.as_mut(), Duration::from_secs(2)).await.is_empty(),
        "reset_only delivers nothing"
    );
    sub.close().await.unwrap();
    let committed = env.committed(&topic, "g", 1)[0];
    // Kafka would answer exactly 4 (the first message at or after the time);
    // tansu's in-memory engine answers timestamp lookups loosely (e.g. an
    // earlier offset, or 0 for a time after the last message), so the reset
    // may land earlier there: what matters is that a restart without
    // offset_time delivers every message from the time on.
    assert!((0..=4).contains(&committed), "committed {committed}");
    let mut normal = t.subscribe(&request(&topic, "g")).await.unwrap();
    let got = drain(normal.as_mut(), Duration::from_secs(5)).await;
    let ids: Vec<i64> = got
        .iter()
        .map(|d| {
            event_bus_kafka::positions::parse_position(&d.position)
                .expect("position")
                .1
        })
        .collect();
    assert!(
        ids.ends_with(&[4, 5, 6]),
        "the restarted consumer reads from the reset point: {ids:?}"
    );
    normal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_group_starts_at_the_earliest_offset_unless_told_latest() {
    let env = Env::start();
    let topic = env.topic(1);
    let t = env.transport();
    let old = publish(&t, &topic, 0, 3).await;
    let mut earliest = t.subscribe(&request(&topic, "new-earliest")).await.unwrap();
    receive_ids(earliest.as_mut(), &old.iter().copied().collect()).await;
    earliest.close().await.unwrap();

    let mut r = request(&topic, "new-latest");
    r.start = StartPosition::Latest;
    let mut latest = t.subscribe(&r).await.unwrap();
    // Let it join and find the end before publishing more.
    assert!(
        drain(latest.as_mut(), Duration::from_secs(4)).await.is_empty(),
        "nothing old"
    );
    let new = publish(&t, &topic, 3, 2).await;
    let got = receive_ids(latest.as_mut(), &new.iter().copied().collect()).await;
    assert!(got.iter().all(|d| !old.contains(&id(d))));
    latest.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribing_before_the_topic_exists_fails_softly_then_works() {
    let env = Env::start();
    let topic = format!("late-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let t = env.transport();
    let mut sub = t.subscribe(&request(&topic, "g")).await.unwrap();
    // Python commits the error message it polls here and its loop dies; we
    // report a non-fatal error (or nothing) and go on.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        match sub.receive(10, Duration::from_millis(200)).await {
            Ok(v) => assert!(v.is_empty()),
            Err(e) => assert!(!e.is_fatal(), "{e}"),
        }
    }
    create_topics(&env.broker.bootstrap_servers(), &[&topic], 1).unwrap();
    let sent = publish(&t, &topic, 0, 2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = HashSet::new();
    while !sent.iter().all(|s| seen.contains(s)) {
        assert!(Instant::now() < deadline, "nothing arrived once the topic existed");
        match sub.receive(10, Duration::from_millis(200)).await {
            Ok(v) => {
                for d in v {
                    sub.ack(d.tag).await.unwrap();
                    seen.insert(id(&d));
                }
            }
            Err(e) => assert!(!e.is_fatal(), "{e}"),
        }
    }
    sub.close().await.unwrap();
}
