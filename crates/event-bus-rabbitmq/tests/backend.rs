//! The backend's own behaviour on the real broker: credentials, the
//! backlog of a topic without groups, delayed retries through retry queues,
//! long keys, size limits, options, seek.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_conformance::{ids, publish_logins, receive_ids, Published};
use event_bus_rabbitmq::{names, RabbitMqBackend, RabbitMqSettings, RabbitMqTransport};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use openedx_events::bus::transport::{
    RawMessage, SeekTarget, StartPosition, SubscribeRequest, Subscription, TransportErrorKind,
};
use openedx_events::bus::{BackendFactory, Transport};
use openedx_events::config::Settings;

fn unique(name: &str) -> String {
    format!("rmq-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn request(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer_name: format!("test-{group}"),
        start: StartPosition::Earliest,
        extras: Default::default(),
    }
}

async fn subscribe(t: &Arc<dyn Transport>, topic: &str, group: &str) -> Box<dyn Subscription> {
    t.subscribe(&request(topic, group))
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"))
}

/// Whether a queue exists on the shared broker.
async fn queue_exists(name: &str) -> bool {
    let conn = Connection::connect(&common::shared_url(), ConnectionProperties::default())
        .await
        .expect("lapin connects");
    let ch = conn.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let found = ch
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .is_ok();
    let _ = conn.close(200, "done".into()).await;
    found
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let url = "amqp://guest:not-the-password@127.0.0.1:5672/%2f";
    let e = RabbitMqTransport::connect(common::settings(url))
        .await
        .err()
        .expect("a wrong password is refused");
    assert_eq!(e.kind, TransportErrorKind::Rejected, "{e}");
    assert!(
        e.message.contains("guest") && e.message.contains("EVENT_BUS_RABBITMQ_PASSWORD"),
        "{e}"
    );
    assert!(!e.message.contains("not-the-password"), "{e}");
    let mut s = Settings::new();
    s.set("EVENT_BUS_RABBITMQ_URL", "amqp://127.0.0.1:5672/%2f");
    s.set("EVENT_BUS_RABBITMQ_USER", "guest");
    s.set("EVENT_BUS_RABBITMQ_PASSWORD", "hunter2-wrong");
    let e = RabbitMqBackend.create(&s).await.err().expect("refused");
    assert!(!e.to_string().contains("hunter2-wrong"), "{e}");
}

#[tokio::test]
async fn the_factory_connects_with_settings() {
    let mut s = Settings::new();
    s.set("EVENT_BUS_RABBITMQ_URL", common::shared_url());
    let t = RabbitMqBackend.create(&s).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.name(), "rabbitmq");
    let c = t.capabilities();
    assert!(c.consumer_groups && c.persistent && c.ordered_per_key);
    assert!(!c.replay_from_start && !c.seek_time);
    assert_eq!(c.max_message_bytes, 16 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_gets_the_backlog_but_not_what_other_groups_got() {
    let t = common::connect(&common::shared_url()).await;
    let topics = common::Topics::default();
    let topic = topics.make(unique("backlog"));
    let before = publish_logins(&t, &topic, 0, 5, |i| i.to_string()).await;
    let mut a = subscribe(&t, &topic, "a").await;
    receive_ids(a.as_mut(), &ids(&before), Duration::from_secs(20)).await;
    let after: Vec<Published> = publish_logins(&t, &topic, 5, 5, |i| i.to_string()).await;
    receive_ids(a.as_mut(), &ids(&after), Duration::from_secs(20)).await;
    let mut b = subscribe(&t, &topic, "b").await;
    let got = receive_ids(b.as_mut(), &ids(&before), Duration::from_secs(20)).await;
    let extra = event_bus_conformance::drain(b.as_mut(), Duration::from_millis(500)).await;
    let late: HashSet<_> = ids(&after);
    assert!(
        got.iter()
            .chain(extra.iter())
            .all(|d| !late.contains(&event_bus_conformance::id_of(d))),
        "a new group does not replay what was published once a group existed"
    );
    a.close().await.expect("close");
    b.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_nack_waits_in_a_retry_queue_and_counts_attempts() {
    let t = common::connect(&common::shared_url()).await;
    let topics = common::Topics::default();
    let topic = topics.make(unique("retry"));
    let mut sub = subscribe(&t, &topic, "g").await;
    let published = publish_logins(&t, &topic, 0, 1, |_| "k".into()).await;
    let mut attempts = Vec::new();
    let mut gaps = Vec::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempts.len() < 3 && Instant::now() < deadline {
        for d in sub.receive(1, Duration::from_millis(200)).await.expect("receive") {
            assert_eq!(event_bus_conformance::id_of(&d), published[0].metadata.id);
            assert_eq!(
                d.raw.key.as_deref(),
                Some(&b"user-k"[..]),
                "the key survives the retry queue"
            );
            attempts.push(d.attempt);
            gaps.push(last.elapsed());
            last = Instant::now();
            if attempts.len() < 3 {
                sub.nack(d.tag, Duration::from_millis(400))
                    .await
                    .expect("nack with delay");
            } else {
                sub.ack(d.tag).await.expect("ack");
            }
        }
    }
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        gaps[1] >= Duration::from_millis(400) && gaps[2] >= Duration::from_millis(400),
        "{gaps:?}"
    );
    let queue = names::group_queue(&topic, "g").expect("name");
    assert!(
        queue_exists(&format!("{}.retry.500", queue.as_str())).await,
        "the 500 ms bucket's queue"
    );
    sub.close().await.expect("close");
}

#[tokio::test]
async fn long_keys_large_messages_options_and_seek() {
    let t = common::connect(&common::shared_url()).await;
    let topics = common::Topics::default();
    let topic = topics.make(unique("limits"));
    let mut sub = subscribe(&t, &topic, "g").await;
    let key = "k".repeat(400).into_bytes();
    t.publish_raw(&RawMessage {
        topic: topic.clone(),
        key: Some(key.clone()),
        headers: vec![("bin".into(), vec![0xff, 0x00])],
        value: b"v".to_vec(),
        timestamp: None,
    })
    .await
    .expect("a 400-byte key is published");
    let d = event_bus_conformance::drain(sub.as_mut(), Duration::from_secs(2)).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].raw.key.as_deref(),
        Some(&key[..]),
        "the whole key travels in a header"
    );
    assert_eq!(
        d[0].raw.header("bin"),
        Some(&[0xff, 0x00][..]),
        "non-UTF-8 header bytes are kept"
    );
    assert!(
        d[0].event.is_err(),
        "a message without CloudEvents headers is the core's to dead-letter"
    );

    let mut small = common::settings(&common::shared_url());
    small.max_message_bytes = 1000;
    let t2 = RabbitMqTransport::connect(small).await.expect("connects");
    let big = RawMessage {
        topic: topic.clone(),
        value: vec![0; 2000],
        ..RawMessage::default()
    };
    let e = t2.publish_raw(&big).await.expect_err("too large");
    assert_eq!(e.kind, TransportErrorKind::Rejected, "{e}");

    let e = sub.seek(&SeekTarget::Earliest).await.expect_err("no seek");
    assert_eq!(e.kind, TransportErrorKind::Unsupported);
    sub.close().await.expect("close");

    let mut r = request(&topic, "g");
    r.extras.insert("prefech".into(), 5.into());
    let e = t.subscribe(&r).await.err().expect("an unknown option is refused");
    assert_eq!(e.kind, TransportErrorKind::Config);
    assert!(e.message.contains("prefech"), "{e}");
    r.extras.clear();
    r.extras.insert("prefetch".into(), 0.into());
    assert!(t.subscribe(&r).await.is_err());
}

#[tokio::test]
async fn settings_come_from_the_environment_names() {
    let mut s = Settings::new();
    s.set("EVENT_BUS_RABBITMQ_PREFETCH", "7");
    s.set("EVENT_BUS_RABBITMQ_URL", common::shared_url());
    let r = RabbitMqSettings::from_settings(&s).expect("valid");
    assert_eq!(r.prefetch, 7);
    let t: Arc<dyn Transport> = Arc::new(RabbitMqTransport::connect(r).await.expect("connects"));
    let topics = common::Topics::default();
    let topic = topics.make(unique("settings"));
    let mut sub = subscribe(&t, &topic, "g").await;
    let p = publish_logins(&t, &topic, 0, 20, |i| i.to_string()).await;
    receive_ids(sub.as_mut(), &ids(&p), Duration::from_secs(20)).await;
    sub.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_reads_the_backlog_without_consuming_it() {
    let t = common::connect(&common::shared_url()).await;
    let topics = common::Topics::default();
    let topic = topics.make(unique("browse"));
    assert!(t
        .browse(&topic, None, 10)
        .await
        .expect("browse an unused topic")
        .is_empty());
    for i in 0..5u8 {
        t.publish_raw(&RawMessage {
            topic: topic.clone(),
            headers: vec![("n".into(), vec![b'0' + i])],
            value: vec![i],
            ..RawMessage::default()
        })
        .await
        .expect("publish");
    }
    let first = t.browse(&topic, None, 2).await.expect("browse");
    assert_eq!(first.iter().map(|d| d.raw.value[0]).collect::<Vec<_>>(), [0, 1]);
    let rest = t.browse(&topic, Some(&first[1].position), 10).await.expect("browse on");
    assert_eq!(rest.iter().map(|d| d.raw.value[0]).collect::<Vec<_>>(), [2, 3, 4]);
    let found = openedx_events::bus::dead_letter::find(t.as_ref(), &topic, &rest[0].position)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.raw.header_str("n"), Some("2"));
    let mut sub = subscribe(&t, &topic, "g").await;
    let got = event_bus_conformance::drain(sub.as_mut(), Duration::from_secs(2)).await;
    assert_eq!(got.len(), 5, "browsing consumed nothing");
    sub.close().await.expect("close");
}

/// Deletes what earlier runs of these tests left on the shared broker
/// (topics starting `conformance-`, `rmq-`, `poison-`, `raw-`):
/// `cargo test -p event-bus-rabbitmq --test backend -- --ignored`.
#[test]
#[ignore]
fn delete_leftover_test_topics() {
    common::delete_topics(["conformance-", "rmq-", "poison-", "raw-"].map(String::from).to_vec());
}

/// A nack without delay comes back before the messages waiting behind it,
/// even when the queue holds more than the prefetch (a broker requeue would
/// put it at the back of the quorum queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_without_delay_comes_back_first() {
    let t = common::connect(&common::shared_url()).await;
    let topics = common::Topics::default();
    let topic = topics.make(unique("redeliver"));
    let mut r = request(&topic, "g");
    r.extras.insert("prefetch".into(), 1.into());
    let mut sub = t.subscribe(&r).await.expect("subscribe");
    let p = publish_logins(&t, &topic, 0, 5, |_| "k".into()).await;
    let index = |d: &openedx_events::bus::transport::Delivery| {
        p.iter()
            .position(|x| x.metadata.id == event_bus_conformance::id_of(d))
            .expect("published")
    };
    let mut order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while order.len() < 6 && Instant::now() < deadline {
        for d in sub.receive(1, Duration::from_millis(200)).await.expect("receive") {
            order.push((index(&d), d.attempt));
            if order.len() == 1 {
                sub.nack(d.tag, Duration::ZERO).await.expect("nack");
            } else {
                sub.ack(d.tag).await.expect("ack");
            }
        }
    }
    assert_eq!(order, [(0, 1), (0, 2), (1, 1), (2, 1), (3, 1), (4, 1)]);
    sub.close().await.expect("close");
}
