//! # event-bus-pulsar
//!
//! The [Apache Pulsar](https://pulsar.apache.org) backend of the Open edX
//! event bus (`EVENT_BUS_BACKEND = "pulsar"`), on the pure-Rust
//! [`pulsar`](https://docs.rs/pulsar) client (pulsar-rs 6.x). It is a thin
//! transport: the core's consume loop does the retries, dead letters, error
//! budget and audit log; this crate maps events to Pulsar messages, consumer
//! groups to subscriptions, and ack/nack/seek to the consumer API.
//!
//! ```no_run
//! # async fn run() -> Result<(), openedx_events::bus::BusError> {
//! use std::sync::Arc;
//! use event_bus_pulsar::PulsarBackend;
//! use openedx_events::bus::{Backends, EventBus};
//! use openedx_events::config::Settings;
//! let mut settings = Settings::new();
//! settings.set("EVENT_BUS_BACKEND", "pulsar");
//! settings.set("EVENT_BUS_PULSAR_URL", "pulsar://localhost:6650");
//! settings.set("EVENT_BUS_TOPIC_PREFIX", "dev");
//! let bus = EventBus::from_settings(settings, &Backends::new().with(Arc::new(PulsarBackend))).await?;
//! let consumer = bus.consumer("user-login", "my-service")?;
//! consumer.consume_indefinitely().await.ok();
//! # Ok(()) }
//! ```
//!
//! ## Wire mapping (the reference for other languages)
//!
//! | event bus | Pulsar |
//! |---|---|
//! | full topic `<prefix>-<topic>` | topic `persistent://<tenant>/<namespace>/<prefix>-<topic>`; tenant and namespace from `EVENT_BUS_PULSAR_TENANT` / `EVENT_BUS_PULSAR_NAMESPACE` (`public` / `default`). A topic already written `persistent://…` or `non-persistent://…` is used as is. Topics are not partitioned by this backend (partitioned topics created by an operator work). |
//! | metadata | message properties: the ten CloudEvents headers of the Kafka backend, same names and text values: `ce_specversion` (`1.0`), `content-type` and `ce_datacontenttype` (`application/avro`), `ce_type` (event type), `ce_id` (UUID, hyphenated), `ce_source`, `ce_time` (ISO 8601, `+00:00`), `ce_minorversion`, `sourcehost`, `sourcelib` (`11.2.0`). A consumer needs `ce_type` and `ce_id`; the others take their defaults when missing. |
//! | data | payload: the schemaless Avro body (no framing, no schema registry, no Pulsar schema). |
//! | `event_key_field` value | partition key: [`EventKey::as_text`](openedx_events::config::EventKey::as_text) (strings as is, numbers and booleans as JSON text: `42`, `true`). Key_Shared subscriptions route by it. |
//! | metadata `time` | event time, milliseconds since the epoch. |
//! | broker timestamp (`RawMessage::timestamp`, `seek` by time) | publish time, set by the broker. |
//! | position (logs, `browse`, `SeekTarget::After`) | message id as `ledger:entry:partition:batch_index` (-1 for none), e.g. `17:3:-1:-1`. |
//! | consumer group | subscription (durable), `Shared` by default, `Key_Shared` for per-key order. |
//!
//! Raw messages ([`Transport::publish_raw`]: dead
//! letters, requeues) keep their bytes: headers become properties of the same
//! name, the value is the payload, the key the partition key, the timestamp
//! the event time. Two conventions cover what Pulsar cannot carry directly:
//!
//! - a header value that is not UTF-8 travels Base64-encoded (standard
//!   alphabet, padded) under the property name `base64:<header name>`
//!   ([`wire::BASE64_PROPERTY_PREFIX`]) and is decoded back on receipt;
//!   the event bus itself only writes text headers. A received `base64:`
//!   property whose value is not Base64 is not ours: it is kept as a text
//!   header under its full name (`base64:x`), the message is handled as any
//!   other, and a header whose name starts with the prefix is always sent
//!   encoded (`base64:base64:x`), so its dead letter is publishable and
//!   reads back the same;
//! - a key that is not UTF-8 is Base64-encoded with Pulsar's own
//!   `partition_key_b64_encoded` flag.
//!
//! Two headers with the same name cannot be sent (Pulsar properties are a
//! map in pulsar-rs): `publish_raw` refuses such a message with a clear
//! `Rejected` error. Property order on the wire is not kept by pulsar-rs (it
//! sends a hash map), so received headers are presented in one fixed order:
//! the ten CloudEvents headers in the order above, then the others by name.
//!
//! ## Consumer semantics
//!
//! - A consumer group is a durable subscription; a new one starts at the
//!   earliest retained message (`InitialPosition::Earliest`), or at the end
//!   with [`StartPosition::Latest`](openedx_events::bus::transport::StartPosition).
//! - Subscription type: `Shared` (any member gets any message; capability
//!   `ordered_per_key` false) or `Key_Shared` (one member per key, in publish
//!   order; `ordered_per_key` true), from the setting
//!   `EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE` or, per consumer, the extra
//!   `{"subscription_type": "key_shared"}`. The capabilities follow the
//!   setting. Exclusive and Failover are not offered: they cannot share a
//!   group among members.
//! - A message is acknowledged after it is handled. Messages of a batch
//!   (Pulsar acknowledges whole entries) are acknowledged when the last of
//!   them is; a nack of one hands the whole batch back (its other messages
//!   are delivered again: at least once).
//! - pulsar-rs sends acknowledgements without waiting for an answer;
//!   `flush_acks` (called by the loop after each batch and before closing)
//!   waits for a request/response round trip on the same connection after
//!   them, so the broker has them when it returns.
//! - `nack(delay)`: pulsar-rs can only ask for an immediate redelivery, so a
//!   delayed nack waits in the subscription's local queue and is sent when
//!   due (the message stays with this member meanwhile). Closing the
//!   subscription hands everything unacknowledged back at once.
//! - With Key_Shared, the key of a nacked message is held locally until that
//!   message comes back, so later messages of the key wait behind it (ordered
//!   redelivery for one member). The hold ends after the delay plus the
//!   operation timeout if the message went to another member.
//! - `attempt` counts deliveries of a message to this member (1 for the
//!   first): pulsar-rs does not expose the broker's redelivery count. The
//!   core loop also counts its own retries.
//! - `seek(Time)` resets the subscription to the first message published at
//!   or after the time (Pulsar seek by publish time); `Earliest` is a seek to
//!   publish time 0; `Latest` and `After(position)` seek to a message id (the
//!   topic's last one for `Latest`) and skip (acknowledge) what is at or
//!   before it, whichever way the broker counts. pulsar-rs seeks by replacing
//!   the consumer with one that reuses its id, so the backend seeks with a
//!   short-lived member of the group and then joins again. A seek moves the
//!   whole group (Pulsar semantics).
//! - `browse` reads with a temporary non-durable subscription and
//!   acknowledges nothing.
//! - Reconnection is pulsar-rs's: producers resend their pending messages,
//!   consumers subscribe again. Acknowledgements lost with a connection mean
//!   the broker delivers the message again (at least once, never a double
//!   acknowledgement). If a consumer stops for good, the next `receive`
//!   subscribes again. Every broker call is bounded by
//!   `EVENT_BUS_PULSAR_OPERATION_TIMEOUT`.
//!
//! ## Producer
//!
//! One producer per topic, created on first use and cached. `publish`
//! returns once the broker's send receipt arrived. Batching
//! (`EVENT_BUS_PULSAR_BATCHING`) and compression
//! (`EVENT_BUS_PULSAR_COMPRESSION`) are configurable; since every publish
//! waits for its receipt, batching only groups concurrent publishes, and a
//! publish may wait up to `EVENT_BUS_PULSAR_BATCHING_MAX_PUBLISH_DELAY`.
//! `flush` sends the batches being filled.
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `EVENT_BUS_PULSAR_URL` | (required) | `pulsar://host:6650` or `pulsar+ssl://host:6651` |
//! | `EVENT_BUS_PULSAR_TOKEN` | none | JWT for token authentication; never logged |
//! | `EVENT_BUS_PULSAR_TENANT` | `public` | tenant of every topic |
//! | `EVENT_BUS_PULSAR_NAMESPACE` | `default` | namespace of every topic |
//! | `EVENT_BUS_PULSAR_OPERATION_TIMEOUT` | `10` | seconds any broker call may take |
//! | `EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE` | `shared` | `shared` or `key_shared` |
//! | `EVENT_BUS_PULSAR_RECEIVER_QUEUE_SIZE` | `1000` | messages a consumer asks the broker for at a time (its prefetch) |
//! | `EVENT_BUS_PULSAR_BATCHING` | `false` | batch published messages |
//! | `EVENT_BUS_PULSAR_BATCHING_MAX_MESSAGES` | `1000` | largest batch |
//! | `EVENT_BUS_PULSAR_BATCHING_MAX_PUBLISH_DELAY` | `0.01` | seconds a batch waits to fill |
//! | `EVENT_BUS_PULSAR_COMPRESSION` | `none` | `none`, `lz4`, `zlib`, `zstd`, `snappy` |
//! | `EVENT_BUS_PULSAR_MAX_MESSAGE_BYTES` | `5242880` | largest message accepted (the broker's `maxMessageSize`) |
//! | `EVENT_BUS_PULSAR_TLS_TRUST_CERTS_FILE` | none | PEM CA certificates for `pulsar+ssl://` |
//! | `EVENT_BUS_PULSAR_TLS_ALLOW_INSECURE_CONNECTION` | `false` | accept any server certificate |
//!
//! An invalid setting is a [`ConfigError`](openedx_events::config::ConfigError)
//! naming it.
//!
//! ## Testing
//!
//! No Apache Pulsar can be installed on the build machines, so the tests run
//! on pulsar-lite (a Pulsar-protocol broker from PyPI, in the project's
//! Python venv) through a test-only proxy that re-inserts the checksums
//! pulsar-lite leaves out of delivered messages (pulsar-rs rejects frames
//! without them) and points lookups at itself; both fixtures live in
//! `tests/support/`. With `PULSAR_URL=pulsar://…` the same tests run against
//! that broker directly (`PULSAR_TOKEN` for a token). pulsar-lite's Key_Shared
//! subscriptions deliver a message at most twice, so the Key_Shared cases
//! needing a third delivery are `#[ignore]`d with that reason: run them on a
//! real Pulsar with `--include-ignored`.
//!
//! ## Building
//!
//! pulsar-rs compiles the Pulsar protobuf definitions: `protoc` must be
//! installed (Debian: `apt-get install protobuf-compiler`). The default
//! `compression` feature builds lz4, zlib, zstd and snappy.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod extras;
pub mod settings;
mod subscription;
mod transport;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

pub use settings::{CompressionKind, PulsarSettings, SubscriptionKind};
pub use subscription::PulsarSubscription;
pub use transport::{Client, PulsarTransport};
/// The wire mapping, also reachable under this name: the same module as
/// [`wire`].
pub use wire as mapping;

/// `EVENT_BUS_BACKEND = "pulsar"`: builds a [`PulsarTransport`] from the
/// `EVENT_BUS_PULSAR_*` settings.
///
/// ```
/// use event_bus_pulsar::PulsarBackend;
/// use openedx_events::bus::BackendFactory;
/// assert_eq!(PulsarBackend.name(), "pulsar");
/// assert!(PulsarBackend.settings().contains(&"EVENT_BUS_PULSAR_URL"));
/// ```
///
/// Connecting needs a broker:
///
/// ```no_run
/// # async fn run() -> Result<(), openedx_events::bus::BusError> {
/// use event_bus_pulsar::PulsarBackend;
/// use openedx_events::bus::BackendFactory;
/// use openedx_events::config::Settings;
/// let mut settings = Settings::new();
/// settings.set("EVENT_BUS_PULSAR_URL", "pulsar://localhost:6650");
/// let transport = PulsarBackend.create(&settings).await?;
/// assert_eq!(transport.name(), "pulsar");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PulsarBackend;

#[async_trait]
impl BackendFactory for PulsarBackend {
    fn name(&self) -> &'static str {
        "pulsar"
    }

    fn settings(&self) -> &'static [&'static str] {
        settings::ALL
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let parsed = PulsarSettings::from_settings(settings)?;
        Ok(Arc::new(PulsarTransport::connect(parsed).await?))
    }
}
