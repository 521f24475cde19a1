//! Checking decoded or user-given data against the payload types: opaque
//! keys must parse, datetimes and UUIDs must parse and are rewritten in the
//! exact text Python writes (`isoformat()`, lower-case hyphenated UUIDs).

use crate::data::DataError;
use crate::datetime::IsoDateTime;
use crate::keys;
use crate::types::{CustomType, DataType, FieldDef};
use crate::value::{Record, Value};

/// Check every field of a payload record, canonicalising text forms in place.
pub fn validate_record(fields: &[FieldDef], rec: &mut Record) -> Result<(), DataError> {
    for f in fields {
        let Some(v) = rec.get_mut(&f.name) else {
            if f.optional {
                continue;
            }
            return Err(DataError::new("missing required field").within(f.name.clone()));
        };
        if f.optional && matches!(v, Value::Null) {
            continue;
        }
        validate_value(&f.ty, v).map_err(|e| e.within(f.name.clone()))?;
    }
    Ok(())
}

/// Check one value against its payload type.
pub fn validate_value(ty: &DataType, v: &mut Value) -> Result<(), DataError> {
    match (ty, v) {
        (DataType::Custom(kind), Value::String(s)) => validate_custom(*kind, s),
        (DataType::Array(item), Value::Array(items)) => {
            for (i, x) in items.iter_mut().enumerate() {
                validate_value(item, x).map_err(|e| e.within(format!("[{i}]")))?;
            }
            Ok(())
        }
        (DataType::Map(values), Value::Map(entries)) => {
            for (k, x) in entries.iter_mut() {
                validate_value(values, x).map_err(|e| e.within(k.clone()))?;
            }
            Ok(())
        }
        (DataType::Record(rt), Value::Record(rec)) => validate_record(&rt.fields, rec),
        (DataType::Boolean, Value::Boolean(_))
        | (DataType::Long, Value::Long(_))
        | (DataType::Double, Value::Double(_))
        | (DataType::Bytes, Value::Bytes(_))
        | (DataType::String, Value::String(_)) => Ok(()),
        (DataType::Double, v @ Value::Long(_)) => {
            if let Value::Long(i) = *v {
                *v = Value::Double(i as f64);
            }
            Ok(())
        }
        (ty, v) => Err(DataError::new(format!("expected {ty}, found {}", v.kind()))),
    }
}

fn validate_custom(kind: CustomType, s: &mut String) -> Result<(), DataError> {
    match kind {
        CustomType::DateTime => {
            let t = IsoDateTime::parse(s).map_err(|e| DataError::new(e.to_string()))?;
            if !t.is_written_as(s) {
                *s = t.to_string();
            }
            Ok(())
        }
        CustomType::Uuid => {
            let u = uuid::Uuid::parse_str(s).map_err(|e| DataError::new(format!("invalid UUID {s:?}: {e}")))?;
            let canonical = u.hyphenated().to_string();
            if *s != canonical {
                *s = canonical;
            }
            Ok(())
        }
        _ => keys::validate(kind, s).map_err(|e| DataError::new(e.to_string())),
    }
}
