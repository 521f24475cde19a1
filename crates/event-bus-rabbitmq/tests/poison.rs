//! Poison messages written by another AMQP producer (lapin itself, not this
//! backend): no headers, foreign header types, an unknown event type, bad
//! Avro. Each is dead-lettered with its reason and the stream goes on.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_conformance::{login_data, publish_with_retry, LOGIN};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use openedx_events::bus::dead_letter::{DLQ_ORIGINAL_TOPIC, DLQ_REASON};
use openedx_events::bus::transport::{StartPosition, SubscribeRequest};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

fn headers(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(k.into(), v);
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn subscribe(
    t: &Arc<dyn Transport>,
    topic: &str,
    group: &str,
) -> Box<dyn openedx_events::bus::transport::Subscription> {
    let request = SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer_name: format!("poison-{group}"),
        start: StartPosition::Earliest,
        extras: Default::default(),
    };
    t.subscribe(&request).await.unwrap_or_else(|e| panic!("subscribe: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_poison_messages_are_dead_lettered_and_the_stream_goes_on() {
    let url = common::shared_url();
    let t = common::connect(&url).await;
    let topics = common::Topics::default();
    let topic = topics.make(format!("poison-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    // The group exists first, so the foreign messages reach its queue.
    subscribe(&t, &topic, "g").await.close().await.expect("close");

    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("lapin connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let id = || text(&uuid::Uuid::new_v4().hyphenated().to_string());
    let cases: Vec<(FieldTable, Vec<u8>)> = vec![
        // No headers at all.
        (FieldTable::default(), b"\xff\xfe no headers".to_vec()),
        // Headers of other AMQP types: an int minor version, an array, a
        // byte-array id (not text a UUID can be read from).
        (
            headers(vec![
                ("ce_type", text(LOGIN)),
                ("ce_id", AMQPValue::ByteArray(ByteArray::from(vec![0xff, 0x00]))),
                ("ce_minorversion", AMQPValue::LongInt(0)),
                ("tags", AMQPValue::FieldArray(FieldArray::default())),
            ]),
            vec![0],
        ),
        // An event type nobody registered.
        (
            headers(vec![("ce_type", text("org.example.nobody.knows.v1")), ("ce_id", id())]),
            vec![0],
        ),
        // A known type whose body is not its Avro.
        (
            headers(vec![
                ("ce_type", text(LOGIN)),
                ("ce_id", id()),
                ("ce_minorversion", AMQPValue::ShortShortInt(0)),
            ]),
            vec![0xff, 0xff, 0xff, 0x01],
        ),
    ];
    for (h, body) in &cases {
        let props = BasicProperties::default().with_headers(h.clone()).with_delivery_mode(2);
        ch.basic_publish(
            topic.as_str().into(),
            "foreign".into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let good = EventsMetadata::new(LOGIN, 0);
    publish_with_retry(
        &EventBusProducer::new(t.clone(), None),
        &topic,
        &login_data(1, "k"),
        &good,
    )
    .await;

    let registry = Arc::new(Registry::with_catalog());
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = handled.clone();
    registry.get(LOGIN).expect("login").connect("record", move |e| {
        h.lock().map_err(|_| "poisoned")?.push(e.metadata.id);
        Ok(())
    });
    let mut o = ConsumerOptions::new(&topic, "g");
    o.poll_timeout = Duration::from_millis(100);
    o.limit = Some(5);
    let consumer = EventBusConsumer::new(t.clone(), registry, o);
    let stats = tokio::time::timeout(Duration::from_secs(30), consumer.consume(CancellationToken::new()))
        .await
        .expect("the consumer handled 5 messages in time")
        .expect("the consumer ran");
    assert_eq!((stats.processed, stats.dead_lettered), (1, 4), "{stats:?}");
    assert_eq!(
        *handled.lock().expect("handled"),
        vec![good.id],
        "the good event after the poison was handled"
    );

    let mut dlq = subscribe(&t, &format!("{topic}-dlq"), "check").await;
    let mut reasons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reasons.len() < 4 && Instant::now() < deadline {
        for d in dlq
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive dead letters")
        {
            assert_eq!(d.raw.header_str(DLQ_ORIGINAL_TOPIC), Some(topic.as_str()));
            reasons.push(d.raw.header_str(DLQ_REASON).unwrap_or("").to_string());
            dlq.ack(d.tag).await.expect("ack");
        }
    }
    dlq.close().await.expect("close");
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "undecodable",
            "unknown_event_type",
            "unusable_message",
            "unusable_message"
        ]
    );
    let _ = conn.close(200, "done".into()).await;
}
