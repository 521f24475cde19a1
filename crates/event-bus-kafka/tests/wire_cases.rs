//! The Kafka messages of the four cases of `shared/vectors/wire-cases.json`
//! (captured from the Python producer against a mock registry handing out
//! sequential ids) are rebuilt byte for byte: headers in order, framed key
//! and value, subjects, registered schema texts and schema ids. No broker:
//! the registry is the in-memory test double, registered in the same order
//! as the Python run, so it hands out the same ids.

use std::sync::Arc;
use std::time::Duration;

use event_bus_kafka::registry::SchemaRegistry;
use event_bus_kafka::settings::Secret;
use event_bus_kafka::testing::RegistryDouble;
use event_bus_kafka::wire::{build_record, decode_incoming};
use event_bus_kafka::{KafkaSettings, KafkaTransport};
use openedx_events::bus::transport::{OutgoingMessage, RawMessage, Transport, TransportErrorKind};
use openedx_events::bus::wire::metadata_from_cloudevent_headers;
use openedx_events::catalog;
use openedx_events::config::extract_event_key;
use openedx_events::metadata::EventsMetadata;
use serde_json::Value;

fn cases() -> Value {
    let path = openedx_events::testing::shared_vectors_dir().join("wire-cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("wire-cases.json is JSON")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} is a string"))
}

fn headers_of(case: &Value) -> Vec<(String, Vec<u8>)> {
    case["kafka_headers_in_order"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().as_bytes().to_vec(),
            )
        })
        .collect()
}

/// The outgoing message of a case: data decoded from the captured Avro
/// body, key from its event_key_field, metadata from its headers.
fn message_of(case: &Value) -> OutgoingMessage {
    let t = catalog::get(s(case, "event_type")).expect("a catalog event type");
    let body = hex::decode(s(case, "avro_body_hex")).unwrap();
    let data = t.decode_data(&body).expect("the captured body decodes");
    assert_eq!(
        t.encode_data(&data).unwrap(),
        body,
        "{}: body re-encodes",
        s(case, "name")
    );
    let key = extract_event_key(t, &data, s(case, "event_key_field")).expect("key");
    let metadata = metadata_from_cloudevent_headers(&headers_of(case)).expect("metadata");
    OutgoingMessage {
        topic: s(case, "full_topic").to_string(),
        event_type: t.clone(),
        metadata,
        key: Some(key),
        body,
    }
}

#[tokio::test]
async fn the_four_python_cases_are_rebuilt_byte_for_byte() {
    let file = cases();
    let double = RegistryDouble::start().unwrap();
    let registry = SchemaRegistry::new(&double.url(), None, Duration::from_secs(5)).unwrap();
    let all = file["cases"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    for case in all {
        let name = s(case, "name");
        let record = build_record(&message_of(case), &registry).await.expect("record");
        assert_eq!(record.topic, s(case, "full_topic"), "{name}: topic");
        assert_eq!(record.headers, headers_of(case), "{name}: headers, in order");
        assert!(
            record.headers.iter().all(|(k, _)| !k.starts_with("__")),
            "{name}: no __key_schema_id/__value_schema_id headers"
        );
        assert_eq!(
            hex::encode(record.key.as_ref().unwrap()),
            s(case, "kafka_key_hex"),
            "{name}: key bytes"
        );
        assert_eq!(
            hex::encode(&record.value),
            s(case, "kafka_value_hex"),
            "{name}: value bytes"
        );
        assert_eq!(
            record.key_subject.as_deref(),
            Some(s(case, "key_subject")),
            "{name}: key subject"
        );
        assert_eq!(record.value_subject, s(case, "value_subject"), "{name}: value subject");
        let key_id = u32::from_be_bytes(record.key.as_ref().unwrap()[1..5].try_into().unwrap());
        let value_id = u32::from_be_bytes(record.value[1..5].try_into().unwrap());
        assert_eq!(
            double.schema(key_id).as_deref(),
            Some(s(case, "key_schema_string")),
            "{name}"
        );
        assert_eq!(
            double.schema(value_id).as_deref(),
            Some(s(case, "value_schema_string")),
            "{name}"
        );
    }
    let subjects: Vec<String> = file["registry_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(double.subjects(), subjects, "the same subjects as the Python run");
    for (subject, v) in file["registry_versions"].as_object().unwrap() {
        assert_eq!(
            double.versions(subject),
            vec![v["schema_id"].as_u64().unwrap() as u32],
            "{subject}: schema id and version 1"
        );
    }
}

#[tokio::test]
async fn registry_answers_are_cached_both_ways() {
    let file = cases();
    let double = RegistryDouble::start().unwrap();
    let registry = SchemaRegistry::new(&double.url(), None, Duration::from_secs(5)).unwrap();
    let case = &file["cases"][0];
    let message = message_of(case);
    let first = build_record(&message, &registry).await.unwrap();
    let asked = double.request_count();
    assert_eq!(asked, 2, "one registration per subject");
    for _ in 0..5 {
        assert_eq!(build_record(&message, &registry).await.unwrap(), first);
    }
    assert_eq!(double.request_count(), asked, "subject -> id is cached");
    // The registered schema is also known by id, with no request.
    let raw = RawMessage {
        topic: first.topic.clone(),
        key: first.key.clone(),
        headers: first.headers.clone(),
        value: first.value.clone(),
        timestamp: None,
    };
    let incoming = decode_incoming(&raw, &registry).await.expect("decodes");
    assert_eq!(
        double.request_count(),
        asked,
        "id -> schema is cached from the registration"
    );
    assert_eq!(incoming.metadata, message.metadata);
    assert_eq!(incoming.body, message.body);
    // A second client learns the schema by id once, then from its cache.
    let other = SchemaRegistry::new(&double.url(), None, Duration::from_secs(5)).unwrap();
    let a = other.schema_by_id(2).await.unwrap();
    let b = other.schema_by_id(2).await.unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(double.request_count(), asked + 1);
    assert!(other.schema_by_id(99).await.is_err(), "unknown ids are errors");
}

#[tokio::test]
async fn registry_basic_auth_is_sent_and_required() {
    let double = RegistryDouble::builder().basic_auth("rk", "rs3cret").start().unwrap();
    let good = SchemaRegistry::new(
        &double.url(),
        Some(("rk".into(), Secret::new("rs3cret"))),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        good.register("t-string", r#"{"name": "a", "type": "string"}"#)
            .await
            .unwrap(),
        1
    );
    let bad = SchemaRegistry::new(
        &double.url(),
        Some(("rk".into(), Secret::new("wrong-pw"))),
        Duration::from_secs(5),
    )
    .unwrap();
    let e = bad
        .register("t-string", r#"{"name": "b", "type": "string"}"#)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong-pw"), "{text}");
}

/// The registry being down is an error for the caller (the event is not
/// silently dropped), naming the registry URL without its credentials.
#[tokio::test]
async fn publish_fails_clearly_when_the_registry_is_down() {
    let double = RegistryDouble::start().unwrap();
    let url = double.url();
    drop(double); // nothing listens there any more
    let mut settings = KafkaSettings::new("127.0.0.1:9", url.replace("http://", "http://user:regpass@"));
    settings.schema_registry_auth = Some(("user".into(), Secret::new("regpass")));
    settings.schema_registry_timeout = Duration::from_secs(2);
    let transport = KafkaTransport::connect(settings).unwrap();
    let message = message_of(&cases()["cases"][0]);
    let e = transport.publish(&message).await.unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Connection, "{e}");
    let host_port = url.trim_start_matches("http://");
    assert!(e.message.contains(host_port), "names the registry: {e}");
    assert!(e.message.contains("user:********@"), "masks the password: {e}");
    assert!(!e.message.contains("regpass"), "no credentials: {e}");
    assert!(!e.is_fatal());
}

#[test]
fn metadata_of_the_cases_is_what_python_sent() {
    for case in cases()["cases"].as_array().unwrap() {
        let m: EventsMetadata = metadata_from_cloudevent_headers(&headers_of(case)).unwrap();
        assert_eq!(m.id.to_string(), "629f9892-c258-11ed-8dac-1c83413013cb");
        assert_eq!(m.source, "openedx/test/web");
    }
}
