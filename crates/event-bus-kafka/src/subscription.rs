//! A consumer group membership on one topic: the Kafka [`Subscription`].
//!
//! - **Commits.** Auto-commit and auto offset store are off. Each message
//!   handed out is tracked per partition until acknowledged; `flush_acks`
//!   commits, per partition, the lowest offset still in flight (or the last
//!   acknowledged offset plus one when nothing is): out-of-order acks never
//!   commit past an unfinished message (see [`crate::tracker`]).
//! - **Rebalances.** A [`ConsumerContext`] commits what was acknowledged on
//!   revoked partitions synchronously before they go, then forgets their
//!   in-flight messages (another member will get them again from the
//!   committed position; a late ack of such a message is ignored).
//! - **Nacks.** A nacked message is kept here and handed out again by
//!   `receive` when its delay is over, with `attempt + 1`; it stays in flight,
//!   so nothing is committed past it meanwhile.
//! - **Replay.** `seek` (and the `offset_time` extra) move each partition,
//!   when this member is (or becomes) assigned it, to the offsets found for a
//!   time (`offsets_for_times`), commit them, and go on consuming. The Python
//!   behaviour (reset, commit, then consume nothing until restarted) is the
//!   extra `"offset_time_mode": "reset_only"`.
//! - **Fatal errors** reported by librdkafka end the consume loop: `receive`
//!   returns a [`TransportErrorKind::Fatal`] error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::FutureExt;
use openedx_events::bus::delayed::{deadline_after, DelayedQueue};
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, IncomingEvent, LeaseKeeper, RawMessage, SeekTarget, StartPosition, SubscribeRequest,
    Subscription, TransportError, TransportErrorKind,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tokio::time::Instant;

use crate::errors::{self, transport_error};
use crate::registry::SchemaRegistry;
use crate::settings::{mask_text, KafkaSettings};
use crate::tracker::PartitionTracker;
use crate::wire::{decode_incoming, DecodeFailure};

/// How long blocking broker calls made by the consumer may take.
pub(crate) const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages `keep_alive` may take from Kafka while a receiver works.
const KEEP_ALIVE_BUFFER: usize = 256;
/// How often `reset_only` mode says it is idle.
const RESET_NOTICE_EVERY: Duration = Duration::from_secs(30);

/// What to do once the offsets were moved to `offset_time` (the extra
/// `offset_time_mode`: `"replay"` or `"reset_only"`).
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use openedx_events::bus::transport::{StartPosition, SubscribeRequest, Transport};
/// use event_bus_kafka::{KafkaSettings, KafkaTransport};
/// let t = KafkaTransport::connect(KafkaSettings::new("127.0.0.1:9092", "http://127.0.0.1:8081")).unwrap();
/// let mut extras = serde_json::Map::new();
/// // Python's `--extra '{"offset_time": "..."}'`, and its behaviour:
/// // reset and commit the offsets, then consume nothing.
/// extras.insert("offset_time".into(), "2023-03-14T05:56:05+00:00".into());
/// extras.insert("offset_time_mode".into(), "reset_only".into());
/// let sub = t.subscribe(&SubscribeRequest { topic: "dev-user-login".into(), group: "analytics".into(),
///     consumer_name: "worker-1".into(), start: StartPosition::Earliest, extras }).await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetTimeMode {
    /// Move to the time and keep consuming (the default).
    #[default]
    Replay,
    /// As Python: move to the time, commit, then deliver nothing; the
    /// operator restarts the consumer without `offset_time`.
    ResetOnly,
}

/// The broker position text of a message: `partition P offset O`.
///
/// ```
/// use event_bus_kafka::consumer::{parse_position, position};
/// assert_eq!(position(2, 17), "partition 2 offset 17");
/// assert_eq!(parse_position("partition 2 offset 17"), Some((2, 17)));
/// assert_eq!(parse_position("2:17"), Some((2, 17)));
/// ```
pub fn position(partition: i32, offset: i64) -> String {
    format!("partition {partition} offset {offset}")
}

/// Parse `partition P offset O` (or `P:O`).
pub fn parse_position(text: &str) -> Option<(i32, i64)> {
    let t = text.trim();
    if let Some((p, o)) = t.split_once(':') {
        return Some((p.trim().parse().ok()?, o.trim().parse().ok()?));
    }
    let mut words = t.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next(), words.next()) {
        (Some("partition"), Some(p), Some("offset"), Some(o), None) => Some((p.parse().ok()?, o.parse().ok()?)),
        _ => None,
    }
}

/// Parse an `offset_time` the way Python's `datetime.fromisoformat` reads
/// it: a date, or a date and time (`T` or space), optional fraction, optional
/// UTC offset (`Z`, `+01:00`, `+0100`). A time without offset is taken as UTC
/// (Python takes the process's local time zone: the same on servers in UTC).
///
/// ```
/// use event_bus_kafka::consumer::parse_offset_time;
/// let t = parse_offset_time("2023-03-14T05:56:05.314331+01:00").unwrap();
/// assert_eq!(t.to_rfc3339(), "2023-03-14T04:56:05.314331+00:00");
/// assert_eq!(parse_offset_time("2023-03-14").unwrap().to_rfc3339(), "2023-03-14T00:00:00+00:00");
/// assert!(parse_offset_time("yesterday").is_err());
/// ```
pub fn parse_offset_time(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let normalized = if t.len() > 10 && t.as_bytes().get(10) == Some(&b' ') {
        format!("{}T{}", &t[..10], &t[11..])
    } else {
        t.to_string()
    };
    if let Ok(d) = DateTime::parse_from_rfc3339(&normalized) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(&normalized, f) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(&normalized, f) {
            return Ok(d.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&normalized, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return Ok(dt.and_utc());
        }
    }
    Err(format!(
        "Could not parse the offset timestamp {text:?}: expected an ISO datetime such as 2023-03-14T05:56:05+00:00"
    ))
}

/// A Kafka message as the core holds it.
pub(crate) fn raw_message(m: &BorrowedMessage<'_>) -> RawMessage {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|hdr| (hdr.key.to_string(), hdr.value.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    RawMessage {
        topic: m.topic().to_string(),
        key: m.key().map(<[u8]>::to_vec),
        headers,
        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp: m.timestamp().to_millis().and_then(DateTime::from_timestamp_millis),
    }
}

/// One message taken from Kafka and not yet acknowledged.
struct Held {
    partition: i32,
    offset: i64,
    raw: RawMessage,
    /// `None` until the writer schema was looked up.
    event: Option<Result<IncomingEvent, String>>,
    attempts: u32,
}

impl Held {
    fn delivery(&self, tag: u64) -> Delivery {
        Delivery {
            raw: self.raw.clone(),
            tag: DeliveryTag(tag),
            position: position(self.partition, self.offset),
            attempt: self.attempts,
            event: self
                .event
                .clone()
                .unwrap_or_else(|| Err("the message was not decoded".to_string())),
        }
    }
}

#[derive(Default)]
struct Replay {
    target: Option<SeekTarget>,
    mode: OffsetTimeMode,
    /// Partitions already moved to the target by this member.
    applied: HashSet<i32>,
}

#[derive(Default)]
struct GroupState {
    partitions: HashMap<i32, PartitionTracker>,
    held: HashMap<u64, Held>,
    /// Taken from Kafka, not yet handed out, in arrival order.
    ready: VecDeque<u64>,
    /// Nacked, waiting for their delay (the message stays in `held`).
    retry: DelayedQueue<()>,
    next_tag: u64,
    replay: Replay,
    /// Partitions moved to a time: messages older than it (broker
    /// timestamp, ms) are skipped until the first one at or after it. Kafka
    /// answers `offsets_for_times` exactly and nothing is skipped; a broker
    /// that answers loosely (tansu) is corrected here.
    skip_before: HashMap<i32, i64>,
    /// Whether anything was ever assigned (for logs).
    assigned_once: bool,
}

impl GroupState {
    /// Forget everything about these partitions (revoked or moved).
    fn forget_partitions(&mut self, partitions: &[i32]) {
        let gone: HashSet<u64> = self
            .held
            .iter()
            .filter(|(_, h)| partitions.contains(&h.partition))
            .map(|(t, _)| *t)
            .collect();
        self.held.retain(|t, _| !gone.contains(t));
        self.ready.retain(|t| !gone.contains(t));
        self.retry.retain(|t, _| !gone.contains(&t.0));
        for p in partitions {
            self.partitions.remove(p);
        }
    }
}

/// State shared between the subscription and its consumer context (which
/// runs the rebalance callbacks while the subscription polls).
pub(crate) struct Shared {
    topic: String,
    group: String,
    state: Mutex<GroupState>,
    fatal: Mutex<Option<String>>,
    settings: Arc<KafkaSettings>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_fatal(&self, reason: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(reason);
        }
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// Commit synchronously what was acknowledged on `partitions`.
    fn commit_acked(&self, consumer: &impl Consumer<GroupContext>, partitions: &[i32], why: &str) {
        let positions: Vec<(i32, i64)> = {
            let st = self.lock();
            partitions
                .iter()
                .filter_map(|p| st.partitions.get(p).and_then(|t| t.commit_position()).map(|o| (*p, o)))
                .collect()
        };
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &positions {
            if let Err(e) = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o)) {
                tracing::warn!(error = %e, "cannot build the commit list");
                return;
            }
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                tracing::info!(topic = %self.topic, group = %self.group, ?positions, "committed acknowledged offsets {why}");
                let mut st = self.lock();
                for (p, o) in positions {
                    if let Some(t) = st.partitions.get_mut(&p) {
                        t.committed(o);
                    }
                }
            }
            Err(e) => tracing::warn!(topic = %self.topic, group = %self.group, error = %e,
                "could not commit acknowledged offsets {why}; those messages will be delivered again"),
        }
    }

    /// The offsets the replay target means for `partitions` (blocking).
    fn target_offsets(
        &self,
        consumer: &impl Consumer<GroupContext>,
        target: &SeekTarget,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, String> {
        let watermark = |p: i32, high: bool| -> Result<i64, String> {
            consumer
                .fetch_watermarks(&self.topic, p, BROKER_CALL_TIMEOUT)
                .map(|(lo, hi)| if high { hi } else { lo })
                .map_err(|e| format!("cannot read the offsets of {} partition {p}: {e}", self.topic))
        };
        let mut out = Vec::new();
        match target {
            SeekTarget::Earliest => {
                for p in partitions {
                    out.push((*p, watermark(*p, false)?));
                }
            }
            SeekTarget::Latest => {
                for p in partitions {
                    out.push((*p, watermark(*p, true)?));
                }
            }
            SeekTarget::After(text) => {
                let Some((p, o)) = parse_position(text) else {
                    return Err(format!(
                        "bad Kafka position {text:?}: expected \"partition P offset O\""
                    ));
                };
                if partitions.contains(&p) {
                    out.push((p, o + 1));
                }
            }
            SeekTarget::Time(t) => {
                let ms = t.timestamp_millis();
                let mut tpl = TopicPartitionList::new();
                for p in partitions {
                    tpl.add_partition_offset(&self.topic, *p, Offset::Offset(ms))
                        .map_err(|e| e.to_string())?;
                }
                let found = consumer
                    .offsets_for_times(tpl, BROKER_CALL_TIMEOUT)
                    .map_err(|e| format!("Error getting offsets for timestamps: {e}"))?;
                for e in found.elements_for_topic(&self.topic) {
                    if let Err(err) = e.error() {
                        return Err(format!(
                            "Error getting offsets for timestamps: partition {}: {err}",
                            e.partition()
                        ));
                    }
                    let offset = match e.offset() {
                        Offset::Offset(o) => o,
                        // No message at or after the time: the end.
                        _ => watermark(e.partition(), true)?,
                    };
                    out.push((e.partition(), offset));
                }
            }
        }
        Ok(out)
    }

    /// On assignment: move newly assigned partitions to the replay target
    /// (setting their offsets in `tpl`) and commit those offsets.
    fn on_assign(&self, consumer: &BaseConsumer<GroupContext>, tpl: &mut TopicPartitionList) {
        let partitions = self.partitions_of(tpl);
        let (target, todo) = {
            let mut st = self.lock();
            st.assigned_once = true;
            for p in &partitions {
                st.partitions.insert(*p, PartitionTracker::default());
            }
            let todo: Vec<i32> = partitions
                .iter()
                .copied()
                .filter(|p| !st.replay.applied.contains(p))
                .collect();
            (st.replay.target.clone(), todo)
        };
        tracing::info!(topic = %self.topic, group = %self.group, ?partitions, "partitions assigned");
        let Some(target) = target else {
            return;
        };
        if todo.is_empty() {
            return;
        }
        match self.target_offsets(consumer, &target, &todo) {
            Ok(offsets) => {
                for (p, o) in &offsets {
                    if let Err(e) = tpl.set_partition_offset(&self.topic, *p, Offset::Offset(*o)) {
                        tracing::warn!(error = %e, partition = p, "cannot set the replay offset");
                    }
                }
                self.commit_moved(consumer, &offsets, &target);
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, group = %self.group, error = %e, "cannot move the group");
                self.set_fatal(format!(
                    "cannot move {} for group {} to {target:?}: {e}",
                    self.topic, self.group
                ));
            }
        }
    }

    /// Commit offsets a seek moved to, and start tracking from there.
    fn commit_moved(&self, consumer: &impl Consumer<GroupContext>, offsets: &[(i32, i64)], target: &SeekTarget) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            if tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o)).is_err() {
                return;
            }
        }
        let committed = match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(topic = %self.topic, group = %self.group, error = %e,
                    "could not commit the offsets found for the replay; they apply to this member only");
                false
            }
        };
        tracing::info!(topic = %self.topic, group = %self.group, ?target, ?offsets, committed,
            "Found offsets for the replay target; partitions moved");
        let mut st = self.lock();
        for (p, o) in offsets {
            st.replay.applied.insert(*p);
            if let Some(t) = st.partitions.get_mut(p) {
                t.reset(committed.then_some(*o));
            }
            match target {
                SeekTarget::Time(t) => st.skip_before.insert(*p, t.timestamp_millis()),
                _ => st.skip_before.remove(p),
            };
        }
    }

    /// On revocation: commit what was acknowledged, then forget the
    /// partitions' in-flight messages.
    fn on_revoke(&self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList, lost: bool) {
        let partitions = self.partitions_of(tpl);
        if lost {
            tracing::warn!(topic = %self.topic, group = %self.group, ?partitions,
                "partitions lost (session expired); their unacknowledged messages will be delivered again");
        } else {
            self.commit_acked(consumer, &partitions, "before the partitions are revoked");
        }
        self.lock().forget_partitions(&partitions);
        tracing::info!(topic = %self.topic, group = %self.group, ?partitions, "partitions revoked");
    }

    fn reset_only(&self) -> bool {
        self.lock().replay.mode == OffsetTimeMode::ResetOnly
    }
}

/// The consumer context: librdkafka logs to tracing, fatal errors noted, and
/// the rebalance callbacks.
pub(crate) struct GroupContext {
    shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        errors::log(level, fac, &mask_text(log_message, &self.shared.settings));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = mask_text(reason, &self.shared.settings);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(topic = %self.shared.topic, group = %self.shared.group, %error, reason,
                "fatal Kafka consumer error");
            self.shared.set_fatal(format!("{error}: {reason}"));
        } else {
            tracing::warn!(topic = %self.shared.topic, group = %self.shared.group, %error, reason, "Kafka consumer error");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, base: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.on_assign(base, tpl);
                let r = if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                }
                if self.shared.reset_only() {
                    if let Err(e) = base.pause(tpl) {
                        tracing::warn!(error = %e, "cannot pause the partitions (reset_only mode)");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.shared.on_revoke(base, tpl, base.assignment_lost());
                let r = if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot give up the revoked partitions");
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(error = %code, "rebalance error; giving up the assignment");
                let all: Vec<i32> = self.shared.lock().partitions.keys().copied().collect();
                self.shared.lock().forget_partitions(&all);
                if let Err(e) = base.unassign() {
                    tracing::error!(error = %e, "cannot give up the assignment");
                }
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, offsets = ?offsets.to_topic_map(), "commit failed");
        }
    }
}

type Inner = StreamConsumer<GroupContext>;

/// A member of a consumer group on one topic (see the module documentation
/// for commits, rebalances, nacks and replay).
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use openedx_events::bus::transport::{StartPosition, SubscribeRequest, Subscription};
/// use event_bus_kafka::{KafkaSettings, KafkaTransport};
/// let t = KafkaTransport::connect(KafkaSettings::new("127.0.0.1:9092", "http://127.0.0.1:8081")).unwrap();
/// let mut sub = t
///     .subscribe_kafka(&SubscribeRequest { topic: "dev-user-login".into(), group: "analytics".into(),
///         consumer_name: "worker-1".into(), start: StartPosition::Earliest, extras: Default::default() })
///     .unwrap();
/// for d in sub.receive(10, Duration::from_secs(1)).await.unwrap() {
///     match &d.event {
///         Ok(event) => println!("{} at {}", event.event_type, d.position),
///         Err(reason) => println!("unusable message at {}: {reason}", d.position),
///     }
///     sub.ack(d.tag).await.unwrap();
/// }
/// sub.flush_acks().await.unwrap(); // commits the acknowledged offsets
/// sub.close().await.unwrap(); // and leaves the group
/// # });
/// ```
pub struct KafkaSubscription {
    consumer: Option<Arc<Inner>>,
    shared: Arc<Shared>,
    registry: Arc<SchemaRegistry>,
    closed: bool,
    last_reset_notice: Option<Instant>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("topic", &self.shared.topic)
            .field("group", &self.shared.group)
            .field("closed", &self.closed)
            .finish()
    }
}

/// Read the Kafka extras of a subscription: `offset_time` and
/// `offset_time_mode`.
fn replay_extras(request: &SubscribeRequest) -> Result<(Option<SeekTarget>, OffsetTimeMode), TransportError> {
    let config = |m: String| TransportError::new(TransportErrorKind::Config, m);
    let mut target = None;
    let mut mode = OffsetTimeMode::Replay;
    for (k, v) in &request.extras {
        match k.as_str() {
            "offset_time" => {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                if text.is_empty() {
                    continue;
                }
                target = Some(SeekTarget::Time(parse_offset_time(&text).map_err(config)?));
            }
            "offset_time_mode" => {
                mode = match v.as_str() {
                    Some("replay") => OffsetTimeMode::Replay,
                    Some("reset_only") => OffsetTimeMode::ResetOnly,
                    _ => {
                        return Err(config(format!(
                            "extra offset_time_mode must be \"replay\" or \"reset_only\", found {v}"
                        )))
                    }
                }
            }
            other => tracing::warn!(extra = other, "unknown extra for the Kafka consumer (ignored)"),
        }
    }
    if mode == OffsetTimeMode::ResetOnly && target.is_none() {
        return Err(config("extra offset_time_mode \"reset_only\" needs offset_time".into()));
    }
    Ok((target, mode))
}

impl KafkaSubscription {
    /// Join `request.group` on `request.topic`.
    pub(crate) fn open(
        settings: Arc<KafkaSettings>,
        registry: Arc<SchemaRegistry>,
        request: &SubscribeRequest,
    ) -> Result<Self, TransportError> {
        let (target, mode) = replay_extras(request)?;
        let shared = Arc::new(Shared {
            topic: request.topic.clone(),
            group: request.group.clone(),
            state: Mutex::new(GroupState {
                replay: Replay {
                    target,
                    mode,
                    applied: HashSet::new(),
                },
                ..GroupState::default()
            }),
            fatal: Mutex::new(None),
            settings: settings.clone(),
        });
        let mut config = settings.consumer_config(&request.group);
        config.set(
            "auto.offset.reset",
            match request.start {
                StartPosition::Earliest => "earliest",
                StartPosition::Latest => "latest",
            },
        );
        let consumer: Inner = config
            .create_with_context(GroupContext { shared: shared.clone() })
            .map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Config,
                    mask_text(&format!("cannot create the Kafka consumer: {e}"), &settings),
                )
            })?;
        consumer
            .subscribe(&[&request.topic])
            .map_err(|e| transport_error(&format!("cannot subscribe to {}", request.topic), &e))?;
        if mode == OffsetTimeMode::ResetOnly {
            tracing::warn!(topic = %request.topic, group = %request.group,
                "offset_time_mode=reset_only: offsets will be reset and NOTHING will be consumed; restart without offset_time afterwards");
        }
        Ok(KafkaSubscription {
            consumer: Some(Arc::new(consumer)),
            shared,
            registry,
            closed: false,
            last_reset_notice: None,
        })
    }

    /// Test hook: make librdkafka raise a fabricated fatal error on this
    /// consumer.
    #[cfg(feature = "testing")]
    pub fn inject_fatal_error_for_tests(&self, reason: &str) -> Result<(), String> {
        let consumer = self.consumer.as_ref().ok_or("the subscription is closed")?;
        crate::errors::inject_fatal_error(consumer.client().native_ptr(), reason)
    }

    fn closed_error() -> TransportError {
        TransportError::new(TransportErrorKind::Closed, "subscription is closed")
    }

    fn is_fatal(&self) -> bool {
        self.shared.fatal().is_some()
            || self
                .consumer
                .as_ref()
                .is_some_and(|c| c.client().fatal_error().is_some())
    }

    /// Errors librdkafka reports through the consumer that need no action
    /// from the loop: the poll interval was exceeded (it rejoins on this very
    /// poll), a partition end (when enabled), and lost broker connections
    /// (librdkafka reconnects by itself; a broker restart must not count as
    /// consumer failures). They are logged as warnings.
    fn is_benign(e: &KafkaError) -> bool {
        matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::PollExceeded
                    | RDKafkaErrorCode::PartitionEOF
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
            )
        )
    }

    /// Nacked messages whose delay is over.
    fn take_due(&mut self, max: usize, out: &mut Vec<Delivery>) {
        let now = std::time::Instant::now();
        let mut st = self.shared.lock();
        for due in st.retry.pop_due(now, max.saturating_sub(out.len())) {
            if let Some(h) = st.held.get_mut(&due.tag.0) {
                h.attempts = due.attempt;
                out.push(h.delivery(due.tag.0));
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.shared.lock().retry.next_due().map(Instant::from_std)
    }

    /// Hand out ready messages, looking up writer schemas. A registry
    /// outage stops early with the error.
    async fn take_ready(&mut self, max: usize, out: &mut Vec<Delivery>) -> Result<(), TransportError> {
        while out.len() < max {
            let next = {
                let st = self.shared.lock();
                st.ready
                    .front()
                    .and_then(|t| st.held.get(t).map(|h| (*t, h.event.is_some(), h.raw.clone())))
            };
            let Some((tag, decoded, raw)) = next else {
                break;
            };
            if !decoded {
                let event = match decode_incoming(&raw, &self.registry).await {
                    Ok(e) => Ok(e),
                    Err(DecodeFailure::Unusable(reason)) => Err(reason),
                    Err(DecodeFailure::Transient(e)) => return Err(e.into()),
                };
                if let Some(h) = self.shared.lock().held.get_mut(&tag) {
                    h.event = Some(event);
                }
            }
            let mut st = self.shared.lock();
            st.ready.pop_front();
            if let Some(h) = st.held.get_mut(&tag) {
                h.attempts = 1;
                out.push(h.delivery(tag));
            }
        }
        Ok(())
    }

    fn reset_notice(&mut self) {
        if self.last_reset_notice.is_none_or(|t| t.elapsed() >= RESET_NOTICE_EVERY) {
            self.last_reset_notice = Some(Instant::now());
            tracing::warn!(topic = %self.shared.topic, group = %self.shared.group,
                "Offsets are being reset. Sleeping instead of consuming events (offset_time_mode=reset_only); restart the consumer without offset_time to consume again");
        }
    }

    /// The partitions currently assigned (local call).
    fn assigned(&self, consumer: &Inner) -> Vec<i32> {
        consumer
            .assignment()
            .map(|tpl| self.shared.partitions_of(&tpl))
            .unwrap_or_default()
    }

    /// Run a blocking call on the consumer off the async workers.
    async fn blocking<T: Send + 'static>(
        consumer: &Arc<Inner>,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, TransportError> {
        let c = consumer.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(|e| TransportError::other(format!("consumer task failed: {e}")))
    }
}

/// Serves the group's events from the loop's keeping task while a receiver
/// holds the loop (synchronous receivers block it), so the member neither
/// exceeds `max.poll.interval.ms` nor delays a rebalance.
struct KafkaLeaseKeeper {
    consumer: Arc<Inner>,
    shared: Arc<Shared>,
}

#[async_trait]
impl LeaseKeeper for KafkaLeaseKeeper {
    async fn keep_alive(&self) -> Result<(), TransportError> {
        poll_without_waiting(&self.shared, &self.consumer, KEEP_ALIVE_BUFFER);
        check_fatal(&self.shared, &self.consumer)
    }

    /// A quarter of `max.poll.interval.ms` (librdkafka's default: 300 s),
    /// at most 5 s.
    fn interval(&self) -> Duration {
        let poll_interval_ms = self
            .shared
            .settings
            .client_config
            .get("max.poll.interval.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(300_000);
        Duration::from_millis(poll_interval_ms / 4).min(Duration::from_secs(5))
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    fn lease_keeper(&self) -> Option<Arc<dyn LeaseKeeper>> {
        let consumer = self.consumer.clone().filter(|_| !self.closed)?;
        Some(Arc::new(KafkaLeaseKeeper {
            consumer,
            shared: self.shared.clone(),
        }))
    }

    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        let consumer = match (&self.consumer, self.closed) {
            (Some(c), false) => c.clone(),
            _ => return Err(Self::closed_error()),
        };
        check_fatal(&self.shared, &consumer)?;
        let max = max.max(1);
        let deadline = Instant::from_std(deadline_after(std::time::Instant::now(), wait));
        loop {
            let mut out = Vec::new();
            self.take_due(max, &mut out);
            match self.take_ready(max, &mut out).await {
                Ok(()) => {}
                // Keep the messages; hand them out once the registry answers.
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "schema registry error; the rest of the batch waits");
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if self.shared.reset_only() {
                self.reset_notice();
            }
            let first = if Instant::now() >= deadline {
                // Out of time: only what is already there.
                match consumer.recv().now_or_never() {
                    Some(r) => r,
                    None => return Ok(out),
                }
            } else {
                let until = self.next_due().map_or(deadline, |d| d.min(deadline));
                match tokio::time::timeout_at(until, consumer.recv()).await {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            };
            match first {
                Err(e) if Self::is_benign(&e) => {
                    tracing::warn!(topic = %self.shared.topic, group = %self.shared.group, error = %e,
                        "Kafka consumer notice (librdkafka recovers by itself)");
                    continue;
                }
                Err(e) => {
                    let err = on_poll_error(&self.shared, &e);
                    check_fatal(&self.shared, &consumer)?;
                    return Err(err);
                }
                Ok(m) => take(&self.shared, &m),
            }
            poll_without_waiting(&self.shared, &consumer, max);
            check_fatal(&self.shared, &consumer)?;
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let mut st = self.shared.lock();
        match st.held.remove(&tag.0) {
            Some(h) => {
                st.retry.cancel(tag);
                st.ready.retain(|t| *t != tag.0);
                if let Some(p) = st.partitions.get_mut(&h.partition) {
                    p.acked(h.offset);
                }
            }
            None => tracing::debug!(tag = tag.0, "ack of a message whose partition was revoked (ignored)"),
        }
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let mut st = self.shared.lock();
        let st = &mut *st;
        if let Some(h) = st.held.get(&tag.0) {
            // A message already waiting keeps its schedule.
            st.retry.schedule(tag, h.attempts, delay, ());
        }
        Ok(())
    }

    /// A receiver is still working: serve the group's events (a rebalance
    /// waits for every member to poll), keeping up to a few hundred messages
    /// that arrive meanwhile for the next `receive`.
    async fn keep_alive(&mut self) -> Result<(), TransportError> {
        let consumer = match (&self.consumer, self.closed) {
            (Some(c), false) => c.clone(),
            _ => return Ok(()),
        };
        poll_without_waiting(&self.shared, &consumer, KEEP_ALIVE_BUFFER);
        check_fatal(&self.shared, &consumer)
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        let Some(consumer) = self.consumer.clone() else {
            return Ok(());
        };
        let positions: Vec<(i32, i64)> = {
            let st = self.shared.lock();
            let mut v: Vec<(i32, i64)> = st
                .partitions
                .iter()
                .filter_map(|(p, t)| t.commit_position().map(|o| (*p, o)))
                .collect();
            v.sort();
            v
        };
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &positions {
            tpl.add_partition_offset(&self.shared.topic, *p, Offset::Offset(*o))
                .map_err(|e| TransportError::other(e.to_string()))?;
        }
        let result = Self::blocking(&consumer, move |c| c.commit(&tpl, CommitMode::Sync)).await?;
        match result {
            Ok(()) => {
                let mut st = self.shared.lock();
                for (p, o) in positions {
                    if let Some(t) = st.partitions.get_mut(&p) {
                        t.committed(o);
                    }
                }
                Ok(())
            }
            Err(e) => Err(transport_error(
                &format!(
                    "cannot commit offsets of {} for group {}",
                    self.shared.topic, self.shared.group
                ),
                &e,
            )),
        }
    }

    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        let consumer = match (&self.consumer, self.closed) {
            (Some(c), false) => c.clone(),
            _ => return Err(Self::closed_error()),
        };
        if let SeekTarget::After(text) = target {
            if parse_position(text).is_none() {
                return Err(TransportError::new(
                    TransportErrorKind::Rejected,
                    format!("bad Kafka position {text:?}: expected \"partition P offset O\""),
                ));
            }
        }
        {
            let mut st = self.shared.lock();
            st.replay.target = Some(target.clone());
            st.replay.applied.clear();
        }
        let assigned = self.assigned(&consumer);
        if assigned.is_empty() {
            // Applied when the group assigns partitions to this member.
            return Ok(());
        }
        let shared = self.shared.clone();
        let target = target.clone();
        let result = Self::blocking(&consumer, move |c| -> Result<Vec<(i32, i64)>, String> {
            let offsets = shared.target_offsets(c, &target, &assigned)?;
            if offsets.is_empty() {
                return Ok(offsets);
            }
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &offsets {
                tpl.add_partition_offset(&shared.topic, *p, Offset::Offset(*o))
                    .map_err(|e| e.to_string())?;
            }
            let moved = c.seek_partitions(tpl, BROKER_CALL_TIMEOUT).map_err(|e| e.to_string())?;
            for e in moved.elements() {
                if let Err(err) = e.error() {
                    return Err(format!("cannot seek partition {}: {err}", e.partition()));
                }
            }
            let partitions: Vec<i32> = offsets.iter().map(|(p, _)| *p).collect();
            {
                let mut st = shared.lock();
                st.forget_partitions(&partitions);
                for p in &partitions {
                    st.partitions.insert(*p, PartitionTracker::default());
                }
            }
            shared.commit_moved(c, &offsets, &target);
            Ok(offsets)
        })
        .await?;
        result
            .map(|_| ())
            .map_err(|e| TransportError::new(TransportErrorKind::Other, e))
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let fatal = self.is_fatal();
        if !fatal {
            if let Err(e) = self.flush_acks().await {
                // Leaving the group revokes the partitions, which commits
                // what was acknowledged once more (and logs if it cannot).
                tracing::warn!(error = %e, "could not commit before leaving the group; trying again as it leaves");
            }
        }
        self.closed = true;
        if let Some(consumer) = self.consumer.take() {
            let done = leave_group(consumer, fatal);
            match tokio::time::timeout(CLOSE_TIMEOUT, done).await {
                Ok(_) => {
                    tracing::info!(topic = %self.shared.topic, group = %self.shared.group, "left the consumer group");
                    Ok(())
                }
                Err(_) => Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    format!(
                        "leaving group {} did not finish within {CLOSE_TIMEOUT:?}; the broker will end the session",
                        self.shared.group
                    ),
                )),
            }
        } else {
            Ok(())
        }
    }
}

/// How long `close` waits for the consumer to leave its group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Leave the group on a thread of its own (it blocks: the revocation
/// commits what was acknowledged, then the member says goodbye); the receiver
/// fires when it is done. After a fatal error librdkafka cannot close the
/// consumer (it would block for ever): the client is abandoned and the
/// broker ends the session when it times out.
fn leave_group(consumer: Arc<Inner>, fatal: bool) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if fatal {
        tracing::warn!(
            "not leaving the consumer group cleanly after a fatal error; the broker will time the member out"
        );
        std::mem::forget(consumer);
        let _ = tx.send(());
        return rx;
    }
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            consumer.unsubscribe();
            drop(consumer);
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot close the Kafka consumer in the background");
    }
    rx
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            // Not closed: leave the group off the async workers (the
            // revocation still commits what was acknowledged).
            let fatal = self.shared.fatal().is_some() || consumer.client().fatal_error().is_some();
            drop(leave_group(consumer, fatal));
        }
    }
}

/// Register a message taken from Kafka.
fn take(shared: &Shared, m: &BorrowedMessage<'_>) {
    if shared.reset_only() {
        return;
    }
    let partition = m.partition();
    let offset = m.offset();
    let raw = raw_message(m);
    let mut st = shared.lock();
    let Some(tracker) = st.partitions.get_mut(&partition) else {
        tracing::debug!(partition, offset, "message of a partition no longer assigned; dropped");
        return;
    };
    tracker.delivered(offset);
    if let Some(min) = st.skip_before.get(&partition).copied() {
        match raw.timestamp.map(|t| t.timestamp_millis()) {
            Some(ts) if ts < min => {
                // Before the replay time: done, never delivered.
                if let Some(t) = st.partitions.get_mut(&partition) {
                    t.acked(offset);
                }
                tracing::debug!(partition, offset, "skipping a message older than the replay time");
                return;
            }
            _ => {
                st.skip_before.remove(&partition);
            }
        }
    }
    let tag = st.next_tag;
    st.next_tag += 1;
    st.held.insert(
        tag,
        Held {
            partition,
            offset,
            raw,
            event: None,
            attempts: 0,
        },
    );
    st.ready.push_back(tag);
}

/// A poll error as a transport error (a fatal one is remembered).
fn on_poll_error(shared: &Shared, e: &KafkaError) -> TransportError {
    let mut err = transport_error(&format!("error polling {}", shared.topic), e);
    err.message = mask_text(&err.message, &shared.settings);
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
        shared.set_fatal(err.message.clone());
        err.kind = TransportErrorKind::Fatal;
    }
    err
}

/// Take the messages the client already holds, without waiting, until
/// `limit` are ready.
fn poll_without_waiting(shared: &Shared, consumer: &Inner, limit: usize) {
    while shared.lock().ready.len() < limit {
        match consumer.recv().now_or_never() {
            Some(Ok(m)) => take(shared, &m),
            Some(Err(e)) => {
                let err = on_poll_error(shared, &e);
                tracing::warn!(error = %err, "error while polling");
                break;
            }
            None => break,
        }
    }
}

/// The fatal error of the client, if it had one.
fn check_fatal(shared: &Shared, consumer: &Inner) -> Result<(), TransportError> {
    if let Some(reason) = shared.fatal() {
        return Err(TransportError::new(TransportErrorKind::Fatal, reason));
    }
    if let Some((code, reason)) = consumer.client().fatal_error() {
        return Err(TransportError::new(
            TransportErrorKind::Fatal,
            format!("fatal Kafka consumer error {code}: {reason}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_times_parse_like_python() {
        for (text, want) in [
            ("2023-03-14T05:56:05+00:00", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14T05:56:05Z", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14 05:56:05.5+00:00", "2023-03-14T05:56:05.500+00:00"),
            ("2023-03-14T05:56:05", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14T05:56", "2023-03-14T05:56:00+00:00"),
            ("2023-03-14T07:56:05+0200", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14", "2023-03-14T00:00:00+00:00"),
        ] {
            let t = parse_offset_time(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.to_rfc3339(), want, "{text}");
        }
        let e = parse_offset_time("not a time").unwrap_err();
        assert!(e.contains("Could not parse the offset timestamp"), "{e}");
    }

    #[test]
    fn extras_are_checked() {
        let mut r = SubscribeRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer_name: "c".into(),
            start: StartPosition::Earliest,
            extras: Default::default(),
        };
        assert_eq!(replay_extras(&r).unwrap(), (None, OffsetTimeMode::Replay));
        r.extras
            .insert("offset_time".into(), "2023-03-14T05:56:05+00:00".into());
        let (target, mode) = replay_extras(&r).unwrap();
        assert!(matches!(target, Some(SeekTarget::Time(_))));
        assert_eq!(mode, OffsetTimeMode::Replay);
        r.extras.insert("offset_time_mode".into(), "reset_only".into());
        assert_eq!(replay_extras(&r).unwrap().1, OffsetTimeMode::ResetOnly);
        r.extras.insert("offset_time_mode".into(), "rewind".into());
        assert_eq!(replay_extras(&r).unwrap_err().kind, TransportErrorKind::Config);
        r.extras.insert("offset_time_mode".into(), "reset_only".into());
        r.extras.insert("offset_time".into(), "garbage".into());
        let e = replay_extras(&r).unwrap_err();
        assert!(e.is_fatal(), "a bad offset_time stops the consumer, as in Python");
        r.extras.remove("offset_time");
        assert!(replay_extras(&r).is_err(), "reset_only needs a time");
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(parse_position(&position(0, 0)), Some((0, 0)));
        assert_eq!(parse_position("partition x offset 1"), None);
        assert_eq!(parse_position("17"), None);
    }
}
