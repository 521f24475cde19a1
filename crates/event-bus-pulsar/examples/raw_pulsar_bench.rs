//! The raw pulsar-rs ceiling for `bench/compare.py pulsar`: the same Pulsar
//! messages `event-bus bench` sends (the ten CloudEvents properties, the
//! partition key, the Avro payload and event time, built once before the
//! clock starts by the backend's own [`wire::event_record`]), produced
//! and consumed with pulsar-rs directly, without the event bus layer (no
//! encoding, no signal dispatch, no ack bookkeeping or ack flushes).
//!
//! ```text
//! raw_pulsar_bench --url pulsar://HOST:PORT --topic TOPIC
//!     [--events 100000] [--producers 128] [--key-field enrollment.course.course_key]
//!     [--receiver-queue 1000] [--ack-round-trip-every K]
//! ```
//!
//! `--ack-round-trip-every K` asks the broker for the last message id after
//! every K acknowledgements, as the backend's `flush_acks` does after each
//! batch of the consume loop (at most 64): for diagnosis.
//!
//! Against pulsar-lite, `--url` must be the `ChecksumRestoringProxy` (see
//! the `pulsar_lite_fixture` example), as for the backend. As in
//! `event-bus bench`:
//!
//! - a `Shared` subscription (new, durable, from the earliest message) is
//!   opened before the producers start;
//! - P tasks share one producer (as the backend's cached producer per
//!   topic, behind a mutex for `send_non_blocking`), each sending its share
//!   one by one and awaiting each receipt, without batching or compression;
//!   the clock starts before the producer is created (the backend creates
//!   its producer on the first send);
//! - the consumer acknowledges every message as it takes it.
//!
//! Prints one JSON object: `{"produce_rate", "e2e_rate", "events", ...}`.

use clap::Parser;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_pulsar::wire;
use futures::StreamExt;
use openedx_events::bus::EventBusProducer;
use openedx_events::metadata::EventsMetadata;
use openedx_events::sample;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, ProducerOptions, Pulsar, SubType, TokioExecutor};
use tokio::sync::Mutex;

/// Distinct payloads cycled through (as `event-bus bench`).
const POOL: u64 = 256;

/// The command line (see the module docs).
#[derive(Parser)]
struct Args {
    /// The broker (or, for pulsar-lite, the checksum-restoring proxy).
    #[arg(long)]
    url: String,
    /// The topic, as the event bus names it (before the Pulsar mapping).
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
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    receiver_queue: u32,
    /// Ask the broker for the last message id after every K acks (0: never).
    #[arg(long, default_value_t = 0)]
    ack_round_trip_every: u64,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Args::parse();
    let n = a.events;
    let t = openedx_events::catalog::get(&a.event_type).ok_or(format!("unknown event type {}", a.event_type))?;
    let topic = wire::pulsar_topic("public", "default", &a.topic);

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
        pool.push(wire::event_record(&message)?.into_message());
    }
    let pool = Arc::new(pool);

    let client: Pulsar<TokioExecutor> = Pulsar::builder(a.url.clone(), TokioExecutor)
        .build()
        .await
        .map_err(|e| format!("connect to {}: {e}", a.url))?;

    // The consumer first.
    let subscription = format!("raw-bench-{}", uuid::Uuid::new_v4().simple());
    let mut consumer: Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription(&subscription)
        .with_subscription_type(SubType::Shared)
        // pulsar-lite does not scope consumer ids by connection.
        .with_consumer_id(rand::random::<u64>() >> 1)
        .with_batch_size(a.receiver_queue)
        .with_options(ConsumerOptions {
            initial_position: InitialPosition::Earliest,
            durable: Some(true),
            ..Default::default()
        })
        .build()
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let round_trip_every = a.ack_round_trip_every;
    let consumer_task = tokio::spawn(async move {
        let mut seen: HashSet<(u64, u64, i32, i32)> = HashSet::new();
        let mut deliveries = 0u64;
        while (seen.len() as u64) < n {
            let m = match tokio::time::timeout(Duration::from_secs(60), consumer.next()).await {
                Err(_) => return Err(format!("stalled at {} of {n} messages", seen.len())),
                Ok(None) => return Err("the consumer stopped".to_string()),
                Ok(Some(Err(e))) => return Err(format!("consume: {e}")),
                Ok(Some(Ok(m))) => m,
            };
            deliveries += 1;
            let id = m.message_id();
            seen.insert((
                id.ledger_id,
                id.entry_id,
                id.partition.unwrap_or(-1),
                id.batch_index.unwrap_or(-1),
            ));
            consumer.ack(&m).await.map_err(|e| format!("ack: {e}"))?;
            if round_trip_every > 0 && deliveries % round_trip_every == 0 {
                // What the backend's flush_acks does after each batch.
                let _ = consumer.get_last_message_id().await;
            }
        }
        let done = Instant::now();
        let _ = consumer.close().await;
        Ok::<(Instant, u64, u64), String>((done, seen.len() as u64, deliveries))
    });

    // The clock starts before the producer is created: the backend creates
    // its producer on the first send, inside `event-bus bench`'s clock.
    let started = Instant::now();
    let producer = client
        .producer()
        .with_topic(&topic)
        .with_options(ProducerOptions {
            compression: Some(pulsar::compression::Compression::None),
            ..ProducerOptions::default()
        })
        .build()
        .await
        .map_err(|e| format!("create the producer: {e}"))?;
    let producer = Arc::new(Mutex::new(producer));
    let produced = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let share = n / a.producers + u64::from(p < n % a.producers);
        let (producer, pool, produced) = (producer.clone(), pool.clone(), produced.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let message = pool[((i * 7 + p) % pool.len() as u64) as usize].clone();
                let receipt = {
                    let mut guard = producer.lock().await;
                    guard
                        .send_non_blocking(message)
                        .await
                        .map_err(|e| format!("send: {e}"))?
                };
                receipt.await.map_err(|e| format!("receipt: {e}"))?;
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
    let _ = producer.lock().await.close().await;
    let report = serde_json::json!({
        "client": "pulsar-rs 6.9",
        "topic": topic,
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
