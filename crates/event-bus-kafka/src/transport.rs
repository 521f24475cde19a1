//! The Kafka [`Transport`]: an idempotent producer that waits for each
//! delivery report, the schema registry client, and consumer subscriptions.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, GroupLag, OutgoingMessage, RawMessage, SubscribeRequest, Subscription,
    Transport, TransportError, TransportErrorKind,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::error::{self, transport_error};
use crate::positions::{parse_position, position};
use crate::registry::SchemaRegistry;
use crate::settings::{mask_text, KafkaSettings};
use crate::subscription::KafkaSubscription;
use crate::wire::{build_record, decode_incoming, raw_message, DecodeFailure};

/// How long blocking broker calls may take (metadata, watermarks, offsets
/// for times, seeks, topic creation).
pub(crate) const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The producer's context: librdkafka logs to tracing, fatal errors noted.
pub(crate) struct ProducerContext {
    fatal: Arc<Mutex<Option<String>>>,
    settings: Arc<KafkaSettings>,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        error::log(level, fac, &mask_text(log_message, &self.settings));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = mask_text(reason, &self.settings);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "fatal Kafka producer error");
            let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| format!("{error}: {reason}"));
        } else {
            tracing::warn!(%error, reason, "Kafka producer error");
        }
    }
}

/// A connection to a Kafka cluster and its schema registry.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use event_bus_kafka::{KafkaSettings, KafkaTransport};
/// use openedx_events::bus::{EventBusProducer, Transport};
/// use openedx_events::{catalog, metadata::EventsMetadata};
/// let transport: Arc<dyn Transport> =
///     Arc::new(KafkaTransport::connect(KafkaSettings::new("127.0.0.1:9092", "http://127.0.0.1:8081")).unwrap());
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = t.data_from_json(&serde_json::json!({"user": {"id": 1, "is_active": true,
///     "pii": {"username": "ada", "email": "ada@example.com", "name": "Ada"}}})).unwrap();
/// let producer = EventBusProducer::new(transport, Some("dev".into()));
/// let position = producer
///     .send(t, "user-login", Some("user.pii.username"), &data, &EventsMetadata::new(t.name(), 0))
///     .await
///     .unwrap();
/// println!("delivered at {position:?}");
/// # });
/// ```
pub struct KafkaTransport {
    settings: Arc<KafkaSettings>,
    registry: Arc<SchemaRegistry>,
    producer: FutureProducer<ProducerContext>,
    fatal: Arc<Mutex<Option<String>>>,
    /// Dead-letter topics known to exist.
    known_topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("bootstrap_servers", &self.settings.bootstrap_servers)
            .field("registry", &self.registry)
            .finish()
    }
}

impl KafkaTransport {
    /// Create the producer and the registry client. Nothing is contacted
    /// yet: librdkafka connects in the background, and the registry is asked
    /// on first use of each subject.
    pub fn connect(settings: KafkaSettings) -> Result<Self, TransportError> {
        let settings = Arc::new(settings);
        let registry = SchemaRegistry::new(
            &settings.schema_registry_url,
            settings.schema_registry_auth.clone(),
            settings.schema_registry_timeout,
        )
        .map_err(TransportError::from)?
        .with_unknown_id_grace(settings.schema_registry_unknown_id_grace);
        let fatal = Arc::new(Mutex::new(None));
        let config = settings.producer_config();
        tracing::debug!(config = ?settings.redacted_config(&config), "creating the Kafka producer");
        let producer = config
            .create_with_context(ProducerContext {
                fatal: fatal.clone(),
                settings: settings.clone(),
            })
            .map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Config,
                    mask_text(&format!("cannot create the Kafka producer: {e}"), &settings),
                )
            })?;
        Ok(KafkaTransport {
            settings,
            registry: Arc::new(registry),
            producer,
            fatal,
            known_topics: Mutex::new(HashSet::new()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The schema registry client (shared by producer and consumers).
    pub fn registry(&self) -> &Arc<SchemaRegistry> {
        &self.registry
    }

    /// Join a consumer group (as [`Transport::subscribe`], with the concrete
    /// type). The dead-letter topic is not checked: see
    /// [`KafkaTransport::ensure_dead_letter_topic`].
    pub fn subscribe_kafka(&self, request: &SubscribeRequest) -> Result<KafkaSubscription, TransportError> {
        KafkaSubscription::open(self.settings.clone(), self.registry.clone(), request)
    }

    /// Make sure the dead-letter topic of consumers of `topic` exists
    /// (see [`DeadLetterTopics`](crate::settings::DeadLetterTopics)), creating
    /// it when missing with as many partitions as `topic` and the broker's
    /// default replication (not while `topic` itself does not exist: then
    /// the next subscription does it). Without it, on a
    /// broker that does not create topics by itself, no dead letter could be
    /// published and the message would be handed back for ever, pinning the
    /// committed offset. A broker that refuses to create it is a
    /// configuration error naming the topic and `EVENT_BUS_DEAD_LETTER_TOPIC`;
    /// a broker that cannot be reached, a connection error (tried again).
    /// Returns the topic, `None` when dead letters are off.
    pub async fn ensure_dead_letter_topic(&self, topic: &str) -> Result<Option<String>, TransportError> {
        let Some(dlq) = self.settings.dead_letters.for_topic(topic) else {
            return Ok(None);
        };
        if self.lock_known_topics().contains(&dlq) {
            return Ok(Some(dlq));
        }
        let settings = self.settings.clone();
        let (source, target) = (topic.to_string(), dlq.clone());
        let partitions = tokio::task::spawn_blocking(move || -> Result<Option<Option<i32>>, TransportError> {
            let consumer = browse_consumer(&settings)?;
            if partition_count(&consumer, &target)?.is_some() {
                return Ok(None);
            }
            Ok(Some(partition_count(&consumer, &source)?))
        })
        .await
        .map_err(|e| TransportError::other(format!("topic check failed: {e}")))??;
        match partitions {
            None => {}
            Some(Some(partitions)) => self.create_topic(&dlq, partitions).await?,
            Some(None) => {
                // Creating a topic while a member waits for its own topic to
                // appear kept that member from ever being assigned it on
                // tansu; the next subscription (a restart) creates it.
                tracing::warn!(topic, dead_letter_topic = %dlq,
                    "the topic does not exist yet, so its dead-letter topic is not created now");
                return Ok(Some(dlq));
            }
        }
        self.lock_known_topics().insert(dlq.clone());
        Ok(Some(dlq))
    }

    fn lock_known_topics(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn create_topic(&self, dlq: &str, partitions: i32) -> Result<(), TransportError> {
        let refused = |why: String| refused_topic(dlq, &why);
        let mut config = self.settings.common_config();
        for (k, v) in &self.settings.client_config {
            config.set(k, v);
        }
        let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| {
            refused(mask_text(
                &format!("cannot create a Kafka admin client: {e}"),
                &self.settings,
            ))
        })?;
        let new = NewTopic::new(dlq, partitions, TopicReplication::Fixed(-1));
        let options = AdminOptions::new()
            .request_timeout(Some(BROKER_CALL_TIMEOUT))
            .operation_timeout(Some(BROKER_CALL_TIMEOUT));
        let results = admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| transport_error(&format!("cannot create the dead-letter topic {dlq}"), &e))?;
        for r in results {
            match r {
                Ok(_) => {
                    tracing::warn!(topic = dlq, partitions, "created the missing dead-letter topic");
                }
                Err((_, code)) => creation_refused(dlq, code)?,
            }
        }
        Ok(())
    }

    /// Test hook: make librdkafka raise a fabricated fatal error on the
    /// producer, as an idempotence violation would.
    #[cfg(feature = "testing")]
    pub fn inject_fatal_error_for_tests(&self, reason: &str) -> Result<(), String> {
        crate::error::inject_fatal_error(self.producer.client().native_ptr(), reason)
    }

    fn check_fatal(&self) -> Result<(), TransportError> {
        if let Some(reason) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(TransportError::new(TransportErrorKind::Fatal, reason));
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Err(TransportError::new(
                TransportErrorKind::Fatal,
                format!("fatal Kafka producer error {code}: {reason}"),
            ));
        }
        Ok(())
    }

    /// Send one record and wait for its delivery report.
    async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(String, Vec<u8>)],
    ) -> Result<String, TransportError> {
        self.check_fatal()?;
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (name, v) in headers {
            h = h.insert(Header {
                key: name,
                value: Some(v.as_slice()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(value).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        let delivery = match self.producer.send_result(record) {
            Ok(d) => d,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(TransportError::new(
                    TransportErrorKind::Rejected,
                    format!(
                        "cannot publish to {topic}: the local producer queue is full \
                         (queue.buffering.max.messages={}); the broker is not keeping up or cannot be reached",
                        self.settings.producer_queue_max_messages()
                    ),
                ))
            }
            Err((e, _)) => return Err(self.delivery_error(topic, &e)),
        };
        match delivery.await {
            Ok(Ok(d)) => Ok(position(d.partition, d.offset)),
            Ok(Err((e, _))) => Err(self.delivery_error(topic, &e)),
            Err(_) => Err(TransportError::new(
                TransportErrorKind::Closed,
                format!("the Kafka producer closed before {topic} confirmed the message"),
            )),
        }
    }

    fn delivery_error(&self, topic: &str, e: &KafkaError) -> TransportError {
        let mut err = transport_error(&format!("cannot publish to {topic}"), e);
        err.message = mask_text(&err.message, &self.settings);
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            err.kind = TransportErrorKind::Fatal;
            err.message = format!("{}; fatal producer error {code}: {reason}", err.message);
        }
        err
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    fn name(&self) -> &str {
        "kafka"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::durable_log(self.settings.max_message_bytes())
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.check_fatal()?;
        let record = build_record(message, &self.registry).await?;
        self.send(&record.topic, record.key.as_deref(), &record.value, &record.headers)
            .await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        self.send(&message.topic, message.key.as_deref(), &message.value, &message.headers)
            .await
    }

    /// Joins the group after making sure its dead-letter topic exists
    /// ([`KafkaTransport::ensure_dead_letter_topic`]).
    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        self.ensure_dead_letter_topic(&request.topic).await?;
        Ok(Box::new(self.subscribe_kafka(request)?))
    }

    /// Read a topic without a consumer group (nothing is committed): every
    /// partition is assigned and read from its start (or, after
    /// `partition P offset O`, partition `P` from `O + 1` and the partitions
    /// after it from their start) up to its high watermark, in partition
    /// then offset order, so the position of the last delivery is the
    /// cursor of the next page. A topic that does not exist reads as empty.
    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let after = match after {
            None => None,
            Some(text) => Some(parse_position(text).ok_or_else(|| {
                TransportError::new(
                    TransportErrorKind::Rejected,
                    format!("bad Kafka position {text:?}: expected \"partition P offset O\""),
                )
            })?),
        };
        let settings = self.settings.clone();
        let owned_topic = topic.to_string();
        let raws = tokio::task::spawn_blocking(move || browse_blocking(&settings, &owned_topic, after, limit))
            .await
            .map_err(|e| TransportError::other(format!("browse task failed: {e}")))??;
        let mut out = Vec::with_capacity(raws.len());
        for (i, (partition, offset, raw)) in raws.into_iter().enumerate() {
            let event = decode_incoming(&raw, &self.registry).await.map_err(|e| match e {
                DecodeFailure::Unusable(reason) => reason,
                DecodeFailure::Transient(e) => e.to_string(),
            });
            out.push(Delivery {
                raw,
                tag: DeliveryTag(i as u64),
                position: position(partition, offset),
                attempt: 1,
                event,
            });
        }
        Ok(out)
    }

    async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| TransportError::other(format!("flush task failed: {e}")))?
            .map_err(|e| transport_error("cannot flush the Kafka producer", &e))
    }

    /// Per partition, the high watermark minus the group's committed offset
    /// (a partition without a committed offset counts from its low
    /// watermark, where a group with `Earliest` starts); `pending` is not
    /// known (`None`): Kafka keeps one position per partition. Read with a
    /// consumer of the group that does not join it (`OffsetFetch`), so
    /// members see no rebalance.
    ///
    /// The group is known on the topic when it has a committed offset on
    /// one of its partitions or a member subscribed to it (`ListGroups` and
    /// `DescribeGroups`); `group: None` lists the broker's groups and keeps
    /// those, one consumer per listed group reading its offsets. A group
    /// that never committed and has no member subscribed to the topic
    /// yields no rows: Kafka does not tell it from an unknown group.
    ///
    /// Listing needs the broker's `DescribeGroups`: tansu 0.6 drops the
    /// connection on one for a group that exists, so there `group: None`
    /// (and a given group without a commit on the topic) is a `Connection`
    /// error.
    async fn lag(&self, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
        let settings = self.settings.clone();
        let (topic, group) = (topic.to_string(), group.map(str::to_string));
        tokio::task::spawn_blocking(move || lag_blocking(&settings, &topic, group.as_deref()))
            .await
            .map_err(|e| TransportError::other(format!("lag task failed: {e}")))?
    }
}

/// The lag of `group` (or of every group) on `topic` (blocking; see
/// [`Transport::lag`] of [`KafkaTransport`]).
fn lag_blocking(settings: &KafkaSettings, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
    let what = format!("cannot read the consumer lag of {topic}");
    let consumer = browse_consumer(settings)?;
    // All topics: asking for a missing one by name may create it.
    let metadata = consumer
        .fetch_metadata(None, BROKER_CALL_TIMEOUT)
        .map_err(|e| transport_error(&what, &e))?;
    let mut partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => return Ok(Vec::new()),
    };
    partitions.sort_unstable();
    let mut marks = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, BROKER_CALL_TIMEOUT)
            .map_err(|e| transport_error(&format!("{what}: partition {p}"), &e))?;
        marks.push((p, low, high));
    }
    // (name, committed offsets): the given group, or the listed ones.
    let mut known = Vec::new();
    match group {
        Some(g) => {
            let committed = committed_offsets(settings, topic, &partitions, g)?;
            // Without a commit, the group is known on the topic only if a
            // member subscribed to it (asked only then: one call less, and
            // tansu 0.6 drops the connection on a DescribeGroups of a group
            // that exists).
            if committed.iter().any(Option::is_some)
                || listed_groups(&consumer, Some(g), topic, &what)?.contains(&(g.to_string(), true))
            {
                known.push((g.to_string(), committed));
            }
        }
        None => {
            for (name, subscribed) in listed_groups(&consumer, None, topic, &what)? {
                if name == BROWSE_GROUP {
                    continue;
                }
                let committed = committed_offsets(settings, topic, &partitions, &name)?;
                if subscribed || committed.iter().any(Option::is_some) {
                    known.push((name, committed));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (name, committed) in known {
        for (&(p, low, high), committed) in marks.iter().zip(committed) {
            let from = committed.unwrap_or(low).max(low);
            out.push(GroupLag {
                topic: topic.to_string(),
                group: name.clone(),
                partition: p.to_string(),
                lag: u64::try_from(high.saturating_sub(from)).unwrap_or(0),
                pending: None,
            });
        }
    }
    Ok(out)
}

/// The groups the broker lists (`ListGroups` and `DescribeGroups`; only
/// `group` if given), each with whether a member subscribed to `topic`
/// (blocking).
fn listed_groups(
    consumer: &BaseConsumer,
    group: Option<&str>,
    topic: &str,
    what: &str,
) -> Result<Vec<(String, bool)>, TransportError> {
    let listed = consumer
        .fetch_group_list(group, BROKER_CALL_TIMEOUT)
        .map_err(|e| transport_error(&format!("{what}: cannot list the consumer groups"), &e))?;
    Ok(listed
        .groups()
        .iter()
        .filter_map(|g| {
            let name = guarded_text(|| g.name())?;
            let subscribed = guarded_text(|| g.protocol_type()).as_deref() == Some("consumer")
                && g.members()
                    .iter()
                    .any(|m| m.metadata().is_some_and(|md| subscribes_to(md, topic)));
            Some((name, subscribed))
        })
        .collect())
}

/// The offsets `group` committed on `partitions` of `topic`, in order
/// (`None`: none), read by a consumer of the group that does not join it
/// (blocking).
fn committed_offsets(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[i32],
    group: &str,
) -> Result<Vec<Option<i64>>, TransportError> {
    let consumer: BaseConsumer = settings.consumer_config(group).create().map_err(|e| {
        TransportError::new(
            TransportErrorKind::Config,
            mask_text(
                &format!("cannot create a Kafka consumer of group {group}: {e}"),
                settings,
            ),
        )
    })?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, BROKER_CALL_TIMEOUT).map_err(|e| {
        transport_error(
            &format!("cannot read the offsets group {group} committed on {topic}"),
            &e,
        )
    })?;
    Ok(partitions
        .iter()
        .map(|&p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        })
        .collect())
}

/// Text of a group listing (rdkafka panics on text that is not UTF-8):
/// `None` then.
fn guarded_text<'a>(f: impl FnOnce() -> &'a str) -> Option<String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f().to_string())).ok()
}

/// Whether the metadata of a member of a `consumer` group (the consumer
/// protocol's subscription: version `i16`, then an array of topic names,
/// `i32` count and `i16`-length strings) names `topic`. Anything that does
/// not parse names nothing.
fn subscribes_to(metadata: &[u8], topic: &str) -> bool {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    let mut b = metadata;
    let topics = (|| {
        take(&mut b, 2)?;
        let count = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        let mut names = Vec::new();
        for _ in 0..count.max(0) {
            let len = i16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
            names.push(take(&mut b, usize::try_from(len).ok()?)?);
        }
        Some(names)
    })();
    topics.is_some_and(|names| names.contains(&topic.as_bytes()))
}

/// The group id of browsing consumers (never joined, never committed to).
const BROWSE_GROUP: &str = "event-bus-browse";

/// A consumer outside any group (partitions assigned, nothing committed),
/// for [`Transport::browse`] and metadata lookups.
fn browse_consumer(settings: &KafkaSettings) -> Result<BaseConsumer, TransportError> {
    // librdkafka assigns partitions only to a consumer with a group id; this
    // one never joins it (`assign`, not `subscribe`) nor commits to it.
    let config = settings.consumer_config(BROWSE_GROUP);
    config.create().map_err(|e| {
        TransportError::new(
            TransportErrorKind::Config,
            mask_text(&format!("cannot create a Kafka consumer to browse: {e}"), settings),
        )
    })
}

/// A dead-letter topic the broker will not create: a configuration error.
fn refused_topic(dlq: &str, why: &str) -> TransportError {
    TransportError::new(
        TransportErrorKind::Config,
        format!(
            "the dead-letter topic {dlq} does not exist and the broker refuses to create it ({why}): create it, \
             allow this client to create it, or set EVENT_BUS_DEAD_LETTER_TOPIC to a topic that exists"
        ),
    )
}

/// What a CreateTopics answer means: it exists (created now or already),
/// the broker is away (try again), or it refuses.
fn creation_refused(dlq: &str, code: RDKafkaErrorCode) -> Result<(), TransportError> {
    match code {
        RDKafkaErrorCode::NoError | RDKafkaErrorCode::TopicAlreadyExists => Ok(()),
        code if matches!(
            error::kind_of(Some(code)),
            TransportErrorKind::Connection | TransportErrorKind::Timeout
        ) =>
        {
            Err(TransportError::new(
                error::kind_of(Some(code)),
                format!("cannot create the dead-letter topic {dlq}: {code}"),
            ))
        }
        code => Err(refused_topic(dlq, &code.to_string())),
    }
}

/// The partitions of `topic`, `None` if it does not exist (blocking). The
/// metadata of all topics is asked for: asking for a missing topic by name
/// may make a broker create it (tansu does, with its own defaults).
fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<Option<i32>, TransportError> {
    let metadata = consumer
        .fetch_metadata(None, BROKER_CALL_TIMEOUT)
        .map_err(|e| transport_error(&format!("cannot read the metadata of {topic}"), &e))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Read up to `limit` messages of `topic` in partition then offset order,
/// after `after`, stopping at each partition's high watermark (blocking).
fn browse_blocking(
    settings: &KafkaSettings,
    topic: &str,
    after: Option<(i32, i64)>,
    limit: usize,
) -> Result<Vec<(i32, i64, RawMessage)>, TransportError> {
    let consumer = browse_consumer(settings)?;
    let what = format!("cannot browse {topic}");
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_CALL_TIMEOUT)
        .map_err(|e| transport_error(&what, &e))?;
    let mut partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => {
            tracing::debug!(topic, "browsing a topic that does not exist: nothing to read");
            return Ok(Vec::new());
        }
    };
    partitions.sort_unstable();
    let mut out = Vec::new();
    for p in partitions {
        if out.len() >= limit {
            break;
        }
        let from = match after {
            Some((ap, _)) if p < ap => continue,
            Some((ap, ao)) if p == ap => ao.saturating_add(1),
            _ => 0,
        };
        let (low, high) = consumer
            .fetch_watermarks(topic, p, BROKER_CALL_TIMEOUT)
            .map_err(|e| transport_error(&format!("{what}: partition {p}"), &e))?;
        let from = from.max(low);
        if from >= high {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(from))
            .map_err(|e| TransportError::other(format!("{what}: {e}")))?;
        consumer.assign(&tpl).map_err(|e| transport_error(&what, &e))?;
        loop {
            if out.len() >= limit {
                break;
            }
            match consumer.poll(BROKER_CALL_TIMEOUT) {
                None => {
                    tracing::warn!(topic, partition = p, high, "no message within {BROKER_CALL_TIMEOUT:?} before the high watermark; browsing goes on with the next partition");
                    break;
                }
                Some(Err(e)) => return Err(transport_error(&format!("{what}: partition {p}"), &e)),
                Some(Ok(m)) => {
                    use rdkafka::message::Message;
                    if m.partition() != p {
                        continue;
                    }
                    let offset = m.offset();
                    out.push((p, offset, raw_message(&m)));
                    if offset + 1 >= high {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_subscriptions_are_parsed_defensively() {
        // version 1, topics ["a", "dev-t"], then user data.
        let md = [
            0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 5, b'd', b'e', b'v', b'-', b't', 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(subscribes_to(&md, "dev-t"));
        assert!(subscribes_to(&md, "a"));
        assert!(!subscribes_to(&md, "dev"));
        assert!(!subscribes_to(&md[..9], "dev-t"), "truncated");
        assert!(
            !subscribes_to(&[0, 1, 0x7f, 0xff, 0xff, 0xff], "a"),
            "a count past the end"
        );
        assert!(!subscribes_to(&[], "a"));
    }

    #[test]
    fn a_refused_dead_letter_topic_names_itself_and_the_setting() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::PolicyViolation,
            RDKafkaErrorCode::InvalidReplicationFactor,
        ] {
            let e = creation_refused("dev-user-login-dlq", code).unwrap_err();
            assert!(e.is_fatal(), "{code:?}: {e}");
            assert!(e.message.contains("dev-user-login-dlq"), "{e}");
            assert!(e.message.contains("EVENT_BUS_DEAD_LETTER_TOPIC"), "{e}");
        }
        let away = creation_refused("d", RDKafkaErrorCode::RequestTimedOut).unwrap_err();
        assert!(!away.is_fatal(), "{away}");
        assert!(creation_refused("d", RDKafkaErrorCode::TopicAlreadyExists).is_ok());
    }
}
