//! Faults survived, measured: the broker restarted under a running consumer
//! and under a producer, and the network black-holed or cut between the
//! client and the broker ([`FaultProxy`](crate::fault_proxy::FaultProxy)).
//!
//! Each case runs the core's consume loop (the code a service runs), counts
//! what was sent, handled, handled twice and lost (must be none), measures
//! the longest stall (the longest time, after the fault ended, during which
//! events were waiting and none was handled) and prints one line of figures
//! (`fault figures: ...`; run with `--nocapture` to see them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use openedx_events::bus::{ConsumerOptions, ConsumerStats, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fault_proxy::FaultProxy;
use crate::support::*;
use crate::BackendUnderTest;

/// When each event was handled (every time it was).
#[derive(Default)]
struct Handled {
    times: HashMap<Uuid, Vec<Instant>>,
    order: Vec<Instant>,
}

type Shared = Arc<Mutex<Handled>>;

fn lock(h: &Shared) -> std::sync::MutexGuard<'_, Handled> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// A registry whose login receiver records every handling and takes
/// `work` each time (so a fault lands mid-stream).
fn recording_registry(work: Duration) -> (Arc<Registry>, Shared) {
    let registry = Arc::new(Registry::with_catalog());
    let handled: Shared = Arc::default();
    let h = handled.clone();
    registry
        .get(LOGIN)
        .expect("the catalog has the login event")
        .connect_async("record", move |e| {
            let h = h.clone();
            async move {
                tokio::time::sleep(work).await;
                let now = Instant::now();
                let mut h = lock(&h);
                h.times.entry(e.metadata.id).or_default().push(now);
                h.order.push(now);
                Ok(())
            }
        });
    (registry, handled)
}

fn loop_options(b: &impl BackendUnderTest, topic: &str) -> ConsumerOptions {
    let mut o = ConsumerOptions::new(topic, "faults");
    o.consumer_name = format!("faults-{}", Uuid::new_v4().simple());
    o.extras = b.subscribe_extras();
    o.poll_timeout = Duration::from_millis(200);
    o.poll_failure_sleep = Duration::from_millis(100);
    o.consecutive_errors_limit = None;
    // Duplicates are counted by the receiver, not skipped.
    o.deduplication_window = 0;
    o
}

/// Publish `n` logins, 32 at a time, each retried until the broker takes it.
async fn publish_many(t: &Arc<dyn Transport>, topic: &str, n: usize) -> HashSet<Uuid> {
    let producer = EventBusProducer::new(t.clone(), None);
    let sent = futures::stream::iter(0..n)
        .map(|i| {
            let producer = producer.clone();
            async move {
                let key = format!("k{}", i % 16);
                let data = login_data(i as i64, &key);
                let metadata = EventsMetadata::new(LOGIN, 0);
                publish_with_retry(&producer, topic, &data, &metadata).await;
                metadata.id
            }
        })
        .buffer_unordered(32)
        .collect::<HashSet<_>>()
        .await;
    assert_eq!(sent.len(), n);
    sent
}

/// Wait until `want` events were handled at least once.
async fn wait_handled(h: &Shared, want: usize, patience: Duration, what: &str) {
    let deadline = Instant::now() + patience;
    loop {
        let n = lock(h).times.len();
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {n} of {want} events handled within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The longest time after `from` during which no event was handled while
/// some still waited (up to the last first handling).
fn longest_stall(h: &Handled, from: Instant, total: usize) -> Duration {
    let mut firsts: Vec<Instant> = h.times.values().filter_map(|t| t.first().copied()).collect();
    firsts.sort();
    let mut longest = Duration::ZERO;
    let mut previous = from;
    for (i, t) in firsts.iter().enumerate() {
        if *t < from {
            continue;
        }
        longest = longest.max(t.duration_since(previous));
        previous = *t;
        if i + 1 == total {
            break;
        }
    }
    longest
}

struct Figures<'a> {
    case: &'a str,
    sent: usize,
    handled: usize,
    duplicates: usize,
    lost: usize,
    stall: Duration,
    extra: String,
}

impl Figures<'_> {
    fn print(&self) {
        eprintln!(
            "fault figures: case={} sent={} handled={} duplicates={} lost={} longest_stall_ms={} {}",
            self.case,
            self.sent,
            self.handled,
            self.duplicates,
            self.lost,
            self.stall.as_millis(),
            self.extra
        );
    }
}

fn figures<'a>(case: &'a str, sent: &HashSet<Uuid>, h: &Handled, stall: Duration, extra: String) -> Figures<'a> {
    let handled = sent.iter().filter(|id| h.times.contains_key(id)).count();
    let duplicates = h.times.values().map(|t| t.len().saturating_sub(1)).sum();
    Figures {
        case,
        sent: sent.len(),
        handled,
        duplicates,
        lost: sent.len() - handled,
        stall,
        extra,
    }
}

/// Run a consumer in a task of its own; stop it with the token.
fn run_in_background(consumer: EventBusConsumer) -> (ConsumerTask, CancellationToken) {
    let token = CancellationToken::new();
    let t = token.clone();
    (tokio::spawn(async move { consumer.consume(t).await }), token)
}

type ConsumerTask = tokio::task::JoinHandle<Result<ConsumerStats, openedx_events::bus::ConsumerError>>;

/// Check the consumer still runs, then stop it cleanly.
async fn stop(consumer: ConsumerTask, token: CancellationToken) -> ConsumerStats {
    assert!(
        !consumer.is_finished(),
        "the consumer is still running after the faults"
    );
    token.cancel();
    finish(consumer).await
}

/// The counts of a consumer told to stop (it must stop within 30 s).
async fn finish(consumer: ConsumerTask) -> ConsumerStats {
    match tokio::time::timeout(Duration::from_secs(30), consumer).await {
        Ok(Ok(Ok(stats))) => stats,
        Ok(Ok(Err(e))) => panic!("the consumer ended with an error: {e}"),
        Ok(Err(e)) => panic!("the consumer task failed: {e}"),
        Err(_) => panic!("the consumer did not stop within 30 s of the shutdown"),
    }
}

/// The broker is restarted twice while a consumer works through
/// [`BackendUnderTest::fault_events`] events: every event is handled
/// (duplicates allowed, counted), the longest stall after each restart stays
/// under [`BackendUnderTest::stall_bound`], and the consumer runs on and
/// stops cleanly.
pub async fn consume_through_broker_restarts(b: &impl BackendUnderTest) {
    let n = b.fault_events();
    let t = b.transport().await;
    let topic = b.topic("faults_consume_restart");
    let sent = publish_many(&t, &topic, n).await;
    let (registry, handled) = recording_registry(Duration::from_millis(1));
    let consumer = EventBusConsumer::new(b.transport().await, registry, loop_options(b, &topic));
    let (task, token) = run_in_background(consumer);
    let mut stalls = Vec::new();
    for (k, at) in [(1, n / 3), (2, 2 * n / 3)] {
        wait_handled(&handled, at, b.patience() * 2, "before the restart").await;
        b.restart_broker()
            .await
            .unwrap_or_else(|e| panic!("restart {k} of the broker failed: {e}"));
        stalls.push(Instant::now());
    }
    wait_handled(&handled, n, b.patience() * 4, "after the restarts").await;
    let stats = stop(task, token).await;
    let h = lock(&handled);
    let stall = stalls
        .iter()
        .map(|from| longest_stall(&h, *from, n))
        .max()
        .unwrap_or_default();
    let f = figures(
        "broker restarted twice during consume",
        &sent,
        &h,
        stall,
        format!("stats={stats:?}"),
    );
    f.print();
    assert_eq!(f.lost, 0, "every event handled");
    assert!(
        stall <= b.stall_bound(),
        "longest stall {stall:?} over {:?}",
        b.stall_bound()
    );
}

/// The broker is restarted while events are being sent: every `send`
/// returns (confirmed or failed to its caller, none hangs), and every
/// confirmed event arrives.
pub async fn produce_through_broker_restart(b: &impl BackendUnderTest) {
    let n = b.fault_events().min(2000);
    let t = b.transport().await;
    let topic = b.topic("faults_produce_restart");
    let producer = EventBusProducer::new(t.clone(), None);
    let patience = b.patience();
    let sends = futures::stream::iter(0..n)
        .map(|i| {
            let producer = producer.clone();
            let topic = topic.clone();
            async move {
                let key = format!("k{}", i % 16);
                let data = login_data(i as i64, &key);
                let metadata = EventsMetadata::new(LOGIN, 0);
                let sent = tokio::time::timeout(
                    patience,
                    producer.send(login_type(), &topic, Some("user.pii.username"), &data, &metadata),
                )
                .await
                .unwrap_or_else(|_| panic!("a send did not return within {patience:?}"));
                (metadata.id, sent.is_ok())
            }
        })
        .buffer_unordered(8);
    tokio::pin!(sends);
    let mut confirmed = HashSet::new();
    let mut failed = 0usize;
    let mut restarted = false;
    while let Some((id, ok)) = sends.next().await {
        if ok {
            confirmed.insert(id);
        } else {
            failed += 1;
        }
        if !restarted && confirmed.len() + failed >= n / 3 {
            restarted = true;
            b.restart_broker()
                .await
                .unwrap_or_else(|e| panic!("the broker restart failed: {e}"));
        }
    }
    let (registry, handled) = recording_registry(Duration::ZERO);
    let mut o = loop_options(b, &topic);
    o.group = "faults-produce".into();
    let consumer = EventBusConsumer::new(b.transport().await, registry, o);
    let (task, token) = run_in_background(consumer);
    let deadline = Instant::now() + b.patience() * 2;
    while !confirmed.iter().all(|id| lock(&handled).times.contains_key(id)) {
        assert!(Instant::now() < deadline, "not every confirmed event arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(task, token).await;
    let h = lock(&handled);
    let f = figures(
        "broker restarted during produce",
        &confirmed,
        &h,
        Duration::ZERO,
        format!("sends={n} failed_to_caller={failed}"),
    );
    f.print();
    assert_eq!(f.lost, 0, "every confirmed event arrived");
    assert_eq!(confirmed.len() + failed, n, "every send returned");
}

async fn proxied(b: &impl BackendUnderTest) -> (FaultProxy, Arc<dyn Transport>) {
    let upstream = b
        .broker_addr()
        .expect("the network fault cases need BackendUnderTest::broker_addr");
    let proxy = FaultProxy::start(upstream)
        .await
        .unwrap_or_else(|e| panic!("the fault proxy could not start: {e}"));
    let t = b
        .transport_via(proxy.addr())
        .await
        .expect("the network fault cases need BackendUnderTest::transport_via");
    (proxy, t)
}

/// The network between the consumer (and a producer) and the broker drops
/// everything for [`BackendUnderTest::blackhole_time`], connections left
/// open, then heals: the producer's sends return (no call hangs for ever),
/// the consumer resumes by itself and nothing is lost.
pub async fn blackhole_then_heal(b: &impl BackendUnderTest) {
    // More than any client reads ahead (pulsar-rs: 1000), so the rest needs
    // the network.
    let n = 3000;
    let t = b.transport().await;
    let topic = b.topic("faults_blackhole");
    let (proxy, through) = proxied(b).await;
    let sent = publish_many(&t, &topic, n).await;
    let (registry, handled) = recording_registry(Duration::from_millis(2));
    let consumer = EventBusConsumer::new(through.clone(), registry, loop_options(b, &topic));
    let (task, token) = run_in_background(consumer);
    wait_handled(&handled, n / 6, b.patience(), "before the black-hole").await;
    proxy.blackhole();
    let cut = Instant::now();
    // A send through the black hole returns, one way or the other.
    let producer = EventBusProducer::new(through, None);
    let data = login_data(-1, "blackholed");
    let metadata = EventsMetadata::new(LOGIN, 0);
    let limit = b.blackhole_time() + b.patience();
    let send = tokio::time::timeout(
        limit,
        producer.send(login_type(), &topic, Some("user.pii.username"), &data, &metadata),
    )
    .await;
    let send_took = cut.elapsed();
    assert!(
        send.is_ok(),
        "a send through the black hole did not return within {limit:?}"
    );
    let remaining = b.blackhole_time().saturating_sub(cut.elapsed());
    tokio::time::sleep(remaining).await;
    // What the client had read ahead is handled meanwhile; the rest waits.
    let during = lock(&handled).times.len();
    assert!(
        during < n,
        "every event was handled through the black hole: the client does not go through the proxy"
    );
    proxy.heal();
    let healed = Instant::now();
    let mut want = sent.clone();
    if matches!(send, Ok(Ok(_))) {
        want.insert(metadata.id);
    }
    wait_handled(&handled, want.len(), b.patience() * 2, "after the network healed").await;
    let stats = stop(task, token).await;
    let h = lock(&handled);
    let f = figures(
        "network black-holed mid-stream, then healed",
        &want,
        &h,
        longest_stall(&h, healed, want.len()),
        format!(
            "blackhole_s={} handled_before_heal={during} send_returned_after_ms={} send_ok={} stats={stats:?}",
            b.blackhole_time().as_secs(),
            send_took.as_millis(),
            matches!(send, Ok(Ok(_)))
        ),
    );
    f.print();
    assert_eq!(f.lost, 0, "every event handled");
    assert!(
        f.stall <= b.stall_bound(),
        "longest stall {:?} over {:?}",
        f.stall,
        b.stall_bound()
    );
}

/// Every connection between the consumer and the broker is cut twice
/// mid-stream: the consumer reconnects by itself and nothing is lost.
pub async fn connection_reset_mid_stream(b: &impl BackendUnderTest) {
    let n = 1000;
    let t = b.transport().await;
    let topic = b.topic("faults_reset");
    let (proxy, through) = proxied(b).await;
    let sent = publish_many(&t, &topic, n).await;
    let (registry, handled) = recording_registry(Duration::from_millis(2));
    let consumer = EventBusConsumer::new(through, registry, loop_options(b, &topic));
    let (task, token) = run_in_background(consumer);
    let mut resets = Vec::new();
    for at in [n / 3, 2 * n / 3] {
        wait_handled(&handled, at, b.patience(), "before the reset").await;
        proxy.reset();
        resets.push(Instant::now());
    }
    wait_handled(&handled, n, b.patience() * 2, "after the resets").await;
    let stats = stop(task, token).await;
    let h = lock(&handled);
    let stall = resets
        .iter()
        .map(|from| longest_stall(&h, *from, n))
        .max()
        .unwrap_or_default();
    let f = figures(
        "connections reset twice mid-stream",
        &sent,
        &h,
        stall,
        format!("stats={stats:?}"),
    );
    f.print();
    assert_eq!(f.lost, 0, "every event handled");
    assert!(
        stall <= b.stall_bound(),
        "longest stall {stall:?} over {:?}",
        b.stall_bound()
    );
}

/// A receiver slower than the backend's lease (claim or session time) while
/// a second member of the group runs: the leases are kept while it works
/// (synchronous receivers included), so no event is handled twice.
pub async fn slow_receiver_keeps_its_lease(b: &impl BackendUnderTest) {
    let (extras, lease) = b
        .short_lease()
        .expect("the slow receiver case needs BackendUnderTest::short_lease");
    let n = 3;
    let t = b.transport().await;
    let topic = b.topic("faults_slow_receiver");
    let sent = publish_many(&t, &topic, n).await;
    let registry = Arc::new(Registry::with_catalog());
    let handled: Shared = Arc::default();
    let h = handled.clone();
    let work = lease * 3 / 2;
    registry.get(LOGIN).expect("login").connect("slow", move |e| {
        // Blocks the loop's task, as a synchronous receiver does.
        std::thread::sleep(work);
        let now = Instant::now();
        let mut h = lock(&h);
        h.times.entry(e.metadata.id).or_default().push(now);
        h.order.push(now);
        Ok(())
    });
    let token = CancellationToken::new();
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut o = loop_options(b, &topic);
        o.batch_size = 10;
        o.extras.extend(extras.clone());
        let consumer = EventBusConsumer::new(b.transport().await, registry.clone(), o);
        let token = token.clone();
        members.push(tokio::spawn(async move { consumer.consume(token).await }));
    }
    wait_handled(&handled, n, b.patience() * 2, "slow receivers").await;
    // Time for a member that took an expired message to handle it too.
    tokio::time::sleep(work + lease).await;
    assert!(members.iter().all(|m| !m.is_finished()), "both members still run");
    token.cancel();
    let mut stats = Vec::new();
    for m in members {
        stats.push(finish(m).await);
    }
    let h = lock(&handled);
    let f = figures(
        "receiver slower than the lease, two members",
        &sent,
        &h,
        Duration::ZERO,
        format!("lease_ms={} work_ms={}", lease.as_millis(), work.as_millis()),
    );
    f.print();
    assert_eq!(f.lost, 0);
    assert_eq!(
        f.duplicates, 0,
        "no event handled twice because a lease ran out: {stats:?}"
    );
}
