//! Several real processes on one file. The children are this test binary
//! run again with `--exact child` and `SQLITE_TEST_ROLE` set; without that
//! variable `child` does nothing.
//!
//! - A consumer process killed with SIGKILL in the middle of a stream: a
//!   restarted member of its group gets every message at least once, and
//!   what the dead process held comes back at once (not after the lease).
//! - Producer and consumer processes at once: every message exactly once.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use openedx_events::bus::transport::Transport;

const CHILD_ROLE: &str = "SQLITE_TEST_ROLE";
const CHILD_DB: &str = "SQLITE_TEST_DB";
const CHILD_LOG: &str = "SQLITE_TEST_LOG";
const CHILD_RANGE: &str = "SQLITE_TEST_RANGE";
/// Each message takes this long to handle in the child.
const HANDLING: Duration = Duration::from_millis(40);
const BATCH: usize = 5;
const MESSAGES: u64 = 100;

/// The child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let (Ok(role), Ok(db), Ok(log)) = (
        std::env::var(CHILD_ROLE),
        std::env::var(CHILD_DB),
        std::env::var(CHILD_LOG),
    ) else {
        return;
    };
    let mut log = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    let t = open(Path::new(&db));
    match role.as_str() {
        "slow-consumer" => slow_consumer(&t, &mut log).await,
        "consumer" => consumer(&t, &mut log, Path::new(&format!("{}.stop", db))).await,
        "producer" => {
            let range = std::env::var(CHILD_RANGE).unwrap();
            let (a, b) = range.split_once("..").unwrap();
            publish_numbers(&t, "t", a.parse().unwrap()..b.parse().unwrap()).await;
        }
        other => panic!("unknown role {other}"),
    }
}

/// Handles messages slowly, logging `holding [a, b...]` when it receives a
/// batch and `done n` before acking each message.
async fn slow_consumer(t: &impl Transport, log: &mut std::fs::File) {
    let mut sub = t.subscribe(&with_lease(request("t", "g"), 3600.0)).await.unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < give_up {
        let batch = sub.receive(BATCH, Duration::from_millis(100)).await.unwrap();
        if batch.is_empty() {
            continue;
        }
        writeln!(log, "holding {:?}", numbers(&batch)).unwrap();
        for d in batch {
            tokio::time::sleep(HANDLING).await;
            writeln!(log, "done {}", number(&d)).unwrap();
            sub.ack(d.tag).await.unwrap();
        }
        sub.flush_acks().await.unwrap();
    }
}

/// Consumes until the file `<log>.stop` exists and nothing arrives, logging
/// `got n` after each batch's acks are written.
async fn consumer(t: &impl Transport, log: &mut std::fs::File, stop: &Path) {
    let mut sub = t.subscribe(&with_lease(request("t", "g"), 3600.0)).await.unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < give_up {
        let batch = sub.receive(8, Duration::from_millis(100)).await.unwrap();
        if batch.is_empty() {
            if stop.exists() {
                break;
            }
            continue;
        }
        for d in &batch {
            sub.ack(d.tag).await.unwrap();
        }
        sub.flush_acks().await.unwrap();
        for d in &batch {
            writeln!(log, "got {}", number(d)).unwrap();
        }
    }
    sub.close().await.unwrap();
}

fn spawn_child(role: &str, db: &Path, log: &Path, range: &str) -> Killer {
    std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .env(CHILD_DB, db)
        .env(CHILD_LOG, log)
        .env(CHILD_RANGE, range)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Killer(child)
}

/// Kills the child if the test fails half way.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(target_os = "linux"), ignore = "dead processes are recognised through /proc")]
async fn a_killed_consumer_process_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.db");
    let log = dir.path().join("child.log");
    std::fs::write(&log, "").unwrap();
    let t = open(&db);
    publish_numbers(&t, "t", 0..MESSAGES).await;

    let mut child = spawn_child("slow-consumer", &db, &log, "");
    let child_pid = child.0.id();

    // Wait until the child has handled a fair part of the stream and has
    // just taken a new batch, then kill it in the middle of that batch.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the child made no progress: {:?}",
            lines(&log)
        );
        let now = lines(&log);
        let done = now.iter().filter(|l| l.starts_with("done")).count();
        let fresh_batch = now.len() > seen && now.last().is_some_and(|l| l.starts_with("holding"));
        seen = now.len();
        if done >= 20 && fresh_batch {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.0.kill().unwrap(); // SIGKILL on Unix: no close, no flush.
    child.0.wait().unwrap();

    let sql = sql(&db);
    let held: i64 = sql
        .query_row(
            "SELECT COUNT(*) FROM deliveries d JOIN consumers c ON c.id = d.owner WHERE c.pid = ?1",
            [child_pid],
            |r| r.get(0),
        )
        .unwrap();
    assert!(held > 0, "the child died holding messages");

    // The restarted consumer: the same group, a lease far longer than the
    // test, so only the dead-process check can give back what the child held.
    let restarted_at = Instant::now();
    let mut sub = open(&db)
        .subscribe(&with_lease(request("t", "g"), 3600.0))
        .await
        .unwrap();
    let child_done: HashSet<u64> = lines(&log)
        .iter()
        .filter_map(|l| l.strip_prefix("done ")?.parse().ok())
        .collect();
    let mut got = Vec::new();
    let mut redelivered = 0;
    let patience = Instant::now() + Duration::from_secs(20);
    while Instant::now() < patience {
        let batch = sub.receive(50, Duration::from_millis(200)).await.unwrap();
        if batch.is_empty() && !got.is_empty() {
            break;
        }
        for d in batch {
            if d.attempt >= 2 {
                redelivered += 1;
            }
            sub.ack(d.tag).await.unwrap();
            got.push(number(&d));
        }
    }
    sub.close().await.unwrap();
    assert!(
        restarted_at.elapsed() < Duration::from_secs(10),
        "did not wait for the lease"
    );
    assert!(
        redelivered >= held,
        "what the child held came back ({redelivered} of {held})"
    );
    let mut all: HashSet<u64> = got.iter().copied().collect();
    all.extend(&child_done);
    let missing: Vec<u64> = (0..MESSAGES).filter(|n| !all.contains(n)).collect();
    assert!(missing.is_empty(), "lost messages: {missing:?}");
    let got_set: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(got.len(), got_set.len(), "no duplicates within the restarted consumer");
    // Nothing is left behind for the group.
    let rows: i64 = sql
        .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    let _ = t.flush(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_processes_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.db");
    drop(open(&db));
    let consumers: Vec<(Killer, std::path::PathBuf)> = (0..2)
        .map(|i| {
            let log = dir.path().join(format!("consumer-{i}.log"));
            (spawn_child("consumer", &db, &log, ""), log)
        })
        .collect();
    let producers: Vec<Killer> = (0..3)
        .map(|i| {
            let log = dir.path().join(format!("producer-{i}.log"));
            spawn_child("producer", &db, &log, &format!("{}..{}", i * 1000, i * 1000 + 200))
        })
        .collect();
    for mut p in producers {
        assert!(p.0.wait().unwrap().success(), "a producer failed");
    }
    let want: Vec<u64> = (0..3).flat_map(|i| i * 1000..i * 1000 + 200).collect();
    let received = |consumers: &[(Killer, std::path::PathBuf)]| -> Vec<u64> {
        let mut got: Vec<u64> = consumers
            .iter()
            .flat_map(|(_, log)| lines(log))
            .filter_map(|l| l.strip_prefix("got ")?.parse::<u64>().ok())
            .collect();
        got.sort_unstable();
        got
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while received(&consumers).len() < want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(format!("{}.stop", db.display()), "").unwrap();
    let mut consumers = consumers;
    for (c, _) in consumers.iter_mut() {
        assert!(c.0.wait().unwrap().success(), "a consumer failed");
    }
    let got = received(&consumers);
    assert_eq!(got, want, "every message exactly once across the consumer processes");
}
