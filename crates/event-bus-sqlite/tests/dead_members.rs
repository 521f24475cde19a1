//! Members whose process died: what they hold comes back at once; live,
//! reused-pid and foreign owners keep theirs until the lease expires.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openedx_events::bus::transport::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(target_os = "linux"), ignore = "dead processes are recognised through /proc")]
async fn messages_of_a_dead_process_are_reclaimed_without_waiting_for_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (t1, t2) = (open(&path), open(&path));
    publish_numbers(&t1, "t", 0..3).await;
    let mut crashed = t1.subscribe(&with_lease(request("t", "g"), 3600.0)).await.unwrap();
    assert_eq!(hold(crashed.as_mut(), 3, PATIENCE).await.len(), 3);
    // Pretend its owner is a process that has exited, and that it never
    // closed (a crash).
    let db = sql(&path);
    let changed = db
        .execute(
            "UPDATE consumers SET pid = ?1 WHERE id IN (SELECT owner FROM deliveries)",
            [dead_pid()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    std::mem::forget(crashed);
    let started = Instant::now();
    let mut restarted = t2.subscribe(&with_lease(request("t", "g"), 3600.0)).await.unwrap();
    let got = hold(restarted.as_mut(), 3, Duration::from_secs(2)).await;
    assert_eq!(numbers(&got), vec![0, 1, 2]);
    assert!(got.iter().all(|d| d.attempt == 2));
    assert!(started.elapsed() < Duration::from_secs(2));
    let owners: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM consumers WHERE pid != ?1",
            [std::process::id()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(owners, 0, "the dead member is forgotten");
    restarted.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_recognised_by_its_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (t1, t2) = (open(&path), open(&path));
    publish_numbers(&t1, "t", 0..2).await;
    let mut crashed = t1.subscribe(&with_lease(request("t", "g"), 3600.0)).await.unwrap();
    assert_eq!(hold(crashed.as_mut(), 2, PATIENCE).await.len(), 2);
    let db = sql(&path);
    let start: Option<i64> = db
        .query_row(
            "SELECT pid_start FROM consumers WHERE id IN (SELECT owner FROM deliveries)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if cfg!(target_os = "linux") {
        assert!(start.is_some(), "the start time is recorded on Linux");
    }
    // Same pid (this live process), another start time: the pid was reused.
    db.execute(
        "UPDATE consumers SET pid_start = pid_start + 1 WHERE id IN (SELECT owner FROM deliveries)",
        [],
    )
    .unwrap();
    std::mem::forget(crashed);
    let mut restarted = t2.subscribe(&with_lease(request("t", "g"), 3600.0)).await.unwrap();
    let got = hold(restarted.as_mut(), 2, Duration::from_secs(1)).await;
    if cfg!(target_os = "linux") {
        assert_eq!(numbers(&got), vec![0, 1]);
    }
    restarted.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_or_foreign_owners_keep_their_messages_until_the_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (t1, t2) = (open(&path), open(&path));
    publish_numbers(&t1, "t", 0..2).await;
    let mut alive = t1.subscribe(&with_lease(request("t", "g"), 1.0)).await.unwrap();
    assert_eq!(hold(alive.as_mut(), 1, PATIENCE).await.len(), 1);
    let mut foreign = t1.subscribe(&with_lease(request("t", "g"), 1.0)).await.unwrap();
    assert_eq!(hold(foreign.as_mut(), 1, PATIENCE).await.len(), 1);
    // The second member runs on another machine, with a pid that is dead here.
    let db = sql(&path);
    let foreign_id: String = db
        .query_row(
            "SELECT owner FROM deliveries WHERE message_id = (SELECT MAX(message_id) FROM deliveries)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "UPDATE consumers SET host = 'elsewhere', pid = ?2 WHERE id = ?1",
        rusqlite::params![foreign_id, dead_pid()],
    )
    .unwrap();
    std::mem::forget(alive);
    std::mem::forget(foreign);
    let mut other = t2.subscribe(&request("t", "g")).await.unwrap();
    let started = Instant::now();
    assert!(other.receive(10, Duration::from_millis(500)).await.unwrap().is_empty());
    let got = hold(other.as_mut(), 2, PATIENCE).await;
    assert_eq!(numbers(&got), vec![0, 1]);
    assert!(started.elapsed() >= Duration::from_millis(700), "only after the lease");
    other.close().await.unwrap();
}
