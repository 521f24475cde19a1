//! The message key: the value at `event_key_field` with its Avro sub-schema.

use serde_json::{json, Map, Value as Json};

use crate::avro::encode::{write_bytes, write_long};
use crate::event::EventType;
use crate::pyjson::{dumps, DumpOptions};
use crate::types::{DataType, FieldDef};
use crate::value::{Record, Value};

/// A key extracted from event data.
#[derive(Debug, Clone, PartialEq)]
pub struct EventKey {
    /// The value (a primitive, or a custom type as its string).
    pub value: Value,
    /// The name of the key's field (the last segment of the path).
    pub field: &'static str,
    /// The Avro type of the value: `string`, `long`, `boolean` or `double`;
    /// the Kafka key subject is `<full topic>-<avro_type>`.
    pub avro_type: &'static str,
}

impl EventKey {
    /// The key schema: the field definition itself, e.g.
    /// `{"name": "username", "type": "string"}` (what Python registers).
    pub fn schema(&self) -> Json {
        let mut schema = Map::new();
        schema.insert("name".into(), json!(self.field));
        schema.insert("type".into(), json!(self.avro_type));
        Json::Object(schema)
    }

    /// The key schema text as Python registers it (sorted keys).
    pub fn schema_string(&self) -> String {
        dumps(
            &self.schema(),
            DumpOptions {
                sort_keys: true,
                indent: None,
            },
        )
    }

    /// The key value Avro-encoded with its schema (no framing).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match &self.value {
            Value::String(s) => write_bytes(&mut out, s.as_bytes()),
            Value::Long(i) => write_long(&mut out, *i),
            Value::Boolean(b) => out.push(u8::from(*b)),
            Value::Double(f) => out.extend_from_slice(&f.to_le_bytes()),
            _ => {}
        }
        out
    }

    /// The key as text (for brokers whose keys are strings).
    pub fn as_text(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            other => crate::value::to_json_string(other),
        }
    }
}

/// A key that cannot be extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The path does not name a field of the event type.
    #[error("event_key_field '{path}' does not exist in {event_type}: no field '{part}'")]
    NoSuchField {
        /// Event type.
        event_type: String,
        /// The dotted path.
        path: String,
        /// The segment that failed.
        part: String,
    },
    /// The path ends at a record, a list, a map or an optional field.
    #[error("event_key_field '{path}' of {event_type} must end at a non-optional primitive field, not {found}")]
    NotAPrimitive {
        /// Event type.
        event_type: String,
        /// The dotted path.
        path: String,
        /// What it ends at.
        found: String,
    },
    /// The data has no value at the path.
    #[error("could not extract key from event; lookup in {path} failed at '{part}'")]
    Missing {
        /// The dotted path.
        path: String,
        /// The segment that failed.
        part: String,
    },
}

/// Check that `path` names a key-able field of `event_type`: it must exist
/// and end at a non-optional primitive (or custom string) field. Python
/// accepts other paths and then fails on every send; this checks at start-up.
pub fn check_key_path<'a>(event_type: &'a EventType, path: &str) -> Result<&'a FieldDef, KeyError> {
    let mut fields: &[FieldDef] = event_type.fields();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(field) = fields.iter().find(|f| f.name == part) else {
            return Err(KeyError::NoSuchField {
                event_type: event_type.name().to_string(),
                path: path.to_string(),
                part: part.to_string(),
            });
        };
        let not_primitive = |found: String| KeyError::NotAPrimitive {
            event_type: event_type.name().to_string(),
            path: path.to_string(),
            found,
        };
        if parts.peek().is_none() {
            return match &field.ty {
                _ if field.optional => Err(not_primitive(format!("optional {}", field.ty))),
                DataType::Boolean | DataType::Long | DataType::Double | DataType::String | DataType::Custom(_) => {
                    Ok(field)
                }
                other => Err(not_primitive(other.to_string())),
            };
        }
        match &field.ty {
            DataType::Record(rt) if !field.optional => fields = &rt.fields,
            other => {
                return Err(KeyError::NoSuchField {
                    event_type: event_type.name().to_string(),
                    path: path.to_string(),
                    part: format!("{part} is {other}, which has no fields"),
                })
            }
        }
    }
    Err(KeyError::NoSuchField {
        event_type: event_type.name().to_string(),
        path: path.to_string(),
        part: String::new(),
    })
}

/// Follow the dotted `event_key_field` path in the data and return the value
/// with its Avro sub-schema (the Kafka key needs both).
///
/// ```
/// use openedx_events::{catalog, config::extract_event_key};
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = t.data_from_json(&serde_json::json!({"user": {"id": 123, "is_active": true,
///     "pii": {"username": "foobob", "email": "bob@foo.example", "name": "Bob Foo"}}})).unwrap();
/// let key = extract_event_key(t, &data, "user.pii.username").unwrap();
/// assert_eq!(key.schema_string(), r#"{"name": "username", "type": "string"}"#);
/// assert_eq!(key.encode(), b"\x0cfoobob");
/// assert_eq!(extract_event_key(t, &data, "user.id").unwrap().avro_type, "long");
/// ```
pub fn extract_event_key(event_type: &EventType, data: &Record, path: &str) -> Result<EventKey, KeyError> {
    let field = check_key_path(event_type, path)?;
    let mut current: Option<&Value> = None;
    for part in path.split('.') {
        let next = match current {
            None => data.get(part),
            Some(Value::Record(r)) => r.get(part),
            Some(_) => None,
        };
        match next {
            Some(v) => current = Some(v),
            None => {
                return Err(KeyError::Missing {
                    path: path.to_string(),
                    part: part.to_string(),
                })
            }
        }
    }
    let avro_type = match &field.ty {
        DataType::Boolean => "boolean",
        DataType::Long => "long",
        DataType::Double => "double",
        _ => "string",
    };
    let value = current.cloned().unwrap_or(Value::Null);
    let matches = matches!(
        (avro_type, &value),
        ("boolean", Value::Boolean(_))
            | ("long", Value::Long(_))
            | ("double", Value::Double(_))
            | ("string", Value::String(_))
    );
    if !matches {
        return Err(KeyError::Missing {
            path: path.to_string(),
            part: format!("value is {}, expected {avro_type}", value.kind()),
        });
    }
    Ok(EventKey {
        value,
        field: crate::value::intern(&field.name),
        avro_type,
    })
}
