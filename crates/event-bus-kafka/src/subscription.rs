//! A consumer group membership on one topic: the Kafka [`Subscription`].
//!
//! - **Commits.** Auto-commit and auto offset store are off. Each message
//!   handed out is tracked per partition until acknowledged; `flush_acks`
//!   commits, per partition, the lowest offset still in flight (or the last
//!   acknowledged offset plus one when nothing is): out-of-order acks never
//!   commit past an unfinished message (see [`crate::tracker`]).
//! - **Rebalances.** The consumer context (`subscription/rebalance.rs`) commits what was
//!   acknowledged on revoked partitions synchronously before they go, then
//!   forgets their in-flight messages (another member will get them again
//!   from the committed position; a late ack of such a message is ignored).
//! - **Nacks.** A nacked message is kept (`subscription/group.rs`) and handed out again by
//!   `receive` when its delay is over, with `attempt + 1`; it stays in flight,
//!   so nothing is committed past it meanwhile.
//! - **Replay.** `seek` (and the `offset_time` extra) move each partition,
//!   when this member is (or becomes) assigned it, to the offsets found for a
//!   time (`offsets_for_times`; `subscription/seek.rs`), commit them, and go on
//!   consuming. The Python behaviour (reset, commit, then consume nothing
//!   until restarted) is the extra `"offset_time_mode": "reset_only"` (see
//!   [`crate::extras`]).
//! - **Fatal errors** reported by librdkafka end the consume loop: `receive`
//!   returns a [`TransportErrorKind::Fatal`] error.
//!
//! Messages are taken from the client in `subscription/polling.rs`; while a synchronous
//! receiver holds the consume loop, the lease keeper (`subscription/lease.rs`) polls for
//! it.

mod group;
mod lease;
mod polling;
mod rebalance;
mod seek;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use openedx_events::bus::delayed::deadline_after;
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, LeaseKeeper, SeekTarget, StartPosition, SubscribeRequest, Subscription, TransportError,
    TransportErrorKind,
};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::error::transport_error;
use crate::extras::{replay_extras, OffsetTimeMode};
use crate::positions::parse_position;
use crate::registry::SchemaRegistry;
use crate::settings::{mask_text, KafkaSettings};
use crate::subscription::group::{GroupState, Replay, Shared};
use crate::subscription::lease::{KafkaLeaseKeeper, KEEP_ALIVE_BUFFER};
use crate::subscription::polling::{check_fatal, on_poll_error, poll_without_waiting, take, GroupConsumer};
use crate::subscription::rebalance::GroupContext;
use crate::wire::{decode_incoming, DecodeFailure};

/// How often `reset_only` mode says it is idle.
const RESET_NOTICE_EVERY: Duration = Duration::from_secs(30);

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
    consumer: Option<Arc<GroupConsumer>>,
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
        let consumer: GroupConsumer = config
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
        crate::error::inject_fatal_error(consumer.client().native_ptr(), reason)
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
    fn assigned(&self, consumer: &GroupConsumer) -> Vec<i32> {
        consumer
            .assignment()
            .map(|tpl| self.shared.partitions_of(&tpl))
            .unwrap_or_default()
    }

    /// Run a blocking call on the consumer off the async workers.
    async fn blocking<T: Send + 'static>(
        consumer: &Arc<GroupConsumer>,
        f: impl FnOnce(&GroupConsumer) -> T + Send + 'static,
    ) -> Result<T, TransportError> {
        let c = consumer.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(|e| TransportError::other(format!("consumer task failed: {e}")))
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
        let result = Self::blocking(&consumer, move |c| shared.seek_assigned(c, &target, &assigned)).await?;
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
fn leave_group(consumer: Arc<GroupConsumer>, fatal: bool) -> tokio::sync::oneshot::Receiver<()> {
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
