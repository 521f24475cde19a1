//! # event-bus-kafka
//!
//! The Kafka backend of the Open edX event bus (`EVENT_BUS_BACKEND =
//! "kafka"`), on librdkafka (the `rdkafka` crate), wire-compatible with the
//! Python `edx-event-bus-kafka` 6.x: a Python producer's events reach Rust
//! consumers and the other way round, through the same topics, subjects and
//! schema ids.
//!
//! ```no_run
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use event_bus_kafka::KafkaBackend;
//! use openedx_events::bus::{Backends, EventBus};
//! use openedx_events::config::Settings;
//! let mut settings = Settings::new();
//! settings.set("EVENT_BUS_BACKEND", "kafka");
//! settings.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092");
//! settings.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "http://schema-registry:8081");
//! settings.set("EVENT_BUS_TOPIC_PREFIX", "dev");
//! let bus = EventBus::from_settings(settings, &Backends::new().with(Arc::new(KafkaBackend))).await.unwrap();
//! let consumer = bus.consumer("user-login", "analytics").unwrap();
//! consumer.consume_indefinitely().await.unwrap();
//! # });
//! ```
//!
//! ## Wire format (as Python writes it)
//!
//! - topic `<EVENT_BUS_TOPIC_PREFIX>-<topic>`;
//! - headers, in order: `ce_specversion`, `content-type`, `ce_datacontenttype`,
//!   `ce_type`, `ce_id`, `ce_source`, `ce_time`, `ce_minorversion`,
//!   `sourcehost`, `sourcelib`;
//! - key: the `event_key_field` value in Confluent framing (`0x00`, schema id
//!   big-endian, Avro), its schema (the field definition, e.g.
//!   `{"name": "username", "type": "string"}`) registered under
//!   `<full topic>-<avro type>`;
//! - value: the Avro body in Confluent framing, the event type's schema
//!   registered under `<full topic>-<event type>.CloudEvent`;
//! - partition: librdkafka's default partitioner over the framed key bytes,
//!   the same as the Python producer, so per-key order holds across both.
//!
//! See [`wire`] and [`framing`].
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! | --- | --- | --- |
//! | `EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS` | required | comma-separated `host:port` list |
//! | `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL` | required | Confluent Schema Registry URL |
//! | `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY` / `_API_SECRET` | none | registry basic auth |
//! | `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT` | 10 | seconds per registry request |
//! | `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_UNKNOWN_ID_GRACE` | 300 | seconds a schema id the registry answers 404 for is looked up again (a replica catching up) before its messages are dead-lettered |
//! | `EVENT_BUS_KAFKA_API_KEY` / `_API_SECRET` | none | both set: `SASL_SSL` + `PLAIN` with them (as Python) |
//! | `EVENT_BUS_KAFKA_SECURITY_PROTOCOL` | librdkafka's | `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` |
//! | `EVENT_BUS_KAFKA_SASL_MECHANISM` | `PLAIN` with credentials | `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` |
//! | `EVENT_BUS_KAFKA_SASL_USERNAME` / `_PASSWORD` | none | SASL credentials (instead of the API key pair) |
//! | `EVENT_BUS_KAFKA_SSL_CA_LOCATION` | system | CA bundle file |
//! | `EVENT_BUS_KAFKA_SSL_CERTIFICATE_LOCATION` / `_KEY_LOCATION` | none | client certificate (mutual TLS) |
//! | `EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS` | librdkafka's (45000) | consumer session timeout |
//! | `EVENT_BUS_KAFKA_CLIENT_CONFIG` | none | table of extra librdkafka properties for both clients, e.g. `{"linger.ms": 20, "queue.buffering.max.messages": 10000}` |
//! | `EVENTS_SERVICE_NAME`, else `SERVICE_VARIANT` | none | `client.id` |
//!
//! The consumer settings of the core (`EVENT_BUS_KAFKA_CONSUMERS_ENABLED`,
//! `EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT`, poll timeout and
//! failure sleep...) keep their Python names. Secrets are masked in every
//! log line, config dump and error.
//!
//! ## Delivery guarantees and differences from Python
//!
//! - **Producer**: `enable.idempotence=true`, `acks=all`, and `publish`
//!   returns only after the broker confirmed the message; failures (the
//!   registry down, the broker unreachable past `message.timeout.ms`, a full
//!   local queue) are returned to the caller, never only logged.
//! - **Consumer**: a new group starts at the **earliest** offset by default
//!   (`EVENT_BUS_CONSUMER_START = "latest"` for the end). The Python consumer
//!   sets no `auto.offset.reset`, so a new Python group starts at the end and
//!   misses what was produced before it first joined.
//! - Offsets are committed only for acknowledged messages (see
//!   [`tracker`]); failed messages are retried and dead-lettered by the core
//!   instead of being committed and skipped.
//! - Replay: `--extra '{"offset_time": "2023-03-14T05:56:05+00:00"}'` moves
//!   the group's partitions to that time and **keeps consuming**; add
//!   `"offset_time_mode": "reset_only"` for the Python behaviour (reset,
//!   commit, then consume nothing until restarted).
//! - A writer schema that cannot be fetched now (registry down, slow, `401`,
//!   `403`, `408`, `429`, `5xx`, a body cut short, a `404` within the grace
//!   above) leaves its message in place to be tried again; see
//!   [`registry`]. Only a fetched schema that is unusable dead-letters it.
//! - **Dead-letter topic.** A subscription makes sure its dead-letter topic
//!   (`<full topic>-dlq`, or `EVENT_BUS_DEAD_LETTER_TOPIC` with the prefix;
//!   none with `EVENT_BUS_DEAD_LETTER_ENABLED = false`) exists, creating it
//!   with the topic's partition count and the broker's default replication:
//!   on a broker that does not create topics by itself no dead letter could
//!   be published otherwise, and the failed message would pin the
//!   committed offset for ever. If the broker refuses to create it, the
//!   subscription fails at start-up with a configuration error naming the
//!   topic and `EVENT_BUS_DEAD_LETTER_TOPIC`.
//! - **Browsing** (`event-bus dlq list|show|requeue`) reads a topic without
//!   joining a group (partitions assigned, nothing committed), partition by
//!   partition up to the high watermarks; positions are
//!   `partition P offset O`, as the consumer's.
//! - Delivery attempts are counted per member: a redelivery after a
//!   rebalance or restart starts again at attempt 1 (Kafka does not count).
//!
//! ## Modules
//!
//! - [`settings`]: the `EVENT_BUS_KAFKA_*` settings and the librdkafka
//!   configuration built from them;
//! - [`wire`] and [`framing`]: the core's messages as Kafka records;
//! - [`transport`]: the producer, browsing and dead-letter topics
//!   ([`KafkaTransport`]);
//! - [`subscription`]: a consumer group member ([`KafkaSubscription`]), with
//!   [`extras`] (its `--extra` options), [`positions`] (`partition P offset
//!   O`, `offset_time`) and [`tracker`] (what may be committed); its group
//!   state, rebalance callbacks, replay, polling and lease keeper are
//!   its private submodules (`subscription/`);
//! - [`registry`]: the Confluent Schema Registry client;
//! - `error`: librdkafka errors as transport errors.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
pub mod extras;
pub mod framing;
pub mod positions;
pub mod registry;
pub mod settings;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tracker;
pub mod transport;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

pub use extras::OffsetTimeMode;
pub use settings::{KafkaSettings, SETTINGS};
pub use subscription::KafkaSubscription;
pub use transport::KafkaTransport;

/// The factory that builds a [`KafkaTransport`] from settings; add it to the
/// application's [`Backends`](openedx_events::bus::Backends).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use event_bus_kafka::KafkaBackend;
/// use openedx_events::bus::{BackendFactory, Backends, EventBus};
/// use openedx_events::config::Settings;
/// let backends = Backends::new().with(Arc::new(KafkaBackend));
/// let mut settings = Settings::new();
/// settings.set("EVENT_BUS_BACKEND", "kafka");
/// settings.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081");
/// // The bootstrap servers are missing: a configuration error naming the key.
/// let e = EventBus::from_settings(settings.clone(), &backends).await.err().unwrap();
/// assert!(e.to_string().contains("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"));
///
/// settings.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
/// let bus = EventBus::from_settings(settings, &backends).await.unwrap(); // connects lazily
/// assert_eq!(bus.transport().unwrap().name(), "kafka");
/// assert!(KafkaBackend.settings().contains(&"EVENT_BUS_KAFKA_CLIENT_CONFIG"));
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaBackend;

#[async_trait]
impl BackendFactory for KafkaBackend {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn settings(&self) -> &'static [&'static str] {
        SETTINGS
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let kafka = KafkaSettings::from_settings(settings)?;
        Ok(Arc::new(KafkaTransport::connect(kafka)?))
    }
}
