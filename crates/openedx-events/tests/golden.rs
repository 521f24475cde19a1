//! Golden byte vectors from the openedx-events test suite and spec, with
//! event types defined the way a service defines its own.

use openedx_events::data::OpenEdxEvent;
use openedx_events::{AvroRecord, OpenEdxEvent};

#[derive(Debug, Clone, PartialEq, AvroRecord)]
struct SubEventData {
    sub_name: String,
    course_id: String,
}

#[derive(Debug, Clone, PartialEq, AvroRecord)]
struct EventData {
    sub_name: String,
    course_id: String,
    sub_test_0: SubEventData,
    sub_test_1: SubEventData,
}

#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.test.test.test.v0")]
struct TestEvent {
    test_data: EventData,
}

#[test]
fn upstream_nested_record_vector() {
    let event = TestEvent {
        test_data: EventData {
            sub_name: "foo".into(),
            course_id: "bar.course".into(),
            sub_test_0: SubEventData {
                sub_name: "a.sub.name".into(),
                course_id: "a.nother.course".into(),
            },
            sub_test_1: SubEventData {
                sub_name: "b.uber.sub.name".into(),
                course_id: "b.uber.another.course".into(),
            },
        },
    };
    let t = TestEvent::event_type();
    let bytes = t.encode_data(&event.to_data()).unwrap();
    assert_eq!(
        bytes,
        b"\x06foo\x14bar.course\x14a.sub.name\x1ea.nother.course\x1eb.uber.sub.name*b.uber.another.course"
    );
    let back = TestEvent::from_data(t.decode_data(&bytes).unwrap()).unwrap();
    assert_eq!(back, event);
    // The second use of SubEventData is a reference by name.
    let schema = &t.avro().unwrap().json;
    assert_eq!(schema["fields"][0]["type"]["fields"][3]["type"], "SubEventData");
}

#[derive(Debug, Clone, PartialEq, AvroRecord)]
struct Primitives {
    i: i64,
    s: String,
    f: f64,
    b: bool,
}

#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.test.primitives.v1", minor_version = 3)]
struct PrimitivesEvent {
    p: Primitives,
}

#[test]
fn primitive_vector_and_minor_version() {
    let t = PrimitivesEvent::event_type();
    assert_eq!(t.minor_version(), 3);
    let e = PrimitivesEvent {
        p: Primitives {
            i: 1,
            s: "ab".into(),
            f: 1.5,
            b: true,
        },
    };
    assert_eq!(
        t.encode_data(&e.to_data()).unwrap(),
        [0x02, 0x04, 0x61, 0x62, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x01]
    );
}

#[test]
fn enrollment_vector_from_the_spec() {
    let t = openedx_events::catalog::get("org.openedx.learning.course.enrollment.created.v1").unwrap();
    let data = t
        .data_from_json(&serde_json::json!({"enrollment": {
            "user": {"id": 42, "is_active": true, "pii": {"username": "ana", "email": "a@x.org", "name": "Ana"}},
            "course": {"course_key": "course-v1:edX+D+R", "display_name": "Demo"},
            "mode": "audit", "is_active": true, "creation_date": "2024-05-06T07:08:09Z"}}))
        .unwrap();
    let mut want = String::from("5401");
    want += "06616e61";
    want += "0e6140782e6f7267";
    want += "06416e61";
    want += &format!("22{}", hex::encode("course-v1:edX+D+R"));
    want += "0844656d6f";
    want += "0000";
    want += "0a6175646974";
    want += "01";
    want += &format!("32{}", hex::encode("2024-05-06T07:08:09+00:00"));
    want += "00";
    assert_eq!(hex::encode(t.encode_data(&data).unwrap()), want);
}
