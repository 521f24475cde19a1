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
    let mut r = Reader::new(bytes);
    let v = r.value(schema)?;
    Ok((v, r.pos))
}

/// Zero-width items (nulls, empty records) a message of `len` bytes may
/// declare in all its arrays and maps together: such items take no input, so
/// only this budget keeps a few hostile bytes from making the decoder
/// allocate gigabytes. With it a message holds at most about 64 KiB plus 64
/// bytes per input byte while it decodes (the fuzz bound); real events have
/// no lists of nulls at all.
fn zero_width_budget(len: usize) -> usize {
    256usize.saturating_add(len / 2)
}

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    /// Zero-width items still allowed in this message.
    zero_width_left: usize,
}

fn at<T>(r: Result<T, DecodeError>, segment: impl FnOnce() -> String) -> Result<T, DecodeError> {
    r.map_err(|mut e| {
        e.path.push_front(segment());
        e
    })
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            zero_width_left: zero_width_budget(buf.len()),
        }
    }

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
    pub(crate) fn block_count(&mut self, item_min_len: usize) -> Result<usize, DecodeError> {
        let mut count = self.long()?;
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            count = count
                .checked_neg()
                .map_or_else(|| self.fail(DecodeErrorKind::NegativeLength(count)), Ok)?;
            self.long()?;
        }
        let too_large = |r: &Self| {
            r.fail(DecodeErrorKind::LengthTooLarge {
                length: count,
                remaining: r.remaining(),
            })
        };
        let count = usize::try_from(count).or_else(|_| too_large(self))?;
        match self.remaining().checked_div(item_min_len) {
            Some(fit) if count > fit => too_large(self),
            Some(_) => Ok(count),
            None => {
                // Zero-width items: counted against the message's budget.
                self.zero_width_left = match self.zero_width_left.checked_sub(count) {
                    Some(left) => left,
                    None => return too_large(self),
                };
                Ok(count)
            }
        }
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

    /// A block header declaring `n` items (zigzag varint).
    fn block(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn zero_width_items_are_bounded_per_message_not_per_block() {
        let nulls = Schema::parse_str(r#"{"type":"array","items":"null"}"#).unwrap();
        let nested = Schema::parse_str(r#"{"type":"array","items":{"type":"array","items":"null"}}"#).unwrap();
        // Blocks of a million nulls each: a dozen bytes, millions of items.
        let mut hostile = Vec::new();
        for _ in 0..3 {
            block(1 << 20, &mut hostile);
        }
        block(0, &mut hostile);
        assert!(hostile.len() < 16);
        assert!(
            decode(&nulls, &hostile).is_err(),
            "refused, not decoded into millions of items"
        );
        let mut outer = Vec::new();
        block(3, &mut outer);
        for _ in 0..3 {
            outer.extend_from_slice(&hostile);
        }
        block(0, &mut outer);
        assert!(decode(&nested, &outer).is_err());
        assert!(super::super::resolve::decode_resolved(&nested, &nested, &outer).is_err());
        // A real list of nulls still decodes.
        let mut fine = Vec::new();
        block(100, &mut fine);
        block(0, &mut fine);
        assert_eq!(decode(&nulls, &fine).unwrap(), Value::Array(vec![Value::Null; 100]));
    }
}
