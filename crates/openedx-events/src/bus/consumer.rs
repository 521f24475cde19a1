//! The one consume loop, shared by every backend.
//!
//! Per message: run the work-cycle hooks; find the event type named by the
//! message; decode and check the data; emit it to local receivers with the
//! producer's metadata (`from_event_bus = true`); then acknowledge. Receiver
//! failures are retried with exponential backoff (in place while the
//! blocking budget allows, then handed back to the broker with the delay),
//! then dead-lettered; messages that can never be handled (unusable headers,
//! unknown event type, undecodable or invalid data) are dead-lettered at once.
//! Failures in a row count toward an optional limit, after which the loop
//! returns an error so a supervisor restarts the process. Shutdown stops
//! receiving, lets the message in hand finish, and hands the rest back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::full_topic;
use crate::datetime::isoformat_utc;
use crate::signal::{Event, Registry};

use super::dead_letter::{self, Reason};
use super::hooks::WorkCycleHook;
use super::options::ConsumerOptions;
use super::transport::{Delivery, IncomingEvent, SubscribeRequest, Subscription, Transport, TransportError};

/// Counts of one consumer run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages received (redeliveries included).
    pub received: u64,
    /// Messages every receiver handled.
    pub processed: u64,
    /// Receiver failures that were retried.
    pub retried: u64,
    /// Messages sent to the dead-letter topic (or, with dead letters off,
    /// logged and dropped).
    pub dead_lettered: u64,
    /// Work-cycle hook failures.
    pub hook_failures: u64,
    /// Failed receives.
    pub poll_failures: u64,
    /// Duplicate events skipped (deduplication window).
    pub duplicates_skipped: u64,
    /// Time spent consuming.
    pub elapsed: Duration,
}

/// Why the loop ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Too many failures in a row: exit non-zero so a supervisor restarts us.
    #[error("Too many consecutive errors, exiting ({count} in a row); last: {last}")]
    TooManyErrors {
        /// How many.
        count: u32,
        /// The last error.
        last: String,
        /// Counts so far.
        stats: ConsumerStats,
    },
    /// The transport failed in a way the consumer must not survive.
    #[error("fatal transport error: {0}")]
    Fatal(TransportError),
}

/// How often a backend is asked to keep the messages in hand while a
/// receiver runs.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

enum Handled {
    Processed,
    DeadLettered,
    Retrying,
    HandedBack,
    Failed,
}

struct LoopState {
    consecutive_errors: u32,
    last_error: String,
    stats: ConsumerStats,
    /// Attempts made per message (topic@position) while it is retried.
    attempts: HashMap<String, u32>,
    /// Ids of recently processed events, oldest first (deduplication).
    recent: VecDeque<uuid::Uuid>,
    recent_set: HashSet<uuid::Uuid>,
}

impl LoopState {
    fn remember(&mut self, id: uuid::Uuid, window: usize) {
        if window == 0 || !self.recent_set.insert(id) {
            return;
        }
        self.recent.push_back(id);
        while self.recent.len() > window {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
    }
}

impl LoopState {
    fn error(&mut self, e: impl Into<String>) {
        self.consecutive_errors += 1;
        self.last_error = e.into();
    }
}

/// A consumer: one group member on one topic.
pub struct EventBusConsumer {
    transport: Arc<dyn Transport>,
    registry: Arc<Registry>,
    options: ConsumerOptions,
    hooks: Vec<Arc<dyn WorkCycleHook>>,
}

impl EventBusConsumer {
    /// A consumer; add hooks with [`EventBusConsumer::with_hook`].
    pub fn new(transport: Arc<dyn Transport>, registry: Arc<Registry>, options: ConsumerOptions) -> Self {
        EventBusConsumer {
            transport,
            registry,
            options,
            hooks: super::hooks::default_hooks(),
        }
    }

    /// Add a work-cycle hook (runs before each message, after the defaults).
    pub fn with_hook(mut self, hook: Arc<dyn WorkCycleHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Replace all work-cycle hooks.
    pub fn with_hooks(mut self, hooks: Vec<Arc<dyn WorkCycleHook>>) -> Self {
        self.hooks = hooks;
        self
    }

    /// The options.
    pub fn options(&self) -> &ConsumerOptions {
        &self.options
    }

    /// Consume until SIGINT or SIGTERM (or the limit); a signal is a clean
    /// stop (`Ok`).
    pub async fn consume_indefinitely(&self) -> Result<ConsumerStats, ConsumerError> {
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(cancel_on_signal(shutdown.clone()));
        let result = self.consume(shutdown).await;
        watcher.abort();
        result
    }

    /// Consume until `shutdown` is cancelled (or the limit is reached).
    pub async fn consume(&self, shutdown: CancellationToken) -> Result<ConsumerStats, ConsumerError> {
        let started = Instant::now();
        let o = &self.options;
        let topic = full_topic(o.prefix.as_deref(), &o.topic);
        let mut st = LoopState {
            consecutive_errors: 0,
            last_error: String::new(),
            stats: ConsumerStats::default(),
            attempts: HashMap::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
        };
        if !o.enabled {
            tracing::error!(backend = %self.transport.name(), "event bus consumers are not enabled, exiting");
            return Ok(st.stats);
        }
        tracing::info!(backend = %self.transport.name(), full_topic = %topic, consumer_group = %o.group,
            consumer_name = %o.consumer_name, "running consumer");
        let request = SubscribeRequest {
            topic: topic.clone(),
            group: o.group.clone(),
            consumer_name: o.consumer_name.clone(),
            start: o.start.clone(),
            extras: o.extras.clone(),
        };
        let mut sub = loop {
            match self.transport.subscribe(&request).await {
                Ok(s) => break s,
                Err(e) if e.is_fatal() => return Err(ConsumerError::Fatal(e)),
                Err(e) => {
                    st.stats.poll_failures += 1;
                    tracing::error!(error = %e, full_topic = %topic, "cannot subscribe; retrying");
                    st.error(e.to_string());
                    self.check_error_limit(&st)?;
                    if sleep_or_cancel(self.poll_failure_delay(&st), &shutdown).await {
                        return Ok(st.stats);
                    }
                }
            }
        };
        let result = self.run(sub.as_mut(), &mut st, &shutdown).await;
        if let Err(e) = sub.flush_acks().await {
            tracing::warn!(error = %e, "could not flush acknowledgements on exit");
        }
        if let Err(e) = sub.close().await {
            tracing::warn!(error = %e, "could not close the subscription cleanly");
        }
        st.stats.elapsed = started.elapsed();
        tracing::info!(stats = ?st.stats, "consumer stopped");
        result.map(|()| st.stats.clone())
    }

    fn poll_failure_delay(&self, st: &LoopState) -> Duration {
        let base = self.options.poll_failure_sleep.as_secs_f64();
        let n = st.consecutive_errors.saturating_sub(1).min(5) as i32;
        Duration::from_secs_f64((base * 2f64.powi(n)).min(30.0_f64.max(base)))
    }

    fn check_error_limit(&self, st: &LoopState) -> Result<(), ConsumerError> {
        match self.options.consecutive_errors_limit {
            Some(limit) if st.consecutive_errors >= limit => Err(ConsumerError::TooManyErrors {
                count: st.consecutive_errors,
                last: st.last_error.clone(),
                stats: st.stats.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn limit_reached(&self, st: &LoopState) -> bool {
        self.options
            .limit
            .is_some_and(|l| st.stats.processed + st.stats.dead_lettered >= l)
    }

    async fn run(
        &self,
        sub: &mut dyn Subscription,
        st: &mut LoopState,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        let o = &self.options;
        loop {
            if shutdown.is_cancelled() || self.limit_reached(st) {
                return Ok(());
            }
            self.check_error_limit(st)?;
            // Not raced against the shutdown: a receive is bounded by the poll
            // timeout, and what it returns after a shutdown is handed back
            // below, so backends need not make `receive` cancel-safe.
            let batch = sub.receive(o.batch_size, o.poll_timeout).await;
            let deliveries = match batch {
                Ok(d) => d,
                Err(e) if e.is_fatal() => return Err(ConsumerError::Fatal(e)),
                Err(e) => {
                    st.stats.poll_failures += 1;
                    metrics::counter!("event_bus_receive_errors_total").increment(1);
                    tracing::error!(error = %e, "error receiving from the event bus -- no event available");
                    st.error(e.to_string());
                    if sleep_or_cancel(self.poll_failure_delay(st), shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            if deliveries.is_empty() {
                self.flush_acks(sub).await?;
                continue;
            }
            let mut rest = deliveries.into_iter();
            while let Some(d) = rest.next() {
                let stop = shutdown.is_cancelled() || self.limit_reached(st) || self.check_error_limit(st).is_err();
                if stop {
                    // Hand back what we will not handle: never dead-letter
                    // because of a shutdown.
                    for d in std::iter::once(d).chain(rest.by_ref()) {
                        nack_quietly(sub, &d, Duration::ZERO).await;
                    }
                    break;
                }
                self.handle(sub, d, st, shutdown).await?;
            }
            self.flush_acks(sub).await?;
        }
    }

    async fn flush_acks(&self, sub: &mut dyn Subscription) -> Result<(), ConsumerError> {
        match sub.flush_acks().await {
            Ok(()) => Ok(()),
            Err(e) if e.is_fatal() => Err(ConsumerError::Fatal(e)),
            Err(e) => {
                tracing::warn!(error = %e, "could not flush acknowledgements; messages may be redelivered");
                Ok(())
            }
        }
    }

    async fn handle(
        &self,
        sub: &mut dyn Subscription,
        d: Delivery,
        st: &mut LoopState,
        shutdown: &CancellationToken,
    ) -> Result<Handled, ConsumerError> {
        st.stats.received += 1;
        metrics::counter!("event_bus_messages_received_total").increment(1);
        let o = &self.options;
        // Formatted only when a log line is written.
        let message_id = Lazy(d.event.as_ref().ok().map(|e| e.metadata.id));
        if o.audit_log {
            let event_time = Lazy(d.event.as_ref().ok().map(|e| IsoTime(e.metadata.time)));
            tracing::info!(target: "event_bus::audit", topic = %d.raw.topic, message_id = %message_id,
                position = %d.position, attempt = d.attempt, event_time = %event_time, "message received");
        }
        for hook in &self.hooks {
            if let Err(e) = hook.prepare().await {
                st.stats.hook_failures += 1;
                tracing::error!(hook = hook.name(), error = %e, "work-cycle hook failed; handing the message back");
                st.error(format!("hook {}: {e}", hook.name()));
                nack_quietly(sub, &d, o.retry.initial_delay).await;
                return Ok(Handled::Failed);
            }
        }
        let mut d = d;
        // Taken out of the delivery (dead letters only need its raw message).
        let incoming = match std::mem::replace(&mut d.event, Err(String::new())) {
            Ok(e) => e,
            Err(reason) => {
                return self.dead_letter(sub, &d, st, Reason::UnusableMessage, &reason, 1).await;
            }
        };
        let event = match self.decode(incoming, &d) {
            Ok(event) => event,
            Err((reason, error)) => return self.dead_letter(sub, &d, st, reason, &error, 1).await,
        };
        if o.deduplication_window > 0 && st.recent_set.contains(&event.metadata.id) {
            tracing::info!(target: "event_bus::audit", topic = %d.raw.topic, message_id = %message_id,
                position = %d.position, "duplicate event skipped (already processed)");
            if let Err(e) = sub.ack(d.tag).await {
                return self.ack_failed(e, st);
            }
            st.stats.duplicates_skipped += 1;
            st.stats.processed += 1;
            return Ok(Handled::Processed);
        }
        let key = || format!("{}@{}", d.raw.topic, d.position);
        // Handling attempts are counted by this consumer, not taken from the
        // broker's delivery count: a message handed back at a shutdown or a
        // rebalance was delivered again without failing.
        let mut attempt = if st.attempts.is_empty() {
            1
        } else {
            st.attempts.get(&key()).copied().unwrap_or(0) + 1
        };
        let mut blocked = Duration::ZERO;
        let Some(signal) = self.registry.get(event.event_type.name()) else {
            // decode() found it a moment ago; only a concurrent change gets here.
            return self
                .dead_letter(sub, &d, st, Reason::UnknownEventType, "event type is not registered", 1)
                .await;
        };
        loop {
            let started = Instant::now();
            let outcome = {
                // Long handlers keep their message: the backend renews its
                // lease every few seconds meanwhile.
                let dispatch = signal.dispatch(event.clone(), false);
                tokio::pin!(dispatch);
                match futures::FutureExt::now_or_never(&mut dispatch) {
                    // Synchronous receivers finish at once: no timer needed.
                    Some(r) => r,
                    None => {
                        let start = tokio::time::Instant::now() + KEEP_ALIVE;
                        let mut ticker = tokio::time::interval_at(start, KEEP_ALIVE);
                        loop {
                            tokio::select! {
                                r = &mut dispatch => break r,
                                _ = ticker.tick() => {
                                    if let Err(e) = sub.keep_alive().await {
                                        tracing::warn!(error = %e, position = %d.position,
                                            "could not extend the message's lease");
                                    }
                                }
                            }
                        }
                    }
                }
            };
            let failures: Vec<String> = match outcome {
                Ok(outcomes) => outcomes
                    .iter()
                    .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.receiver)))
                    .collect(),
                Err(e) => vec![e.to_string()],
            };
            metrics::histogram!("event_bus_handle_seconds").record(started.elapsed().as_secs_f64());
            if failures.is_empty() {
                if !st.attempts.is_empty() {
                    st.attempts.remove(&key());
                }
                if let Err(e) = sub.ack(d.tag).await {
                    return self.ack_failed(e, st);
                }
                st.stats.processed += 1;
                st.consecutive_errors = 0;
                st.remember(event.metadata.id, o.deduplication_window);
                metrics::counter!("event_bus_messages_processed_total").increment(1);
                if o.audit_log {
                    tracing::info!(target: "event_bus::audit", topic = %d.raw.topic, message_id = %message_id,
                        position = %d.position, "message processed successfully");
                }
                return Ok(Handled::Processed);
            }
            let error = format!(
                "{} receiver(s) out of {} produced errors when handling {}: {}",
                failures.len(),
                signal.receiver_count(),
                event.event_type.name(),
                failures.join("; ")
            );
            tracing::error!(topic = %d.raw.topic, message_id = %message_id, position = %d.position,
                attempt, error = %error, "error handling event");
            st.error(error.clone());
            if attempt >= o.retry.max_attempts {
                if !st.attempts.is_empty() {
                    st.attempts.remove(&key());
                }
                return self
                    .dead_letter(sub, &d, st, Reason::ReceiverFailed, &error, attempt)
                    .await;
            }
            attempt += 1;
            st.stats.retried += 1;
            metrics::counter!("event_bus_messages_retried_total").increment(1);
            let delay = o.retry.delay_before(attempt);
            if blocked + delay <= o.retry.max_blocking {
                blocked += delay;
                if sleep_or_cancel(delay, shutdown).await {
                    st.attempts.insert(key(), attempt - 1);
                    nack_quietly(sub, &d, Duration::ZERO).await;
                    return Ok(Handled::HandedBack);
                }
                continue;
            }
            // Hand it back with the delay; the stream goes on meanwhile.
            st.attempts.insert(key(), attempt - 1);
            if st.attempts.len() > 100_000 {
                st.attempts.clear();
            }
            nack_quietly(sub, &d, delay).await;
            return Ok(Handled::Retrying);
        }
    }

    /// Decode and check the event data; on failure, the dead-letter reason.
    fn decode(&self, incoming: IncomingEvent, d: &Delivery) -> Result<Event, (Reason, String)> {
        let Some(signal) = self.registry.get(&incoming.event_type) else {
            return Err((
                Reason::UnknownEventType,
                format!(
                    "Unrecognized type {} found on message, cannot determine signal",
                    incoming.event_type
                ),
            ));
        };
        let t = signal.event_type().clone();
        let mut data = match &incoming.writer_schema {
            Some(writer) => t
                .decode_data_from(writer, &incoming.body)
                .map_err(|e| (Reason::Undecodable, e.to_string()))?,
            None if self.options.allow_trailing_bytes => {
                let (data, trailing) = t
                    .decode_data_prefix(&incoming.body)
                    .map_err(|e| (Reason::Undecodable, e.to_string()))?;
                if trailing > 0 {
                    tracing::warn!(event_type = %t.name(), position = %d.position, trailing,
                        "ignoring bytes after the event data (written with a newer schema?)");
                }
                data
            }
            None => t
                .decode_data(&incoming.body)
                .map_err(|e| (Reason::Undecodable, e.to_string()))?,
        };
        t.validate_data(&mut data)
            .map_err(|e| (Reason::InvalidData, e.to_string()))?;
        let mut metadata = incoming.metadata;
        if metadata.event_type != t.name() {
            metadata.event_type = t.name().to_string();
        }
        Ok(Event {
            event_type: t,
            data: Arc::new(data),
            metadata: Arc::new(metadata),
            from_event_bus: true,
        })
    }

    fn ack_failed(&self, e: TransportError, st: &mut LoopState) -> Result<Handled, ConsumerError> {
        if e.is_fatal() {
            return Err(ConsumerError::Fatal(e));
        }
        tracing::error!(error = %e, "could not acknowledge; the message may be delivered again");
        st.error(e.to_string());
        Ok(Handled::Failed)
    }

    async fn dead_letter(
        &self,
        sub: &mut dyn Subscription,
        d: &Delivery,
        st: &mut LoopState,
        reason: Reason,
        error: &str,
        attempts: u32,
    ) -> Result<Handled, ConsumerError> {
        let o = &self.options;
        st.error(format!("{}: {error}", reason.as_str()));
        metrics::counter!("event_bus_messages_dead_lettered_total", "reason" => reason.as_str()).increment(1);
        if !o.dead_letter {
            tracing::error!(topic = %d.raw.topic, position = %d.position, reason = reason.as_str(), error,
                "cannot handle message; dead letters are off, so it is dropped");
        } else {
            let dlq = full_topic(o.prefix.as_deref(), &o.dead_letter_topic());
            let letter = dead_letter::dead_letter(d, &dlq, &o.group, reason, error, attempts);
            match self.transport.publish_raw(&letter).await {
                Ok(position) => {
                    tracing::error!(topic = %d.raw.topic, position = %d.position, reason = reason.as_str(), error,
                        dead_letter_topic = %dlq, dead_letter_position = %position, "message dead-lettered");
                }
                Err(e) => {
                    tracing::error!(error = %e, dead_letter_topic = %dlq,
                        "cannot publish the dead letter; handing the message back to try again later");
                    nack_quietly(sub, d, o.retry.max_delay).await;
                    return if e.is_fatal() {
                        Err(ConsumerError::Fatal(e))
                    } else {
                        Ok(Handled::Failed)
                    };
                }
            }
        }
        if let Err(e) = sub.ack(d.tag).await {
            return self.ack_failed(e, st);
        }
        st.stats.dead_lettered += 1;
        Ok(Handled::DeadLettered)
    }
}

async fn nack_quietly(sub: &mut dyn Subscription, d: &Delivery, delay: Duration) {
    if let Err(e) = sub.nack(d.tag, delay).await {
        tracing::warn!(error = %e, position = %d.position, "could not hand the message back; the broker will redeliver it");
    }
}

/// Sleep; returns true if `shutdown` fired first.
async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Formats its content only when displayed (log fields that are often off).
struct Lazy<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// A UTC time shown in Python isoformat.
struct IsoTime(chrono::DateTime<chrono::Utc>);

impl std::fmt::Display for IsoTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&isoformat_utc(&self.0))
    }
}

/// Cancel `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested: finishing the message in hand");
    token.cancel();
}
