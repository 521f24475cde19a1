//! The wire format of edx-event-bus-redis 1.1.2: one stream entry per event,
//! fields `type, id, source, time, minorversion, sourcehost, sourcelib,
//! event_data` in that order, UTF-8 text except `event_data` (the
//! schemaless Avro body). No key, no CloudEvents `ce_` prefix, no content
//! type.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use openedx_events::bus::transport::{IncomingEvent, OutgoingMessage, RawMessage};
use openedx_events::metadata::{self, EventsMetadata};

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

/// A stream entry id, `<milliseconds>-<sequence>`.
///
/// ```
/// use event_bus_redis::wire::EntryId;
/// let id: EntryId = "1678773365314-7".parse().unwrap();
/// assert_eq!((id.ms, id.seq), (1678773365314, 7));
/// assert_eq!(id.to_string(), "1678773365314-7");
/// assert_eq!("42".parse::<EntryId>().unwrap(), EntryId { ms: 42, seq: 0 });
/// assert!("1-2-3".parse::<EntryId>().is_err());
/// assert!("$".parse::<EntryId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Server time in milliseconds since the epoch.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// The smallest id.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// The last id before `t` (milliseconds): everything at or after `t` is
    /// after it.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use event_bus_redis::wire::EntryId;
    /// let t = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    /// assert_eq!(EntryId::just_before(t).to_string(), "1700000000122-18446744073709551615");
    /// assert_eq!(EntryId::just_before(Utc.timestamp_millis_opt(0).unwrap()), EntryId::ZERO);
    /// ```
    pub fn just_before(t: DateTime<Utc>) -> EntryId {
        match u64::try_from(t.timestamp_millis()) {
            Ok(ms) if ms > 0 => EntryId {
                ms: ms - 1,
                seq: u64::MAX,
            },
            _ => EntryId::ZERO,
        }
    }

    /// The id as text (`<ms>-<seq>`), written into `buf` without an
    /// allocation.
    pub(crate) fn text<'a>(&self, buf: &'a mut [u8; 41]) -> &'a [u8] {
        let mut ms = Digits::default();
        let mut seq = Digits::default();
        let (ms, seq) = (ms.format(self.ms), seq.format(self.seq));
        let n = ms.len() + 1 + seq.len();
        buf[..ms.len()].copy_from_slice(ms);
        buf[ms.len()] = b'-';
        buf[ms.len() + 1..n].copy_from_slice(seq);
        &buf[..n]
    }

    /// The id as a `String` (`<ms>-<seq>`), faster than `to_string`.
    pub(crate) fn to_text(self) -> String {
        let mut buf = [0u8; 41];
        String::from_utf8_lossy(self.text(&mut buf)).into_owned()
    }

    /// The server time the id was made at.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        i64::try_from(self.ms).ok().and_then(DateTime::from_timestamp_millis)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Not a stream entry id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Redis stream entry id (<milliseconds>-<sequence>)")]
pub struct BadEntryId(pub String);

impl FromStr for EntryId {
    type Err = BadEntryId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEntryId(s.to_string());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

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
    let mut time = [0u8; 32];
    match isoformat_utc_into(&m.time, &mut time) {
        Some(t) => f(TIME, t),
        None => f(TIME, m.time_isoformat().as_bytes()),
    }
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

/// Python's `isoformat()` of a UTC time (`2024-05-06T07:08:09.123456+00:00`,
/// without the fraction when it is zero), as `EventsMetadata::time_isoformat`
/// writes it, without an allocation; `None` for the rare times it leaves
/// to `time_isoformat` (years outside 0..=9999, leap seconds).
pub(crate) fn isoformat_utc_into<'a>(t: &DateTime<Utc>, buf: &'a mut [u8; 32]) -> Option<&'a [u8]> {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn put(buf: &mut [u8], at: usize, n: u32, width: usize) {
        let mut n = n;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    put(buf, 0, year as u32, 4);
    buf[4] = b'-';
    put(buf, 5, t.month(), 2);
    buf[7] = b'-';
    put(buf, 8, t.day(), 2);
    buf[10] = b'T';
    put(buf, 11, t.hour(), 2);
    buf[13] = b':';
    put(buf, 14, t.minute(), 2);
    buf[16] = b':';
    put(buf, 17, t.second(), 2);
    let mut n = 19;
    let micros = nanos / 1000;
    if micros != 0 {
        buf[19] = b'.';
        put(buf, 20, micros, 6);
        n = 26;
    }
    buf[n..n + 6].copy_from_slice(b"+00:00");
    Some(&buf[..n + 6])
}

/// `metadata::parse_time`, with a fast path for what Python and this
/// crate write (`YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`); anything else goes
/// to `parse_time`.
fn parse_time(text: &str) -> Result<DateTime<Utc>, metadata::MetadataError> {
    fn fast(b: &[u8]) -> Option<DateTime<Utc>> {
        let frac = match b.len() {
            25 => false,
            32 if b[19] == b'.' => true,
            _ => return None,
        };
        if !b.ends_with(b"+00:00") || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<u32> {
            b[from..to]
                .iter()
                .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
        };
        let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
        let micros = if frac { num(20, 26)? } else { 0 };
        let time = chrono::NaiveTime::from_hms_micro_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, micros)?;
        Some(chrono::NaiveDateTime::new(date, time).and_utc())
    }
    match fast(text.as_bytes()) {
        Some(t) => Ok(t),
        None => metadata::parse_time(text),
    }
}

/// Decimal text of an integer without an allocation.
#[derive(Default)]
pub(crate) struct Digits([u8; 21]);

impl Digits {
    /// `n` in decimal, with a `-` if negative.
    pub(crate) fn format_signed(&mut self, n: i64) -> &[u8] {
        let len = self.format(n.unsigned_abs()).len();
        let start = self.0.len() - len;
        if n < 0 {
            self.0[start - 1] = b'-';
            &self.0[start - 1..]
        } else {
            &self.0[start..]
        }
    }

    /// `n` in decimal.
    pub(crate) fn format(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &self.0[i..]
    }
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
mod tests {
    use std::sync::Arc;

    use openedx_events::catalog;
    use openedx_events::metadata::SourceLib;
    use openedx_events::testing::shared_vectors_dir;
    use serde_json::Value as Json;

    use super::*;

    fn cases() -> Vec<Json> {
        let path = shared_vectors_dir().join("wire-cases.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json: Json = serde_json::from_str(&text).expect("wire-cases.json is JSON");
        json["cases"].as_array().expect("cases").clone()
    }

    fn header<'a>(case: &'a Json, name: &str) -> &'a str {
        case["kafka_headers_in_order"]
            .as_array()
            .expect("headers")
            .iter()
            .find(|h| h[0] == name)
            .and_then(|h| h[1].as_str())
            .unwrap_or_else(|| panic!("case {} has no {name} header", case["name"]))
    }

    /// The OutgoingMessage of a wire case: the body decoded with the catalog
    /// event type and encoded again, the metadata of the case's headers.
    fn outgoing(case: &Json) -> OutgoingMessage {
        let name = case["event_type"].as_str().expect("event_type");
        let t = catalog::get(name).unwrap_or_else(|| panic!("{name} is in the catalog"));
        let body = hex::decode(case["avro_body_hex"].as_str().expect("avro_body_hex")).expect("hex");
        let data = t.decode_data(&body).expect("the case body decodes");
        let mut m = EventsMetadata::new(name, 0);
        m.id = metadata::parse_id(header(case, "ce_id")).expect("id");
        m.source = header(case, "ce_source").to_string();
        m.sourcehost = header(case, "sourcehost").to_string();
        m.sourcelib = header(case, "sourcelib").parse().expect("sourcelib");
        m.time = metadata::parse_time(header(case, "ce_time")).expect("time");
        m.minorversion = metadata::parse_minorversion(header(case, "ce_minorversion")).expect("minorversion");
        OutgoingMessage {
            topic: case["full_topic"].as_str().expect("full_topic").to_string(),
            event_type: Arc::clone(t),
            metadata: m,
            key: None,
            body: t.encode_data(&data).expect("encodes"),
        }
    }

    #[test]
    fn entries_of_the_four_wire_cases_match_python() {
        let cases = cases();
        assert_eq!(cases.len(), 4, "wire-cases.json has 4 cases");
        for case in &cases {
            let message = outgoing(case);
            assert_eq!(message.topic, case["redis_stream"].as_str().expect("redis_stream"));
            let ours: Vec<(String, String)> = entry_fields(&message)
                .into_iter()
                .map(|(k, v)| {
                    let v = if k == EVENT_DATA {
                        hex::encode(&v)
                    } else {
                        String::from_utf8(v).expect("metadata fields are UTF-8")
                    };
                    (k, v)
                })
                .collect();
            let python: Vec<(String, String)> = case["redis_fields_in_order"]
                .as_array()
                .expect("redis_fields_in_order")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("name").to_string(),
                        p[1].as_str().expect("value").to_string(),
                    )
                })
                .collect();
            println!(
                "case {}: {} fields, ours == python: {}",
                case["name"],
                ours.len(),
                ours == python
            );
            assert_eq!(ours, python, "case {}", case["name"]);

            // And back: the entry parses to the same metadata and body.
            let fields = entry_fields(&message)
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v))
                .collect();
            let (raw, event) = parse_entry(&message.topic, "1672581600000-0".parse().expect("id"), fields);
            let event = event.expect("parses");
            assert_eq!(event.metadata, message.metadata);
            assert_eq!(event.body, message.body);
            assert_eq!(raw.value, message.body);
            assert_eq!(raw.headers.len(), 7);
            assert_eq!(raw.timestamp.map(|t| t.timestamp_millis()), Some(1_672_581_600_000));
        }
    }

    fn entry(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    const UUID: &[u8] = b"629f9892-c258-11ed-8dac-1c83413013cb";
    const LOGIN: &[u8] = b"org.openedx.learning.auth.session.login.completed.v1";

    fn reason(fields: Vec<(Vec<u8>, Vec<u8>)>) -> String {
        parse_entry("t", EntryId::ZERO, fields).1.expect_err("unusable")
    }

    #[test]
    fn unusable_entries_are_errors_not_panics() {
        let missing_type = reason(entry(&[(b"id", UUID), (b"event_data", b"x")]));
        assert!(missing_type.contains("\"type\""), "{missing_type}");
        let empty_type = reason(entry(&[(b"type", b""), (b"id", UUID), (b"event_data", b"x")]));
        assert!(empty_type.contains("\"type\""), "{empty_type}");
        let missing_id = reason(entry(&[(b"type", LOGIN), (b"event_data", b"x")]));
        assert!(missing_id.contains("\"id\""), "{missing_id}");
        let empty_id = reason(entry(&[(b"type", LOGIN), (b"id", b""), (b"event_data", b"x")]));
        assert!(empty_id.contains("\"id\""), "{empty_id}");
        let missing_body = reason(entry(&[(b"type", LOGIN), (b"id", UUID)]));
        assert!(missing_body.contains("event_data"), "{missing_body}");
        let bad_uuid = reason(entry(&[
            (b"type", LOGIN),
            (b"id", b"629f9892-zzzz"),
            (b"event_data", b"x"),
        ]));
        assert!(bad_uuid.contains("'id'"), "{bad_uuid}");
        let not_utf8 = reason(entry(&[(b"type", b"\xff\xfe"), (b"id", UUID), (b"event_data", b"x")]));
        assert!(not_utf8.contains("not UTF-8"), "{not_utf8}");
        let bad_time = reason(entry(&[
            (b"type", LOGIN),
            (b"id", UUID),
            (b"time", b"yesterday"),
            (b"event_data", b"x"),
        ]));
        assert!(bad_time.contains("'time'"), "{bad_time}");
        let naive_time = reason(entry(&[
            (b"type", LOGIN),
            (b"id", UUID),
            (b"time", b"2023-01-01T14:00:00"),
            (b"event_data", b"x"),
        ]));
        assert!(naive_time.contains("'time'"), "{naive_time}");
        let bad_minor = reason(entry(&[
            (b"type", LOGIN),
            (b"id", UUID),
            (b"minorversion", b"-1"),
            (b"event_data", b"x"),
        ]));
        assert!(bad_minor.contains("minorversion"), "{bad_minor}");
        let bad_lib = reason(entry(&[
            (b"type", LOGIN),
            (b"id", UUID),
            (b"sourcelib", b"1.x"),
            (b"event_data", b"x"),
        ]));
        assert!(bad_lib.contains("sourcelib"), "{bad_lib}");
        for r in [&missing_type, &missing_id, &missing_body, &bad_uuid] {
            assert!(r.starts_with(UNUSABLE), "{r}");
        }
        assert_eq!(reason(Vec::new()), format!("{UNUSABLE}: missing \"event_data\" field"));
    }

    #[test]
    fn odd_but_usable_entries() {
        // Non-UTF-8 field names and values outside the metadata are kept as
        // headers; empty optional fields take the defaults; the body may be
        // anything (its decoding is the core's business); the last of a
        // repeated field wins, as in Python's dict.
        let (raw, event) = parse_entry(
            "t",
            EntryId { ms: 5, seq: 1 },
            entry(&[
                (b"\xffname", b"\x00\xff"),
                (b"type", b"first.v1"),
                (b"type", LOGIN),
                (b"id", UUID),
                (b"source", b""),
                (b"time", b"2023-01-01T14:00:00Z"),
                (b"sourcelib", b"11.2.0.1"),
                (b"event_data", b""),
            ]),
        );
        let event = event.expect("usable");
        assert_eq!(event.event_type.as_bytes(), LOGIN);
        assert_eq!(event.metadata.sourcelib, SourceLib(vec![11, 2, 0, 1]));
        assert!(event.metadata.source.starts_with("openedx/"));
        assert!(event.body.is_empty());
        assert_eq!(raw.headers[0].0, "\u{fffd}name");
        assert_eq!(raw.headers[0].1, b"\x00\xff");
        assert_eq!(raw.headers.len(), 7);
    }

    #[test]
    fn raw_messages_keep_their_headers_in_order() {
        let raw = RawMessage {
            topic: "t".into(),
            key: Some(b"ignored".to_vec()),
            headers: vec![
                ("x-garbage".into(), b"1".to_vec()),
                ("event_data".into(), b"dropped".to_vec()),
                ("dlq_reason".into(), b"undecodable".to_vec()),
            ],
            value: b"\xff\xfe body".to_vec(),
            timestamp: None,
        };
        let fields = raw_entry_fields(&raw);
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x-garbage", "dlq_reason", "event_data"]);
        assert_eq!(fields[2].1, raw.value);
    }

    #[test]
    fn fast_sourcelibs_are_the_core_ones() {
        for parts in [vec![], vec![0], vec![11, 2, 0], vec![u32::MAX; 6], vec![7; 40]] {
            let lib = metadata::SourceLib(parts);
            let mut buf = [0u8; 64];
            match sourcelib_into(&lib, &mut buf) {
                Some(b) => assert_eq!(b, lib.to_string().as_bytes()),
                None => assert!(lib.to_string().len() > 64),
            }
        }
    }

    #[test]
    fn fast_times_are_the_core_times() {
        use chrono::TimeZone;
        // xorshift: enough spread without a dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut times: Vec<DateTime<Utc>> = vec![
            Utc.timestamp_opt(0, 0).single().expect("epoch"),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single().expect("year 1"),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .single()
                .expect("year 9999"),
            Utc.timestamp_opt(1_700_000_000, 1_000).single().expect("1 µs"),
            Utc.timestamp_opt(1_700_000_000, 999).single().expect("below 1 µs"),
        ];
        for _ in 0..2000 {
            let secs = (next() % 315_000_000_000) as i64 - 62_000_000_000;
            let nanos = if next() % 4 == 0 {
                0
            } else {
                (next() % 1_000_000_000) as u32
            };
            times.push(Utc.timestamp_opt(secs, nanos).single().expect("time"));
        }
        for t in times {
            let core = openedx_events::datetime::isoformat_utc(&t);
            let mut buf = [0u8; 32];
            let ours = isoformat_utc_into(&t, &mut buf).map(|b| String::from_utf8_lossy(b).into_owned());
            if let Some(ours) = &ours {
                assert_eq!(ours, &core, "{t:?}");
            }
            assert_eq!(parse_time(&core).ok(), metadata::parse_time(&core).ok(), "{core}");
        }
        for text in [
            "2024-05-06T07:08:09+00:00",
            "2024-05-06T07:08:09.000001+00:00",
            "2024-02-30T07:08:09+00:00",
            "2024-05-06T24:08:09+00:00",
            "2024-05-06T07:08:60+00:00",
            "2024-05-06T07:08:09.12345x+00:00",
            "2024-05-06T07:08:09.123456+01:00",
            "2024-05-06T07:08:09.123456Z",
            "2024-05-06 07:08:09+00:00",
            "+024-05-06T07:08:09+00:00",
            "2024-05-06T07:08:09",
        ] {
            assert_eq!(
                parse_time(text).map_err(|e| e.to_string()),
                metadata::parse_time(text).map_err(|e| e.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn entry_ids() {
        assert!("".parse::<EntryId>().is_err());
        assert!("-1".parse::<EntryId>().is_err());
        assert!("1-".parse::<EntryId>().is_err());
        assert!("18446744073709551616-0".parse::<EntryId>().is_err());
        let a: EntryId = "5-10".parse().expect("id");
        let b: EntryId = "10-2".parse().expect("id");
        assert!(a < b);
        assert_eq!(EntryId { ms: u64::MAX, seq: 0 }.timestamp(), None);
    }
}
