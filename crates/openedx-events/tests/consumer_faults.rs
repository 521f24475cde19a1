//! The consume loop under faults a backend can cause: a backend that panics
//! while receiving or acknowledging, a dead letter the broker refuses for
//! good or cannot take for now, a hook that panics, and slow work that must
//! keep its lease. The memory backend carries the messages; a wrapper
//! injects the faults.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::dead_letter::{DLQ_REASON, MAX_ERROR_BYTES};
use openedx_events::bus::hooks::WorkCycleHook;
use openedx_events::bus::memory::MemoryBroker;
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, OutgoingMessage, RawMessage, SeekTarget, SubscribeRequest, Subscription,
    TransportErrorKind,
};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport, TransportError};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

/// Faults to inject, shared by the transport and its subscriptions.
#[derive(Default)]
struct Faults {
    /// Panic in this many `receive` calls (the first ones).
    receive_panics: AtomicU32,
    /// Panic in this many `ack` calls (the first ones).
    ack_panics: AtomicU32,
    /// Refuse every dead letter (as a broker refuses a too large message).
    reject_dead_letters: AtomicBool,
    /// Refuse dead letters larger than this many bytes of headers (0: none).
    max_header_bytes: AtomicU32,
    /// Fail this many dead-letter publishes as if the broker were down.
    dead_letters_down: AtomicU32,
    subscriptions: AtomicU32,
    keep_alives: AtomicU32,
    dead_letters_published: AtomicU32,
}

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

struct Faulty {
    inner: Arc<dyn Transport>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Transport for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn publish(&self, m: &OutgoingMessage) -> Result<String, TransportError> {
        self.inner.publish(m).await
    }
    async fn publish_raw(&self, m: &RawMessage) -> Result<String, TransportError> {
        if m.topic.ends_with("-dlq") {
            let f = &self.faults;
            if take_one(&f.dead_letters_down) {
                return Err(TransportError::connection("broker unreachable (injected)"));
            }
            let header_bytes: usize = m.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
            let max = f.max_header_bytes.load(Ordering::SeqCst) as usize;
            if f.reject_dead_letters.load(Ordering::SeqCst) || (max > 0 && header_bytes > max) {
                return Err(TransportError::new(
                    TransportErrorKind::Rejected,
                    "message too large (injected)",
                ));
            }
            f.dead_letters_published.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.publish_raw(m).await
    }
    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        self.inner.browse(topic, after, limit).await
    }
    async fn subscribe(&self, r: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        self.faults.subscriptions.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FaultySub {
            inner: self.inner.subscribe(r).await?,
            faults: self.faults.clone(),
        }))
    }
}

struct FaultySub {
    inner: Box<dyn Subscription>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Subscription for FaultySub {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        let batch = self.inner.receive(max, wait).await?;
        if !batch.is_empty() && take_one(&self.faults.receive_panics) {
            panic!("injected panic while receiving");
        }
        Ok(batch)
    }
    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        if take_one(&self.faults.ack_panics) {
            panic!("injected panic while acknowledging");
        }
        self.inner.ack(tag).await
    }
    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(tag, delay).await
    }
    async fn keep_alive(&mut self) -> Result<(), TransportError> {
        self.faults.keep_alives.fetch_add(1, Ordering::SeqCst);
        self.inner.keep_alive().await
    }
    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        self.inner.seek(target).await
    }
    async fn close(&mut self) -> Result<(), TransportError> {
        self.inner.close().await
    }
}

fn setup() -> (Arc<dyn Transport>, Arc<Faults>, MemoryBroker) {
    let broker = MemoryBroker::new();
    let faults = Arc::new(Faults::default());
    let t = Faulty {
        inner: Arc::new(broker.transport()),
        faults: faults.clone(),
    };
    (Arc::new(t), faults, broker)
}

async fn publish(t: &Arc<dyn Transport>, topic: &str, n: usize) {
    let et = catalog::get(LOGIN).expect("login type");
    let producer = EventBusProducer::new(t.clone(), None);
    for i in 0..n {
        let data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(i as u64));
        producer
            .send(et, topic, None, &data, &EventsMetadata::new(LOGIN, 0))
            .await
            .expect("publish");
    }
}

fn options(topic: &str, limit: u64) -> ConsumerOptions {
    let mut o = ConsumerOptions::new(topic, "g");
    o.limit = Some(limit);
    o.poll_timeout = Duration::from_millis(50);
    o.poll_failure_sleep = Duration::from_millis(10);
    o.retry.initial_delay = Duration::from_millis(10);
    o.retry.max_delay = Duration::from_millis(20);
    o.retry.max_blocking = Duration::ZERO;
    o
}

async fn run(consumer: EventBusConsumer) -> openedx_events::bus::ConsumerStats {
    let token = CancellationToken::new();
    match tokio::time::timeout(Duration::from_secs(60), consumer.consume(token.clone())).await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => panic!("the consumer ended with an error: {e}"),
        Err(_) => {
            token.cancel();
            panic!("the consumer did not finish in time")
        }
    }
}

fn counting_registry() -> (Arc<Registry>, Arc<AtomicU32>) {
    let registry = Arc::new(Registry::with_catalog());
    let handled = Arc::new(AtomicU32::new(0));
    let h = handled.clone();
    registry.get(LOGIN).expect("login").connect("count", move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    (registry, handled)
}

#[tokio::test]
async fn a_backend_that_panics_while_receiving_does_not_end_the_consumer() {
    let (t, faults, _broker) = setup();
    publish(&t, "panics", 20).await;
    faults.receive_panics.store(2, Ordering::SeqCst);
    let (registry, handled) = counting_registry();
    let stats = run(EventBusConsumer::new(t, registry, options("panics", 20))).await;
    assert_eq!(stats.processed, 20, "{stats:?}");
    assert_eq!(handled.load(Ordering::SeqCst), 20, "every event handled once");
    assert_eq!(stats.poll_failures, 2, "each panic counted: {stats:?}");
    assert_eq!(
        faults.subscriptions.load(Ordering::SeqCst),
        3,
        "the group was joined again after each panic"
    );
}

#[tokio::test]
async fn a_backend_that_panics_while_acknowledging_does_not_lose_the_message() {
    let (t, faults, _broker) = setup();
    publish(&t, "ack-panics", 5).await;
    faults.ack_panics.store(1, Ordering::SeqCst);
    let (registry, handled) = counting_registry();
    let mut o = options("ack-panics", 5);
    o.deduplication_window = 100;
    let stats = run(EventBusConsumer::new(t, registry, o)).await;
    assert_eq!(stats.processed, 5, "{stats:?}");
    // The message whose ack panicked was handled, then delivered again and
    // skipped as a duplicate: nothing lost, the extra delivery counted.
    assert_eq!(handled.load(Ordering::SeqCst), 5);
    assert_eq!(stats.poll_failures, 1, "{stats:?}");
    assert_eq!(faults.subscriptions.load(Ordering::SeqCst), 2);
}

fn failing_registry(error_len: usize) -> Arc<Registry> {
    let registry = Arc::new(Registry::with_catalog());
    registry.get(LOGIN).expect("login").connect("fails", move |_| {
        Err(Box::<dyn std::error::Error + Send + Sync>::from("x".repeat(error_len)))
    });
    registry
}

#[tokio::test]
async fn a_dead_letter_refused_for_good_is_logged_and_the_stream_goes_on() {
    let (t, faults, _broker) = setup();
    publish(&t, "refused", 3).await;
    faults.reject_dead_letters.store(true, Ordering::SeqCst);
    let mut o = options("refused", 3);
    o.retry.max_attempts = 1;
    let stats = run(EventBusConsumer::new(t.clone(), failing_registry(10), o)).await;
    assert_eq!(stats.dead_lettered, 3, "each message got its fate: {stats:?}");
    assert_eq!(faults.dead_letters_published.load(Ordering::SeqCst), 0);
    // The group moved on: a new member has nothing left to read.
    let mut sub = t
        .subscribe(&SubscribeRequest {
            topic: "refused".into(),
            group: "g".into(),
            consumer_name: "check".into(),
            start: Default::default(),
            extras: Default::default(),
        })
        .await
        .expect("subscribe");
    assert!(sub
        .receive(10, Duration::from_millis(100))
        .await
        .expect("receive")
        .is_empty());
}

#[tokio::test]
async fn a_dead_letter_with_a_huge_error_is_published_with_the_error_cut() {
    let (t, faults, _broker) = setup();
    publish(&t, "huge-error", 1).await;
    // Refuse what the full error (1 MB) would make, accept a bounded one.
    faults
        .max_header_bytes
        .store(2 * MAX_ERROR_BYTES as u32, Ordering::SeqCst);
    let mut o = options("huge-error", 1);
    o.retry.max_attempts = 1;
    let stats = run(EventBusConsumer::new(t.clone(), failing_registry(1 << 20), o)).await;
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    assert_eq!(faults.dead_letters_published.load(Ordering::SeqCst), 1);
    let letters = t.browse("huge-error-dlq", None, 10).await.expect("browse");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].raw.header_str(DLQ_REASON), Some("receiver_failed"));
}

#[tokio::test]
async fn a_dead_letter_the_broker_cannot_take_now_is_retried_until_it_can() {
    let (t, faults, _broker) = setup();
    publish(&t, "dlq-down", 2).await;
    faults.dead_letters_down.store(3, Ordering::SeqCst);
    let mut o = options("dlq-down", 2);
    o.retry.max_attempts = 1;
    let stats = run(EventBusConsumer::new(t.clone(), failing_registry(10), o)).await;
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert_eq!(
        faults.dead_letters_published.load(Ordering::SeqCst),
        2,
        "both letters published in the end"
    );
    assert_eq!(t.browse("dlq-down-dlq", None, 10).await.expect("browse").len(), 2);
}

struct PanicsOnce(AtomicBool);

#[async_trait]
impl WorkCycleHook for PanicsOnce {
    fn name(&self) -> &str {
        "panics once"
    }
    async fn prepare(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.0.swap(true, Ordering::SeqCst) {
            panic!("injected hook panic");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_hook_that_panics_hands_the_message_back() {
    let (t, _faults, _broker) = setup();
    publish(&t, "hook", 3).await;
    let (registry, handled) = counting_registry();
    let consumer = EventBusConsumer::new(t, registry, options("hook", 3))
        .with_hooks(vec![Arc::new(PanicsOnce(AtomicBool::new(false)))]);
    let stats = run(consumer).await;
    assert_eq!((stats.processed, stats.hook_failures), (3, 1), "{stats:?}");
    assert_eq!(handled.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_kept_while_an_in_place_retry_waits() {
    let (t, faults, _broker) = setup();
    publish(&t, "slow-retry", 1).await;
    let registry = Arc::new(Registry::with_catalog());
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    registry.get(LOGIN).expect("login").connect("fails once", move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Err("first attempt fails".into())
        } else {
            Ok(())
        }
    });
    let mut o = options("slow-retry", 1);
    o.retry.initial_delay = Duration::from_secs(12);
    o.retry.max_delay = Duration::from_secs(12);
    o.retry.max_blocking = Duration::from_secs(30);
    let stats = run(EventBusConsumer::new(t, registry, o)).await;
    assert_eq!((stats.processed, stats.retried), (1, 1), "{stats:?}");
    assert!(
        faults.keep_alives.load(Ordering::SeqCst) >= 2,
        "keep_alive called during the 12 s wait: {}",
        faults.keep_alives.load(Ordering::SeqCst)
    );
}
