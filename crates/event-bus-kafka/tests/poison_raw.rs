//! Poison messages written with the broker's own client (rdkafka directly,
//! not this crate's producer), between good events, on tansu: each is
//! dead-lettered with its reason, every good event is handled, the consumer
//! goes on. Missing and malformed headers, an unknown event type, a value
//! without the Confluent framing, an unknown schema id, truncated and
//! oversized Avro, invalid UTF-8 and a hostile time header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_bus_kafka::framing::{frame, unframe};
use event_bus_kafka::testing::{create_topics, RegistryDouble, TansuBroker};
use event_bus_kafka::{KafkaSettings, KafkaTransport};
use openedx_events::bus::dead_letter::DLQ_REASON;
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

fn headers(pairs: &[(&str, &[u8])]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(*v),
        })
    })
}

/// Kafka headers, as name and bytes.
type Headers = Vec<(&'static str, Vec<u8>)>;

fn ce(event_type: &str, id: &[u8], time: &[u8]) -> Headers {
    vec![
        ("ce_type", event_type.as_bytes().to_vec()),
        ("ce_id", id.to_vec()),
        ("ce_source", b"openedx/test/web".to_vec()),
        ("ce_specversion", b"1.0".to_vec()),
        ("ce_time", time.to_vec()),
        ("content-type", b"application/avro".to_vec()),
        ("ce_minorversion", b"0".to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_from_the_raw_client_is_dead_lettered_and_the_stream_goes_on() {
    let broker = TansuBroker::start_for_tests().unwrap_or_else(|e| panic!("{e}"));
    let registry_double = RegistryDouble::start().expect("registry double");
    let topic = format!("poison-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let dlq = format!("{topic}-dlq");
    create_topics(&broker.bootstrap_servers(), &[&topic, &dlq], 1).unwrap_or_else(|e| panic!("{e}"));
    let mut settings = KafkaSettings::new(broker.bootstrap_servers(), registry_double.url());
    settings.session_timeout_ms = Some(6000);
    // An unknown schema id is dead-lettered at once (no replica to wait for).
    settings.schema_registry_unknown_id_grace = Duration::ZERO;
    let t: Arc<dyn Transport> = Arc::new(KafkaTransport::connect(settings).expect("transport"));

    // A good event first: it registers the schema, whose id the poison reuses.
    let et = catalog::get(LOGIN).expect("login");
    let producer = EventBusProducer::new(t.clone(), None);
    let data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(1));
    let mut good = Vec::new();
    let send_good = |good: &mut Vec<Uuid>| {
        let m = EventsMetadata::new(LOGIN, 0);
        good.push(m.id);
        let producer = producer.clone();
        let (data, topic) = (data.clone(), topic.clone());
        async move { producer.send(et, &topic, None, &data, &m).await.expect("a good event") }
    };
    send_good(&mut good).await;
    let first = t.browse(&topic, None, 1).await.expect("browse");
    let (schema_id, body) = unframe(&first[0].raw.value).expect("framed");
    let body = body.to_vec();

    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .expect("a raw producer");
    let id = Uuid::new_v4().to_string();
    let time = b"2024-05-06T00:00:00+00:00".to_vec();
    let mut truncated = frame(schema_id, &body);
    truncated.truncate(truncated.len() - 3);
    let mut oversized = frame(schema_id, &body);
    oversized.extend_from_slice(&[7u8; 64]);
    // (the dead-letter reason, the headers, the value)
    let cases: Vec<(&str, Headers, Vec<u8>)> = vec![
        ("unusable_message", vec![], b"no headers at all".to_vec()),
        (
            "unusable_message",
            ce(LOGIN, b"not-a-uuid", &time),
            frame(schema_id, &body),
        ),
        (
            "unusable_message",
            ce(LOGIN, &[0xff, 0xfe, 0x00], &time),
            frame(schema_id, &body),
        ),
        (
            "unusable_message",
            ce(LOGIN, id.as_bytes(), "2024-05-06T00:00:00+1é1".as_bytes()),
            frame(schema_id, &body),
        ),
        (
            "unknown_event_type",
            ce("org.example.nobody.v1", id.as_bytes(), &time),
            frame(schema_id, &body),
        ),
        ("unusable_message", ce(LOGIN, id.as_bytes(), &time), body.clone()),
        (
            "unusable_message",
            ce(LOGIN, id.as_bytes(), &time),
            frame(999_999, &body),
        ),
        ("undecodable", ce(LOGIN, id.as_bytes(), &time), truncated),
        ("undecodable", ce(LOGIN, id.as_bytes(), &time), oversized),
    ];
    let mut want: HashMap<&str, usize> = HashMap::new();
    for (reason, hs, value) in &cases {
        *want.entry(reason).or_default() += 1;
        let pairs: Vec<(&str, &[u8])> = hs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let record = FutureRecord::<(), [u8]>::to(&topic)
            .payload(value)
            .headers(headers(&pairs));
        raw.send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("raw send");
        send_good(&mut good).await;
    }

    let registry = Arc::new(Registry::with_catalog());
    let handled: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let h = handled.clone();
    registry.get(LOGIN).expect("login").connect("record", move |e| {
        h.lock().unwrap_or_else(|p| p.into_inner()).push(e.metadata.id);
        Ok(())
    });
    let mut o = ConsumerOptions::new(&topic, "poison");
    o.limit = Some((good.len() + cases.len()) as u64);
    o.poll_timeout = Duration::from_millis(200);
    let consumer = EventBusConsumer::new(t.clone(), registry, o);
    let stats = tokio::time::timeout(Duration::from_secs(120), consumer.consume(CancellationToken::new()))
        .await
        .expect("the consumer finishes")
        .expect("the consumer ends without an error");
    assert_eq!(
        *handled.lock().unwrap_or_else(|p| p.into_inner()),
        good,
        "every good event, in order"
    );
    assert_eq!(stats.dead_lettered as usize, cases.len(), "{stats:?}");
    let letters = t.browse(&dlq, None, 100).await.expect("browse the dead letters");
    let mut got: HashMap<&str, usize> = HashMap::new();
    for l in &letters {
        let reason = l.raw.header_str(DLQ_REASON).expect("a reason");
        let reason = want.keys().find(|r| **r == reason).copied().unwrap_or("unexpected");
        *got.entry(reason).or_default() += 1;
    }
    assert_eq!(got, want, "dead letters by reason");
}
