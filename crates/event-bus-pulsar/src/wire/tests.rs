//! Unit tests of the wire mapping: properties, keys, times, positions and
//! the round trip of received messages.

use super::*;
use openedx_events::bus::wire::cloudevent_headers;
use openedx_events::catalog;
use openedx_events::config::extract_event_key;
use openedx_events::metadata::EventsMetadata;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

fn login_message(key_field: &str) -> (OutgoingMessage, EventsMetadata) {
    let t = catalog::get(LOGIN).unwrap();
    let data = t
        .data_from_json(&serde_json::json!({"user": {"id": 42, "is_active": true,
            "pii": {"username": "ünï", "email": "u@example.com", "name": "U"}}}))
        .unwrap();
    let mut metadata = EventsMetadata::new(t.name(), 3);
    metadata.time = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.123456Z")
        .unwrap()
        .with_timezone(&Utc);
    let message = OutgoingMessage {
        topic: "dev-user-login".into(),
        event_type: t.clone(),
        metadata: metadata.clone(),
        key: Some(extract_event_key(t, &data, key_field).unwrap()),
        body: t.encode_data(&data).unwrap(),
    };
    (message, metadata)
}

#[test]
fn properties_are_the_ten_cloudevents_headers_in_order() {
    let (message, metadata) = login_message("user.pii.username");
    let record = event_record(&message).unwrap();
    let names: Vec<&str> = record.properties.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "ce_specversion",
            "content-type",
            "ce_datacontenttype",
            "ce_type",
            "ce_id",
            "ce_source",
            "ce_time",
            "ce_minorversion",
            "sourcehost",
            "sourcelib"
        ]
    );
    let expected: Vec<(String, String)> = cloudevent_headers(&metadata)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(record.properties, expected);
    assert_eq!(record.properties[0].1, "1.0");
    assert_eq!(record.properties[1].1, "application/avro");
    assert_eq!(record.properties[4].1, metadata.id.hyphenated().to_string());
    assert_eq!(record.properties[6].1, "2026-03-04T05:06:07.123456+00:00");
    assert_eq!(record.properties[7].1, "3");
    assert_eq!(record.payload, message.body, "the payload is the schemaless Avro body");
}

#[test]
fn partition_key_is_the_key_as_text() {
    let (message, _) = login_message("user.pii.username");
    let record = event_record(&message).unwrap();
    assert_eq!(record.partition_key.as_deref(), Some("ünï"));
    assert!(!record.partition_key_b64_encoded);
    let (message, _) = login_message("user.id");
    assert_eq!(event_record(&message).unwrap().partition_key.as_deref(), Some("42"));
    let (message, _) = login_message("user.is_active");
    assert_eq!(event_record(&message).unwrap().partition_key.as_deref(), Some("true"));
    let (mut message, _) = login_message("user.id");
    message.key = None;
    assert_eq!(event_record(&message).unwrap().partition_key, None);
}

#[test]
fn event_time_is_the_metadata_time_in_ms() {
    let (message, metadata) = login_message("user.id");
    let record = event_record(&message).unwrap();
    assert_eq!(record.event_time, Some(1_772_600_767_123));
    assert_eq!(record.event_time, Some(metadata.time.timestamp_millis() as u64));
    let m = record.clone().into_message();
    assert_eq!(m.event_time, Some(1_772_600_767_123));
    assert_eq!(m.properties.len(), 10);
    assert_eq!(m.partition_key.as_deref(), Some("42"));
    assert_eq!(m.partition_key_b64_encoded, None);
}

#[test]
fn topic_naming() {
    assert_eq!(
        pulsar_topic("public", "default", "user-login"),
        "persistent://public/default/user-login"
    );
    assert_eq!(
        pulsar_topic("openedx", "prod", "stage-user-login-dlq"),
        "persistent://openedx/prod/stage-user-login-dlq"
    );
    assert_eq!(
        pulsar_topic("x", "y", "non-persistent://a/b/c"),
        "non-persistent://a/b/c"
    );
}

#[test]
fn round_trip_through_properties() {
    let (message, metadata) = login_message("user.id");
    let record = event_record(&message).unwrap();
    // Arrive in another order, as a hash map would send them.
    let mut kvs: Vec<KeyValue> = record
        .properties
        .iter()
        .rev()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    kvs.swap(0, 4);
    let md = pulsar::proto::MessageMetadata {
        properties: kvs,
        partition_key: record.partition_key.clone(),
        publish_time: 1_772_600_768_000,
        event_time: record.event_time,
        ..Default::default()
    };
    let id = MessageIdData {
        ledger_id: 5,
        entry_id: 9,
        ..Default::default()
    };
    let d = delivery("dev-user-login", &id, &md, &record.payload, DeliveryTag(1), 1);
    assert_eq!(
        d.raw.headers,
        cloudevent_headers(&metadata),
        "headers come back in the Python order"
    );
    assert_eq!(d.raw.key.as_deref(), Some(&b"42"[..]));
    assert_eq!(d.position, "5:9:-1:-1");
    assert_eq!(d.raw.timestamp.map(|t| t.timestamp_millis()), Some(1_772_600_768_000));
    let e = d.event.unwrap();
    assert_eq!(e.metadata, metadata);
    assert_eq!(e.event_type, LOGIN);
    assert_eq!(e.body, message.body);
}

#[test]
fn binary_headers_and_keys_round_trip() {
    let raw = RawMessage {
        topic: "t".into(),
        key: Some(vec![0, 0xff, 1]),
        headers: vec![("x-garbage".into(), b"1".to_vec()), ("bin".into(), vec![0xc3, 0x28])],
        value: vec![0xff, 0xfe],
        timestamp: None,
    };
    let r = raw_record(&raw).unwrap();
    assert_eq!(r.properties[1].0, "base64:bin");
    let md = pulsar::proto::MessageMetadata {
        properties: r
            .properties
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        partition_key: r.partition_key.clone(),
        partition_key_b64_encoded: Some(r.partition_key_b64_encoded),
        ..Default::default()
    };
    let d = delivery("t", &MessageIdData::default(), &md, &r.payload, DeliveryTag(0), 1);
    assert_eq!(d.raw.key, raw.key);
    assert_eq!(d.raw.header("bin"), Some(&[0xc3, 0x28][..]));
    assert_eq!(d.raw.header("x-garbage"), Some(&b"1"[..]));
    assert!(d.event.is_err(), "no CloudEvents headers: the reason is delivered");
}

#[test]
fn duplicate_or_reserved_headers_are_refused() {
    let mut raw = RawMessage {
        topic: "t".into(),
        headers: vec![("a".into(), b"1".to_vec()), ("a".into(), b"2".to_vec())],
        ..Default::default()
    };
    assert!(raw_record(&raw).unwrap_err().contains("more than once"));
    raw.headers = vec![("base64:a".into(), b"1".to_vec()), ("a".into(), b"2".to_vec())];
    let r = raw_record(&raw).expect("a header named with the prefix is escaped, not refused");
    assert_eq!(
        r.properties,
        vec![
            ("base64:base64:a".to_string(), "MQ==".to_string()),
            ("a".to_string(), "2".to_string())
        ]
    );
}

fn received(properties: &[(&str, &str)]) -> Delivery {
    let metadata = pulsar::proto::MessageMetadata {
        properties: properties
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    };
    delivery("t", &MessageIdData::default(), &metadata, b"body", DeliveryTag(0), 1)
}

#[test]
fn a_base64_property_that_is_not_base64_stays_a_text_header_and_can_be_dead_lettered() {
    let mut props: Vec<(String, String)> = openedx_events::bus::wire::cloudevent_headers(
        &openedx_events::metadata::EventsMetadata::new("org.openedx.learning.auth.session.login.completed.v1", 0),
    )
    .into_iter()
    .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
    .collect();
    props.push(("base64:trace".into(), "not base64 at all!".into()));
    props.push(("base64:bin".into(), "/wA=".into()));
    let refs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = received(&refs);
    assert!(d.event.is_ok(), "the message is still an event: {:?}", d.event.err());
    assert_eq!(d.raw.header("base64:trace"), Some(&b"not base64 at all!"[..]));
    assert_eq!(d.raw.header("bin"), Some(&[0xff, 0x00][..]));

    // Its dead letter can be published, and reads back the same.
    let letter = openedx_events::bus::dead_letter::dead_letter(
        &d,
        "t-dlq",
        "g",
        openedx_events::bus::dead_letter::Reason::ReceiverFailed,
        "boom",
        3,
    );
    let record = raw_record(&letter).expect("the dead letter is publishable");
    let back = received(
        &record
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let mut want = letter.headers.clone();
    want.sort();
    let mut got = back.raw.headers.clone();
    got.sort();
    assert_eq!(got, want, "every header comes back as it went");
}

#[test]
fn positions_order_and_parse() {
    let a = parse_position("3:4").unwrap();
    let b = parse_position("3:4:-1:0").unwrap();
    let c = parse_position("3:5:-1:-1").unwrap();
    assert_eq!(position_cmp(&a, &b), std::cmp::Ordering::Less);
    assert_eq!(position_cmp(&b, &c), std::cmp::Ordering::Less);
    assert!(parse_position("x:1").is_err());
    assert!(parse_position("1:2:3:4:5").is_err());
}
