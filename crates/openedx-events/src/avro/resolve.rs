//! Avro schema resolution: read data written with one schema as another.
//!
//! This is what makes schema evolution work: a Kafka consumer reads with the
//! writer schema it fetched from the registry and gets a value of its own
//! (reader) schema; fields the writer added are skipped, fields the reader
//! added take their defaults, and numbers are promoted (int → long → double).

use super::decode::{DecodeError, Reader};
use super::json::from_json;
use super::schema::Schema;
use crate::value::{Record, Value};

/// Data that cannot be read with the reader schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// The bytes do not decode with the writer schema.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The schemas do not match here.
    #[error("writer and reader schemas do not match at {at}: {message}")]
    Incompatible {
        /// Where (a record or field name).
        at: String,
        /// Why.
        message: String,
    },
}

fn incompatible<T>(at: &str, message: impl Into<String>) -> Result<T, ResolveError> {
    Err(ResolveError::Incompatible {
        at: at.to_string(),
        message: message.into(),
    })
}

/// Decode `bytes` written with `writer` into a value of `reader`.
///
/// ```
/// use openedx_events::avro::{Schema, encode, decode_resolved};
/// use openedx_events::value::{Record, Value};
/// let v1 = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#).unwrap();
/// let v2 = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},
///     {"name":"b","type":["null","string"],"default":null}]}"#).unwrap();
/// let bytes = encode(&v1, &Value::Record(Record::new().with("a", Value::Long(3)))).unwrap();
/// let v = decode_resolved(&v1, &v2, &bytes).unwrap();
/// assert_eq!(v, Value::Record(Record::new().with("a", Value::Long(3)).with("b", Value::Null)));
/// ```
pub fn decode_resolved(writer: &Schema, reader: &Schema, bytes: &[u8]) -> Result<Value, ResolveError> {
    let mut r = Reader::new(bytes);
    resolved(&mut r, writer, reader)
}

fn resolved(r: &mut Reader<'_>, w: &Schema, rd: &Schema) -> Result<Value, ResolveError> {
    match (w, rd) {
        (Schema::Union(branches), _) => {
            let idx = r.long()?;
            let Some(branch) = usize::try_from(idx).ok().and_then(|i| branches.get(i)) else {
                return incompatible("union", format!("writer union has no branch {idx}"));
            };
            resolved(r, branch, rd)
        }
        (_, Schema::Union(branches)) => match branches.iter().find(|b| matches_shallow(w, b)) {
            Some(b) => resolved(r, w, b),
            None => incompatible(w.type_name(), "no branch of the reader union matches the writer type"),
        },
        (Schema::Null, Schema::Null)
        | (Schema::Boolean, Schema::Boolean)
        | (Schema::Int, Schema::Int)
        | (Schema::Long, Schema::Long)
        | (Schema::Float, Schema::Float)
        | (Schema::Double, Schema::Double)
        | (Schema::String, Schema::String)
        | (Schema::Bytes, Schema::Bytes) => Ok(r.value(w)?),
        (Schema::Int, Schema::Long) => Ok(r.value(w)?),
        (Schema::Int | Schema::Long | Schema::Float, Schema::Float | Schema::Double) => match r.value(w)? {
            Value::Long(i) => Ok(Value::Double(i as f64)),
            other => Ok(other),
        },
        (Schema::String, Schema::Bytes) => match r.value(w)? {
            Value::String(s) => Ok(Value::Bytes(s.into_bytes())),
            other => Ok(other),
        },
        (Schema::Bytes, Schema::String) => match r.value(w)? {
            Value::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => Ok(Value::String(s)),
                Err(_) => incompatible("bytes", "bytes read as string are not UTF-8"),
            },
            other => Ok(other),
        },
        (Schema::Array(wi), Schema::Array(ri)) => {
            let mut out = Vec::new();
            loop {
                let n = r.block_count(wi.min_encoded_len())?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    out.push(resolved(r, wi, ri)?);
                }
            }
            Ok(Value::Array(out))
        }
        (Schema::Map(wv), Schema::Map(rv)) => {
            let mut out = Vec::new();
            loop {
                let n = r.block_count(1 + wv.min_encoded_len())?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let k = match r.value(&Schema::String)? {
                        Value::String(s) => s,
                        _ => String::new(),
                    };
                    out.push((k, resolved(r, wv, rv)?));
                }
            }
            Ok(Value::Map(out))
        }
        (Schema::Record(wr), Schema::Record(rr)) => {
            if wr.name != rr.name {
                return incompatible(&rr.fullname, format!("writer record is named {}", wr.name));
            }
            let mut found: Vec<Option<Value>> = vec![None; rr.fields.len()];
            for wf in &wr.fields {
                match rr.field_index(wf.name) {
                    Some(i) => {
                        found[i] = Some(resolved(r, &wf.schema, &rr.fields[i].schema).map_err(|e| match e {
                            ResolveError::Incompatible { at, message } => ResolveError::Incompatible {
                                at: format!("{}.{}", wf.name, at),
                                message,
                            },
                            other => other,
                        })?);
                    }
                    None => {
                        r.value(&wf.schema)?;
                    }
                }
            }
            let mut rec = Record::with_capacity(rr.fields.len());
            for (rf, v) in rr.fields.iter().zip(found) {
                let v = match v {
                    Some(v) => v,
                    None => match &rf.default {
                        Some(d) => match from_json(&rf.schema, d) {
                            Ok(v) => v,
                            Err(e) => return incompatible(rf.name, format!("bad default: {e}")),
                        },
                        None => {
                            return incompatible(
                                &rr.fullname,
                                format!("reader field '{}' is not written and has no default", rf.name),
                            )
                        }
                    },
                };
                rec.push(rf.name, v);
            }
            Ok(Value::Record(rec))
        }
        (Schema::Enum(we), Schema::Enum(re)) => {
            let symbol = match r.value(w)? {
                Value::String(s) => s,
                _ => String::new(),
            };
            if re.symbols.contains(&symbol) {
                Ok(Value::String(symbol))
            } else if let Some(d) = &re.default {
                Ok(Value::String(d.clone()))
            } else {
                incompatible(&we.fullname, format!("symbol '{symbol}' is unknown to the reader"))
            }
        }
        (Schema::Fixed(wf), Schema::Fixed(rf)) if wf.size == rf.size => Ok(r.value(w)?),
        _ => incompatible(
            w.type_name(),
            format!("writer {} cannot be read as {}", w.type_name(), rd.type_name()),
        ),
    }
}

/// Whether a reader union branch can take the writer type (first match wins).
fn matches_shallow(w: &Schema, rd: &Schema) -> bool {
    match (w, rd) {
        (Schema::Record(a), Schema::Record(b)) => a.name == b.name,
        (Schema::Enum(a), Schema::Enum(b)) => a.fullname.rsplit('.').next() == b.fullname.rsplit('.').next(),
        (Schema::Fixed(a), Schema::Fixed(b)) => a.size == b.size,
        (Schema::Array(_), Schema::Array(_)) | (Schema::Map(_), Schema::Map(_)) => true,
        (Schema::Int, Schema::Int | Schema::Long | Schema::Float | Schema::Double)
        | (Schema::Long, Schema::Long | Schema::Float | Schema::Double)
        | (Schema::Float, Schema::Float | Schema::Double)
        | (Schema::String, Schema::String | Schema::Bytes)
        | (Schema::Bytes, Schema::Bytes | Schema::String) => true,
        (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}
