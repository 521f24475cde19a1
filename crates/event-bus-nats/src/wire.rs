//! The wire mapping: how an event becomes a NATS message and back. Pure
//! functions, no server; the crate docs have the table.
//!
//! NATS headers are text lines (`Name: value`): a name is printable ASCII
//! without `:`, a value cannot hold CR or LF, and readers trim the spaces
//! around it. A header value that would not come back byte for byte (not
//! UTF-8, a control character, spaces at either end) travels Base64-encoded
//! (standard alphabet, padded) under the name `base64-<name>`
//! ([`BASE64_HEADER_PREFIX`]) and is decoded back on receipt. Headers whose
//! name starts with `Nats-` steer the server (deduplication, expectations),
//! so a raw message's own `Nats-*` headers are sent encoded the same way
//! and the server's are not part of a received message. A header name NATS
//! cannot carry is refused with a clear error.

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use openedx_events::bus::transport::{Delivery, DeliveryTag, OutgoingMessage, RawMessage};
use openedx_events::bus::wire;

/// The header that carries the key ([`RawMessage::key`], the
/// `event_key_field` value as [`EventKey::as_text`](openedx_events::config::EventKey::as_text)):
/// the CloudEvents partitioning extension's attribute, under its Kafka-binding name.
pub const KEY_HEADER: &str = "ce_partitionkey";

/// Name prefix of a header whose value travels Base64-encoded.
pub const BASE64_HEADER_PREFIX: &str = "base64-";

/// The server's deduplication header.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Bytes a message with these headers and payload takes on the wire (what
/// the server's `max_payload` limits).
///
/// ```
/// use event_bus_nats::wire::wire_size;
/// let mut h = async_nats::HeaderMap::new();
/// h.insert("a", "bc");
/// assert_eq!(wire_size(&h, 10), 10 + 12 + 7);
/// ```
pub fn wire_size(headers: &HeaderMap, payload: usize) -> usize {
    if headers.is_empty() {
        return payload;
    }
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let n: &str = name.as_ref();
            values.iter().map(|v| n.len() + v.as_str().len() + 4).sum::<usize>()
        })
        .sum();
    payload + "NATS/1.0\r\n".len() + lines + 2
}

fn is_server_header(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-")
}

/// Whether a header must travel Base64-encoded to come back as it went.
fn needs_encoding(name: &str, value: &[u8]) -> bool {
    if name.starts_with(BASE64_HEADER_PREFIX) || is_server_header(name) {
        return true;
    }
    match std::str::from_utf8(value) {
        Err(_) => true,
        Ok(text) => text.chars().any(char::is_control) || text.trim() != text,
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    name.parse::<HeaderName>()
        .map_err(|_| format!("header name {name:?} cannot be a NATS header (printable ASCII without ':' only)"))
}

/// Append one header, encoding its value when needed.
fn append(map: &mut HeaderMap, name: &str, value: &[u8]) -> Result<(), String> {
    if needs_encoding(name, value) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        let value: HeaderValue = encoded.parse().map_err(|_| format!("header {name:?}: cannot encode"))?;
        map.append(header_name(&format!("{BASE64_HEADER_PREFIX}{name}"))?, value);
    } else {
        let text = std::str::from_utf8(value).map_err(|_| format!("header {name:?} is not text"))?;
        let value: HeaderValue = text
            .parse()
            .map_err(|_| format!("header {name:?}: value holds CR or LF"))?;
        map.append(header_name(name)?, value);
    }
    Ok(())
}

/// A raw message's headers and key as NATS headers (see the module docs).
/// A header named [`KEY_HEADER`] beside a key is refused (it would be
/// ambiguous), as is a name NATS cannot carry.
///
/// ```
/// use event_bus_nats::wire::raw_headers;
/// use openedx_events::bus::transport::RawMessage;
/// let raw = RawMessage {
///     topic: "t".into(),
///     key: Some(b"42".to_vec()),
///     headers: vec![("a".into(), b"text".to_vec()), ("b".into(), b"two\nlines".to_vec())],
///     ..Default::default()
/// };
/// let h = raw_headers(&raw).unwrap();
/// assert_eq!(h.get("a").unwrap().as_str(), "text");
/// assert_eq!(h.get("base64-b").unwrap().as_str(), "dHdvCmxpbmVz");
/// assert_eq!(h.get("ce_partitionkey").unwrap().as_str(), "42");
/// ```
pub fn raw_headers(raw: &RawMessage) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in &raw.headers {
        if raw.key.is_some() && name == KEY_HEADER {
            return Err(format!(
                "header {KEY_HEADER:?} is where this backend carries the key; the message has both"
            ));
        }
        append(&mut map, name, value)?;
    }
    if let Some(key) = &raw.key {
        append(&mut map, KEY_HEADER, key)?;
    }
    Ok(map)
}

/// An event's NATS headers: the ten CloudEvents headers of the Kafka
/// backend (same names and text values), the key under [`KEY_HEADER`],
/// and, with `msg_id`, [`MSG_ID_HEADER`] = the event id.
///
/// ```
/// use std::sync::Arc;
/// use event_bus_nats::wire::event_headers;
/// use openedx_events::bus::transport::OutgoingMessage;
/// use openedx_events::{catalog, metadata::EventsMetadata};
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let m = OutgoingMessage { topic: "dev-user-login".into(), event_type: t.clone(),
///     metadata: EventsMetadata::new(t.name(), 0), key: None, body: vec![] };
/// let h = event_headers(&m, true).unwrap();
/// assert_eq!(h.get("ce_type").unwrap().as_str(), t.name());
/// assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), m.metadata.id.hyphenated().to_string());
/// ```
pub fn event_headers(message: &OutgoingMessage, msg_id: bool) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in wire::cloudevent_headers(&message.metadata) {
        append(&mut map, &name, &value)?;
    }
    if let Some(key) = &message.key {
        append(&mut map, KEY_HEADER, key.as_text().as_bytes())?;
    }
    if msg_id {
        map.insert(MSG_ID_HEADER, message.metadata.id.hyphenated().to_string().as_str());
    }
    Ok(map)
}

/// The order received headers are given in: NATS headers are a map, so
/// the ten CloudEvents headers come first in the Python order, then the
/// others by name.
fn rank(name: &str) -> (usize, &str) {
    const ORDER: [&str; 10] = [
        wire::CE_SPECVERSION,
        wire::CONTENT_TYPE,
        wire::CE_DATACONTENTTYPE,
        wire::CE_TYPE,
        wire::CE_ID,
        wire::CE_SOURCE,
        wire::CE_TIME,
        wire::CE_MINORVERSION,
        wire::SOURCEHOST,
        wire::SOURCELIB,
    ];
    (ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len()), name)
}

/// A received message as the core's [`RawMessage`]: `Nats-*` headers left
/// out, Base64 headers decoded (one whose value is not Base64 is kept as
/// is under its full name), the key taken from [`KEY_HEADER`].
///
/// ```
/// use event_bus_nats::wire::{raw_from_nats, raw_headers};
/// use openedx_events::bus::transport::RawMessage;
/// let raw = RawMessage { topic: "t".into(), key: Some(vec![0xff]),
///     headers: vec![("Nats-Expected-Stream".into(), b"s".to_vec()), ("x".into(), vec![0, 1])],
///     value: b"v".to_vec(), timestamp: None };
/// let back = raw_from_nats("t", Some(&raw_headers(&raw).unwrap()), b"v", None);
/// assert_eq!(back, raw);
/// ```
pub fn raw_from_nats(
    topic: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    time: Option<DateTime<Utc>>,
) -> RawMessage {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut key = None;
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            if is_server_header(name) {
                continue;
            }
            for value in values {
                let (name, value) = match name.strip_prefix(BASE64_HEADER_PREFIX) {
                    Some(original) => match base64::engine::general_purpose::STANDARD.decode(value.as_str()) {
                        Ok(bytes) => (original, bytes),
                        Err(_) => (name, value.as_str().as_bytes().to_vec()),
                    },
                    None => (name, value.as_str().as_bytes().to_vec()),
                };
                if name == KEY_HEADER && key.is_none() {
                    key = Some(value);
                } else {
                    out.push((name.to_string(), value));
                }
            }
        }
    }
    // Stable: values of one name keep their order.
    out.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)));
    RawMessage {
        topic: topic.to_string(),
        key,
        headers: out,
        value: payload.to_vec(),
        timestamp: time,
    }
}

/// A delivery of `raw`: the event from its CloudEvents headers, or why
/// they cannot be understood (the loop dead-letters it).
pub fn delivery(raw: RawMessage, tag: DeliveryTag, sequence: u64, attempt: u32) -> Delivery {
    let event = wire::cloudevent_incoming(&raw);
    Delivery {
        raw,
        tag,
        position: sequence.to_string(),
        attempt,
        event,
    }
}

/// A NATS time (the server's, when it stored the message) as a chrono time.
pub fn chrono_time(t: &async_nats::datetime::DateTime) -> Option<DateTime<Utc>> {
    let nanos = t.unix_timestamp_nanos();
    let nanos = i64::try_from(nanos).ok()?;
    Some(DateTime::from_timestamp_nanos(nanos))
}

/// A chrono time as a NATS time (for seeking by time).
pub fn nats_time(t: &DateTime<Utc>) -> Option<async_nats::datetime::DateTime> {
    let nanos = t.timestamp_nanos_opt()?;
    async_nats::datetime::from_nanos(i128::from(nanos)).ok()
}

/// The stream sequence of a position (`17`), for `browse` and
/// `SeekTarget::After`.
pub fn parse_position(position: &str) -> Result<u64, String> {
    position
        .trim()
        .parse()
        .map_err(|_| format!("{position:?} is not a NATS stream sequence (a number)"))
}

#[cfg(test)]
mod tests;
