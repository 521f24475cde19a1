//! Redelivery and leases: nacks with a delay and attempt counts, expired
//! leases, renewal by acks, release on close and drop, and the
//! `lease_seconds` extra.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openedx_events::bus::transport::{Transport, TransportErrorKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_after_the_delay_first_and_counts_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    publish_numbers(&t, "t", 0..3).await;
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    let first = sub.receive(1, PATIENCE).await.unwrap();
    assert_eq!((number(&first[0]), first[0].attempt), (0, 1));
    let nacked_at = Instant::now();
    sub.nack(first[0].tag, Duration::from_millis(400)).await.unwrap();
    // The others go on meanwhile.
    let next = sub.receive(10, PATIENCE).await.unwrap();
    assert_eq!(numbers(&next), vec![1, 2]);
    for d in &next {
        sub.ack(d.tag).await.unwrap();
    }
    let again = sub.receive(10, PATIENCE).await.unwrap();
    assert!(nacked_at.elapsed() >= Duration::from_millis(400), "came back too soon");
    assert_eq!((numbers(&again), again[0].attempt), (vec![0], 2));
    // Redelivered (due) messages come before new ones.
    publish_numbers(&t, "t", 3..5).await;
    sub.nack(again[0].tag, Duration::ZERO).await.unwrap();
    let batch = sub.receive(10, PATIENCE).await.unwrap();
    assert_eq!(numbers(&batch), vec![0, 3, 4]);
    assert_eq!(batch.iter().map(|d| d.attempt).collect::<Vec<_>>(), vec![3, 1, 1]);
    for d in &batch {
        sub.ack(d.tag).await.unwrap();
    }
    sub.flush_acks().await.unwrap();
    assert!(sub.receive(10, Duration::from_millis(100)).await.unwrap().is_empty());
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_lets_another_member_take_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (t1, t2) = (open(&path), open(&path));
    publish_numbers(&t1, "t", 0..2).await;
    let mut slow = t1.subscribe(&with_lease(request("t", "g"), 0.3)).await.unwrap();
    let held = hold(slow.as_mut(), 2, PATIENCE).await;
    assert_eq!(held.len(), 2);
    let mut other = t2.subscribe(&request("t", "g")).await.unwrap();
    assert!(
        other.receive(10, Duration::from_millis(100)).await.unwrap().is_empty(),
        "held under a live lease"
    );
    let taken = hold(other.as_mut(), 2, PATIENCE).await;
    assert_eq!(numbers(&taken), vec![0, 1]);
    assert!(taken.iter().all(|d| d.attempt == 2));
    // The first member's late ack does not take the message from the new holder...
    slow.ack(held[0].tag).await.unwrap();
    slow.flush_acks().await.unwrap();
    // ...whose own ack is final.
    for d in &taken {
        other.ack(d.tag).await.unwrap();
    }
    other.flush_acks().await.unwrap();
    let rows: i64 = sql(&path)
        .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    slow.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_renew_the_lease_of_a_busy_member() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (t1, t2) = (open(&path), open(&path));
    publish_numbers(&t1, "t", 0..6).await;
    let mut busy = t1.subscribe(&with_lease(request("t", "g"), 0.6)).await.unwrap();
    let mut idle = t2.subscribe(&request("t", "g")).await.unwrap();
    let held = hold(busy.as_mut(), 6, PATIENCE).await;
    // Handle slowly (longer than the lease in all), acking as we go.
    for d in &held {
        tokio::time::sleep(Duration::from_millis(200)).await;
        busy.ack(d.tag).await.unwrap();
    }
    busy.flush_acks().await.unwrap();
    assert!(
        idle.receive(10, Duration::from_millis(300)).await.unwrap().is_empty(),
        "nothing was redelivered: the acks kept the lease alive"
    );
    busy.close().await.unwrap();
    idle.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_drop_release_held_messages_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (t1, t2) = (open(&path), open(&path));
    publish_numbers(&t1, "t", 0..4).await;
    let mut first = t1.subscribe(&request("t", "g")).await.unwrap();
    let held = hold(first.as_mut(), 2, PATIENCE).await;
    first.ack(held[0].tag).await.unwrap();
    first.close().await.unwrap();
    let mut second = t2.subscribe(&request("t", "g")).await.unwrap();
    let got = hold(second.as_mut(), 3, Duration::from_secs(2)).await;
    assert_eq!(
        numbers(&got),
        vec![1, 2, 3],
        "the ack was flushed at close, the rest released"
    );
    assert_eq!(got[0].attempt, 2);
    drop(second);
    let mut third = t1.subscribe(&request("t", "g")).await.unwrap();
    let got = hold(third.as_mut(), 3, Duration::from_secs(2)).await;
    assert_eq!(numbers(&got), vec![1, 2, 3], "dropping released them too");
    third.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_extras_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    let e = t.subscribe(&with_lease(request("t", "g"), 0.0)).await.err().unwrap();
    assert_eq!(e.kind, TransportErrorKind::Config);
    assert!(e.message.contains("\"lease_seconds\""), "{e}");
    let mut r = request("t", "g");
    r.extras.insert("lease_seconds".into(), serde_json::json!("long"));
    assert!(t.subscribe(&r).await.is_err());
    let mut r = request("t", "g");
    r.extras.insert("lease_secs".into(), serde_json::json!(5));
    let e = t.subscribe(&r).await.err().unwrap();
    assert!(e.message.contains("\"lease_secs\": unknown option"), "{e}");
}
