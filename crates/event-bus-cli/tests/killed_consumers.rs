//! Consumers SIGKILLed mid-stream, five times, restarted each time with the
//! same settings (and, where the backend keys its state by consumer name,
//! alternately with a new name): every event is handled, redeliveries are
//! counted, and the last consumer stops on SIGTERM with exit code 0.
//!
//! The consumer is the `event-bus consume --output json` process, each event
//! printed (and flushed) by the receiver before it is acknowledged; what the
//! processes printed, together, is what was handled. Run on SQLite (a file)
//! and on the machine's Redis (127.0.0.1:6379, or `EVENT_BUS_REDIS_TEST_URL`):
//! killing consumers does not touch the broker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";
const EVENTS: usize = 5000;
const KILLS: usize = 5;

fn cli(common: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_event-bus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EVENT_BUS_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.args(common).stdin(Stdio::null());
    c
}

fn produce(common: &[String], topic: &str) {
    let data = r#"{"user": {"id": 7, "is_active": true, "pii": {"username": "kim", "email": "kim@example.org", "name": "Kim"}}}"#;
    let count = EVENTS.to_string();
    let o = cli(common)
        .args([
            "produce",
            "--event-type",
            LOGIN,
            "--topic",
            topic,
            "--data",
            data,
            "--count",
            &count,
        ])
        .output()
        .expect("run event-bus produce");
    assert!(
        o.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Kills the child on drop (a failing test leaves no consumer behind).
struct Consumer(Child);

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(common: &[String], topic: &str, name: &str, extra: &str, out: &Path) -> Consumer {
    let file = std::fs::File::create(out).expect("create the output file");
    let log = std::fs::File::create(out.with_extension("log")).expect("create the log file");
    let child = cli(common)
        .args([
            "consume",
            "-t",
            topic,
            "-g",
            "kills",
            "--output",
            "json",
            "--consumer-name",
            name,
        ])
        .args(if extra.is_empty() {
            vec![]
        } else {
            vec!["--extra", extra]
        })
        .stdout(file)
        .stderr(log)
        .spawn()
        .expect("start event-bus consume");
    Consumer(child)
}

/// Event ids printed in the output files so far, with how often each was.
fn handled(outs: &[PathBuf]) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for out in outs {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        for line in text.lines() {
            // A line cut by the kill is not an event handled.
            let Ok(j) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(id) = j["metadata"]["id"].as_str() {
                *ids.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    ids
}

fn wait_for(outs: &[PathBuf], at_least: usize, patience: Duration, what: &str) {
    let deadline = Instant::now() + patience;
    loop {
        let n = handled(outs).len();
        if n >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {n} of {at_least} events handled within {patience:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_five_times(backend: &str, common: &[String], topic: &str, new_names: bool, extra: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    produce(common, topic);
    let mut outs = Vec::new();
    let patience = Duration::from_secs(120);
    for k in 0..KILLS {
        let name = if new_names && k % 2 == 1 {
            format!("member-{k}")
        } else {
            "member".to_string()
        };
        let out = dir.path().join(format!("run-{k}.jsonl"));
        outs.push(out.clone());
        let mut c = start(common, topic, &name, extra, &out);
        let goal = (k + 1) * EVENTS / (KILLS + 1);
        wait_for(&outs, goal, patience, &format!("run {k}"));
        c.0.kill().expect("SIGKILL the consumer");
        let _ = c.0.wait();
    }
    let out = dir.path().join("last.jsonl");
    outs.push(out.clone());
    let last = start(common, topic, "member", extra, &out);
    wait_for(&outs, EVENTS, patience, "after the kills");
    // SIGTERM: a clean stop, exit code 0.
    let pid = last.0.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(term.success());
    let mut last = last;
    let status = wait_timeout(&mut last.0, Duration::from_secs(30)).expect("the consumer stops on SIGTERM");
    let ids = handled(&outs);
    let duplicates: usize = ids.values().map(|n| n - 1).sum();
    eprintln!(
        "fault figures: backend={backend} case=consumer SIGKILLed {KILLS} times sent={EVENTS} handled={} duplicates={duplicates} lost={} exit_after_sigterm={status}",
        ids.len(),
        EVENTS - ids.len().min(EVENTS)
    );
    assert_eq!(ids.len(), EVENTS, "every event handled");
    assert!(status.success(), "exit code after SIGTERM: {status}");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn sqlite_consumers_killed_five_times_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let common = vec![
        "--backend".to_string(),
        "sqlite".into(),
        "--set".into(),
        format!("EVENT_BUS_SQLITE_PATH={}", dir.path().join("bus.db").display()),
    ];
    kill_five_times("sqlite", &common, "kills", false, "");
}

#[test]
fn redis_consumers_killed_five_times_lose_nothing() {
    let url = std::env::var("EVENT_BUS_REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let probe =
        std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().expect("address"), Duration::from_secs(2));
    if url.contains("127.0.0.1:6379") {
        assert!(
            probe.is_ok(),
            "this test needs the machine's Redis on 127.0.0.1:6379: {probe:?}"
        );
    }
    let common = vec![
        "--backend".to_string(),
        "redis".into(),
        "--set".into(),
        format!("EVENT_BUS_REDIS_CONNECTION_URL={url}"),
        "--prefix".into(),
        format!("kills-{}", uuid::Uuid::new_v4().simple()),
    ];
    // A killed member's pending entries go to a member of a new name once
    // idle for a second.
    kill_five_times("redis", &common, "kills", true, r#"{"claim_msgs_older_than": 1000}"#);
}
