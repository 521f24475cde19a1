//! [`PulsarSubscription`]: one consumer of a Pulsar subscription (the
//! consumer group), a thin transport under the core's consume loop.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use openedx_events::bus::delayed::{deadline_after, DeliveryCounts};
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, SeekTarget, StartPosition, SubscribeRequest, Subscription, TransportError,
    TransportErrorKind,
};
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, SubType, TokioExecutor};
use tokio::time::Instant;

use crate::mapping;
use crate::settings::{PulsarSettings, SubscriptionKind};
use crate::transport::{classify, timed, Client};

type PulsarConsumer = Consumer<Vec<u8>, TokioExecutor>;

/// A message id as a map key: ledger, entry, partition, batch index.
type IdKey = (u64, u64, i32, i32);
/// An entry (a batch of messages shares one): ledger, entry, partition.
type EntryKey = (u64, u64, i32);

/// How long the first try of a call through pulsar-rs's consumer engine
/// waits before the channel is drained again (see `ask_last_message_id`);
/// each further try waits twice as long.
const ENGINE_RETRY: Duration = Duration::from_millis(250);

/// Bounds of the bookkeeping maps (entries of messages that went to another
/// member are forgotten past this).
const MAX_TRACKED: usize = 100_000;

/// `now + d` that never overflows (see [`deadline_after`]).
fn after(d: Duration) -> Instant {
    Instant::from_std(deadline_after(std::time::Instant::now(), d))
}

fn id_key(id: &MessageIdData) -> IdKey {
    (
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1),
    )
}

fn entry_key(id: &MessageIdData) -> EntryKey {
    (id.ledger_id, id.entry_id, id.partition.unwrap_or(-1))
}

/// The id of a whole entry (no batch index).
fn entry_id(id: &MessageIdData) -> MessageIdData {
    MessageIdData {
        ledger_id: id.ledger_id,
        entry_id: id.entry_id,
        partition: id.partition,
        ..Default::default()
    }
}

struct InFlight {
    /// The topic (partition) the message came from, for acks.
    topic: String,
    id: MessageIdData,
    /// Messages in its batch, if it came in one.
    batch_size: Option<i32>,
    /// Its key (Key_Shared ordering).
    key: Option<Vec<u8>>,
}

/// A batch entry being acknowledged message by message: the broker can
/// only acknowledge the whole entry, so its ack is sent once every message
/// of it is acknowledged; a nack of any hands the whole entry back, and
/// acks of its other messages are moot until it comes back (they are
/// delivered again: at least once).
struct BatchState {
    size: i32,
    acked: HashSet<i32>,
    nacked: bool,
}

struct Delayed {
    topic: String,
    id: MessageIdData,
}

/// A member of a consumer group (a Pulsar subscription) on one topic.
///
/// - `receive` pulls from the consumer's prefetch queue
///   (`EVENT_BUS_PULSAR_RECEIVER_QUEUE_SIZE`), within the wait.
/// - `ack` acknowledges the message id; messages of a batch are
///   acknowledged together, when the last of them is.
/// - `nack(delay)`: pulsar-rs can only ask for an immediate redelivery, so a
///   delayed nack waits in a local queue (the message stays held by this
///   member) and is sent when due; closing the subscription hands everything
///   back at once.
/// - `attempt` counts deliveries of a message to this member (pulsar-rs
///   does not expose the broker's redelivery count).
/// - With Key_Shared, a nacked message's key is held back: later messages
///   of that key taken from the broker after the nack wait locally until
///   the nacked one is redelivered (or its delay plus the operation timeout
///   passed). Messages of that key already handed to the consume loop in
///   the same batch are not held back: the loop goes on with them. For
///   strict per-key order across failures, give the loop an in-place retry
///   budget (`EVENT_BUS_RETRY_MAX_BLOCKING`).
/// - `flush_acks` waits for a request/response round trip on the consumer's
///   connection, after the acks: the broker has them when it returns.
///
/// Made by [`PulsarTransport::subscribe`](crate::PulsarTransport); the core
/// consume loop drives it:
///
/// ```no_run
/// # async fn run() -> Result<(), openedx_events::bus::TransportError> {
/// use std::time::Duration;
/// use event_bus_pulsar::{PulsarSettings, PulsarTransport};
/// use openedx_events::bus::transport::{StartPosition, SubscribeRequest, Transport};
/// let transport = PulsarTransport::connect(PulsarSettings::new("pulsar://localhost:6650")).await?;
/// let mut extras = serde_json::Map::new();
/// extras.insert("subscription_type".into(), "key_shared".into());
/// let mut sub = transport
///     .subscribe(&SubscribeRequest {
///         topic: "dev-user-login".into(),
///         group: "my-service".into(),
///         consumer_name: "my-service-1".into(),
///         start: StartPosition::Earliest,
///         extras,
///     })
///     .await?;
/// for d in sub.receive(10, Duration::from_secs(1)).await? {
///     sub.ack(d.tag).await?;
/// }
/// sub.flush_acks().await?;
/// sub.close().await?;
/// # Ok(()) }
/// ```
pub struct PulsarSubscription {
    client: Client,
    settings: Arc<PulsarSettings>,
    pulsar_topic: String,
    topic: String,
    group: String,
    consumer_name: String,
    kind: SubscriptionKind,
    start: StartPosition,
    consumer: Option<PulsarConsumer>,
    /// Messages taken from pulsar-rs and not yet delivered. `receive` takes
    /// no more than `receive_bound`, so a slow consumer on a backlog holds
    /// at most that many here (the rest waits in pulsar-rs's bounded
    /// channel and, through flow control, at the broker). The calls that
    /// need the engine to answer (the last message id for a seek, close)
    /// empty the channel first, adding at most one channel's worth per try.
    buffer: VecDeque<pulsar::consumer::Message<Vec<u8>>>,
    /// The largest batch `receive` was asked for.
    batch_hint: usize,
    next_tag: u64,
    inflight: HashMap<u64, InFlight>,
    /// Deliveries per message to this member (bounded).
    attempts: DeliveryCounts<IdKey>,
    batches: HashMap<EntryKey, BatchState>,
    delayed: BTreeMap<(Instant, u64), Delayed>,
    /// Key_Shared: keys waiting for a nacked message: its id, and when to
    /// give up waiting (it may have gone to another member).
    held_keys: HashMap<Vec<u8>, (IdKey, Instant)>,
    /// Key_Shared: messages received while their key was held.
    parked: VecDeque<pulsar::consumer::Message<Vec<u8>>>,
    acks_unflushed: bool,
    /// After `seek(After(p))`: messages up to `p` are acknowledged, not delivered.
    skip_through: Option<MessageIdData>,
    skipped: Vec<u64>,
    closed: bool,
}

impl PulsarSubscription {
    pub(crate) async fn open(
        client: Client,
        settings: Arc<PulsarSettings>,
        pulsar_topic: String,
        request: &SubscribeRequest,
        kind: SubscriptionKind,
    ) -> Result<Self, TransportError> {
        let mut sub = PulsarSubscription {
            client,
            settings,
            pulsar_topic,
            topic: request.topic.clone(),
            group: request.group.clone(),
            consumer_name: request.consumer_name.clone(),
            kind,
            start: request.start.clone(),
            consumer: None,
            buffer: VecDeque::new(),
            batch_hint: 1,
            next_tag: 0,
            inflight: HashMap::new(),
            attempts: DeliveryCounts::new(MAX_TRACKED),
            batches: HashMap::new(),
            delayed: BTreeMap::new(),
            held_keys: HashMap::new(),
            parked: VecDeque::new(),
            acks_unflushed: false,
            skip_through: None,
            skipped: Vec::new(),
            closed: false,
        };
        sub.consumer = Some(sub.build_consumer().await?);
        tracing::info!(topic = %sub.pulsar_topic, subscription = %sub.group, subscription_type = kind.as_str(),
            "subscribed to Pulsar");
        Ok(sub)
    }

    fn limit(&self) -> Duration {
        self.settings.operation_timeout
    }

    /// What `receive` takes from pulsar-rs ahead of the consume loop: twice
    /// the largest batch asked for, or the receiver queue size if larger.
    fn receive_bound(&self) -> usize {
        self.batch_hint
            .saturating_mul(2)
            .max(self.settings.receiver_queue_size as usize)
            .max(1)
    }

    /// How many messages are taken from pulsar-rs and not yet handed out.
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.parked.len()
    }

    /// A consumer builder for this subscription; `id` `None` lets pulsar-rs
    /// number it.
    fn consumer_builder(&self, id: Option<u64>) -> pulsar::ConsumerBuilder<TokioExecutor> {
        let queue = self.settings.receiver_queue_size;
        let options = pulsar::ConsumerOptions {
            initial_position: match self.start {
                StartPosition::Earliest => InitialPosition::Earliest,
                StartPosition::Latest => InitialPosition::Latest,
            },
            durable: Some(true),
            // The channel between pulsar-rs's consumer engine and us. The
            // engine asks the broker for `queue` more messages whenever it
            // has received half of them, whether or not we took them, and
            // stops (acks, seeks and closes included) while this channel is
            // full; `drain` empties it before every call that needs the
            // engine, and this size (above the permits plus one batch of
            // 1000) keeps the engine from filling it again before it
            // answers.
            receiver_queue_size: Some(queue.saturating_mul(2).saturating_add(1000)),
            ..Default::default()
        };
        let sub_type = match self.kind {
            SubscriptionKind::Shared => SubType::Shared,
            SubscriptionKind::KeyShared => SubType::KeyShared,
        };
        let mut builder = self
            .client
            .consumer()
            .with_topic(&self.pulsar_topic)
            .with_subscription(&self.group)
            .with_subscription_type(sub_type)
            .with_batch_size(queue)
            .with_options(options);
        if let Some(id) = id {
            builder = builder.with_consumer_id(id);
        }
        if !self.consumer_name.is_empty() {
            builder = builder.with_consumer_name(&self.consumer_name);
        }
        builder
    }

    async fn build_consumer(&self) -> Result<PulsarConsumer, TransportError> {
        // A random id: some brokers (pulsar-lite) do not scope consumer ids
        // by connection, and pulsar-rs numbers them from 0 in every process.
        let id = rand::random::<u64>() >> 1;
        timed(
            self.limit(),
            &format!("subscribe to {} as {}", self.pulsar_topic, self.group),
            self.consumer_builder(Some(id)).build::<Vec<u8>>(),
        )
        .await
    }

    /// The consumer, subscribing again if the last one stopped.
    async fn consumer(&mut self) -> Result<&mut PulsarConsumer, TransportError> {
        if self.closed {
            return Err(TransportError::new(
                TransportErrorKind::Closed,
                "subscription is closed",
            ));
        }
        if self.consumer.is_none() {
            let c = self.build_consumer().await?;
            tracing::info!(topic = %self.pulsar_topic, subscription = %self.group, "subscribed to Pulsar again");
            self.consumer = Some(c);
        }
        self.consumer
            .as_mut()
            .ok_or_else(|| TransportError::connection("no Pulsar consumer"))
    }

    /// The consumer died: forget what it held (the broker gives it back).
    fn lost_consumer(&mut self) {
        self.consumer = None;
        self.buffer.clear();
        self.inflight.clear();
        self.batches.clear();
        self.delayed.clear();
        self.held_keys.clear();
        self.parked.clear();
        self.acks_unflushed = false;
    }

    /// Move messages pulsar-rs has ready into the local buffer until it
    /// holds `bound` (`receive_bound` to read; everything so the engine is
    /// free to answer the request that follows, see `build_consumer`).
    /// A consumer that stopped is dropped (the next call subscribes again).
    fn drain(&mut self, bound: usize) -> Result<(), TransportError> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(());
        };
        loop {
            if self.buffer.len() + self.parked.len() >= bound {
                return Ok(());
            }
            match consumer.next().now_or_never() {
                None => return Ok(()),
                Some(Some(Ok(m))) => self.buffer.push_back(m),
                Some(Some(Err(e))) => {
                    tracing::warn!(topic = %self.pulsar_topic, error = %e, "the Pulsar consumer reported an error");
                }
                Some(None) => {
                    self.lost_consumer();
                    return Ok(());
                }
            }
        }
    }

    async fn send_nack(&mut self, topic: &str, id: MessageIdData) -> Result<(), TransportError> {
        let limit = self.limit();
        let consumer = self.consumer().await?;
        timed(limit, "negative acknowledge", async {
            consumer.nack_with_id(topic, id).await.map_err(pulsar::Error::from)
        })
        .await
    }

    async fn send_ack(&mut self, topic: &str, id: MessageIdData) -> Result<(), TransportError> {
        let limit = self.limit();
        let consumer = self.consumer().await?;
        timed(limit, "acknowledge", async {
            consumer.ack_with_id(topic, id).await.map_err(pulsar::Error::from)
        })
        .await?;
        self.acks_unflushed = true;
        Ok(())
    }

    /// Send the delayed nacks that are due; returns when the next one is.
    async fn fire_due_nacks(&mut self) -> Result<Option<Instant>, TransportError> {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                return Ok(Some(entry.key().0));
            }
            let (_, d) = entry.remove_entry();
            self.send_nack(&d.topic, d.id).await?;
        }
        Ok(None)
    }

    /// Turn a received message into a delivery (`None` if it is skipped or
    /// parked).
    fn accept(&mut self, m: pulsar::consumer::Message<Vec<u8>>, from_parked: bool) -> Option<Delivery> {
        let id = m.message_id().clone();
        if let Some(skip) = &self.skip_through {
            if mapping::position_cmp(&id, skip) != std::cmp::Ordering::Greater {
                // At or before the position sought after: already consumed.
                let tag = self.track(&m, &id);
                self.skipped.push(tag);
                return None;
            }
            self.skip_through = None;
        }
        let key = m.key_bytes().ok().flatten();
        if self.kind == SubscriptionKind::KeyShared {
            if let Some(k) = &key {
                let now = Instant::now();
                self.held_keys.retain(|_, (_, until)| *until > now);
                match self.held_keys.get(k) {
                    Some((waiting_for, _)) if *waiting_for == id_key(&id) => {
                        self.held_keys.remove(k);
                    }
                    Some(_) => {
                        self.parked.push_back(m);
                        return None;
                    }
                    None if !from_parked
                        && self
                            .parked
                            .iter()
                            .any(|p| p.key_bytes().ok().flatten().as_ref() == Some(k)) =>
                    {
                        // Keep the key's order behind the ones already waiting.
                        self.parked.push_back(m);
                        return None;
                    }
                    None => {}
                }
            }
        }
        if m.message_id.batch_size.is_some_and(|n| n > 1) {
            // A batch handed back arrives again: count its acks afresh.
            let entry = entry_key(&id);
            if self.batches.get(&entry).is_some_and(|b| b.nacked) {
                self.batches.remove(&entry);
            }
        }
        let key_id = id_key(&id);
        let attempt = self.attempts.delivered(key_id);
        let tag = self.next_tag;
        self.next_tag += 1;
        let delivery = mapping::delivery(
            &self.topic,
            &id,
            &m.payload.metadata,
            &m.payload.data,
            DeliveryTag(tag),
            attempt,
        );
        self.inflight.insert(
            tag,
            InFlight {
                topic: m.topic.clone(),
                id,
                batch_size: m.message_id.batch_size,
                key,
            },
        );
        Some(delivery)
    }

    /// Record a skipped message as in flight so it can be acknowledged.
    fn track(&mut self, m: &pulsar::consumer::Message<Vec<u8>>, id: &MessageIdData) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.inflight.insert(
            tag,
            InFlight {
                topic: m.topic.clone(),
                id: id.clone(),
                batch_size: m.message_id.batch_size,
                key: None,
            },
        );
        tag
    }

    /// Release parked messages whose key is no longer held, in order.
    fn unpark(&mut self, max: usize, out: &mut Vec<Delivery>) {
        if self.parked.is_empty() {
            return;
        }
        let now = Instant::now();
        self.held_keys.retain(|_, (_, until)| *until > now);
        let mut kept = VecDeque::new();
        let mut blocked: HashSet<Vec<u8>> = HashSet::new();
        for m in std::mem::take(&mut self.parked) {
            let key = m.key_bytes().ok().flatten().unwrap_or_default();
            if out.len() >= max || blocked.contains(&key) || self.held_keys.contains_key(&key) {
                blocked.insert(key);
                kept.push_back(m);
            } else if let Some(d) = self.accept(m, true) {
                out.push(d);
            }
        }
        kept.extend(self.parked.drain(..));
        self.parked = kept;
    }

    /// Ask the broker for the topic's last message id through the consumer.
    ///
    /// The request goes through pulsar-rs's consumer engine, which handles
    /// its events in order and stops while the channel to us is full: the
    /// messages it received before the request must reach us first. So the
    /// channel is drained, and drained again each time the answer is slow,
    /// until the answer comes or the operation timeout passes. (An abandoned
    /// try only leaves an unanswered request behind.)
    async fn ask_last_message_id(
        &mut self,
        what: &str,
    ) -> Result<Result<Vec<MessageIdData>, pulsar::Error>, TransportError> {
        let limit = self.limit();
        let deadline = after(limit);
        let mut slice = ENGINE_RETRY;
        loop {
            self.drain(usize::MAX)?;
            let consumer = self.consumer().await?;
            let this_try = slice.min(deadline.saturating_duration_since(Instant::now()));
            if let Ok(answer) = tokio::time::timeout(this_try, consumer.get_last_message_id()).await {
                return Ok(answer);
            }
            // Longer each time: a slow broker gets the time to answer.
            slice *= 2;
            if Instant::now() >= deadline {
                return Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    format!("{what}: no answer from the Pulsar broker within {limit:?}"),
                ));
            }
        }
    }

    /// The id of the last message of the topic, `None` when it has none.
    async fn last_message_id(&mut self) -> Result<Option<MessageIdData>, TransportError> {
        match self.ask_last_message_id("get the last message id").await? {
            Ok(ids) => Ok(ids.into_iter().next().filter(|id| (id.entry_id as i64) >= 0)),
            // pulsar-lite's answer for an empty topic.
            Err(e) if e.to_string().contains("no messages") => Ok(None),
            Err(e) => Err(classify("get the last message id", &e)),
        }
    }

    /// Close the consumer (within the operation timeout, draining while
    /// pulsar-rs's engine catches up, as in `ask_last_message_id`).
    async fn close_consumer(&mut self) -> Result<(), TransportError> {
        let limit = self.limit();
        let deadline = after(limit);
        let mut slice = ENGINE_RETRY;
        loop {
            // Closing: what is taken now goes back to the broker with the
            // consumer, so nothing needs keeping.
            self.drain(usize::MAX)?;
            self.buffer.clear();
            let Some(consumer) = self.consumer.as_mut() else {
                return Ok(());
            };
            let this_try = slice.min(deadline.saturating_duration_since(Instant::now()));
            slice *= 2;
            match tokio::time::timeout(this_try, consumer.close()).await {
                Ok(result) => {
                    self.consumer = None;
                    return result.map_err(|e| classify(&format!("close the consumer of {}", self.pulsar_topic), &e));
                }
                Err(_) if Instant::now() >= deadline => {
                    // Dropping it closes it in the background.
                    self.consumer = None;
                    return Err(TransportError::new(
                        TransportErrorKind::Timeout,
                        format!(
                            "close the consumer of {}: no answer from the Pulsar broker within {limit:?}",
                            self.pulsar_topic
                        ),
                    ));
                }
                Err(_) => {}
            }
        }
    }

    fn reset_local_state(&mut self) {
        self.buffer.clear();
        self.inflight.clear();
        self.batches.clear();
        self.delayed.clear();
        self.held_keys.clear();
        self.parked.clear();
        self.skip_through = None;
        self.skipped.clear();
    }
}

#[async_trait]
impl Subscription for PulsarSubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        let max = max.max(1);
        self.batch_hint = self.batch_hint.max(max);
        let deadline = after(wait);
        let mut out = Vec::new();
        loop {
            let next_due = self.fire_due_nacks().await?;
            self.unpark(max, &mut out);
            while out.len() < max {
                let Some(m) = self.buffer.pop_front() else {
                    break;
                };
                if let Some(d) = self.accept(m, false) {
                    out.push(d);
                }
            }
            if out.len() < max {
                let consumer = self.consumer().await?;
                let first = if out.is_empty() {
                    let until = next_due.map_or(deadline, |d| d.min(deadline));
                    match tokio::time::timeout_at(until, consumer.next()).await {
                        Err(_) => None,
                        Ok(None) => {
                            // pulsar-rs gave up reconnecting: subscribe again
                            // (the broker redelivers what it held).
                            tracing::warn!(topic = %self.pulsar_topic, subscription = %self.group,
                                "the Pulsar consumer stopped; subscribing again");
                            self.lost_consumer();
                            if Instant::now() >= deadline {
                                return Ok(out);
                            }
                            continue;
                        }
                        Ok(Some(Err(e))) => return Err(classify("receive", &e)),
                        Ok(Some(Ok(m))) => Some(m),
                    }
                } else {
                    None
                };
                if let Some(m) = first {
                    self.buffer.push_back(m);
                }
                self.drain(self.receive_bound())?;
                while out.len() < max {
                    let Some(m) = self.buffer.pop_front() else {
                        break;
                    };
                    if let Some(d) = self.accept(m, false) {
                        out.push(d);
                    }
                }
            }
            self.unpark(max, &mut out);
            for tag in std::mem::take(&mut self.skipped) {
                Subscription::ack(self, DeliveryTag(tag)).await?;
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        let Some(f) = self.inflight.remove(&tag.0) else {
            return Ok(());
        };
        self.attempts.forget(&id_key(&f.id));
        match f.batch_size {
            Some(size) if size > 1 => {
                let entry = entry_key(&f.id);
                if self.batches.len() >= MAX_TRACKED && !self.batches.contains_key(&entry) {
                    self.batches.clear();
                }
                let state = self.batches.entry(entry).or_insert_with(|| BatchState {
                    size,
                    acked: HashSet::new(),
                    nacked: false,
                });
                if state.nacked {
                    // The whole entry comes back: this one will be delivered again.
                    return Ok(());
                }
                state.acked.insert(f.id.batch_index.unwrap_or(-1));
                if state.acked.len() as i32 >= state.size {
                    self.batches.remove(&entry);
                    self.send_ack(&f.topic, entry_id(&f.id)).await?;
                }
                Ok(())
            }
            _ => self.send_ack(&f.topic, f.id).await,
        }
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        let Some(f) = self.inflight.remove(&tag.0) else {
            return Ok(());
        };
        let batched = f.batch_size.is_some_and(|n| n > 1);
        let id = if batched {
            let entry = entry_key(&f.id);
            let size = f.batch_size.unwrap_or(1);
            let state = self.batches.entry(entry).or_insert_with(|| BatchState {
                size,
                acked: HashSet::new(),
                nacked: false,
            });
            if state.nacked {
                // Already handed back (or about to be).
                return Ok(());
            }
            state.nacked = true;
            entry_id(&f.id)
        } else {
            f.id.clone()
        };
        if self.kind == SubscriptionKind::KeyShared {
            if let Some(k) = &f.key {
                let until = after(delay.saturating_add(self.limit()));
                self.held_keys.insert(k.clone(), (id_key(&f.id), until));
            }
        }
        if delay.is_zero() {
            return self.send_nack(&f.topic, id).await;
        }
        let due = after(delay);
        self.delayed.insert((due, tag.0), Delayed { topic: f.topic, id });
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        if !self.acks_unflushed || self.consumer.is_none() {
            return Ok(());
        }
        // pulsar-rs sends acks without waiting for an answer. A request on
        // the same connection and channel after them (here: the last message
        // id) is answered once the broker has processed them. (Not a ping:
        // pulsar-rs keeps one pending ping per connection, and concurrent
        // pings from consumers sharing it cancel each other.) Any answer will
        // do, an error answer too (pulsar-lite answers "Topic has no
        // messages" once everything is trimmed).
        match self.ask_last_message_id("flush acknowledgements").await? {
            Ok(_) | Err(pulsar::Error::Connection(pulsar::error::ConnectionError::PulsarError(..))) => {
                self.acks_unflushed = false;
                Ok(())
            }
            Err(e) => Err(classify("flush acknowledgements", &e)),
        }
    }

    /// `Time`: the subscription is reset to the first message published at
    /// or after the time (Pulsar's seek by publish time). `Earliest` and
    /// `Latest`: the first or past the last message. `After(position)`:
    /// just after that message id.
    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        let limit = self.limit();
        let client = self.client.clone();
        let (message_id, timestamp, skip) = match target {
            SeekTarget::Time(t) => (None, Some(mapping::millis(t)), None),
            // Publish time 0: the oldest retained message. (Not the message
            // id -1:-1, which some brokers cannot take: pulsar-lite drops
            // the connection.)
            SeekTarget::Earliest => (None, Some(0), None),
            // Just after the last message now in the topic. (Not the message
            // id Long.MAX:Long.MAX, which Apache Pulsar reads as "the end"
            // but other brokers take literally: pulsar-lite then never
            // delivers anything again.)
            SeekTarget::Latest => match self.last_message_id().await? {
                Some(last) => (Some(last.clone()), None, Some(last)),
                None => (None, Some(0), None),
            },
            SeekTarget::After(p) => {
                let id = mapping::parse_position(p).map_err(|e| TransportError::new(TransportErrorKind::Other, e))?;
                (Some(id.clone()), None, Some(id))
            }
        };
        // pulsar-rs seeks by replacing the consumer with a new one that
        // reuses its id, which a broker may refuse while the old one is
        // still registered (pulsar-lite closes the whole connection). So:
        // leave the group, seek with a temporary member whose id pulsar-rs
        // picks (unique in this process), then join again with a new id.
        let _ = self.flush_acks().await;
        let _ = self.close_consumer().await;
        self.reset_local_state();
        let what = format!("seek {}", self.pulsar_topic);
        // It asks for one message at a time: few arrive while it seeks.
        let builder = self.consumer_builder(None).with_batch_size(1);
        let mut temp = timed(limit, &what, builder.build::<Vec<u8>>()).await?;
        let result = timed(limit, &what, temp.seek(None, message_id, timestamp, client)).await;
        // Whatever it received goes back to the group when it closes.
        while let Some(Some(_)) = temp.next().now_or_never() {}
        let _ = tokio::time::timeout(limit, temp.close()).await;
        drop(temp);
        result?;
        self.consumer = Some(self.build_consumer().await?);
        self.skip_through = skip;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.flush_acks().await;
        // After the acks, on the same connection: the broker gets them first.
        let closed = self.close_consumer().await;
        self.closed = true;
        self.reset_local_state();
        tracing::debug!(topic = %self.pulsar_topic, subscription = %self.group, "left the Pulsar subscription");
        flushed.and(closed)
    }
}
