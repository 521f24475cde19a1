//! Fast in-process tests of the consumer's commit bookkeeping on librdkafka's
//! protocol-level mock broker (`MockCluster`, a test double of a Kafka
//! cluster) with the schema registry test double: out-of-order acks,
//! commits before a rebalance revokes partitions, nack redelivery, close,
//! registry outages and fatal errors; and the conformance case
//! `concurrent_close`, which tansu's group coordinator cannot run reliably
//! (see tests/conformance.rs).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use event_bus_kafka::testing::RegistryDouble;
use event_bus_kafka::{KafkaSettings, KafkaTransport};
use openedx_events::bus::transport::{
    Delivery, OutgoingMessage, RawMessage, SubscribeRequest, Subscription, Transport, TransportError,
    TransportErrorKind,
};
use openedx_events::bus::{ConsumerError, ConsumerOptions, EventBusConsumer, EventBusProducer};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio_util::sync::CancellationToken;

use common::{committed_offsets, fast_settings, init_tracing, login, publish_logins, request, LOGIN};

struct Fixture {
    cluster: MockCluster<'static, DefaultProducerContext>,
    registry: RegistryDouble,
}

/// Settings for fast tests on the mock cluster.
fn settings(bootstrap: &str, registry: &str) -> KafkaSettings {
    let mut s = fast_settings(bootstrap, registry);
    // The mock broker has no CreateTopics: subscriptions do not look for
    // their dead-letter topic (tests/tansu_dead_letters.rs does).
    s.dead_letters.enabled = false;
    s.client_config.insert("heartbeat.interval.ms".into(), "500".into());
    s
}

impl Fixture {
    fn new(topic: &str, partitions: i32) -> Self {
        init_tracing();
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic(topic, partitions, 1).expect("a topic");
        Fixture {
            cluster,
            registry: RegistryDouble::start().expect("registry double"),
        }
    }

    fn settings(&self) -> KafkaSettings {
        settings(&self.cluster.bootstrap_servers(), &self.registry.url())
    }

    fn transport(&self) -> KafkaTransport {
        KafkaTransport::connect(self.settings()).expect("transport")
    }

    /// The committed offset of `group` on each partition (-1: none).
    fn committed(&self, topic: &str, group: &str, partitions: i32) -> Vec<i64> {
        committed_offsets(&self.cluster.bootstrap_servers(), topic, group, partitions)
    }
}

async fn publish(t: &Arc<dyn Transport>, topic: &str, n: i64) -> Vec<EventsMetadata> {
    publish_logins(t, topic, 0, n).await
}

async fn receive_n(sub: &mut dyn Subscription, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "received {} of {n}", out.len());
        out.extend(
            sub.receive(n - out.len(), Duration::from_millis(200))
                .await
                .expect("receive"),
        );
    }
    out
}

fn offset_of(d: &Delivery) -> i64 {
    event_bus_kafka::positions::parse_position(&d.position)
        .expect("a position")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_acks_commit_up_to_the_lowest_unacknowledged() {
    let f = Fixture::new("ooo", 1);
    let t: Arc<dyn Transport> = Arc::new(f.transport());
    let sent = publish(&t, "ooo", 5).await;
    let mut sub = t.subscribe(&request("ooo", "g")).await.unwrap();
    let got = receive_n(sub.as_mut(), 5).await;
    assert_eq!(
        got.iter()
            .map(|d| d.event.as_ref().unwrap().metadata.id)
            .collect::<Vec<_>>(),
        sent.iter().map(|m| m.id).collect::<Vec<_>>(),
        "one partition: publish order"
    );
    assert!(got.iter().all(|d| d.attempt == 1));
    assert_eq!(got.iter().map(offset_of).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    for i in [4, 0, 3, 1] {
        sub.ack(got[i].tag).await.unwrap();
    }
    sub.flush_acks().await.unwrap();
    assert_eq!(f.committed("ooo", "g", 1), vec![2], "offset 2 is unacknowledged");
    sub.ack(got[2].tag).await.unwrap();
    sub.flush_acks().await.unwrap();
    assert_eq!(f.committed("ooo", "g", 1), vec![5]);
    sub.close().await.unwrap();
    sub.close().await.expect("close is idempotent");
    assert_eq!(
        sub.receive(1, Duration::ZERO).await.unwrap_err().kind,
        TransportErrorKind::Closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_message_comes_back_after_its_delay_and_holds_the_commit() {
    let f = Fixture::new("nack", 1);
    let t: Arc<dyn Transport> = Arc::new(f.transport());
    publish(&t, "nack", 3).await;
    let mut sub = t.subscribe(&request("nack", "g")).await.unwrap();
    let got = receive_n(sub.as_mut(), 3).await;
    let nacked_at = Instant::now();
    sub.nack(got[0].tag, Duration::from_millis(400)).await.unwrap();
    sub.ack(got[1].tag).await.unwrap();
    sub.ack(got[2].tag).await.unwrap();
    sub.flush_acks().await.unwrap();
    let committed = f.committed("nack", "g", 1)[0];
    assert!(
        committed <= 0,
        "nothing past the nacked offset 0 is committed (got {committed})"
    );
    let again = receive_n(sub.as_mut(), 1).await;
    assert!(
        nacked_at.elapsed() >= Duration::from_millis(380),
        "redelivered after the delay"
    );
    assert_eq!(again[0].position, got[0].position);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].raw, got[0].raw, "the same bytes");
    sub.nack(again[0].tag, Duration::ZERO).await.unwrap();
    let third = receive_n(sub.as_mut(), 1).await;
    assert_eq!(third[0].attempt, 3);
    sub.ack(third[0].tag).await.unwrap();
    sub.flush_acks().await.unwrap();
    assert_eq!(f.committed("nack", "g", 1), vec![3]);
    assert!(sub.receive(10, Duration::from_millis(300)).await.unwrap().is_empty());
    sub.close().await.unwrap();
}

/// librdkafka's mock broker refuses commits while a group is joining (real
/// Kafka accepts them from the current generation while it prepares a
/// rebalance), so the eager protocol's revocation, which happens then,
/// cannot commit on the mock. With the cooperative protocol the revocation
/// comes after the group settled, and the mock accepts the commit: the
/// same code path (`pre_rebalance` commit of the revoked partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_partitions_commit_what_was_acknowledged_before_they_go() {
    let f = Fixture::new("rebalance", 2);
    let cooperative = || {
        let mut s = f.settings();
        s.client_config
            .insert("partition.assignment.strategy".into(), "cooperative-sticky".into());
        KafkaTransport::connect(s).expect("transport")
    };
    let t: Arc<dyn Transport> = Arc::new(cooperative());
    let sent = publish(&t, "rebalance", 20).await;
    let mut a = t.subscribe(&request("rebalance", "g")).await.unwrap();
    let got = receive_n(a.as_mut(), 20).await;
    let partitions: HashSet<String> = got
        .iter()
        .map(|d| d.position.split(" offset").next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(partitions.len(), 2, "the keys spread over both partitions");
    for d in &got {
        a.ack(d.tag).await.unwrap();
    }
    // No flush: only the rebalance can commit these.
    assert_eq!(f.committed("rebalance", "g", 2), vec![-1, -1]);

    // A second member joins; the first keeps polling so that it takes part
    // in the rebalance.
    let t2: Arc<dyn Transport> = Arc::new(cooperative());
    let mut b = t2.subscribe(&request("rebalance", "g")).await.unwrap();
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let a_task = tokio::spawn(async move {
        let mut extra = Vec::new();
        while !s2.is_cancelled() {
            extra.extend(a.receive(10, Duration::from_millis(100)).await.expect("receive a"));
        }
        (a, extra)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut b_got = Vec::new();
    loop {
        b_got.extend(b.receive(10, Duration::from_millis(200)).await.expect("receive b"));
        let committed = f.committed("rebalance", "g", 2);
        if committed.iter().any(|c| *c > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no rebalance commit: {committed:?}");
    }
    // Give b time to start fetching from the committed positions.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        b_got.extend(b.receive(10, Duration::from_millis(200)).await.expect("receive b"));
    }
    stop.cancel();
    let (a, a_extra) = a_task.await.unwrap();
    let per_partition: Vec<i64> = (0..2)
        .map(|p| {
            got.iter()
                .filter(|d| d.position.starts_with(&format!("partition {p} ")))
                .count() as i64
        })
        .collect();
    let committed = f.committed("rebalance", "g", 2);
    let revoked: Vec<usize> = (0..2).filter(|p| committed[*p] > 0).collect();
    assert_eq!(revoked.len(), 1, "one partition moved to the new member: {committed:?}");
    assert_eq!(
        committed[revoked[0]], per_partition[revoked[0]],
        "everything acknowledged on the revoked partition was committed"
    );
    assert!(
        b_got.is_empty(),
        "acknowledged messages are not delivered again: {b_got:?}"
    );
    assert!(a_extra.is_empty());
    assert_eq!(sent.len(), 20);
    // The members are not closed: closing a cooperative-sticky member
    // while the mock cluster rebalances sometimes waits past `close`'s 30 s
    // and then aborts the process inside librdkafka 2.12
    // (`rd_kafka_cgrp_terminated: assert: !rd_kafka_assignment_in_progress`).
    // Closing is covered with the default (eager) assignment by
    // `close_commits_acknowledged_offsets_and_the_next_member_goes_on`; the
    // members and their cluster are left to the end of the test process.
    std::mem::forget(a);
    std::mem::forget(b);
    std::mem::forget(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_acknowledged_offsets_and_the_next_member_goes_on() {
    let f = Fixture::new("close", 1);
    let t: Arc<dyn Transport> = Arc::new(f.transport());
    let sent = publish(&t, "close", 4).await;
    let mut sub = t.subscribe(&request("close", "g")).await.unwrap();
    let got = receive_n(sub.as_mut(), 4).await;
    sub.ack(got[0].tag).await.unwrap();
    sub.ack(got[1].tag).await.unwrap();
    sub.close().await.unwrap();
    assert_eq!(f.committed("close", "g", 1), vec![2]);
    let mut next = t.subscribe(&request("close", "g")).await.unwrap();
    let rest = receive_n(next.as_mut(), 2).await;
    let ids: Vec<_> = rest.iter().map(|d| d.event.as_ref().unwrap().metadata.id).collect();
    assert_eq!(ids, vec![sent[2].id, sent[3].id], "the unacknowledged ones, in order");
    next.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_garbage_is_delivered_with_a_reason() {
    let f = Fixture::new("garbage", 1);
    let mut settings = f.settings();
    // An id the registry never gave is unusable at once (no lagging replica
    // to wait for).
    settings.schema_registry_unknown_id_grace = Duration::ZERO;
    let t: Arc<dyn Transport> = Arc::new(KafkaTransport::connect(settings).unwrap());
    let mut headers = openedx_events::bus::wire::cloudevent_headers(&EventsMetadata::new(LOGIN, 0));
    t.publish_raw(&RawMessage {
        topic: "garbage".into(),
        key: None,
        headers: vec![("x".into(), b"\xff".to_vec())],
        value: b"\xff\xfe not an event".to_vec(),
        timestamp: None,
    })
    .await
    .unwrap();
    // Good headers, but a value without the Confluent framing.
    t.publish_raw(&RawMessage {
        topic: "garbage".into(),
        key: None,
        headers: headers.clone(),
        value: b"\x00\x00".to_vec(),
        timestamp: None,
    })
    .await
    .unwrap();
    // Good headers and framing, but an id the registry never gave.
    t.publish_raw(&RawMessage {
        topic: "garbage".into(),
        key: None,
        headers: headers.clone(),
        value: b"\x00\x00\x00\x03\xe7\x02".to_vec(),
        timestamp: None,
    })
    .await
    .unwrap();
    // Duplicate ce_type.
    headers.push(("ce_type".into(), b"other".to_vec()));
    t.publish_raw(&RawMessage {
        topic: "garbage".into(),
        key: None,
        headers,
        value: b"\x00\x00\x00\x00\x01".to_vec(),
        timestamp: None,
    })
    .await
    .unwrap();
    let mut sub = t.subscribe(&request("garbage", "g")).await.unwrap();
    let got = receive_n(sub.as_mut(), 4).await;
    let reasons: Vec<String> = got.iter().map(|d| d.event.clone().unwrap_err()).collect();
    assert!(reasons[0].contains("ce_type"), "{reasons:?}");
    assert!(reasons[1].contains("too short"), "{reasons:?}");
    assert!(reasons[2].contains("no schema with id 999"), "{reasons:?}");
    assert!(reasons[3].contains("Multiple \"ce_type\""), "{reasons:?}");
    assert_eq!(got[0].raw.value, b"\xff\xfe not an event");
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_id_the_registry_lacks_waits_within_its_grace() {
    let f = Fixture::new("lagging", 1);
    let t: Arc<dyn Transport> = Arc::new(f.transport());
    let headers = openedx_events::bus::wire::cloudevent_headers(&EventsMetadata::new(LOGIN, 0));
    t.publish_raw(&RawMessage {
        topic: "lagging".into(),
        key: None,
        headers,
        value: b"\x00\x00\x00\x03\xe7\x02".to_vec(),
        timestamp: None,
    })
    .await
    .unwrap();
    let mut sub = t.subscribe(&request("lagging", "g")).await.unwrap();
    // A replica that has not caught up answers 404: the message is not
    // delivered as unusable (which would dead-letter it), it waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let e = loop {
        match sub.receive(10, Duration::from_millis(500)).await {
            Ok(got) if got.is_empty() && Instant::now() < deadline => continue,
            Ok(got) => panic!(
                "delivered while the registry lacks its schema: {:?}",
                got.iter().map(|d| &d.event).collect::<Vec<_>>()
            ),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind, TransportErrorKind::Connection, "{e}");
    assert!(e.message.contains("no schema with id 999"), "{e}");
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_while_the_registry_is_down() {
    let f = Fixture::new("outage", 1);
    let producer: Arc<dyn Transport> = Arc::new(f.transport());
    let sent = publish(&producer, "outage", 2).await;
    // The consumer uses another registry (same schemas, same ids), down for
    // now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut settings = f.settings();
    settings.schema_registry_url = format!("http://127.0.0.1:{port}");
    settings.schema_registry_timeout = Duration::from_secs(2);
    let consumer = KafkaTransport::connect(settings).unwrap();
    let mut sub = consumer.subscribe(&request("outage", "g")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        assert!(Instant::now() < deadline, "no registry error");
        match sub.receive(10, Duration::from_millis(300)).await {
            Err(e) => break e,
            Ok(v) => assert!(v.is_empty(), "nothing can be decoded while the registry is down"),
        }
    };
    assert_eq!(err.kind, TransportErrorKind::Connection, "{err}");
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.is_fatal());
    // The registry comes back (same port, same schemas): the messages arrive.
    let back = RegistryDouble::builder()
        .addr(format!("127.0.0.1:{port}"))
        .start()
        .unwrap();
    let mut id = 1;
    while let Some(text) = f.registry.schema(id) {
        assert_eq!(back.register(&format!("copy-{id}"), &text), id);
        id += 1;
    }
    let got = receive_n(sub.as_mut(), 2).await;
    let ids: Vec<_> = got
        .iter()
        .map(|d| d.event.as_ref().expect("decoded").metadata.id)
        .collect();
    assert_eq!(ids, vec![sent[0].id, sent[1].id]);
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_fails_publishing() {
    let f = Fixture::new("fatal", 1);
    let t = f.transport();
    let t: Arc<KafkaTransport> = Arc::new(t);
    let dyn_t: Arc<dyn Transport> = t.clone();
    publish(&dyn_t, "fatal", 1).await;
    t.inject_fatal_error_for_tests("test: producer fenced").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let message = EventBusProducer::new(dyn_t.clone(), None)
        .prepare(
            catalog::get(LOGIN).unwrap(),
            "fatal",
            None,
            &login(9),
            &EventsMetadata::new(LOGIN, 0),
        )
        .unwrap();
    loop {
        match dyn_t.publish(&message).await {
            Err(e) if e.kind == TransportErrorKind::Fatal => {
                assert!(e.message.contains("producer fenced"), "{e}");
                break;
            }
            other => assert!(Instant::now() < deadline, "no fatal error yet: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_is_a_clear_error() {
    let f = Fixture::new("full", 1);
    let mut s = f.settings();
    s.client_config
        .insert("queue.buffering.max.messages".into(), "2".into());
    s.client_config.insert("message.timeout.ms".into(), "3000".into());
    let t: Arc<dyn Transport> = Arc::new(KafkaTransport::connect(s).unwrap());
    publish(&t, "full", 1).await; // schemas registered, connection up
    f.cluster.broker_down(1).unwrap();
    let sends = (0..10).map(|i| {
        let t = t.clone();
        async move {
            let m = EventsMetadata::new(LOGIN, 0);
            EventBusProducer::new(t, None)
                .send(
                    catalog::get(LOGIN).unwrap(),
                    "full",
                    Some("user.pii.username"),
                    &login(i),
                    &m,
                )
                .await
        }
    });
    let results = futures::future::join_all(sends).await;
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(
        errors.len(),
        10,
        "the broker is down: nothing is confirmed: {results:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("local producer queue is full") && e.contains("=2")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("timeout")),
        "queued ones time out: {errors:?}"
    );
}

/// A transport that makes every subscription hit a fatal librdkafka error.
struct FatalOnSubscribe(KafkaTransport);

#[async_trait]
impl Transport for FatalOnSubscribe {
    fn name(&self) -> &str {
        "kafka"
    }
    fn capabilities(&self) -> openedx_events::bus::transport::Capabilities {
        self.0.capabilities()
    }
    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.0.publish(message).await
    }
    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        self.0.publish_raw(message).await
    }
    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        let sub = self.0.subscribe_kafka(request)?;
        sub.inject_fatal_error_for_tests("test: consumer fenced")
            .map_err(TransportError::other)?;
        Ok(Box::new(sub))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_consumer_error_ends_the_consume_loop() {
    let f = Fixture::new("fatal-consumer", 1);
    let t: Arc<dyn Transport> = Arc::new(FatalOnSubscribe(f.transport()));
    let mut o = ConsumerOptions::new("fatal-consumer", "g");
    o.poll_timeout = Duration::from_millis(100);
    let consumer = EventBusConsumer::new(t, Arc::new(Registry::with_catalog()), o);
    let result = tokio::time::timeout(Duration::from_secs(30), consumer.consume(CancellationToken::new()))
        .await
        .expect("the loop ends by itself");
    match result {
        Err(ConsumerError::Fatal(e)) => {
            assert_eq!(e.kind, TransportErrorKind::Fatal);
            assert!(e.message.contains("consumer fenced"), "{e}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

/// The mock cluster as a backend of the conformance suite, for the case
/// tansu cannot run reliably. (The cluster itself is not `Send`: the test
/// keeps it and creates the case's topic beforehand.)
struct MockBackend {
    bootstrap: String,
    registry: RegistryDouble,
    topic: String,
}

#[async_trait]
impl event_bus_conformance::BackendUnderTest for MockBackend {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(KafkaTransport::connect(settings(&self.bootstrap, &self.registry.url())).expect("transport"))
    }

    fn topic(&self, _case: &str) -> String {
        self.topic.clone()
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Ten members of one group join and close at once; then one member must
/// get every message of the topic's three partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_concurrent_close() {
    let topic = "conformance-concurrent_close";
    let fixture = Fixture::new(topic, 3);
    fixture
        .cluster
        .create_topic(&format!("{topic}-dlq"), 3, 1)
        .expect("a topic");
    let backend = MockBackend {
        bootstrap: fixture.cluster.bootstrap_servers(),
        registry: RegistryDouble::start().expect("registry double"),
        topic: topic.to_string(),
    };
    event_bus_conformance::run_case("concurrent_close", &backend, |b| {
        Box::pin(event_bus_conformance::pubsub::concurrent_close(b))
    })
    .await;
    drop(fixture);
}
