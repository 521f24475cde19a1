//! The targets: each takes one generated input, runs a parser of bytes that
//! come from the wire (or from a schema registry) and returns how many input
//! bytes it was given, for the allocation bound.

use std::sync::Arc;

use event_bus_redis::wire::{metadata_from_fields, parse_entry, EntryId};
use openedx_events::avro::{decode_resolved, Schema};
use openedx_events::bus::wire::metadata_from_cloudevent_headers;
use openedx_events::datetime::IsoDateTime;
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use pulsar::proto::KeyValue;
use rand::rngs::StdRng;
use rand::Rng;

use crate::gen;

/// A target: a name and one run on a generated input.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&mut StdRng, &Catalog) -> usize,
}

/// What the targets draw valid inputs from.
pub struct Catalog {
    /// Every event type that has an Avro schema, with a valid encoding.
    pub samples: Vec<(Arc<EventType>, Vec<u8>)>,
    /// Their schema texts (as a registry serves them).
    pub schema_texts: Vec<String>,
}

impl Catalog {
    pub fn load() -> Self {
        let mut rng = openedx_events::sample::rng(1);
        let mut samples = Vec::new();
        let mut schema_texts = Vec::new();
        for et in openedx_events::catalog::all() {
            let Ok(avro) = et.avro() else { continue };
            let data = openedx_events::sample::event_data(et, &mut rng);
            if let Ok(bytes) = et.encode_data(&data) {
                schema_texts.push(avro.canonical.clone());
                samples.push((et.clone(), bytes));
            }
        }
        Catalog { samples, schema_texts }
    }
}

pub const ALL: &[Target] = &[
    Target {
        name: "avro-catalog",
        run: avro_catalog,
    },
    Target {
        name: "avro-writer-schemas",
        run: avro_writer_schemas,
    },
    Target {
        name: "schema-text",
        run: schema_text,
    },
    Target {
        name: "isoformat",
        run: isoformat,
    },
    Target {
        name: "cloudevent-headers",
        run: cloudevent_headers,
    },
    Target {
        name: "redis-entries",
        run: redis_entries,
    },
    Target {
        name: "confluent-framing",
        run: confluent_framing,
    },
    Target {
        name: "pulsar-properties",
        run: pulsar_properties,
    },
];

/// Every catalog event's decoder, on random bytes and mutated encodings.
fn avro_catalog(rng: &mut StdRng, c: &Catalog) -> usize {
    let (et, valid) = &c.samples[rng.random_range(0..c.samples.len())];
    let input = if rng.random_bool(0.3) {
        gen::bytes(rng)
    } else {
        gen::mutate(valid, rng)
    };
    let _ = et.decode_data(&input);
    let _ = et.decode_data_prefix(&input);
    input.len()
}

/// Hostile writer schemas (from a schema id) resolved against the reader.
fn avro_writer_schemas(rng: &mut StdRng, c: &Catalog) -> usize {
    let mut names = 0;
    let json = gen::writer_schema(rng, 6, &mut names);
    let text = json.to_string();
    let input = gen::bytes(rng);
    if let Ok(writer) = Schema::parse_str(&text) {
        let _ = decode_resolved(&writer, &writer, &input);
        let _ = openedx_events::avro::decode(&writer, &input);
        let (et, _) = &c.samples[rng.random_range(0..c.samples.len())];
        let _ = et.decode_data_from(&writer, &input);
    }
    text.len() + input.len()
}

/// Schema texts as a registry might serve them, changed.
fn schema_text(rng: &mut StdRng, c: &Catalog) -> usize {
    let valid = &c.schema_texts[rng.random_range(0..c.schema_texts.len())];
    let text = gen::mutate_text(valid, rng);
    let _ = Schema::parse_str(&text);
    // Deep nesting: refused (serde_json's depth limit or ours), never a
    // stack overflow.
    let depth = rng.random_range(1..400);
    let deep = format!(
        "{}\"null\"{}",
        "{\"type\":\"array\",\"items\":".repeat(depth),
        "}".repeat(depth)
    );
    let _ = Schema::parse_str(&deep);
    text.len() + deep.len()
}

const TIMES: &[&str] = &[
    "2024-05-06T00:00:00+01:00",
    "2023-03-14T05:56:05.314300+00:00",
    "2024-05-06T07:08:09Z",
    "2024-05-06 00:00:00,5-05:30:15",
    "2024-05-06",
];

fn isoformat(rng: &mut StdRng, _: &Catalog) -> usize {
    let text = gen::mutate_text(TIMES[rng.random_range(0..TIMES.len())], rng);
    let _ = IsoDateTime::parse(&text);
    let _ = openedx_events::metadata::parse_time(&text);
    text.len()
}

/// Valid header values to start from, by name.
fn valid_headers() -> Vec<(&'static str, String)> {
    let m = EventsMetadata::new("org.openedx.learning.auth.session.login.completed.v1", 0);
    vec![
        ("ce_type", m.event_type.clone()),
        ("ce_id", m.id.to_string()),
        ("ce_source", m.source.clone()),
        ("ce_time", TIMES[0].to_string()),
        ("ce_specversion", "1.0".into()),
        ("ce_minorversion", "0".into()),
        ("ce_sourcehost", "host".into()),
        ("ce_sourcelib", "11,2,0".into()),
        ("content-type", "application/avro".into()),
    ]
}

fn headers(rng: &mut StdRng, strip_ce: bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, value) in valid_headers() {
        if rng.random_bool(0.9) {
            let name = if strip_ce { name.trim_start_matches("ce_") } else { name };
            let name = if rng.random_bool(0.05) {
                gen::mutate_text(name, rng)
            } else {
                name.to_string()
            };
            out.push((name, gen::header_value(&value, rng)));
        }
    }
    if rng.random_bool(0.1) && !out.is_empty() {
        let dup = out[rng.random_range(0..out.len())].clone();
        out.push(dup);
    }
    out
}

fn cloudevent_headers(rng: &mut StdRng, _: &Catalog) -> usize {
    let h = headers(rng, false);
    let _ = metadata_from_cloudevent_headers(&h);
    h.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn redis_entries(rng: &mut StdRng, c: &Catalog) -> usize {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = headers(rng, true)
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect();
    let (_, valid) = &c.samples[rng.random_range(0..c.samples.len())];
    if rng.random_bool(0.9) {
        fields.push((b"event_data".to_vec(), gen::mutate(valid, rng)));
    }
    let size: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    let text: Vec<(String, Vec<u8>)> = fields
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
        .collect();
    let _ = metadata_from_fields(&text);
    let _ = parse_entry("t", EntryId::ZERO, fields);
    let id = gen::mutate_text("1678773365314-7", rng);
    let _ = id.parse::<EntryId>();
    size + id.len()
}

fn confluent_framing(rng: &mut StdRng, c: &Catalog) -> usize {
    let (_, valid) = &c.samples[rng.random_range(0..c.samples.len())];
    let framed = event_bus_kafka::framing::frame(rng.random(), valid);
    let input = if rng.random_bool(0.5) {
        gen::mutate(&framed, rng)
    } else {
        gen::bytes(rng)
    };
    let _ = event_bus_kafka::framing::unframe(&input);
    input.len()
}

fn pulsar_properties(rng: &mut StdRng, _: &Catalog) -> usize {
    let mut props: Vec<KeyValue> = headers(rng, false)
        .into_iter()
        .map(|(k, v)| KeyValue {
            key: k,
            value: String::from_utf8_lossy(&v).into_owned(),
        })
        .collect();
    if rng.random_bool(0.3) {
        let value = gen::mutate_text("/wA=", rng);
        props.push(KeyValue {
            key: "base64:x-bin".into(),
            value,
        });
    }
    let size = props.iter().map(|kv| kv.key.len() + kv.value.len()).sum::<usize>();
    let _ = event_bus_pulsar::mapping::headers_from_properties(&props);
    let position = gen::mutate_text("12:34:-1:0", rng);
    let _ = event_bus_pulsar::mapping::parse_position(&position);
    size + position.len()
}
