//! The transport boundary: the little a backend implements.
//!
//! A backend publishes messages, lets a consumer join a group on a topic,
//! receives, acknowledges and negatively acknowledges. Everything else (the
//! work cycle, decoding, dispatch, retries, dead letters, error budget, audit
//! log, metrics, shutdown) lives once in the core's consume loop.
//!
//! Contract, for implementers:
//! - `publish` returns only once the broker has the message (or fails).
//! - A message received in a group is not given to another member of the
//!   group until it is nacked, its consumer closes, or its consumer dies (the
//!   broker's or backend's own lease/session rules decide when).
//! - `ack` is final: the message is never delivered to this group again.
//!   Acks may be buffered and made durable in `flush_acks`; the loop calls it
//!   before waiting for more messages and before closing. Acks may come out of
//!   order: a backend with a single committed position (Kafka) must only
//!   commit up to the lowest unacknowledged message.
//! - `nack(delay)` makes the message available to the group again, no sooner
//!   than `delay`. `Delivery::attempt` counts deliveries of the same message
//!   (1 for the first) where the broker or backend can know it; it is
//!   informational (audit log): the loop counts handling failures itself.
//! - `close()` and dropping a subscription release what it holds; `ack` and
//!   `nack` after `close` do nothing. `seek` moves the whole group; messages
//!   held by members are still theirs to ack.
//! - `publish_raw` keeps key, headers and value byte for byte; the broker
//!   sets the timestamp. `max_message_bytes` counts key, headers and value.
//! - Nothing here may panic on bytes from the wire: a message whose headers
//!   cannot be understood is still delivered, with `event` set to the reason,
//!   so the loop can dead-letter it and go on.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::avro::Schema;
use crate::config::EventKey;
use crate::event::EventType;
use crate::metadata::EventsMetadata;

/// A message as the broker holds it: what dead letters keep byte for byte.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawMessage {
    /// The full topic (prefix included) it was read from or goes to.
    pub topic: String,
    /// The key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Headers (Kafka headers, Pulsar properties, Redis fields other than the
    /// body...) in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value bytes.
    pub value: Vec<u8>,
    /// The broker's timestamp, if it has one.
    pub timestamp: Option<DateTime<Utc>>,
}

impl RawMessage {
    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    /// The first header with this name, as text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// An event to publish: the backend maps it to its wire format.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The full topic (prefix included).
    pub topic: String,
    /// The event type (its schema, for registries).
    pub event_type: Arc<EventType>,
    /// The metadata (headers).
    pub metadata: EventsMetadata,
    /// The key, if an `event_key_field` was given.
    pub key: Option<EventKey>,
    /// The schemaless Avro body.
    pub body: Vec<u8>,
}

/// An event as read from the wire, before decoding its data.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// The event type named by the message.
    pub event_type: String,
    /// The metadata rebuilt from the headers.
    pub metadata: EventsMetadata,
    /// The Avro body (without any framing).
    pub body: Vec<u8>,
    /// The schema the body was written with, when the wire says (a schema
    /// registry); otherwise the body is read with the local schema.
    pub writer_schema: Option<Arc<Schema>>,
}

/// Identifies a delivery for ack and nack, within its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryTag(pub u64);

/// One message received in a group.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message as the broker holds it.
    pub raw: RawMessage,
    /// For ack and nack.
    pub tag: DeliveryTag,
    /// The broker position, for logs (`partition 0 offset 17`, an entry id...).
    pub position: String,
    /// How many times this message has been delivered to the group (1 for the
    /// first time), where known.
    pub attempt: u32,
    /// The event, or why the message cannot be understood.
    pub event: Result<IncomingEvent, String>,
}

/// Where a new group starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The oldest retained message (the default: nothing produced before the
    /// group's first start is skipped).
    #[default]
    Earliest,
    /// Only messages produced after the group is created.
    Latest,
}

/// Where to move a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekTarget {
    /// The first message at or after this time (broker timestamps).
    Time(DateTime<Utc>),
    /// Just after this broker position (backend-specific text).
    After(String),
    /// The oldest retained message.
    Earliest,
    /// The end of the topic.
    Latest,
}

/// A request to join a consumer group on a topic.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The full topic (prefix included).
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// This member's name, stable across restarts where the backend uses it
    /// (Redis pending lists are per consumer name).
    pub consumer_name: String,
    /// Where a new group starts.
    pub start: StartPosition,
    /// Backend-specific options (the Python `--extra` JSON).
    pub extras: serde_json::Map<String, serde_json::Value>,
}

/// What a backend can promise; the conformance suite runs the cases that
/// apply, and the loop adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Several groups each get every message; members of one group share them.
    pub consumer_groups: bool,
    /// Messages with the same key reach a group in publish order (with one
    /// member, while nothing is nacked).
    pub ordered_per_key: bool,
    /// Messages survive a restart of the broker or process.
    pub persistent: bool,
    /// A new group can read messages published before it existed.
    pub replay_from_start: bool,
    /// `seek` to a time works.
    pub seek_time: bool,
    /// Largest value (bytes) the backend accepts, as configured.
    pub max_message_bytes: usize,
}

impl Capabilities {
    /// What a durable log with consumer groups promises (Kafka, Redis
    /// Streams, Pulsar, SQLite): every capability, with the largest value
    /// the backend accepts.
    ///
    /// ```
    /// use openedx_events::bus::transport::Capabilities;
    /// let c = Capabilities::durable_log(1024);
    /// assert!(c.consumer_groups && c.ordered_per_key && c.persistent && c.replay_from_start && c.seek_time);
    /// assert_eq!(c.max_message_bytes, 1024);
    /// ```
    pub const fn durable_log(max_message_bytes: usize) -> Self {
        Capabilities {
            consumer_groups: true,
            ordered_per_key: true,
            persistent: true,
            replay_from_start: true,
            seek_time: true,
            max_message_bytes,
        }
    }
}

/// Kinds of transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// Cannot reach or talk to the broker (worth retrying later).
    Connection,
    /// A call did not finish in time.
    Timeout,
    /// The broker refused the request (too large, no such topic, auth...).
    Rejected,
    /// The backend cannot do this.
    Unsupported,
    /// The subscription or transport is closed.
    Closed,
    /// An error the consumer must not survive (a fatal client error).
    Fatal,
    /// Configuration is invalid.
    Config,
    /// Anything else.
    Other,
}

/// A transport failure.
#[derive(Debug, Clone, thiserror::Error)]
pub struct TransportError {
    /// Which kind.
    pub kind: TransportErrorKind,
    /// What happened, with context.
    pub message: String,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TransportErrorKind::Connection => "connection error",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Rejected => "rejected",
            TransportErrorKind::Unsupported => "unsupported",
            TransportErrorKind::Closed => "closed",
            TransportErrorKind::Fatal => "fatal error",
            TransportErrorKind::Config => "configuration error",
            TransportErrorKind::Other => "error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl TransportError {
    /// A new error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for a connection error.
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(TransportErrorKind::Connection, message)
    }

    /// Shorthand for an unsupported operation.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(TransportErrorKind::Unsupported, message)
    }

    /// Shorthand for anything else.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(TransportErrorKind::Other, message)
    }

    /// Whether the consumer must stop.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, TransportErrorKind::Fatal | TransportErrorKind::Config)
    }
}

/// A broker connection: publishes and opens subscriptions. Shared by
/// producers and consumers of one process; cheap to share behind an `Arc`.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The backend's name (`sqlite`, `redis`, ...).
    fn name(&self) -> &str;

    /// What the backend promises.
    fn capabilities(&self) -> Capabilities;

    /// Publish one event; returns its broker position.
    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError>;

    /// Publish a message as given, bytes and headers untouched (dead letters,
    /// requeues).
    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError>;

    /// Join a consumer group on a topic.
    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError>;

    /// Read messages of a topic without a group, oldest first, after a
    /// position (for inspecting dead letters).
    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let _ = (topic, after, limit);
        Err(TransportError::unsupported(format!(
            "the {} backend cannot browse a topic without a consumer group",
            self.name()
        )))
    }

    /// Wait until everything published has reached the broker.
    async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        let _ = timeout;
        Ok(())
    }

    /// The backlog of the consumer groups of a topic (full name, prefix
    /// included), per group and partition, as the broker tells it: one
    /// group if `group` is given, else every group the broker knows on the
    /// topic. A group the broker does not know yields no rows.
    async fn lag(&self, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
        let _ = (topic, group);
        Err(TransportError::unsupported(format!(
            "the {} backend cannot report consumer lag",
            self.name()
        )))
    }
}

/// The backlog of one consumer group on one partition (or stream, or queue)
/// of a topic.
///
/// ```
/// use openedx_events::bus::transport::GroupLag;
/// let lag = GroupLag { topic: "dev-t".into(), group: "g".into(), partition: "0".into(), lag: 3, pending: Some(1) };
/// assert_eq!(lag.lag, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupLag {
    /// The topic, prefix included.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The partition (Kafka, Pulsar), or `0` for a backend with one stream
    /// per topic.
    pub partition: String,
    /// Messages of the topic the group has not acknowledged yet (delivered
    /// or not): the events it still has to handle.
    pub lag: u64,
    /// Of those, messages delivered to a member and not acknowledged yet,
    /// where the broker tells it.
    pub pending: Option<u64>,
}

/// A membership in a consumer group on one topic.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` messages, waiting up to `wait` for the first one; an empty
    /// vector means nothing arrived in time. The loop always awaits it to the
    /// end (it is never cancelled midway).
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError>;

    /// The message was handled; it is never delivered to this group again.
    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError>;

    /// The message was not handled; deliver it again no sooner than `delay`.
    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError>;

    /// Make buffered acknowledgements durable.
    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Still working on the messages in hand: extend their leases. The loop
    /// calls this every few seconds while a receiver runs, so a slow handler
    /// does not see its message given to another member.
    async fn keep_alive(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// A handle that extends the leases of the messages this subscription
    /// holds from another task, for backends whose leases expire (SQLite's
    /// lease, a poll interval). The loop drives it while a receiver runs,
    /// synchronous receivers included (they block the loop's task, so
    /// [`Subscription::keep_alive`] cannot be called meanwhile). `None` (the
    /// default): the backend's leases do not expire while the loop is busy.
    fn lease_keeper(&self) -> Option<Arc<dyn LeaseKeeper>> {
        None
    }

    /// Move the group's position (replay).
    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        let _ = target;
        Err(TransportError::unsupported("this backend cannot seek a group"))
    }

    /// Leave the group: acks are flushed and unacknowledged messages become
    /// available to the other members: at once where the broker can release
    /// them, otherwise when the broker's own rule applies (a Redis pending
    /// entry is claimed after its idle time; a restarted consumer of the same
    /// name recovers it). Idempotent.
    async fn close(&mut self) -> Result<(), TransportError>;
}

/// Extends the leases of the messages a subscription holds; called from a
/// task of its own while the loop is busy (see [`Subscription::lease_keeper`]).
#[async_trait]
pub trait LeaseKeeper: Send + Sync {
    /// Extend the leases now.
    async fn keep_alive(&self) -> Result<(), TransportError>;

    /// How often to call it while the same message stays in hand (a lease
    /// is renewed within two of these): a fraction of the backend's lease.
    fn interval(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// Run a backend's parser of one message (its headers and framing), turning
/// a panic into the error that dead-letters the message: one hostile
/// message must not take the good ones of its batch with it.
///
/// ```
/// use openedx_events::bus::transport::parse_guarded;
/// let r = parse_guarded(|| -> Result<(), String> { panic!("bad offset") });
/// assert!(r.unwrap_err().contains("bad offset"));
/// ```
pub fn parse_guarded<T>(parse: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).unwrap_or_else(|p| {
        let text = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("the message could not be parsed (the parser panicked: {text})"))
    })
}
