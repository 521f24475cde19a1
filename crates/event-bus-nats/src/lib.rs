//! # event-bus-nats
//!
//! The [NATS JetStream](https://docs.nats.io/nats-concepts/jetstream)
//! backend of the Open edX event bus (`EVENT_BUS_BACKEND = "nats"`), on
//! [`async_nats`] 0.52 (servers 2.9 and later). A thin transport: the core's
//! consume loop does retries, dead letters, error budget and audit; this
//! crate maps events to JetStream messages, groups to durable pull
//! consumers, and ack/nack/keep-alive/seek to JetStream acks and consumers.
//!
//! ```no_run
//! # async fn run() -> Result<(), openedx_events::bus::BusError> {
//! use std::sync::Arc;
//! use event_bus_nats::NatsBackend;
//! use openedx_events::bus::{Backends, EventBus};
//! use openedx_events::config::Settings;
//! let mut settings = Settings::new();
//! settings.set("EVENT_BUS_BACKEND", "nats");
//! settings.set("EVENT_BUS_NATS_URL", "nats://127.0.0.1:4222");
//! settings.set("EVENT_BUS_TOPIC_PREFIX", "dev");
//! let bus = EventBus::from_settings(settings, &Backends::new().with(Arc::new(NatsBackend))).await?;
//! bus.consumer("user-login", "my-service")?.consume_indefinitely().await.ok();
//! # Ok(()) }
//! ```
//!
//! ## Wire mapping (the reference for other languages)
//!
//! | event bus | NATS JetStream |
//! |---|---|
//! | full topic `<prefix>-<topic>` | one stream per topic, named after the full topic; subject `<EVENT_BUS_NATS_SUBJECT_PREFIX>.<full topic>` (one token). Characters NATS forbids in names (`.`, `*`, `>`, whitespace, `/`, `\`, anything but ASCII letters, digits, `-`, `_`) become `_`, and then `-<FNV-1a 32-bit hash of the original, 8 hex digits>` is appended, so `a.b` and `a_b` never share a stream ([`names`]). |
//! | metadata | headers: the ten CloudEvents headers of the Kafka backend, same names and text values: `ce_specversion` (`1.0`), `content-type` and `ce_datacontenttype` (`application/avro`), `ce_type`, `ce_id` (hyphenated UUID), `ce_source`, `ce_time` (ISO 8601, `+00:00`), `ce_minorversion`, `sourcehost`, `sourcelib`. A consumer needs `ce_type` and `ce_id`. |
//! | data | payload: the schemaless Avro body. |
//! | `event_key_field` value | header `ce_partitionkey` (the CloudEvents partitioning extension, Kafka-binding name): [`EventKey::as_text`](openedx_events::config::EventKey::as_text). |
//! | event id | header `Nats-Msg-Id` (server deduplication inside the stream's duplicate window; a duplicate PubAck is a success). Off with `EVENT_BUS_NATS_PUBLISH_DEDUPLICATION=false`. |
//! | broker timestamp, `seek` by time | the time the server stored the message. |
//! | position (logs, `browse`, `SeekTarget::After`) | the stream sequence, e.g. `17`. |
//! | consumer group | durable pull consumer named after the group (same mapping), explicit acks. |
//!
//! Raw messages (`publish_raw`: dead letters, requeues) keep their bytes:
//! NATS header values are text without CR/LF and are trimmed by readers, so
//! a value that would not come back exactly (not UTF-8, control characters
//! such as the newlines of an error text, spaces at either end) travels
//! Base64 under `base64-<name>` and is decoded on receipt; a raw message's
//! own `Nats-*` headers travel the same way so the server never acts on
//! them (a requeued message is not dropped as a duplicate), and the
//! server's `Nats-*` headers are not part of a received message. A header
//! name NATS cannot carry (not printable ASCII, or with `:`) is refused
//! with a `Rejected` error. Headers are a map on the wire: received headers
//! come in one fixed order (the ten CloudEvents headers, then by name).
//!
//! ## Why one stream per topic
//!
//! Retention, limits, replay and seek are per topic; a consumer group is a
//! durable consumer on one stream; purging or deleting one topic touches no
//! other. A missing stream is created on first publish or subscribe with
//! the `EVENT_BUS_NATS_STREAM_*` limits; an existing one is used as is.
//!
//! ## Consumer semantics
//!
//! - A group is a durable pull consumer: `AckPolicy::Explicit`, `ack_wait`
//!   from `EVENT_BUS_NATS_ACK_WAIT_SECONDS` (or the extra
//!   `ack_wait_seconds`), `max_deliver` unlimited (the core decides dead
//!   letters), `max_ack_pending` bounded. Members pull from the same
//!   consumer (work sharing). A new group starts at the first message
//!   (`DeliverPolicy::All`) or, with `StartPosition::Latest`, at the end
//!   (`New`). Options given when the consumer already exists are ignored.
//! - `receive` is one pull (up to `max`, or the extra `batch`, returning as
//!   soon as messages are there): nothing waits in a local buffer, so with
//!   one member messages arrive in stream order and a nacked message comes
//!   back before the next (`ordered_per_key`).
//! - `ack` sends `+ACK`; `flush_acks` waits for a round trip on the
//!   connection. `nack(delay)` sends `-NAK` with the delay (the server
//!   schedules the redelivery). `keep_alive` and the lease keeper send
//!   `+WPI` for the messages in hand (every fifth of the ack wait).
//!   `close` naks what is in hand so the group gets it at once.
//! - `attempt` is the server's delivery count.
//! - `seek` deletes and recreates the group's consumer (JetStream 2.9 has no
//!   reset): `Time` → `ByStartTime`, `Earliest` → `All`, `Latest` → `New`,
//!   `After(seq)` → `ByStartSequence(seq + 1)`.
//! - `browse` reads with a temporary consumer without acks.
//! - Reconnection is async-nats's (for ever, backoff up to 2 s); a pull
//!   lost with a connection ends by its own timer, unacknowledged messages
//!   come back after the ack wait, and a consumer found gone is looked up
//!   (or created) again on the next `receive`.
//!
//! ## Producer
//!
//! `publish` awaits the PubAck (the confirm); concurrent publishes share
//! the connection and are not serialised. `max_message_bytes` is the
//! server's `max_payload` minus 8 KiB for dead-letter headers; a larger
//! message is `Rejected` before it is sent.
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `EVENT_BUS_NATS_URL` | `nats://127.0.0.1:4222` | server URL(s), comma-separated; credentials in a URL are redacted in logs |
//! | `EVENT_BUS_NATS_USER` / `EVENT_BUS_NATS_PASSWORD` | none | user/password authentication |
//! | `EVENT_BUS_NATS_TOKEN` | none | token authentication |
//! | `EVENT_BUS_NATS_CREDS_FILE` | none | `.creds` file (JWT + NKey) |
//! | `EVENT_BUS_NATS_NKEY_SEED` | none | NKey user seed (`SU…`) |
//! | `EVENT_BUS_NATS_TLS_CA_FILE` | none | PEM CA certificates |
//! | `EVENT_BUS_NATS_TLS_CERT_FILE` / `EVENT_BUS_NATS_TLS_KEY_FILE` | none | client certificate and key |
//! | `EVENT_BUS_NATS_TLS_REQUIRED` | `false` | refuse plain connections |
//! | `EVENT_BUS_NATS_SUBJECT_PREFIX` | `openedx` | first subject token(s) |
//! | `EVENT_BUS_NATS_STREAM_MAX_AGE` | `0` (none) | seconds a new stream keeps messages |
//! | `EVENT_BUS_NATS_STREAM_MAX_BYTES` | `0` (none) | bytes a new stream keeps |
//! | `EVENT_BUS_NATS_STREAM_REPLICAS` | `1` | replicas of a new stream (1 to 5) |
//! | `EVENT_BUS_NATS_STREAM_STORAGE` | `file` | `file` or `memory` (memory: `persistent` is false) |
//! | `EVENT_BUS_NATS_DUPLICATE_WINDOW` | `120` | seconds a new stream remembers `Nats-Msg-Id`s |
//! | `EVENT_BUS_NATS_PUBLISH_DEDUPLICATION` | `true` | send `Nats-Msg-Id` = event id |
//! | `EVENT_BUS_NATS_ACK_WAIT_SECONDS` | `30` | a new group's ack wait |
//! | `EVENT_BUS_NATS_MAX_ACK_PENDING` | `1000` | a new group's bound on unacknowledged messages |
//! | `EVENT_BUS_NATS_OPERATION_TIMEOUT` | `10` | seconds any server call may take |
//!
//! Two ways to authenticate at once (token and user/password, …) is a
//! start-up error naming both keys; every invalid setting is a
//! [`ConfigError`](openedx_events::config::ConfigError) naming it.
//!
//! Subscription `--extra` options: `ack_wait_seconds`, `max_ack_pending`
//! (for a new group), `batch` (most messages per pull).

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod extras;
pub mod names;
pub mod settings;
mod streams;
mod subscription;
mod transport;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

pub use settings::{Auth, NatsSettings, Storage};
pub use subscription::NatsSubscription;
pub use transport::NatsTransport;

/// `EVENT_BUS_BACKEND = "nats"`: builds a [`NatsTransport`] from the
/// `EVENT_BUS_NATS_*` settings.
///
/// ```
/// use event_bus_nats::NatsBackend;
/// use openedx_events::bus::BackendFactory;
/// assert_eq!(NatsBackend.name(), "nats");
/// assert!(NatsBackend.settings().contains(&"EVENT_BUS_NATS_URL"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsBackend;

#[async_trait]
impl BackendFactory for NatsBackend {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn settings(&self) -> &'static [&'static str] {
        settings::ALL
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let parsed = NatsSettings::from_settings(settings)?;
        Ok(Arc::new(NatsTransport::connect(parsed).await?))
    }
}
