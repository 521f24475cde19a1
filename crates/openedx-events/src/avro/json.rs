//! The JSON record form of event data, read into [`Value`]s with a schema.
//!
//! The schema decides what a JSON number is (long or double), which union
//! branch a value takes, and which object is a record and which a map.

use super::schema::Schema;
use super::Path;
use crate::value::{Record, Value};
use serde_json::Value as Json;

/// JSON that does not fit the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid data at {path}: {message}")]
pub struct JsonError {
    /// Where in the data.
    pub path: Path,
    /// What is wrong.
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, JsonError> {
    Err(JsonError {
        path: Path::default(),
        message: message.into(),
    })
}

fn at<T>(r: Result<T, JsonError>, segment: impl FnOnce() -> String) -> Result<T, JsonError> {
    r.map_err(|mut e| {
        e.path.push_front(segment());
        e
    })
}

fn describe(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Read JSON into a value of `schema`. Record objects must not carry keys
/// the schema does not know; missing nullable fields become null.
///
/// ```
/// use openedx_events::avro::{Schema, json::from_json};
/// use openedx_events::value::Value;
/// let s = Schema::parse_str(r#"["null", "double"]"#).unwrap();
/// assert_eq!(from_json(&s, &serde_json::json!(2)).unwrap(), Value::Double(2.0));
/// ```
pub fn from_json(schema: &Schema, json: &Json) -> Result<Value, JsonError> {
    match (schema, json) {
        (Schema::Null, Json::Null) => Ok(Value::Null),
        (Schema::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
        (Schema::Int | Schema::Long, Json::Number(n)) => match n.as_i64() {
            Some(i) if matches!(schema, Schema::Long) || i32::try_from(i).is_ok() => Ok(Value::Long(i)),
            _ => err(format!("{n} is not a {}", schema.type_name())),
        },
        (Schema::Float | Schema::Double, Json::Number(n)) => match n.as_f64() {
            Some(f) => Ok(Value::Double(f)),
            None => err(format!("{n} is not a number")),
        },
        // Python's json module writes non-finite floats as these names.
        (Schema::Float | Schema::Double, Json::String(s)) => match s.as_str() {
            "NaN" => Ok(Value::Double(f64::NAN)),
            "Infinity" => Ok(Value::Double(f64::INFINITY)),
            "-Infinity" => Ok(Value::Double(f64::NEG_INFINITY)),
            _ => err(format!("expected a number, found a string {s:?}")),
        },
        (Schema::String, Json::String(s)) => Ok(Value::String(s.clone())),
        (Schema::Bytes, Json::String(s)) => Ok(Value::Bytes(text_as_bytes(s)?)),
        (Schema::Fixed(f), Json::String(s)) => {
            let b = text_as_bytes(s)?;
            if b.len() != f.size {
                return err(format!("fixed {} needs {} bytes", f.fullname, f.size));
            }
            Ok(Value::Bytes(b))
        }
        (Schema::Enum(e), Json::String(s)) => {
            if e.symbols.contains(s) {
                Ok(Value::String(s.clone()))
            } else {
                err(format!("'{s}' is not a symbol of {}", e.fullname))
            }
        }
        (Schema::Array(items), Json::Array(values)) => values
            .iter()
            .enumerate()
            .map(|(i, v)| at(from_json(items, v), || format!("[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (Schema::Map(values), Json::Object(obj)) => obj
            .iter()
            .map(|(k, v)| Ok((k.clone(), at(from_json(values, v), || k.clone())?)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Map),
        (Schema::Record(rs), Json::Object(obj)) => {
            if let Some(unknown) = obj.keys().find(|k| rs.field_index(k).is_none()) {
                return at(
                    err(format!("unknown field (record {} has no such field)", rs.name)),
                    || unknown.clone(),
                );
            }
            let mut rec = Record::with_capacity(rs.fields.len());
            for f in &rs.fields {
                let v = match obj.get(f.name) {
                    Some(j) => at(from_json(&f.schema, j), || f.name.to_string())?,
                    None if f.schema.is_nullable() => Value::Null,
                    None => match &f.default {
                        Some(d) => at(from_json(&f.schema, d), || f.name.to_string())?,
                        None => return at(err("missing required field"), || f.name.to_string()),
                    },
                };
                rec.push(f.name, v);
            }
            Ok(Value::Record(rec))
        }
        (Schema::Union(branches), j) => {
            for b in branches {
                if json_fits(b, j) {
                    return from_json(b, j);
                }
            }
            err(format!("{} fits no branch of the union", describe(j)))
        }
        (s, j) => err(format!("expected {}, found {}", s.type_name(), describe(j))),
    }
}

/// Whether JSON `j` has the shape of `schema` (for choosing a union branch).
fn json_fits(schema: &Schema, j: &Json) -> bool {
    match (schema, j) {
        (Schema::Null, Json::Null) | (Schema::Boolean, Json::Bool(_)) => true,
        (Schema::Int | Schema::Long, Json::Number(n)) => n.as_i64().is_some(),
        (Schema::Float | Schema::Double, Json::Number(_)) => true,
        (Schema::String | Schema::Bytes | Schema::Enum(_) | Schema::Fixed(_), Json::String(_)) => true,
        (Schema::Array(_), Json::Array(_)) => true,
        (Schema::Map(_) | Schema::Record(_), Json::Object(_)) => true,
        _ => false,
    }
}

fn text_as_bytes(s: &str) -> Result<Vec<u8>, JsonError> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).or_else(|_| err("bytes text may only hold code points up to U+00FF")))
        .collect()
}
