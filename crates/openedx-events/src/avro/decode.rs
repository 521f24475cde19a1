//! Schemaless Avro binary decoding of untrusted bytes.
//!
//! Every read is bounds-checked; lengths and container counts are checked
//! against the bytes that remain before anything is allocated, so a hostile
//! message gives a [`DecodeError`], never a panic or a huge allocation.

use std::sync::Arc;

use super::schema::{RecordSchema, Schema};
use super::Path;
use crate::value::{Record, Value};

/// Bytes that are not a valid encoding for the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot decode {path} at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Where in the value.
    pub path: Path,
    /// Byte offset where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

/// The kinds of [`DecodeError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ended early.
    #[error("unexpected end of input (needed {needed} more bytes)")]
    Truncated {
        /// How many more bytes were needed.
        needed: usize,
    },
    /// A varint longer than 10 bytes.
    #[error("variable-length integer is too long")]
    VarintOverflow,
    /// A negative length.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// A length or count larger than the rest of the input can hold.
    #[error("length {length} exceeds the {remaining} bytes that remain")]
    LengthTooLarge {
        /// Declared length or count.
        length: i64,
        /// Bytes left.
        remaining: usize,
    },
    /// String bytes that are not UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// A union branch index outside the union.
    #[error("union branch {index} does not exist (union has {branches})")]
    BadUnionIndex {
        /// The index read.
        index: i64,
        /// Number of branches.
        branches: usize,
    },
    /// An enum index outside the symbols.
    #[error("enum index {0} does not exist")]
    BadEnumIndex(i64),
    /// A boolean byte other than 0 or 1.
    #[error("boolean byte is {0:#04x}, not 0 or 1")]
    BadBoolean(u8),
    /// An int that does not fit in 32 bits.
    #[error("int {0} does not fit in 32 bits")]
    IntOverflow(i64),
    /// Bytes left after the datum.
    #[error("{0} trailing bytes after the datum")]
    TrailingBytes(usize),
}

/// Decode exactly one datum; trailing bytes are an error.
pub fn decode(schema: &Schema, bytes: &[u8]) -> Result<Value, DecodeError> {
    let (value, used) = decode_prefix(schema, bytes)?;
    if used != bytes.len() {
        return Err(DecodeError {
            path: Path::default(),
            offset: used,
            kind: DecodeErrorKind::TrailingBytes(bytes.len() - used),
        });
    }
    Ok(value)
}

/// Decode one datum from the start of `bytes`; returns it and the number of
/// bytes it took. fastavro's reader ignores what follows, which is how a
/// schemaless consumer tolerates fields a newer producer appended.
pub fn decode_prefix(schema: &Schema, bytes: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.value(schema)?;
    Ok((v, r.pos))
}

/// Most items an array of zero-width values (nulls) may declare.
const MAX_ZERO_WIDTH_ITEMS: i64 = 1 << 20;

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

fn at<T>(r: Result<T, DecodeError>, segment: impl FnOnce() -> String) -> Result<T, DecodeError> {
    r.map_err(|mut e| {
        e.path.push_front(segment());
        e
    })
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, kind: DecodeErrorKind) -> Result<T, DecodeError> {
        Err(DecodeError {
            path: Path::default(),
            offset: self.pos,
            kind,
        })
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return self.fail(DecodeErrorKind::Truncated {
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn long(&mut self) -> Result<i64, DecodeError> {
        let mut n: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return self.fail(DecodeErrorKind::Truncated { needed: 1 });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return self.fail(DecodeErrorKind::VarintOverflow);
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return self.fail(DecodeErrorKind::VarintOverflow);
            }
        }
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn length(&mut self) -> Result<usize, DecodeError> {
        let n = self.long()?;
        if n < 0 {
            return self.fail(DecodeErrorKind::NegativeLength(n));
        }
        if n as u64 > self.remaining() as u64 {
            return self.fail(DecodeErrorKind::LengthTooLarge {
                length: n,
                remaining: self.remaining(),
            });
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.length()?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let b = self.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(DecodeError {
                path: Path::default(),
                offset: start,
                kind: DecodeErrorKind::BadUtf8,
            }),
        }
    }

    /// Read one block header of an array or map: the item count, checked
    /// against what the remaining input could hold.
    fn block_count(&mut self, item_min_len: usize) -> Result<usize, DecodeError> {
        let mut count = self.long()?;
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            count = count
                .checked_neg()
                .map_or_else(|| self.fail(DecodeErrorKind::NegativeLength(count)), Ok)?;
            self.long()?;
        }
        let limit = (self.remaining().checked_div(item_min_len)).map_or(MAX_ZERO_WIDTH_ITEMS, |n| n as i64);
        if count > limit {
            return self.fail(DecodeErrorKind::LengthTooLarge {
                length: count,
                remaining: self.remaining(),
            });
        }
        Ok(count as usize)
    }

    pub(crate) fn value(&mut self, schema: &Schema) -> Result<Value, DecodeError> {
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => {
                let b = self.take(1)?[0];
                match b {
                    0 => Value::Boolean(false),
                    1 => Value::Boolean(true),
                    other => {
                        self.pos -= 1;
                        return self.fail(DecodeErrorKind::BadBoolean(other));
                    }
                }
            }
            Schema::Int => {
                let v = self.long()?;
                if i32::try_from(v).is_err() {
                    return self.fail(DecodeErrorKind::IntOverflow(v));
                }
                Value::Long(v)
            }
            Schema::Long => Value::Long(self.long()?),
            Schema::Float => {
                let b = self.take(4)?;
                Value::Double(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            Schema::Double => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Double(f64::from_le_bytes(a))
            }
            Schema::Bytes => Value::Bytes(self.bytes()?.to_vec()),
            Schema::String => Value::String(self.string()?),
            Schema::Array(items) => {
                let min = items.min_encoded_len();
                let mut out = Vec::new();
                loop {
                    let n = self.block_count(min)?;
                    if n == 0 {
                        break;
                    }
                    out.reserve(n);
                    for _ in 0..n {
                        let i = out.len();
                        out.push(at(self.value(items), || format!("[{i}]"))?);
                    }
                }
                Value::Array(out)
            }
            Schema::Map(values) => {
                let min = 1 + values.min_encoded_len();
                let mut out = Vec::new();
                loop {
                    let n = self.block_count(min)?;
                    if n == 0 {
                        break;
                    }
                    out.reserve(n);
                    for _ in 0..n {
                        let k = self.string()?;
                        let v = at(self.value(values), || format!("[{k:?}]"))?;
                        out.push((k, v));
                    }
                }
                Value::Map(out)
            }
            Schema::Union(branches) => {
                let idx = self.long()?;
                let Some(branch) = usize::try_from(idx).ok().and_then(|i| branches.get(i)) else {
                    return self.fail(DecodeErrorKind::BadUnionIndex {
                        index: idx,
                        branches: branches.len(),
                    });
                };
                self.value(branch)?
            }
            Schema::Record(rs) => Value::Record(self.record(rs)?),
            Schema::Enum(e) => {
                let idx = self.long()?;
                match usize::try_from(idx).ok().and_then(|i| e.symbols.get(i)) {
                    Some(s) => Value::String(s.clone()),
                    None => return self.fail(DecodeErrorKind::BadEnumIndex(idx)),
                }
            }
            Schema::Fixed(f) => Value::Bytes(self.take(f.size)?.to_vec()),
        })
    }

    fn record(&mut self, rs: &Arc<RecordSchema>) -> Result<Record, DecodeError> {
        let mut rec = Record::with_capacity(rs.fields.len());
        for f in &rs.fields {
            let v = at(self.value(&f.schema), || f.name.to_string())?;
            rec.push(f.name, v);
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},
               {"name":"o","type":["null","long"]},{"name":"a","type":{"type":"array","items":"null"}}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn clear_errors_on_bad_input() {
        let s = schema();
        let e = decode(&s, &[0x06, b'a']).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::LengthTooLarge { .. }), "{e}");
        let e = decode(&s, &[0x02, 0xff]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::BadUtf8);
        assert_eq!(e.path.to_string(), "s");
        let e = decode(&s, &[0x00, 0x04]).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::BadUnionIndex { index: 2, .. }));
        let e = decode(&s, &[0x00, 0x00, 0x00, 0x07]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TrailingBytes(1));
        let e = decode(
            &s,
            &[0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        )
        .unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::LengthTooLarge { .. }), "{e}");
        let e = decode(&s, &[0x01]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::NegativeLength(-1));
        let e = decode(&s, &[0x80; 12]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::VarintOverflow);
        assert!(decode(&s, &[]).is_err());
    }

    #[test]
    fn prefix_decoding_reports_consumed_bytes() {
        let s = schema();
        let (v, used) = decode_prefix(&s, &[0x00, 0x00, 0x00, 0x07, 0x07]).unwrap();
        assert_eq!(used, 3);
        assert_eq!(v.as_record().unwrap().get("o"), Some(&Value::Null));
    }
}
