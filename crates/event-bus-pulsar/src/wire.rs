//! The wire mapping: how an event becomes a Pulsar message and back. Pure
//! functions, no broker; the crate docs have the table.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use openedx_events::bus::transport::{Delivery, DeliveryTag, OutgoingMessage, RawMessage};
use openedx_events::bus::wire;
use pulsar::proto::{KeyValue, MessageIdData};

/// Property-name prefix of a header whose value is not UTF-8: the header
/// `x-bin` = `[0xff, 0x00]` travels as the property `base64:x-bin` = `/wA=`
/// (standard Base64, with padding). Pulsar properties are strings; every
/// header the event bus itself writes is text, so this only appears for
/// foreign binary headers passed through `publish_raw` (dead letters,
/// requeues from another backend). A header whose own name starts with the
/// prefix (a received property `base64:x` whose value was not Base64 is
/// kept as the text header `base64:x`) is always sent encoded, as
/// `base64:base64:x`, so it comes back as it went.
pub const BASE64_PROPERTY_PREFIX: &str = "base64:";

/// The Pulsar topic for a full event bus topic (prefix included):
/// `persistent://<tenant>/<namespace>/<topic>`. A topic that is already a
/// Pulsar topic name (`persistent://...` or `non-persistent://...`) is used
/// as is.
///
/// ```
/// use event_bus_pulsar::wire::pulsar_topic;
/// assert_eq!(pulsar_topic("public", "default", "dev-user-login"), "persistent://public/default/dev-user-login");
/// assert_eq!(pulsar_topic("t", "n", "persistent://a/b/c"), "persistent://a/b/c");
/// ```
pub fn pulsar_topic(tenant: &str, namespace: &str, topic: &str) -> String {
    if topic.starts_with("persistent://") || topic.starts_with("non-persistent://") {
        topic.to_string()
    } else {
        format!("persistent://{tenant}/{namespace}/{topic}")
    }
}

/// A message as this backend gives it to the Pulsar client.
///
/// ```
/// use event_bus_pulsar::wire::PulsarRecord;
/// let record = PulsarRecord {
///     properties: vec![("ce_type".into(), "t.v1".into())],
///     partition_key: Some("42".into()),
///     payload: b"avro".to_vec(),
///     event_time: Some(1_700_000_000_000),
///     ..Default::default()
/// };
/// assert_eq!(record.approximate_size(), 4 + (7 + 4 + 4) + 2);
/// let m = record.into_message();
/// assert_eq!(m.properties["ce_type"], "t.v1");
/// assert_eq!(m.partition_key_b64_encoded, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PulsarRecord {
    /// Properties, in the order of the headers they come from.
    pub properties: Vec<(String, String)>,
    /// The partition key (also the Key_Shared routing key).
    pub partition_key: Option<String>,
    /// Whether `partition_key` is the Base64 of binary key bytes (Pulsar's
    /// own `partition_key_b64_encoded` flag).
    pub partition_key_b64_encoded: bool,
    /// The payload.
    pub payload: Vec<u8>,
    /// The event time, milliseconds since the epoch.
    pub event_time: Option<u64>,
}

impl PulsarRecord {
    /// The pulsar-rs message.
    pub fn into_message(self) -> pulsar::producer::Message {
        pulsar::producer::Message {
            payload: self.payload,
            properties: self.properties.into_iter().collect::<HashMap<_, _>>(),
            partition_key: self.partition_key,
            partition_key_b64_encoded: self.partition_key_b64_encoded.then_some(true),
            event_time: self.event_time,
            ..Default::default()
        }
    }

    /// Bytes the broker will store for the payload and properties (what the
    /// size limit is checked against).
    pub fn approximate_size(&self) -> usize {
        self.payload.len()
            + self
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + self.partition_key.as_ref().map_or(0, String::len)
    }
}

/// Milliseconds since the epoch (0 for times before it).
///
/// ```
/// use event_bus_pulsar::wire::millis;
/// let t = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07.123999Z").unwrap().to_utc();
/// assert_eq!(millis(&t), 1_772_600_767_123);
/// ```
pub fn millis(t: &DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// An event as a Pulsar message: the ten CloudEvents headers as properties
/// (in the Python order), the key as text, the schemaless Avro body as
/// payload and the metadata time as event time.
///
/// ```
/// use std::sync::Arc;
/// use event_bus_pulsar::wire::event_record;
/// use openedx_events::bus::transport::OutgoingMessage;
/// use openedx_events::{catalog, config::extract_event_key, metadata::EventsMetadata};
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = t.data_from_json(&serde_json::json!({"user": {"id": 7, "is_active": true,
///     "pii": {"username": "bob", "email": "bob@example.com", "name": "Bob"}}})).unwrap();
/// let metadata = EventsMetadata::new(t.name(), 0);
/// let message = OutgoingMessage {
///     topic: "user-login".into(),
///     event_type: t.clone(),
///     key: Some(extract_event_key(t, &data, "user.id").unwrap()),
///     body: t.encode_data(&data).unwrap(),
///     metadata: metadata.clone(),
/// };
/// let record = event_record(&message).unwrap();
/// assert_eq!(record.properties[3], ("ce_type".to_string(), t.name().to_string()));
/// assert_eq!(record.partition_key.as_deref(), Some("7"));
/// assert_eq!(record.event_time, Some(metadata.time.timestamp_millis() as u64));
/// ```
pub fn event_record(message: &OutgoingMessage) -> Result<PulsarRecord, String> {
    raw_record(&wire::cloudevent_message(message))
}

/// A raw message as a Pulsar message: headers as properties (non-UTF-8
/// values under [`BASE64_PROPERTY_PREFIX`]), the key as text (or Base64 with
/// Pulsar's `partition_key_b64_encoded` flag when it is not UTF-8), the value
/// as payload, the timestamp as event time. Two headers with one name cannot
/// be Pulsar properties (a map): that is an error.
///
/// ```
/// use event_bus_pulsar::wire::raw_record;
/// use openedx_events::bus::transport::RawMessage;
/// let raw = RawMessage {
///     topic: "t".into(),
///     key: Some(vec![0xff]),
///     headers: vec![("a".into(), b"text".to_vec()), ("b".into(), vec![0xff, 0x00])],
///     value: b"v".to_vec(),
///     timestamp: None,
/// };
/// let r = raw_record(&raw).unwrap();
/// assert_eq!(r.properties, vec![("a".to_string(), "text".to_string()), ("base64:b".to_string(), "/wA=".to_string())]);
/// assert_eq!((r.partition_key.as_deref(), r.partition_key_b64_encoded), (Some("/w=="), true));
/// ```
pub fn raw_record(raw: &RawMessage) -> Result<PulsarRecord, String> {
    let mut properties: Vec<(String, String)> = Vec::with_capacity(raw.headers.len());
    for (name, value) in &raw.headers {
        let property = match std::str::from_utf8(value) {
            Ok(text) if !name.starts_with(BASE64_PROPERTY_PREFIX) => (name.clone(), text.to_string()),
            _ => (
                format!("{BASE64_PROPERTY_PREFIX}{name}"),
                base64::engine::general_purpose::STANDARD.encode(value),
            ),
        };
        if properties.iter().any(|(k, _)| *k == property.0) || raw.headers.iter().filter(|(k, _)| k == name).count() > 1
        {
            return Err(format!(
                "header {name:?} appears more than once; Pulsar properties are a map, so it cannot be sent"
            ));
        }
        properties.push(property);
    }
    let (partition_key, partition_key_b64_encoded) = match &raw.key {
        None => (None, false),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_string()), false),
            Err(_) => (Some(base64::engine::general_purpose::STANDARD.encode(bytes)), true),
        },
    };
    Ok(PulsarRecord {
        properties,
        partition_key,
        partition_key_b64_encoded,
        payload: raw.value.clone(),
        event_time: raw.timestamp.as_ref().map(millis),
    })
}

/// Headers from received properties: Base64 properties decoded back to
/// their header, then ordered the same way whatever order they came in
/// (pulsar-rs sends properties from a hash map, so the wire order is
/// arbitrary): the ten CloudEvents headers first, in the Python order, then
/// the others by name.
///
/// ```
/// use event_bus_pulsar::wire::headers_from_properties;
/// use pulsar::proto::KeyValue;
/// let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
/// let h = headers_from_properties(&[kv("zz", "1"), kv("ce_id", "x"), kv("base64:bin", "/wA="), kv("ce_type", "t")]);
/// let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
/// assert_eq!(names, ["ce_type", "ce_id", "bin", "zz"]);
/// assert_eq!(h[2].1, vec![0xff, 0x00]);
/// ```
pub fn headers_from_properties(properties: &[KeyValue]) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = properties
        .iter()
        .map(|kv| match kv.key.strip_prefix(BASE64_PROPERTY_PREFIX) {
            Some(name) => match base64::engine::general_purpose::STANDARD.decode(&kv.value) {
                Ok(bytes) => (name.to_string(), bytes),
                // Not ours after all: keep it as it came.
                Err(_) => (kv.key.clone(), kv.value.as_bytes().to_vec()),
            },
            None => (kv.key.clone(), kv.value.as_bytes().to_vec()),
        })
        .collect();
    headers.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    headers
}

fn rank(name: &str) -> usize {
    const ORDER: [&str; 10] = [
        wire::CE_SPECVERSION,
        wire::CONTENT_TYPE,
        wire::CE_DATACONTENTTYPE,
        wire::CE_TYPE,
        wire::CE_ID,
        wire::CE_SOURCE,
        wire::CE_TIME,
        wire::CE_MINORVERSION,
        wire::SOURCEHOST,
        wire::SOURCELIB,
    ];
    ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len())
}

/// A message id as text, the way Pulsar prints it:
/// `ledger:entry:partition:batch_index` (-1 when there is none).
///
/// ```
/// use event_bus_pulsar::wire::{format_position, parse_position};
/// use pulsar::proto::MessageIdData;
/// let id = MessageIdData { ledger_id: 12, entry_id: 3, ..Default::default() };
/// assert_eq!(format_position(&id), "12:3:-1:-1");
/// assert_eq!(parse_position("12:3:-1:-1").unwrap(), id);
/// assert!(parse_position("12").is_err());
/// ```
pub fn format_position(id: &MessageIdData) -> String {
    format!(
        "{}:{}:{}:{}",
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1)
    )
}

/// Parse a position written by [`format_position`] (`ledger:entry`,
/// `ledger:entry:partition` are accepted too).
pub fn parse_position(text: &str) -> Result<MessageIdData, String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let bad = || format!("{text:?} is not a Pulsar message id (ledger:entry:partition:batch)");
    if !(2..=4).contains(&parts.len()) {
        return Err(bad());
    }
    let ledger_id = parts[0].parse::<u64>().map_err(|_| bad())?;
    let entry_id = parts[1].parse::<u64>().map_err(|_| bad())?;
    let optional = |i: usize| -> Result<Option<i32>, String> {
        match parts.get(i) {
            None => Ok(None),
            Some(p) => {
                let n = p.parse::<i32>().map_err(|_| bad())?;
                Ok((n >= 0).then_some(n))
            }
        }
    };
    Ok(MessageIdData {
        ledger_id,
        entry_id,
        partition: optional(2)?,
        batch_index: optional(3)?,
        ..Default::default()
    })
}

/// The order of two message ids of one topic partition (ledger, entry,
/// batch index).
///
/// ```
/// use std::cmp::Ordering;
/// use event_bus_pulsar::wire::{parse_position, position_cmp};
/// let a = parse_position("7:1:-1:3").unwrap();
/// let b = parse_position("7:2:-1:-1").unwrap();
/// assert_eq!(position_cmp(&a, &b), Ordering::Less);
/// ```
pub fn position_cmp(a: &MessageIdData, b: &MessageIdData) -> std::cmp::Ordering {
    (a.ledger_id, a.entry_id, a.batch_index.unwrap_or(-1)).cmp(&(b.ledger_id, b.entry_id, b.batch_index.unwrap_or(-1)))
}

/// A received Pulsar message as a delivery: the key from the partition key
/// (Base64-decoded when flagged), headers from the properties, the payload
/// as value, the publish time as timestamp, and the event read from the
/// CloudEvents headers (or why it cannot be).
///
/// ```
/// use event_bus_pulsar::wire::delivery;
/// use openedx_events::bus::transport::DeliveryTag;
/// use pulsar::proto::{KeyValue, MessageIdData, MessageMetadata};
/// let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
/// let metadata = MessageMetadata {
///     properties: vec![kv("ce_id", "629f9892-c258-11ed-8dac-1c83413013cb"), kv("ce_type", "t.v1")],
///     partition_key: Some("bob".into()),
///     publish_time: 1_700_000_000_000,
///     ..Default::default()
/// };
/// let id = MessageIdData { ledger_id: 3, entry_id: 9, ..Default::default() };
/// let d = delivery("dev-user-login", &id, &metadata, b"avro", DeliveryTag(0), 1);
/// assert_eq!(d.position, "3:9:-1:-1");
/// assert_eq!(d.raw.key.as_deref(), Some(&b"bob"[..]));
/// assert_eq!(d.event.unwrap().event_type, "t.v1");
/// ```
pub fn delivery(
    topic: &str,
    id: &MessageIdData,
    metadata: &pulsar::proto::MessageMetadata,
    payload: &[u8],
    tag: DeliveryTag,
    attempt: u32,
) -> Delivery {
    let key = match &metadata.partition_key {
        None => None,
        Some(k) if metadata.partition_key_b64_encoded() => Some(
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .unwrap_or_else(|_| k.as_bytes().to_vec()),
        ),
        Some(k) => Some(k.as_bytes().to_vec()),
    };
    let timestamp = i64::try_from(metadata.publish_time)
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    let raw = RawMessage {
        topic: topic.to_string(),
        key,
        headers: headers_from_properties(&metadata.properties),
        value: payload.to_vec(),
        timestamp,
    };
    let event = wire::cloudevent_incoming(&raw);
    Delivery {
        raw,
        tag,
        position: format_position(id),
        attempt,
        event,
    }
}

#[cfg(test)]
mod tests;
