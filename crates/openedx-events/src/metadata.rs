//! `EventsMetadata`: the OEP-41 envelope that travels with every event.

use std::fmt;
use std::str::FromStr;
use std::sync::{OnceLock, RwLock};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value as Json};
use uuid::Uuid;

use crate::datetime::{isoformat_utc, IsoDateTime};
use crate::pyjson::{dumps, DumpOptions};

/// The openedx-events release whose catalog and wire format this crate
/// implements; the default `sourcelib` of metadata this process creates, so
/// consumers see the version of the event definitions, as with Python peers.
pub const OPENEDX_EVENTS_VERSION: [u32; 3] = [11, 2, 0];

/// The `source` service name when none is configured.
pub const SERVICE_NAME_UNSET: &str = "SERVICE_NAME_UNSET";

/// Metadata of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsMetadata {
    /// The event type name.
    pub event_type: String,
    /// Unique event id (UUID version 1 by default).
    pub id: Uuid,
    /// Minor version of the event type.
    pub minorversion: u32,
    /// `openedx/<service>/web`.
    pub source: String,
    /// Host that produced the event.
    pub sourcehost: String,
    /// When the event happened (UTC, microsecond precision).
    pub time: DateTime<Utc>,
    /// Version of the event library that produced the event.
    pub sourcelib: SourceLib,
}

/// A library version as a tuple of integers, written dotted (`11.2.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLib(pub Vec<u32>);

/// Metadata that cannot be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A field is missing.
    #[error("metadata field '{0}' is missing")]
    Missing(&'static str),
    /// A field has a bad value.
    #[error("metadata field '{field}' is invalid: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> MetadataError {
    MetadataError::Invalid {
        field,
        reason: reason.into(),
    }
}

struct Defaults {
    /// `openedx/<service>/web`, computed when the service name is set.
    source: String,
}

fn source_for(service: Option<&str>) -> String {
    format!("openedx/{}/web", service.unwrap_or(SERVICE_NAME_UNSET))
}

fn defaults() -> &'static RwLock<Defaults> {
    static D: OnceLock<RwLock<Defaults>> = OnceLock::new();
    D.get_or_init(|| {
        let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let service = from_env("EVENTS_SERVICE_NAME").or_else(|| from_env("SERVICE_VARIANT"));
        RwLock::new(Defaults {
            source: source_for(service.as_deref()),
        })
    })
}

/// Set the service name used in the default `source` (`openedx/<name>/web`);
/// the `EVENTS_SERVICE_NAME` (then `SERVICE_VARIANT`) environment variable
/// sets it otherwise.
pub fn set_service_name(name: Option<String>) {
    if let Ok(mut d) = defaults().write() {
        d.source = source_for(name.as_deref().filter(|n| !n.is_empty()));
    }
}

/// The default `source`: `openedx/<service>/web`.
pub fn default_source() -> String {
    defaults()
        .read()
        .map(|d| d.source.clone())
        .unwrap_or_else(|_| source_for(None))
}

/// This host's name.
pub fn default_sourcehost() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| gethostname::gethostname().to_string_lossy().into_owned())
        .clone()
}

/// A new time-based (version 1) UUID, as Python's `uuid1()`. The node id is
/// random per process (with the multicast bit set, as RFC 4122 asks for
/// random node ids).
pub fn new_event_id() -> Uuid {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    let node = NODE.get_or_init(|| {
        let mut n: [u8; 6] = rand::random();
        n[0] |= 0x01;
        n
    });
    Uuid::now_v1(node)
}

fn now_micros() -> DateTime<Utc> {
    IsoDateTime::now().to_utc().unwrap_or_else(Utc::now)
}

impl EventsMetadata {
    /// Fresh metadata for an event of this type: new id, now, this host and
    /// service, this library.
    ///
    /// ```
    /// use openedx_events::metadata::EventsMetadata;
    /// let m = EventsMetadata::new("org.openedx.learning.auth.session.login.completed.v1", 0);
    /// assert_eq!(m.id.get_version_num(), 1);
    /// assert_eq!(m.sourcelib.to_string(), "11.2.0");
    /// assert!(m.source.starts_with("openedx/"));
    /// ```
    pub fn new(event_type: impl Into<String>, minorversion: u32) -> Self {
        EventsMetadata {
            event_type: event_type.into(),
            id: new_event_id(),
            minorversion,
            source: default_source(),
            sourcehost: default_sourcehost(),
            time: now_micros(),
            sourcelib: SourceLib(OPENEDX_EVENTS_VERSION.to_vec()),
        }
    }

    /// The time in Python `isoformat()` text.
    pub fn time_isoformat(&self) -> String {
        isoformat_utc(&self.time)
    }

    /// The JSON form of Python's `to_json_data()`: keys in field order, the
    /// id as text, the time in isoformat, `sourcelib` as a list.
    pub fn to_json_data(&self) -> Json {
        let mut m = Map::new();
        m.insert("event_type".into(), json!(self.event_type));
        m.insert("id".into(), json!(self.id.hyphenated().to_string()));
        m.insert("minorversion".into(), json!(self.minorversion));
        m.insert("source".into(), json!(self.source));
        m.insert("sourcehost".into(), json!(self.sourcehost));
        m.insert("time".into(), json!(self.time_isoformat()));
        m.insert("sourcelib".into(), json!(self.sourcelib.0));
        Json::Object(m)
    }

    /// `to_json()`: the JSON form as Python's `json.dumps` writes it.
    ///
    /// ```
    /// use openedx_events::metadata::EventsMetadata;
    /// let m = EventsMetadata::from_json(r#"{"event_type": "t", "id": "f9b0948a-e9c2-11f1-8e48-02fc00000001",
    ///   "minorversion": 3, "source": "openedx/SERVICE_NAME_UNSET/web", "sourcehost": "vm",
    ///   "time": "2026-11-26T17:58:24.722289+00:00", "sourcelib": [11, 2, 0]}"#).unwrap();
    /// assert_eq!(m.minorversion, 3);
    /// assert_eq!(m.to_json(), r#"{"event_type": "t", "id": "f9b0948a-e9c2-11f1-8e48-02fc00000001", "minorversion": 3, "source": "openedx/SERVICE_NAME_UNSET/web", "sourcehost": "vm", "time": "2026-11-26T17:58:24.722289+00:00", "sourcelib": [11, 2, 0]}"#);
    /// ```
    pub fn to_json(&self) -> String {
        dumps(&self.to_json_data(), DumpOptions::default())
    }

    /// Parse the JSON form. Unlike Python's `from_json`, `minorversion` is
    /// kept. Only `event_type` is required; a missing field takes its default
    /// (new id, now, this host...), as `EventsMetadata(...)` does.
    pub fn from_json(text: &str) -> Result<Self, MetadataError> {
        let json: Json = serde_json::from_str(text).map_err(|e| invalid("(json)", e.to_string()))?;
        Self::from_json_value(&json)
    }

    /// See [`EventsMetadata::from_json`].
    pub fn from_json_value(json: &Json) -> Result<Self, MetadataError> {
        let obj = json
            .as_object()
            .ok_or_else(|| invalid("(json)", "metadata must be a JSON object"))?;
        let text = |field: &'static str| -> Result<Option<&str>, MetadataError> {
            match obj.get(field) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(invalid(field, format!("expected a string, found {other}"))),
            }
        };
        let event_type = text("event_type")?.ok_or(MetadataError::Missing("event_type"))?;
        let mut m = EventsMetadata::new(event_type, 0);
        if let Some(id) = text("id")? {
            m.id = parse_id(id)?;
        }
        match obj.get("minorversion") {
            None | Some(Json::Null) => {}
            Some(v) => {
                m.minorversion = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("minorversion", format!("expected a non-negative integer, found {v}")))?
            }
        }
        if let Some(s) = text("source")? {
            m.source = s.to_string();
        }
        if let Some(s) = text("sourcehost")? {
            m.sourcehost = s.to_string();
        }
        if let Some(t) = text("time")? {
            m.time = parse_time(t)?;
        }
        match obj.get("sourcelib") {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                m.sourcelib = SourceLib(
                    items
                        .iter()
                        .map(|i| i.as_u64().and_then(|n| u32::try_from(n).ok()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| invalid("sourcelib", "expected a list of non-negative integers"))?,
                )
            }
            Some(Json::String(s)) => m.sourcelib = s.parse()?,
            Some(other) => return Err(invalid("sourcelib", format!("expected a list, found {other}"))),
        }
        Ok(m)
    }
}

/// Parse an event id (any UUID text form).
pub fn parse_id(s: &str) -> Result<Uuid, MetadataError> {
    Uuid::parse_str(s).map_err(|e| invalid("id", format!("{s:?}: {e}")))
}

/// Parse a metadata time: ISO 8601 with an offset (`Z` accepted); a non-UTC
/// offset is converted to UTC. A time without offset is rejected, as Python
/// requires an aware UTC datetime.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, MetadataError> {
    let t = IsoDateTime::parse(s).map_err(|e| invalid("time", e.to_string()))?;
    t.to_utc()
        .ok_or_else(|| invalid("time", format!("{s:?} has no UTC offset")))
}

/// Parse a minor version (decimal text).
pub fn parse_minorversion(s: &str) -> Result<u32, MetadataError> {
    s.trim()
        .parse()
        .map_err(|_| invalid("minorversion", format!("{s:?} is not a non-negative integer")))
}

impl fmt::Display for SourceLib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl FromStr for SourceLib {
    type Err = MetadataError;
    /// Dotted integers: `1.2.3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split('.')
            .map(|p| p.parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map(SourceLib)
            .map_err(|_| invalid("sourcelib", format!("{s:?} is not a dotted version")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_json_rejects_bad_fields_with_their_name() {
        let e = EventsMetadata::from_json(r#"{"event_type": "t", "id": "nope"}"#).unwrap_err();
        assert!(e.to_string().contains("'id'"), "{e}");
        let e = EventsMetadata::from_json(r#"{"event_type": "t", "time": "2023-01-01T00:00:00"}"#).unwrap_err();
        assert!(e.to_string().contains("'time'"), "{e}");
        let e = EventsMetadata::from_json(r#"{"id": "629f9892-c258-11ed-8dac-1c83413013cb"}"#).unwrap_err();
        assert_eq!(e, MetadataError::Missing("event_type"));
    }

    #[test]
    fn time_converts_offsets_and_keeps_micros() {
        let t = parse_time("2023-03-14T07:56:05.314331+02:00").unwrap();
        assert_eq!(isoformat_utc(&t), "2023-03-14T05:56:05.314331+00:00");
        assert_eq!(
            isoformat_utc(&parse_time("2023-01-01T14:00:00Z").unwrap()),
            "2023-01-01T14:00:00+00:00"
        );
    }

    #[test]
    fn sourcelib_round_trip() {
        let s: SourceLib = "1.2.3".parse().unwrap();
        assert_eq!(s.0, vec![1, 2, 3]);
        assert_eq!(s.to_string(), "1.2.3");
        assert!("1.x".parse::<SourceLib>().is_err());
    }
}
