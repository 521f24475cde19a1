//! Metadata as CloudEvents headers, the way edx-event-bus-kafka writes them;
//! shared by every backend that has message headers (Kafka, Pulsar, SQLite,
//! memory). Redis has its own field names (see that backend).

use crate::metadata::{self, EventsMetadata};

use super::transport::{IncomingEvent, OutgoingMessage, RawMessage};

/// The header names, in the order Python writes them.
pub const CE_SPECVERSION: &str = "ce_specversion";
/// `content-type`.
pub const CONTENT_TYPE: &str = "content-type";
/// `ce_datacontenttype`.
pub const CE_DATACONTENTTYPE: &str = "ce_datacontenttype";
/// The event type.
pub const CE_TYPE: &str = "ce_type";
/// The event id.
pub const CE_ID: &str = "ce_id";
/// The source.
pub const CE_SOURCE: &str = "ce_source";
/// The time.
pub const CE_TIME: &str = "ce_time";
/// The minor version.
pub const CE_MINORVERSION: &str = "ce_minorversion";
/// The source host.
pub const SOURCEHOST: &str = "sourcehost";
/// The source library version.
pub const SOURCELIB: &str = "sourcelib";
/// The content type of the body.
pub const AVRO_CONTENT_TYPE: &str = "application/avro";

/// The ten headers of an event, in the Python order:
/// `ce_specversion, content-type, ce_datacontenttype, ce_type, ce_id,
/// ce_source, ce_time, ce_minorversion, sourcehost, sourcelib`.
///
/// ```
/// use openedx_events::bus::wire::cloudevent_headers;
/// use openedx_events::metadata::EventsMetadata;
/// let m = EventsMetadata::new("org.openedx.learning.auth.session.login.completed.v1", 0);
/// let h = cloudevent_headers(&m);
/// assert_eq!(h[0], ("ce_specversion".to_string(), b"1.0".to_vec()));
/// assert_eq!(h[3].1, m.event_type.as_bytes());
/// assert_eq!(h.len(), 10);
/// ```
pub fn cloudevent_headers(m: &EventsMetadata) -> Vec<(String, Vec<u8>)> {
    vec![
        (CE_SPECVERSION.into(), b"1.0".to_vec()),
        (CONTENT_TYPE.into(), AVRO_CONTENT_TYPE.as_bytes().to_vec()),
        (CE_DATACONTENTTYPE.into(), AVRO_CONTENT_TYPE.as_bytes().to_vec()),
        (CE_TYPE.into(), m.event_type.as_bytes().to_vec()),
        (CE_ID.into(), m.id.hyphenated().to_string().into_bytes()),
        (CE_SOURCE.into(), m.source.as_bytes().to_vec()),
        (CE_TIME.into(), m.time_isoformat().into_bytes()),
        (CE_MINORVERSION.into(), m.minorversion.to_string().into_bytes()),
        (SOURCEHOST.into(), m.sourcehost.as_bytes().to_vec()),
        (SOURCELIB.into(), m.sourcelib.to_string().into_bytes()),
    ]
}

/// The single value of a header: missing is `Ok(None)`, several is an error.
fn single<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Result<Option<&'a str>, String> {
    let mut found = headers.iter().filter(|(k, _)| k == name);
    let first = found.next();
    if found.next().is_some() {
        return Err(format!(
            "Multiple \"{name}\" headers on message. Cannot determine correct metadata."
        ));
    }
    match first {
        None => Ok(None),
        Some((_, v)) => std::str::from_utf8(v)
            .map(Some)
            .map_err(|_| format!("header \"{name}\" is not UTF-8")),
    }
}

/// Rebuild the event type and metadata from CloudEvents headers, with the
/// rules of edx-event-bus-kafka: `ce_type` exactly once; `ce_id` required;
/// the other headers optional (a missing one takes the default) but never
/// repeated.
pub fn metadata_from_cloudevent_headers(headers: &[(String, Vec<u8>)]) -> Result<EventsMetadata, String> {
    let event_type = single(headers, CE_TYPE)?.ok_or("Missing \"ce_type\" header on message")?;
    let id = single(headers, CE_ID)?.ok_or("Missing \"ce_id\" header on message, cannot continue")?;
    let mut m = EventsMetadata::new(event_type, 0);
    m.id = metadata::parse_id(id).map_err(|e| e.to_string())?;
    if let Some(s) = single(headers, CE_SOURCE)? {
        m.source = s.to_string();
    }
    if let Some(t) = single(headers, CE_TIME)? {
        m.time = metadata::parse_time(t).map_err(|e| e.to_string())?;
    }
    if let Some(v) = single(headers, CE_MINORVERSION)? {
        m.minorversion = metadata::parse_minorversion(v).map_err(|e| e.to_string())?;
    }
    if let Some(h) = single(headers, SOURCEHOST)? {
        m.sourcehost = h.to_string();
    }
    if let Some(l) = single(headers, SOURCELIB)? {
        m.sourcelib = l.parse().map_err(|e: metadata::MetadataError| e.to_string())?;
    }
    Ok(m)
}

/// An event as a message with CloudEvents headers, the schemaless body as
/// value and the key as text (the mapping of the SQLite, memory and Pulsar
/// backends).
pub fn cloudevent_message(message: &OutgoingMessage) -> RawMessage {
    RawMessage {
        topic: message.topic.clone(),
        key: message.key.as_ref().map(|k| k.as_text().into_bytes()),
        headers: cloudevent_headers(&message.metadata),
        value: message.body.clone(),
        timestamp: Some(message.metadata.time),
    }
}

/// The event in a message with CloudEvents headers and a schemaless body.
/// Hostile headers are an error for this message only, even one that made
/// a parser panic ([`parse_guarded`](super::transport::parse_guarded)).
pub fn cloudevent_incoming(raw: &RawMessage) -> Result<IncomingEvent, String> {
    let metadata = super::transport::parse_guarded(|| metadata_from_cloudevent_headers(&raw.headers))
        .map_err(|e| format!("Error determining metadata from message headers: {e}"))?;
    Ok(IncomingEvent {
        event_type: metadata.event_type.clone(),
        metadata,
        body: raw.value.clone(),
        writer_schema: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn round_trip_and_rules() {
        let m = EventsMetadata::new("t.v1", 2);
        assert_eq!(metadata_from_cloudevent_headers(&cloudevent_headers(&m)).unwrap(), m);
        let e = metadata_from_cloudevent_headers(&h(&[("ce_id", "629f9892-c258-11ed-8dac-1c83413013cb")])).unwrap_err();
        assert!(e.contains("ce_type"), "{e}");
        let e =
            metadata_from_cloudevent_headers(&h(&[("ce_type", "t"), ("ce_type", "u"), ("ce_id", "x")])).unwrap_err();
        assert!(e.contains("Multiple"), "{e}");
        let e = metadata_from_cloudevent_headers(&h(&[("ce_type", "t")])).unwrap_err();
        assert!(e.contains("ce_id"), "{e}");
        let e = metadata_from_cloudevent_headers(&h(&[("ce_type", "t"), ("ce_id", "not-a-uuid")])).unwrap_err();
        assert!(e.contains("id"), "{e}");
        let ok = metadata_from_cloudevent_headers(&h(&[
            ("ce_type", "t"),
            ("ce_id", "629f9892-c258-11ed-8dac-1c83413013cb"),
        ]))
        .unwrap();
        assert_eq!(ok.minorversion, 0);
    }

    #[test]
    fn hostile_headers_are_an_error_for_the_message_not_a_crash() {
        let raw = RawMessage {
            topic: "t".into(),
            key: None,
            headers: h(&[
                ("ce_type", "t.v1"),
                ("ce_id", "629f9892-c258-11ed-8dac-1c83413013cb"),
                ("ce_time", "2024-05-06T00:00:00+1\u{e9}1"),
            ]),
            value: vec![],
            timestamp: None,
        };
        assert!(cloudevent_incoming(&raw).is_err());
    }
}
