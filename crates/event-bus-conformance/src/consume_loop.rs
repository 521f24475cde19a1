//! The event bus's own cases, through the core consume loop on the backend:
//! dead letters, retries, poison messages, shutdown, replay, duplicates.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openedx_events::bus::dead_letter::{
    self, DLQ_ATTEMPTS, DLQ_CONSUMER_GROUP, DLQ_ERROR, DLQ_ORIGINAL_TOPIC, DLQ_REASON,
};
use openedx_events::bus::transport::{OutgoingMessage, RawMessage, SeekTarget};
use openedx_events::bus::{ConsumerOptions, ConsumerStats, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::{ReceiverError, Registry};
use openedx_events::types::{DataType, FieldDef};
use openedx_events::value::{Record, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::*;
use crate::BackendUnderTest;

#[derive(Debug)]
struct Boom(&'static str);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Boom {}

fn boom(text: &'static str) -> ReceiverError {
    Box::new(Boom(text))
}

/// Options for a fast test consumer.
fn options(b: &impl BackendUnderTest, topic: &str, group: &str) -> ConsumerOptions {
    let mut o = ConsumerOptions::new(topic, group);
    o.batch_size = 16;
    o.poll_timeout = Duration::from_millis(100);
    o.poll_failure_sleep = Duration::from_millis(100);
    o.retry.initial_delay = Duration::from_millis(50);
    o.retry.max_blocking = Duration::ZERO;
    o.extras = b.subscribe_extras();
    o.consumer_name = format!("conformance-{}", Uuid::new_v4().simple());
    o
}

/// Run a consumer until it has handled `limit` messages (or patience runs out).
async fn consume(
    b: &impl BackendUnderTest,
    transport: Arc<dyn Transport>,
    registry: Arc<Registry>,
    mut options: ConsumerOptions,
    limit: u64,
) -> ConsumerStats {
    options.limit = Some(limit);
    let consumer = EventBusConsumer::new(transport, registry, options);
    let token = CancellationToken::new();
    match tokio::time::timeout(b.patience(), consumer.consume(token.clone())).await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => panic!("consumer failed: {e}"),
        Err(_) => {
            token.cancel();
            panic!("consumer did not handle {limit} messages within {:?}", b.patience())
        }
    }
}

fn unregistered_type() -> Arc<EventType> {
    Arc::new(EventType::new(
        "org.example.conformance.unregistered.v1",
        0,
        vec![FieldDef::required("note", DataType::String)],
    ))
}

async fn publish_unregistered(t: &Arc<dyn Transport>, topic: &str) -> Uuid {
    let et = unregistered_type();
    let metadata = EventsMetadata::new(et.name(), 0);
    let data = Record::new().with("note", Value::from("nobody knows me"));
    EventBusProducer::new(t.clone(), None)
        .send(&et, topic, None, &data, &metadata)
        .await
        .expect("publish an event of an unregistered type");
    metadata.id
}

const GARBAGE: &[u8] = b"\xff\xfe not an event";

async fn publish_garbage(t: &Arc<dyn Transport>, topic: &str) {
    t.publish_raw(&RawMessage {
        topic: topic.to_string(),
        key: None,
        headers: vec![("x-garbage".to_string(), b"1".to_vec())],
        value: GARBAGE.to_vec(),
        timestamp: None,
    })
    .await
    .expect("publish a raw garbage message");
}

async fn publish_undecodable(t: &Arc<dyn Transport>, topic: &str) -> Uuid {
    let metadata = EventsMetadata::new(LOGIN, 0);
    let message = OutgoingMessage {
        topic: topic.to_string(),
        event_type: login_type().clone(),
        metadata: metadata.clone(),
        key: None,
        body: vec![0xff, 0xff, 0xff, 0x01],
    };
    t.publish(&message).await.expect("publish an undecodable body");
    metadata.id
}

async fn publish_invalid_course_key(t: &Arc<dyn Transport>, topic: &str) -> Uuid {
    let et = catalog::get("org.openedx.learning.course.enrollment.created.v1").expect("enrollment");
    let mut data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(3));
    if let Some(Value::Record(enrollment)) = data.get_mut("enrollment") {
        if let Some(Value::Record(course)) = enrollment.get_mut("course") {
            course.insert("course_key", Value::from("this is not a course key"));
        }
    }
    let metadata = EventsMetadata::new(et.name(), 0);
    let message = OutgoingMessage {
        topic: topic.to_string(),
        event_type: et.clone(),
        metadata: metadata.clone(),
        key: None,
        body: et.encode_data(&data).expect("encodes: only the key text is wrong"),
    };
    t.publish(&message).await.expect("publish invalid data");
    metadata.id
}

/// Read the dead-letter topic of `topic` (until `n` arrive).
async fn dead_letters(
    b: &impl BackendUnderTest,
    t: &Arc<dyn Transport>,
    topic: &str,
    n: usize,
) -> Vec<openedx_events::bus::transport::Delivery> {
    let mut sub = subscribe(b, t, &format!("{topic}-dlq"), "dlq-check").await;
    let deadline = Instant::now() + b.patience();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} dead letters arrived", out.len());
        for d in sub
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive dead letters")
        {
            sub.ack(d.tag).await.expect("ack");
            out.push(d);
        }
    }
    sub.flush_acks().await.expect("flush");
    sub.close().await.expect("close");
    out
}

fn by_reason<'a>(
    letters: &'a [openedx_events::bus::transport::Delivery],
    reason: &str,
) -> &'a openedx_events::bus::transport::Delivery {
    letters
        .iter()
        .find(|d| d.raw.header_str(DLQ_REASON) == Some(reason))
        .unwrap_or_else(|| panic!("no dead letter with reason {reason}"))
}

/// A message whose receiver keeps failing, an event of an unknown type and
/// an unusable message all reach the dead-letter topic with their original
/// bytes and headers, the reason, the attempt count and the time.
pub async fn dead_letter_with_reason(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("dead_letter");
    let registry = Arc::new(Registry::with_catalog());
    registry
        .get(LOGIN)
        .expect("login")
        .connect("always fails", |_| Err(boom("boom: receiver failed")));
    let login = publish_logins(&t, &topic, 1, 1, |_| "k".into()).await;
    let unknown = publish_unregistered(&t, &topic).await;
    publish_garbage(&t, &topic).await;
    let mut o = options(b, &topic, "dlq-group");
    o.retry.max_attempts = 2;
    let stats = consume(b, t.clone(), registry, o, 3).await;
    assert_eq!(
        (stats.processed, stats.dead_lettered, stats.retried),
        (0, 3, 1),
        "{stats:?}"
    );

    let letters = dead_letters(b, &t, &topic, 3).await;
    for d in &letters {
        assert_eq!(d.raw.header_str(DLQ_ORIGINAL_TOPIC), Some(topic.as_str()));
        assert_eq!(d.raw.header_str(DLQ_CONSUMER_GROUP), Some("dlq-group"));
        let at = d.raw.header_str(dead_letter::DLQ_FAILED_AT).expect("failed_at");
        assert!(
            openedx_events::metadata::parse_time(at).is_ok(),
            "dlq_failed_at {at:?} is a time"
        );
    }
    let failed = by_reason(&letters, "receiver_failed");
    assert_eq!(failed.raw.header_str(DLQ_ATTEMPTS), Some("2"));
    assert!(failed.raw.header_str(DLQ_ERROR).unwrap_or("").contains("boom"));
    assert_eq!(
        id_of(failed),
        login[0].metadata.id,
        "the dead letter is the original event"
    );
    assert_intact(&login, std::slice::from_ref(failed));
    assert_eq!(id_of(by_reason(&letters, "unknown_event_type")), unknown);
    let unusable = by_reason(&letters, "unusable_message");
    assert_eq!(unusable.raw.value, GARBAGE, "original bytes are kept");
    assert_eq!(
        unusable.raw.header("x-garbage"),
        Some(&b"1"[..]),
        "original headers are kept"
    );
}

/// A receiver that fails twice then succeeds is retried with growing delays
/// and handled once; nothing is dead-lettered.
pub async fn retry_with_backoff(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("retry_backoff");
    let registry = Arc::new(Registry::with_catalog());
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let c = calls.clone();
    registry.get(LOGIN).expect("login").connect("flaky", move |_| {
        let mut calls = c.lock().map_err(|_| boom("poisoned"))?;
        calls.push(Instant::now());
        if calls.len() <= 2 {
            Err(boom("not yet"))
        } else {
            Ok(())
        }
    });
    publish_logins(&t, &topic, 0, 1, |_| "k".into()).await;
    let mut o = options(b, &topic, "g");
    o.retry.initial_delay = Duration::from_millis(200);
    o.retry.multiplier = 2.0;
    let stats = consume(b, t.clone(), registry, o, 1).await;
    assert_eq!(
        (stats.processed, stats.retried, stats.dead_lettered),
        (1, 2, 0),
        "{stats:?}"
    );
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 3);
    // Each retry waited at least its backoff delay (200 ms, then 400 ms).
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(180),
        "first retry came after {:?}",
        calls[1] - calls[0]
    );
    assert!(
        calls[2] - calls[1] >= Duration::from_millis(360),
        "second retry came after {:?}",
        calls[2] - calls[1]
    );
}

/// While a failing message waits for its retry, the messages after it are
/// handled; with a blocking budget, it is retried in place (in order).
pub async fn retry_does_not_block_the_stream(b: &impl BackendUnderTest) {
    for (blocking, expect_first) in [(Duration::ZERO, false), (Duration::from_secs(5), true)] {
        let t = b.transport().await;
        let topic = b.topic("retry_not_blocking");
        let registry = Arc::new(Registry::with_catalog());
        let order: Arc<Mutex<Vec<i64>>> = Arc::default();
        let failed_once = Arc::new(Mutex::new(false));
        let (o2, f2) = (order.clone(), failed_once.clone());
        registry
            .get(LOGIN)
            .expect("login")
            .connect("first fails once", move |event| {
                let id = match event
                    .data
                    .get("user")
                    .and_then(Value::as_record)
                    .and_then(|u| u.get("id"))
                {
                    Some(Value::Long(i)) => *i,
                    _ => -1,
                };
                let mut failed = f2.lock().map_err(|_| boom("poisoned"))?;
                if id == 0 && !*failed {
                    *failed = true;
                    return Err(boom("first attempt fails"));
                }
                o2.lock().map_err(|_| boom("poisoned"))?.push(id);
                Ok(())
            });
        // One key: brokers that order per key (Kafka partitions) keep these three in order.
        publish_logins(&t, &topic, 0, 3, |_| "same".to_string()).await;
        let mut o = options(b, &topic, "g");
        o.retry.initial_delay = Duration::from_millis(300);
        o.retry.max_blocking = blocking;
        let stats = consume(b, t.clone(), registry, o, 3).await;
        assert_eq!(stats.processed, 3, "{stats:?}");
        let order = order.lock().expect("order").clone();
        if expect_first {
            assert_eq!(order, vec![0, 1, 2], "an in-place retry keeps the order");
        } else {
            assert_eq!(
                order.last(),
                Some(&0),
                "the others were handled while message 0 waited: {order:?}"
            );
        }
    }
}

/// Unusable, undecodable, invalid and unknown messages are dead-lettered and
/// the good messages around them are handled.
pub async fn poison_messages_do_not_stop_the_stream(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("poison");
    let registry = Arc::new(Registry::with_catalog());
    let handled: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let h = handled.clone();
    registry.get(LOGIN).expect("login").connect("record", move |e| {
        h.lock().map_err(|_| boom("poisoned"))?.push(e.metadata.id);
        Ok(())
    });
    let good1 = publish_logins(&t, &topic, 0, 1, |_| "k".into()).await;
    publish_garbage(&t, &topic).await;
    publish_undecodable(&t, &topic).await;
    publish_invalid_course_key(&t, &topic).await;
    publish_unregistered(&t, &topic).await;
    let good2 = publish_logins(&t, &topic, 1, 1, |_| "k".into()).await;
    let stats = consume(b, t.clone(), registry, options(b, &topic, "g"), 6).await;
    assert_eq!((stats.processed, stats.dead_lettered), (2, 4), "{stats:?}");
    assert_eq!(
        *handled.lock().expect("handled"),
        vec![good1[0].metadata.id, good2[0].metadata.id]
    );
    let letters = dead_letters(b, &t, &topic, 4).await;
    let reasons: HashSet<&str> = letters.iter().filter_map(|d| d.raw.header_str(DLQ_REASON)).collect();
    assert_eq!(
        reasons,
        ["unusable_message", "undecodable", "invalid_data", "unknown_event_type"].into(),
        "each poison has its reason"
    );
}

/// On shutdown the message in hand finishes and is acknowledged; the rest
/// are handed back (not dead-lettered) and a restarted consumer gets them.
pub async fn graceful_shutdown_with_in_flight_messages(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("shutdown");
    let registry = Arc::new(Registry::with_catalog());
    let started = Arc::new(tokio::sync::Notify::new());
    let done: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let (s2, d2) = (started.clone(), done.clone());
    registry.get(LOGIN).expect("login").connect_async("slow", move |e| {
        let (s, d) = (s2.clone(), d2.clone());
        async move {
            s.notify_one();
            tokio::time::sleep(Duration::from_millis(500)).await;
            d.lock().map_err(|_| boom("poisoned"))?.push(e.metadata.id);
            Ok(())
        }
    });
    let published = publish_logins(&t, &topic, 0, 5, |_| "k".into()).await;
    let mut o = options(b, &topic, "g");
    o.consumer_name = "conformance-shutdown".into();
    let consumer = EventBusConsumer::new(t.clone(), registry, o.clone());
    let token = CancellationToken::new();
    let run = tokio::spawn({
        let token = token.clone();
        async move { consumer.consume(token).await }
    });
    tokio::time::timeout(b.patience(), started.notified())
        .await
        .expect("the first message reached the receiver");
    token.cancel();
    let stats = run.await.expect("join").expect("a shutdown is a clean stop");
    assert_eq!(stats.processed, 1, "the in-flight message finished: {stats:?}");
    assert_eq!(stats.dead_lettered, 0, "nothing is dead-lettered because of a shutdown");
    let first = done.lock().expect("done")[0];
    assert_eq!(first, published[0].metadata.id);

    let registry = Arc::new(Registry::with_catalog());
    let rest: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let r2 = rest.clone();
    registry.get(LOGIN).expect("login").connect("fast", move |e| {
        r2.lock().map_err(|_| boom("poisoned"))?.insert(e.metadata.id);
        Ok(())
    });
    consume(b, b.transport().await, registry, o, 4).await;
    let want: HashSet<Uuid> = published[1..].iter().map(|p| p.metadata.id).collect();
    assert_eq!(
        *rest.lock().expect("rest"),
        want,
        "the handed-back messages reach the restarted consumer"
    );
    let mut dlq = subscribe(b, &t, &format!("{topic}-dlq"), "dlq-check").await;
    assert!(
        drain(dlq.as_mut(), Duration::from_millis(500)).await.is_empty(),
        "the dead-letter topic is empty"
    );
    dlq.close().await.expect("close");
}

/// The same event published twice reaches receivers twice (at least once),
/// and once when the consumer's deduplication window is on.
pub async fn duplicate_event_id(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("duplicate");
    let data = login_data(1, "k");
    let metadata = EventsMetadata::new(LOGIN, 0);
    let producer = EventBusProducer::new(t.clone(), None);
    publish_with_retry(&producer, &topic, &data, &metadata).await;
    publish_with_retry(&producer, &topic, &data, &metadata).await;
    for (group, window, want_calls) in [("plain", 0, 2), ("dedup", 100, 1)] {
        let registry = Arc::new(Registry::with_catalog());
        let calls: Arc<Mutex<Vec<Uuid>>> = Arc::default();
        let c = calls.clone();
        registry.get(LOGIN).expect("login").connect("count", move |e| {
            c.lock().map_err(|_| boom("poisoned"))?.push(e.metadata.id);
            Ok(())
        });
        let mut o = options(b, &topic, group);
        o.deduplication_window = window;
        let stats = consume(b, t.clone(), registry, o, 2).await;
        let calls = calls.lock().expect("calls").clone();
        assert_eq!(calls.len(), want_calls, "{group}: {stats:?}");
        assert!(calls.iter().all(|id| *id == metadata.id));
        assert_eq!(stats.duplicates_skipped, 2 - want_calls as u64);
    }
}

/// A dead letter sent back to its topic by the core's requeue (what
/// `event-bus dlq requeue` runs) is handled once the receiver works again,
/// and requeued once only.
pub async fn dead_letters_can_be_requeued(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("requeue");
    let registry = Arc::new(Registry::with_catalog());
    let healthy = Arc::new(Mutex::new(false));
    let handled: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let (h2, d2) = (healthy.clone(), handled.clone());
    registry
        .get(LOGIN)
        .expect("login")
        .connect("broken, then fixed", move |e| {
            if !*h2.lock().map_err(|_| boom("poisoned"))? {
                return Err(boom("dependency down"));
            }
            d2.lock().map_err(|_| boom("poisoned"))?.push(e.metadata.id);
            Ok(())
        });
    let published = publish_logins(&t, &topic, 0, 1, |_| "k".into()).await;
    let mut o = options(b, &topic, "g");
    o.retry.max_attempts = 1;
    let stats = consume(b, t.clone(), registry.clone(), o.clone(), 1).await;
    assert_eq!(stats.dead_lettered, 1);
    let request = openedx_events::bus::transport::SubscribeRequest {
        topic: format!("{topic}-dlq"),
        group: "requeue".into(),
        consumer_name: "requeue-1".into(),
        start: Default::default(),
        extras: Default::default(),
    };
    // The code `event-bus dlq requeue` runs; the letter may take a moment to
    // become visible on some brokers.
    let deadline = Instant::now() + b.patience();
    let mut requeued = 0;
    while requeued == 0 {
        assert!(Instant::now() < deadline, "the dead letter was never requeued");
        let done = dead_letter::requeue(t.as_ref(), &request, Some(10), Duration::from_millis(500))
            .await
            .expect("requeue");
        assert_eq!(done.skipped, 0, "{done:?}");
        requeued += done.requeued;
    }
    assert_eq!(requeued, 1);
    *healthy.lock().expect("healthy") = true;
    let stats = consume(b, t.clone(), registry, o, 1).await;
    assert_eq!(stats.processed, 1, "{stats:?}");
    assert_eq!(*handled.lock().expect("handled"), vec![published[0].metadata.id]);
}

/// A group moved to a time receives the messages published from then on.
pub async fn replay_from_time(b: &impl BackendUnderTest) {
    let t = b.transport().await;
    let topic = b.topic("replay_time");
    let before = publish_logins(&t, &topic, 0, 5, |i| i.to_string()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = publish_logins(&t, &topic, 5, 5, |i| i.to_string()).await;
    let mut sub = subscribe(b, &t, &topic, "replay").await;
    sub.seek(&SeekTarget::Time(at)).await.expect("seek to a time");
    let got = receive_ids(sub.as_mut(), &ids(&after), b.patience()).await;
    let old = ids(&before);
    let extra = drain(sub.as_mut(), Duration::from_millis(300)).await;
    assert!(
        got.iter().chain(extra.iter()).all(|d| !old.contains(&id_of(d))),
        "messages from before the seek time were delivered"
    );
    sub.close().await.expect("close");
}
