//! The raw async-nats ceiling for `bench/compare.py nats`: the same NATS
//! messages `event-bus bench` sends through this backend (the ten
//! CloudEvents headers, the key header and the Avro payload, built once
//! before the clock starts by the backend's own [`wire::event_headers`]),
//! published and consumed with async-nats directly, without the event bus
//! layer (no encoding, no signal dispatch, no ack bookkeeping or flushes).
//!
//! ```text
//! raw_nats_bench --url nats://HOST:PORT --topic TOPIC
//!     [--events 100000] [--producers 128] [--key-field enrollment.course.course_key]
//! ```
//!
//! As in `event-bus bench`:
//!
//! - the topic's stream (named as the backend names it, created if
//!   missing) and a new durable pull consumer (explicit acks, from the
//!   first message) exist before the producers start;
//! - P tasks each publish their share one by one, awaiting each PubAck,
//!   with a fresh `Nats-Msg-Id` per message (the backend sends the event
//!   id, new for every event);
//! - the consumer pulls continuously and acknowledges every message.
//!
//! Prints one JSON object: `{"produce_rate", "e2e_rate", "events", ...}`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use clap::Parser;
use event_bus_nats::{names, wire};
use futures::StreamExt;
use openedx_events::bus::EventBusProducer;
use openedx_events::metadata::EventsMetadata;
use openedx_events::sample;

/// Distinct payloads cycled through (as `event-bus bench`).
const POOL: u64 = 256;

/// The command line (see the module docs).
#[derive(Parser)]
struct Args {
    /// The server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The topic, as the event bus names it (the full topic).
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
    /// The subject prefix (`EVENT_BUS_NATS_SUBJECT_PREFIX`).
    #[arg(long, default_value = "openedx")]
    subject_prefix: String,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Args::parse();
    let n = a.events;
    let t = openedx_events::catalog::get(&a.event_type).ok_or(format!("unknown event type {}", a.event_type))?;
    let subject = names::subject(&a.subject_prefix, &a.topic);

    // The messages, ready-made (sample::rng(42), as `event-bus bench`).
    let mut rng = sample::rng(42);
    let noop = EventBusProducer::noop();
    let mut pool = Vec::new();
    for _ in 0..POOL.min(n) {
        let data = sample::event_data(t, &mut rng);
        let metadata = EventsMetadata::new(t.name(), t.minor_version());
        let message = noop
            .prepare(
                t,
                &a.topic,
                Some(a.key_field.as_str()).filter(|k| !k.is_empty()),
                &data,
                &metadata,
            )
            .map_err(|e| e.to_string())?;
        let headers = wire::event_headers(&message, false)?;
        pool.push(PublishMessage::build().payload(message.body.into()).headers(headers));
    }
    let pool = Arc::new(pool);

    let client = async_nats::connect(a.url.as_str())
        .await
        .map_err(|e| format!("connect to {}: {e}", a.url))?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: names::stream_name(&a.topic),
            subjects: vec![subject.clone()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream: {e}"))?;
    let group = format!("raw-bench-{}", uuid::Uuid::new_v4().simple());
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(group.clone()),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("consumer: {e}"))?;
    let consumer_task = tokio::spawn(async move {
        let mut messages = consumer.messages().await.map_err(|e| format!("pull: {e}"))?;
        let mut seen: HashSet<u64> = HashSet::new();
        let mut deliveries = 0u64;
        while (seen.len() as u64) < n {
            let m = match tokio::time::timeout(Duration::from_secs(60), messages.next()).await {
                Err(_) => return Err(format!("stalled at {} of {n} messages", seen.len())),
                Ok(None) => return Err("the consumer stopped".to_string()),
                Ok(Some(Err(e))) => return Err(format!("consume: {e}")),
                Ok(Some(Ok(m))) => m,
            };
            deliveries += 1;
            if let Ok(info) = m.info() {
                seen.insert(info.stream_sequence);
            }
            m.ack().await.map_err(|e| format!("ack: {e}"))?;
        }
        Ok::<(Instant, u64, u64), String>((Instant::now(), seen.len() as u64, deliveries))
    });

    let started = Instant::now();
    let produced = Arc::new(AtomicU64::new(0));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let share = n / a.producers + u64::from(p < n % a.producers);
        let (js, pool, produced, subject, run) =
            (js.clone(), pool.clone(), produced.clone(), subject.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let publish = pool[((i * 7 + p) % pool.len() as u64) as usize]
                    .clone()
                    .message_id(format!("{run}-{p}-{i}"));
                let ack = js
                    .send_publish(subject.clone(), publish)
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                ack.await.map_err(|e| format!("PubAck: {e}"))?;
                produced.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let (done, received, deliveries) = consumer_task.await.map_err(|e| e.to_string())??;
    let e2e_secs = done.duration_since(started).as_secs_f64();
    let produced = produced.load(Ordering::Relaxed);
    let _ = stream.delete_consumer(&group).await;
    let report = serde_json::json!({
        "client": "async-nats 0.52",
        "topic": a.topic,
        "subject": subject,
        "events": n,
        "producers": a.producers,
        "produced": produced,
        "received": received,
        "deliveries": deliveries,
        "produce_seconds": produce_secs,
        "produce_rate": produced as f64 / produce_secs,
        "e2e_seconds": e2e_secs,
        "e2e_rate": received as f64 / e2e_secs,
    });
    println!("{report}");
    Ok(())
}
