//! Publishing and receiving across connections on one file: round trips,
//! capabilities and the size limit, order, browsing, concurrency, cancelled
//! receives, unreadable rows, and the core consume loop on top.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use event_bus_sqlite::{SqliteBackend, SqliteOptions, SqliteTransport};
use openedx_events::bus::transport::{OutgoingMessage, RawMessage, Transport, TransportErrorKind};
use openedx_events::bus::{Backends, ConsumerOptions, EventBus};
use openedx_events::config::Settings;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;

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
