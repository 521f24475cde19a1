//! `event-bus consume`: the `consume_events` management command. One
//! receiver, connected to every event type of the registry, prints each
//! event; the core's consume loop does the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use clap::Args;
use openedx_events::bus::consumer::cancel_on_signal;
use openedx_events::bus::{ConsumerError, ConsumerStats};
use openedx_events::config::full_topic;
use openedx_events::pyjson::{dumps, DumpOptions};
use openedx_events::signal::{Event, ReceiverError};
use tokio_util::sync::CancellationToken;

use crate::error::{CliError, Result};
use crate::io::{json_object_arg, rate};
use crate::settings::GlobalArgs;
use crate::Output;

/// Arguments of `consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic, without the prefix.
    #[arg(short, long)]
    pub topic: String,
    /// The consumer group.
    #[arg(short, long, visible_alias = "group_id", alias = "group-id")]
    pub group: String,
    /// Backend-specific options as a JSON object (ConsumerOptions.extras),
    /// e.g. '{"consumer_name": "c1"}'.
    #[arg(long, value_name = "JSON")]
    pub extra: Option<String>,
    /// Stop after this many events handled (processed or dead-lettered).
    #[arg(long)]
    pub limit: Option<u64>,
    /// How to print each event.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// This member's name in the group (default: host and process id, or
    /// "consumer_name" of --extra).
    #[arg(long)]
    pub consumer_name: Option<String>,
    /// Serve /metrics (Prometheus), /health/live and /health/ready on this
    /// address, e.g. 127.0.0.1:9464 (sets EVENT_BUS_METRICS_ADDR).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// The loop is not live after this many seconds without progress
    /// (sets EVENT_BUS_HEALTH_STALL_SECONDS; default 60).
    #[arg(long, value_name = "SECONDS")]
    pub stall_after: Option<f64>,
}

/// The telemetry server and the lag gauges of `consume`, when asked for:
/// started before the consumer, so every metric of the run is recorded.
async fn start_telemetry(
    global: &GlobalArgs,
    args: &ConsumeArgs,
) -> Result<Option<event_bus_telemetry::TelemetryServer>> {
    let settings = global.settings()?;
    let addr = match &args.metrics_addr {
        Some(a) => Some(("--metrics-addr", a.clone())),
        None => settings
            .string("EVENT_BUS_METRICS_ADDR")?
            .map(|a| ("EVENT_BUS_METRICS_ADDR", a)),
    };
    let Some((source, addr)) = addr.filter(|(_, a)| !a.trim().is_empty()) else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = addr.trim().parse().map_err(|e| {
        CliError::new(format!(
            "{source}: expected HOST:PORT such as 127.0.0.1:9464, found {addr:?}: {e}"
        ))
    })?;
    let mut options = event_bus_telemetry::TelemetryOptions::new(addr);
    let stall = match args.stall_after {
        Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(CliError::new(format!(
                "--stall-after: expected a positive number of seconds, found {s}"
            )))
        }
        None => settings.seconds("EVENT_BUS_HEALTH_STALL_SECONDS")?,
    };
    if let Some(stall) = stall {
        options.stall_after = stall;
    }
    Ok(Some(event_bus_telemetry::TelemetryServer::start(options).await?))
}

/// One line of `--output json`: `{"metadata": ..., "data": ...}` with
/// Python's separators; metadata keys in field order, data keys sorted.
pub fn json_line(event: &Event) -> String {
    let metadata = dumps(&event.metadata.to_json_data(), DumpOptions::default());
    let data = event.data.to_json_string();
    format!("{{\"metadata\": {metadata}, \"data\": {data}}}")
}

/// One line of `--output text`.
pub fn text_line(event: &Event) -> String {
    let mut data = event.data.to_json_string();
    if data.len() > 160 {
        let mut end = 157;
        while !data.is_char_boundary(end) {
            end -= 1;
        }
        data.truncate(end);
        data.push_str("...");
    }
    format!(
        "{} {} id={} source={} {}",
        event.metadata.time_isoformat(),
        event.event_type.name(),
        event.metadata.id,
        event.metadata.source,
        data
    )
}

/// Run the consumer until a signal, the limit, or a fatal error.
pub async fn run(global: &GlobalArgs, args: ConsumeArgs) -> Result<()> {
    // Inputs first: nothing is connected if they are wrong.
    let extras = match &args.extra {
        Some(text) => json_object_arg("--extra", text)?,
        None => serde_json::Map::new(),
    };
    let telemetry = start_telemetry(global, &args).await?;
    let lag_every = global
        .settings()?
        .seconds("EVENT_BUS_LAG_POLL_SECONDS")?
        .unwrap_or(std::time::Duration::from_secs(15));
    let bus = global.bus().await?;
    let mut options = bus.consumer_options(&args.topic, &args.group)?;
    if let Some(name) = extras.get("consumer_name").and_then(|v| v.as_str()) {
        options.consumer_name = name.to_string();
    }
    if let Some(name) = &args.consumer_name {
        options.consumer_name = name.clone();
    }
    options.extras = extras;
    options.limit = args.limit;
    let topic = full_topic(options.prefix.as_deref(), &options.topic);
    let consumer = bus.consumer_with(options)?;
    let lag_gauges = match (&telemetry, bus.transport()) {
        (Some(_), Some(t)) if !lag_every.is_zero() => Some(event_bus_telemetry::spawn_lag_gauges(
            t.clone(),
            topic.clone(),
            args.group.clone(),
            lag_every,
        )),
        _ => None,
    };

    let shutdown = CancellationToken::new();
    let printed = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let write_error = Arc::new(OnceLock::<String>::new());
    let print = {
        let shutdown = shutdown.clone();
        let printed = printed.clone();
        let closed = closed.clone();
        let write_error = write_error.clone();
        let output = args.output;
        Arc::new(move |event: &Event| -> Result<(), ReceiverError> {
            let line = match output {
                Output::Json => json_line(event),
                Output::Text => text_line(event),
            };
            if let Err(e) = crate::io::write_stdout(&line, true) {
                // Stop, handing the message back: printing is the only job.
                if e.is_quiet() {
                    closed.store(true, Ordering::SeqCst);
                } else {
                    let _ = write_error.set(e.one_line());
                }
                shutdown.cancel();
                return Err(format!("cannot print the event: {}", e.one_line()).into());
            }
            printed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    };
    for signal in bus.registry().all() {
        let print = print.clone();
        signal.connect("event_bus_cli.print", move |event| print(event));
    }

    let watcher = tokio::spawn(cancel_on_signal(shutdown.clone()));
    let started = Instant::now();
    let result = consumer.consume(shutdown).await;
    watcher.abort();
    if let Some(task) = lag_gauges {
        task.abort();
    }
    drop(telemetry);
    let printed = printed.load(Ordering::Relaxed);
    // With JSON logs stderr carries only JSON lines: the core's "consumer
    // stopped" line has the counts.
    let json_logs = matches!(global.log_format(), Ok(crate::logging::LogFormat::Json));
    match &result {
        _ if json_logs => {}
        Ok(stats) => eprintln!("{}", summary(&topic, &args.group, stats)),
        Err(ConsumerError::TooManyErrors { stats, .. }) => {
            let mut stats = stats.clone();
            stats.elapsed = started.elapsed();
            eprintln!("{}", summary(&topic, &args.group, &stats))
        }
        Err(_) => eprintln!(
            "consumed from {topic} (group {}): printed {printed} events in {:.3} s",
            args.group,
            started.elapsed().as_secs_f64()
        ),
    }
    if closed.load(Ordering::SeqCst) {
        return Err(CliError::stdout_closed());
    }
    if let Some(e) = write_error.get() {
        return Err(CliError::new(e.clone()));
    }
    result.map(|_| ()).map_err(CliError::from)
}

fn summary(topic: &str, group: &str, stats: &ConsumerStats) -> String {
    let secs = stats.elapsed.as_secs_f64();
    format!(
        "consumed from {topic} (group {group}): received {}, processed {}, dead-lettered {}, retried {} in {secs:.3} s ({:.1} events/s)",
        stats.received,
        stats.processed,
        stats.dead_lettered,
        stats.retried,
        rate(stats.processed, secs)
    )
}
