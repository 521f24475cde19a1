//! Metrics of a real consume on Redis (the machine's, 127.0.0.1:6379), and
//! readiness following a Redis of the test's own as it is stopped and
//! started again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use event_bus_redis::{RedisConfig, RedisTransport};
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, Transport};
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

async fn connect(url: &str) -> Arc<dyn Transport> {
    let config = RedisConfig::new(url).unwrap_or_else(|e| panic!("bad URL: {e}"));
    Arc::new(RedisTransport::connect(config).await.unwrap_or_else(|e| {
        panic!("this test needs a Redis server at {url} (the machine runs one on 127.0.0.1:6379): {e}")
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_what_the_consumer_did_and_promtool_accepts_them() {
    let server = server(Duration::from_secs(60)).await;
    let scenario = run_scenario(connect("redis://127.0.0.1:6379/0").await, "redis").await;
    let (status, text) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    check_scenario(&text, &scenario);
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics refuses the output: {e}\n{text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_and_recovers() {
    let server = server(Duration::from_secs(60)).await;
    let mut redis = OwnRedis::start();
    let transport = connect(&redis.url()).await;
    let topic = unique("ready");
    let mut o = ConsumerOptions::new(&topic, "g");
    o.poll_timeout = Duration::from_millis(200);
    o.poll_failure_sleep = Duration::from_millis(100);
    let consumer = EventBusConsumer::new(transport, Arc::new(Registry::with_catalog()), o);
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.consume(stop).await }
    });
    wait_for_status(&server, "/health/ready", 200, Duration::from_secs(20)).await;
    redis.kill();
    let body = wait_for_status(&server, "/health/ready", 503, Duration::from_secs(30)).await;
    assert!(body.contains("\"broker_ok\":false"), "{body}");
    // Still live: the loop goes on trying, it is not wedged.
    let (live, _) = get(&server, "/health/live").await;
    assert_eq!(live, 200);
    redis.start_again();
    wait_for_status(&server, "/health/ready", 200, Duration::from_secs(60)).await;
    stop.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("the consumer did not stop"))
        .unwrap_or_else(|e| panic!("the consumer task: {e}"))
        .unwrap_or_else(|e| panic!("the consumer: {e}"));
    assert!(stats.poll_failures > 0, "the outage was seen: {stats:?}");
    // The loop that ended is no longer reported (the other test of this
    // file may have a loop of its own running).
    let (_, body) = get(&server, "/health/ready").await;
    assert!(!body.contains(&topic), "{body}");
}
