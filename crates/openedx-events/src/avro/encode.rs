//! Schemaless Avro binary encoding of one datum, as `fastavro.schemaless_writer` writes it.

use super::schema::{RecordSchema, Schema};
use super::Path;
use crate::value::{Record, Value};

/// A value that does not fit the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot encode {path}: {message}")]
pub struct EncodeError {
    /// Where in the value.
    pub path: Path,
    /// What is wrong.
    pub message: String,
}

fn err(message: impl Into<String>) -> EncodeError {
    EncodeError {
        path: Path::default(),
        message: message.into(),
    }
}

fn at<T>(r: Result<T, EncodeError>, segment: impl FnOnce() -> String) -> Result<T, EncodeError> {
    r.map_err(|mut e| {
        e.path.push_front(segment());
        e
    })
}

/// Encode `value` with `schema` into a new buffer.
pub fn encode(schema: &Schema, value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    encode_into(schema, value, &mut out)?;
    Ok(out)
}

/// Encode `value` with `schema`, appending to `out`.
pub fn encode_into(schema: &Schema, value: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match (schema, value) {
        (Schema::Null, Value::Null) => Ok(()),
        (Schema::Boolean, Value::Boolean(b)) => {
            out.push(u8::from(*b));
            Ok(())
        }
        (Schema::Int, Value::Long(i)) => {
            if i32::try_from(*i).is_err() {
                return Err(err(format!("{i} does not fit an Avro int")));
            }
            write_long(out, *i);
            Ok(())
        }
        (Schema::Long, Value::Long(i)) => {
            write_long(out, *i);
            Ok(())
        }
        (Schema::Float, Value::Double(f)) => {
            out.extend_from_slice(&(*f as f32).to_le_bytes());
            Ok(())
        }
        (Schema::Float, Value::Long(i)) => {
            out.extend_from_slice(&(*i as f32).to_le_bytes());
            Ok(())
        }
        (Schema::Double, Value::Double(f)) => {
            out.extend_from_slice(&f.to_le_bytes());
            Ok(())
        }
        (Schema::Double, Value::Long(i)) => {
            out.extend_from_slice(&(*i as f64).to_le_bytes());
            Ok(())
        }
        (Schema::Bytes, Value::Bytes(b)) => {
            write_bytes(out, b);
            Ok(())
        }
        (Schema::String, Value::String(s)) => {
            write_bytes(out, s.as_bytes());
            Ok(())
        }
        (Schema::Array(items), Value::Array(values)) => {
            if !values.is_empty() {
                write_long(out, values.len() as i64);
                for (i, v) in values.iter().enumerate() {
                    at(encode_into(items, v, out), || format!("[{i}]"))?;
                }
            }
            out.push(0);
            Ok(())
        }
        (Schema::Map(values_schema), Value::Map(entries)) => {
            // openedx-events passes data through `json.dumps(sort_keys=True)`
            // before writing, so Python peers write map entries in key order.
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                let mut sorted: Vec<&(String, Value)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, v) in sorted {
                    write_bytes(out, k.as_bytes());
                    at(encode_into(values_schema, v, out), || format!("[{k:?}]"))?;
                }
            }
            out.push(0);
            Ok(())
        }
        (Schema::Record(rs), Value::Record(rec)) => encode_record_fields(rs, rec, out),
        (Schema::Enum(e), Value::String(s)) => {
            let idx = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| err(format!("'{s}' is not a symbol of enum {}", e.fullname)))?;
            write_long(out, idx as i64);
            Ok(())
        }
        (Schema::Fixed(f), Value::Bytes(b)) => {
            if b.len() != f.size {
                return Err(err(format!(
                    "fixed {} needs {} bytes, got {}",
                    f.fullname,
                    f.size,
                    b.len()
                )));
            }
            out.extend_from_slice(b);
            Ok(())
        }
        (Schema::Union(branches), v) => {
            let idx = branches
                .iter()
                .position(|b| branch_matches(b, v))
                .ok_or_else(|| err(format!("no branch of the union accepts a {}", v.kind())))?;
            write_long(out, idx as i64);
            encode_into(&branches[idx], v, out)
        }
        (s, v) => Err(err(format!("expected {}, found {}", s.type_name(), v.kind()))),
    }
}

/// Encode a record's fields with a record schema, appending to `out`.
pub fn encode_record_fields(rs: &RecordSchema, rec: &Record, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    for (i, field) in rs.fields.iter().enumerate() {
        match rec.get_at(i, field.name) {
            Some(v) => at(encode_into(&field.schema, v, out), || field.name.to_string())?,
            // fastavro writes the declared default for a missing field, and
            // null for a missing nullable field.
            None if field.schema.is_nullable() && field.default.as_ref().is_none_or(|d| d.is_null()) => {
                at(encode_into(&field.schema, &Value::Null, out), || field.name.to_string())?
            }
            None => match &field.default {
                Some(default) => {
                    let v = at(
                        super::json::from_json(&field.schema, default).map_err(|e| err(e.to_string())),
                        || field.name.to_string(),
                    )?;
                    at(encode_into(&field.schema, &v, out), || field.name.to_string())?
                }
                None => {
                    return Err(EncodeError {
                        path: Path(vec![field.name.to_string()]),
                        message: "missing required field".into(),
                    })
                }
            },
        }
    }
    Ok(())
}

fn branch_matches(schema: &Schema, v: &Value) -> bool {
    match (schema, v) {
        (Schema::Null, Value::Null)
        | (Schema::Boolean, Value::Boolean(_))
        | (Schema::Long, Value::Long(_))
        | (Schema::Double, Value::Double(_) | Value::Long(_))
        | (Schema::Float, Value::Double(_))
        | (Schema::Bytes, Value::Bytes(_))
        | (Schema::String, Value::String(_))
        | (Schema::Array(_), Value::Array(_))
        | (Schema::Map(_), Value::Map(_))
        | (Schema::Record(_), Value::Record(_)) => true,
        (Schema::Int, Value::Long(i)) => i32::try_from(*i).is_ok(),
        (Schema::Enum(e), Value::String(s)) => e.symbols.contains(s),
        (Schema::Fixed(f), Value::Bytes(b)) => b.len() == f.size,
        _ => false,
    }
}

/// Zig-zag varint.
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (123, &[0xf6, 0x01]),
        ];
        for (v, want) in cases {
            let mut out = vec![];
            write_long(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
    }

    #[test]
    fn primitives_as_python_writes_them() {
        // The openedx-events golden vector: {i: 1, s: "ab", f: 1.5, b: True}.
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"i","type":"long"},{"name":"s","type":"string"},
                {"name":"f","type":"double"},{"name":"b","type":"boolean"}]}"#,
        )
        .unwrap();
        let v = Value::Record(
            Record::new()
                .with("i", Value::Long(1))
                .with("s", Value::from("ab"))
                .with("f", Value::Double(1.5))
                .with("b", Value::Boolean(true)),
        );
        assert_eq!(
            encode(&schema, &v).unwrap(),
            [0x02, 0x04, 0x61, 0x62, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x01]
        );
    }

    #[test]
    fn missing_required_field_names_the_path() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"x","type":"long"}]}}]}"#,
        )
        .unwrap();
        let v = Value::Record(Record::new().with("inner", Value::Record(Record::new())));
        let e = encode(&schema, &v).unwrap_err();
        assert_eq!(e.to_string(), "cannot encode inner.x: missing required field");
    }
}
