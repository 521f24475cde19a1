//! The Redis transport: publish with `XADD`, join groups, browse with
//! `XRANGE`.

use std::fmt;
use std::sync::Arc;

use crate::conn::{Conn, Purpose};
use crate::error::{from_redis, is_nogroup};
use crate::extras::Extras;
use crate::publisher::{Builder, Gone, Packed, Publisher};
use crate::reader::ReadConn;
use crate::reply;
use crate::settings::RedisConfig;
use crate::subscription::RedisSubscription;
use crate::wire::{self, EntryId};
use async_trait::async_trait;
use openedx_events::bus::dead_letter::is_dead_letter;
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, GroupLag, OutgoingMessage, RawMessage, StartPosition, SubscribeRequest,
    Subscription, Transport, TransportError, TransportErrorKind,
};

/// The largest entry this backend writes (Redis itself accepts up to its
/// `proto-max-bulk-len`, 512 MB by default; a stream of such entries would
/// not fit the memory budget of ADR 3).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A connection to Redis: one reconnecting connection for commands, shared
/// by producers and consumers of the process; concurrent publishes are
/// pipelined on publishing connections of their own (opened as needed, see
/// the crate documentation); each subscription opens its own connection for
/// blocking reads, so a blocked read never delays a publish. Cheap to clone.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use event_bus_redis::{RedisConfig, RedisTransport};
/// use openedx_events::bus::{EventBusProducer, Transport};
/// use openedx_events::{catalog, metadata::EventsMetadata, sample};
/// let transport = RedisTransport::connect(RedisConfig::new("redis://127.0.0.1:6379/0").unwrap()).await.unwrap();
/// let producer = EventBusProducer::new(Arc::new(transport), Some("dev".into()));
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = sample::event_data(t, &mut sample::rng(1));
/// // XADD dev-user-login MAXLEN ~ 10000 * type ... event_data <avro>
/// let entry_id = producer.send(t, "user-login", None, &data, &EventsMetadata::new(t.name(), 0)).await.unwrap();
/// println!("written as {entry_id:?}");
/// # });
/// ```
#[derive(Clone)]
pub struct RedisTransport {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: Conn,
    publisher: Publisher,
    config: RedisConfig,
}

impl fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTransport")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl RedisTransport {
    /// Connect and check the connection (`PING`, which also checks the
    /// credentials). An unreachable server is a connection error (or a
    /// timeout), a refused login a fatal error, a bad URL a configuration
    /// error; none shows the password.
    pub async fn connect(config: RedisConfig) -> Result<Self, TransportError> {
        let secret = config.redactor();
        if config.url().starts_with("rediss") {
            // rustls needs a process-wide crypto provider; install ring's
            // unless the application installed one (or several features of
            // rustls are on, where it cannot pick one by itself).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(config.url())
            .map_err(|e| from_redis("invalid EVENT_BUS_REDIS_CONNECTION_URL", &e, &secret))?;
        let conn = Conn::open(&client, &config, Purpose::Commands)?;
        let publisher = Publisher::start(conn.clone(), &client, &config);
        let transport = RedisTransport {
            inner: Arc::new(Inner {
                client,
                conn,
                publisher,
                config,
            }),
        };
        transport
            .inner
            .conn
            .query(
                &format!("cannot reach Redis at {}", transport.inner.config.masked_url()),
                &redis::cmd("PING"),
            )
            .await?;
        tracing::info!(url = %transport.inner.config.masked_url(), "connected to Redis");
        Ok(transport)
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// `XADD <stream> MAXLEN ~ <n> * <fields>` (without `MAXLEN ~ <n>` when
    /// not `trim`): `fields` pairs, of about `size` bytes, which `write`
    /// adds; sent in the next pipeline of the publishing lanes.
    async fn xadd(
        &self,
        stream: &str,
        trim: bool,
        fields: usize,
        size: usize,
        write: impl Fn(&mut Builder),
    ) -> Result<String, TransportError> {
        if size > MAX_MESSAGE_BYTES {
            return Err(TransportError::new(
                TransportErrorKind::Rejected,
                format!(
                    "an entry of {size} bytes is larger than the {MAX_MESSAGE_BYTES}-byte limit of the redis backend"
                ),
            ));
        }
        let publisher = &self.inner.publisher;
        let mut maxlen = crate::digits::Digits::default();
        let maxlen = maxlen.format(self.inner.config.stream_max_len);
        let head: &[&[u8]] = if trim {
            &[b"XADD", stream.as_bytes(), b"MAXLEN", b"~", maxlen, b"*"]
        } else {
            &[b"XADD", stream.as_bytes(), b"*"]
        };
        let start = |b: &mut Builder| {
            for a in head {
                b.arg(a);
            }
        };
        // The packed command: the arguments, each with `$<len>\r\n` and `\r\n`.
        let args = head.len() + 2 * fields;
        let bytes = size + stream.len() + 32 + args * 8;
        let mut cmd = publisher.builder(args, bytes);
        start(&mut cmd);
        write(&mut cmd);
        let reply = match publisher.call(cmd.done(), size).await {
            Ok(reply) => reply,
            Err(Gone) => {
                // The lanes are gone (their runtime shut down): send it alone.
                let mut cmd = Builder::Cmd(redis::Cmd::with_capacity(args, bytes));
                start(&mut cmd);
                write(&mut cmd);
                match cmd.done() {
                    Packed::Cmd(cmd) => self.inner.conn.query("", &cmd).await.and_then(|v| {
                        reply::into_text(v).map_err(|v| {
                            TransportError::other(format!("Redis replied with {}, not an entry id", reply::shape(&v)))
                        })
                    }),
                    Packed::Raw(_) => Err(TransportError::other("a command of the wrong kind")),
                }
            }
        };
        reply.map_err(|mut e| {
            e.message = format!("XADD {stream}: {}", e.message);
            e
        })
    }
}

#[async_trait]
impl Transport for RedisTransport {
    fn name(&self) -> &str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        // Per-key order is stream order, with one member per group (ADR 2 of
        // edx-event-bus-redis); persistence is as configured in Redis (AOF or
        // RDB), and only for the last ~MAXLEN entries.
        Capabilities::durable_log(MAX_MESSAGE_BYTES)
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        // The field names and values (the id, time, minor version and
        // library version are at most this long as text).
        let m = &message.metadata;
        let size =
            message.body.len() + m.event_type.len() + m.source.len() + m.sourcehost.len() + 57 + 36 + 32 + 10 + 24;
        self.xadd(&message.topic, true, 8, size, |cmd| {
            wire::visit_metadata_fields(&message.metadata, &mut |k, v| {
                cmd.arg(k.as_bytes());
                cmd.arg(v);
            });
            cmd.arg(wire::EVENT_DATA.as_bytes());
            cmd.arg(&message.body);
        })
        .await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        let fields = wire::raw_entry_fields(message);
        let size = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        // Dead letters are never trimmed: an operator deletes them.
        let trim = !is_dead_letter(message);
        self.xadd(&message.topic, trim, fields.len(), size, |cmd| {
            for (k, v) in &fields {
                cmd.arg(k.as_bytes());
                cmd.arg(v);
            }
        })
        .await
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        let extras = Extras::parse(&request.extras)?;
        let consumer = extras
            .consumer_name
            .clone()
            .unwrap_or_else(|| request.consumer_name.clone());
        if consumer.trim().is_empty() {
            return Err(TransportError::new(
                TransportErrorKind::Config,
                "the redis backend needs a consumer name (--extra '{\"consumer_name\": \"...\"}')",
            ));
        }
        let start = match request.start {
            StartPosition::Earliest => "0",
            StartPosition::Latest => "$",
        };
        let conn = &self.inner.conn;
        let (stream, group) = (&request.topic, &request.group);
        let created = create_group(conn, stream, group, start).await?;
        if created {
            tracing::info!(stream = %stream, group = %group, start, "created consumer group");
        }
        if let Some(id) = &extras.last_read_msg_id {
            set_id(conn, stream, group, &id.as_arg()).await?;
            tracing::info!(stream = %stream, group = %group, last_read_msg_id = %id.as_arg(),
                "moved the consumer group: entries after last_read_msg_id will be (re)delivered");
        } else if extras.skip_backlog {
            set_id(conn, stream, group, "$").await?;
            tracing::warn!(stream = %stream, group = %group,
                "skip_backlog: every entry not yet delivered to the group was marked as read (XGROUP SETID $)");
        }
        if extras.check_backlog == Some(false) {
            tracing::warn!(
                "check_backlog=false is ignored: this consumer keeps the group's position; \
                 use skip_backlog=true to skip the backlog as edx-event-bus-redis does by default"
            );
        }
        // Entries trimmed before the group read them: warn now (a group
        // whose consumers were all down) and then every few seconds; a new
        // group never had the entries trimmed before it.
        let (trim_reported, _) = crate::trim_check::check_trimmed(conn, stream, group, 0, !created).await;
        let reader = ReadConn::open(&self.inner.client, &self.inner.config)?;
        let sub = RedisSubscription::new(
            conn.clone(),
            reader,
            stream.clone(),
            group.clone(),
            consumer,
            extras.claim_msgs_older_than,
            trim_reported,
        );
        Ok(Box::new(sub))
    }

    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let start = match after {
            None => "-".to_string(),
            Some(p) => {
                let id: EntryId = p
                    .parse()
                    .map_err(|e: wire::BadEntryId| TransportError::other(e.to_string()))?;
                format!("({id}")
            }
        };
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(topic).arg(&start).arg("+").arg("COUNT").arg(limit.max(1));
        let reply = self.inner.conn.query(&format!("XRANGE {topic}"), &cmd).await?;
        let entries = reply::entries(reply).map_err(|e| TransportError::other(format!("XRANGE {topic}: {e}")))?;
        Ok(entries
            .into_iter()
            .take(limit)
            .enumerate()
            .map(|(i, e)| {
                let (raw, event) = wire::parse_entry(topic, e.id, e.fields.unwrap_or_default());
                Delivery {
                    raw,
                    tag: DeliveryTag(i as u64),
                    position: e.id.to_string(),
                    attempt: 1,
                    event,
                }
            })
            .collect())
    }

    /// `XINFO GROUPS <stream>`: per group, `lag` (entries not yet delivered
    /// to the group; Redis 7) plus `pending` (delivered, not acknowledged),
    /// and `pending`. Where Redis cannot compute `lag` (nil: entries were
    /// deleted with `XDEL`, the group was moved with `SETID`; or Redis 6,
    /// which has no such field), the entries after the group's
    /// `last-delivered-id` are counted with `XRANGE`. A stream that does not
    /// exist has no groups.
    async fn lag(&self, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
        let conn = &self.inner.conn;
        let what = format!("XINFO GROUPS {topic}");
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(topic);
        let reply = match conn.query(&what, &cmd).await {
            Ok(reply) => reply,
            Err(e) if e.kind == TransportErrorKind::Rejected && e.message.to_lowercase().contains("no such key") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for info in reply::info_list(reply) {
            let field = |name: &str| info.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            let name = field("name")
                .and_then(reply::text)
                .ok_or_else(|| TransportError::other(format!("{what}: a group without a name")))?;
            if group.is_some_and(|g| g != name) {
                continue;
            }
            let count = |key: &str| field(key).and_then(reply::int).map(|n| u64::try_from(n).unwrap_or(0));
            let pending = count("pending")
                .ok_or_else(|| TransportError::other(format!("{what}: group {name} has no pending count")))?;
            let undelivered = match count("lag") {
                Some(n) => n,
                None => {
                    let last = field("last-delivered-id")
                        .map(reply::entry_id)
                        .transpose()
                        .map_err(|e| TransportError::other(format!("{what}: group {name}: {e}")))?
                        .ok_or_else(|| {
                            TransportError::other(format!("{what}: group {name} has no last-delivered-id"))
                        })?;
                    count_after(conn, topic, last).await?
                }
            };
            out.push(GroupLag {
                topic: topic.to_string(),
                group: name,
                partition: "0".to_string(),
                lag: undelivered + pending,
                pending: Some(pending),
            });
        }
        Ok(out)
    }
}

/// How many entries of `stream` come after `after` (`XRANGE` in pages of
/// ids): the entries not yet delivered to a group whose
/// `last-delivered-id` is `after`.
async fn count_after(conn: &Conn, stream: &str, after: EntryId) -> Result<u64, TransportError> {
    const PAGE: usize = 1000;
    let what = format!("XRANGE {stream}");
    let mut from = after;
    let mut n = 0u64;
    loop {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(stream).arg(format!("({from}")).arg("+").arg("COUNT").arg(PAGE);
        let reply = conn.query(&what, &cmd).await?;
        let entries = reply::entries(reply).map_err(|e| TransportError::other(format!("{what}: {e}")))?;
        n += entries.len() as u64;
        match entries.last() {
            Some(last) if entries.len() >= PAGE => from = last.id,
            _ => return Ok(n),
        }
    }
}

/// `XGROUP CREATE <stream> <group> <start> MKSTREAM`; false if it existed
/// (`BUSYGROUP`).
pub(crate) async fn create_group(conn: &Conn, stream: &str, group: &str, start: &str) -> Result<bool, TransportError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE").arg(stream).arg(group).arg(start).arg("MKSTREAM");
    match conn.query(&format!("XGROUP CREATE {stream} {group}"), &cmd).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind == TransportErrorKind::Rejected && e.message.contains("BUSYGROUP") => Ok(false),
        Err(e) => Err(e),
    }
}

/// `XGROUP SETID <stream> <group> <id>`, creating the group there if it does
/// not exist.
pub(crate) async fn set_id(conn: &Conn, stream: &str, group: &str, id: &str) -> Result<(), TransportError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("SETID").arg(stream).arg(group).arg(id);
    match conn.query(&format!("XGROUP SETID {stream} {group} {id}"), &cmd).await {
        Ok(_) => Ok(()),
        Err(e) if is_nogroup(&e) => create_group(conn, stream, group, id).await.map(|_| ()),
        Err(e) => Err(e),
    }
}
