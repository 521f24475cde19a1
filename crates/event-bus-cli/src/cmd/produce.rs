//! `event-bus produce`: the `produce_event` management command, with a
//! count for load and a progress bar.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use openedx_events::bus::EventBusProducer;
use openedx_events::metadata::{new_event_id, EventsMetadata};
use serde_json::Value as Json;

use crate::cmd::bus_event_type;
use crate::error::{CliError, Context, Result};
use crate::io::{json_arg, json_object_arg, rate, stderr_is_terminal};
use crate::settings::{self, GlobalArgs};

/// Events in flight at once.
const IN_FLIGHT: usize = 32;

/// How long to wait for the broker to have everything at the end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The event type.
    #[arg(long)]
    pub event_type: String,
    /// The topic, without the prefix.
    #[arg(short, long)]
    pub topic: String,
    /// Dotted path of the message key in the data, e.g. user.pii.username.
    #[arg(long)]
    pub key_field: Option<String>,
    /// The event data as JSON, or @FILE (@- for stdin).
    #[arg(long, value_name = "JSON|@FILE")]
    pub data: String,
    /// How many events to produce (each with its own id).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Metadata fields as a JSON object (or @FILE); missing ones take fresh
    /// values (event_type defaults to --event-type).
    #[arg(long, value_name = "JSON|@FILE")]
    pub metadata: Option<String>,
}

/// Metadata for each event: fresh, or from a template whose missing id and
/// time are fresh for every event.
struct MetadataSource {
    template: Option<EventsMetadata>,
    fresh_id: bool,
    fresh_time: bool,
    event_type: String,
    minor_version: u32,
}

impl MetadataSource {
    fn next(&self) -> EventsMetadata {
        let fresh = || EventsMetadata::new(self.event_type.clone(), self.minor_version);
        match &self.template {
            None => fresh(),
            Some(t) => {
                let mut m = t.clone();
                if self.fresh_id {
                    m.id = new_event_id();
                }
                if self.fresh_time {
                    m.time = fresh().time;
                }
                m
            }
        }
    }
}

fn metadata_source(event_type: &str, minor_version: u32, arg: Option<&str>) -> Result<MetadataSource> {
    let mut source = MetadataSource {
        template: None,
        fresh_id: true,
        fresh_time: true,
        event_type: event_type.to_string(),
        minor_version,
    };
    let Some(arg) = arg else {
        return Ok(source);
    };
    let mut map = json_object_arg("--metadata", arg)?;
    match map.get("event_type") {
        None | Some(Json::Null) => {
            map.insert("event_type".into(), Json::String(event_type.to_string()));
        }
        Some(Json::String(s)) if s == event_type => {}
        Some(other) => {
            return Err(CliError::new(format!(
                "--metadata: field 'event_type' is {other}, but --event-type is {event_type:?}"
            )))
        }
    }
    if map.get("minorversion").is_none_or(Json::is_null) {
        map.insert("minorversion".into(), Json::from(minor_version));
    }
    let present = |k: &str| map.get(k).is_some_and(|v| !v.is_null());
    source.fresh_id = !present("id");
    source.fresh_time = !present("time");
    source.template = Some(EventsMetadata::from_json_value(&Json::Object(map)).context("--metadata")?);
    Ok(source)
}

/// Produce `--count` events, `IN_FLIGHT` at a time, then flush.
pub async fn run(global: &GlobalArgs, args: ProduceArgs) -> Result<()> {
    // Check every input before connecting.
    let t = bus_event_type(&args.event_type)?;
    let data_json = json_arg("--data", &args.data)?;
    let data = t.data_from_json(&data_json).context("--data")?;
    let metadata = metadata_source(t.name(), t.minor_version(), args.metadata.as_deref())?;
    let key_field = args.key_field.as_deref().filter(|k| !k.is_empty());
    if let Some(k) = key_field {
        openedx_events::config::key::check_key_path(t, k).context("--key-field")?;
    }
    EventBusProducer::noop()
        .prepare(t, &args.topic, key_field, &data, &metadata.next())
        .context("--data")?;

    let bus = global.bus().await?;
    let producer = settings::producer(&bus, "produce events")?;
    let full_topic = producer.full_topic(&args.topic);
    let count = args.count;

    let bar = (count > 1 && stderr_is_terminal()).then(|| {
        let bar = ProgressBar::new(count);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})")
        {
            bar.set_style(style);
        }
        bar
    });

    let data = Arc::new(data);
    let started = Instant::now();
    let mut sends = futures::stream::iter(0..count)
        .map(|_| {
            let producer = producer.clone();
            let data = data.clone();
            let metadata = metadata.next();
            let topic = args.topic.clone();
            async move { producer.send(t, &topic, key_field, &data, &metadata).await }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut produced = 0u64;
    let mut failure = None;
    while let Some(result) = sends.next().await {
        match result {
            Ok(_) => {
                produced += 1;
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(sends);
    let flushed = producer.flush(FLUSH_TIMEOUT).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {produced} events of {} to {full_topic} in {secs:.3} s ({:.1} events/s)",
        t.name(),
        rate(produced, secs)
    );
    if let Some(e) = failure {
        return Err(CliError::new(format!("event {} of {count}: {e}", produced + 1)));
    }
    flushed.with_context(|| format!("cannot flush the producer for {full_topic}"))
}
