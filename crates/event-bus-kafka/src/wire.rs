//! The Kafka message of an event, byte for byte as edx-event-bus-kafka
//! writes it, and the event of a received message.
//!
//! - topic: the full topic;
//! - key: the `event_key_field` value, Avro-encoded with its field schema and
//!   framed with the id of that schema, registered under
//!   `<full topic>-<avro type>` (e.g. `dev-user-login-string`);
//! - value: the schemaless Avro body framed with the id of the event type's
//!   schema, registered under `<full topic>-<event type>.CloudEvent`;
//! - headers: the ten CloudEvents headers in the Python order. Never
//!   `__key_schema_id`/`__value_schema_id`: newer Confluent deserializers
//!   would read the schema id from them instead of the payload.

use openedx_events::bus::transport::{IncomingEvent, OutgoingMessage, RawMessage, TransportError};
use openedx_events::bus::wire::{cloudevent_headers, cloudevent_incoming};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::framing::{frame, unframe};
use crate::registry::{RegistryError, SchemaRegistry};

/// The subject of a key schema: `<full topic>-<avro type>` (the Python
/// client's TopicRecordNameStrategy falls back to the primitive type name).
///
/// ```
/// assert_eq!(event_bus_kafka::wire::key_subject("dev-user-login", "string"), "dev-user-login-string");
/// ```
pub fn key_subject(full_topic: &str, avro_type: &str) -> String {
    format!("{full_topic}-{avro_type}")
}

/// The subject of a value schema: `<full topic>-<event type>.CloudEvent`.
///
/// ```
/// assert_eq!(
///     event_bus_kafka::wire::value_subject("dev-user-login", "org.openedx.learning.auth.session.login.completed.v1"),
///     "dev-user-login-org.openedx.learning.auth.session.login.completed.v1.CloudEvent"
/// );
/// ```
pub fn value_subject(full_topic: &str, event_type: &str) -> String {
    format!("{full_topic}-{event_type}.CloudEvent")
}

/// An event as a Kafka record: what `publish` sends.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRecord {
    /// The full topic.
    pub topic: String,
    /// The framed key (absent when the event has no key field).
    pub key: Option<Vec<u8>>,
    /// The framed value.
    pub value: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The subject the key schema is registered under.
    pub key_subject: Option<String>,
    /// The subject the value schema is registered under.
    pub value_subject: String,
}

/// Build the record of an event, registering its key and value schemas
/// (key first, as the Python producer does).
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use openedx_events::bus::EventBusProducer;
/// use openedx_events::{catalog, metadata::EventsMetadata};
/// use event_bus_kafka::{registry::SchemaRegistry, wire::build_record};
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = t.data_from_json(&serde_json::json!({"user": {"id": 123, "is_active": true,
///     "pii": {"username": "foobob", "email": "bob@foo.example", "name": "Bob Foo"}}})).unwrap();
/// let message = EventBusProducer::noop()
///     .prepare(t, "dev-user-login", Some("user.pii.username"), &data, &EventsMetadata::new(t.name(), 0))
///     .unwrap();
/// let registry = SchemaRegistry::new("http://127.0.0.1:8081", None, Duration::from_secs(10)).unwrap();
/// let record = build_record(&message, &registry).await.unwrap();
/// assert_eq!(record.key_subject.as_deref(), Some("dev-user-login-string"));
/// # });
/// ```
pub async fn build_record(message: &OutgoingMessage, registry: &SchemaRegistry) -> Result<KafkaRecord, TransportError> {
    let schema = message.event_type.avro().map_err(|e| {
        TransportError::new(
            openedx_events::bus::transport::TransportErrorKind::Rejected,
            e.to_string(),
        )
    })?;
    let (key, key_subject) = match &message.key {
        Some(k) => {
            let subject = key_subject(&message.topic, k.avro_type);
            let id = registry.register(&subject, &k.schema_string()).await?;
            (Some(frame(id, &k.encode())), Some(subject))
        }
        None => (None, None),
    };
    let value_subject = value_subject(&message.topic, message.event_type.name());
    let id = registry.register(&value_subject, &schema.canonical).await?;
    Ok(KafkaRecord {
        topic: message.topic.clone(),
        key,
        value: frame(id, &message.body),
        headers: cloudevent_headers(&message.metadata),
        key_subject,
        value_subject,
    })
}

/// Why a received message could not be turned into an event.
#[derive(Debug)]
pub enum DecodeFailure {
    /// The message itself is unusable: deliver it with this reason.
    Unusable(String),
    /// The registry could not be asked (down, slow): try again later.
    Transient(RegistryError),
}

/// The event of a received message: the metadata from the headers, the
/// writer schema from the registry (by the id in the value frame), the body
/// after the frame.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use openedx_events::bus::transport::RawMessage;
/// use event_bus_kafka::registry::SchemaRegistry;
/// use event_bus_kafka::wire::{decode_incoming, DecodeFailure};
/// let registry = SchemaRegistry::new("http://127.0.0.1:8081", None, Duration::from_secs(10)).unwrap();
/// let raw = RawMessage { topic: "dev-user-login".into(), value: b"garbage".to_vec(), ..Default::default() };
/// match decode_incoming(&raw, &registry).await {
///     Ok(event) => println!("{}", event.event_type),
///     Err(DecodeFailure::Unusable(reason)) => println!("deliver with reason: {reason}"),
///     Err(DecodeFailure::Transient(e)) => println!("registry down, try later: {e}"),
/// }
/// # });
/// ```
pub async fn decode_incoming(raw: &RawMessage, registry: &SchemaRegistry) -> Result<IncomingEvent, DecodeFailure> {
    let mut incoming = cloudevent_incoming(raw).map_err(DecodeFailure::Unusable)?;
    let (id, body) = unframe(&raw.value).map_err(|e| DecodeFailure::Unusable(e.to_string()))?;
    let writer = match registry.schema_by_id(id).await {
        Ok(s) => s,
        Err(e) if e.is_transient() => return Err(DecodeFailure::Transient(e)),
        Err(e) => return Err(DecodeFailure::Unusable(e.to_string())),
    };
    incoming.body = body.to_vec();
    incoming.writer_schema = Some(writer);
    Ok(incoming)
}

/// A message taken from Kafka as the core holds it (topic, key, headers,
/// value and broker timestamp).
pub(crate) fn raw_message(m: &BorrowedMessage<'_>) -> RawMessage {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|hdr| (hdr.key.to_string(), hdr.value.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    RawMessage {
        topic: m.topic().to_string(),
        key: m.key().map(<[u8]>::to_vec),
        headers,
        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp: m
            .timestamp()
            .to_millis()
            .and_then(chrono::DateTime::from_timestamp_millis),
    }
}
