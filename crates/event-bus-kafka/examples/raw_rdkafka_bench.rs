//! The raw librdkafka ceiling for `bench/compare.py kafka`: the same Kafka
//! messages `event-bus bench` sends (the ten CloudEvents headers, the
//! Confluent-framed key and value, built once before the clock starts by the
//! backend's own [`build_record`]), produced and consumed with `rdkafka`
//! directly, without the event bus layer (no encoding, no registry lookups,
//! no signal dispatch, no offset tracker).
//!
//! ```text
//! raw_rdkafka_bench --bootstrap HOST:PORT --registry URL --topic TOPIC
//!     [--events 100000] [--producers 128] [--key-field enrollment.course.course_key]
//!     [--batch 64] [--sync-commits]
//! ```
//!
//! The topic must exist. As in `event-bus bench`:
//!
//! - the consumer joins its group (a new one, `auto.offset.reset=earliest`,
//!   auto-commit and auto offset store off) before the producers start, and
//!   the end-to-end clock includes the group join;
//! - P tasks each send their share one by one, awaiting each delivery
//!   report, with the backend's producer configuration
//!   ([`KafkaSettings::producer_config`]: `enable.idempotence=true`,
//!   `acks=all`), then the producer is flushed: that is the produce time;
//! - the consumer takes up to `--batch` messages (one awaited, then what is
//!   already there), stores their offsets and commits after each batch
//!   (asynchronously, or synchronously on a blocking thread with
//!   `--sync-commits`, as the backend does).
//!
//! Prints one JSON object: `{"produce_rate", "e2e_rate", "events", ...}`.

use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_kafka::registry::SchemaRegistry;
use event_bus_kafka::wire::{build_record, KafkaRecord};
use event_bus_kafka::KafkaSettings;
use futures::FutureExt;
use openedx_events::bus::transport::OutgoingMessage;
use openedx_events::bus::EventBusProducer;
use openedx_events::metadata::EventsMetadata;
use openedx_events::sample;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Message;

/// Distinct payloads cycled through (as `event-bus bench`).
const POOL: u64 = 256;

/// The command line (see the module docs).
#[derive(Parser)]
struct Args {
    /// The broker, `HOST:PORT`.
    #[arg(long)]
    bootstrap: String,
    /// The schema registry URL.
    #[arg(long)]
    registry: String,
    /// The topic (created beforehand).
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    producers: u64,
    /// The key field; empty for no key.
    #[arg(long, default_value = "enrollment.course.course_key")]
    key_field: String,
    #[arg(long, default_value = "org.openedx.learning.course.enrollment.created.v1")]
    event_type: String,
    /// Messages taken per consumer batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Commit synchronously, as the backend does.
    #[arg(long)]
    sync_commits: bool,
}

/// The pool of ready-made records: what the backend would send for the same
/// sample events (`sample::rng(42)`, as `event-bus bench`).
async fn records(a: &Args, settings: &KafkaSettings) -> Result<Vec<KafkaRecord>, String> {
    let t = openedx_events::catalog::get(&a.event_type).ok_or(format!("unknown event type {}", a.event_type))?;
    let registry = SchemaRegistry::new(&settings.schema_registry_url, None, settings.schema_registry_timeout)
        .map_err(|e| e.to_string())?;
    let mut rng = sample::rng(42);
    let noop = EventBusProducer::noop();
    let mut out = Vec::new();
    for _ in 0..POOL.min(a.events) {
        let data = sample::event_data(t, &mut rng);
        let metadata = EventsMetadata::new(t.name(), t.minor_version());
        let message: OutgoingMessage = noop
            .prepare(
                t,
                &a.topic,
                Some(a.key_field.as_str()).filter(|k| !k.is_empty()),
                &data,
                &metadata,
            )
            .map_err(|e| e.to_string())?;
        out.push(build_record(&message, &registry).await.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Args::parse();
    let n = a.events;
    let settings = KafkaSettings::new(a.bootstrap.clone(), a.registry.clone());
    let pool = Arc::new(records(&a, &settings).await?);

    // The consumer first: a new group, from the earliest offset.
    let group = format!("raw-bench-{}", uuid::Uuid::new_v4().simple());
    let mut config = settings.consumer_config(&group);
    config.set("auto.offset.reset", "earliest");
    let consumer: Arc<StreamConsumer> = Arc::new(config.create().map_err(|e| format!("consumer: {e}"))?);
    consumer.subscribe(&[&a.topic]).map_err(|e| format!("subscribe: {e}"))?;
    let (batch, sync_commits) = (a.batch as usize, a.sync_commits);
    let consumer_task = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            let mut received = 0u64;
            let mut bytes = 0usize;
            let stall = Duration::from_secs(60);
            while received < n {
                let first = match tokio::time::timeout(stall, consumer.recv()).await {
                    Err(_) => return Err(format!("stalled at {received} of {n} messages")),
                    Ok(Err(e)) => {
                        eprintln!("raw_rdkafka_bench: consumer notice: {e}");
                        continue;
                    }
                    Ok(Ok(m)) => m,
                };
                let mut taken = vec![first];
                while taken.len() < batch {
                    match consumer.recv().now_or_never() {
                        Some(Ok(m)) => taken.push(m),
                        _ => break,
                    }
                }
                for m in &taken {
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    consumer
                        .store_offset_from_message(m)
                        .map_err(|e| format!("store offset: {e}"))?;
                }
                received += taken.len() as u64;
                drop(taken);
                if sync_commits {
                    let c = consumer.clone();
                    tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("commit: {e}"))?;
                } else if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                    eprintln!("raw_rdkafka_bench: commit: {e}");
                }
            }
            let done = Instant::now();
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            Ok::<(Instant, u64, usize), String>((done, received, bytes))
        }
    });

    // Produce from P tasks, each awaiting its delivery reports one by one.
    let producer: FutureProducer = settings
        .producer_config()
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let produced = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let share = n / a.producers + u64::from(p < n % a.producers);
        let (producer, pool, produced, topic) = (producer.clone(), pool.clone(), produced.clone(), a.topic.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let r = &pool[((i * 7 + p) % pool.len() as u64) as usize];
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (name, v) in &r.headers {
                    h = h.insert(Header {
                        key: name,
                        value: Some(v.as_slice()),
                    });
                }
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&topic).payload(r.value.as_slice()).headers(h);
                if let Some(k) = &r.key {
                    record = record.key(k.as_slice());
                }
                let delivery = producer.send_result(record).map_err(|(e, _)| e.to_string())?;
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(e.to_string()),
                    Err(_) => return Err("the producer closed".to_string()),
                }
                produced.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    {
        let producer = producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(60)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("flush: {e}"))?;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let (done, received, bytes) = consumer_task.await.map_err(|e| e.to_string())??;
    let e2e_secs = done.duration_since(started).as_secs_f64();
    let produced = produced.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "client": format!("rdkafka {} (librdkafka {})", "0.39", rdkafka::util::get_rdkafka_version().1),
        "topic": a.topic,
        "events": n,
        "producers": a.producers,
        "produced": produced,
        "received": received,
        "value_bytes_received": bytes,
        "commits": if sync_commits { "sync, per batch" } else { "async, per batch" },
        "batch": batch,
        "produce_seconds": produce_secs,
        "produce_rate": produced as f64 / produce_secs,
        "e2e_seconds": e2e_secs,
        "e2e_rate": received as f64 / e2e_secs,
    });
    println!("{report}");
    Ok(())
}
