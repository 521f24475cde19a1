//! Dead-letter topics on the tansu broker: a subscription creates its
//! missing dead-letter topic (as many partitions as its topic), and
//! `browse` reads a topic without a consumer group, as the `event-bus dlq`
//! commands do.

mod common;

use std::sync::Arc;
use std::time::Duration;

use event_bus_kafka::testing::create_topics;
use event_bus_kafka::{KafkaSettings, KafkaTransport};
use openedx_events::bus::transport::{RawMessage, Transport};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use uuid::Uuid;

use common::{publish_ids, request, TansuEnv as Env};

impl Env {
    fn settings(&self) -> KafkaSettings {
        self.fast_settings()
    }

    fn transport(&self) -> KafkaTransport {
        KafkaTransport::connect(self.settings()).expect("transport")
    }

    fn topic(&self, partitions: i32) -> String {
        self.new_topic("dlq", partitions)
    }

    /// The partition count of a topic, `None` if the broker does not list it.
    fn partitions(&self, topic: &str) -> Option<usize> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .create()
            .expect("a client");
        let m = c.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
        m.topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_reads_a_topic_without_a_group_in_order_and_after_a_position() {
    let env = Env::start();
    let topic = env.topic(1);
    let t: Arc<dyn Transport> = Arc::new(env.transport());
    let sent = publish_ids(&t, &topic, 0, 3).await;
    let all = t.browse(&topic, None, 10).await.expect("browse");
    let ids: Vec<Uuid> = all
        .iter()
        .map(|d| d.event.as_ref().expect("event").metadata.id)
        .collect();
    assert_eq!(ids, sent, "all three, in order");
    let positions: Vec<&str> = all.iter().map(|d| d.position.as_str()).collect();
    assert_eq!(
        positions,
        vec!["partition 0 offset 0", "partition 0 offset 1", "partition 0 offset 2"]
    );
    let rest = t
        .browse(&topic, Some(&all[1].position), 10)
        .await
        .expect("browse after");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event.as_ref().expect("event").metadata.id, sent[2]);
    assert!(t.browse(&topic, Some(&all[2].position), 10).await.unwrap().is_empty());
    assert_eq!(t.browse(&topic, None, 2).await.unwrap().len(), 2, "the limit holds");
    assert!(t.browse(&topic, Some("somewhere"), 1).await.is_err());
    assert!(t.browse("no-such-topic-here", None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_pages_through_every_partition_once() {
    let env = Env::start();
    let topic = env.topic(3);
    let t: Arc<dyn Transport> = Arc::new(env.transport());
    let mut sent = publish_ids(&t, &topic, 0, 9).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = t.browse(&topic, after.as_deref(), 2).await.expect("browse");
        let Some(last) = page.last() else { break };
        after = Some(last.position.clone());
        seen.extend(page.iter().map(|d| d.event.as_ref().expect("event").metadata.id));
        assert!(seen.len() <= 9, "a message came twice: {seen:?}");
    }
    seen.sort();
    sent.sort();
    assert_eq!(seen, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_creates_the_missing_dead_letter_topic() {
    let env = Env::start();
    let topic = env.topic(3);
    let dlq = format!("{topic}-dlq");
    assert_eq!(env.partitions(&dlq), None, "no dead-letter topic yet");
    let t = env.transport();
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    assert_eq!(env.partitions(&dlq), Some(3), "as many partitions as its topic");
    // A dead letter can be published there now.
    let position = t
        .publish_raw(&RawMessage {
            topic: dlq.clone(),
            key: None,
            headers: vec![("x".into(), b"y".to_vec())],
            value: b"a dead letter".to_vec(),
            timestamp: None,
        })
        .await
        .expect("publish a dead letter");
    assert!(position.starts_with("partition "), "{position}");
    sub.close().await.unwrap();

    // A topic that does not exist yet: its dead-letter topic waits for a
    // subscription once it does (creating it meanwhile kept the waiting
    // member from ever being assigned its topic on tansu).
    let later = format!("later-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut sub = t.subscribe(&request(&later, "g")).await.expect("subscribe");
    assert_eq!(env.partitions(&format!("{later}-dlq")), None);
    sub.close().await.unwrap();
    create_topics(&env.broker.bootstrap_servers(), &[&later], 2).unwrap();
    let mut sub = t.subscribe(&request(&later, "g")).await.expect("subscribe");
    assert_eq!(env.partitions(&format!("{later}-dlq")), Some(2));
    sub.close().await.unwrap();

    // Dead letters off: nothing is created.
    let mut settings = env.settings();
    settings.dead_letters.enabled = false;
    let off = KafkaTransport::connect(settings).unwrap();
    let other = env.topic(1);
    let mut sub = off.subscribe(&request(&other, "g")).await.expect("subscribe");
    assert_eq!(env.partitions(&format!("{other}-dlq")), None);
    sub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_dead_letter_topic_is_created_with_the_prefix() {
    let env = Env::start();
    let topic = env.topic(2);
    let mut settings = env.settings();
    let name = format!("failed-{}", &Uuid::new_v4().simple().to_string()[..8]);
    settings.dead_letters.topic = Some(name.clone());
    settings.dead_letters.prefix = Some("stage".into());
    let t = KafkaTransport::connect(settings).unwrap();
    let mut sub = t.subscribe(&request(&topic, "g")).await.expect("subscribe");
    assert_eq!(env.partitions(&format!("stage-{name}")), Some(2));
    sub.close().await.unwrap();
}

// A broker refusing to create the topic (no permission, a policy) cannot be
// shown on tansu, which creates any topic asked for, nor on librdkafka's
// mock cluster, which has no CreateTopics: the refusal's error is tested in
// the crate (`transport::tests::a_refused_dead_letter_topic_names_itself_and_the_setting`).
