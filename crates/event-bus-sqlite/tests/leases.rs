//! A receiver slower than the lease keeps its messages: the consume loop's
//! lease task renews them even while a synchronous receiver blocks the loop,
//! so a second member of the group never handles them too.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);
const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_synchronous_receiver_keeps_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let t: Arc<dyn Transport> = Arc::new(open(&dir.path().join("bus.db")));
    let login = openedx_events::catalog::get(LOGIN).unwrap();
    let producer = EventBusProducer::new(t.clone(), None);
    let mut rng = openedx_events::sample::rng(5);
    for _ in 0..3 {
        let data = openedx_events::sample::event_data(login, &mut rng);
        producer
            .send(login, "slow", None, &data, &EventsMetadata::new(LOGIN, 0))
            .await
            .unwrap();
    }
    let registry = Arc::new(Registry::with_catalog());
    let handled: Arc<Mutex<HashMap<uuid::Uuid, u32>>> = Arc::default();
    let h = handled.clone();
    registry.get(LOGIN).unwrap().connect("slow", move |e| {
        // Blocks the loop's task for 2.5 leases.
        std::thread::sleep(Duration::from_millis(2500));
        *h.lock().unwrap().entry(e.metadata.id).or_default() += 1;
        Ok(())
    });
    let token = CancellationToken::new();
    let mut members = Vec::new();
    for name in ["a", "b"] {
        let mut o = ConsumerOptions::new("slow", "g");
        o.consumer_name = name.into();
        o.batch_size = 10;
        o.poll_timeout = Duration::from_millis(100);
        o.extras.insert("lease_seconds".into(), serde_json::json!(1.0));
        let consumer = EventBusConsumer::new(t.clone(), registry.clone(), o);
        let token = token.clone();
        members.push(tokio::spawn(async move { consumer.consume(token).await }));
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    while handled.lock().unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every event was handled in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for a member that took an expired message to handle it too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    token.cancel();
    let mut received = 0;
    for m in members {
        received += m.await.unwrap().unwrap().received;
    }
    let handled = handled.lock().unwrap();
    assert!(
        handled.values().all(|&n| n == 1),
        "each event handled once: {handled:?}"
    );
    assert_eq!(received, 3, "no message was delivered twice");
}
