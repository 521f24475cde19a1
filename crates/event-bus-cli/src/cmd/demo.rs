//! `event-bus demo`: real catalog events flowing between two processes over
//! the embedded SQLite bus, with no configuration and no server.
//!
//! The parent plays an Open edX service: it installs auto-production from a
//! producer configuration (event type → topic and key), and P producer tasks
//! send sample catalog events through their signals, as the LMS or Studio
//! would. A child process of this same binary runs `event-bus consume
//! --output json` on the topic; the parent reads its lines, shows a few, and
//! checks that every event arrived with its data intact.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use openedx_events::bus::consumer::cancel_on_signal;
use openedx_events::bus::EventBus;
use openedx_events::config::Settings;
use openedx_events::metadata::parse_time;
use openedx_events::sample;
use openedx_events::signal::{Event, Signal};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backends::backends;
use crate::error::{CliError, Context, Result};
use crate::io::{println, rate, stderr_is_terminal};

/// The event types the demo service emits, with the key of each.
const DEMO_EVENTS: [(&str, &str); 5] = [
    (
        "org.openedx.learning.course.enrollment.created.v1",
        "enrollment.course.course_key",
    ),
    (
        "org.openedx.learning.auth.session.login.completed.v1",
        "user.pii.username",
    ),
    (
        "org.openedx.content_authoring.xblock.published.v1",
        "xblock_info.usage_key",
    ),
    (
        "org.openedx.learning.course.persistent_grade_summary.changed.v1",
        "grade.course.course_key",
    ),
    (
        "org.openedx.learning.certificate.created.v1",
        "certificate.course.course_key",
    ),
];

/// The topic prefix of the demo.
const PREFIX: &str = "demo";

/// The consumer group of the child process.
const GROUP: &str = "demo-consumer";

/// How long the demo waits without any progress before giving up.
const STALL: Duration = Duration::from_secs(30);

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many events to produce.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Producer tasks sending events concurrently.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub producers: u64,
    /// The SQLite database file (default: a new temporary file).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// How many consumed events to show.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
}

/// What the parent learns from the consumer's lines.
#[derive(Default)]
struct Consumed {
    /// Event id → hash of the data line.
    events: HashMap<Uuid, u64>,
    /// Lines read (duplicates included).
    lines: u64,
    /// Send → read latencies, microseconds.
    latencies: Vec<u64>,
    /// Lines that were not the expected JSON.
    malformed: u64,
}

fn hash_of(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The short name of an event type for display:
/// `org.openedx.learning.course.enrollment.created.v1` → `course.enrollment.created`.
fn short_name(event_type: &str) -> String {
    let parts: Vec<&str> = event_type.split('.').collect();
    match parts.len() {
        n if n > 4 => parts[3..n - 1].join("."),
        _ => event_type.to_string(),
    }
}

/// The producer configuration: each demo event type to `topic`, keyed.
fn producer_config(topic: &str) -> Json {
    let mut config = serde_json::Map::new();
    for (event_type, key) in DEMO_EVENTS {
        config.insert(
            event_type.to_string(),
            json!({ topic: {"event_key_field": key, "enabled": true} }),
        );
    }
    Json::Object(config)
}

/// One `--output json` line of the consumer, parsed.
struct Line<'a> {
    id: Uuid,
    event_type: String,
    time: chrono::DateTime<chrono::Utc>,
    /// The data text exactly as the consumer printed it.
    data: &'a str,
}

/// Parse one `--output json` line.
fn parse_line(line: &str) -> Option<Line<'_>> {
    let j: Json = serde_json::from_str(line).ok()?;
    let m = j.get("metadata")?;
    let start = line.find("\"data\": ")? + "\"data\": ".len();
    Some(Line {
        id: Uuid::parse_str(m.get("id")?.as_str()?).ok()?,
        event_type: m.get("event_type")?.as_str()?.to_string(),
        time: parse_time(m.get("time")?.as_str()?).ok()?,
        data: line.get(start..line.len().checked_sub(1)?)?,
    })
}

/// `text` cut to about `max` bytes.
fn abbreviate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Run the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    if backends().get("sqlite").is_none() {
        return Err(CliError::new(
            "the demo needs the sqlite backend, which this build does not have (build with --features sqlite)",
        ));
    }
    let tempdir;
    let db = match &args.db {
        Some(p) => p.clone(),
        None => {
            tempdir = tempfile::Builder::new()
                .prefix("event-bus-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            tempdir.path().join("events.db")
        }
    };
    let run_id = Uuid::new_v4().simple().to_string().chars().take(8).collect::<String>();
    let topic = format!("events-{run_id}");
    let full_topic = format!("{PREFIX}-{topic}");
    let n = args.events;

    // The service side: settings as an Open edX service would have them.
    let mut settings = Settings::new();
    settings.set("EVENT_BUS_BACKEND", "sqlite");
    settings.set("EVENT_BUS_SQLITE_PATH", db.display().to_string());
    settings.set("EVENT_BUS_TOPIC_PREFIX", PREFIX);
    settings.set("EVENT_BUS_PRODUCER_CONFIG", producer_config(&topic));
    settings.set("EVENTS_SERVICE_NAME", "demo-lms");
    let bus = EventBus::from_settings(settings, &backends()).await?;

    // The consumer process: this binary's own `consume` command.
    let exe = std::env::current_exe().context("cannot find this program to start the consumer")?;
    let mut command = tokio::process::Command::new(&exe);
    command
        .args(["consume", "--backend", "sqlite", "--prefix", PREFIX])
        .arg("--set")
        .arg(format!("EVENT_BUS_SQLITE_PATH={}", db.display()))
        .args(["--set", "EVENT_BUS_AUDIT_LOGGING_ENABLED=false"])
        .args(["--topic", &topic, "--group", GROUP, "--output", "json"])
        .args(["--limit", &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EVENT_BUS_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("EVENT_BUS_LOG", "warn");
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start the consumer process {}", exe.display()))?;
    let child_pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take().context("the consumer process has no stdout")?;
    let stderr = child.stderr.take().context("the consumer process has no stderr")?;

    let place = match &args.db {
        Some(_) => format!("SQLite file {}", db.display()),
        None => format!("SQLite file {} (temporary)", db.display()),
    };
    println(&format!(
        "demo: {n} catalog events sent through their signals by {} producer tasks, auto-produced to {full_topic}\n\
         \x20     consumed by process {child_pid} (`event-bus consume --output json`) over {place}\n\
         \x20     first events as the consumer printed them (type, latency from send, data):",
        args.producers,
    ))?;

    let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
    if !stderr_is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("  {spinner} consumed {pos}/{len} {wide_bar} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));

    // Read the consumer's lines.
    let consumed = Arc::new(Mutex::new(Consumed::default()));
    let reader = {
        let consumed = consumed.clone();
        let bar = bar.clone();
        let samples = args.samples;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut shown = 0usize;
            while let Ok(Some(line)) = lines.next_line().await {
                let now = chrono::Utc::now();
                let Some(parsed) = parse_line(&line) else {
                    if let Ok(mut c) = consumed.lock() {
                        c.malformed += 1;
                    }
                    continue;
                };
                let latency = (now - parsed.time).num_microseconds().unwrap_or(0).max(0) as u64;
                let new = match consumed.lock() {
                    Ok(mut c) => {
                        c.lines += 1;
                        c.latencies.push(latency);
                        c.events.insert(parsed.id, hash_of(parsed.data)).is_none()
                    }
                    Err(_) => false,
                };
                if new {
                    bar.inc(1);
                }
                if shown < samples {
                    shown += 1;
                    let text = format!(
                        "  <- {:<40} {:>6.1} ms  {}",
                        short_name(&parsed.event_type),
                        latency as f64 / 1000.0,
                        abbreviate(parsed.data, 80)
                    );
                    bar.suspend(|| {
                        let _ = println(&text);
                    });
                }
            }
        })
    };
    let child_stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text).await;
        text
    });

    // The service side: P producer tasks sending catalog events.
    let sent: Arc<Mutex<HashMap<Uuid, u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let signals = demo_signals(&bus)?;
    let _auto = bus.install_auto_produce();
    for signal in &signals {
        let sent = sent.clone();
        signal.connect("demo.record", move |event: &Event| {
            if let Ok(mut s) = sent.lock() {
                s.insert(event.metadata.id, hash_of(&event.data.to_json_string()));
            }
            Ok(())
        });
    }
    let produced = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let per_type: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    // Ctrl-C or SIGTERM: stop producing, stop the consumer, report.
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(cancel_on_signal(stop.clone()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers {
        let share = n / args.producers + u64::from(p < n % args.producers);
        let signals = signals.clone();
        let stop = stop.clone();
        let (produced, failures, first_failure, per_type, bar) = (
            produced.clone(),
            failures.clone(),
            first_failure.clone(),
            per_type.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = sample::rng(0x0ed0 + p);
            for i in 0..share {
                if stop.is_cancelled() {
                    break;
                }
                let signal = &signals[((i * args.producers + p) % signals.len() as u64) as usize];
                let t = signal.event_type();
                let data = sample::event_data(t, &mut rng);
                let failure = match signal.send_event(data).await {
                    Ok(outcomes) => outcomes
                        .iter()
                        .find_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.receiver))),
                    Err(e) => Some(e.to_string()),
                };
                match failure {
                    None => {
                        let done = produced.fetch_add(1, Ordering::Relaxed) + 1;
                        bar.set_message(format!("(produced {done})"));
                        if let Ok(mut m) = per_type.lock() {
                            *m.entry(short_name(t.name())).or_default() += 1;
                        }
                    }
                    Some(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first_failure.lock() {
                            f.get_or_insert(format!("{}: {e}", t.name()));
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("a producer task failed")?;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let flushed = bus.producer().flush(Duration::from_secs(30)).await;
    let produced = produced.load(Ordering::Relaxed);
    let failures = failures.load(Ordering::Relaxed);

    // Wait for the consumer: until it has everything, exits, or stalls.
    let mut last_progress = (0usize, Instant::now());
    let child_status = loop {
        let have = consumed.lock().map(|c| c.events.len()).unwrap_or(0);
        if have != last_progress.0 {
            last_progress = (have, Instant::now());
        }
        if last_progress.1.elapsed() > STALL || stop.is_cancelled() {
            let _ = child.start_kill();
            break child.wait().await.ok();
        }
        if have as u64 >= produced {
            // Everything sent arrived. With all N, the consumer stops by its
            // --limit; otherwise it would wait for events that never come.
            if produced < n {
                let _ = child.start_kill();
            }
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(status) => break status.ok(),
                Err(_) => {
                    let _ = child.start_kill();
                    break child.wait().await.ok();
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = reader.await;
    bar.finish_and_clear();
    let consumer_log = child_stderr.await.unwrap_or_default();
    let total_secs = started.elapsed().as_secs_f64();

    let (unique, lines, malformed, mut latencies, events) = {
        let mut c = consumed
            .lock()
            .map_err(|_| CliError::new("internal error: lock poisoned"))?;
        (
            c.events.len() as u64,
            c.lines,
            c.malformed,
            std::mem::take(&mut c.latencies),
            std::mem::take(&mut c.events),
        )
    };
    latencies.sort_unstable();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let mismatched = events.iter().filter(|(id, h)| sent.get(id) != Some(h)).count();

    let mut report = vec![
        format!(
            "  produced  {produced} events in {produce_secs:.3} s ({:.0} events/s), {failures} failures",
            rate(produced, produce_secs)
        ),
        format!(
            "  consumed  {unique} events in {total_secs:.3} s ({:.0} events/s end to end), {} duplicates, {mismatched} not matching what was sent",
            rate(unique, total_secs),
            lines.saturating_sub(unique)
        ),
        format!(
            "  latency   p50 {:.1} ms, p99 {:.1} ms (signal sent -> consumer process printed it -> read here)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        ),
    ];
    if let Ok(per_type) = per_type.lock() {
        let list: Vec<String> = per_type.iter().map(|(t, c)| format!("{t} {c}")).collect();
        report.push(format!("  by type   {}", list.join(", ")));
    }
    if let Some(summary) = consumer_log.lines().rev().find(|l| l.starts_with("consumed from")) {
        report.push(format!("  consumer  {summary}"));
    }
    println(&report.join("\n"))?;

    let child_ok = child_status.is_some_and(|s| s.success());
    watcher.abort();
    if stop.is_cancelled() {
        return Err(CliError::new(format!(
            "demo interrupted: produced {produced}, consumed {unique} of {n} events"
        )));
    }
    let ok = failures == 0 && unique == n && mismatched == 0 && malformed == 0 && child_ok && flushed.is_ok();
    if ok {
        println(&format!(
            "demo: OK, all {n} events were consumed by the other process with their data intact"
        ))?;
        return Ok(());
    }
    let mut why = Vec::new();
    if let Some(f) = first_failure.lock().ok().and_then(|f| f.clone()) {
        why.push(format!("{failures} events not produced (first: {f})"));
    }
    if let Err(e) = flushed {
        why.push(format!("flush failed: {e}"));
    }
    if unique != n {
        why.push(format!("consumed {unique} of {n} events"));
    }
    if mismatched > 0 {
        why.push(format!("{mismatched} events differ from what was sent"));
    }
    if malformed > 0 {
        why.push(format!("{malformed} malformed lines from the consumer"));
    }
    if !child_ok {
        let last = consumer_log
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("no error message")
            .to_string();
        why.push(format!(
            "the consumer process ended with {} ({last})",
            child_status.map_or("no status".to_string(), |s| s.to_string())
        ));
    }
    Err(CliError::new(format!("demo failed: {}", why.join("; "))))
}

fn demo_signals(bus: &EventBus) -> Result<Vec<Arc<Signal>>> {
    DEMO_EVENTS
        .iter()
        .map(|(name, _)| {
            bus.registry()
                .get(name)
                .with_context(|| format!("event type {name} is not in the registry"))
        })
        .collect()
}
