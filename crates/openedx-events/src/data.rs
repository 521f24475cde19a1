//! Typed payloads: Rust structs for event data classes and event types.
//!
//! Data classes derive [`AvroData`] with `#[derive(AvroRecord)]`; event types
//! derive [`OpenEdxEvent`]. This is how the catalog is written, and how a
//! service defines its own events:
//!
//! ```
//! use openedx_events::data::{AvroData, OpenEdxEvent};
//! use openedx_events::{AvroRecord, OpenEdxEvent};
//! use openedx_events::datetime::IsoDateTime;
//!
//! /// A data class: becomes the Avro record `BookData`.
//! #[derive(Debug, Clone, PartialEq, AvroRecord)]
//! pub struct BookData {
//!     pub isbn: String,
//!     pub pages: i64,
//!     /// `Option` makes the field optional: `["null", "string"]`, default null.
//!     pub published: Option<IsoDateTime>,
//! }
//!
//! /// An event type: its fields are the payload arguments.
//! #[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
//! #[openedx_event(event_type = "org.example.library.book.added.v1", minor_version = 0)]
//! pub struct BookAdded {
//!     pub book: BookData,
//! }
//!
//! let t = BookAdded::event_type();
//! assert_eq!(t.name(), "org.example.library.book.added.v1");
//! let event = BookAdded { book: BookData { isbn: "978-0".into(), pages: 3, published: None } };
//! let bytes = t.encode_data(&event.to_data()).unwrap();
//! let back = BookAdded::from_data(t.decode_data(&bytes).unwrap()).unwrap();
//! assert_eq!(back, event);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::avro::Path;
use crate::datetime::IsoDateTime;
use crate::event::EventType;
use crate::keys;
use crate::types::{CustomType, DataType};
use crate::value::{Record, Value};

/// A value that does not convert to the Rust type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid data at {path}: {message}")]
pub struct DataError {
    /// Where in the data.
    pub path: Path,
    /// What is wrong.
    pub message: String,
}

impl DataError {
    /// An error at the current position.
    pub fn new(message: impl Into<String>) -> Self {
        DataError {
            path: Path::default(),
            message: message.into(),
        }
    }

    fn wrong_kind(expected: &str, found: &Value) -> Self {
        DataError::new(format!("expected {expected}, found {}", found.kind()))
    }

    /// Prefix the path with a field name.
    pub fn within(mut self, segment: impl Into<String>) -> Self {
        self.path.push_front(segment);
        self
    }
}

/// A Rust type that maps to a payload [`DataType`] and converts to and from
/// the dynamic [`Value`] form.
pub trait AvroData: Sized {
    /// Whether a record field of this type is optional (`default=None`).
    const OPTIONAL: bool = false;
    /// The payload type.
    fn data_type() -> DataType;
    /// The dynamic form.
    fn to_value(&self) -> Value;
    /// Back from the dynamic form.
    fn from_value(value: Value) -> Result<Self, DataError>;
}

/// An event type defined in Rust (see the module docs for the derive).
pub trait OpenEdxEvent: Sized {
    /// The event type name.
    const EVENT_TYPE: &'static str;
    /// The event type definition (one per process).
    fn event_type() -> &'static Arc<EventType>;
    /// The payload as a record of its arguments.
    fn to_data(&self) -> Record;
    /// The typed payload from a record of its arguments.
    fn from_data(data: Record) -> Result<Self, DataError>;
}

/// Used by derived code: unwrap a record value.
pub fn expect_record(value: Value, name: &str) -> Result<Record, DataError> {
    match value {
        Value::Record(r) => Ok(r),
        other => Err(DataError::wrong_kind(&format!("record {name}"), &other)),
    }
}

/// Used by derived code: take one field out of a record.
pub fn take_field<T: AvroData>(rec: &mut Record, name: &str) -> Result<T, DataError> {
    match rec.remove(name) {
        Some(v) => T::from_value(v).map_err(|e| e.within(name)),
        None if T::OPTIONAL => T::from_value(Value::Null).map_err(|e| e.within(name)),
        None => Err(DataError::new("missing required field").within(name)),
    }
}

impl AvroData for bool {
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn to_value(&self) -> Value {
        Value::Boolean(*self)
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Boolean(b) => Ok(b),
            other => Err(DataError::wrong_kind("boolean", &other)),
        }
    }
}

impl AvroData for i64 {
    fn data_type() -> DataType {
        DataType::Long
    }
    fn to_value(&self) -> Value {
        Value::Long(*self)
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Long(i) => Ok(i),
            other => Err(DataError::wrong_kind("long", &other)),
        }
    }
}

impl AvroData for f64 {
    fn data_type() -> DataType {
        DataType::Double
    }
    fn to_value(&self) -> Value {
        Value::Double(*self)
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Double(f) => Ok(f),
            Value::Long(i) => Ok(i as f64),
            other => Err(DataError::wrong_kind("double", &other)),
        }
    }
}

impl AvroData for String {
    fn data_type() -> DataType {
        DataType::String
    }
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(DataError::wrong_kind("string", &other)),
        }
    }
}

impl AvroData for Vec<u8> {
    fn data_type() -> DataType {
        DataType::Bytes
    }
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Bytes(b) => Ok(b),
            other => Err(DataError::wrong_kind("bytes", &other)),
        }
    }
}

impl<T: AvroData> AvroData for Option<T> {
    const OPTIONAL: bool = true;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// `List[T]`. (`Vec<u8>` is `bytes`, not a list.)
impl<T: AvroData> AvroData for Vec<T> {
    fn data_type() -> DataType {
        DataType::Array(Box::new(T::data_type()))
    }
    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(AvroData::to_value).collect())
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| T::from_value(v).map_err(|e| e.within(format!("[{i}]"))))
                .collect(),
            other => Err(DataError::wrong_kind("array", &other)),
        }
    }
}

/// `Dict[str, T]`, kept in key order as Python peers write it.
impl<T: AvroData> AvroData for BTreeMap<String, T> {
    fn data_type() -> DataType {
        DataType::Map(Box::new(T::data_type()))
    }
    fn to_value(&self) -> Value {
        Value::Map(self.iter().map(|(k, v)| (k.clone(), v.to_value())).collect())
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| {
                    let v = T::from_value(v).map_err(|e| e.within(k.clone()))?;
                    Ok((k, v))
                })
                .collect(),
            other => Err(DataError::wrong_kind("map", &other)),
        }
    }
}

macro_rules! string_custom_type {
    ($t:ty, $kind:expr, $text:expr) => {
        impl AvroData for $t {
            fn data_type() -> DataType {
                DataType::Custom($kind)
            }
            fn to_value(&self) -> Value {
                Value::String($text(self))
            }
            fn from_value(value: Value) -> Result<Self, DataError> {
                match value {
                    Value::String(s) => s.parse().map_err(|e| DataError::new(format!("{e}"))),
                    other => Err(DataError::wrong_kind("string", &other)),
                }
            }
        }
    };
}

fn key_text(k: &impl AsRef<str>) -> String {
    k.as_ref().to_owned()
}

string_custom_type!(keys::CourseKey, CustomType::CourseKey, key_text);
string_custom_type!(keys::CcxLocator, CustomType::CcxLocator, key_text);
string_custom_type!(keys::UsageKey, CustomType::UsageKey, key_text);
string_custom_type!(keys::LibraryLocatorV2, CustomType::LibraryLocatorV2, key_text);
string_custom_type!(keys::LibraryUsageLocatorV2, CustomType::LibraryUsageLocatorV2, key_text);
string_custom_type!(
    keys::LibraryCollectionLocator,
    CustomType::LibraryCollectionLocator,
    key_text
);
string_custom_type!(
    keys::LibraryContainerLocator,
    CustomType::LibraryContainerLocator,
    key_text
);
string_custom_type!(IsoDateTime, CustomType::DateTime, |t: &IsoDateTime| t.to_string());
string_custom_type!(uuid::Uuid, CustomType::Uuid, |u: &uuid::Uuid| u
    .hyphenated()
    .to_string());

/// A file handle (`typing.BinaryIO`): allowed in a payload, but it has no
/// Avro mapping, so an event that carries one cannot travel on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinaryIo(pub Vec<u8>);

impl AvroData for BinaryIo {
    fn data_type() -> DataType {
        DataType::Unsupported("typing.BinaryIO")
    }
    fn to_value(&self) -> Value {
        Value::Bytes(self.0.clone())
    }
    fn from_value(value: Value) -> Result<Self, DataError> {
        match value {
            Value::Bytes(b) => Ok(BinaryIo(b)),
            other => Err(DataError::wrong_kind("bytes", &other)),
        }
    }
}
