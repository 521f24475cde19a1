//! Helpers shared by the cases: publishing real catalog events and reading
//! them back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openedx_events::bus::transport::{Delivery, StartPosition, SubscribeRequest, Subscription};
use openedx_events::bus::{EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::value::{Record, Value};
use uuid::Uuid;

use crate::BackendUnderTest;

/// The event type the cases publish (several fields, a nested record, a key).
pub const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

/// The login event type.
pub fn login_type() -> &'static Arc<EventType> {
    catalog::get(LOGIN).expect("the catalog has the session login event")
}

/// Login data for user `i` with username `user-<key>`.
pub fn login_data(i: i64, key: &str) -> Record {
    let pii = Record::new()
        .with("username", Value::from(format!("user-{key}")))
        .with("email", Value::from(format!("u{i}@example.com")))
        .with("name", Value::from(format!("User {i}")));
    let user = Record::new()
        .with("id", Value::Long(i))
        .with("is_active", Value::Boolean(i % 2 == 0))
        .with("pii", Value::Record(pii));
    Record::new().with("user", Value::Record(user))
}

/// One published event: its metadata and data.
#[derive(Debug, Clone)]
pub struct Published {
    /// The metadata sent.
    pub metadata: EventsMetadata,
    /// The data sent.
    pub data: Record,
    /// The key (username suffix).
    pub key: String,
}

/// Publish `n` login events numbered from `start`, keyed `key_of(i)`.
pub async fn publish_logins(
    transport: &Arc<dyn Transport>,
    topic: &str,
    start: i64,
    n: i64,
    key_of: impl Fn(i64) -> String,
) -> Vec<Published> {
    let producer = EventBusProducer::new(transport.clone(), None);
    let mut out = Vec::with_capacity(n as usize);
    for i in start..start + n {
        let key = key_of(i);
        let data = login_data(i, &key);
        let metadata = EventsMetadata::new(LOGIN, 0);
        publish_with_retry(&producer, topic, &data, &metadata).await;
        out.push(Published { metadata, data, key });
    }
    out
}

/// Publish one event, retrying a few times (transient broker errors are
/// tolerated, as Watermill's suite does).
pub async fn publish_with_retry(producer: &EventBusProducer, topic: &str, data: &Record, metadata: &EventsMetadata) {
    let mut last = None;
    for attempt in 0..5 {
        match producer
            .send(login_type(), topic, Some("user.pii.username"), data, metadata)
            .await
        {
            Ok(_) => return,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
        }
    }
    panic!("publish to {topic} failed 5 times: {last:?}");
}

/// Join `group` on `topic`, starting at the earliest message.
pub async fn subscribe(
    backend: &dyn BackendUnderTest,
    transport: &Arc<dyn Transport>,
    topic: &str,
    group: &str,
) -> Box<dyn Subscription> {
    let request = SubscribeRequest {
        topic: topic.to_string(),
        group: group.to_string(),
        consumer_name: format!("conformance-{}", Uuid::new_v4().simple()),
        start: StartPosition::Earliest,
        extras: backend.subscribe_extras(),
    };
    transport
        .subscribe(&request)
        .await
        .unwrap_or_else(|e| panic!("subscribe to {topic} as {group} failed: {e}"))
}

/// The event id of a delivery (panics with the reason if the message cannot
/// be understood).
pub fn id_of(d: &Delivery) -> Uuid {
    match &d.event {
        Ok(e) => e.metadata.id,
        Err(reason) => panic!("delivery at {} is not an event: {reason}", d.position),
    }
}

/// Receive until every id in `want` has been seen (acking everything read,
/// duplicates tolerated) or `patience` runs out (then panic naming how many
/// are missing). Returns the deliveries in arrival order.
pub async fn receive_ids(sub: &mut dyn Subscription, want: &HashSet<Uuid>, patience: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + patience;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while !want.is_subset(&seen) {
        if Instant::now() > deadline {
            panic!(
                "received {} of {} expected messages within {patience:?}",
                want.intersection(&seen).count(),
                want.len()
            );
        }
        let batch = sub
            .receive(50, Duration::from_millis(200))
            .await
            .unwrap_or_else(|e| panic!("receive failed: {e}"));
        for d in batch {
            sub.ack(d.tag).await.unwrap_or_else(|e| panic!("ack failed: {e}"));
            seen.insert(id_of(&d));
            out.push(d);
        }
        sub.flush_acks()
            .await
            .unwrap_or_else(|e| panic!("flush_acks failed: {e}"));
    }
    out
}

/// Receive for `window`, acking, and return what arrived.
pub async fn drain(sub: &mut dyn Subscription, window: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let batch = sub
            .receive(50, Duration::from_millis(100))
            .await
            .unwrap_or_else(|e| panic!("receive failed: {e}"));
        for d in batch {
            sub.ack(d.tag).await.unwrap_or_else(|e| panic!("ack failed: {e}"));
            out.push(d);
        }
        sub.flush_acks()
            .await
            .unwrap_or_else(|e| panic!("flush_acks failed: {e}"));
    }
    out
}

/// Ids of published events.
pub fn ids(published: &[Published]) -> HashSet<Uuid> {
    published.iter().map(|p| p.metadata.id).collect()
}

/// Check that deliveries carry exactly what was published: metadata equal,
/// data decoding to the same record.
pub fn assert_intact(published: &[Published], deliveries: &[Delivery]) {
    let by_id: HashMap<Uuid, &Published> = published.iter().map(|p| (p.metadata.id, p)).collect();
    for d in deliveries {
        let incoming = d.event.as_ref().unwrap_or_else(|e| panic!("not an event: {e}"));
        let Some(p) = by_id.get(&incoming.metadata.id) else {
            continue;
        };
        assert_eq!(incoming.event_type, LOGIN);
        assert_eq!(incoming.metadata, p.metadata, "metadata survives the round trip");
        let t = login_type();
        let data = match &incoming.writer_schema {
            Some(w) => t.decode_data_from(w, &incoming.body),
            None => t.decode_data(&incoming.body),
        }
        .unwrap_or_else(|e| panic!("payload does not decode: {e}"));
        assert_eq!(data, p.data, "payload survives the round trip");
    }
}
