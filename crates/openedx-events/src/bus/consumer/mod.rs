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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::full_topic;
use crate::datetime::isoformat_utc;
use crate::signal::Registry;

use super::hooks::WorkCycleHook;
use super::options::ConsumerOptions;
use super::transport::{Delivery, SubscribeRequest, Subscription, Transport, TransportError};

mod handle;
mod instruments;
mod lease;
mod settle;
mod state;

pub use instruments::{describe as describe_metrics, UNKNOWN_EVENT_TYPE};
use settle::nack_quietly;
pub use state::ConsumerStats;
use state::{panic_text, LoopState};

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
/// receiver runs or an in-place retry waits.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

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
        let mut st = LoopState::new(&topic, &o.group, o.poll_timeout);
        if !o.enabled {
            tracing::error!(backend = %self.transport.name(), "event bus consumers are not enabled, exiting");
            return Ok(st.stats);
        }
        tracing::info!(backend = %self.transport.name(), full_topic = %topic, consumer_group = %o.group,
            consumer_name = %o.consumer_name, "running consumer");
        let request = SubscribeRequest {
            topic,
            group: o.group.clone(),
            consumer_name: o.consumer_name.clone(),
            start: o.start.clone(),
            extras: o.extras.clone(),
        };
        let mut slot = None;
        let result = self.run(&request, &mut slot, &mut st, &shutdown).await;
        if let Some(mut sub) = slot {
            if let Err(e) = sub.flush_acks().await {
                tracing::warn!(error = %e, "could not flush acknowledgements on exit");
            }
            if let Err(e) = sub.close().await {
                tracing::warn!(error = %e, "could not close the subscription cleanly");
            }
        }
        st.stats.elapsed = started.elapsed();
        tracing::info!(stats = ?st.stats, "consumer stopped");
        result.map(|()| st.stats.clone())
    }

    /// Join the group, retrying with a backoff; `None` if `shutdown` fired.
    async fn subscribe(
        &self,
        request: &SubscribeRequest,
        st: &mut LoopState,
        shutdown: &CancellationToken,
    ) -> Result<Option<Box<dyn Subscription>>, ConsumerError> {
        loop {
            let error = match AssertUnwindSafe(self.transport.subscribe(request)).catch_unwind().await {
                Ok(Ok(s)) => {
                    tracing::info!(full_topic = %request.topic, consumer_group = %request.group, "subscribed");
                    st.health.subscribed(true);
                    st.health.broker_ok(true);
                    st.health.progress();
                    return Ok(Some(s));
                }
                Ok(Err(e)) if e.is_fatal() => return Err(ConsumerError::Fatal(e)),
                Ok(Err(e)) => e.to_string(),
                Err(p) => format!("the backend panicked: {}", panic_text(p.as_ref())),
            };
            st.stats.poll_failures += 1;
            st.metrics.poll_failures.increment(1);
            st.health.broker_ok(false);
            st.health.progress();
            tracing::error!(error = %error, full_topic = %request.topic, "cannot subscribe; retrying");
            st.error(error);
            self.check_error_limit(st)?;
            if sleep_or_cancel(self.poll_failure_delay(st), shutdown).await {
                return Ok(None);
            }
        }
    }

    /// Backoff after failures in a row: the poll failure sleep, doubled per
    /// failure up to 30 s (or the sleep itself, if longer).
    fn poll_failure_delay(&self, st: &LoopState) -> Duration {
        let base = self.options.poll_failure_sleep;
        let n = st.consecutive_errors.saturating_sub(1).min(5);
        base.saturating_mul(1 << n).min(Duration::from_secs(30).max(base))
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

    /// The loop. A backend that panics (receiving, acknowledging) does not
    /// end it: its subscription is dropped and the group joined again, so
    /// what was not acknowledged is delivered again.
    async fn run(
        &self,
        request: &SubscribeRequest,
        slot: &mut Option<Box<dyn Subscription>>,
        st: &mut LoopState,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        let o = &self.options;
        let in_hand = lease::InHand::default();
        // Dropped (stopped) with the subscription it keeps.
        let mut lease_task: Option<lease::LeaseTask> = None;
        loop {
            if shutdown.is_cancelled() || self.limit_reached(st) {
                return Ok(());
            }
            self.check_error_limit(st)?;
            if slot.is_none() {
                match self.subscribe(request, st, shutdown).await? {
                    Some(s) => {
                        lease_task = s.lease_keeper().map(|k| lease::LeaseTask::start(k, in_hand.clone()));
                        *slot = Some(s);
                    }
                    None => return Ok(()),
                }
            }
            let Some(sub) = slot.as_mut() else { continue };
            // Not raced against the shutdown: a receive is bounded by the poll
            // timeout, and what it returns after a shutdown is handed back
            // below, so backends need not make `receive` cancel-safe.
            let batch = AssertUnwindSafe(sub.receive(o.batch_size, o.poll_timeout))
                .catch_unwind()
                .await;
            st.health.progress();
            let deliveries = match batch {
                Ok(Ok(d)) => {
                    st.health.broker_ok(true);
                    d
                }
                Ok(Err(e)) if e.is_fatal() => return Err(ConsumerError::Fatal(e)),
                Ok(Err(e)) => {
                    st.stats.poll_failures += 1;
                    st.metrics.poll_failures.increment(1);
                    st.health.broker_ok(false);
                    tracing::error!(error = %e, "error receiving from the event bus -- no event available");
                    st.error(e.to_string());
                    if sleep_or_cancel(self.poll_failure_delay(st), shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(p) => {
                    drop(lease_task.take());
                    self.drop_panicked(slot, st, "receiving", p.as_ref());
                    if sleep_or_cancel(self.poll_failure_delay(st), shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            if deliveries.is_empty() {
                self.flush_acks(sub.as_mut()).await?;
                continue;
            }
            let mut in_flight = deliveries.len() as u64;
            let mut rest = deliveries.into_iter();
            let mut panicked = None;
            while let Some(d) = rest.next() {
                st.set_in_flight(in_flight);
                let stop = shutdown.is_cancelled() || self.limit_reached(st) || self.check_error_limit(st).is_err();
                if stop {
                    // Hand back what we will not handle: never dead-letter
                    // because of a shutdown.
                    for d in std::iter::once(d).chain(rest.by_ref()) {
                        nack_quietly(sub.as_mut(), &d, Duration::ZERO).await;
                    }
                    break;
                }
                let position = d.position.clone();
                in_hand.start(st.stats.received + 1);
                let processed = AssertUnwindSafe(self.process(sub.as_mut(), d, st, shutdown))
                    .catch_unwind()
                    .await;
                in_hand.done();
                in_flight -= 1;
                st.health.progress();
                match processed {
                    Ok(r) => r?,
                    Err(p) => {
                        panicked = Some((position, p));
                        break;
                    }
                }
            }
            st.set_in_flight(0);
            if let Some((position, p)) = panicked {
                // The rest of the batch is delivered again after re-joining.
                drop(rest);
                drop(lease_task.take());
                self.drop_panicked(slot, st, &format!("handling the message at {position}"), p.as_ref());
                continue;
            }
            self.flush_acks(sub.as_mut()).await?;
        }
    }

    /// One message: count it, handle it, settle it.
    async fn process(
        &self,
        sub: &mut dyn Subscription,
        mut d: Delivery,
        st: &mut LoopState,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        st.stats.received += 1;
        let m = st
            .metrics
            .for_type(d.event.as_ref().ok().map(|e| e.event_type.as_str()), &self.registry);
        m.received.increment(1);
        let event_time = d.event.as_ref().ok().map(|e| e.metadata.time);
        if self.options.audit_log {
            let message_id = Lazy(d.event.as_ref().ok().map(|e| e.metadata.id));
            let event_time = Lazy(d.event.as_ref().ok().map(|e| IsoTime(e.metadata.time)));
            tracing::info!(target: "event_bus::audit", topic = %d.raw.topic, message_id = %message_id,
                position = %d.position, attempt = d.attempt, event_time = %event_time, "message received");
        }
        let handled = self.handle(sub, &mut d, st, &m, shutdown).await;
        self.settle(sub, &d, handled, st, &m, event_time).await
    }

    /// The backend panicked: log it, count it and drop the subscription (the
    /// loop joins the group again).
    fn drop_panicked(
        &self,
        slot: &mut Option<Box<dyn Subscription>>,
        st: &mut LoopState,
        while_doing: &str,
        p: &(dyn std::any::Any + Send),
    ) {
        let error = format!(
            "the {} backend panicked while {while_doing}: {}",
            self.transport.name(),
            panic_text(p)
        );
        tracing::error!(error = %error,
            "rejoining the consumer group; messages not acknowledged will be delivered again");
        st.stats.poll_failures += 1;
        st.metrics.poll_failures.increment(1);
        st.health.subscribed(false);
        st.error(error);
        if let Some(sub) = slot.take() {
            if std::panic::catch_unwind(AssertUnwindSafe(move || drop(sub))).is_err() {
                tracing::error!("the subscription panicked again while being dropped");
            }
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
