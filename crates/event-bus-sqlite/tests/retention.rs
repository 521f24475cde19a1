//! The retention limits: by count and age, a group left behind, dead
//! letters never removed, and publishers trimming by themselves.

mod common;

use std::time::{Duration, Instant};

use common::*;
use event_bus_sqlite::{SqliteOptions, SqliteTransport};
use openedx_events::bus::transport::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_and_age_and_a_group_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t = SqliteTransport::open(
        &path,
        SqliteOptions {
            max_messages_per_topic: Some(10),
            retention: None,
            trim_every_publishes: u64::MAX,
            trim_interval: Duration::from_secs(3600),
            ..options()
        },
    )
    .unwrap();
    let mut behind = t.subscribe(&request("t", "behind")).await.unwrap();
    publish_numbers(&t, "t", 0..25).await;
    publish_numbers(&t, "other", 0..3).await;
    let report = t.trim().await.unwrap();
    assert_eq!(report.removed, 15);
    assert_eq!(report.topics, vec!["t".to_string()]);
    let left = t.browse("t", None, 100).await.unwrap();
    assert_eq!(numbers(&left), (15..25).collect::<Vec<_>>());
    assert_eq!(t.browse("other", None, 100).await.unwrap().len(), 3);
    assert_eq!(t.trim().await.unwrap().removed, 0, "nothing more to do");
    // The group had read nothing: it goes on from the oldest retained.
    assert_eq!(
        numbers(&take(behind.as_mut(), 10, PATIENCE).await),
        (15..25).collect::<Vec<_>>()
    );
    behind.close().await.unwrap();

    // Age.
    let aged = SqliteTransport::open(
        &path,
        SqliteOptions {
            max_messages_per_topic: None,
            retention: Some(Duration::from_millis(300)),
            ..options()
        },
    )
    .unwrap();
    publish_numbers(&aged, "old", 0..3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    publish_numbers(&aged, "old", 3..5).await;
    aged.trim().await.unwrap();
    assert_eq!(numbers(&aged.browse("old", None, 100).await.unwrap()), vec![3, 4]);
    // A new group starts after what was removed.
    let mut fresh = aged.subscribe(&request("old", "fresh")).await.unwrap();
    assert_eq!(numbers(&take(fresh.as_mut(), 2, PATIENCE).await), vec![3, 4]);
    fresh.close().await.unwrap();
}

/// Dead letters wait for someone to look at them: neither the count limit
/// nor the age limit removes them, while the other topics are trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_removes_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let t = SqliteTransport::open(
        dir.path().join("bus.db"),
        SqliteOptions {
            max_messages_per_topic: Some(3),
            retention: Some(Duration::from_millis(200)),
            trim_every_publishes: u64::MAX,
            trim_interval: Duration::from_secs(3600),
            ..options()
        },
    )
    .unwrap();
    publish_numbers(&t, "t", 0..10).await;
    for n in 0..10 {
        let mut m = message("t-dlq", n);
        m.headers.push((
            openedx_events::bus::dead_letter::DLQ_REASON.into(),
            b"unknown_event_type".to_vec(),
        ));
        t.publish_raw(&m).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_numbers(&t, "t", 10..11).await;
    let report = t.trim().await.unwrap();
    assert_eq!(
        report.topics,
        vec!["t".to_string()],
        "only the ordinary topic is trimmed"
    );
    assert_eq!(numbers(&t.browse("t", None, 100).await.unwrap()), vec![10]);
    assert_eq!(
        numbers(&t.browse("t-dlq", None, 100).await.unwrap()),
        (0..10).collect::<Vec<_>>(),
        "every dead letter kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_trim_by_themselves_every_n_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let t = SqliteTransport::open(
        dir.path().join("bus.db"),
        SqliteOptions {
            max_messages_per_topic: Some(3),
            trim_every_publishes: 5,
            ..options()
        },
    )
    .unwrap();
    publish_numbers(&t, "t", 0..20).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = numbers(&t.browse("t", None, 100).await.unwrap());
        if left == vec![17, 18, 19] {
            break;
        }
        assert!(Instant::now() < deadline, "not trimmed: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
