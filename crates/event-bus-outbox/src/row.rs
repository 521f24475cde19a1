//! An outbox row: an [`OutgoingMessage`] split into columns, and back.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use openedx_events::bus::transport::OutgoingMessage;
use openedx_events::config::EventKey;
use openedx_events::metadata::{parse_id, EventsMetadata, SourceLib};
use openedx_events::signal::Registry;
use openedx_events::value::{intern, Value};

/// How many partitions the keys are hashed into: the rows of the
/// `<table>_partitions` table (the migration creates exactly these).
pub const PARTITIONS: i16 = 64;

/// The columns of one row, as written by `enqueue` and read by the relay.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the column names say it; not nameable outside the crate
pub struct OutboxRow {
    pub id: i64,
    pub partition_no: i16,
    pub topic: String,
    pub event_type: String,
    pub key_field: Option<String>,
    pub key_type: Option<String>,
    pub key_text: Option<String>,
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub minorversion: i64,
    pub source: String,
    pub sourcehost: String,
    pub sourcelib: String,
    pub body: Vec<u8>,
}

/// The key as stored text: exact for every key type (`f64`'s `Display`
/// writes the shortest text that parses back to the same bits).
fn key_text(key: &EventKey) -> String {
    match &key.value {
        Value::String(s) => s.clone(),
        Value::Long(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Double(f) => f.to_string(),
        other => openedx_events::value::to_json_string(other),
    }
}

/// The key rebuilt from its columns.
fn parse_key(field: &str, kind: &str, text: &str) -> Result<EventKey, String> {
    let (value, avro_type) = match kind {
        "string" => (Value::String(text.to_string()), "string"),
        "long" => (
            Value::Long(text.parse().map_err(|e| format!("key {text:?} is not a long: {e}"))?),
            "long",
        ),
        "boolean" => (
            Value::Boolean(
                text.parse()
                    .map_err(|e| format!("key {text:?} is not a boolean: {e}"))?,
            ),
            "boolean",
        ),
        "double" => (
            Value::Double(text.parse().map_err(|e| format!("key {text:?} is not a double: {e}"))?),
            "double",
        ),
        other => return Err(format!("unknown key type {other:?}")),
    };
    Ok(EventKey {
        value,
        field: intern(field),
        avro_type,
    })
}

/// FNV-1a, 64 bits: stable across processes, versions and platforms (the
/// partition of a key must never change while rows of it are pending).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The partition of a (full topic, key): every row of one key lands in
/// the same one. No key is a key of its own (the topic's keyless events
/// keep their order too).
pub(crate) fn partition_of(topic: &str, key: Option<(&str, &str)>) -> i16 {
    let h = match key {
        Some((kind, text)) => fnv1a(&[topic.as_bytes(), b"k", kind.as_bytes(), text.as_bytes()]),
        None => fnv1a(&[topic.as_bytes(), b"-"]),
    };
    // The remainder is below PARTITIONS, which fits an i16.
    i16::try_from(h % PARTITIONS.unsigned_abs() as u64).unwrap_or(0)
}

impl OutboxRow {
    /// The row for a prepared message (its id is given by the database).
    pub fn from_message(message: &OutgoingMessage) -> OutboxRow {
        let key = message
            .key
            .as_ref()
            .map(|k| (k.field.to_string(), k.avro_type.to_string(), key_text(k)));
        let partition_no = partition_of(
            &message.topic,
            key.as_ref().map(|(_, kind, text)| (kind.as_str(), text.as_str())),
        );
        let m = &message.metadata;
        let (key_field, key_type, key_text) = match key {
            Some((f, k, t)) => (Some(f), Some(k), Some(t)),
            None => (None, None, None),
        };
        OutboxRow {
            id: 0,
            partition_no,
            topic: message.topic.clone(),
            event_type: message.event_type.name().to_string(),
            key_field,
            key_type,
            key_text,
            event_id: m.id.hyphenated().to_string(),
            event_time: m.time,
            minorversion: i64::from(m.minorversion),
            source: m.source.clone(),
            sourcehost: m.sourcehost.clone(),
            sourcelib: m.sourcelib.to_string(),
            body: message.body.clone(),
        }
    }

    /// What orders the row: its (topic, key).
    pub fn order_key(&self) -> (&str, Option<&str>, Option<&str>) {
        (&self.topic, self.key_type.as_deref(), self.key_text.as_deref())
    }

    /// The message again, with the event type from `registry`.
    pub fn to_message(&self, registry: &Registry) -> Result<OutgoingMessage, String> {
        let signal = registry
            .get(&self.event_type)
            .ok_or_else(|| format!("event type {:?} is not in the registry", self.event_type))?;
        let key = match (&self.key_field, &self.key_type, &self.key_text) {
            (Some(f), Some(k), Some(t)) => Some(parse_key(f, k, t)?),
            (None, None, None) => None,
            _ => return Err("key_field, key_type and key_text must be all set or all null".into()),
        };
        let sourcelib: SourceLib = if self.sourcelib.is_empty() {
            SourceLib(Vec::new())
        } else {
            self.sourcelib.parse().map_err(|e| format!("{e}"))?
        };
        let metadata = EventsMetadata {
            event_type: self.event_type.clone(),
            id: parse_id(&self.event_id).map_err(|e| e.to_string())?,
            minorversion: u32::try_from(self.minorversion)
                .map_err(|_| format!("minorversion {} is out of range", self.minorversion))?,
            source: self.source.clone(),
            sourcehost: self.sourcehost.clone(),
            time: self.event_time,
            sourcelib,
        };
        Ok(OutgoingMessage {
            topic: self.topic.clone(),
            event_type: Arc::clone(signal.event_type()),
            metadata,
            key,
            body: self.body.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openedx_events::bus::{memory::MemoryBroker, EventBusProducer};
    use openedx_events::{catalog, sample};

    #[test]
    fn a_message_survives_the_row_exactly() {
        let producer = EventBusProducer::new(Arc::new(MemoryBroker::new().transport()), Some("dev".into()));
        let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
        let data = sample::event_data(t, &mut sample::rng(7));
        for key_field in [Some("user.id"), Some("user.pii.username"), Some("user.is_active"), None] {
            let metadata = EventsMetadata::new(t.name(), 3);
            let m = producer.prepare(t, "user-login", key_field, &data, &metadata).unwrap();
            let row = OutboxRow::from_message(&m);
            let back = row.to_message(&Registry::global()).unwrap();
            assert_eq!(back.topic, "dev-user-login");
            assert_eq!(back.metadata, m.metadata);
            assert_eq!(back.key, m.key);
            assert_eq!(back.body, m.body);
            assert_eq!(back.event_type.name(), t.name());
        }
    }

    #[test]
    fn doubles_keep_their_bits_and_partitions_are_stable() {
        for f in [0.1, -0.0, 1e300, f64::MIN_POSITIVE, 1.0 / 3.0] {
            let k = EventKey {
                value: Value::Double(f),
                field: "x",
                avro_type: "double",
            };
            let back = parse_key("x", "double", &key_text(&k)).unwrap();
            assert!(matches!(back.value, Value::Double(g) if g.to_bits() == f.to_bits()));
        }
        // Pinned: the documented formula, and a key's partition never moves.
        // (Values computed independently, in Python, from the crate docs' formula.)
        assert_eq!(fnv1a(&[b"a"]), 0x089b_c907_b544_c769);
        assert_eq!(partition_of("dev-user-login", Some(("long", "42"))), 33);
        assert_eq!(partition_of("dev-user-login", None), 57);
        assert_eq!(
            partition_of("t", Some(("long", "1"))),
            partition_of("t", Some(("long", "1")))
        );
        assert!((0..PARTITIONS).contains(&partition_of("t", None)));
        let spread: std::collections::HashSet<i16> = (0..1000)
            .map(|i| partition_of("t", Some(("long", &i.to_string()))))
            .collect();
        assert_eq!(spread.len(), PARTITIONS as usize);
    }
}
