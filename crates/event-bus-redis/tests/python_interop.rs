//! Cross-language proof against the unmodified Python packages
//! (openedx-events 11.2.0, edx-event-bus-redis 1.1.2), on the Redis of the
//! machine, with every sample of `shared/vectors/openedx-events-11.2.0/events.jsonl`
//! (144 samples, 72 event types):
//!
//! - Python producer -> this crate's consumer (the core's consume loop);
//! - this crate's producer -> Python's `RedisEventConsumer`.
//!
//! Each side must see the same data and the same metadata the other sent.
//! The Python interpreter comes from `scripts/python-env.sh` (which installs
//! the pinned packages on first use); if it cannot be had, the tests fail.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{connect, delete_streams, redis_url, unique};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use openedx_events::testing::{openedx_events_vectors, python_interpreter, Sample};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "interop";

fn samples() -> Vec<Sample> {
    let samples = openedx_events::testing::samples();
    let types: BTreeSet<&str> = samples.iter().map(|s| s.event_type.as_str()).collect();
    assert_eq!(
        (samples.len(), types.len()),
        (144, 72),
        "events.jsonl: 144 samples of 72 event types"
    );
    samples
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("python")
}

fn python_command(script: &str, url: &str) -> Command {
    let mut cmd = Command::new(python_interpreter());
    cmd.arg(scripts_dir().join(script))
        .env("DJANGO_SETTINGS_MODULE", "settings")
        .env("EVENT_BUS_REDIS_CONNECTION_URL", url)
        .env("EVENT_BUS_TOPIC_PREFIX", PREFIX)
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(scripts_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Deletes the test's streams at the end, even when it fails.
struct Cleanup(String, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_streams(&self.0, &self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_producer_to_rust_consumer_all_72_event_types() {
    let url = redis_url();
    let transport = Arc::new(connect(&url).await);
    let samples = samples();
    let topic = unique("py-to-rust");
    let full = format!("{PREFIX}-{topic}");
    let _cleanup = Cleanup(url.clone(), vec![full.clone(), format!("{full}-dlq")]);

    // Python sends the 144 samples.
    let samples_path = openedx_events_vectors("events.jsonl");
    let mut cmd = python_command("produce.py", &url);
    cmd.arg(&samples_path).arg(&topic);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the Python producer finished within 2 minutes")
        .expect("the Python producer ran");
    assert!(
        out.status.success(),
        "the Python producer failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<Json> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line from produce.py {l:?}: {e}")))
        .collect();
    assert_eq!(sent.len(), samples.len(), "Python sent every sample");

    // Our consumer receives them, with receivers on every signal of the catalog.
    let registry = Arc::new(Registry::with_catalog());
    type Got = (String, String, Json, String);
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    for signal in registry.all() {
        let got = got.clone();
        signal.connect("record", move |event| {
            got.lock().map_err(|_| "poisoned")?.push((
                event.event_type.name().to_string(),
                event.metadata.to_json(),
                event.data.to_json(),
                event.data.to_json_string(),
            ));
            Ok(())
        });
    }
    let mut options = ConsumerOptions::new(&topic, "rust-consumer");
    options.prefix = Some(PREFIX.to_string());
    options.consumer_name = "rust-consumer-1".to_string();
    options.poll_timeout = Duration::from_millis(200);
    options.limit = Some(samples.len() as u64);
    let consumer = EventBusConsumer::new(transport, registry, options);
    let stats = tokio::time::timeout(Duration::from_secs(60), consumer.consume(CancellationToken::new()))
        .await
        .expect("the Rust consumer handled every event within 60 s")
        .expect("the Rust consumer ran");
    assert_eq!(
        (stats.processed, stats.dead_lettered),
        (samples.len() as u64, 0),
        "{stats:?}"
    );

    let got = got.lock().expect("got").clone();
    let by_id: HashMap<String, &Got> = got
        .iter()
        .map(|g| {
            let m = EventsMetadata::from_json(&g.1).expect("metadata JSON");
            (m.id.to_string(), g)
        })
        .collect();
    let mut types = BTreeSet::new();
    for (sample, line) in samples.iter().zip(&sent) {
        let id = line["id"].as_str().expect("id");
        let python_metadata = line["metadata"].as_str().expect("metadata");
        let (event_type, metadata, data, data_text) = by_id
            .get(id)
            .unwrap_or_else(|| panic!("event {id} ({}) not received", sample.event_type));
        assert_eq!(event_type, &sample.event_type);
        assert_eq!(metadata, python_metadata, "metadata of {id} ({event_type})");
        assert_eq!(data, &sample.data, "data of {id} ({event_type})");
        assert_eq!(data_text, &sample.data_text, "data JSON text of {id} ({event_type})");
        types.insert(event_type.clone());
    }
    println!(
        "Python -> Rust: {} events of {} event types received; for each, decoded data (JSON value and json.dumps text) \
         == the sample, and metadata.to_json() == what Python sent",
        got.len(),
        types.len()
    );
    assert_eq!(types.len(), 72);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_producer_to_python_consumer_all_72_event_types() {
    let url = redis_url();
    let transport = Arc::new(connect(&url).await);
    let samples = samples();
    let topic = unique("rust-to-py");
    let group = "python-consumer";
    let full = format!("{PREFIX}-{topic}");
    let _cleanup = Cleanup(url.clone(), vec![full.clone()]);

    // Start the Python consumer first: by default it moves its group to "$".
    let mut cmd = python_command("consume.py", &url);
    cmd.arg(&topic)
        .arg(group)
        .arg("python-consumer-1")
        .arg(samples.len().to_string())
        .arg("90");
    let mut child = cmd.spawn().expect("the Python consumer starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_text = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    if !matches!(&ready, Ok(Ok(Some(l))) if l == "READY") {
        let _ = child.kill().await;
        panic!(
            "the Python consumer did not start ({ready:?}):\n{}",
            stderr_text.await.unwrap_or_default()
        );
    }

    // Our producer sends the 144 samples.
    let producer = EventBusProducer::new(transport, Some(PREFIX.to_string()));
    let mut sent: HashMap<String, (EventsMetadata, &Sample)> = HashMap::new();
    for sample in &samples {
        let t = catalog::get(&sample.event_type).unwrap_or_else(|| panic!("{} in the catalog", sample.event_type));
        let data = t.data_from_json(&sample.data).expect("sample data");
        let metadata = EventsMetadata::new(t.name(), 0);
        producer
            .send(t, &topic, None, &data, &metadata)
            .await
            .unwrap_or_else(|e| panic!("send {}: {e}", sample.event_type));
        sent.insert(metadata.id.to_string(), (metadata, sample));
    }

    // Python receives them all, then reports what is left pending.
    let mut records = Vec::new();
    let mut summary = None;
    let read_all = async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let j: Json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
            if j.get("done").is_some() {
                summary = Some(j);
            } else {
                records.push(j);
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(100), read_all).await.is_ok();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let stderr = stderr_text.await.unwrap_or_default();
    assert!(finished, "the Python consumer did not finish:\n{stderr}");
    assert!(
        matches!(&status, Ok(Ok(s)) if s.success()),
        "the Python consumer failed ({status:?}):\n{stderr}"
    );
    let summary = summary.unwrap_or_else(|| panic!("no summary from the Python consumer:\n{stderr}"));
    assert_eq!(
        summary["received"],
        samples.len(),
        "Python received every event:\n{stderr}"
    );
    assert_eq!(summary["pending"], 0, "nothing left pending for the Python group");

    let mut types = BTreeSet::new();
    for r in &records {
        let python_metadata = r["metadata"].as_str().expect("metadata");
        let id = EventsMetadata::from_json(python_metadata)
            .expect("metadata")
            .id
            .to_string();
        let (metadata, sample) = sent
            .get(&id)
            .unwrap_or_else(|| panic!("Python received an unknown event {id}"));
        assert_eq!(r["event_type"], sample.event_type.as_str());
        assert_eq!(python_metadata, metadata.to_json(), "metadata of {id}");
        assert_eq!(r["data"], sample.data, "data of {id} ({})", sample.event_type);
        assert_eq!(r["from_event_bus"], true);
        types.insert(sample.event_type.clone());
    }
    let distinct: BTreeSet<&str> = records.iter().filter_map(|r| r["metadata"].as_str()).collect();
    assert_eq!(distinct.len(), samples.len(), "each event received once");
    println!(
        "Rust -> Python: {} events of {} event types received by RedisEventConsumer; for each, \
         AvroSignalSerializer.to_dict(data) == the sample and metadata.to_json() == what Rust sent; \
         XPENDING for the group: {}",
        records.len(),
        types.len(),
        summary["pending"]
    );
    assert_eq!(types.len(), 72);
}
