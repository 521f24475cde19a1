//! Cross-language: the 144 samples of openedx-events 11.2.0 (72 event
//! types) go both ways between this backend and a minimal Python peer
//! (`tests/python/pulsar_peer.py`: the official `pulsar-client`, the
//! openedx-events Avro serializer, the Kafka bus's header helpers).
//!
//! (a) our producer -> Python consumer (directly on the broker: the Python
//!     client tolerates pulsar-lite's missing checksums);
//! (b) Python producer (batching on, its default) -> our consumer (the core
//!     consume loop, through the proxy on pulsar-lite).
//!
//! Both sides must see equal data, equal metadata, the same key and the ten
//! CloudEvents properties.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::config::extract_event_key;
use openedx_events::config::key::check_key_path;
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use openedx_events::types::{DataType, FieldDef};
use openedx_events::value::Record;
use serde_json::{json, Value};
use support::{pulsar_lite::venv_python, TestBroker};
use tokio_util::sync::CancellationToken;

const CLOUDEVENTS_PROPERTIES: [&str; 10] = [
    "ce_datacontenttype",
    "ce_id",
    "ce_minorversion",
    "ce_source",
    "ce_specversion",
    "ce_time",
    "ce_type",
    "content-type",
    "sourcehost",
    "sourcelib",
];

struct Sample {
    event_type: Arc<EventType>,
    data_json: Value,
    avro_hex: String,
    key_field: String,
}

/// The first non-optional primitive field, depth first through
/// non-optional records: a valid `event_key_field`.
fn key_field(fields: &[FieldDef]) -> Option<String> {
    for f in fields.iter().filter(|f| !f.optional) {
        match &f.ty {
            DataType::Boolean | DataType::Long | DataType::Double | DataType::String | DataType::Custom(_) => {
                return Some(f.name.clone())
            }
            DataType::Record(rt) => {
                if let Some(inner) = key_field(&rt.fields) {
                    return Some(format!("{}.{inner}", f.name));
                }
            }
            _ => {}
        }
    }
    None
}

fn samples() -> Vec<Sample> {
    let out: Vec<Sample> = openedx_events::testing::samples()
        .into_iter()
        .map(|s| {
            let name = s.event_type.as_str();
            let event_type = catalog::get(name)
                .unwrap_or_else(|| panic!("{name} is not in the catalog"))
                .clone();
            let key_field = key_field(event_type.fields()).unwrap_or_else(|| panic!("no key field for {name}"));
            check_key_path(&event_type, &key_field).unwrap_or_else(|e| panic!("{e}"));
            Sample {
                event_type,
                data_json: s.data,
                avro_hex: s.avro_hex,
                key_field,
            }
        })
        .collect();
    assert_eq!(out.len(), 144, "events.jsonl has 144 samples");
    out
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pulsar_peer.py")
}

fn python() -> PathBuf {
    venv_python().unwrap_or_else(|e| panic!("the Python peer needs the project venv: {e}"))
}

/// Run the Python peer; its stdout as JSON lines.
fn run_python(args: &[&str]) -> Vec<Value> {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the Python peer: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python peer failed ({}):\n{stderr}",
        out.status
    );
    eprintln!("{}", stderr.trim());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line from Python ({e}): {l}")))
        .collect()
}

fn topic(name: &str) -> String {
    format!("interop-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn types_of<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    names.collect()
}

/// (a) our producer -> the Python consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_producer_to_python_consumer() {
    let broker = TestBroker::shared();
    let transport: Arc<dyn Transport> = broker.transport_with(broker.settings()).await;
    let producer = EventBusProducer::new(transport.clone(), None);
    let topic = topic("rust-to-python");
    let samples = samples();
    let mut sent: HashMap<uuid::Uuid, (&Sample, Record, EventsMetadata, String)> = HashMap::new();
    for s in &samples {
        let data = s
            .event_type
            .data_from_json(&s.data_json)
            .unwrap_or_else(|e| panic!("{}: {e}", s.event_type.name()));
        let key = extract_event_key(&s.event_type, &data, &s.key_field)
            .unwrap_or_else(|e| panic!("{e}"))
            .as_text();
        let metadata = EventsMetadata::new(s.event_type.name(), 0);
        producer
            .send(&s.event_type, &topic, Some(&s.key_field), &data, &metadata)
            .await
            .unwrap_or_else(|e| panic!("publish {}: {e}", s.event_type.name()));
        sent.insert(metadata.id, (s, data, metadata, key));
    }
    let pulsar_topic = format!("persistent://public/default/{topic}");
    let got = tokio::task::spawn_blocking({
        let url = broker.direct_url();
        move || run_python(&["consume", &url, &pulsar_topic, "python-interop", "144", "90"])
    })
    .await
    .expect("join");
    assert_eq!(got.len(), 144, "the Python consumer read {} of 144 events", got.len());
    let mut seen = BTreeSet::new();
    for line in &got {
        let metadata = EventsMetadata::from_json_value(&line["metadata"])
            .unwrap_or_else(|e| panic!("Python metadata {}: {e}", line["metadata"]));
        let (sample, data, sent_metadata, key) = sent
            .get(&metadata.id)
            .unwrap_or_else(|| panic!("Python read an event we did not send: {}", line["metadata"]));
        assert_eq!(&metadata, sent_metadata, "metadata equal");
        let name = sample.event_type.name();
        assert_eq!(line["event_type"], json!(name));
        let python_data = sample
            .event_type
            .data_from_json(&line["data"])
            .unwrap_or_else(|e| panic!("{name}: Python's data does not fit the event type: {e}"));
        assert_eq!(&python_data, data, "{name}: data equal");
        assert_eq!(line["data"], sample.data_json, "{name}: Python's dict is the sample's");
        assert_eq!(line["key"], json!(key), "{name}: partition key");
        let props: Vec<&str> = line["properties"]
            .as_array()
            .expect("properties")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(props, CLOUDEVENTS_PROPERTIES, "{name}: the ten CloudEvents properties");
        assert_eq!(
            line["event_time"],
            json!(sent_metadata.time.timestamp_millis()),
            "{name}: event time"
        );
        seen.insert(metadata.id);
    }
    assert_eq!(seen.len(), 144, "each event once");
    let types = types_of(samples.iter().map(|s| s.event_type.name()));
    assert_eq!(types.len(), 72, "72 event types");
}

/// (b) the Python producer -> our consumer (the core consume loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_producer_to_rust_consumer() {
    let broker = TestBroker::shared();
    let topic = topic("python-to-rust");
    let samples = samples();
    let input = tempfile::NamedTempFile::new().expect("temp file");
    let lines: Vec<String> = samples
        .iter()
        .map(|s| {
            json!({"event_type": s.event_type.name(), "avro_hex": s.avro_hex, "key_field": s.key_field}).to_string()
        })
        .collect();
    std::fs::write(input.path(), lines.join("\n")).expect("write the input");
    let pulsar_topic = format!("persistent://public/default/{topic}");
    let sent = tokio::task::spawn_blocking({
        let url = broker.direct_url();
        let input = input.path().to_string_lossy().to_string();
        move || run_python(&["produce", &url, &pulsar_topic, &input])
    })
    .await
    .expect("join");
    assert_eq!(sent.len(), 144, "the Python producer sent {} of 144", sent.len());

    let registry = Arc::new(Registry::with_catalog());
    let received: Arc<Mutex<Vec<openedx_events::signal::Event>>> = Arc::default();
    for s in &samples {
        let r = received.clone();
        registry
            .get(s.event_type.name())
            .unwrap_or_else(|| panic!("{} is not registered", s.event_type.name()))
            .connect("interop-recorder", move |event| {
                r.lock().map_err(|_| "poisoned")?.push(event.clone());
                Ok(())
            });
    }
    let transport: Arc<dyn Transport> = broker.transport_with(broker.settings()).await;
    let mut options = ConsumerOptions::new(&topic, "rust-interop");
    options.limit = Some(144);
    options.poll_timeout = Duration::from_millis(200);
    options.batch_size = 50;
    let consumer = EventBusConsumer::new(transport, registry, options);
    let stats = tokio::time::timeout(Duration::from_secs(90), consumer.consume(CancellationToken::new()))
        .await
        .expect("the consumer handled 144 events within 90 s")
        .expect("the consumer ran");
    assert_eq!((stats.processed, stats.dead_lettered), (144, 0), "{stats:?}");

    let received = received.lock().expect("received").clone();
    let by_id: HashMap<uuid::Uuid, &openedx_events::signal::Event> =
        received.iter().map(|e| (e.metadata.id, e)).collect();
    assert_eq!(by_id.len(), 144, "each event once");
    let mut types = BTreeSet::new();
    for line in &sent {
        let metadata = EventsMetadata::from_json_value(&line["metadata"])
            .unwrap_or_else(|e| panic!("Python metadata {}: {e}", line["metadata"]));
        let event = by_id
            .get(&metadata.id)
            .unwrap_or_else(|| panic!("event {} did not arrive", metadata.id));
        let name = metadata.event_type.clone();
        assert!(event.from_event_bus);
        assert_eq!(*event.metadata, metadata, "{name}: metadata equal");
        let python_data = event
            .event_type
            .data_from_json(&line["data"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(*event.data, python_data, "{name}: data equal");
        let props: Vec<&str> = line["properties"]
            .as_array()
            .expect("properties")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(props, CLOUDEVENTS_PROPERTIES, "{name}: Python sent the ten properties");
        types.insert(name);
    }
    assert_eq!(types.len(), 72, "72 event types");

    // And the raw view of the same messages: key and event time as mapped.
    let raw = transport_browse(broker, &topic).await;
    assert_eq!(raw.len(), 144, "browse sees the 144 messages");
    let batched = raw.iter().filter(|d| !d.position.ends_with(":-1")).count();
    assert!(
        batched > 1,
        "the Python producer batches (its default), so acknowledging batches was exercised; {batched} batched"
    );
    let sent_by_id: HashMap<String, &Value> = sent
        .iter()
        .map(|l| (l["metadata"]["id"].as_str().unwrap_or_default().to_string(), l))
        .collect();
    for d in &raw {
        let e = d.event.as_ref().expect("an event");
        let line = sent_by_id[&e.metadata.id.to_string()];
        assert_eq!(
            d.raw.key.as_deref().map(String::from_utf8_lossy).as_deref(),
            line["key"].as_str(),
            "{}: key",
            e.event_type
        );
    }
}

async fn transport_browse(broker: &TestBroker, topic: &str) -> Vec<openedx_events::bus::transport::Delivery> {
    let transport = broker.transport_with(broker.settings()).await;
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = transport
            .browse(topic, after.as_deref(), 50)
            .await
            .unwrap_or_else(|e| panic!("browse: {e}"));
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.position.clone());
        all.extend(page);
    }
    all
}
