//! The raw lapin ceiling for `bench/compare.py rabbitmq`: the same AMQP
//! messages `event-bus bench` publishes through this backend (the ten
//! CloudEvents headers, the key header and routing key, the AMQP
//! properties, the Avro body; built once before the clock starts by the
//! backend's own [`wire::event_to_amqp`]), published and consumed with lapin
//! directly, without the event bus layer (no encoding, no signal dispatch,
//! no delivery bookkeeping).
//!
//! ```text
//! raw_rabbitmq_bench --url amqp://guest:guest@127.0.0.1:5672/%2f --topic TOPIC
//!     [--events 100000] [--producers 128] [--key-field enrollment.course.course_key]
//!     [--prefetch 100]
//! ```
//!
//! As in `event-bus bench` on this backend:
//!
//! - the topic exchange and a durable quorum queue bound with `#` are
//!   declared, and the consumer started, before the producers start;
//! - P tasks share one connection and one channel in confirm mode (as the
//!   backend's publisher), each publishing its share one by one and
//!   awaiting each publisher confirm; the clock starts before that
//!   connection is opened;
//! - the consumer (prefetch 100, the backend's default) acknowledges every
//!   message as it takes it, one `basic.ack` each.
//!
//! Prints one JSON object: `{"produce_rate", "e2e_rate", "events", ...}`.
//! The queue and the exchange are deleted at the end.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use event_bus_rabbitmq::wire;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use openedx_events::bus::EventBusProducer;
use openedx_events::metadata::EventsMetadata;
use openedx_events::sample;

/// Distinct payloads cycled through (as `event-bus bench`).
const POOL: u64 = 256;

/// The command line (see the module docs).
#[derive(Parser)]
struct Args {
    /// The broker.
    #[arg(long)]
    url: String,
    /// The topic, as the event bus names it (the exchange).
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
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,
}

fn err(what: &str) -> impl Fn(lapin::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Args::parse();
    let n = a.events;
    let t = openedx_events::catalog::get(&a.event_type).ok_or(format!("unknown event type {}", a.event_type))?;

    // The messages, ready-made (sample::rng(42), as `event-bus bench`).
    let mut rng = sample::rng(42);
    let noop = EventBusProducer::noop();
    let mut pool = Vec::new();
    for _ in 0..POOL.min(n) {
        let data = sample::event_data(t, &mut rng);
        let metadata = EventsMetadata::new(t.name(), t.minor_version());
        let key = Some(a.key_field.as_str()).filter(|k| !k.is_empty());
        let message = noop
            .prepare(t, &a.topic, key, &data, &metadata)
            .map_err(|e| e.to_string())?;
        pool.push(wire::event_to_amqp(&message).map_err(|e| e.to_string())?);
    }
    let pool = Arc::new(pool);

    // The consumer first: exchange, quorum queue, binding, consumer.
    let consumer_conn = Connection::connect(&a.url, ConnectionProperties::default())
        .await
        .map_err(err("connect"))?;
    let ch = consumer_conn.create_channel().await.map_err(err("channel"))?;
    let exchange = a.topic.as_str();
    let queue = format!("{}.raw-bench", a.topic);
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default())
        .await
        .map_err(err("declare the exchange"))?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    let qd = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.as_str().into(), qd, args)
        .await
        .map_err(err("declare the queue"))?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(err("bind"))?;
    ch.basic_qos(a.prefetch, BasicQosOptions::default())
        .await
        .map_err(err("qos"))?;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "raw-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("consume"))?;
    let consumer_task = tokio::spawn(async move {
        let mut seen: HashSet<String> = HashSet::new();
        let mut deliveries = 0u64;
        while deliveries < n {
            let d = match tokio::time::timeout(Duration::from_secs(60), consumer.next()).await {
                Err(_) => return Err(format!("stalled at {deliveries} of {n} messages")),
                Ok(None) => return Err("the consumer stopped".to_string()),
                Ok(Some(Err(e))) => return Err(format!("consume: {e}")),
                Ok(Some(Ok(d))) => d,
            };
            deliveries += 1;
            if let Some(id) = d.properties.message_id() {
                seen.insert(id.to_string());
            }
            d.acker.ack(BasicAckOptions::default()).await.map_err(err("ack"))?;
        }
        Ok::<(Instant, u64, u64), String>((Instant::now(), seen.len() as u64, deliveries))
    });

    // The clock starts before the publisher's connection opens (the
    // backend opens it at start-up, but `event-bus bench` also declares the
    // exchange on the first send inside its clock).
    let started = Instant::now();
    let publisher = Connection::connect(&a.url, ConnectionProperties::default())
        .await
        .map_err(err("connect"))?;
    let pch = publisher.create_channel().await.map_err(err("channel"))?;
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err("confirms"))?;
    let produced = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let share = n / a.producers + u64::from(p < n % a.producers);
        let (pch, pool, produced) = (pch.clone(), pool.clone(), produced.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let m = &pool[((i * 7 + p) % pool.len() as u64) as usize];
                let confirm = pch
                    .basic_publish(
                        m.exchange.clone(),
                        m.routing_key.clone(),
                        BasicPublishOptions::default(),
                        &m.body,
                        m.properties.clone(),
                    )
                    .await
                    .map_err(err("publish"))?;
                let c = confirm.await.map_err(err("confirm"))?;
                if !c.is_ack() {
                    return Err("the broker did not confirm a message".to_string());
                }
                produced.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let (done, distinct, deliveries) = consumer_task.await.map_err(|e| e.to_string())??;
    let e2e_secs = done.duration_since(started).as_secs_f64();
    let produced = produced.load(Ordering::Relaxed);

    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await;
    let _ = publisher.close(200, "done".into()).await;
    let _ = consumer_conn.close(200, "done".into()).await;
    let report = serde_json::json!({
        "client": "lapin 4",
        "topic": a.topic,
        "events": n,
        "producers": a.producers,
        "produced": produced,
        "received": deliveries,
        "distinct_payloads": distinct,
        "deliveries": deliveries,
        "produce_seconds": produce_secs,
        "produce_rate": produced as f64 / produce_secs,
        "e2e_seconds": e2e_secs,
        "e2e_rate": deliveries as f64 / e2e_secs,
    });
    println!("{report}");
    Ok(())
}
