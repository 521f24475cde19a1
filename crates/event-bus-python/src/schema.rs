//! Event types described by the Python side: a signal's `init_data` as
//! JSON (the package's `describe_signal`), turned into the core's
//! [`FieldDef`]s, from which the core derives the Avro schema by
//! openedx-events' rules. This is how a signal a plugin defines at run time,
//! unknown to the Rust catalog, travels with its own schema.
//!
//! A type is `"bool"`, `"int"`, `"float"`, `"bytes"`, `"str"`,
//! `{"custom": "<class name>"}` (the classes openedx-events serializes as
//! strings: `CourseKey`, `UsageKey`, `datetime`, `UUID`...),
//! `{"list": T}`, `{"dict": T}`, `{"record": "<class name>", "fields":
//! [{"name": ..., "type": T, "optional": bool}]}` or `{"unsupported":
//! "<repr>"}` (the event type then cannot go on the bus).

use std::sync::Arc;

use openedx_events::event::EventType;
use openedx_events::types::{CustomType, DataType, FieldDef, RecordType};
use serde_json::Value as Json;

const CUSTOM_TYPES: [CustomType; 9] = [
    CustomType::CourseKey,
    CustomType::CcxLocator,
    CustomType::UsageKey,
    CustomType::LibraryLocatorV2,
    CustomType::LibraryUsageLocatorV2,
    CustomType::LibraryCollectionLocator,
    CustomType::LibraryContainerLocator,
    CustomType::DateTime,
    CustomType::Uuid,
];

/// An event type from its description: `{"event_type": ..., "minor_version":
/// n, "fields": [...]}`.
pub fn event_type(description: &Json) -> Result<EventType, String> {
    let name = description
        .get("event_type")
        .and_then(Json::as_str)
        .ok_or("the description has no \"event_type\"")?;
    let minor = description.get("minor_version").and_then(Json::as_u64).unwrap_or(0);
    let minor = u32::try_from(minor).map_err(|_| format!("{name}: minor_version {minor} is too large"))?;
    let fields = fields(description.get("fields"), name)?;
    let unserializable = fields.iter().any(|f| has_unsupported(&f.ty));
    Ok(EventType::new(name, minor, fields).with_unserializable(unserializable))
}

fn has_unsupported(ty: &DataType) -> bool {
    match ty {
        DataType::Unsupported(_) => true,
        DataType::Array(t) | DataType::Map(t) => has_unsupported(t),
        DataType::Record(r) => r.fields.iter().any(|f| has_unsupported(&f.ty)),
        _ => false,
    }
}

fn fields(list: Option<&Json>, within: &str) -> Result<Vec<FieldDef>, String> {
    let list = list
        .and_then(Json::as_array)
        .ok_or_else(|| format!("{within}: \"fields\" must be a list"))?;
    list.iter()
        .map(|f| {
            let name = f
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| format!("{within}: a field has no name"))?;
            let ty = data_type(f.get("type").unwrap_or(&Json::Null), &format!("{within}.{name}"))?;
            let optional = f.get("optional").and_then(Json::as_bool).unwrap_or(false);
            Ok(FieldDef {
                name: name.to_string(),
                ty,
                optional,
            })
        })
        .collect()
}

fn data_type(t: &Json, at: &str) -> Result<DataType, String> {
    Ok(match t {
        Json::String(s) => match s.as_str() {
            "bool" => DataType::Boolean,
            "int" => DataType::Long,
            "float" => DataType::Double,
            "bytes" => DataType::Bytes,
            "str" => DataType::String,
            other => return Err(format!("{at}: unknown type {other:?}")),
        },
        Json::Object(o) => {
            if let Some(c) = o.get("custom").and_then(Json::as_str) {
                let custom = CUSTOM_TYPES
                    .into_iter()
                    .find(|ct| ct.python_name() == c)
                    .ok_or_else(|| format!("{at}: {c} is not a type openedx-events serializes"))?;
                DataType::Custom(custom)
            } else if let Some(item) = o.get("list") {
                DataType::Array(Box::new(data_type(item, at)?))
            } else if let Some(value) = o.get("dict") {
                DataType::Map(Box::new(data_type(value, at)?))
            } else if let Some(name) = o.get("record").and_then(Json::as_str) {
                DataType::Record(Arc::new(RecordType::new(name, fields(o.get("fields"), at)?)))
            } else if o.contains_key("unsupported") {
                DataType::Unsupported("a type with no Avro mapping")
            } else {
                return Err(format!("{at}: cannot read the type {t}"));
            }
        }
        other => return Err(format!("{at}: cannot read the type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_described_type_derives_the_catalog_schema() {
        // The description the Python side gives for the login event.
        let d = json!({"event_type": "org.openedx.learning.auth.session.login.completed.v1", "minor_version": 0,
            "fields": [{"name": "user", "type": {"record": "UserData", "fields": [
                {"name": "id", "type": "int"}, {"name": "is_active", "type": "bool"},
                {"name": "pii", "type": {"record": "UserPersonalData", "fields": [
                    {"name": "username", "type": "str"}, {"name": "email", "type": "str"},
                    {"name": "name", "type": "str", "optional": false}]}}]}}]});
        let described = event_type(&d).expect("described");
        let catalog = openedx_events::catalog::get(described.name()).expect("in the catalog");
        assert_eq!(
            described.avro().expect("schema").canonical,
            catalog.avro().expect("schema").canonical
        );
    }

    #[test]
    fn bad_descriptions_name_the_field() {
        let d = json!({"event_type": "org.example.x.v1", "fields": [{"name": "when", "type": {"custom": "Date"}}]});
        let e = event_type(&d).expect_err("unknown custom type");
        assert!(e.contains("org.example.x.v1.when") && e.contains("Date"), "{e}");
        let d =
            json!({"event_type": "org.example.x.v1", "fields": [{"name": "f", "type": {"unsupported": "BinaryIO"}}]});
        assert!(!event_type(&d).expect("described").is_bus_capable());
    }
}

/// The Avro schema the core derives from a signal description, as
/// openedx-events' `AvroSignalSerializer(signal).schema_string()` writes
/// it (the catalog is not consulted: the tests compare every signal's).
#[pyo3::pyfunction]
pub fn derive_schema(description_json: &str) -> pyo3::PyResult<String> {
    let json: Json = serde_json::from_str(description_json)
        .map_err(|e| crate::BusError::new_err(format!("bad signal description: {e}")))?;
    let et = event_type(&json).map_err(crate::BusError::new_err)?;
    let avro = et.avro().map_err(|e| crate::BusError::new_err(e.to_string()))?;
    Ok(avro.canonical.clone())
}
