//! Encode and decode time per event, on the same samples the Python peer is
//! timed with (`bench/codec.py` runs both and prints the ratios).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use openedx_events::catalog;
use openedx_events::catalog::learning::CourseEnrollmentCreated;
use openedx_events::data::OpenEdxEvent;
use openedx_events::testing::openedx_events_vectors;
use serde_json::Value as Json;

/// The benchmarked events: the enrollment event, the event with the largest
/// schema, and the event with the largest sample.
pub const EVENTS: [(&str, &str); 3] = [
    ("enrollment", "org.openedx.learning.course.enrollment.created.v1"),
    (
        "largest_schema",
        "org.openedx.enterprise.learner_credit_course_enrollment.revoked.v1",
    ),
    ("largest_sample", "org.openedx.learning.ora.submission.created.v1"),
];

/// The longest sample of an event type in events.jsonl.
fn sample(event_type: &str) -> (Json, Vec<u8>) {
    let text = std::fs::read_to_string(openedx_events_vectors("events.jsonl")).expect("events.jsonl");
    text.lines()
        .map(|l| serde_json::from_str::<Json>(l).expect("json"))
        .filter(|j| j["event_type"] == event_type)
        .map(|j| {
            (
                j["data"].clone(),
                hex::decode(j["avro_hex"].as_str().expect("hex")).expect("hex"),
            )
        })
        .max_by_key(|(_, b)| b.len())
        .expect("a sample")
}

fn codec(c: &mut Criterion) {
    for (name, event_type) in EVENTS {
        let t = catalog::get(event_type).expect("catalog event");
        let (json, bytes) = sample(event_type);
        let data = t.data_from_json(&json).expect("valid sample");
        assert_eq!(t.encode_data(&data).expect("encode"), bytes);
        c.bench_function(&format!("encode/{name}"), |b| {
            b.iter(|| t.encode_data(black_box(&data)).expect("encode"))
        });
        c.bench_function(&format!("decode/{name}"), |b| {
            b.iter(|| t.decode_data(black_box(&bytes)).expect("decode"))
        });
        c.bench_function(&format!("decode_validated/{name}"), |b| {
            b.iter(|| {
                let mut d = t.decode_data(black_box(&bytes)).expect("decode");
                t.validate_data(&mut d).expect("valid");
                d
            })
        });
    }
    let t = CourseEnrollmentCreated::event_type();
    let (json, bytes) = sample(t.name());
    let typed = CourseEnrollmentCreated::from_data(t.data_from_json(&json).expect("valid")).expect("typed");
    c.bench_function("encode_typed/enrollment", |b| {
        b.iter(|| t.encode_data(&black_box(&typed).to_data()).expect("encode"))
    });
    c.bench_function("decode_typed/enrollment", |b| {
        b.iter(|| CourseEnrollmentCreated::from_data(t.decode_data(black_box(&bytes)).expect("decode")).expect("typed"))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
