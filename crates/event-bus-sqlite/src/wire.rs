//! The core's messages <-> rows of the `messages` table: headers as JSON
//! text in the `headers` column (an array of `[name, value]` pairs, in
//! order; a value is a string when its bytes are UTF-8, otherwise an array
//! of byte numbers 0-255), and a stored row read back as a [`Delivery`].

use chrono::{DateTime, Utc};
use openedx_events::bus::transport::{Delivery, DeliveryTag, RawMessage};
use openedx_events::bus::wire::cloudevent_incoming;
use rusqlite::types::ValueRef;
use rusqlite::Row;
use serde_json::Value as Json;

/// Encode headers for the `headers` column.
pub(crate) fn encode_headers(headers: &[(String, Vec<u8>)]) -> String {
    let pairs = headers
        .iter()
        .map(|(name, value)| {
            let v = match std::str::from_utf8(value) {
                Ok(s) => Json::String(s.to_string()),
                Err(_) => Json::Array(value.iter().map(|b| Json::from(*b)).collect()),
            };
            Json::Array(vec![Json::String(name.clone()), v])
        })
        .collect();
    Json::Array(pairs).to_string()
}

/// Decode the `headers` column; an error says what is wrong with it.
pub(crate) fn decode_headers(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("headers are not valid JSON ({e})"))?;
    let Json::Array(pairs) = json else {
        return Err("headers are not a JSON array".into());
    };
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, pair)| match pair {
            Json::Array(mut nv) if nv.len() == 2 => {
                let value = nv.pop();
                let name = nv.pop();
                match (name, value) {
                    (Some(Json::String(name)), Some(Json::String(v))) => Ok((name, v.into_bytes())),
                    (Some(Json::String(name)), Some(Json::Array(bytes))) => {
                        let bytes = bytes
                            .iter()
                            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect::<Option<Vec<u8>>>()
                            .ok_or_else(|| format!("header {i} ({name:?}) has a value that is not bytes"))?;
                        Ok((name, bytes))
                    }
                    _ => Err(format!("header {i} is not a [name, value] pair of text")),
                }
            }
            _ => Err(format!("header {i} is not a [name, value] pair")),
        })
        .collect()
}

/// Leniently read a stored column as bytes (a row edited by hand must not
/// stop the stream).
fn bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Null => None,
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(f) => Some(f.to_string().into_bytes()),
    }
}

/// A message row: `id, key, headers, value, created_at` from column `at`.
pub(crate) struct Stored {
    /// The row id: the position.
    pub(crate) id: i64,
    key: Option<Vec<u8>>,
    headers: Result<Vec<(String, Vec<u8>)>, String>,
    value: Vec<u8>,
    created_at: Option<i64>,
}

/// Read a message row whose columns start at `at`.
pub(crate) fn stored(row: &Row<'_>, at: usize) -> rusqlite::Result<Stored> {
    let headers = match row.get_ref(at + 2)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => match std::str::from_utf8(b) {
            Ok(text) => decode_headers(text),
            Err(_) => Err("headers are not UTF-8 text".to_string()),
        },
        ValueRef::Null => Err("headers are missing".to_string()),
        _ => Err("headers are not text".to_string()),
    };
    Ok(Stored {
        id: row.get(at)?,
        key: bytes(row.get_ref(at + 1)?),
        headers,
        value: bytes(row.get_ref(at + 3)?).unwrap_or_default(),
        created_at: match row.get_ref(at + 4)? {
            ValueRef::Integer(t) => Some(t),
            _ => None,
        },
    })
}

impl Stored {
    /// The delivery of this row, on `topic`, as delivery `attempt`; headers
    /// that cannot be read are the event's error.
    pub(crate) fn into_delivery(self, topic: &str, attempt: u32) -> Delivery {
        let (headers, problem) = match self.headers {
            Ok(h) => (h, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let raw = RawMessage {
            topic: topic.to_string(),
            key: self.key,
            headers,
            value: self.value,
            timestamp: self.created_at.and_then(DateTime::<Utc>::from_timestamp_micros),
        };
        let event = match problem {
            Some(p) => Err(format!(
                "Error determining metadata from message headers: the headers stored with message {} cannot be read: {p}",
                self.id
            )),
            None => cloudevent_incoming(&raw),
        };
        Delivery {
            raw,
            tag: DeliveryTag(u64::try_from(self.id).unwrap_or(0)),
            position: self.id.to_string(),
            attempt,
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_bytes_in_order() {
        let h = vec![
            ("ce_type".to_string(), b"t.v1".to_vec()),
            ("bin".to_string(), vec![0, 255, 0xc3]),
            ("ce_type".to_string(), Vec::new()),
        ];
        assert_eq!(decode_headers(&encode_headers(&h)).unwrap(), h);
        assert_eq!(decode_headers(&encode_headers(&[])).unwrap(), vec![]);
    }

    #[test]
    fn reports_what_is_wrong() {
        assert!(decode_headers("{").unwrap_err().contains("JSON"));
        assert!(decode_headers("{}").unwrap_err().contains("array"));
        assert!(decode_headers("[[1, \"x\"]]").unwrap_err().contains("header 0"));
        assert!(decode_headers("[[\"a\", [256]]]").unwrap_err().contains("bytes"));
        assert!(decode_headers("[[\"a\"]]").unwrap_err().contains("pair"));
    }
}
