//! The wire format of edx-event-bus-redis 1.1.2: one stream entry per event,
//! fields `type, id, source, time, minorversion, sourcehost, sourcelib,
//! event_data` in that order, UTF-8 text except `event_data` (the
//! schemaless Avro body). No key, no CloudEvents `ce_` prefix, no content
//! type.

use chrono::{DateTime, Utc};
use openedx_events::bus::transport::{IncomingEvent, OutgoingMessage, RawMessage};
use openedx_events::datetime::{isoformat_utc_into, parse_isoformat_utc, ISOFORMAT_MAX_LEN};
use openedx_events::metadata::{self, EventsMetadata};

use crate::digits::Digits;
pub use crate::entry_id::{BadEntryId, EntryId};

/// Field: the event type.
pub const TYPE: &str = "type";
/// Field: the event id (UUID text).
pub const ID: &str = "id";
/// Field: the source (`openedx/<service>/web`).
pub const SOURCE: &str = "source";
/// Field: the time (Python `isoformat()`).
pub const TIME: &str = "time";
/// Field: the minor version (decimal).
pub const MINORVERSION: &str = "minorversion";
/// Field: the producing host.
pub const SOURCEHOST: &str = "sourcehost";
/// Field: the producing library version (dotted).
pub const SOURCELIB: &str = "sourcelib";
/// Field: the schemaless Avro body.
pub const EVENT_DATA: &str = "event_data";

/// The prefix of every "cannot understand this entry" reason, as in
/// edx-event-bus-redis.
const UNUSABLE: &str = "Error determining metadata from message headers";

/// The seven metadata fields of an event, in the Python order.
///
/// ```
/// use event_bus_redis::wire::metadata_fields;
/// use openedx_events::metadata::EventsMetadata;
/// let m = EventsMetadata::new("org.openedx.learning.auth.session.login.completed.v1", 0);
/// let fields = metadata_fields(&m);
/// let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
/// assert_eq!(names, ["type", "id", "source", "time", "minorversion", "sourcehost", "sourcelib"]);
/// ```
pub fn metadata_fields(m: &EventsMetadata) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::with_capacity(8);
    visit_metadata_fields(m, &mut |name, value| fields.push((name.to_string(), value.to_vec())));
    fields
}

/// Call `f` with each metadata field (name, value) in the Python order,
/// without building a list (the `XADD` of a publish writes them straight
/// into the command).
pub(crate) fn visit_metadata_fields(m: &EventsMetadata, f: &mut dyn FnMut(&'static str, &[u8])) {
    let mut id = [0u8; 36];
    f(TYPE, m.event_type.as_bytes());
    f(ID, m.id.hyphenated().encode_lower(&mut id).as_bytes());
    f(SOURCE, m.source.as_bytes());
    let mut time = [0u8; ISOFORMAT_MAX_LEN];
    f(TIME, isoformat_utc_into(&m.time, &mut time));
    let mut digits = Digits::default();
    f(MINORVERSION, digits.format(u64::from(m.minorversion)));
    f(SOURCEHOST, m.sourcehost.as_bytes());
    let mut lib = [0u8; 64];
    match sourcelib_into(&m.sourcelib, &mut lib) {
        Some(l) => f(SOURCELIB, l),
        None => f(SOURCELIB, m.sourcelib.to_string().as_bytes()),
    }
}

/// A library version, dotted (as its `Display`), without an allocation;
/// `None` if it does not fit `buf`.
fn sourcelib_into<'a>(lib: &metadata::SourceLib, buf: &'a mut [u8; 64]) -> Option<&'a [u8]> {
    let mut n = 0;
    for (i, part) in lib.0.iter().enumerate() {
        if i > 0 {
            *buf.get_mut(n)? = b'.';
            n += 1;
        }
        let mut d = Digits::default();
        let d = d.format(u64::from(*part));
        buf.get_mut(n..n + d.len())?.copy_from_slice(d);
        n += d.len();
    }
    Some(&buf[..n])
}

/// The `time` field: the core's fast path for the UTC form Python writes,
/// anything else through the core's parser.
fn parse_time(text: &str) -> Result<DateTime<Utc>, metadata::MetadataError> {
    parse_isoformat_utc(text).map_or_else(|| metadata::parse_time(text), Ok)
}

/// The entry of an event: the metadata fields, then `event_data`. The key is
/// not written (edx-event-bus-redis ignores `event_key_field`).
pub fn entry_fields(message: &OutgoingMessage) -> Vec<(String, Vec<u8>)> {
    let mut fields = metadata_fields(&message.metadata);
    fields.push((EVENT_DATA.into(), message.body.clone()));
    fields
}

/// The entry of a raw message (dead letters, requeues): its headers in
/// order, then `event_data` = the value. A header named `event_data` is
/// dropped (the value is the body); the key, if any, is not written.
pub fn raw_entry_fields(message: &RawMessage) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<(String, Vec<u8>)> = message
        .headers
        .iter()
        .filter(|(k, _)| k != EVENT_DATA)
        .cloned()
        .collect();
    fields.push((EVENT_DATA.into(), message.value.clone()));
    fields
}

/// A stream entry as a [`RawMessage`] (every field but `event_data` as a
/// header, in stream order; `event_data` as the value; the entry id's time
/// as the timestamp) and the event in it, or why it cannot be understood.
/// Never panics, whatever the bytes.
///
/// ```
/// use event_bus_redis::wire::{parse_entry, EntryId};
/// let fields = vec![
///     (b"type".to_vec(), b"org.openedx.learning.auth.session.login.completed.v1".to_vec()),
///     (b"id".to_vec(), b"629f9892-c258-11ed-8dac-1c83413013cb".to_vec()),
///     (b"event_data".to_vec(), vec![0xf6, 0x01]),
/// ];
/// let (raw, event) = parse_entry("dev-user-login", "1672581600000-0".parse().unwrap(), fields);
/// assert_eq!(raw.headers.len(), 2);
/// assert_eq!(raw.value, [0xf6, 0x01]);
/// assert_eq!(event.unwrap().metadata.id.to_string(), "629f9892-c258-11ed-8dac-1c83413013cb");
///
/// let (_, event) = parse_entry("t", EntryId::ZERO, vec![(b"type".to_vec(), b"x".to_vec())]);
/// assert!(event.unwrap_err().contains("event_data"));
/// ```
pub fn parse_entry(
    topic: &str,
    id: EntryId,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
) -> (RawMessage, Result<IncomingEvent, String>) {
    let mut headers = Vec::with_capacity(fields.len());
    let mut body: Option<Vec<u8>> = None;
    for (name, value) in fields {
        if name == EVENT_DATA.as_bytes() {
            // A repeated field: the last one wins, as in Python's dict.
            body = Some(value);
        } else {
            let name = String::from_utf8(name).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            headers.push((name, value));
        }
    }
    finish_entry(topic, id, headers, body)
}

/// [`parse_entry`] from borrowed fields (slices of a reply), each copied
/// once.
pub(crate) fn parse_entry_from<'a>(
    topic: &str,
    id: EntryId,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    count: usize,
) -> (RawMessage, Result<IncomingEvent, String>) {
    let mut headers = Vec::with_capacity(count);
    let mut body: Option<&[u8]> = None;
    for (name, value) in fields {
        if name == EVENT_DATA.as_bytes() {
            body = Some(value);
        } else {
            let name = match std::str::from_utf8(name) {
                Ok(n) => n.to_string(),
                Err(_) => String::from_utf8_lossy(name).into_owned(),
            };
            headers.push((name, value.to_vec()));
        }
    }
    finish_entry(topic, id, headers, body.map(<[u8]>::to_vec))
}

fn finish_entry(
    topic: &str,
    id: EntryId,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
) -> (RawMessage, Result<IncomingEvent, String>) {
    let event = match &body {
        None => Err(format!("{UNUSABLE}: missing \"{EVENT_DATA}\" field")),
        Some(body) => metadata_from_fields(&headers)
            .map_err(|e| format!("{UNUSABLE}: {e}"))
            .map(|metadata| IncomingEvent {
                event_type: metadata.event_type.clone(),
                metadata,
                body: body.clone(),
                writer_schema: None,
            }),
    };
    let raw = RawMessage {
        topic: topic.to_string(),
        key: None,
        headers,
        value: body.unwrap_or_default(),
        timestamp: id.timestamp(),
    };
    (raw, event)
}

/// The value of a field as text: empty counts as absent.
fn text<'a>(value: Option<&'a [u8]>, name: &str) -> Result<Option<&'a str>, String> {
    match value {
        None => Ok(None),
        Some([]) => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .map(Some)
            .map_err(|_| format!("field \"{name}\" is not UTF-8")),
    }
}

/// Rebuild the metadata from entry fields, with the rules of
/// edx-event-bus-redis except one: `type` is required; `id` is required too
/// (Python makes up a new id when it is missing, which breaks
/// deduplication and tracing, so the entry is dead-lettered instead, as the
/// Kafka backend does); the others are optional (absent or empty: the
/// default of this process); a bad id, time, minor version or library
/// version is an error; unknown fields are ignored. The last of repeated
/// fields wins (Python reads the entry into a dict).
///
/// ```
/// use event_bus_redis::wire::metadata_from_fields;
/// let f = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
///     pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
/// };
/// let m = metadata_from_fields(&f(&[("type", "t.v1"), ("id", "629f9892-c258-11ed-8dac-1c83413013cb"),
///     ("time", "2023-01-01T14:00:00+00:00"), ("sourcelib", "1.2.3"), ("minorversion", "")])).unwrap();
/// assert_eq!(m.sourcelib.to_string(), "1.2.3");
/// assert_eq!(m.minorversion, 0);
/// assert!(metadata_from_fields(&f(&[("type", "t.v1")])).unwrap_err().contains("\"id\""));
/// assert!(metadata_from_fields(&f(&[("type", "t.v1"), ("id", "nope")])).unwrap_err().contains("id"));
/// ```
pub fn metadata_from_fields(fields: &[(String, Vec<u8>)]) -> Result<EventsMetadata, String> {
    // One pass over the fields; the last of each name wins.
    let mut found: [Option<&[u8]>; 7] = [None; 7];
    for (k, v) in fields {
        let slot = match k.as_str() {
            TYPE => 0,
            ID => 1,
            SOURCE => 2,
            TIME => 3,
            MINORVERSION => 4,
            SOURCEHOST => 5,
            SOURCELIB => 6,
            _ => continue,
        };
        found[slot] = Some(v.as_slice());
    }
    let event_type = text(found[0], TYPE)?.ok_or("Missing \"type\" field on message")?;
    let id = text(found[1], ID)?.ok_or(
        "Missing \"id\" field on message, cannot continue (edx-event-bus-redis would make up a new id; \
         this consumer dead-letters the entry instead)",
    )?;
    let id = metadata::parse_id(id).map_err(|e| e.to_string())?;
    let source = text(found[2], SOURCE)?;
    let time = text(found[3], TIME)?
        .map(|t| parse_time(t).map_err(|e| e.to_string()))
        .transpose()?;
    let minorversion = text(found[4], MINORVERSION)?
        .map(|v| metadata::parse_minorversion(v).map_err(|e| e.to_string()))
        .transpose()?
        .unwrap_or(0);
    let sourcehost = text(found[5], SOURCEHOST)?;
    let sourcelib = text(found[6], SOURCELIB)?
        .map(|l| l.parse().map_err(|e: metadata::MetadataError| e.to_string()))
        .transpose()?;
    Ok(match (source, time, sourcehost, sourcelib) {
        (Some(source), Some(time), Some(sourcehost), Some(sourcelib)) => EventsMetadata {
            event_type: event_type.to_string(),
            id,
            minorversion,
            source: source.to_string(),
            sourcehost: sourcehost.to_string(),
            time,
            sourcelib,
        },
        (source, time, sourcehost, sourcelib) => {
            // Some are missing: the defaults of this process (as Python).
            let mut m = EventsMetadata::new(event_type, minorversion);
            m.id = id;
            if let Some(s) = source {
                m.source = s.to_string();
            }
            if let Some(t) = time {
                m.time = t;
            }
            if let Some(h) = sourcehost {
                m.sourcehost = h.to_string();
            }
            if let Some(l) = sourcelib {
                m.sourcelib = l;
            }
            m
        }
    })
}

#[cfg(test)]
mod tests;
