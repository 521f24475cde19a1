//! The codec against the vectors the real Python libraries produced
//! (`../shared/vectors`): every sample decodes and encodes exactly, schema
//! evolution against the stored baselines works both ways, and the Kafka key
//! extraction matches `wire-cases.json`.

use std::collections::{BTreeMap, BTreeSet};

use openedx_events::avro::{decode_resolved, encode, Schema};
use openedx_events::catalog;
use openedx_events::config::{extract_event_key, full_topic};
use openedx_events::sample;
use openedx_events::testing::{openedx_events_vectors, samples, shared_vectors_dir};
use openedx_events::value::Value;
use serde_json::Value as Json;

#[test]
fn every_sample_decodes_and_encodes_exactly() {
    let samples = samples();
    let types: BTreeSet<&str> = samples.iter().map(|s| s.event_type.as_str()).collect();
    assert_eq!(types.len(), 72, "samples cover 72 event types");
    let mut failures = Vec::new();
    for s in &samples {
        let Some(t) = catalog::get(&s.event_type) else {
            failures.push(format!("{}: not in the catalog", s.event_type));
            continue;
        };
        let avro = s.avro();
        match t.decode_data(&avro) {
            Ok(mut rec) => {
                if rec.to_json() != s.data {
                    failures.push(format!("{}: decoded {} != {}", s.event_type, rec.to_json(), s.data));
                }
                if rec.to_json_string() != s.data_text {
                    failures.push(format!(
                        "{}: JSON text {} != {}",
                        s.event_type,
                        rec.to_json_string(),
                        s.data_text
                    ));
                }
                let before = rec.clone();
                if let Err(e) = t.validate_data(&mut rec) {
                    failures.push(format!("{}: decoded data invalid: {e}", s.event_type));
                } else if rec != before {
                    failures.push(format!("{}: validation changed canonical data", s.event_type));
                }
            }
            Err(e) => failures.push(format!("{}: decode failed: {e}", s.event_type)),
        }
        match t.data_from_json(&s.data).and_then(|d| t.encode_data(&d)) {
            Ok(bytes) if bytes == avro => {}
            Ok(bytes) => failures.push(format!(
                "{}: encoded {} != {}",
                s.event_type,
                hex::encode(bytes),
                hex::encode(&avro)
            )),
            Err(e) => failures.push(format!("{}: encode failed: {e}", s.event_type)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn baselines() -> BTreeMap<String, Schema> {
    let dir = openedx_events_vectors("evolution-baselines");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_string();
        let Some(stem) = name.strip_suffix("_schema.avsc") else {
            continue;
        };
        let event_type = stem.replace('+', ".");
        let text = std::fs::read_to_string(&path).expect("read baseline");
        let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.insert(event_type, schema);
    }
    out
}

#[test]
fn evolution_is_forward_and_backward_compatible_with_every_baseline() {
    let baselines = baselines();
    assert_eq!(baselines.len(), 72, "72 stored baselines");
    let mut differing = 0;
    let mut failures = Vec::new();
    for (event_type, baseline) in &baselines {
        let t = catalog::get(event_type).unwrap_or_else(|| panic!("baseline {event_type} has no catalog event"));
        let current = &t.avro().expect("bus-capable").schema;
        if current != baseline {
            differing += 1;
        }
        for seed in 0..8 {
            let mut rng = sample::rng(seed);
            // Forward: written with the current schema, read with the baseline.
            let data = sample::event_data(t, &mut rng);
            let bytes = t.encode_data(&data).expect("encode sample");
            if let Err(e) = decode_resolved(current, baseline, &bytes) {
                failures.push(format!("forward {event_type}: {e}"));
            }
            // Backward: written with the baseline, read with the current schema.
            let old = sample::from_schema(baseline, &mut rng);
            let bytes = encode(baseline, &old).expect("encode baseline sample");
            match decode_resolved(baseline, current, &bytes) {
                Ok(Value::Record(_)) => {}
                Ok(other) => failures.push(format!("backward {event_type}: got {}", other.kind())),
                Err(e) => failures.push(format!("backward {event_type}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        differing, 6,
        "six baselines differ from the generated schemas on purpose"
    );
}

#[test]
fn kafka_keys_and_subjects_match_wire_cases() {
    let path = shared_vectors_dir().join("wire-cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let cases: Json = serde_json::from_str(&text).expect("wire-cases.json");
    let cases = cases["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let t = catalog::get(case["event_type"].as_str().expect("event_type")).expect("catalog event");
        let body = hex::decode(case["avro_body_hex"].as_str().expect("body")).expect("hex");
        let data = t.decode_data(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let topic = full_topic(Some("dev"), case["base_topic"].as_str().expect("base_topic"));
        assert_eq!(topic, case["full_topic"], "{name}");
        let key = extract_event_key(t, &data, case["event_key_field"].as_str().expect("key field"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.schema_string(), case["key_schema_string"], "{name}");
        let framed_key = hex::decode(case["kafka_key_hex"].as_str().expect("key hex")).expect("hex");
        assert_eq!(key.encode(), framed_key[5..], "{name}");
        assert_eq!(format!("{topic}-{}", key.avro_type), case["key_subject"], "{name}");
        assert_eq!(
            format!("{topic}-{}.CloudEvent", t.name()),
            case["value_subject"],
            "{name}"
        );
        assert_eq!(
            t.avro().expect("schema").canonical,
            case["value_schema_string"],
            "{name}"
        );
        let framed_value = hex::decode(case["kafka_value_hex"].as_str().expect("value hex")).expect("hex");
        assert_eq!(
            framed_value[5..],
            body[..],
            "{name}: the Kafka value is the schemaless body after the frame"
        );
        assert_eq!(t.encode_data(&data).expect("encode"), body, "{name}");
    }
}
