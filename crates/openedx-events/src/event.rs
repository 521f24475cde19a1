//! Event types: a name, a minor version and the payload's typed fields, with
//! their Avro schema and codec.

use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;

use crate::avro::derive::{event_schema_json, SchemaDeriveError};
use crate::avro::json::{from_json, JsonError};
use crate::avro::validate::validate_record;
use crate::avro::{self, DecodeError, EncodeError, ResolveError, Schema};
use crate::data::DataError;
use crate::pyjson::{dumps, DumpOptions};
use crate::types::FieldDef;
use crate::value::{Record, Value};

/// One event type (a "signal" definition in openedx-events).
///
/// ```
/// use openedx_events::event::EventType;
/// use openedx_events::types::{DataType, FieldDef};
/// let t = EventType::new("org.example.ping.sent.v1", 0, vec![FieldDef::required("key", DataType::String)]);
/// assert_eq!(t.avro().unwrap().canonical,
///     r#"{"doc": "Avro Event Format for CloudEvents created with openedx_events/schema", "fields": [{"name": "key", "type": "string"}], "name": "CloudEvent", "namespace": "org.example.ping.sent.v1", "type": "record"}"#);
/// ```
#[derive(Debug)]
pub struct EventType {
    name: String,
    minor_version: u32,
    fields: Vec<FieldDef>,
    unserializable: bool,
    avro: OnceLock<Result<Arc<EventSchema>, SchemaDeriveError>>,
}

/// The Avro schema of an event type in its three forms.
#[derive(Debug, Clone)]
pub struct EventSchema {
    /// As openedx-events builds it (insertion order).
    pub json: Json,
    /// Parsed, for the codec.
    pub schema: Schema,
    /// `json.dumps(schema, sort_keys=True)`: the text the Kafka bus registers.
    pub canonical: String,
}

impl EventSchema {
    /// The `.avsc` file text, as `generate_avro_schemas` writes it (indent 2,
    /// no trailing newline).
    pub fn avsc(&self) -> String {
        dumps(
            &self.json,
            DumpOptions {
                sort_keys: false,
                indent: Some(2),
            },
        )
    }
}

/// Errors of the event codec, naming the event type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// The event type is marked as not serializable.
    #[error("event type {0} cannot be serialized for the event bus (known unserializable)")]
    Unserializable(String),
    /// The payload types have no Avro schema.
    #[error("event type {0}: {1}")]
    Schema(String, SchemaDeriveError),
    /// Data that does not fit the schema.
    #[error("event type {0}: {1}")]
    Encode(String, EncodeError),
    /// Bytes that do not decode.
    #[error("event type {0}: {1}")]
    Decode(String, DecodeError),
    /// Bytes from another schema that cannot be resolved.
    #[error("event type {0}: {1}")]
    Resolve(String, ResolveError),
    /// JSON that does not fit the schema.
    #[error("event type {0}: {1}")]
    Json(String, JsonError),
    /// Values that are not what the payload types say (a bad key, a bad date).
    #[error("event type {0}: {1}")]
    Data(String, DataError),
    /// The top-level value is not a record.
    #[error("event type {0}: event data must be a record, found {1}")]
    NotARecord(String, &'static str),
}

impl EventType {
    /// A new event type.
    pub fn new(name: impl Into<String>, minor_version: u32, fields: Vec<FieldDef>) -> Self {
        EventType {
            name: name.into(),
            minor_version,
            fields,
            unserializable: false,
            avro: OnceLock::new(),
        }
    }

    /// Mark as unable to travel on the bus (like `KNOWN_UNSERIALIZABLE_SIGNALS`).
    pub fn with_unserializable(mut self, unserializable: bool) -> Self {
        self.unserializable = unserializable;
        self
    }

    /// The event type name, e.g. `org.openedx.learning.course.enrollment.created.v1`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The minor version, carried in metadata.
    pub fn minor_version(&self) -> u32 {
        self.minor_version
    }

    /// The payload arguments in order.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// Whether the event type may travel on the bus.
    pub fn is_bus_capable(&self) -> bool {
        !self.unserializable
    }

    /// The architecture subdomain (`learning`, `content_authoring`, ...): the
    /// third component of an `org.openedx.*` name.
    pub fn subdomain(&self) -> Option<&str> {
        self.name.split('.').nth(2)
    }

    /// The Avro schema (derived once).
    pub fn avro(&self) -> Result<&Arc<EventSchema>, EventError> {
        if self.unserializable {
            return Err(EventError::Unserializable(self.name.clone()));
        }
        let derived = self.avro.get_or_init(|| {
            let json = event_schema_json(&self.name, &self.fields)?;
            // Derived schemas always parse: they are built by the rules above.
            let schema =
                Schema::parse(&json).map_err(|e| SchemaDeriveError::Unsupported(e.to_string(), self.name.clone()))?;
            let canonical = dumps(
                &json,
                DumpOptions {
                    sort_keys: true,
                    indent: None,
                },
            );
            Ok(Arc::new(EventSchema {
                json,
                schema,
                canonical,
            }))
        });
        derived
            .as_ref()
            .map_err(|e| EventError::Schema(self.name.clone(), e.clone()))
    }

    /// Encode payload data (schemaless Avro).
    pub fn encode_data(&self, data: &Record) -> Result<Vec<u8>, EventError> {
        let mut out = Vec::with_capacity(256);
        self.encode_data_into(data, &mut out)?;
        Ok(out)
    }

    /// Encode payload data, appending to `out`.
    pub fn encode_data_into(&self, data: &Record, out: &mut Vec<u8>) -> Result<(), EventError> {
        let schema = &self.avro()?.schema;
        let crate::avro::Schema::Record(rs) = schema else {
            return Err(EventError::NotARecord(self.name.clone(), schema.type_name()));
        };
        avro::encode::encode_record_fields(rs, data, out).map_err(|e| EventError::Encode(self.name.clone(), e))
    }

    /// Decode payload data written with this event type's schema; trailing
    /// bytes are an error.
    pub fn decode_data(&self, bytes: &[u8]) -> Result<Record, EventError> {
        let v = avro::decode(&self.avro()?.schema, bytes).map_err(|e| EventError::Decode(self.name.clone(), e))?;
        self.as_record(v)
    }

    /// Decode payload data and report how many trailing bytes were ignored
    /// (fields a newer producer appended, as fastavro tolerates).
    pub fn decode_data_prefix(&self, bytes: &[u8]) -> Result<(Record, usize), EventError> {
        let (v, used) =
            avro::decode_prefix(&self.avro()?.schema, bytes).map_err(|e| EventError::Decode(self.name.clone(), e))?;
        Ok((self.as_record(v)?, bytes.len() - used))
    }

    /// Decode payload data written with another (writer) schema.
    pub fn decode_data_from(&self, writer: &Schema, bytes: &[u8]) -> Result<Record, EventError> {
        let reader = &self.avro()?.schema;
        let v = if writer == reader {
            avro::decode(reader, bytes).map_err(|e| EventError::Decode(self.name.clone(), e))?
        } else {
            avro::decode_resolved(writer, reader, bytes).map_err(|e| EventError::Resolve(self.name.clone(), e))?
        };
        self.as_record(v)
    }

    fn as_record(&self, v: Value) -> Result<Record, EventError> {
        match v {
            Value::Record(r) => Ok(r),
            other => Err(EventError::NotARecord(self.name.clone(), other.kind())),
        }
    }

    /// Payload data from its JSON record form, checked and canonicalised.
    ///
    /// ```
    /// use openedx_events::catalog;
    /// let t = catalog::get("org.openedx.content_authoring.xblock.published.v1").unwrap();
    /// let data = t.data_from_json(&serde_json::json!({"xblock_info": {
    ///     "usage_key": "block-v1:edX+D+R+type@html+block@b1", "block_type": "html"}})).unwrap();
    /// assert_eq!(hex::encode(t.encode_data(&data).unwrap()),
    ///     "46626c6f636b2d76313a6564582b442b522b747970654068746d6c2b626c6f636b4062310868746d6c00");
    /// ```
    pub fn data_from_json(&self, json: &Json) -> Result<Record, EventError> {
        let v = from_json(&self.avro()?.schema, json).map_err(|e| EventError::Json(self.name.clone(), e))?;
        let mut rec = self.as_record(v)?;
        self.validate_data(&mut rec)?;
        Ok(rec)
    }

    /// Check payload data against the payload types: every required argument
    /// present, opaque keys valid, datetimes and UUIDs parseable (rewritten in
    /// Python's text form).
    pub fn validate_data(&self, data: &mut Record) -> Result<(), EventError> {
        validate_record(&self.fields, data).map_err(|e| EventError::Data(self.name.clone(), e))
    }
}
