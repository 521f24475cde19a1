//! Broker faults, measured: a redis-server of the test's own (append-only
//! file, `appendfsync always`) is SIGKILLed and restarted while the core
//! consume loop reads a 5000-event backlog. Every event must be handled
//! (duplicates are allowed and counted), the consumer must still run, and
//! the events left when the broker is back must not wait for the
//! `claim_msgs_older_than` of 5 minutes: an `XREADGROUP` (or the `XACK` +
//! read-ahead pipeline) whose reply was lost when the server died has put
//! its entries in this consumer's pending list, and only a re-read of that
//! list hands them out.
//!
//! A SIGKILL lands in that window (after the append-only file has the
//! delivery, before the reply is written) only now and then, so the test
//! makes it certain: the consumer talks to Redis through a small TCP proxy
//! of the test's, which drops the server's replies for the last 100 ms
//! before each kill (the commands sent then still run in Redis).
//!
//! Run with `cargo test -p event-bus-redis --test broker_faults -- --nocapture`
//! to see the figures.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connect, unique, Proxy, RedisServer};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";
const EVENTS: usize = 5000;
/// How long the broker stays down each time.
const DOWN: Duration = Duration::from_secs(1);
/// The bound on the time from the last restart until every event is
/// handled: far below the 5-minute claim, far above a normal catch-up.
const BOUND: Duration = Duration::from_secs(60);

/// Publish `n` login events with 50 concurrent senders; their ids.
async fn publish(t: &Arc<dyn Transport>, stream: &str, n: usize) -> Vec<Uuid> {
    let et = catalog::get(LOGIN).expect("login");
    let tasks: Vec<_> = (0..50)
        .map(|task| {
            let (t, stream, et) = (t.clone(), stream.to_string(), et.clone());
            tokio::spawn(async move {
                let producer = EventBusProducer::new(t, None);
                let mut ids = Vec::new();
                for i in (task..n).step_by(50) {
                    let data = openedx_events::sample::event_data(&et, &mut openedx_events::sample::rng(i as u64));
                    let m = EventsMetadata::new(LOGIN, 0);
                    producer.send(&et, &stream, None, &data, &m).await.expect("publish");
                    ids.push(m.id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for task in tasks {
        ids.extend(task.await.expect("publisher task"));
    }
    ids
}

/// What the receiver saw: handlings per event id, and when each event was
/// first handled.
#[derive(Default)]
struct Seen {
    count: HashMap<Uuid, u32>,
    first: Vec<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sigkilled_twice_during_a_5000_event_consume_loses_nothing_and_does_not_stall() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let url = proxy.url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let stream = unique("sigkill");
    let ids = publish(&t, &stream, EVENTS).await;
    assert_eq!(ids.len(), EVENTS);

    let registry = Arc::new(Registry::with_catalog());
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let distinct = Arc::new(AtomicUsize::new(0));
    let (s2, d2) = (seen.clone(), distinct.clone());
    registry.get(LOGIN).expect("login").connect("record", move |e| {
        let mut s = s2.lock().map_err(|_| "poisoned")?;
        let n = s.count.entry(e.metadata.id).or_insert(0);
        *n += 1;
        if *n == 1 {
            s.first.push(Instant::now());
            d2.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    });
    let mut options = ConsumerOptions::new(&stream, "g");
    options.consumer_name = "faults-1".into();
    options.batch_size = 16;
    options.poll_timeout = Duration::from_millis(200);
    options.poll_failure_sleep = Duration::from_millis(100);
    options.audit_log = false;
    // claim_msgs_older_than stays at its default (5 minutes).
    let consumer = EventBusConsumer::new(t.clone(), registry, options);
    let token = CancellationToken::new();
    let run = tokio::spawn({
        let token = token.clone();
        async move { consumer.consume(token).await }
    });

    // Kill the broker when 1000 and then 3000 events were handled.
    let mut kills = Vec::new();
    let mut restarts = Vec::new();
    for at in [1000, 3000] {
        let wait = Instant::now() + BOUND;
        while distinct.load(Ordering::SeqCst) < at {
            assert!(
                Instant::now() < wait,
                "only {} events handled, waiting for {at}",
                distinct.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let handled_at_kill = distinct.load(Ordering::SeqCst);
        // The replies of what the consumer sends now are lost with the server.
        proxy.swallow_replies(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.kill();
        kills.push((Instant::now(), handled_at_kill));
        tokio::time::sleep(DOWN).await;
        proxy.swallow_replies(false);
        server.start_again().expect("redis-server starts again");
        restarts.push(Instant::now());
    }

    // Every event, within BOUND of the last restart.
    let last_restart = *restarts.last().expect("restarted");
    let mut all_handled = None;
    while Instant::now() < last_restart + BOUND {
        if distinct.load(Ordering::SeqCst) >= EVENTS {
            all_handled = Some(Instant::now());
            break;
        }
        assert!(!run.is_finished(), "the consumer stopped: {:?}", run.await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let still_running = !run.is_finished();
    token.cancel();
    let stats = run.await.expect("join");

    let seen = seen.lock().expect("seen");
    let missing: Vec<&Uuid> = ids.iter().filter(|id| !seen.count.contains_key(id)).collect();
    let duplicates: u32 = seen.count.values().map(|n| n - 1).sum();
    // The longest wait with the broker up and events left: between two
    // first handlings, or from a restart to the next first handling.
    let mut marks: Vec<Instant> = seen.first.clone();
    marks.extend(restarts.iter().copied());
    marks.sort();
    let downtimes: Vec<(Instant, Instant)> = kills.iter().map(|k| k.0).zip(restarts.iter().copied()).collect();
    let longest_idle = marks
        .windows(2)
        .filter(|w| !downtimes.iter().any(|(k, r)| w[0] < *r && w[1] > *k && w[0] <= *k))
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let after_last = all_handled.map(|at| at - last_restart);
    println!(
        "broker SIGKILLed at {:?} events handled, down {DOWN:?} each time; \
         handled {} of {EVENTS} distinct, {duplicates} duplicates, {} missing; \
         all handled {after_last:?} after the last restart; longest idle while up {longest_idle:?}; \
         consumer {:?}",
        kills.iter().map(|k| k.1).collect::<Vec<_>>(),
        seen.count.len(),
        missing.len(),
        stats.as_ref().map(|s| (s.processed, s.poll_failures)),
    );
    assert!(still_running, "the consumer still runs after the restarts");
    assert!(stats.is_ok(), "the consumer stops cleanly: {stats:?}");
    assert!(
        missing.is_empty(),
        "{} events not handled within {BOUND:?} of the last restart (stuck in the pending list until \
         claim_msgs_older_than?), e.g. {:?}",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
    assert!(after_last.is_some_and(|d| d < BOUND));
}

/// After a connection trouble the subscription reads its pending list
/// again, which holds the entries it has in hand too: those are not handed
/// out a second time while the loop holds them (in hand, waiting for a
/// redelivery, or acknowledged and not sent yet), and a nacked one comes
/// back once, when due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_in_hand_are_not_handed_out_again_after_a_reconnect() {
    use openedx_events::bus::transport::{StartPosition, SubscribeRequest};
    let server = RedisServer::start();
    let t: Arc<dyn Transport> = Arc::new(connect(&server.url()).await);
    let stream = unique("in-hand");
    let ids = publish(&t, &stream, 50).await;
    let mut sub = t
        .subscribe(&SubscribeRequest {
            topic: stream.clone(),
            group: "g".into(),
            consumer_name: "c".into(),
            start: StartPosition::Earliest,
            extras: Default::default(),
        })
        .await
        .expect("subscribe");
    let mut first = Vec::new();
    while first.len() < 10 {
        first.extend(
            sub.receive(10 - first.len(), Duration::from_millis(200))
                .await
                .expect("receive"),
        );
    }
    // 0 waits for a redelivery, 1 is acknowledged (not sent yet), 2..10 are in hand.
    sub.nack(first[0].tag, Duration::from_secs(2)).await.expect("nack");
    sub.ack(first[1].tag).await.expect("ack");
    server.kill();
    server.start_again().expect("restart");
    let mut later = Vec::new();
    let wait = Instant::now() + Duration::from_secs(20);
    while later.len() < 41 && Instant::now() < wait {
        match sub.receive(16, Duration::from_millis(200)).await {
            Ok(v) => later.extend(v),
            Err(e) => assert!(!e.is_fatal(), "{e}"),
        }
    }
    let position = |d: &openedx_events::bus::transport::Delivery| d.position.clone();
    let again: Vec<String> = later.iter().map(position).collect();
    let in_hand: Vec<String> = first.iter().map(position).collect();
    assert_eq!(
        again.iter().filter(|p| **p == in_hand[0]).count(),
        1,
        "the nacked entry comes back once: {again:?}"
    );
    assert!(
        !again.iter().any(|p| in_hand[1..].contains(p)),
        "no entry in hand is handed out again: {again:?}"
    );
    let redelivered = later.iter().find(|d| d.position == in_hand[0]).expect("redelivered");
    assert_eq!(
        redelivered.attempt, 2,
        "a redelivery after a nack is the second attempt"
    );
    let handed: std::collections::HashSet<Uuid> = first
        .iter()
        .chain(later.iter())
        .map(|d| d.event.as_ref().expect("an event").metadata.id)
        .collect();
    assert_eq!(handed.len(), ids.len(), "every entry handed out");
    for d in first[2..].iter().chain(later.iter()) {
        sub.ack(d.tag).await.expect("ack");
    }
    sub.flush_acks().await.expect("flush");
    sub.close().await.expect("close");
    let pending: redis::Value = common::redis_cmd(&server.url(), redis::cmd("XPENDING").arg(&stream).arg("g"));
    assert!(
        matches!(&pending, redis::Value::Array(p) if p.first() == Some(&redis::Value::Int(0))),
        "{pending:?}"
    );
}
