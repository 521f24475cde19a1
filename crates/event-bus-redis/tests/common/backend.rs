//! Helpers of the tests that drive a transport directly: the test's streams
//! (deleted at the end), subscribe requests, publishing and receiving a few
//! events, pending counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openedx_events::bus::transport::{Delivery, StartPosition, SubscribeRequest, Subscription};
use openedx_events::bus::{EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use serde_json::Value as Json;
use uuid::Uuid;

use super::{delete_streams, redis_cmd, redis_url, unique};

/// The event type the tests publish.
pub const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

/// Deletes the test's streams at the end, even when it fails.
pub struct Streams(pub Vec<String>);

impl Streams {
    pub fn new(name: &str) -> (Self, String) {
        let s = unique(name);
        (Streams(vec![s.clone(), format!("{s}-dlq")]), s)
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        delete_streams(&redis_url(), &self.0);
    }
}

/// A request to join `group` as `consumer`, from the start, with `extras`.
pub fn request(stream: &str, group: &str, consumer: &str, extras: Json) -> SubscribeRequest {
    SubscribeRequest {
        topic: stream.to_string(),
        group: group.to_string(),
        consumer_name: consumer.to_string(),
        start: StartPosition::Earliest,
        extras: extras.as_object().cloned().unwrap_or_default(),
    }
}

/// Publish `n` login events to `stream`; their ids.
pub async fn publish_n(t: &Arc<dyn Transport>, stream: &str, n: usize) -> Vec<Uuid> {
    let producer = EventBusProducer::new(t.clone(), None);
    let et = catalog::get(LOGIN).expect("login");
    let mut ids = Vec::new();
    for i in 0..n {
        let data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(i as u64));
        let m = EventsMetadata::new(LOGIN, 0);
        producer.send(et, stream, None, &data, &m).await.expect("publish");
        ids.push(m.id);
    }
    ids
}

/// The event id of a delivery (which must be an event).
pub fn id_of(d: &Delivery) -> Uuid {
    d.event
        .as_ref()
        .map(|e| e.metadata.id)
        .unwrap_or_else(|e| panic!("not an event: {e}"))
}

/// Receive until `n` deliveries arrived or `patience` ran out.
pub async fn receive_n(sub: &mut dyn Subscription, n: usize, patience: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + patience;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(
            sub.receive(n - out.len(), Duration::from_millis(100))
                .await
                .expect("receive"),
        );
    }
    out
}

/// Acknowledge deliveries and flush the acks.
pub async fn ack_all(sub: &mut dyn Subscription, ds: &[Delivery]) {
    for d in ds {
        sub.ack(d.tag).await.expect("ack");
    }
    sub.flush_acks().await.expect("flush");
}

/// How many entries of `group` are pending (`XPENDING`).
pub fn pending_count(stream: &str, group: &str) -> i64 {
    let v: redis::Value = redis_cmd(&redis_url(), redis::cmd("XPENDING").arg(stream).arg(group));
    match v {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}
