//! # event-bus-sqlite
//!
//! The embedded default backend of the Open edX event bus: a durable log with
//! consumer groups in one SQLite file (`EVENT_BUS_BACKEND = "sqlite"`). No
//! server to run; several producer and consumer processes on one machine may
//! share the file.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use event_bus_sqlite::{SqliteOptions, SqliteTransport};
//! use openedx_events::bus::transport::{RawMessage, StartPosition, SubscribeRequest, Transport};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("bus.db");
//! // Two connections, as two processes would have.
//! let producer = SqliteTransport::open(&path, SqliteOptions::default()).unwrap();
//! let consumer = SqliteTransport::open(&path, SqliteOptions::default()).unwrap();
//! producer.publish_raw(&RawMessage { topic: "dev-user-login".into(), value: b"hi".to_vec(),
//!     ..Default::default() }).await.unwrap();
//! let mut sub = consumer.subscribe(&SubscribeRequest { topic: "dev-user-login".into(),
//!     group: "analytics".into(), consumer_name: "worker-1".into(), start: StartPosition::Earliest,
//!     extras: Default::default() }).await.unwrap();
//! let got = sub.receive(10, Duration::from_secs(1)).await.unwrap();
//! assert_eq!((got[0].raw.value.as_slice(), got[0].position.as_str()), (&b"hi"[..], "1"));
//! sub.ack(got[0].tag).await.unwrap();
//! sub.close().await.unwrap();
//! # });
//! ```
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! | --- | --- | --- |
//! | `EVENT_BUS_SQLITE_PATH` | `event-bus.db` | the database file (its directory is created) |
//! | `EVENT_BUS_SQLITE_LEASE_SECONDS` | 30 | how long a received message stays reserved without sign of life from its consumer |
//! | `EVENT_BUS_SQLITE_MAX_MESSAGES_PER_TOPIC` | 100000 | messages kept per topic (0: no limit) |
//! | `EVENT_BUS_SQLITE_RETENTION_SECONDS` | 604800 | age after which messages are removed (0: keep forever) |
//! | `EVENT_BUS_SQLITE_BUSY_TIMEOUT_SECONDS` | 5 | wait for another process's write lock |
//! | `EVENT_BUS_SQLITE_SYNCHRONOUS` | `normal` | `full` to survive power loss, not only crashes |
//!
//! A subscription takes one extra, `lease_seconds`, to override the lease.
//!
//! ## Table layout
//!
//! - `messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic, key BLOB,
//!   headers TEXT, value BLOB, created_at)`: the log of every topic. `id` is
//!   the position (decimal text in [`Delivery::position`](openedx_events::bus::transport::Delivery)
//!   and the [`DeliveryTag`](openedx_events::bus::transport::DeliveryTag));
//!   `AUTOINCREMENT` makes sure an id is never reused after trimming.
//!   `headers` is JSON: `[[name, value], ...]` in order, a value being a string
//!   when its bytes are UTF-8 and an array of byte numbers otherwise.
//!   `created_at` is the broker timestamp (µs since the epoch, taken inside
//!   the write transaction) used by `seek` to a time and by the age limit.
//!   Indexes on `(topic, id)` and `(topic, created_at)`.
//! - `topics (name, trimmed_through)`: every id of the topic up to
//!   `trimmed_through` has been removed by the retention limits.
//! - `dead_letter_topics (name)`: topics a dead letter (a message with the
//!   `dlq_reason` header) was published to; retention never trims them.
//! - `groups (topic, name, position, created_at)`: each consumer group's
//!   position, the highest id it has taken from the log.
//! - `deliveries (topic, grp, message_id, attempts, owner, visible_at)`:
//!   the messages of a group taken from the log and not yet acknowledged.
//!   `owner` is the member holding it (NULL: waiting to be delivered again);
//!   `visible_at` is when it may be (re)delivered: the lease expiry while
//!   held, the end of the nack delay while waiting. `attempts` counts
//!   deliveries.
//! - `consumers (id, topic, grp, name, host, pid, pid_start, started_at,
//!   seen_at)`: the members, each a random id, with the host identity
//!   (hostname, boot id and pid namespace on Linux), the pid and the process
//!   start time read from `/proc/<pid>/stat`.
//!
//! The file is in WAL mode; every connection has a busy timeout, and every
//! write is one short `BEGIN IMMEDIATE` transaction.
//!
//! ## Delivery semantics
//!
//! At least once, per group. A receive, in one transaction, writes buffered
//! acks, renews the member's leases, takes the due rows of `deliveries`
//! (oldest id first) and then new messages after the group's position (in id
//! order), recording each as held by the member until `now + lease`. With one
//! member and nothing nacked, a group sees messages in publish order.
//!
//! - `ack` deletes the delivery row (buffered; written by `flush_acks`, the
//!   next receive or nack, or when 256 are waiting or a third of the lease
//!   has passed). An ack only counts while the member still holds the message.
//! - `nack(delay)` makes the row waiting, visible after `delay`; the next
//!   delivery has `attempt` one higher.
//! - `close` (or dropping the subscription) makes everything the member
//!   holds available at once.
//! - A member that dies: other members of its group (at subscribe, then
//!   every second while receiving) look at the holders of the group's
//!   messages, and take back at once what a member on the same host holds
//!   whose process is gone (no such pid, a zombie, or the pid reused by a
//!   process started at another time). Elsewhere, and for a hung process,
//!   the lease expires and the message is delivered again. A message being
//!   handled for longer than the lease may thus be delivered twice: raise the
//!   lease for slow handlers.
//! - `seek` moves the group's position, for every member; messages waiting
//!   for redelivery after the new position are dropped (they come again as
//!   new messages), held ones stay held.
//! - A receive whose future is dropped loses nothing: what it had claimed is
//!   returned by the next receive (or released by `close`).
//! - Idle receivers take no lock: they check `PRAGMA data_version` every
//!   10 ms and are woken at once by publishers in the same process.
//!
//! ## Retention
//!
//! Publishers trim at most every 5 s or every 1000 publishes (and
//! [`SqliteTransport::trim`] on demand), removing the oldest messages of each
//! topic beyond the count limit or older than the age limit, in chunks of a
//! few thousand rows. A group whose position falls below what is retained
//! continues from the oldest retained message, with a warning that messages
//! were lost. Topics that hold dead letters are never trimmed.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod extras;
mod process;
mod schema;
mod settings;
mod store;
mod subscription;
mod transport;
mod wire;

pub use settings::{
    SqliteOptions, Synchronous, DEFAULT_PATH, SETTINGS, SETTING_BUSY_TIMEOUT_SECONDS, SETTING_LEASE_SECONDS,
    SETTING_MAX_MESSAGES_PER_TOPIC, SETTING_PATH, SETTING_RETENTION_SECONDS, SETTING_SYNCHRONOUS,
};
pub use store::TrimReport;
pub use transport::SqliteTransport;

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

/// The factory that builds a [`SqliteTransport`] from settings; add it to
/// the application's [`Backends`](openedx_events::bus::Backends).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use event_bus_sqlite::SqliteBackend;
/// use openedx_events::bus::{Backends, EventBus};
/// use openedx_events::config::Settings;
/// let dir = tempfile::tempdir().unwrap();
/// let mut settings = Settings::new();
/// settings.set("EVENT_BUS_BACKEND", "sqlite");
/// settings.set("EVENT_BUS_SQLITE_PATH", dir.path().join("bus.db").to_str().unwrap());
/// let backends = Backends::new().with(Arc::new(SqliteBackend));
/// let bus = EventBus::from_settings(settings, &backends).await.unwrap();
/// assert_eq!(bus.transport().unwrap().name(), "sqlite");
///
/// let mut bad = Settings::new();
/// bad.set("EVENT_BUS_BACKEND", "sqlite");
/// bad.set("EVENT_BUS_SQLITE_LEASE_SECONDS", "soon");
/// let e = EventBus::from_settings(bad, &backends).await.err().unwrap();
/// assert!(e.to_string().contains("EVENT_BUS_SQLITE_LEASE_SECONDS"));
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteBackend;

#[async_trait]
impl BackendFactory for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn settings(&self) -> &'static [&'static str] {
        SETTINGS
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let (path, options) = SqliteOptions::from_settings(settings)?;
        let opened = tokio::task::spawn_blocking(move || SqliteTransport::open(path, options))
            .await
            .map_err(|e| openedx_events::bus::TransportError::other(format!("opening the sqlite database: {e}")))??;
        Ok(Arc::new(opened))
    }
}
