//! Liveness: a receiver that wedges makes `/health/live` unhealthy, and it
//! recovers once the receiver returns (SQLite backend).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use event_bus_sqlite::{SqliteOptions, SqliteTransport};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use openedx_events::{catalog, sample};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_receiver_makes_the_loop_unhealthy_until_it_returns() {
    let server = server(Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let options = SqliteOptions {
        poll_interval: Duration::from_millis(5),
        ..SqliteOptions::default()
    };
    let transport: Arc<dyn Transport> =
        Arc::new(SqliteTransport::open(dir.path().join("bus.db"), options).unwrap_or_else(|e| panic!("open: {e}")));
    let topic = unique("live");
    let t = catalog::get(LOGIN).unwrap_or_else(|| panic!("login"));
    let producer = EventBusProducer::new(transport.clone(), None);
    let data = sample::event_data(t, &mut sample::rng(3));
    producer
        .send(t, &topic, None, &data, &EventsMetadata::new(t.name(), 0))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));

    let release = Arc::new(tokio::sync::Notify::new());
    let registry = Arc::new(Registry::with_catalog());
    let wait = release.clone();
    registry
        .get(LOGIN)
        .unwrap_or_else(|| panic!("login"))
        .connect_async("telemetry.wedged", move |_event| {
            let wait = wait.clone();
            async move {
                wait.notified().await;
                Ok(())
            }
        });
    let mut o = ConsumerOptions::new(&topic, "g");
    o.poll_timeout = Duration::from_millis(100);
    o.limit = Some(1);
    let consumer = EventBusConsumer::new(transport, registry, o);
    let run = tokio::spawn(async move { consumer.consume(CancellationToken::new()).await });

    let body = wait_for_status(&server, "/health/live", 503, Duration::from_secs(20)).await;
    assert!(body.contains("\"in_flight\":1"), "{body}");
    release.notify_one();
    // The limit (one event) ends the loop once the receiver returned.
    let stats = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("the consumer did not finish"))
        .unwrap_or_else(|e| panic!("the consumer task: {e}"))
        .unwrap_or_else(|e| panic!("the consumer: {e}"));
    assert_eq!(stats.processed, 1);
    wait_for_status(&server, "/health/live", 200, Duration::from_secs(5)).await;
}
