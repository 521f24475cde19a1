//! Watermill's universal pub/sub cases, on the transport boundary.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use openedx_events::bus::transport::Subscription;
use openedx_events::bus::EventBusProducer;
use openedx_events::metadata::{EventsMetadata, SourceLib};
use openedx_events::value::{Record, Value};
use uuid::Uuid;

use crate::support::*;
use crate::BackendUnderTest;

/// 100 events published before subscribing all arrive with ids, payloads
/// and metadata intact; a closed subscription delivers nothing more.
pub async fn publish_subscribe(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("publish_subscribe");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let published = publish_logins(&t, &topic, 0, 100, |i| i.to_string()).await;
    let got = receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
    assert_intact(&published, &got);
    sub.close().await.expect("close");
    sub.close().await.expect("close is idempotent");
    assert!(
        sub.receive(10, Duration::from_millis(50))
            .await
            .map(|v| v.is_empty())
            .unwrap_or(true),
        "a closed subscription delivers nothing"
    );
}

/// Messages published by many tasks are shared among the members of one
/// group; together they receive every message (duplicates tolerated).
pub async fn concurrent_subscribe(b: &impl BackendUnderTest) {
    let topic = b.topic("concurrent_subscribe");
    let publisher = b.transport().await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let t = b.transport().await;
        subs.push(subscribe(b, &t, &topic, "shared").await);
    }
    let tasks = (0..5).map(|p| {
        let t = publisher.clone();
        let topic = topic.clone();
        async move { publish_logins(&t, &topic, p * 40, 40, |i| (i % 7).to_string()).await }
    });
    let published: Vec<Published> = join_all(tasks).await.into_iter().flatten().collect();
    let want = ids(&published);
    let patience = b.patience();
    let seen = Arc::new(tokio::sync::Mutex::new(HashSet::new()));
    let readers = subs.into_iter().map(|mut sub| {
        let seen = seen.clone();
        let want = want.clone();
        async move {
            let deadline = std::time::Instant::now() + patience;
            while std::time::Instant::now() < deadline {
                if want.is_subset(&*seen.lock().await) {
                    break;
                }
                let batch = sub.receive(20, Duration::from_millis(100)).await.expect("receive");
                for d in batch {
                    sub.ack(d.tag).await.expect("ack");
                    seen.lock().await.insert(id_of(&d));
                }
                sub.flush_acks().await.expect("flush");
            }
            sub.close().await.expect("close");
        }
    });
    join_all(readers).await;
    let seen = seen.lock().await;
    assert!(
        want.is_subset(&seen),
        "the group received {} of {} messages",
        want.intersection(&seen).count(),
        want.len()
    );
}

/// Ten topics published and consumed concurrently each receive exactly their
/// own messages.
pub async fn many_topics(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topics: Vec<String> = (0..10).map(|i| b.topic(&format!("many_topics_{i}"))).collect();
    let cases = topics.iter().map(|topic| {
        let t = t.clone();
        async move {
            let mut sub = subscribe(b, &t, topic, "g").await;
            let published = publish_logins(&t, topic, 0, 20, |i| i.to_string()).await;
            let got = receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
            let extra = drain(sub.as_mut(), Duration::from_millis(300)).await;
            let want = ids(&published);
            for d in got.iter().chain(extra.iter()) {
                assert!(
                    want.contains(&id_of(d)),
                    "a message from another topic leaked into {topic}"
                );
            }
            sub.close().await.expect("close");
        }
    });
    join_all(cases).await;
}

/// A nacked message is delivered again.
pub async fn resend_on_nack(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("resend_on_nack");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let published = publish_logins(&t, &topic, 0, 20, |i| i.to_string()).await;
    let mut nacked = 0;
    let mut seen = HashSet::new();
    let want = ids(&published);
    let deadline = std::time::Instant::now() + b.patience();
    while !want.is_subset(&seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "nacked messages were not redelivered"
        );
        for d in sub.receive(10, Duration::from_millis(200)).await.expect("receive") {
            if nacked < 2 {
                nacked += 1;
                sub.nack(d.tag, Duration::ZERO).await.expect("nack");
            } else {
                sub.ack(d.tag).await.expect("ack");
                seen.insert(id_of(&d));
            }
        }
        sub.flush_acks().await.expect("flush");
    }
    assert_eq!(nacked, 2);
    sub.close().await.expect("close");
}

/// With one member, a nacked message comes back before the messages after
/// it (ordered redelivery), and acking lets the next one through.
pub async fn no_next_message_before_ack(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("no_next_message_before_ack");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let published = publish_logins(&t, &topic, 0, 2, |_| "same".to_string()).await;
    let first = receive_one(sub.as_mut(), b).await;
    assert_eq!(id_of(&first), published[0].metadata.id, "first message first");
    sub.nack(first.tag, Duration::ZERO).await.expect("nack");
    let again = receive_one(sub.as_mut(), b).await;
    assert_eq!(
        id_of(&again),
        published[0].metadata.id,
        "the nacked message comes back before the next"
    );
    assert!(
        again.attempt >= 2,
        "a redelivery counts as attempt 2, got {}",
        again.attempt
    );
    sub.ack(again.tag).await.expect("ack");
    sub.flush_acks().await.expect("flush");
    let second = receive_one(sub.as_mut(), b).await;
    assert_eq!(
        id_of(&second),
        published[1].metadata.id,
        "after the ack, the next message arrives"
    );
    sub.ack(second.tag).await.expect("ack");
    sub.close().await.expect("close");
}

async fn receive_one(
    sub: &mut dyn Subscription,
    b: &impl BackendUnderTest,
) -> openedx_events::bus::transport::Delivery {
    let deadline = std::time::Instant::now() + b.patience();
    loop {
        assert!(std::time::Instant::now() < deadline, "no message arrived");
        let mut batch = sub.receive(1, Duration::from_millis(200)).await.expect("receive");
        if let Some(d) = batch.pop() {
            assert!(batch.is_empty(), "receive(1) returned more than one message");
            return d;
        }
    }
}

/// Messages with the same key arrive in publish order (16 keys, one member).
pub async fn per_key_order(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("per_key_order");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let published = publish_logins(&t, &topic, 0, 320, |i| (i % 16).to_string()).await;
    let got = receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
    let key_of: HashMap<Uuid, &str> = published.iter().map(|p| (p.metadata.id, p.key.as_str())).collect();
    let index_of: HashMap<Uuid, usize> = published.iter().enumerate().map(|(i, p)| (p.metadata.id, i)).collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut seen = HashSet::new();
    for d in &got {
        let id = id_of(d);
        if !seen.insert(id) {
            continue;
        }
        let key = key_of[&id];
        let idx = index_of[&id];
        if let Some(prev) = last.get(key) {
            assert!(idx > *prev, "key {key}: message {idx} arrived after {prev}");
        }
        last.insert(key, idx);
    }
    sub.close().await.expect("close");
}

/// Reading in rounds, closing the subscriber after each, loses nothing:
/// acks persist and the rest is delivered to the next subscriber.
pub async fn continue_after_subscribe_close(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("continue_after_subscribe_close");
    subscribe(b, &t, &topic, "g").await.close().await.expect("close");
    let published = publish_logins(&t, &topic, 0, 200, |i| i.to_string()).await;
    let want = ids(&published);
    let mut seen = HashSet::new();
    let deadline = std::time::Instant::now() + b.patience() * 2;
    while !want.is_subset(&seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "after several close/reopen rounds {} of {} messages arrived",
            want.intersection(&seen).count(),
            want.len()
        );
        let t = b.transport().await;
        let mut sub = subscribe(b, &t, &topic, "g").await;
        let mut round = 0;
        let round_deadline = std::time::Instant::now() + b.patience() / 3;
        while round < 60 && std::time::Instant::now() < round_deadline && !want.is_subset(&seen) {
            for d in sub.receive(10, Duration::from_millis(200)).await.expect("receive") {
                sub.ack(d.tag).await.expect("ack");
                seen.insert(id_of(&d));
                round += 1;
            }
        }
        sub.flush_acks().await.expect("flush");
        sub.close().await.expect("close");
    }
}

/// Messages received but not acknowledged when a subscriber closes are
/// delivered to the next member of the group.
pub async fn unacked_messages_redelivered_after_close(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("unacked_redelivered");
    let mut first = subscribe(b, &t, &topic, "g").await;
    let published = publish_logins(&t, &topic, 0, 10, |i| i.to_string()).await;
    let deadline = std::time::Instant::now() + b.patience();
    let mut held = 0;
    while held == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing arrived");
        held = first
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive")
            .len();
    }
    first.close().await.expect("close without acking");
    drop(first);
    let t2 = b.transport().await;
    let mut second = subscribe(b, &t2, &topic, "g").await;
    receive_ids(second.as_mut(), &ids(&published), b.patience()).await;
    second.close().await.expect("close");
}

/// Ten subscribers opening and closing at once are safe; a later subscriber
/// receives everything published afterwards.
pub async fn concurrent_close(b: &impl BackendUnderTest) {
    let topic = b.topic("concurrent_close");
    let opens = (0..10).map(|_| {
        let topic = topic.clone();
        async move {
            let t = b.transport().await;
            let mut s = subscribe(b, &t, &topic, "g").await;
            s.close().await.expect("close");
        }
    });
    join_all(opens).await;
    let t = b.transport().await;
    let published = publish_logins(&t, &topic, 0, 50, |i| i.to_string()).await;
    let mut sub = subscribe(b, &t, &topic, "g").await;
    receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
    sub.close().await.expect("close");
}

/// Members that nack many deliveries in a row do not make the group skip or
/// lose messages: a final member receives them all.
pub async fn continue_after_errors(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("continue_after_errors");
    subscribe(b, &t, &topic, "g").await.close().await.expect("close");
    let published = publish_logins(&t, &topic, 0, 50, |i| i.to_string()).await;
    for _ in 0..3 {
        let t = b.transport().await;
        let mut sub = subscribe(b, &t, &topic, "g").await;
        let mut nacks = 0;
        let deadline = std::time::Instant::now() + b.patience();
        while nacks < 20 && std::time::Instant::now() < deadline {
            for d in sub.receive(5, Duration::from_millis(200)).await.expect("receive") {
                sub.nack(d.tag, Duration::ZERO).await.expect("nack");
                nacks += 1;
            }
        }
        assert!(nacks >= 20, "messages kept coming back while being nacked");
        sub.close().await.expect("close");
    }
    let t = b.transport().await;
    let mut sub = subscribe(b, &t, &topic, "g").await;
    receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
    sub.close().await.expect("close");
}

/// 1,000 messages published concurrently by 10 tasks, then a flush: all
/// arrive.
pub async fn publisher_flush(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("publisher_flush");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let publisher = b.transport().await;
    let tasks = (0..10).map(|p| {
        let t = publisher.clone();
        let topic = topic.clone();
        async move { publish_logins(&t, &topic, p * 100, 100, |i| (i % 10).to_string()).await }
    });
    let published: Vec<Published> = join_all(tasks).await.into_iter().flatten().collect();
    publisher.flush(Duration::from_secs(10)).await.expect("flush");
    receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
    sub.close().await.expect("close");
}

/// A subscription sees only its own topic.
pub async fn topic_isolation(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let (one, two) = (b.topic("isolation_1"), b.topic("isolation_2"));
    let mut s1 = subscribe(b, &t, &one, "g1").await;
    let mut s2 = subscribe(b, &t, &two, "g2").await;
    let p1 = publish_logins(&t, &one, 0, 1, |_| "a".into()).await;
    let p2 = publish_logins(&t, &two, 1, 1, |_| "b".into()).await;
    let g1 = receive_ids(s1.as_mut(), &ids(&p1), b.patience()).await;
    let g2 = receive_ids(s2.as_mut(), &ids(&p2), b.patience()).await;
    let g1: Vec<Uuid> = g1
        .iter()
        .chain(drain(s1.as_mut(), Duration::from_millis(300)).await.iter())
        .map(id_of)
        .collect();
    let g2: Vec<Uuid> = g2
        .iter()
        .chain(drain(s2.as_mut(), Duration::from_millis(300)).await.iter())
        .map(id_of)
        .collect();
    assert!(
        g1.iter().all(|id| *id == p1[0].metadata.id),
        "topic 1 saw a topic 2 message"
    );
    assert!(
        g2.iter().all(|id| *id == p2[0].metadata.id),
        "topic 2 saw a topic 1 message"
    );
    s1.close().await.expect("close");
    s2.close().await.expect("close");
}

/// Three rounds of publish-one, new-group: each new group reads everything
/// published so far.
pub async fn new_group_receives_old_messages(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("new_group_old_messages");
    let mut all = Vec::new();
    for round in 0..3 {
        all.extend(publish_logins(&t, &topic, round, 1, |i| i.to_string()).await);
        let mut sub = subscribe(b, &t, &topic, &format!("group-{round}")).await;
        let got = receive_ids(sub.as_mut(), &ids(&all), b.patience()).await;
        assert_intact(&all, &got);
        sub.close().await.expect("close");
    }
}

/// Two groups created before publishing each receive all 50 messages.
pub async fn two_groups_each_get_everything(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("two_groups");
    let mut a = subscribe(b, &t, &topic, "a").await;
    let mut c = subscribe(b, &t, &topic, "c").await;
    let published = publish_logins(&t, &topic, 0, 50, |i| i.to_string()).await;
    receive_ids(a.as_mut(), &ids(&published), b.patience()).await;
    receive_ids(c.as_mut(), &ids(&published), b.patience()).await;
    a.close().await.expect("close");
    c.close().await.expect("close");
}

/// Metadata survive exactly: unicode, long values, a non-zero minor version,
/// a four-part library version, microsecond times.
pub async fn header_and_metadata_fidelity(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("header_fidelity");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let mut metadata = EventsMetadata::new(LOGIN, 7);
    metadata.source = "openedx/lms-ünïcødé-中文-🚀/web".to_string();
    metadata.sourcehost = format!("host-{}", "é".repeat(4000));
    metadata.sourcelib = SourceLib(vec![11, 2, 0, 4]);
    metadata.time = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07.000089Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let data = login_data(5, "名前-ünï");
    let producer = EventBusProducer::new(t.clone(), None);
    publish_with_retry(&producer, &topic, &data, &metadata).await;
    let published = vec![Published {
        metadata: metadata.clone(),
        data,
        key: String::new(),
    }];
    let got = receive_ids(sub.as_mut(), &ids(&published), b.patience()).await;
    assert_intact(&published, &got);
    sub.close().await.expect("close");
}

/// A payload near the backend's size limit (up to 8 MiB) round-trips.
pub async fn payload_near_size_limit(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let limit = t.capabilities().max_message_bytes;
    let size = (limit / 10 * 9).min(8 * 1024 * 1024);
    let topic = b.topic("large_payload");
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let tracking =
        openedx_events::catalog::get("org.openedx.analytics.tracking.event.emitted.v1").expect("tracking event");
    let big = "x".repeat(size - 200);
    let data = Record::new().with(
        "tracking_log",
        Value::Record(
            Record::new()
                .with("name", Value::from("big"))
                .with("timestamp", Value::from("2026-01-01T00:00:00+00:00"))
                .with("data", Value::String(big))
                .with("context", Value::from("{}")),
        ),
    );
    let metadata = EventsMetadata::new(tracking.name(), 0);
    EventBusProducer::new(t.clone(), None)
        .send(tracking, &topic, Some("tracking_log.name"), &data, &metadata)
        .await
        .unwrap_or_else(|e| panic!("a {size}-byte payload (limit {limit}) was refused: {e}"));
    let want: HashSet<Uuid> = [metadata.id].into();
    let got = receive_ids(sub.as_mut(), &want, b.patience()).await;
    let incoming = got[0].event.as_ref().expect("event");
    let decoded = match &incoming.writer_schema {
        Some(w) => tracking.decode_data_from(w, &incoming.body),
        None => tracking.decode_data(&incoming.body),
    }
    .expect("decode");
    assert_eq!(decoded, data, "large payload intact");
    sub.close().await.expect("close");
}

/// Publishing while the broker restarts loses nothing that was
/// acknowledged as published.
pub async fn reconnect_after_broker_restart(b: &impl BackendUnderTest) {
    let topic = b.topic("reconnect");
    let t = b.transport().await;
    let mut sub = subscribe(b, &t, &topic, "g").await;
    let first = publish_logins(&t, &topic, 0, 50, |i| i.to_string()).await;
    b.restart_broker()
        .await
        .unwrap_or_else(|e| panic!("broker restart failed: {e}"));
    let second = publish_logins(&t, &topic, 50, 50, |i| i.to_string()).await;
    let mut all = first;
    all.extend(second);
    let got = receive_ids(sub.as_mut(), &ids(&all), b.patience() * 2).await;
    assert_intact(&all, &got);
    sub.close().await.expect("close");
}
