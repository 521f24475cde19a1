//! `event-bus bench`: a backend-agnostic workload on the configured backend.
//!
//! A consumer starts first on a fresh topic; P tasks then produce N events
//! of one type, each awaiting its sends. Measured: the produce rate (until
//! the last send returned and the producer flushed), the end-to-end rate
//! (until the receiver has seen all N), the latency of each event (receive
//! time minus its metadata time) and the process's peak RSS.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use openedx_events::bus::transport::StartPosition;
use openedx_events::bus::EventBusConsumer;
use openedx_events::metadata::EventsMetadata;
use openedx_events::pyjson::{dumps, DumpOptions};
use openedx_events::sample;
use openedx_events::signal::{Event, Registry};
use openedx_events::value::Record;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cmd::bus_event_type;
use crate::error::{CliError, Context, Result};
use crate::io::{peak_rss_kib, println, rate};
use crate::settings::{self, GlobalArgs};

/// How long the benchmark waits without progress before giving up.
const STALL: Duration = Duration::from_secs(60);

/// Distinct sample payloads cycled through.
const POOL: u64 = 256;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How many events to produce.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// The event type to produce (sample data).
    #[arg(long, default_value = "org.openedx.learning.course.enrollment.created.v1")]
    pub event_type: String,
    /// Producer tasks, each awaiting its sends one by one.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub producers: u64,
    /// Dotted path of the message key in the data (default: no key).
    #[arg(long)]
    pub key_field: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only produce (no consumer runs): the produce rate on its own, to
    /// compare with a raw broker client.
    #[arg(long)]
    pub produce_only: bool,
    /// The topic to use (default: a fresh `bench-<id>`); for brokers whose
    /// topics must be created beforehand.
    #[arg(long)]
    pub topic: Option<String>,
}

#[derive(Default)]
struct Received {
    ids: HashSet<Uuid>,
    latencies_us: Vec<u64>,
    done_at: Option<Instant>,
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Run the benchmark.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> Result<()> {
    let t = bus_event_type(&args.event_type)?;
    let key_field = args.key_field.clone().filter(|k| !k.is_empty());
    if let Some(k) = &key_field {
        openedx_events::config::key::check_key_path(t, k).context("--key-field")?;
    }
    let n = args.events;
    let mut rng = sample::rng(42);
    let pool: Arc<Vec<Record>> = Arc::new((0..POOL.min(n)).map(|_| sample::event_data(t, &mut rng)).collect());

    let bus = global.bus().await?;
    let producer = settings::producer(&bus, "benchmark")?;
    let transport = settings::transport(&bus, "benchmark")?;
    let backend = transport.name().to_string();
    let run_id = Uuid::new_v4().simple().to_string().chars().take(8).collect::<String>();
    let topic = args.topic.clone().unwrap_or_else(|| format!("bench-{run_id}"));
    let full_topic = producer.full_topic(&topic);

    // The consumer first, with its own registry and a counting receiver.
    let registry = Arc::new(Registry::with_catalog());
    let signal = registry
        .get(t.name())
        .with_context(|| format!("event type {} is not in the registry", t.name()))?;
    let received = Arc::new(Mutex::new(Received::default()));
    let all_received = Arc::new(Notify::new());
    {
        let received = received.clone();
        let all_received = all_received.clone();
        signal.connect("bench.count", move |event: &Event| {
            let latency = (chrono::Utc::now() - event.metadata.time)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as u64;
            if let Ok(mut r) = received.lock() {
                if r.ids.insert(event.metadata.id) {
                    r.latencies_us.push(latency);
                    if r.ids.len() as u64 == n {
                        r.done_at = Some(Instant::now());
                        all_received.notify_one();
                    }
                }
            }
            Ok(())
        });
    }
    let mut options = bus.consumer_options(&topic, &format!("bench-{run_id}"))?;
    options.limit = Some(n);
    options.audit_log = false;
    options.start = StartPosition::Earliest;
    let consumer = EventBusConsumer::new(transport.clone(), registry.clone(), options);
    let shutdown = CancellationToken::new();
    let consumer_task = (!args.produce_only).then(|| {
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move { consumer.consume(shutdown).await }
        })
    });

    // Produce from P tasks.
    let produced = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers {
        let share = n / args.producers + u64::from(p < n % args.producers);
        let (producer, pool, produced, topic, key_field, t) = (
            producer.clone(),
            pool.clone(),
            produced.clone(),
            topic.clone(),
            key_field.clone(),
            t.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let data = &pool[((i * 7 + p) % pool.len() as u64) as usize];
                let metadata = EventsMetadata::new(t.name(), t.minor_version());
                producer.send(&t, &topic, key_field.as_deref(), data, &metadata).await?;
                produced.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), openedx_events::bus::ProduceError>(())
        }));
    }
    let mut produce_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                produce_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                produce_error.get_or_insert_with(|| format!("producer task failed: {e}"));
            }
        }
    }
    let flushed = producer.flush(Duration::from_secs(60)).await;
    let produce_secs = started.elapsed().as_secs_f64();
    let produced = produced.load(Ordering::Relaxed);
    let Some(consumer_task) = consumer_task else {
        return report_produce_only(
            &args,
            &backend,
            t.name(),
            &full_topic,
            produced,
            produce_secs,
            produce_error,
            flushed,
        );
    };

    // Wait until everything is received, or nothing moves for a while.
    let mut last = (0usize, Instant::now());
    loop {
        let have = received.lock().map(|r| r.ids.len()).unwrap_or(0);
        if have as u64 >= produced || consumer_task.is_finished() {
            break;
        }
        if have != last.0 {
            last = (have, Instant::now());
        } else if last.1.elapsed() > STALL {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), all_received.notified()).await;
    }
    shutdown.cancel();
    let consumer_result = consumer_task.await;
    let (count, mut latencies, done_at) = {
        let mut r = received
            .lock()
            .map_err(|_| CliError::new("internal error: lock poisoned"))?;
        (r.ids.len() as u64, std::mem::take(&mut r.latencies_us), r.done_at)
    };
    let e2e_secs = done_at
        .unwrap_or_else(Instant::now)
        .duration_since(started)
        .as_secs_f64();
    latencies.sort_unstable();
    let (p50, p99) = (percentile_ms(&latencies, 0.5), percentile_ms(&latencies, 0.99));
    let rss = peak_rss_kib();
    let dead_lettered = match &consumer_result {
        Ok(Ok(stats)) => stats.dead_lettered,
        _ => 0,
    };

    if args.json {
        let report = json!({
            "backend": backend,
            "event_type": t.name(),
            "topic": full_topic,
            "events": n,
            "producers": args.producers,
            "produced": produced,
            "received": count,
            "dead_lettered": dead_lettered,
            "produce_seconds": round3(produce_secs),
            "produce_rate": round1(rate(produced, produce_secs)),
            "e2e_seconds": round3(e2e_secs),
            "e2e_rate": round1(rate(count, e2e_secs)),
            "latency_p50_ms": round3(p50),
            "latency_p99_ms": round3(p99),
            "peak_rss_kib": rss,
        });
        println(&dumps(&report, DumpOptions::default()))?;
    } else {
        let rss_text = rss.map_or("unknown".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let rows = [
            ("backend", backend.clone()),
            ("event type", t.name().to_string()),
            ("topic", full_topic.clone()),
            ("events", format!("{n} ({} producers)", args.producers)),
            (
                "produce",
                format!("{produce_secs:.3} s  {:.1} events/s", rate(produced, produce_secs)),
            ),
            (
                "end to end",
                format!("{e2e_secs:.3} s  {:.1} events/s", rate(count, e2e_secs)),
            ),
            ("latency p50", format!("{p50:.3} ms")),
            ("latency p99", format!("{p99:.3} ms")),
            ("received", format!("{count} ({dead_lettered} dead-lettered)")),
            ("peak RSS", rss_text),
        ];
        let text: Vec<String> = rows.iter().map(|(k, v)| format!("{k:<12} {v}")).collect();
        println(&text.join("\n"))?;
    }

    if let Some(e) = produce_error {
        return Err(CliError::new(format!("producing to {full_topic}: {e}")));
    }
    flushed.with_context(|| format!("cannot flush the producer for {full_topic}"))?;
    match consumer_result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(CliError::new(format!("consuming {full_topic}: {e}"))),
        Err(e) => return Err(CliError::new(format!("consumer task failed: {e}"))),
    }
    if count < n {
        return Err(CliError::new(format!(
            "received {count} of {n} events from {full_topic} (stalled for {} s)",
            STALL.as_secs()
        )));
    }
    Ok(())
}

/// The report of `--produce-only`.
#[allow(clippy::too_many_arguments)]
fn report_produce_only(
    args: &BenchArgs,
    backend: &str,
    event_type: &str,
    full_topic: &str,
    produced: u64,
    produce_secs: f64,
    produce_error: Option<String>,
    flushed: std::result::Result<(), openedx_events::bus::TransportError>,
) -> Result<()> {
    let rss = peak_rss_kib();
    if args.json {
        let report = json!({
            "backend": backend,
            "event_type": event_type,
            "topic": full_topic,
            "events": args.events,
            "producers": args.producers,
            "produced": produced,
            "produce_seconds": round3(produce_secs),
            "produce_rate": round1(rate(produced, produce_secs)),
            "peak_rss_kib": rss,
        });
        println(&dumps(&report, DumpOptions::default()))?;
    } else {
        println(&format!(
            "backend      {backend}\nevent type   {event_type}\ntopic        {full_topic}\nevents       {} ({} producers, no consumer)\nproduce      {produce_secs:.3} s  {:.1} events/s",
            args.events,
            args.producers,
            rate(produced, produce_secs)
        ))?;
    }
    if let Some(e) = produce_error {
        return Err(CliError::new(format!("producing to {full_topic}: {e}")));
    }
    flushed.with_context(|| format!("cannot flush the producer for {full_topic}"))?;
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
