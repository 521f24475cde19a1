//! Backend behaviour beyond the conformance suite, on pulsar-lite (through
//! the proxy) or on the Apache Pulsar at `PULSAR_URL`: the factory and its
//! settings, compression, batching and batch acknowledgements, delayed
//! nacks, seeks, browse, start position, binary headers, the size limit and
//! the operation timeout around a dead broker.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_pulsar::{PulsarBackend, PulsarSettings, PulsarTransport};
use openedx_events::bus::transport::{
    Delivery, RawMessage, SeekTarget, StartPosition, SubscribeRequest, Subscription, TransportErrorKind,
};
use openedx_events::bus::{BackendFactory, Backends, BusError, EventBus, Transport};
use openedx_events::config::Settings;
use support::{ChecksumRestoringProxy, TestBroker};

fn topic(name: &str) -> String {
    format!("backend-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn request(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_string(),
        group: group.to_string(),
        consumer_name: format!("c-{}", uuid::Uuid::new_v4().simple()),
        start: StartPosition::Earliest,
        extras: Default::default(),
    }
}

fn raw(topic: &str, i: u32) -> RawMessage {
    RawMessage {
        topic: topic.to_string(),
        key: Some(format!("k{}", i % 3).into_bytes()),
        headers: vec![("n".into(), i.to_string().into_bytes())],
        value: format!("value-{i}").into_bytes(),
        timestamp: None,
    }
}

fn n_of(d: &Delivery) -> u32 {
    d.raw.header_str("n").and_then(|s| s.parse().ok()).unwrap_or(u32::MAX)
}

async fn publish(t: &dyn Transport, topic: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let mut positions = Vec::new();
    for i in range {
        positions.push(
            t.publish_raw(&raw(topic, i))
                .await
                .unwrap_or_else(|e| panic!("publish: {e}")),
        );
    }
    positions
}

/// Receive for `window` (or until `want` arrived), acking everything.
async fn collect(sub: &mut dyn Subscription, want: usize, window: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        for d in sub.receive(50, Duration::from_millis(100)).await.expect("receive") {
            sub.ack(d.tag).await.expect("ack");
            out.push(d);
        }
        sub.flush_acks().await.expect("flush acks");
    }
    out
}

#[tokio::test]
async fn invalid_settings_are_config_errors_naming_the_key() {
    let backends = Backends::new().with(Arc::new(PulsarBackend));
    for (key, value) in [
        ("EVENT_BUS_PULSAR_URL", "kafka://localhost:9092"),
        ("EVENT_BUS_PULSAR_COMPRESSION", "gzip"),
        ("EVENT_BUS_PULSAR_OPERATION_TIMEOUT", "never"),
        ("EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE", "failover"),
        ("EVENT_BUS_PULSAR_TENANT", "a/b"),
    ] {
        let mut settings = Settings::new();
        settings.set("EVENT_BUS_BACKEND", "pulsar");
        settings.set("EVENT_BUS_PULSAR_URL", "pulsar://127.0.0.1:1");
        settings.set(key, value);
        match EventBus::from_settings(settings, &backends).await {
            Err(BusError::Config(e)) => assert_eq!(e.key, key, "{e}"),
            Err(other) => panic!("{key}={value}: not a config error: {other}"),
            Ok(_) => panic!("{key}={value} was accepted"),
        }
    }
    let mut settings = Settings::new();
    settings.set("EVENT_BUS_BACKEND", "pulsar");
    match EventBus::from_settings(settings, &backends).await {
        Err(BusError::Config(e)) => assert_eq!(e.key, "EVENT_BUS_PULSAR_URL"),
        other => panic!(
            "a missing URL must be a config error, got {:?}",
            other.err().map(|e| e.to_string())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn factory_connects_and_reports_capabilities() {
    let broker = TestBroker::shared();
    let t = PulsarBackend.create(&broker.settings()).await.expect("create");
    assert_eq!(t.name(), "pulsar");
    let c = t.capabilities();
    assert!(c.consumer_groups && c.persistent && c.replay_from_start && c.seek_time);
    assert!(!c.ordered_per_key, "Shared subscriptions do not keep per-key order");
    assert_eq!(c.max_message_bytes, 5 * 1024 * 1024);
    let mut settings = broker.settings();
    settings.set("EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE", "key_shared");
    let t = PulsarBackend.create(&settings).await.expect("create");
    assert!(t.capabilities().ordered_per_key);
}

#[cfg(feature = "compression")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_compression_round_trips() {
    let broker = TestBroker::shared();
    for kind in ["none", "lz4", "zlib", "zstd", "snappy"] {
        let mut settings = broker.settings();
        settings.set("EVENT_BUS_PULSAR_COMPRESSION", kind);
        let t = broker.transport_with(settings).await;
        let topic = topic(&format!("compression-{kind}"));
        let mut big = raw(&topic, 0);
        big.value = "compressible ".repeat(10_000).into_bytes();
        t.publish_raw(&big).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
        let got = collect(sub.as_mut(), 1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "{kind}");
        assert_eq!(got[0].raw.value, big.value, "{kind}: payload intact");
        assert_eq!(got[0].raw.header_str("n"), Some("0"));
        sub.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batching_publishes_flushes_and_acknowledges_whole_batches() {
    let broker = TestBroker::shared();
    let mut settings = broker.settings();
    settings.set("EVENT_BUS_PULSAR_BATCHING", "true");
    settings.set("EVENT_BUS_PULSAR_BATCHING_MAX_PUBLISH_DELAY", "0.05");
    let t = broker.transport_with(settings).await;
    let topic = topic("batching");
    // Concurrent publishes share batches; each still waits for its receipt.
    let sends = (0..20u32).map(|i| {
        let t = t.clone();
        let topic = topic.clone();
        async move { t.publish_raw(&raw(&topic, i)).await }
    });
    let positions: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("batched publishes");
    t.flush(Duration::from_secs(5)).await.expect("flush");
    assert!(
        positions.iter().any(|p| !p.ends_with(":-1")),
        "some messages were batched: {positions:?}"
    );

    // A nack of one message of a batch hands the batch back; the group
    // loses nothing and, once all are acked, holds nothing.
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    let mut acked = HashSet::new();
    let mut nacked_one = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < 20 {
        assert!(Instant::now() < deadline, "{} of 20 acknowledged", acked.len());
        for d in sub.receive(50, Duration::from_millis(100)).await.expect("receive") {
            if !nacked_one && n_of(&d) == 3 {
                nacked_one = true;
                sub.nack(d.tag, Duration::ZERO).await.expect("nack");
            } else {
                acked.insert(n_of(&d));
                sub.ack(d.tag).await.expect("ack");
            }
        }
        sub.flush_acks().await.expect("flush acks");
    }
    // Messages acked while their batch was handed back come again (at least
    // once): read until nothing more arrives, as a consumer would.
    collect(sub.as_mut(), usize::MAX, Duration::from_millis(1500)).await;
    sub.close().await.expect("close");
    let mut again = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    let left = collect(again.as_mut(), 1, Duration::from_millis(1500)).await;
    assert!(
        left.is_empty(),
        "acknowledged batches are not delivered again: {:?} (positions {positions:?}; proxy {}; broker log:\n{})",
        left.iter()
            .map(|d| (n_of(d), d.position.clone(), d.attempt))
            .collect::<Vec<_>>(),
        broker.proxy_report(),
        broker.log_tail(),
    );
    again.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delayed_nack_comes_back_after_the_delay() {
    let broker = TestBroker::shared();
    let t = broker.transport_with(broker.settings()).await;
    let topic = topic("delayed-nack");
    publish(t.as_ref(), &topic, 0..2).await;
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    let first = collect_one(sub.as_mut(), 0).await;
    assert_eq!(first.attempt, 1);
    let nacked_at = Instant::now();
    sub.nack(first.tag, Duration::from_millis(700)).await.expect("nack");
    let second = collect_one(sub.as_mut(), 1).await;
    sub.ack(second.tag).await.expect("ack");
    assert!(
        nacked_at.elapsed() < Duration::from_millis(700),
        "the next message did not wait"
    );
    let again = collect_one(sub.as_mut(), 0).await;
    assert!(
        nacked_at.elapsed() >= Duration::from_millis(700),
        "redelivered after {:?}",
        nacked_at.elapsed()
    );
    assert_eq!(again.attempt, 2, "the second delivery is attempt 2");
    sub.ack(again.tag).await.expect("ack");
    sub.close().await.expect("close");
}

/// Receive until message `n` arrives (others are acked).
async fn collect_one(sub: &mut dyn Subscription, n: u32) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "message {n} did not arrive");
        for d in sub.receive(1, Duration::from_millis(50)).await.expect("receive") {
            if n_of(&d) == n {
                return d;
            }
            sub.ack(d.tag).await.expect("ack");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seek_earliest_after_and_latest() {
    let broker = TestBroker::shared();
    let t = broker.transport_with(broker.settings()).await;
    let topic = topic("seek");
    let positions = publish(t.as_ref(), &topic, 0..5).await;
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    assert_eq!(collect(sub.as_mut(), 5, Duration::from_secs(10)).await.len(), 5);

    sub.seek(&SeekTarget::Earliest).await.expect("seek earliest");
    let all: HashSet<u32> = collect(sub.as_mut(), 5, Duration::from_secs(10))
        .await
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(all, (0..5).collect(), "everything again after seeking to the earliest");

    sub.seek(&SeekTarget::After(positions[2].clone()))
        .await
        .expect("seek after");
    let rest: Vec<u32> = collect(sub.as_mut(), 2, Duration::from_secs(10))
        .await
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(rest, vec![3, 4], "just after the position");
    let extra = collect(sub.as_mut(), 1, Duration::from_millis(500)).await;
    assert!(
        extra.is_empty(),
        "nothing at or before the position: {:?}",
        extra.iter().map(n_of).collect::<Vec<_>>()
    );

    sub.seek(&SeekTarget::Latest).await.expect("seek latest");
    assert!(collect(sub.as_mut(), 1, Duration::from_millis(500)).await.is_empty());
    publish(t.as_ref(), &topic, 5..6).await;
    let new: Vec<u32> = collect(sub.as_mut(), 1, Duration::from_secs(10))
        .await
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(new, vec![5]);
    sub.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browse_pages_in_order_without_consuming() {
    let broker = TestBroker::shared();
    let t = broker.transport_with(broker.settings()).await;
    let topic = topic("browse");
    assert!(t
        .browse(&topic, None, 10)
        .await
        .expect("browse an empty topic")
        .is_empty());
    let positions = publish(t.as_ref(), &topic, 0..7).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = t.browse(&topic, after.as_deref(), 3).await.expect("browse");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.position.clone());
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(n_of).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert_eq!(seen.iter().map(|d| d.position.clone()).collect::<Vec<_>>(), positions);
    // Browsing acknowledged nothing: a group still reads all of them.
    let mut sub = t.subscribe(&request(&topic, "after-browse")).await.expect("subscribe");
    assert_eq!(collect(sub.as_mut(), 7, Duration::from_secs(10)).await.len(), 7);
    sub.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_group_at_latest_skips_older_messages() {
    let broker = TestBroker::shared();
    let t = broker.transport_with(broker.settings()).await;
    let topic = topic("latest");
    publish(t.as_ref(), &topic, 0..3).await;
    let mut req = request(&topic, "late");
    req.start = StartPosition::Latest;
    let mut sub = t.subscribe(&req).await.expect("subscribe");
    publish(t.as_ref(), &topic, 3..4).await;
    let got: Vec<u32> = collect(sub.as_mut(), 1, Duration::from_secs(10))
        .await
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(got, vec![3]);
    assert!(collect(sub.as_mut(), 1, Duration::from_millis(500)).await.is_empty());
    sub.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_headers_and_keys_survive_the_broker() {
    let broker = TestBroker::shared();
    let t = broker.transport_with(broker.settings()).await;
    let topic = topic("binary");
    let message = RawMessage {
        topic: topic.clone(),
        key: Some(vec![0xff, 0x00, 0x7f]),
        headers: vec![("n".into(), b"0".to_vec()), ("trace".into(), vec![0xc3, 0x28, 0x00])],
        value: vec![0xde, 0xad, 0xbe, 0xef],
        timestamp: None,
    };
    t.publish_raw(&message).await.expect("publish");
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    let got = collect(sub.as_mut(), 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].raw.key, message.key);
    assert_eq!(got[0].raw.header("trace"), Some(&[0xc3, 0x28, 0x00][..]));
    assert_eq!(got[0].raw.value, message.value);
    assert!(got[0].event.is_err(), "not an event, and said so");
    sub.close().await.expect("close");
    let mut twice = message.clone();
    twice.headers.push(("n".into(), b"1".to_vec()));
    let e = t.publish_raw(&twice).await.expect_err("duplicate header names");
    assert_eq!(e.kind, TransportErrorKind::Rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_limit_is_rejected() {
    let broker = TestBroker::shared();
    let t = broker.transport_with(broker.settings()).await;
    let mut m = raw(&topic("too-large"), 0);
    m.value = vec![b'x'; 5 * 1024 * 1024 + 1];
    let e = t.publish_raw(&m).await.expect_err("too large");
    assert_eq!(e.kind, TransportErrorKind::Rejected, "{e}");
    assert!(e.message.contains("EVENT_BUS_PULSAR_MAX_MESSAGE_BYTES"), "{e}");
}

/// A broker that accepts connections and never answers.
fn silent_listener() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(8) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    (addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_broker_fails_within_the_operation_timeout() {
    let (addr, _listener) = silent_listener();
    let mut settings = PulsarSettings::new(format!("pulsar://{addr}"));
    settings.operation_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let e = PulsarTransport::connect(settings)
        .await
        .err()
        .expect("no broker answers");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(e.kind, TransportErrorKind::Timeout | TransportErrorKind::Connection),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_gone_mid_way_never_hangs_the_caller() {
    let broker = TestBroker::shared();
    if !broker.is_lite() {
        // Needs a proxy of its own to cut; pulsar-lite only.
        return;
    }
    let TestBroker::Lite { broker: lite, .. } = broker else {
        return;
    };
    let upstream = lite.lock().expect("broker").addr();
    let proxy = ChecksumRestoringProxy::start(upstream).expect("proxy");
    let mut settings = Settings::new();
    settings.set("EVENT_BUS_PULSAR_URL", proxy.url());
    settings.set("EVENT_BUS_PULSAR_OPERATION_TIMEOUT", "1");
    let t = broker.transport_with(settings).await;
    let topic = topic("gone");
    publish(t.as_ref(), &topic, 0..1).await;
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    assert_eq!(collect(sub.as_mut(), 1, Duration::from_secs(10)).await.len(), 1);
    drop(proxy); // the "broker" is gone: connections drop, new ones are refused
    let started = Instant::now();
    let published = t.publish_raw(&raw(&topic, 1)).await;
    assert!(published.is_err(), "nothing can be published");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "publish took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let _ = sub.receive(10, Duration::from_millis(200)).await;
    let _ = sub.flush_acks().await;
    let _ = sub.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "receive, flush and close took {:?}",
        started.elapsed()
    );
}

/// A slow consumer on a backlog holds a bounded number of messages: what
/// `receive` takes from pulsar-rs ahead of the loop never exceeds twice the
/// batch asked for or the receiver queue size, however long the backlog,
/// and acking as it goes does not make it grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_on_a_backlog_buffers_a_bounded_number() {
    let broker = TestBroker::shared();
    let mut settings = broker.settings();
    settings.set("EVENT_BUS_PULSAR_RECEIVER_QUEUE_SIZE", 100);
    let t = broker.transport_with(settings).await;
    let name = topic("backlog");
    let mut sub = t.subscribe_pulsar(&request(&name, "slow")).await.unwrap();
    publish(t.as_ref(), &name, 0..3000).await;
    let mut seen = 0;
    let mut most_buffered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 600 && Instant::now() < deadline {
        let got = sub.receive(5, Duration::from_millis(200)).await.expect("receive");
        for d in &got {
            sub.ack(d.tag).await.expect("ack");
        }
        seen += got.len();
        most_buffered = most_buffered.max(sub.buffered());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(seen >= 600, "the slow consumer made progress: {seen}");
    assert!(
        most_buffered <= 100,
        "at most the receiver queue size (100) is buffered ahead of the loop, saw {most_buffered}"
    );
    sub.close().await.unwrap();
}
