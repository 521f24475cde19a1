use super::*;
use lapin::types::{ByteArray, FieldArray};

fn props(pairs: Vec<(&str, AMQPValue)>) -> BasicProperties {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(k.into(), v);
    }
    BasicProperties::default().with_headers(t)
}

#[test]
fn foreign_header_types_become_text_or_are_left_out() {
    let p = props(vec![
        ("ce_type", AMQPValue::ShortString("t.v1".into())),
        ("ce_minorversion", AMQPValue::LongInt(3)),
        ("flag", AMQPValue::Boolean(true)),
        ("bytes", AMQPValue::ByteArray(ByteArray::from(vec![0xff, 0]))),
        ("nested", AMQPValue::FieldArray(FieldArray::default())),
        ("x-delivery-count", AMQPValue::LongLongInt(2)),
        ("x-event-bus-deliveries", AMQPValue::LongString("3".into())),
    ]);
    let r = from_amqp("t", "t", "_", &p, vec![1]);
    assert_eq!(r.attempt, 6);
    assert_eq!(r.raw.key, None);
    let names: Vec<&str> = r.raw.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["ce_type", "ce_minorversion", "bytes", "flag"]);
    assert_eq!(r.raw.header_str("ce_minorversion"), Some("3"));
    assert_eq!(r.raw.header("bytes"), Some(&[0xff, 0][..]));
    assert!(
        openedx_events::bus::wire::cloudevent_incoming(&r.raw).is_err(),
        "no ce_id: the core dead-letters it"
    );
}

#[test]
fn routing_key_is_the_key_only_from_a_topic_exchange() {
    let p = props(vec![]);
    assert_eq!(
        from_amqp("t", "t", "user-7", &p, vec![]).raw.key,
        Some(b"user-7".to_vec())
    );
    assert_eq!(from_amqp("t", "", "t.g", &p, vec![]).raw.key, None);
    let copy = for_copy(&p, Some(b"user-7"), Some(2));
    let r = from_amqp("t", "", "t.g", &copy, vec![]);
    assert_eq!((r.raw.key, r.attempt), (Some(b"user-7".to_vec()), 3));
    assert!(r.raw.headers.is_empty());
}

#[test]
fn raw_messages_refuse_what_a_table_cannot_carry() {
    let raw = |headers: Vec<(&str, &[u8])>| RawMessage {
        topic: "t".into(),
        headers: headers.into_iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
        ..RawMessage::default()
    };
    assert!(raw_to_amqp(&raw(vec![("a", b"1"), ("a", b"2")])).is_err());
    assert!(raw_to_amqp(&raw(vec![(&"h".repeat(256), b"1")])).is_err());
    assert!(raw_to_amqp(&raw(vec![("x-death", b"1")])).is_err());
    let ok = raw_to_amqp(&raw(vec![("content-type", b"application/avro"), ("bin", &[0xff])])).unwrap();
    assert_eq!(
        ok.properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/avro")
    );
    assert_eq!(ok.properties.delivery_mode(), &Some(PERSISTENT));
    assert_eq!(ok.routing_key.as_str(), names::NO_KEY);
}
