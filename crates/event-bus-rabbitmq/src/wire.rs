//! The core's messages to and from AMQP messages: CloudEvents headers in the
//! header table, the key in a header and (bounded) as the routing key, the
//! schemaless Avro body as the payload.
//!
//! ```
//! use event_bus_rabbitmq::wire;
//! use openedx_events::bus::transport::RawMessage;
//! let raw = RawMessage {
//!     topic: "dev-t".into(),
//!     key: Some(b"k1".to_vec()),
//!     headers: vec![("ce_type".into(), b"t.v1".to_vec()), ("x".into(), vec![0xff])],
//!     value: b"body".to_vec(),
//!     timestamp: None,
//! };
//! let amqp = wire::raw_to_amqp(&raw).unwrap();
//! assert_eq!(amqp.routing_key.as_str(), "k1");
//! let back = wire::from_amqp("dev-t", "dev-t", amqp.routing_key.as_str(), &amqp.properties, amqp.body.clone());
//! assert_eq!((back.raw.key, back.raw.headers, back.attempt), (raw.key, raw.headers, 1));
//! ```

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use openedx_events::bus::transport::{OutgoingMessage, RawMessage, TransportError};
use openedx_events::bus::wire as ce;

use crate::error::rejected;
use crate::names;

/// The header carrying the whole key (the CloudEvents `partitionkey`
/// extension, Kafka binding name, as the NATS backend).
pub const KEY_HEADER: &str = "ce_partitionkey";
/// Deliveries of the message before it was put back through a retry queue
/// (added by a delayed nack; the broker's `x-delivery-count` counts the
/// deliveries of this copy).
pub const DELIVERIES_HEADER: &str = "x-event-bus-deliveries";
/// The quorum queue's count of earlier deliveries of this copy.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Persistent messages (AMQP delivery mode 2).
pub const PERSISTENT: u8 = 2;

/// The CloudEvents header names in the order received headers are given.
const CE_ORDER: [&str; 10] = [
    ce::CE_SPECVERSION,
    ce::CONTENT_TYPE,
    ce::CE_DATACONTENTTYPE,
    ce::CE_TYPE,
    ce::CE_ID,
    ce::CE_SOURCE,
    ce::CE_TIME,
    ce::CE_MINORVERSION,
    ce::SOURCEHOST,
    ce::SOURCELIB,
];

/// An AMQP message ready to publish.
#[derive(Debug, Clone)]
pub struct AmqpMessage {
    /// The exchange (the full topic).
    pub exchange: ShortString,
    /// The routing key ([`names::routing_key`]).
    pub routing_key: ShortString,
    /// Properties and headers.
    pub properties: BasicProperties,
    /// The payload.
    pub body: Vec<u8>,
}

/// A received AMQP message as the core's raw message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Key, headers, body and timestamp.
    pub raw: RawMessage,
    /// Deliveries so far, this one included (1 for the first).
    pub attempt: u32,
}

/// Whether a header is the broker's or this backend's bookkeeping, not a
/// header of the message.
fn is_bookkeeping(name: &str) -> bool {
    name == DELIVERIES_HEADER
        || name == DELIVERY_COUNT_HEADER
        || name == KEY_HEADER
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// Bytes of a message as `max_message_bytes` counts them: header names and
/// values (the key header is the key) and the body.
pub fn size(message: &AmqpMessage) -> usize {
    let headers = message.properties.headers().as_ref().map_or(0, |t| {
        t.inner()
            .iter()
            .map(|(k, v)| {
                k.as_str().len()
                    + match v {
                        AMQPValue::LongString(s) => s.len(),
                        _ => 8,
                    }
            })
            .sum::<usize>()
    });
    headers + message.body.len()
}

/// An event as an AMQP message: the ten CloudEvents headers, the key header
/// and the AMQP properties `message_id` (event id), `content_type`
/// (`application/avro`), `timestamp` (event time, seconds), `type` (event
/// type), persistent.
pub fn event_to_amqp(message: &OutgoingMessage) -> Result<AmqpMessage, TransportError> {
    let raw = ce::cloudevent_message(message);
    let mut amqp = raw_to_amqp(&raw)?;
    let m = &message.metadata;
    let mut p = amqp
        .properties
        .with_message_id(ShortString::from(m.id.hyphenated().to_string()));
    if let Ok(t) = ShortString::try_new(m.event_type.clone()) {
        p = p.with_type(t);
    }
    if let Ok(secs) = u64::try_from(m.time.timestamp()) {
        p = p.with_timestamp(secs);
    }
    amqp.properties = p;
    Ok(amqp)
}

/// A raw message (dead letters, requeues) as an AMQP message, headers and
/// key byte for byte. Two headers of one name cannot travel (AMQP headers
/// are a table), nor names over 255 bytes: both are `Rejected`.
pub fn raw_to_amqp(raw: &RawMessage) -> Result<AmqpMessage, TransportError> {
    let mut table = FieldTable::default();
    let mut seen = HashSet::new();
    for (name, value) in &raw.headers {
        if !seen.insert(name.as_str()) {
            return Err(rejected(format!(
                "header {name:?} appears twice: AMQP headers are a table, each name once"
            )));
        }
        if is_bookkeeping(name) {
            return Err(rejected(format!("header {name:?} is reserved by the RabbitMQ backend")));
        }
        let key = ShortString::try_new(name.clone())
            .map_err(|_| rejected(format!("header name {:?}… is over 255 bytes", truncate(name))))?;
        table.insert(key, AMQPValue::LongString(LongString::from(value.clone())));
    }
    if let Some(k) = &raw.key {
        table.insert(KEY_HEADER.into(), AMQPValue::LongString(LongString::from(k.clone())));
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(table)
        .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or(0));
    if let Some(ct) = raw
        .header_str(ce::CONTENT_TYPE)
        .and_then(|c| ShortString::try_new(c).ok())
    {
        properties = properties.with_content_type(ct);
    }
    Ok(AmqpMessage {
        exchange: names::exchange(&raw.topic)?,
        routing_key: names::routing_key(raw.key.as_deref()),
        properties,
        body: raw.value.clone(),
    })
}

fn truncate(name: &str) -> &str {
    let mut end = name.len().min(40);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A header value as bytes: strings and byte arrays as they are, numbers,
/// booleans and timestamps as text; tables, arrays, decimals and void are
/// not headers the event bus can use (`None`, logged).
fn value_bytes(name: &str, value: &AMQPValue) -> Option<Vec<u8>> {
    let text = match value {
        AMQPValue::LongString(s) => return Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => return Some(s.as_str().as_bytes().to_vec()),
        AMQPValue::ByteArray(b) => return Some(b.as_slice().to_vec()),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(i) => i.to_string(),
        AMQPValue::ShortShortUInt(i) => i.to_string(),
        AMQPValue::ShortInt(i) => i.to_string(),
        AMQPValue::ShortUInt(i) => i.to_string(),
        AMQPValue::LongInt(i) => i.to_string(),
        AMQPValue::LongUInt(i) => i.to_string(),
        AMQPValue::LongLongInt(i) => i.to_string(),
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(f) => f.to_string(),
        AMQPValue::Timestamp(t) => t.to_string(),
        other => {
            tracing::debug!(header = name, value = ?other, "AMQP header of a type the event bus cannot use; ignored");
            return None;
        }
    };
    Some(text.into_bytes())
}

/// A count in a header, whatever integer type or text a producer used.
fn count(value: Option<&AMQPValue>) -> u32 {
    let n: i128 = match value {
        Some(AMQPValue::ShortShortInt(i)) => (*i).into(),
        Some(AMQPValue::ShortShortUInt(i)) => (*i).into(),
        Some(AMQPValue::ShortInt(i)) => (*i).into(),
        Some(AMQPValue::ShortUInt(i)) => (*i).into(),
        Some(AMQPValue::LongInt(i)) => (*i).into(),
        Some(AMQPValue::LongUInt(i)) => (*i).into(),
        Some(AMQPValue::LongLongInt(i)) => (*i).into(),
        Some(v) => value_bytes("count", v)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        None => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// A received AMQP message as the core's raw message: headers of the
/// message (bookkeeping left out) with the ten CloudEvents headers first in
/// their order, then the others by name; the key from [`KEY_HEADER`], else
/// the routing key (of a message routed by a topic exchange, not the default
/// one) unless it is [`names::NO_KEY`]; the timestamp property. Never fails:
/// what cannot be used is left out for the core to judge.
pub fn from_amqp(
    topic: &str,
    exchange: &str,
    routing_key: &str,
    properties: &BasicProperties,
    body: Vec<u8>,
) -> Received {
    let empty = FieldTable::default();
    let table = properties.headers().as_ref().unwrap_or(&empty).inner();
    let mut headers = Vec::with_capacity(table.len());
    for name in CE_ORDER {
        if let Some(v) = table.get(name).and_then(|v| value_bytes(name, v)) {
            headers.push((name.to_string(), v));
        }
    }
    for (name, value) in table {
        let name = name.as_str();
        if CE_ORDER.contains(&name) || is_bookkeeping(name) {
            continue;
        }
        if let Some(v) = value_bytes(name, value) {
            headers.push((name.to_string(), v));
        }
    }
    let key = match table.get(KEY_HEADER).and_then(|v| value_bytes(KEY_HEADER, v)) {
        Some(k) => Some(k),
        None if !exchange.is_empty() && routing_key != names::NO_KEY => Some(routing_key.as_bytes().to_vec()),
        None => None,
    };
    let timestamp: Option<DateTime<Utc>> = properties
        .timestamp()
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| Utc.timestamp_opt(s, 0).single());
    let before = count(table.get(DELIVERIES_HEADER));
    let redelivered = count(table.get(DELIVERY_COUNT_HEADER));
    Received {
        raw: RawMessage {
            topic: topic.to_string(),
            key,
            headers,
            value: body,
            timestamp,
        },
        attempt: before.saturating_add(redelivered).saturating_add(1),
    }
}

/// The properties of a copy sent through the default exchange (a retry
/// queue, a group queue taking the backlog): the same, the broker's
/// bookkeeping removed, the key kept in [`KEY_HEADER`] (the routing key
/// changes on the way), and [`DELIVERIES_HEADER`] set to the deliveries so
/// far when given.
pub fn for_copy(properties: &BasicProperties, key: Option<&[u8]>, deliveries: Option<u32>) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Some(old) = properties.headers() {
        for (k, v) in old.inner() {
            if !is_bookkeeping(k.as_str()) || k.as_str() == KEY_HEADER {
                table.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(k) = key {
        table.insert(KEY_HEADER.into(), AMQPValue::LongString(LongString::from(k.to_vec())));
    }
    if let Some(n) = deliveries {
        table.insert(DELIVERIES_HEADER.into(), AMQPValue::LongLongInt(i64::from(n)));
    } else if let Some(n) = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(DELIVERIES_HEADER))
    {
        table.insert(DELIVERIES_HEADER.into(), n.clone());
    }
    properties.clone().with_headers(table).with_delivery_mode(PERSISTENT)
}

/// A message's position for logs and for the core's count of failed
/// attempts, the same for every delivery of it (retry copies included):
/// the queue and the message id property, else `ce_id`, else a hash of the
/// body. Quorum queues have no offsets.
pub fn position(queue: &str, properties: &BasicProperties, raw: &RawMessage) -> String {
    if let Some(id) = properties.message_id() {
        return format!("{queue} message {id}");
    }
    if let Some(id) = raw.header_str(ce::CE_ID) {
        return format!("{queue} event {id}");
    }
    format!("{queue} body {:016x}", names::fnv1a(&raw.value))
}

#[cfg(test)]
mod tests;
