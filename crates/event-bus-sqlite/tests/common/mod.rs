//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use event_bus_sqlite::{SqliteOptions, SqliteTransport};
use openedx_events::bus::transport::{Delivery, RawMessage, StartPosition, SubscribeRequest, Subscription, Transport};
use openedx_events::bus::wire;
use openedx_events::metadata::EventsMetadata;

/// How long a test waits for what it expects.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Options for tests: quick polling, the default lease.
pub fn options() -> SqliteOptions {
    SqliteOptions {
        poll_interval: Duration::from_millis(5),
        ..SqliteOptions::default()
    }
}

pub fn open(path: &Path) -> SqliteTransport {
    SqliteTransport::open(path, options()).expect("open")
}

/// A message with CloudEvents headers whose value is `n` in decimal.
pub fn message(topic: &str, n: u64) -> RawMessage {
    let metadata = EventsMetadata::new("org.openedx.test.thing.v1", 0);
    RawMessage {
        topic: topic.to_string(),
        key: Some(format!("k{}", n % 4).into_bytes()),
        headers: wire::cloudevent_headers(&metadata),
        value: n.to_string().into_bytes(),
        timestamp: None,
    }
}

/// The number in a message's value.
pub fn number(d: &Delivery) -> u64 {
    std::str::from_utf8(&d.raw.value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered message: {:?}", d.raw.value))
}

pub fn request(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_string(),
        group: group.to_string(),
        consumer_name: format!("{group}-member"),
        start: StartPosition::Earliest,
        extras: Default::default(),
    }
}

pub fn with_lease(mut r: SubscribeRequest, seconds: f64) -> SubscribeRequest {
    r.extras.insert("lease_seconds".into(), serde_json::json!(seconds));
    r
}

pub async fn publish_numbers(t: &impl Transport, topic: &str, range: std::ops::Range<u64>) -> Vec<String> {
    let mut positions = Vec::new();
    for n in range {
        positions.push(t.publish_raw(&message(topic, n)).await.expect("publish"));
    }
    positions
}

/// Receive (and ack) until `count` messages arrived or `patience` ran out.
pub async fn take(sub: &mut dyn Subscription, count: usize, patience: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        for d in sub
            .receive(count - got.len(), Duration::from_millis(100))
            .await
            .expect("receive")
        {
            sub.ack(d.tag).await.expect("ack");
            got.push(d);
        }
    }
    sub.flush_acks().await.expect("flush");
    got
}

/// Receive without acking until `count` arrived or `patience` ran out.
pub async fn hold(sub: &mut dyn Subscription, count: usize, patience: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        got.extend(
            sub.receive(count - got.len(), Duration::from_millis(100))
                .await
                .expect("receive"),
        );
    }
    got
}

pub fn numbers(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(number).collect()
}

pub fn number_set(ds: &[Delivery]) -> HashSet<u64> {
    ds.iter().map(number).collect()
}

/// A direct connection to the file, to look at or tamper with the tables.
pub fn sql(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open sqlite");
    c.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    c
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}
