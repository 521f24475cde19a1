//! A **test fixture** for the benchmark harness (`bench/compare.py kafka`):
//! a tansu broker with SQLite storage (see [`TansuBroker`]) and the schema
//! registry **test double** ([`RegistryDouble`]) in one process. Neither is a
//! production component: tansu is the Kafka-compatible broker this machine
//! can run, and the registry double is an in-memory Confluent-API stand-in.
//!
//! ```text
//! cargo run --release -p event-bus-kafka --features testing --example tansu_bench_fixture -- [--storage sqlite|memory]
//! ```
//!
//! The storage is SQLite (`sqlite://tansu.db` in a fresh temporary
//! directory) unless `--storage memory` asks for tansu's in-memory engine.
//!
//! It prints, one per line, `BOOTSTRAP_SERVERS=127.0.0.1:PORT`,
//! `REGISTRY_URL=http://127.0.0.1:PORT`, `TANSU_STORAGE=...`,
//! `TANSU_LOG=...`, then `READY`, and reads commands on standard input, one
//! per line, answering `OK` or `ERROR <reason>` on one line:
//!
//! - `create PARTITIONS TOPIC...`: create the topics (tansu creates none by
//!   itself) and wait until the broker lists them;
//! - `watch PREFIX PARTITIONS`: from now on, create the topic of every new
//!   schema registry subject whose topic starts with `PREFIX`, as soon as the
//!   subject is registered (the key schema is registered before the first
//!   send). A stop-gap for `event-bus bench`, which picks a random topic
//!   name (`bench-<id>`) that cannot be created beforehand; each such
//!   creation is reported on standard error as
//!   `auto-created TOPIC after MS ms`;
//! - `quit`, or the end of standard input: stop the broker and the double and
//!   exit (so the fixture ends with the process that piped it).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_bus_kafka::testing::{create_topics, RegistryDouble, TansuBroker};

/// Avro primitive type names: the suffix of a key subject.
const PRIMITIVES: &[&str] = &["string", "long", "int", "boolean", "double", "float", "bytes"];

/// The full topic of a registry subject: `<topic>-<primitive>` (key) or
/// `<topic>-<event type>.CloudEvent` (value).
fn topic_of_subject(subject: &str) -> Option<String> {
    if let Some(rest) = subject.strip_suffix(".CloudEvent") {
        let at = rest.find("-org.openedx.")?;
        return Some(rest[..at].to_string());
    }
    let (topic, kind) = subject.rsplit_once('-')?;
    PRIMITIVES.contains(&kind).then(|| topic.to_string())
}

struct Watch {
    prefix: String,
    partitions: i32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let broker = match args.iter().position(|a| a == "--storage").and_then(|i| args.get(i + 1)) {
        None => TansuBroker::start_sqlite()?,
        Some(s) if s == "sqlite" => TansuBroker::start_sqlite()?,
        Some(s) if s == "memory" => TansuBroker::start()?,
        Some(other) => return Err(format!("--storage: expected sqlite or memory, found {other:?}").into()),
    };
    let registry = Arc::new(RegistryDouble::start()?);
    let bootstrap = broker.bootstrap_servers();
    let mut out = std::io::stdout();
    writeln!(out, "BOOTSTRAP_SERVERS={bootstrap}")?;
    writeln!(out, "REGISTRY_URL={}", registry.url())?;
    writeln!(out, "TANSU_STORAGE={}", broker.storage())?;
    writeln!(out, "TANSU_LOG={}", broker.log_file().display())?;
    writeln!(out, "READY")?;
    out.flush()?;

    let watch: Arc<Mutex<Option<Watch>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (watch, stop, registry, bootstrap) = (watch.clone(), stop.clone(), registry.clone(), bootstrap.clone());
        std::thread::spawn(move || {
            let mut known: HashSet<String> = HashSet::new();
            let mut seen_at: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let target = watch
                    .lock()
                    .ok()
                    .and_then(|w| w.as_ref().map(|w| (w.prefix.clone(), w.partitions)));
                if let Some((prefix, partitions)) = target {
                    for subject in registry.subjects() {
                        let Some(topic) = topic_of_subject(&subject) else {
                            continue;
                        };
                        if !topic.starts_with(&prefix) || known.contains(&topic) {
                            continue;
                        }
                        let first = *seen_at.entry(topic.clone()).or_insert_with(Instant::now);
                        match create_topics(&bootstrap, &[&topic], partitions) {
                            Ok(()) => {
                                eprintln!("auto-created {topic} after {} ms", first.elapsed().as_millis());
                                known.insert(topic);
                            }
                            Err(e) => eprintln!("cannot auto-create {topic}: {e}"),
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            [] => continue,
            ["quit"] => break,
            ["create", partitions, topics @ ..] if !topics.is_empty() => match partitions.parse::<i32>() {
                Ok(p) => create_topics(&bootstrap, topics, p).map(|()| "OK".to_string()),
                Err(e) => Err(format!("bad partition count {partitions:?}: {e}")),
            },
            ["watch", prefix, partitions] => match partitions.parse::<i32>() {
                Ok(p) => {
                    if let Ok(mut w) = watch.lock() {
                        *w = Some(Watch {
                            prefix: prefix.to_string(),
                            partitions: p,
                        });
                    }
                    Ok("OK".to_string())
                }
                Err(e) => Err(format!("bad partition count {partitions:?}: {e}")),
            },
            _ => Err(format!("unknown command {line:?}")),
        };
        match answer {
            Ok(a) => writeln!(out, "{a}")?,
            Err(e) => writeln!(out, "ERROR {}", e.replace('\n', " "))?,
        }
        out.flush()?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    drop(broker);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::topic_of_subject;

    #[test]
    fn subjects_name_their_topic() {
        assert_eq!(
            topic_of_subject("bench-1a2b3c4d-string").as_deref(),
            Some("bench-1a2b3c4d")
        );
        assert_eq!(
            topic_of_subject("dev-bench-1a2b3c4d-org.openedx.learning.course.enrollment.created.v1.CloudEvent")
                .as_deref(),
            Some("dev-bench-1a2b3c4d")
        );
        assert_eq!(topic_of_subject("something-else"), None);
    }
}
