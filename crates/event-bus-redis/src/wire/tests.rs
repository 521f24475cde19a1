//! Unit tests of the wire format: the entries of the shared wire cases,
//! unusable and odd entries, raw messages.

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
