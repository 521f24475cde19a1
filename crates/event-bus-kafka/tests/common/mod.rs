//! Setup shared by the Kafka integration tests: test logging, fast client
//! settings, the login event and publishing it, subscribe requests, the
//! committed offsets of a group, and the tansu broker with the schema
//! registry double ([`TansuEnv`]; each test file adds the settings and
//! transport it needs in its own `impl TansuEnv` block).

// Each test file uses only part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use event_bus_kafka::testing::{create_topics, RegistryDouble, TansuBroker};
use event_bus_kafka::KafkaSettings;
use openedx_events::bus::transport::{StartPosition, SubscribeRequest, Transport};
use openedx_events::bus::EventBusProducer;
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use openedx_events::value::{Record, Value};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use uuid::Uuid;

/// The event type the tests publish.
pub const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

/// Log to the test output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Settings for fast tests: short sessions, small linger.
pub fn fast_settings(bootstrap: &str, registry: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(bootstrap, registry);
    s.session_timeout_ms = Some(6000);
    s.client_config.insert("linger.ms".into(), "1".into());
    s
}

/// The data of login event number `i` (user `user-{i}`).
pub fn login(i: i64) -> Record {
    let pii = Record::new()
        .with("username", Value::from(format!("user-{i}")))
        .with("email", Value::from(format!("u{i}@example.com")))
        .with("name", Value::from(format!("User {i}")));
    let user = Record::new()
        .with("id", Value::Long(i))
        .with("is_active", Value::Boolean(true))
        .with("pii", Value::Record(pii));
    Record::new().with("user", Value::Record(user))
}

/// Publish the logins `from..from + n` to `topic`, keyed by username; their
/// metadata, in order.
pub async fn publish_logins(t: &Arc<dyn Transport>, topic: &str, from: i64, n: i64) -> Vec<EventsMetadata> {
    let producer = EventBusProducer::new(t.clone(), None);
    let et = catalog::get(LOGIN).expect("login");
    let mut out = Vec::new();
    for i in from..from + n {
        let m = EventsMetadata::new(LOGIN, 0);
        producer
            .send(et, topic, Some("user.pii.username"), &login(i), &m)
            .await
            .expect("publish");
        out.push(m);
    }
    out
}

/// [`publish_logins`], returning the event ids.
pub async fn publish_ids(t: &Arc<dyn Transport>, topic: &str, from: i64, n: i64) -> Vec<Uuid> {
    publish_logins(t, topic, from, n)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect()
}

/// A subscription of `group` to `topic` from the earliest offset.
pub fn request(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer_name: "test".into(),
        start: StartPosition::Earliest,
        extras: Default::default(),
    }
}

/// The committed offset of `group` on each partition of `topic` (-1: none).
pub fn committed_offsets(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("a client");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// A tansu broker and a schema registry double, for one test.
pub struct TansuEnv {
    /// The broker (stopped when dropped).
    pub broker: TansuBroker,
    /// The schema registry.
    pub registry: RegistryDouble,
}

impl TansuEnv {
    /// Start both, with test logging.
    pub fn start() -> Self {
        init_tracing();
        TansuEnv {
            broker: TansuBroker::start_for_tests().unwrap_or_else(|e| panic!("{e}")),
            registry: RegistryDouble::start().expect("registry double"),
        }
    }

    /// [`fast_settings`] for this broker and registry.
    pub fn fast_settings(&self) -> KafkaSettings {
        fast_settings(&self.broker.bootstrap_servers(), &self.registry.url())
    }

    /// Create a topic named `<prefix>-<random>` with `partitions`.
    pub fn new_topic(&self, prefix: &str, partitions: i32) -> String {
        let t = format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        create_topics(&self.broker.bootstrap_servers(), &[&t], partitions).unwrap_or_else(|e| panic!("{e}"));
        t
    }

    /// The committed offset of `group` on each partition (-1: none).
    pub fn committed(&self, topic: &str, group: &str, partitions: i32) -> Vec<i64> {
        committed_offsets(&self.broker.bootstrap_servers(), topic, group, partitions)
    }
}
