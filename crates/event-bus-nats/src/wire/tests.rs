use super::*;

fn raw(headers: Vec<(&str, Vec<u8>)>, key: Option<Vec<u8>>) -> RawMessage {
    RawMessage {
        topic: "t".into(),
        key,
        headers: headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        value: b"value".to_vec(),
        timestamp: None,
    }
}

fn round_trip(m: &RawMessage) -> RawMessage {
    let h = raw_headers(m).unwrap();
    raw_from_nats(&m.topic, Some(&h), &m.value, None)
}

#[test]
fn awkward_values_round_trip() {
    let m = raw(
        vec![
            (wire::CE_TYPE, b"t.v1".to_vec()),
            ("dlq_error", b"line one\r\nline two".to_vec()),
            ("binary", vec![0xff, 0x00, 0x10]),
            ("spaced", b"  padded ".to_vec()),
            ("tab", b"a\tb".to_vec()),
            ("base64-already", b"plain".to_vec()),
            ("nats-msg-id", b"foreign".to_vec()),
            ("empty", vec![]),
            ("twice", b"1".to_vec()),
            ("twice", b"2".to_vec()),
        ],
        Some("ключ".as_bytes().to_vec()),
    );
    let back = round_trip(&m);
    let mut want = m.headers.clone();
    want.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)));
    assert_eq!(back.headers, want);
    assert_eq!(back.key, m.key);
}

#[test]
fn bad_names_and_key_clashes_are_refused() {
    let e = raw_headers(&raw(vec![("a:b", b"x".to_vec())], None)).unwrap_err();
    assert!(e.contains("a:b"), "{e}");
    let e = raw_headers(&raw(vec![("with space", b"x".to_vec())], None)).unwrap_err();
    assert!(e.contains("with space"), "{e}");
    let e = raw_headers(&raw(vec![(KEY_HEADER, b"x".to_vec())], Some(b"k".to_vec()))).unwrap_err();
    assert!(e.contains(KEY_HEADER), "{e}");
    // Without a key, a header of that name becomes the key on receipt.
    let back = round_trip(&raw(vec![(KEY_HEADER, b"x".to_vec())], None));
    assert_eq!(back.key.as_deref(), Some(&b"x"[..]));
}

#[test]
fn garbled_messages_are_deliveries_with_a_reason() {
    let mut h = HeaderMap::new();
    h.insert("base64-x", "%%% not base64");
    h.insert("Nats-Msg-Id", "abc");
    let r = raw_from_nats("t", Some(&h), b"\xff", None);
    assert_eq!(r.headers, vec![("base64-x".to_string(), b"%%% not base64".to_vec())]);
    let d = delivery(r, DeliveryTag(1), 7, 1);
    assert_eq!(d.position, "7");
    assert!(d.event.unwrap_err().contains("ce_type"));
    let d = delivery(raw_from_nats("t", None, b"", None), DeliveryTag(2), 8, 1);
    assert!(d.event.is_err());
}

#[test]
fn events_round_trip_through_headers() {
    use openedx_events::metadata::EventsMetadata;
    let t = openedx_events::catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
    let mut metadata = EventsMetadata::new(t.name(), 3);
    metadata.source = "openedx/lms-ünï/web".into();
    let m = OutgoingMessage {
        topic: "dev-t".into(),
        event_type: t.clone(),
        metadata: metadata.clone(),
        key: None,
        body: vec![1, 2, 3],
    };
    let h = event_headers(&m, false).unwrap();
    assert!(h.get(MSG_ID_HEADER).is_none());
    let d = delivery(raw_from_nats("dev-t", Some(&h), &m.body, None), DeliveryTag(1), 1, 1);
    let e = d.event.unwrap();
    assert_eq!(e.metadata, metadata);
    assert_eq!(d.raw.headers.len(), 10);
    assert_eq!(d.raw.headers[0].0, wire::CE_SPECVERSION);
}

#[test]
fn positions_and_times() {
    assert_eq!(parse_position(" 17 ").unwrap(), 17);
    assert!(parse_position("17:3").is_err());
    let now = Utc::now();
    let t = nats_time(&now).unwrap();
    assert_eq!(chrono_time(&t).unwrap(), now);
}
