//! Deriving an event type's Avro schema by the rules of openedx-events
//! (`openedx_events/event_bus/avro/schema.py`).
//!
//! - a record named `CloudEvent`, namespace = the event type, with a fixed doc;
//! - one field per payload argument, in order, never nullable;
//! - a data class becomes an inline record the first time its short name is
//!   seen in the schema and a bare name reference afterwards (including inside
//!   unions, arrays and maps);
//! - `default=None` attributes become `["null", T]` with `"default": null`;
//! - ints are `long`, floats `double`, custom types `string`;
//! - custom types are not allowed as list items or map values.

use std::collections::HashSet;

use serde_json::{json, Map, Value as Json};

use crate::types::{DataType, FieldDef};

/// The doc string every event schema carries.
pub const CLOUD_EVENT_DOC: &str = "Avro Event Format for CloudEvents created with openedx_events/schema";

/// A payload type that has no Avro schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaDeriveError {
    /// The type has no Avro mapping (e.g. a file handle).
    #[error("data type {0} is not supported for Avro schema generation (field '{1}')")]
    Unsupported(String, String),
    /// A custom type inside a list or map.
    #[error("type {0} is not supported for list items or map values (field '{1}')")]
    UnsupportedItem(String, String),
    /// A top-level argument declared optional.
    #[error("top-level payload field '{0}' cannot be optional")]
    OptionalTopLevel(String),
}

/// The schema of an event type as ordered JSON (insertion order as Python
/// builds it: name, type, doc, fields, namespace).
///
/// ```
/// use openedx_events::avro::derive::event_schema_json;
/// use openedx_events::types::{DataType, FieldDef};
/// let s = event_schema_json("simple.signal", &[FieldDef::required("key", DataType::String)]).unwrap();
/// assert_eq!(s["fields"][0], serde_json::json!({"name": "key", "type": "string"}));
/// assert_eq!(s["namespace"], "simple.signal");
/// ```
pub fn event_schema_json(event_type: &str, fields: &[FieldDef]) -> Result<Json, SchemaDeriveError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        if f.optional {
            return Err(SchemaDeriveError::OptionalTopLevel(f.name.clone()));
        }
        out.push(field_json(f, &mut seen)?);
    }
    let mut m = Map::new();
    m.insert("name".into(), json!("CloudEvent"));
    m.insert("type".into(), json!("record"));
    m.insert("doc".into(), json!(CLOUD_EVENT_DOC));
    m.insert("fields".into(), Json::Array(out));
    m.insert("namespace".into(), json!(event_type));
    Ok(Json::Object(m))
}

fn field_json(f: &FieldDef, seen: &mut HashSet<String>) -> Result<Json, SchemaDeriveError> {
    let ty = type_json(&f.ty, &f.name, seen)?;
    let mut m = Map::new();
    m.insert("name".into(), json!(f.name));
    if f.optional {
        m.insert("type".into(), json!(["null", ty]));
        m.insert("default".into(), Json::Null);
    } else {
        m.insert("type".into(), ty);
    }
    Ok(Json::Object(m))
}

fn primitive(ty: &DataType) -> Option<&'static str> {
    Some(match ty {
        DataType::Boolean => "boolean",
        DataType::Long => "long",
        DataType::Double => "double",
        DataType::Bytes => "bytes",
        DataType::String => "string",
        _ => return None,
    })
}

fn type_json(ty: &DataType, field: &str, seen: &mut HashSet<String>) -> Result<Json, SchemaDeriveError> {
    if let Some(p) = primitive(ty) {
        return Ok(json!(p));
    }
    match ty {
        DataType::Custom(_) => Ok(json!("string")),
        DataType::Array(item) => {
            let mut m = Map::new();
            m.insert("type".into(), json!("array"));
            m.insert("items".into(), item_json(item, field, seen)?);
            Ok(Json::Object(m))
        }
        DataType::Map(values) => {
            let mut m = Map::new();
            m.insert("type".into(), json!("map"));
            m.insert("values".into(), item_json(values, field, seen)?);
            Ok(Json::Object(m))
        }
        DataType::Record(rt) => {
            if !seen.insert(rt.name.clone()) {
                return Ok(json!(rt.name));
            }
            let fields = rt
                .fields
                .iter()
                .map(|f| field_json(f, seen))
                .collect::<Result<Vec<_>, _>>()?;
            let mut m = Map::new();
            m.insert("name".into(), json!(rt.name));
            m.insert("type".into(), json!("record"));
            m.insert("fields".into(), Json::Array(fields));
            Ok(Json::Object(m))
        }
        DataType::Unsupported(name) => Err(SchemaDeriveError::Unsupported(name.to_string(), field.to_string())),
        // Primitives were handled above.
        _ => Ok(json!("string")),
    }
}

fn item_json(item: &DataType, field: &str, seen: &mut HashSet<String>) -> Result<Json, SchemaDeriveError> {
    match item {
        DataType::Custom(_) | DataType::Unsupported(_) => {
            Err(SchemaDeriveError::UnsupportedItem(item.to_string(), field.to_string()))
        }
        _ => type_json(item, field, seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RecordType;
    use std::sync::Arc;

    #[test]
    fn dedups_records_by_short_name_everywhere() {
        // The worked example of the openedx-events spec: B(a1: A, a2: A = None, l: List[A]); {'b': B, 'a': A}.
        let a = Arc::new(RecordType::new("A", vec![FieldDef::required("s", DataType::String)]));
        let b = Arc::new(RecordType::new(
            "B",
            vec![
                FieldDef::required("a1", DataType::Record(a.clone())),
                FieldDef::optional("a2", DataType::Record(a.clone())),
                FieldDef::required("l", DataType::Array(Box::new(DataType::Record(a.clone())))),
            ],
        ));
        let s = event_schema_json(
            "t",
            &[
                FieldDef::required("b", DataType::Record(b)),
                FieldDef::required("a", DataType::Record(a)),
            ],
        )
        .unwrap();
        let bf = &s["fields"][0]["type"]["fields"];
        assert_eq!(bf[0]["type"]["name"], "A");
        assert_eq!(bf[1], json!({"name": "a2", "type": ["null", "A"], "default": null}));
        assert_eq!(bf[2]["type"], json!({"type": "array", "items": "A"}));
        assert_eq!(s["fields"][1], json!({"name": "a", "type": "A"}));
    }

    #[test]
    fn rejects_custom_list_items_and_unsupported_types() {
        let e = event_schema_json(
            "t",
            &[FieldDef::required(
                "keys",
                DataType::Array(Box::new(DataType::Custom(crate::types::CustomType::CourseKey))),
            )],
        )
        .unwrap_err();
        assert!(matches!(e, SchemaDeriveError::UnsupportedItem(..)));
        let e = event_schema_json("t", &[FieldDef::required("image", DataType::Unsupported("BinaryIO"))]).unwrap_err();
        assert!(e.to_string().contains("BinaryIO"));
    }
}
