//! Reading Redis replies as raw values, so that the field order of stream
//! entries is kept (the `redis` crate's `StreamReadReply` turns fields into a
//! `HashMap`). RESP2 and RESP3 shapes are both accepted. Replies of an
//! unexpected shape are errors, never panics.

use redis::Value;

use crate::wire::EntryId;

/// One stream entry: its id, and its fields in stream order (`None` when the
/// entry is still in a pending list but was trimmed or deleted from the
/// stream).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub id: EntryId,
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// One row of `XPENDING <stream> <group> <start> <end> <count> [consumer]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub id: EntryId,
    pub consumer: String,
    pub deliveries: u64,
}

/// The reply of `XAUTOCLAIM`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AutoClaim {
    pub cursor: EntryId,
    pub entries: Vec<Entry>,
    /// Ids that were pending but no longer exist in the stream (Redis 7
    /// removes them from the pending list and lists them here).
    pub deleted: Vec<EntryId>,
}

/// A short description of a value's shape, for error messages (never its
/// content, which may be large or private).
pub(crate) fn shape(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a status",
        Value::Okay => "OK",
        Value::Map(_) => "a map",
        Value::Attribute { .. } => "an attribute",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::VerbatimString { .. } => "a verbatim string",
        Value::BigNumber(_) => "a big number",
        Value::Push { .. } => "a push",
        Value::ServerError(_) => "an error",
        _ => "an unknown value",
    }
}

/// A textual value.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_string()),
        Value::Attribute { data, .. } => text(data),
        _ => None,
    }
}

/// A textual value, without copying a string reply; the value back when it
/// is not text.
pub(crate) fn into_text(v: Value) -> Result<String, Value> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(|e| Value::BulkString(e.into_bytes())),
        Value::SimpleString(s) => Ok(s),
        Value::Attribute { data, .. } => into_text(*data),
        other => text(&other).ok_or(other),
    }
}

/// An integer value (Redis sometimes sends numbers as strings).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Attribute { data, .. } => bytes(*data),
        _ => None,
    }
}

fn items(v: Value, what: &str) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        Value::Attribute { data, .. } => items(*data, what),
        other => Err(format!("{what} is {}, not an array", shape(&other))),
    }
}

/// An entry id value.
pub(crate) fn entry_id(v: &Value) -> Result<EntryId, String> {
    let t = text(v).ok_or_else(|| format!("an entry id is {}", shape(v)))?;
    t.parse().map_err(|e: crate::wire::BadEntryId| e.to_string())
}

fn entry(v: Value) -> Result<Entry, String> {
    let mut parts = items(v, "a stream entry")?;
    if parts.len() != 2 {
        return Err(format!("a stream entry has {} parts, not 2", parts.len()));
    }
    let fields = parts.pop().unwrap_or_default();
    let id = entry_id(&parts[0])?;
    let fields = match fields {
        Value::Nil => None,
        Value::Map(pairs) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("entry {id} has a field that is not a string"))?,
        ),
        other => {
            let flat = items(other, "the fields of an entry")?;
            if flat.len() % 2 != 0 {
                return Err(format!("entry {id} has an odd number of field names and values"));
            }
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                let pair = bytes(k)
                    .zip(bytes(v))
                    .ok_or_else(|| format!("entry {id} has a field that is not a string"))?;
                pairs.push(pair);
            }
            Some(pairs)
        }
    };
    Ok(Entry { id, fields })
}

/// A list of entries (`XRANGE`, the entries of one stream in `XREADGROUP`).
/// A nil in place of an entry (Redis 6.2 `XAUTOCLAIM` for deleted entries)
/// is skipped.
pub(crate) fn entries(v: Value) -> Result<Vec<Entry>, String> {
    items(v, "the entry list")?
        .into_iter()
        .filter(|e| *e != Value::Nil)
        .map(entry)
        .collect()
}

/// The reply of `XREADGROUP`/`XREAD` on one stream: nil when nothing came
/// (block timeout), else `[[stream, entries]]` (RESP2) or `{stream: entries}`
/// (RESP3).
pub(crate) fn read_reply(v: Value) -> Result<Vec<Entry>, String> {
    let per_stream: Vec<Value> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        Value::Attribute { data, .. } => return read_reply(*data),
        other => items(other, "the reply of XREADGROUP")?
            .into_iter()
            .map(|s| {
                let mut parts = items(s, "a stream of the reply")?;
                if parts.len() != 2 {
                    return Err(format!("a stream of the reply has {} parts, not 2", parts.len()));
                }
                Ok(parts.pop().unwrap_or_default())
            })
            .collect::<Result<_, String>>()?,
    };
    let mut out = Vec::new();
    for e in per_stream {
        out.extend(entries(e)?);
    }
    Ok(out)
}

/// A reply of `XINFO STREAM` or one group of `XINFO GROUPS`: a map (RESP3)
/// or a flat list of names and values (RESP2); empty if neither.
pub(crate) fn info_map(v: Value) -> Vec<(String, Value)> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        Value::Attribute { data, .. } => return info_map(*data),
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => Vec::new(),
    };
    pairs.into_iter().filter_map(|(k, v)| Some((text(&k)?, v))).collect()
}

/// A list of [`info_map`]s (`XINFO GROUPS`).
pub(crate) fn info_list(v: Value) -> Vec<Vec<(String, Value)>> {
    items(v, "XINFO GROUPS")
        .unwrap_or_default()
        .into_iter()
        .map(info_map)
        .collect()
}

/// The extended form of `XPENDING`: `[[id, consumer, idle ms, deliveries], ...]`.
pub(crate) fn pending(v: Value) -> Result<Vec<Pending>, String> {
    items(v, "the reply of XPENDING")?
        .into_iter()
        .map(|row| {
            let row = items(row, "a row of XPENDING")?;
            if row.len() != 4 {
                return Err(format!("a row of XPENDING has {} parts, not 4", row.len()));
            }
            Ok(Pending {
                id: entry_id(&row[0])?,
                consumer: text(&row[1]).ok_or("a consumer name is not text")?,
                deliveries: int(&row[3])
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or("a delivery count is not a number")?,
            })
        })
        .collect()
}

/// `XAUTOCLAIM`: `[cursor, entries]` (6.2) or `[cursor, entries, deleted ids]` (7.0+).
pub(crate) fn autoclaim(v: Value) -> Result<AutoClaim, String> {
    let mut parts = items(v, "the reply of XAUTOCLAIM")?.into_iter();
    let cursor = entry_id(&parts.next().ok_or("XAUTOCLAIM replied with nothing")?)?;
    let entries = entries(parts.next().unwrap_or(Value::Nil))?;
    let deleted = items(parts.next().unwrap_or(Value::Nil), "the deleted ids of XAUTOCLAIM")?
        .iter()
        .map(entry_id)
        .collect::<Result<_, _>>()?;
    Ok(AutoClaim {
        cursor,
        entries,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::BulkString(t.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![s(id), Value::Array(fields.iter().map(|f| s(f)).collect())])
    }

    #[test]
    fn xreadgroup_keeps_field_order_in_both_protocols() {
        let e = raw_entry("1-0", &["type", "t", "id", "x", "event_data", "b", "aa", "z"]);
        let resp2 = Value::Array(vec![Value::Array(vec![s("stream"), Value::Array(vec![e.clone()])])]);
        let resp3 = Value::Map(vec![(s("stream"), Value::Array(vec![e]))]);
        for reply in [resp2, resp3] {
            let got = read_reply(reply).expect("parses");
            assert_eq!(got.len(), 1);
            let names: Vec<&[u8]> = got[0]
                .fields
                .as_ref()
                .expect("fields")
                .iter()
                .map(|(k, _)| k.as_slice())
                .collect();
            assert_eq!(names, [&b"type"[..], b"id", b"event_data", b"aa"]);
        }
        assert_eq!(read_reply(Value::Nil).expect("nil"), Vec::new());
    }

    #[test]
    fn trimmed_pending_entries_have_no_fields() {
        let reply = Value::Array(vec![Value::Array(vec![
            s("stream"),
            Value::Array(vec![Value::Array(vec![s("7-1"), Value::Nil])]),
        ])]);
        let got = read_reply(reply).expect("parses");
        assert_eq!(
            got,
            vec![Entry {
                id: EntryId { ms: 7, seq: 1 },
                fields: None
            }]
        );
    }

    #[test]
    fn odd_replies_are_errors() {
        assert!(read_reply(Value::Int(3)).is_err());
        assert!(read_reply(Value::Array(vec![Value::Array(vec![s("stream")])])).is_err());
        assert!(entries(Value::Array(vec![raw_entry("1-0", &["odd"])])).is_err());
        assert!(entries(Value::Array(vec![raw_entry("nope", &[])])).is_err());
        assert!(pending(Value::Array(vec![Value::Array(vec![s("1-0")])])).is_err());
        assert!(autoclaim(Value::Array(vec![])).is_err());
    }

    #[test]
    fn xpending_and_xautoclaim() {
        let p = pending(Value::Array(vec![Value::Array(vec![
            s("1-2"),
            s("c1"),
            Value::Int(15),
            Value::Int(3),
        ])]))
        .expect("parses");
        assert_eq!(
            p,
            vec![Pending {
                id: EntryId { ms: 1, seq: 2 },
                consumer: "c1".into(),
                deliveries: 3
            }]
        );
        let c = autoclaim(Value::Array(vec![
            s("0-0"),
            Value::Array(vec![raw_entry("3-0", &["a", "b"]), Value::Nil]),
            Value::Array(vec![s("2-0")]),
        ]))
        .expect("parses");
        assert_eq!(c.cursor, EntryId::ZERO);
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.deleted, vec![EntryId { ms: 2, seq: 0 }]);
        let old = autoclaim(Value::Array(vec![s("5-0"), Value::Array(vec![])])).expect("6.2 shape");
        assert!(old.deleted.is_empty());
    }
}
