//! [`PulsarSubscription`]: one consumer of a Pulsar subscription (the
//! consumer group), a thin transport under the core's consume loop. Its
//! jobs live in the modules below: the receive path, acknowledgements, the
//! redelivery held back locally, and the calls through pulsar-rs's consumer
//! engine.

mod acks;
mod engine;
mod receive;
mod redelivery;

use std::collections::{HashMap, VecDeque};
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

use self::acks::{BatchState, EntryKey, IdKey, InFlight};
use self::redelivery::DelayedNacks;
use crate::error::{classify, timed};
use crate::settings::{PulsarSettings, SubscriptionKind};
use crate::transport::Client;
use crate::wire;

type PulsarConsumer = Consumer<Vec<u8>, TokioExecutor>;

/// Bounds of the bookkeeping maps (entries of messages that went to another
/// member are forgotten past this).
const MAX_TRACKED: usize = 100_000;

/// `now + d` that never overflows (see [`deadline_after`]).
fn after(d: Duration) -> Instant {
    Instant::from_std(deadline_after(std::time::Instant::now(), d))
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
    /// Delayed nacks, sent when due.
    delayed: DelayedNacks,
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
            delayed: DelayedNacks::new(),
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
        self.forget_held();
        self.acks_unflushed = false;
    }

    /// Forget every message held locally: buffered, in flight, delayed or
    /// parked (the broker gives back what it delivered).
    fn forget_held(&mut self) {
        self.buffer.clear();
        self.inflight.clear();
        self.batches.clear();
        self.delayed = DelayedNacks::new();
        self.held_keys.clear();
        self.parked.clear();
    }

    /// The local state after leaving the group (a seek, a close).
    fn reset_local_state(&mut self) {
        self.forget_held();
        self.skip_through = None;
        self.skipped.clear();
    }
}

#[async_trait]
impl Subscription for PulsarSubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        self.receive_deliveries(max, wait).await
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        self.ack_delivery(tag).await
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        self.nack_delivery(tag, delay).await
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
            SeekTarget::Time(t) => (None, Some(wire::millis(t)), None),
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
                let id = wire::parse_position(p).map_err(|e| TransportError::new(TransportErrorKind::Other, e))?;
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
