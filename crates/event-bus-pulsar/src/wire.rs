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
/// use event_bus_pulsar::mapping::pulsar_topic;
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
/// use event_bus_pulsar::mapping::PulsarRecord;
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
/// use event_bus_pulsar::mapping::millis;
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
/// use event_bus_pulsar::mapping::event_record;
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
/// use event_bus_pulsar::mapping::raw_record;
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
/// use event_bus_pulsar::mapping::headers_from_properties;
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
/// use event_bus_pulsar::mapping::{format_position, parse_position};
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
/// use event_bus_pulsar::mapping::{parse_position, position_cmp};
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
/// use event_bus_pulsar::mapping::delivery;
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
mod tests {
    use super::*;
    use openedx_events::bus::wire::cloudevent_headers;
    use openedx_events::catalog;
    use openedx_events::config::extract_event_key;
    use openedx_events::metadata::EventsMetadata;

    const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

    fn login_message(key_field: &str) -> (OutgoingMessage, EventsMetadata) {
        let t = catalog::get(LOGIN).unwrap();
        let data = t
            .data_from_json(&serde_json::json!({"user": {"id": 42, "is_active": true,
                "pii": {"username": "ünï", "email": "u@example.com", "name": "U"}}}))
            .unwrap();
        let mut metadata = EventsMetadata::new(t.name(), 3);
        metadata.time = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let message = OutgoingMessage {
            topic: "dev-user-login".into(),
            event_type: t.clone(),
            metadata: metadata.clone(),
            key: Some(extract_event_key(t, &data, key_field).unwrap()),
            body: t.encode_data(&data).unwrap(),
        };
        (message, metadata)
    }

    #[test]
    fn properties_are_the_ten_cloudevents_headers_in_order() {
        let (message, metadata) = login_message("user.pii.username");
        let record = event_record(&message).unwrap();
        let names: Vec<&str> = record.properties.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "ce_specversion",
                "content-type",
                "ce_datacontenttype",
                "ce_type",
                "ce_id",
                "ce_source",
                "ce_time",
                "ce_minorversion",
                "sourcehost",
                "sourcelib"
            ]
        );
        let expected: Vec<(String, String)> = cloudevent_headers(&metadata)
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(record.properties, expected);
        assert_eq!(record.properties[0].1, "1.0");
        assert_eq!(record.properties[1].1, "application/avro");
        assert_eq!(record.properties[4].1, metadata.id.hyphenated().to_string());
        assert_eq!(record.properties[6].1, "2026-03-04T05:06:07.123456+00:00");
        assert_eq!(record.properties[7].1, "3");
        assert_eq!(record.payload, message.body, "the payload is the schemaless Avro body");
    }

    #[test]
    fn partition_key_is_the_key_as_text() {
        let (message, _) = login_message("user.pii.username");
        let record = event_record(&message).unwrap();
        assert_eq!(record.partition_key.as_deref(), Some("ünï"));
        assert!(!record.partition_key_b64_encoded);
        let (message, _) = login_message("user.id");
        assert_eq!(event_record(&message).unwrap().partition_key.as_deref(), Some("42"));
        let (message, _) = login_message("user.is_active");
        assert_eq!(event_record(&message).unwrap().partition_key.as_deref(), Some("true"));
        let (mut message, _) = login_message("user.id");
        message.key = None;
        assert_eq!(event_record(&message).unwrap().partition_key, None);
    }

    #[test]
    fn event_time_is_the_metadata_time_in_ms() {
        let (message, metadata) = login_message("user.id");
        let record = event_record(&message).unwrap();
        assert_eq!(record.event_time, Some(1_772_600_767_123));
        assert_eq!(record.event_time, Some(metadata.time.timestamp_millis() as u64));
        let m = record.clone().into_message();
        assert_eq!(m.event_time, Some(1_772_600_767_123));
        assert_eq!(m.properties.len(), 10);
        assert_eq!(m.partition_key.as_deref(), Some("42"));
        assert_eq!(m.partition_key_b64_encoded, None);
    }

    #[test]
    fn topic_naming() {
        assert_eq!(
            pulsar_topic("public", "default", "user-login"),
            "persistent://public/default/user-login"
        );
        assert_eq!(
            pulsar_topic("openedx", "prod", "stage-user-login-dlq"),
            "persistent://openedx/prod/stage-user-login-dlq"
        );
        assert_eq!(
            pulsar_topic("x", "y", "non-persistent://a/b/c"),
            "non-persistent://a/b/c"
        );
    }

    #[test]
    fn round_trip_through_properties() {
        let (message, metadata) = login_message("user.id");
        let record = event_record(&message).unwrap();
        // Arrive in another order, as a hash map would send them.
        let mut kvs: Vec<KeyValue> = record
            .properties
            .iter()
            .rev()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        kvs.swap(0, 4);
        let md = pulsar::proto::MessageMetadata {
            properties: kvs,
            partition_key: record.partition_key.clone(),
            publish_time: 1_772_600_768_000,
            event_time: record.event_time,
            ..Default::default()
        };
        let id = MessageIdData {
            ledger_id: 5,
            entry_id: 9,
            ..Default::default()
        };
        let d = delivery("dev-user-login", &id, &md, &record.payload, DeliveryTag(1), 1);
        assert_eq!(
            d.raw.headers,
            cloudevent_headers(&metadata),
            "headers come back in the Python order"
        );
        assert_eq!(d.raw.key.as_deref(), Some(&b"42"[..]));
        assert_eq!(d.position, "5:9:-1:-1");
        assert_eq!(d.raw.timestamp.map(|t| t.timestamp_millis()), Some(1_772_600_768_000));
        let e = d.event.unwrap();
        assert_eq!(e.metadata, metadata);
        assert_eq!(e.event_type, LOGIN);
        assert_eq!(e.body, message.body);
    }

    #[test]
    fn binary_headers_and_keys_round_trip() {
        let raw = RawMessage {
            topic: "t".into(),
            key: Some(vec![0, 0xff, 1]),
            headers: vec![("x-garbage".into(), b"1".to_vec()), ("bin".into(), vec![0xc3, 0x28])],
            value: vec![0xff, 0xfe],
            timestamp: None,
        };
        let r = raw_record(&raw).unwrap();
        assert_eq!(r.properties[1].0, "base64:bin");
        let md = pulsar::proto::MessageMetadata {
            properties: r
                .properties
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            partition_key: r.partition_key.clone(),
            partition_key_b64_encoded: Some(r.partition_key_b64_encoded),
            ..Default::default()
        };
        let d = delivery("t", &MessageIdData::default(), &md, &r.payload, DeliveryTag(0), 1);
        assert_eq!(d.raw.key, raw.key);
        assert_eq!(d.raw.header("bin"), Some(&[0xc3, 0x28][..]));
        assert_eq!(d.raw.header("x-garbage"), Some(&b"1"[..]));
        assert!(d.event.is_err(), "no CloudEvents headers: the reason is delivered");
    }

    #[test]
    fn duplicate_or_reserved_headers_are_refused() {
        let mut raw = RawMessage {
            topic: "t".into(),
            headers: vec![("a".into(), b"1".to_vec()), ("a".into(), b"2".to_vec())],
            ..Default::default()
        };
        assert!(raw_record(&raw).unwrap_err().contains("more than once"));
        raw.headers = vec![("base64:a".into(), b"1".to_vec()), ("a".into(), b"2".to_vec())];
        let r = raw_record(&raw).expect("a header named with the prefix is escaped, not refused");
        assert_eq!(
            r.properties,
            vec![
                ("base64:base64:a".to_string(), "MQ==".to_string()),
                ("a".to_string(), "2".to_string())
            ]
        );
    }

    fn received(properties: &[(&str, &str)]) -> Delivery {
        let metadata = pulsar::proto::MessageMetadata {
            properties: properties
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        delivery("t", &MessageIdData::default(), &metadata, b"body", DeliveryTag(0), 1)
    }

    #[test]
    fn a_base64_property_that_is_not_base64_stays_a_text_header_and_can_be_dead_lettered() {
        let mut props: Vec<(String, String)> = openedx_events::bus::wire::cloudevent_headers(
            &openedx_events::metadata::EventsMetadata::new("org.openedx.learning.auth.session.login.completed.v1", 0),
        )
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
        props.push(("base64:trace".into(), "not base64 at all!".into()));
        props.push(("base64:bin".into(), "/wA=".into()));
        let refs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let d = received(&refs);
        assert!(d.event.is_ok(), "the message is still an event: {:?}", d.event.err());
        assert_eq!(d.raw.header("base64:trace"), Some(&b"not base64 at all!"[..]));
        assert_eq!(d.raw.header("bin"), Some(&[0xff, 0x00][..]));

        // Its dead letter can be published, and reads back the same.
        let letter = openedx_events::bus::dead_letter::dead_letter(
            &d,
            "t-dlq",
            "g",
            openedx_events::bus::dead_letter::Reason::ReceiverFailed,
            "boom",
            3,
        );
        let record = raw_record(&letter).expect("the dead letter is publishable");
        let back = received(
            &record
                .properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        let mut want = letter.headers.clone();
        want.sort();
        let mut got = back.raw.headers.clone();
        got.sort();
        assert_eq!(got, want, "every header comes back as it went");
    }

    #[test]
    fn positions_order_and_parse() {
        let a = parse_position("3:4").unwrap();
        let b = parse_position("3:4:-1:0").unwrap();
        let c = parse_position("3:5:-1:-1").unwrap();
        assert_eq!(position_cmp(&a, &b), std::cmp::Ordering::Less);
        assert_eq!(position_cmp(&b, &c), std::cmp::Ordering::Less);
        assert!(parse_position("x:1").is_err());
        assert!(parse_position("1:2:3:4:5").is_err());
    }
}
