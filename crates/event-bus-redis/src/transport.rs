//! The Redis transport: publish with `XADD`, join groups, browse with
//! `XRANGE`.

use std::fmt;
use std::sync::Arc;

use crate::config::RedisConfig;
use crate::conn::{self, Conn, Purpose};
use crate::extras::Extras;
use crate::reply;
use crate::subscription::RedisSubscription;
use crate::wire::{self, EntryId};
use async_trait::async_trait;
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, OutgoingMessage, RawMessage, StartPosition, SubscribeRequest, Subscription,
    Transport, TransportError, TransportErrorKind,
};

/// The largest entry this backend writes (Redis itself accepts up to its
/// `proto-max-bulk-len`, 512 MB by default; a stream of such entries would
/// not fit the memory budget of ADR 3).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A connection to Redis: one reconnecting connection for commands, shared
/// by producers and consumers of the process; each subscription opens its
/// own connection for blocking reads, so a blocked read never delays a
/// publish. Cheap to clone.
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
        let secret = config.secret();
        if config.url().starts_with("rediss") {
            // rustls needs a process-wide crypto provider; install ring's
            // unless the application installed one (or several features of
            // rustls are on, where it cannot pick one by itself).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(config.url())
            .map_err(|e| conn::from_redis("invalid EVENT_BUS_REDIS_CONNECTION_URL", &e, &secret))?;
        let conn = Conn::open(&client, &config, Purpose::Commands)?;
        let transport = RedisTransport {
            inner: Arc::new(Inner { client, conn, config }),
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

    async fn xadd(&self, stream: &str, fields: &[(String, Vec<u8>)]) -> Result<String, TransportError> {
        let size: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_MESSAGE_BYTES {
            return Err(TransportError::new(
                TransportErrorKind::Rejected,
                format!(
                    "an entry of {size} bytes is larger than the {MAX_MESSAGE_BYTES}-byte limit of the redis backend"
                ),
            ));
        }
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.config.stream_max_len)
            .arg("*");
        for (k, v) in fields {
            cmd.arg(k.as_bytes()).arg(v.as_slice());
        }
        let reply = self.inner.conn.query(&format!("XADD {stream}"), &cmd).await?;
        reply::text(&reply).ok_or_else(|| {
            TransportError::other(format!(
                "XADD {stream}: Redis replied with {}, not an entry id",
                reply::shape(&reply)
            ))
        })
    }
}

#[async_trait]
impl Transport for RedisTransport {
    fn name(&self) -> &str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            consumer_groups: true,
            // Stream order, with one member per group (ADR 2 of edx-event-bus-redis).
            ordered_per_key: true,
            // As configured in Redis (AOF or RDB); and only the last ~MAXLEN entries.
            persistent: true,
            replay_from_start: true,
            seek_time: true,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.xadd(&message.topic, &wire::entry_fields(message)).await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        self.xadd(&message.topic, &wire::raw_entry_fields(message)).await
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
        let blocking = Conn::open(&self.inner.client, &self.inner.config, Purpose::Blocking)?;
        let sub = RedisSubscription::new(
            conn.clone(),
            blocking,
            self.inner.client.clone(),
            self.inner.config.clone(),
            stream.clone(),
            group.clone(),
            consumer,
            extras.claim_msgs_older_than,
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

/// Whether the error says the group (or its stream) is gone.
pub(crate) fn is_nogroup(e: &TransportError) -> bool {
    e.kind == TransportErrorKind::Rejected && e.message.contains("NOGROUP")
}
