//! Dynamic event data: the Avro record form of a payload.
//!
//! This is what travels inside the bus: a consumer decodes bytes into a
//! [`Record`] without knowing any Rust type, and receivers read it directly or
//! convert it to a typed payload (see [`crate::data::AvroData`]). Its JSON form
//! is the record form of openedx-events (`AvroSignalSerializer.to_dict`):
//! opaque keys and datetimes are strings, keys sorted.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use crate::pyjson;

/// Field names live for the whole process: a record holds `&'static str`
/// names, so building and dropping records touches no reference counts.
/// Names from schemas and from callers are interned once here (the set of
/// field names a process sees is small and fixed by its schemas).
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// One Avro value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Avro `null`.
    Null,
    /// Avro `boolean`.
    Boolean(bool),
    /// Avro `long` (and `int`).
    Long(i64),
    /// Avro `double` (and `float`).
    Double(f64),
    /// Avro `bytes` (and `fixed`).
    Bytes(Vec<u8>),
    /// Avro `string` (and `enum` symbols).
    String(String),
    /// Avro `array`.
    Array(Vec<Value>),
    /// Avro `map`, in wire order.
    Map(Vec<(String, Value)>),
    /// Avro `record`.
    Record(Record),
}

/// A record value: named fields in schema order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    fields: Vec<(&'static str, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Record { fields: Vec::new() }
    }

    /// An empty record with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Record {
            fields: Vec::with_capacity(n),
        }
    }

    /// Add or replace a field, builder style.
    ///
    /// ```
    /// use openedx_events::value::{Record, Value};
    /// let r = Record::new().with("id", Value::Long(7)).with("name", Value::from("Ana"));
    /// assert_eq!(r.get("id"), Some(&Value::Long(7)));
    /// ```
    pub fn with(mut self, name: impl AsRef<str>, value: Value) -> Self {
        self.insert(name, value);
        self
    }

    /// Add or replace a field.
    pub fn insert(&mut self, name: impl AsRef<str>, value: Value) {
        let name = name.as_ref();
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.fields.push((intern(name), value));
        }
    }

    /// Append a field without checking whether the name is already present
    /// (the fast path for decoders and derived code, which know it is not).
    pub fn push(&mut self, name: &'static str, value: Value) {
        self.fields.push((name, value));
    }

    /// The value of a field.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A mutable reference to the value of a field.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.fields.iter_mut().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of the field at position `index`, if its name is `name`.
    pub(crate) fn get_at(&self, index: usize, name: &str) -> Option<&Value> {
        match self.fields.get(index) {
            Some((n, v)) if *n == name => Some(v),
            _ => self.get(name),
        }
    }

    /// Remove a field and return its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let pos = self.fields.iter().position(|(n, _)| *n == name)?;
        Some(self.fields.remove(pos).1)
    }

    /// Fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(n, v)| (*n, v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The JSON form, keys sorted, as `json.dumps(record, sort_keys=True)`
    /// writes it (one line, Python separators).
    ///
    /// ```
    /// use openedx_events::value::{Record, Value};
    /// let r = Record::new().with("b", Value::Double(0.5)).with("a", Value::Null);
    /// assert_eq!(r.to_json_string(), r#"{"a": null, "b": 0.5}"#);
    /// ```
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        write_record(&mut out, self);
        out
    }

    /// The JSON form as a `serde_json` value (keys sorted). Non-finite
    /// doubles, which JSON cannot hold, become strings (`"NaN"`).
    pub fn to_json(&self) -> serde_json::Value {
        Value::Record(self.clone()).to_json()
    }
}

impl Value {
    /// The JSON form (see [`Record::to_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Boolean(b) => J::Bool(*b),
            Value::Long(i) => J::from(*i),
            Value::Double(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(pyjson::float_repr(*f))),
            Value::Bytes(b) => J::String(bytes_as_text(b)),
            Value::String(s) => J::String(s.clone()),
            Value::Array(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => {
                let mut sorted: Vec<&(String, Value)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                J::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Record(r) => {
                let mut sorted: Vec<(&str, &Value)> = r.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                J::Object(sorted.into_iter().map(|(k, v)| (k.to_string(), v.to_json())).collect())
            }
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Long(_) => "long",
            Value::Double(_) => "double",
            Value::Bytes(_) => "bytes",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Record(_) => "record",
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The record, if this is a record.
    pub fn as_record(&self) -> Option<&Record> {
        match self {
            Value::Record(r) => Some(r),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Long(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Double(f)
    }
}

impl From<Record> for Value {
    fn from(r: Record) -> Self {
        Value::Record(r)
    }
}

/// Bytes as text the way the Avro JSON encoding shows them: one code point
/// per byte (ISO-8859-1).
fn bytes_as_text(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn write_record(out: &mut String, r: &Record) {
    let mut sorted: Vec<(&str, &Value)> = r.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    write_object(out, sorted.into_iter());
}

fn write_object<'a>(out: &mut String, entries: impl Iterator<Item = (&'a str, &'a Value)>) {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        pyjson::write_string(out, k);
        out.push_str(": ");
        write_value(out, v);
    }
    out.push('}');
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Boolean(true) => out.push_str("true"),
        Value::Boolean(false) => out.push_str("false"),
        Value::Long(i) => out.push_str(&i.to_string()),
        Value::Double(f) => out.push_str(&pyjson::float_repr(*f)),
        Value::Bytes(b) => pyjson::write_string(out, &bytes_as_text(b)),
        Value::String(s) => pyjson::write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let mut sorted: Vec<(&str, &Value)> = entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            write_object(out, sorted.into_iter());
        }
        Value::Record(r) => write_record(out, r),
    }
}

/// The JSON form of any value (see [`Record::to_json_string`]).
pub fn to_json_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}
