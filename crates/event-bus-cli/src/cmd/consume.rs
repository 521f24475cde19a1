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
    let printed = printed.load(Ordering::Relaxed);
    match &result {
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
