//! # event-bus-rabbitmq
//!
//! The [RabbitMQ](https://www.rabbitmq.com) backend of the Open edX event bus
//! (`EVENT_BUS_BACKEND = "rabbitmq"`), on [lapin](https://docs.rs/lapin) 4
//! (AMQP 0-9-1), for RabbitMQ 3.10 or later (quorum queues with message TTL
//! and at-least-once dead lettering). It is a thin transport: the core's
//! consume loop does the retries, dead letters, error budget and audit log;
//! this crate maps topics to exchanges, consumer groups to quorum queues,
//! and ack/nack onto `basic.ack`, redelivery by the member and retry queues.
//!
//! ```no_run
//! # async fn run() -> Result<(), openedx_events::bus::BusError> {
//! use std::sync::Arc;
//! use event_bus_rabbitmq::RabbitMqBackend;
//! use openedx_events::bus::{Backends, EventBus};
//! use openedx_events::config::Settings;
//! let mut settings = Settings::new();
//! settings.set("EVENT_BUS_BACKEND", "rabbitmq");
//! settings.set("EVENT_BUS_RABBITMQ_URL", "amqp://app@rabbit.internal:5672/openedx");
//! settings.set("EVENT_BUS_RABBITMQ_PASSWORD", "from-a-secret-store");
//! settings.set("EVENT_BUS_TOPIC_PREFIX", "dev");
//! let bus = EventBus::from_settings(settings, &Backends::new().with(Arc::new(RabbitMqBackend))).await?;
//! let consumer = bus.consumer("user-login", "my-service")?;
//! consumer.consume_indefinitely().await.ok();
//! # Ok(()) }
//! ```
//!
//! ## Wire mapping (the reference for other languages)
//!
//! | event bus | RabbitMQ |
//! |---|---|
//! | full topic `<prefix>-<topic>` | a durable `topic` exchange of that name (1 to 200 bytes, not `amq.…`), declared by the first publish or subscribe. One exchange per topic: topics stay independent (declared, deleted and permitted one by one) and a group's queue binds to exactly one topic, with `#`. |
//! | consumer group | the durable quorum queue `<full topic>.<group>` (spaces and control characters in the group become `_`; names over 220 bytes end in `~` and a hash), bound with `#`; declared by subscribe. Members of a group are competing consumers of that queue. |
//! | metadata | AMQP headers (long strings): the ten CloudEvents headers of the Kafka backend, same names and text values: `ce_specversion` (`1.0`), `content-type` and `ce_datacontenttype` (`application/avro`), `ce_type`, `ce_id` (UUID, hyphenated), `ce_source`, `ce_time` (ISO 8601, `+00:00`), `ce_minorversion`, `sourcehost`, `sourcelib`. The headers are authoritative; AMQP properties are set too where natural: `message_id` (event id), `content_type` (`application/avro`), `timestamp` (event time, seconds), `type` (event type), `delivery_mode` 2 (persistent). |
//! | data | the body: the schemaless Avro bytes, no framing. |
//! | `event_key_field` value | the header `ce_partitionkey` ([`wire::KEY_HEADER`], the whole key, as [`EventKey::as_text`](openedx_events::config::EventKey::as_text)) and the routing key. AMQP routing keys hold 255 bytes: a longer key is cut to 238 bytes plus `~` and 16 hex digits of its FNV-1a hash ([`names::routing_key`]); it routes the same (every group binds `#`) and the header keeps it whole. No key: routing key `_` ([`names::NO_KEY`]). A received message without the header takes its routing key as key. |
//! | broker timestamp (`RawMessage::timestamp`) | the `timestamp` property (seconds): the event time for events, the publish time for raw messages. |
//! | position (logs, the loop's attempt count) | `<queue> message <message_id>` (else the `ce_id`, else a hash of the body): the same for every delivery of a message, retries included. Quorum queues have no offsets. |
//! | delivery `attempt` | 1 + the quorum queue's `x-delivery-count` + the header `x-event-bus-deliveries` (deliveries before a retry copy was made). |
//!
//! Raw messages ([`openedx_events::bus::Transport::publish_raw`]:
//! dead letters, requeues) keep their bytes: each header becomes a long
//! string of the same name (any bytes: AMQP long strings are byte strings),
//! the key the `ce_partitionkey` header and the routing key. Two headers of
//! one name, a name over 255 bytes, or a header this backend reserves
//! (`ce_partitionkey`, `x-event-bus-deliveries`, `x-delivery-count`,
//! `x-death…`) cannot be sent: `Rejected`. Received headers come in one fixed
//! order (AMQP headers are a table): the ten CloudEvents headers in the order
//! above, then the others by name. Headers of other AMQP types written by
//! other producers are taken as text (integers, booleans, floats,
//! timestamps) or as bytes (byte arrays); tables, arrays, decimals and void
//! are left out (logged at debug); a message the core cannot use is
//! dead-lettered by the core as any other.
//!
//! ## Consumer semantics
//!
//! - **Publishing**: one connection and one channel in confirm mode per
//!   transport; `publish` returns once the broker confirmed the message
//!   (`basic.ack`); a `basic.nack` is an error. After a lost connection the
//!   next publish reconnects (at once, then with a backoff from 100 ms to
//!   5 s while the broker stays away); a publish that finds its channel
//!   broken reconnects and sends once more. `flush` returns at once:
//!   nothing published is left unconfirmed.
//! - **Messages published while a topic has no group**: RabbitMQ drops
//!   what no queue is bound to, so each topic exchange has an alternate
//!   exchange `<topic>.unrouted` feeding the quorum queue `<topic>.unrouted`
//!   (the backlog, at most 100 000 messages, the oldest dropped). A group
//!   that does not exist yet gets a copy of the backlog when its first member
//!   subscribes (the backlog keeps it for the next new group). Once a group
//!   queue is bound, nothing more goes to the backlog: a group created later
//!   does not see what was published in between (capability
//!   `replay_from_start` false), and a seek is impossible (`seek_time`
//!   false; [`Subscription::seek`](openedx_events::bus::transport::Subscription::seek)
//!   returns `Unsupported`). Dead-letter topics benefit most: letters wait in
//!   the backlog until `event-bus dlq` reads them with a new group.
//!   Publishing never fails for want of a consumer (no `mandatory` flag).
//! - **Consuming**: each member has a connection of its own, `basic.qos`
//!   (prefetch, `EVENT_BUS_RABBITMQ_PREFETCH` or the extra
//!   `{"prefetch": n}`) and manual acknowledgements after handling.
//!   Closing the subscription closes its channel: what it held goes back to
//!   the queue at once.
//! - **Order**: a quorum queue is FIFO, so with one member and nothing
//!   nacked a group receives messages in publish order (`ordered_per_key`
//!   true). A `nack` without delay keeps the message with this member
//!   (still unacknowledged on the broker) and the next `receive` hands it
//!   out again before anything else, so it comes back before the messages
//!   after it (ordered redelivery). Not `basic.nack` with requeue: RabbitMQ
//!   3.10 puts a requeued message at the back of a quorum queue, behind
//!   everything waiting (measured). Closing the subscription releases it to
//!   the group at once.
//! - **Delayed retries without blocking the queue**: a `nack` with a delay
//!   rounds the delay up to a bucket (`EVENT_BUS_RABBITMQ_RETRY_DELAYS`; by
//!   default 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30 s, 1, 2, 5, 10, 20, 30 min,
//!   1, 2, 4, 12, 24 h and 7 days: at most 21 retry queues per group; longer
//!   delays are cut to the last bucket), publishes a copy (same body and
//!   headers, `x-event-bus-deliveries` set) to the retry queue
//!   `<queue>.retry.<ms>` and waits for its confirm, then acknowledges the
//!   original. The retry queue is a quorum queue with `x-message-ttl = ms`
//!   set on the queue, dead-lettering (at least once) to the default
//!   exchange with the group's queue as routing key, and `x-expires` (the
//!   delay plus 10 minutes; declared again every minute while used) so
//!   idle ones disappear. One TTL per queue, not per message: per-message
//!   TTLs expire only at the head of a queue, so a long delay would hold
//!   back a short one. If the copy cannot be made, the message is handed
//!   out again at once (sooner than asked, never lost).
//! - **No delivery limit** is set on the queues (`x-delivery-limit`): the
//!   core decides when a message is dead-lettered.
//! - **`keep_alive`** does nothing: RabbitMQ has no per-message
//!   acknowledgement deadline, only the channel-wide `consumer_timeout`
//!   (30 minutes on 3.10), far beyond any lease the loop keeps.
//! - **Connection loss**: lapin does not reconnect. `receive` notices a
//!   broken connection or a consumer cancelled by the broker, connects again,
//!   declares the queue and consumes again within the same call; if the
//!   broker cannot be reached it returns a `Connection` error, which the
//!   loop counts, sleeps on and retries. What was not acknowledged is
//!   delivered again (at least once; the loop's deduplication window skips
//!   events already handled). Acks and nacks of messages from a lost
//!   connection do nothing: the broker has already put them back.
//! - Every broker call is bounded by `EVENT_BUS_RABBITMQ_OPERATION_TIMEOUT`;
//!   the AMQP heartbeat (`EVENT_BUS_RABBITMQ_HEARTBEAT`) finds dead peers.
//! - `browse` (`event-bus dlq list/show`) reads the topic's backlog without
//!   consuming it (`basic.get`, then everything handed back), positions
//!   `<topic>.unrouted #<index>`: it shows what arrived while no group was
//!   bound, which for a dead-letter topic nobody consumes is every letter.
//!   Once a group reads the dead-letter topic (`dlq requeue`), later letters
//!   go to that group's queue, which `browse` cannot show.
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `EVENT_BUS_RABBITMQ_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | `amqp://[user[:password]@]host[:port][/vhost][?heartbeat=…]`, or `amqps://` for TLS; the password is masked in errors and logs |
//! | `EVENT_BUS_RABBITMQ_USER` | from the URL | the user, when the URL has no credentials (both set: a start-up error naming both keys) |
//! | `EVENT_BUS_RABBITMQ_PASSWORD` | from the URL | the password (a [`Secret`](openedx_events::config::Secret), never logged) |
//! | `EVENT_BUS_RABBITMQ_VHOST` | from the URL (`/`) | the virtual host, when the URL has no path |
//! | `EVENT_BUS_RABBITMQ_TLS_CA_FILE` | the system's roots | PEM CA certificates (`amqps://` only) |
//! | `EVENT_BUS_RABBITMQ_TLS_CERT_FILE`, `EVENT_BUS_RABBITMQ_TLS_KEY_FILE` | none | PEM client certificate and PKCS#8 key, together (`amqps://` only) |
//! | `EVENT_BUS_RABBITMQ_PREFETCH` | `100` | unacknowledged messages a member may hold |
//! | `EVENT_BUS_RABBITMQ_RETRY_DELAYS` | see above | retry-delay buckets, seconds, ascending, comma-separated (1 to 64) |
//! | `EVENT_BUS_RABBITMQ_OPERATION_TIMEOUT` | `10` | seconds any broker call may take (connecting included) |
//! | `EVENT_BUS_RABBITMQ_HEARTBEAT` | `20` | AMQP heartbeat, seconds (0: none), unless the URL sets one |
//! | `EVENT_BUS_RABBITMQ_MAX_MESSAGE_BYTES` | `16777216` | largest message (headers, key and body) accepted; RabbitMQ 3.10 accepts up to 128 MiB |
//!
//! An invalid setting is a [`ConfigError`](openedx_events::config::ConfigError)
//! naming it. A wrong password fails [`RabbitMqBackend`]'s `create` (the
//! publisher connects at start-up) with a `Rejected` error naming the user
//! and the settings to check.
//!
//! ## Not offered
//!
//! Stream queues (`x-queue-type: stream`, which could replay and seek) are
//! not implemented: every group is a quorum queue.
//!
//! ## Testing
//!
//! The tests need the machine's RabbitMQ on 127.0.0.1:5672 (guest/guest;
//! `EVENT_BUS_TEST_RABBITMQ_URL` for another) and fail saying so without
//! it. The restart and fault cases start RabbitMQ nodes of their own
//! (`rabbitmq-server` as root, on other ports, data in a temporary
//! directory; `tests/common`). Poison messages are written with lapin
//! itself (`tests/poison.rs`).

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod browse;
mod conn;
mod error;
mod extras;
pub mod names;
pub mod settings;
mod subscription;
mod topology;
mod transport;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

pub use settings::RabbitMqSettings;
pub use subscription::RabbitMqSubscription;
pub use transport::RabbitMqTransport;

/// `EVENT_BUS_BACKEND = "rabbitmq"`: builds a [`RabbitMqTransport`] from the
/// `EVENT_BUS_RABBITMQ_*` settings.
///
/// ```
/// use event_bus_rabbitmq::RabbitMqBackend;
/// use openedx_events::bus::BackendFactory;
/// assert_eq!(RabbitMqBackend.name(), "rabbitmq");
/// assert!(RabbitMqBackend.settings().contains(&"EVENT_BUS_RABBITMQ_URL"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RabbitMqBackend;

#[async_trait]
impl BackendFactory for RabbitMqBackend {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn settings(&self) -> &'static [&'static str] {
        settings::ALL
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let parsed = RabbitMqSettings::from_settings(settings)?;
        Ok(Arc::new(RabbitMqTransport::connect(parsed).await?))
    }
}
