//! Poison messages published with the server's own client (async-nats,
//! not this backend): no headers, an unknown event type, a garbled id, a
//! body that is not Avro. Each is dead-lettered with its reason and the
//! good event after them is handled.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_bus_conformance::{login_data, publish_with_retry, subscribe, BackendUnderTest, LOGIN};
use event_bus_nats::names;
use openedx_events::bus::dead_letter::{DLQ_ERROR, DLQ_REASON};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

struct Shared;

#[async_trait::async_trait]
impl BackendUnderTest for Shared {
    async fn transport(&self) -> Arc<dyn Transport> {
        support::connect(&support::settings(&support::shared_url(), &[])).await
    }
}

async fn publish_foreign(client: &async_nats::Client, subject: &str, headers: &[(&str, &str)], body: &[u8]) {
    let js = async_nats::jetstream::new(client.clone());
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, *v);
    }
    js.publish_with_headers(subject.to_string(), h, body.to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("PubAck");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_poison_messages_are_dead_lettered_with_their_reason() {
    let b = Shared;
    let transport = b.transport().await;
    let topic = b.topic("nats_poison");
    // The group exists first (and so does the stream).
    let mut first = subscribe(&b, &transport, &topic, "g").await;
    first.close().await.expect("close");
    let client = async_nats::connect(support::shared_url()).await.expect("connect");
    let subject = names::subject("openedx", &topic);
    let id = "629f9892-c258-11ed-8dac-1c83413013cb";
    publish_foreign(&client, &subject, &[], b"\xff\xfe no headers at all").await;
    publish_foreign(
        &client,
        &subject,
        &[("ce_type", "org.example.nobody.knows.v1"), ("ce_id", id)],
        b"x",
    )
    .await;
    publish_foreign(&client, &subject, &[("ce_type", LOGIN), ("ce_id", "not-a-uuid")], b"x").await;
    publish_foreign(
        &client,
        &subject,
        &[("ce_type", LOGIN), ("ce_id", id)],
        &[0xff, 0xff, 0xff, 0x01],
    )
    .await;
    let good = EventsMetadata::new(LOGIN, 0);
    let producer = EventBusProducer::new(transport.clone(), None);
    publish_with_retry(&producer, &topic, &login_data(1, "k"), &good).await;

    let registry = Arc::new(Registry::with_catalog());
    let handled: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let h = handled.clone();
    registry.get(LOGIN).expect("login").connect("record", move |e| {
        h.lock().expect("lock").push(e.metadata.id);
        Ok(())
    });
    let mut o = ConsumerOptions::new(&topic, "g");
    o.poll_timeout = Duration::from_millis(100);
    o.limit = Some(5);
    let consumer = EventBusConsumer::new(transport.clone(), registry, o);
    let stats = tokio::time::timeout(Duration::from_secs(30), consumer.consume(CancellationToken::new()))
        .await
        .expect("the consumer handled 5 messages in time")
        .expect("consume");
    assert_eq!((stats.processed, stats.dead_lettered), (1, 4), "{stats:?}");
    assert_eq!(*handled.lock().expect("lock"), vec![good.id]);

    let mut dlq = subscribe(&b, &transport, &format!("{topic}-dlq"), "check").await;
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut errors = Vec::new();
    while reasons.values().sum::<usize>() < 4 {
        assert!(std::time::Instant::now() < deadline, "dead letters: {reasons:?}");
        for d in dlq.receive(10, Duration::from_millis(200)).await.expect("receive") {
            let reason = d.raw.header_str(DLQ_REASON).unwrap_or("none").to_string();
            errors.push(d.raw.header_str(DLQ_ERROR).unwrap_or("").to_string());
            *reasons.entry(reason).or_default() += 1;
            dlq.ack(d.tag).await.expect("ack");
        }
    }
    dlq.close().await.expect("close");
    assert_eq!(reasons.get("unusable_message"), Some(&2), "{reasons:?} {errors:?}");
    assert_eq!(reasons.get("unknown_event_type"), Some(&1), "{reasons:?}");
    assert_eq!(reasons.get("undecodable"), Some(&1), "{reasons:?}");
}
