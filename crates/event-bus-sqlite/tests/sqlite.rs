//! The SQLite backend against its contract: several connections on one file,
//! as several processes would have.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use event_bus_sqlite::{SqliteBackend, SqliteOptions, SqliteTransport};
use openedx_events::bus::transport::{
    OutgoingMessage, RawMessage, SeekTarget, StartPosition, Transport, TransportErrorKind,
};
use openedx_events::bus::{Backends, ConsumerOptions, EventBus};
use openedx_events::config::Settings;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_across_two_transports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let producer = open(&path);
    let consumer = open(&path);
    let mut sub = consumer.subscribe(&request("t", "g")).await.unwrap();

    // An event, through the CloudEvents mapping.
    let login = openedx_events::catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
    let mut rng = openedx_events::sample::rng(3);
    let data = openedx_events::sample::event_data(login, &mut rng);
    let metadata = EventsMetadata::new(login.name(), 0);
    let outgoing = OutgoingMessage {
        topic: "t".into(),
        event_type: login.clone(),
        metadata: metadata.clone(),
        key: None,
        body: login.encode_data(&data).unwrap(),
    };
    let before = chrono::Utc::now();
    let position = producer.publish(&outgoing).await.unwrap();
    // Bytes that are not UTF-8 in a header and a key survive too.
    let raw = RawMessage {
        topic: "t".into(),
        key: Some(vec![0, 159, 146, 150]),
        headers: vec![("bin".into(), vec![255, 0, 1]), ("bin".into(), b"again".to_vec())],
        value: vec![1, 2, 3],
        timestamp: None,
    };
    let raw_position = producer.publish_raw(&raw).await.unwrap();
    assert_eq!(
        raw_position.parse::<u64>().unwrap(),
        position.parse::<u64>().unwrap() + 1
    );

    let got = take(sub.as_mut(), 2, PATIENCE).await;
    assert_eq!(got.len(), 2);
    let event = got[0].event.as_ref().expect("an event");
    assert_eq!(event.metadata, metadata);
    assert_eq!(event.event_type, login.name());
    assert_eq!(login.decode_data(&event.body).unwrap(), data);
    assert_eq!(got[0].position, position);
    assert_eq!(got[0].attempt, 1);
    let ts = got[0].raw.timestamp.expect("broker timestamp");
    assert!(ts >= before - chrono::Duration::milliseconds(1) && ts <= chrono::Utc::now());
    assert_eq!(got[1].raw.key, raw.key);
    assert_eq!(got[1].raw.headers, raw.headers);
    assert_eq!(got[1].raw.value, raw.value);
    assert!(got[1].event.is_err(), "no CloudEvents headers: not an event");
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let t = SqliteTransport::open(
        dir.path().join("bus.db"),
        SqliteOptions {
            max_message_bytes: 1000,
            ..options()
        },
    )
    .unwrap();
    let c = t.capabilities();
    assert!(c.consumer_groups && c.ordered_per_key && c.persistent && c.replay_from_start && c.seek_time);
    assert_eq!(c.max_message_bytes, 1000);
    assert_eq!(t.name(), "sqlite");
    let big = RawMessage {
        topic: "t".into(),
        value: vec![0; 1001],
        ..Default::default()
    };
    let e = t.publish_raw(&big).await.unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Rejected);
    assert!(e.to_string().contains("1001"), "{e}");
    assert_eq!(
        SqliteOptions::default().max_message_bytes,
        64 * 1024 * 1024,
        "64 MiB by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_kept_with_one_member() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    publish_numbers(&t, "t", 0..100).await;
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 100 {
        let batch = sub.receive(7, Duration::from_secs(1)).await.unwrap();
        assert!(!batch.is_empty() && batch.len() <= 7);
        for d in batch {
            sub.ack(d.tag).await.unwrap();
            got.push(number(&d));
        }
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    sub.close().await.unwrap();
    assert_eq!(
        sub.receive(1, Duration::ZERO).await.unwrap_err().kind,
        TransportErrorKind::Closed
    );
    sub.close().await.expect("close is idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_independent_and_members_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t1 = open(&path);
    let t2 = open(&path);
    let mut a = t1.subscribe(&request("t", "analytics")).await.unwrap();
    let mut b = t2.subscribe(&request("t", "search")).await.unwrap();
    publish_numbers(&t1, "t", 0..30).await;
    assert_eq!(
        numbers(&take(a.as_mut(), 30, PATIENCE).await),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&take(b.as_mut(), 30, PATIENCE).await),
        (0..30).collect::<Vec<_>>()
    );

    // Two members of one group: nothing given to both while held.
    let mut m1 = t1.subscribe(&request("t", "shared")).await.unwrap();
    let mut m2 = t2.subscribe(&request("t", "shared")).await.unwrap();
    let first = hold(m1.as_mut(), 10, PATIENCE).await;
    let second = hold(m2.as_mut(), 30, Duration::from_millis(500)).await;
    assert_eq!(first.len(), 10);
    assert_eq!(second.len(), 20);
    let (s1, s2) = (number_set(&first), number_set(&second));
    assert!(s1.is_disjoint(&s2));
    assert_eq!(s1.union(&s2).count(), 30);
    for s in [&mut a, &mut b, &mut m1, &mut m2] {
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_group_at_latest_and_replay_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    publish_numbers(&t, "t", 0..5).await;
    let mut latest = request("t", "late");
    latest.start = StartPosition::Latest;
    let mut late = t.subscribe(&latest).await.unwrap();
    let mut early = t.subscribe(&request("t", "early")).await.unwrap();
    publish_numbers(&t, "t", 5..8).await;
    assert_eq!(numbers(&take(late.as_mut(), 3, PATIENCE).await), vec![5, 6, 7]);
    assert_eq!(
        numbers(&take(early.as_mut(), 8, PATIENCE).await),
        (0..8).collect::<Vec<_>>()
    );
    late.close().await.unwrap();
    // The start only applies to a new group: rejoining keeps the position.
    let mut again = t.subscribe(&request("t", "late")).await.unwrap();
    assert!(again.receive(10, Duration::from_millis(100)).await.unwrap().is_empty());
    again.close().await.unwrap();
    early.close().await.unwrap();
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_a_time_a_position_the_start_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    let positions = publish_numbers(&t, "t", 0..3).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let middle = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    publish_numbers(&t, "t", 3..6).await;
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    assert_eq!(
        numbers(&take(sub.as_mut(), 6, PATIENCE).await),
        (0..6).collect::<Vec<_>>()
    );

    sub.seek(&SeekTarget::Time(middle)).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 3, PATIENCE).await), vec![3, 4, 5]);
    sub.seek(&SeekTarget::Earliest).await.unwrap();
    assert_eq!(
        numbers(&take(sub.as_mut(), 6, PATIENCE).await),
        (0..6).collect::<Vec<_>>()
    );
    sub.seek(&SeekTarget::After(positions[1].clone())).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 4, PATIENCE).await), vec![2, 3, 4, 5]);
    sub.seek(&SeekTarget::Time(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap();
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    sub.seek(&SeekTarget::Earliest).await.unwrap();
    sub.seek(&SeekTarget::Latest).await.unwrap();
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    let e = sub.seek(&SeekTarget::After("nope".into())).await.unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Rejected);
    // A nacked message waiting for redelivery is not lost by a seek forward.
    publish_numbers(&t, "t", 6..8).await;
    let d = sub.receive(1, PATIENCE).await.unwrap();
    sub.nack(d[0].tag, Duration::ZERO).await.unwrap();
    sub.seek(&SeekTarget::Latest).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 1, PATIENCE).await), vec![6]);
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_reads_without_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    let positions = publish_numbers(&t, "dlq", 0..5).await;
    publish_numbers(&t, "elsewhere", 0..5).await;
    let all = t.browse("dlq", None, 100).await.unwrap();
    assert_eq!(numbers(&all), (0..5).collect::<Vec<_>>());
    assert_eq!(all.iter().map(|d| d.position.clone()).collect::<Vec<_>>(), positions);
    let page = t.browse("dlq", Some(&positions[1]), 2).await.unwrap();
    assert_eq!(numbers(&page), vec![2, 3]);
    assert!(t.browse("dlq", Some(&positions[4]), 2).await.unwrap().is_empty());
    assert!(t.browse("nothing", None, 2).await.unwrap().is_empty());
    assert_eq!(
        t.browse("dlq", Some("-1"), 2).await.unwrap_err().kind,
        TransportErrorKind::Rejected
    );
    // Browsing does not consume.
    let mut sub = t.subscribe(&request("dlq", "g")).await.unwrap();
    assert_eq!(take(sub.as_mut(), 5, PATIENCE).await.len(), 5);
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_and_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let transports: Vec<SqliteTransport> = (0..3).map(|_| open(&path)).collect();
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let t = transports[task as usize % 3].clone();
        tasks.push(tokio::spawn(async move {
            publish_numbers(&t, "t", task * 1000..task * 1000 + 50).await
        }));
    }
    // Two members of a group consume while the publishers run.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut consumers = Vec::new();
    for t in transports.iter().take(2) {
        let t = t.clone();
        let seen = seen.clone();
        consumers.push(tokio::spawn(async move {
            let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
            let deadline = Instant::now() + PATIENCE;
            while seen.lock().unwrap().len() < 400 && Instant::now() < deadline {
                for d in sub.receive(16, Duration::from_millis(50)).await.unwrap() {
                    sub.ack(d.tag).await.unwrap();
                    seen.lock().unwrap().push(number(&d));
                }
                sub.flush_acks().await.unwrap();
            }
            sub.close().await.unwrap();
        }));
    }
    let mut positions = HashSet::new();
    for task in tasks {
        for p in task.await.unwrap() {
            assert!(positions.insert(p), "positions are unique");
        }
    }
    assert_eq!(positions.len(), 400);
    for c in consumers {
        c.await.unwrap();
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    let want: Vec<u64> = (0..8u64).flat_map(|t| t * 1000..t * 1000 + 50).collect();
    assert_eq!(seen, want, "every message exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_unreadable_headers_is_delivered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t = open(&path);
    publish_numbers(&t, "t", 0..2).await;
    let db = sql(&path);
    db.execute("UPDATE messages SET headers = '{not json' WHERE id = 1", [])
        .unwrap();
    db.execute("UPDATE messages SET headers = 42, key = 7 WHERE id = 2", [])
        .unwrap();
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    let got = take(sub.as_mut(), 2, PATIENCE).await;
    assert_eq!(numbers(&got), vec![0, 1]);
    for d in &got {
        let reason = d.event.as_ref().unwrap_err();
        assert!(reason.contains("headers"), "{reason}");
        assert!(d.raw.headers.is_empty());
    }
    assert_eq!(got[1].raw.key.as_deref(), Some(&b"7"[..]));
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    {
        let t = open(&path);
        publish_numbers(&t, "t", 0..4).await;
        let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
        let got = hold(sub.as_mut(), 2, PATIENCE).await;
        sub.ack(got[0].tag).await.unwrap();
        sub.ack(got[1].tag).await.unwrap();
        sub.flush_acks().await.unwrap();
        sub.close().await.unwrap();
    }
    let t = open(&path);
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 2, PATIENCE).await), vec![2, 3]);
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    sub.close().await.unwrap();
    assert_eq!(t.publish_raw(&message("t", 9)).await.unwrap(), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_receive_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t = open(&path);
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    // Cancel receives at random points while messages arrive.
    let publisher = {
        let t = t.clone();
        tokio::spawn(async move {
            for n in 0..50 {
                t.publish_raw(&message("t", n)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < 50 && Instant::now() < deadline {
        let r = tokio::time::timeout(Duration::from_micros(700), sub.receive(3, Duration::from_millis(50))).await;
        if let Ok(batch) = r {
            for d in batch.unwrap() {
                sub.ack(d.tag).await.unwrap();
                got.push(number(&d));
            }
        }
    }
    publisher.await.unwrap();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_extras_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    let e = t.subscribe(&with_lease(request("t", "g"), 0.0)).await.err().unwrap();
    assert_eq!(e.kind, TransportErrorKind::Rejected);
    let mut r = request("t", "g");
    r.extras.insert("lease_seconds".into(), serde_json::json!("long"));
    assert!(t.subscribe(&r).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![42u8; 8192]).unwrap();
    let e = SqliteTransport::open(&junk, options()).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(e.to_string().contains("junk.db"), "{e}");
    let newer = dir.path().join("newer.db");
    drop(open(&newer));
    sql(&newer).pragma_update(None, "user_version", 99).unwrap();
    let e = SqliteTransport::open(&newer, options()).unwrap_err();
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

/// A file written by schema version 1 (no `dead_letter_topics`) is upgraded
/// in place when opened, and keeps its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let t = open(&path);
    publish_numbers(&t, "t", 0..2).await;
    drop(t);
    let conn = sql(&path);
    conn.execute_batch("DROP TABLE dead_letter_topics").unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let t = open(&path);
    let mut m = message("t-dlq", 7);
    m.headers
        .push((openedx_events::bus::dead_letter::DLQ_REASON.into(), b"x".to_vec()));
    t.publish_raw(&m).await.unwrap();
    assert_eq!(numbers(&t.browse("t", None, 10).await.unwrap()), vec![0, 1]);
    assert_eq!(numbers(&t.browse("t-dlq", None, 10).await.unwrap()), vec![7]);
    let version: i64 = sql(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_consume_loop_runs_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new();
    settings.set("EVENT_BUS_BACKEND", "sqlite");
    settings.set("EVENT_BUS_SQLITE_PATH", dir.path().join("bus.db").to_str().unwrap());
    settings.set("EVENT_BUS_TOPIC_PREFIX", "test");
    let registry = Arc::new(Registry::with_catalog());
    let backends = Backends::new().with(Arc::new(SqliteBackend));
    let bus = EventBus::with_registry(settings, &backends, registry.clone())
        .await
        .unwrap();
    let login = openedx_events::catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let failed_once = Arc::new(Mutex::new(false));
    {
        let received = received.clone();
        let failed_once = failed_once.clone();
        registry.get(login.name()).unwrap().connect("test", move |event| {
            let mut failed = failed_once.lock().unwrap();
            if !*failed {
                *failed = true;
                return Err("first attempt fails".into());
            }
            received.lock().unwrap().push(event.metadata.id);
            Ok(())
        });
    }
    let producer = bus.producer();
    let mut rng = openedx_events::sample::rng(9);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let data = openedx_events::sample::event_data(login, &mut rng);
        let metadata = EventsMetadata::new(login.name(), 0);
        producer
            .send(login, "logins", Some("user.pii.username"), &data, &metadata)
            .await
            .unwrap();
        ids.push(metadata.id);
    }
    // One message that cannot be understood: dead-lettered, the stream goes on.
    bus.transport()
        .unwrap()
        .publish_raw(&RawMessage {
            topic: "test-logins".into(),
            value: b"junk".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut options = ConsumerOptions::new("logins", "g");
    options.prefix = Some("test".into());
    options.limit = Some(6);
    options.poll_timeout = Duration::from_millis(100);
    let consumer = bus.consumer_with(options).unwrap();
    let stats = tokio::time::timeout(PATIENCE, consumer.consume(tokio_util::sync::CancellationToken::new()))
        .await
        .expect("the consumer finishes")
        .unwrap();
    assert_eq!(stats.processed, 5);
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(*received.lock().unwrap(), ids);
    let letters = bus
        .transport()
        .unwrap()
        .browse("test-logins-dlq", None, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].raw.value, b"junk");
}
