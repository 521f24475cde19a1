//! # event-bus-redis
//!
//! The Redis Streams backend of the Open edX event bus
//! (`EVENT_BUS_BACKEND = "redis"`), wire-compatible with the Python
//! `edx-event-bus-redis` 1.1.2: a Python producer's events reach Rust
//! consumers and the other way round, on the same streams and consumer
//! groups.
//!
//! It is a thin transport: the consume loop, retries, dead letters, error
//! budget and audit log are the core's (`openedx_events::bus`).
//!
//! ```no_run
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use event_bus_redis::RedisBackend;
//! use openedx_events::bus::{Backends, EventBus};
//! use openedx_events::config::Settings;
//! let mut settings = Settings::new();
//! settings.set("EVENT_BUS_BACKEND", "redis");
//! settings.set("EVENT_BUS_REDIS_CONNECTION_URL", "redis://:password@localhost:6379/0");
//! settings.set("EVENT_BUS_TOPIC_PREFIX", "dev");
//! let bus = EventBus::from_settings(settings, &Backends::new().with(Arc::new(RedisBackend))).await.unwrap();
//! let mut options = bus.consumer_options("user-login", "my-service").unwrap();
//! options.extras.insert("consumer_name".into(), "my-service-1".into());
//! bus.consumer_with(options).unwrap().consume_indefinitely().await.unwrap();
//! # });
//! ```
//!
//! ## Wire format
//!
//! One stream per full topic (`<EVENT_BUS_TOPIC_PREFIX>-<topic>`), one entry
//! per event written with
//! `XADD <stream> MAXLEN ~ <EVENT_BUS_REDIS_STREAM_MAX_LEN> * type .. id .. source .. time .. minorversion .. sourcehost .. sourcelib .. event_data <avro>`,
//! fields in exactly that order (see [`wire`]). Dead letters (raw messages
//! carrying a `dlq_reason` header) are written without `MAXLEN`: a
//! dead-letter stream is never trimmed, its entries stay until an operator
//! deletes them (`event-bus dlq`, `XDEL`, `XTRIM`). The key is not written,
//! as in Python. Raw messages (dead letters) are written as their headers
//! in order, then `event_data`; read entries give every field but
//! `event_data` as headers, in stream order.
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `EVENT_BUS_REDIS_CONNECTION_URL` | required | `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS (rustls, system roots) |
//! | `EVENT_BUS_REDIS_STREAM_MAX_LEN` | 10000 | approximate `MAXLEN` of every `XADD`, but those of dead letters |
//! | `EVENT_BUS_REDIS_COMMAND_TIMEOUT` | 5 (s) | limit of every Redis call; a blocking read gets its block time on top |
//! | `EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT`, `..._POLL_FAILURE_SLEEP`, `..._CONSECUTIVE_ERRORS_LIMIT`, `EVENT_BUS_REDIS_CONSUMERS_ENABLED`, `EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED` | see the core | read by the core's consume loop |
//!
//! The password never appears in logs or errors (URLs are shown masked).
//! Failures map to transport error kinds: a call that takes too long is a
//! `Timeout` and a lost server a `Connection` error (both retried by the
//! loop); a refused login or missing permission is `Fatal`; a bad URL is a
//! `Config` error.
//!
//! ## Consumer options (`--extra` JSON, as in Python)
//!
//! | extra | effect |
//! |---|---|
//! | `consumer_name` | this member's name (overrides the default `<host>-<pid>`). Its pending list is kept under it: give each replica a stable, unique name, so a restart handles what the previous run left unacknowledged |
//! | `last_read_msg_id` | on every start, `XGROUP SETID` to this entry id: the group replays everything after it |
//! | `check_backlog` | accepted; processing what the group has not seen yet is already the default |
//! | `claim_msgs_older_than` | milliseconds: entries other members left pending for longer are claimed (`XAUTOCLAIM`), at start and then periodically; default 300000 (5 minutes), `0` turns claiming off |
//! | `skip_backlog` | (this port only) `true`: on every start, `XGROUP SETID $`, as Python does by default (see below) |
//!
//! Unknown extras and wrong types are `Config` errors naming the extra.
//!
//! A consumer first hands out its own pending entries (read from its
//! pending list in pages), then claimed ones, then new entries
//! (`XREADGROUP ... COUNT <batch> BLOCK <wait> ... >`, on a connection of its
//! own so a blocked read never delays a publish). Acks are buffered and sent
//! in one `XACK` per batch; while a backlog is waiting (the last read filled
//! its batch), the next batch is read in the same round trip
//! (`XACK ...` and `XREADGROUP ... >` pipelined) and handed out by the next
//! `receive`. Entries read ahead are pending for this consumer like the ones
//! handed out, so nothing is lost if it stops first: `close` marks those it
//! did not hand out as long idle (`XCLAIM ... IDLE`), for the other members
//! to claim at once, and a restart under the same name recovers them. A nacked entry stays pending for this consumer
//! and is handed out again from the core's delay queue when due, with the
//! attempt counted; entries recovered or claimed at start take their attempt
//! from Redis's delivery count. While a consumer holds entries it refreshes
//! them (`XCLAIM ... JUSTID`, every `min(claim_msgs_older_than / 3, 5 s)`),
//! so only the entries of a consumer that stopped are claimed by the others.
//! `close` flushes acks; unacknowledged entries stay pending under the
//! consumer name.
//!
//! After any connection trouble (a failed or timed-out read, `XACK`,
//! claim or refresh, or a call retried on a new connection), the consumer
//! reads its own pending list again from its start, as at start-up, before
//! any new entry: a read whose reply was lost (the server died, or the
//! connection dropped, after running it) has left its entries pending for
//! this consumer, and they are handed out at once instead of after
//! `claim_msgs_older_than`. Entries it holds already (handed out and not
//! acknowledged, waiting for a redelivery, read ahead, or acknowledged and
//! not sent yet) are skipped, so none is handed out twice at once; the
//! others take their attempt from Redis's delivery count, which includes
//! the delivery whose reply was lost. `seek` moves the group with `XGROUP SETID` (a time becomes
//! the last id before it).
//!
//! ## Connections and throughput
//!
//! A transport keeps one connection of the `redis` crate for commands
//! (reconnecting, shared by everything), and each subscription one for its
//! reads. Concurrent publishes are pipelined: each `publish` queues its
//! `XADD` (a bounded queue: callers wait for room when it is full), and two
//! publishing lanes take turns sending whatever is queued (up to 256
//! commands) as one pipeline, one round trip, and answer each caller with
//! its own entry id or error; `publish` still returns only once Redis has
//! the entry, within `EVENT_BUS_REDIS_COMMAND_TIMEOUT`. On a plain TCP URL
//! (`redis://`) the reading and publishing connections are the backend's
//! own, speaking RESP2 directly (login and database as in the URL): the
//! replies are read in place, not turned into a tree of values; with TLS
//! (`rediss://`) or a Unix socket they go through the `redis` crate.
//!
//! A consumer warns when entries were trimmed (`MAXLEN ~`) before its group
//! read them, with how many (from Redis 7's `XINFO` counters: when it joins,
//! then every few seconds): a group that lags by more than the stream keeps
//! loses entries without an error, in Python too.
//!
//! ## Python behaviour kept, and quirks not copied
//!
//! | edx-event-bus-redis 1.1.2 | this backend |
//! |---|---|
//! | Default start runs `XGROUP SETID <stream> <group> $` on **every** consumer start: everything produced while all consumers were down is skipped (spec §12.2) | The group keeps its position; a new group starts at `0` (the whole retained stream), or at `$` with `StartPosition::Latest`. `"skip_backlog": true` restores the Python behaviour for operators who rely on it |
//! | A trimmed entry in the pending list ends pending recovery early and stays pending for ever (§12.3) | It is acknowledged with a warning and recovery goes on |
//! | `claim_msgs_older_than` claims only during the start-up drain, one entry per loop | Claims at start and then every few seconds (`min(idle/2, 5 s)`), a page at a time |
//! | A missing `id` field gets a new uuid1 (§12.4) | The entry is dead-lettered as unusable, as the Kafka backend does: a made-up id breaks deduplication and tracing |
//! | An unknown `type` is a raw `KeyError` (§12.5) | Dead-lettered with reason `unknown_event_type` (the core) |
//! | Every received entry is acked, whether it was handled or not (§12.1: at most once on errors) | Acked only after it was handled or dead-lettered; failures are retried by the core (at least once) |
//! | Audit `event_timestamp_ms` is seconds as a float (§12.6) | The core's audit log, with the event time in isoformat |
//! | Missing optional fields are filled with the consumer's host, service, time and library (§12.9) | Same (kept for compatibility) |
//! | Settings read only at import (§12.12) | Read when the bus is built |
//! | Timeouts by `SIGALRM`, 5 s, main thread only, only around the pending phase (§12.14) | A timeout around every call (`EVENT_BUS_REDIS_COMMAND_TIMEOUT`), any thread; a timeout is not fatal, the loop retries |
//! | A Redis `ConnectionError` ends the consumer | Connection errors are retried with backoff (the connection reconnects); only refused logins and permissions are fatal |
//! | The XADD of a producer can block a web request for ever on a black-holed server | Bounded by the command timeout; the caller gets the error (nothing is dropped silently) |
//! | `consumer_name` is a required constructor argument | Defaults to `<host>-<pid>` (the core's default), which changes with every process: set a stable name per replica so a restart recovers its own pending entries at once; otherwise they are claimed by the group after `claim_msgs_older_than` (5 minutes by default) |
//! | No claiming unless `claim_msgs_older_than` is given, so a stopped consumer's pending entries wait for a consumer of the same name | Claiming is on by default (5 minutes idle) |
//! | Fields read into a dict: the last of repeated fields wins; empty means absent | Same |
//! | The key (`event_key_field`) is ignored | Same |

#![warn(missing_docs)]

mod conn;
mod digits;
mod entry_id;
mod error;
pub mod extras;
mod publisher;
mod raw;
mod reader;
mod reply;
mod resp;
pub mod settings;
mod subscription;
pub mod transport;
mod trim_check;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

/// The settings module under the name `config` as well.
pub use settings as config;
pub use settings::RedisConfig;
pub use transport::RedisTransport;

/// The settings this backend reads (the consumer ones are read by the core).
pub const SETTINGS: &[&str] = &[
    settings::CONNECTION_URL,
    settings::STREAM_MAX_LEN,
    settings::COMMAND_TIMEOUT,
    "EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT",
    "EVENT_BUS_REDIS_CONSUMER_POLL_FAILURE_SLEEP",
    "EVENT_BUS_REDIS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT",
    "EVENT_BUS_REDIS_CONSUMERS_ENABLED",
    "EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED",
];

/// `EVENT_BUS_BACKEND = "redis"`: builds a [`RedisTransport`] from the
/// settings.
///
/// ```
/// use event_bus_redis::RedisBackend;
/// use openedx_events::bus::{BackendFactory, Backends};
/// assert_eq!(RedisBackend.name(), "redis");
/// assert!(RedisBackend.settings().contains(&"EVENT_BUS_REDIS_CONNECTION_URL"));
/// let backends = Backends::new().with(std::sync::Arc::new(RedisBackend));
/// assert!(backends.names().contains(&"redis"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisBackend;

#[async_trait]
impl BackendFactory for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn settings(&self) -> &'static [&'static str] {
        SETTINGS
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let config = RedisConfig::from_settings(settings)?;
        Ok(Arc::new(RedisTransport::connect(config).await?))
    }
}
