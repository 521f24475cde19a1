//! Handling one message: work-cycle hooks, decoding, deduplication, the
//! receivers and their in-place retries. The result is an [`Outcome`]; the
//! loop settles it (ack, nack, dead letter) and counts it in one place
//! (`settle.rs`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;

use crate::signal::Event;

use super::super::dead_letter::Reason;
use super::super::transport::{Delivery, IncomingEvent, Subscription};
use super::instruments::TypeInstruments;
use super::state::{panic_text, LoopState};
use super::{EventBusConsumer, KEEP_ALIVE};

/// What to do with a message once handling ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Every receiver handled it (`duplicate`: it was skipped as already
    /// processed).
    Processed {
        /// The event id, to remember for deduplication.
        id: uuid::Uuid,
        /// Skipped by the deduplication window.
        duplicate: bool,
    },
    /// A receiver failed: deliver it again no sooner than `delay`, the stream
    /// going on meanwhile.
    Retry {
        /// The backoff before the next attempt.
        delay: Duration,
    },
    /// Not handled because the consumer is stopping: deliver it again at
    /// once, without counting a failure.
    HandBack,
    /// A work-cycle hook failed: deliver it again after the initial retry
    /// delay.
    HookFailed,
    /// It can never be handled, or its retries are spent.
    DeadLetter {
        /// Why.
        reason: Reason,
        /// The error text.
        error: String,
        /// Handling attempts made.
        attempts: u32,
    },
}

/// An outcome and the retries made in place on the way to it.
pub(super) struct Handled {
    pub outcome: Outcome,
    pub retried_in_place: u32,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Self {
        Handled {
            outcome,
            retried_in_place: 0,
        }
    }
}

fn dead_letter(reason: Reason, error: impl Into<String>) -> Handled {
    Outcome::DeadLetter {
        reason,
        error: error.into(),
        attempts: 1,
    }
    .into()
}

/// The key under which a message's attempts are remembered.
pub(super) fn attempts_key(d: &Delivery) -> String {
    format!("{}@{}", d.raw.topic, d.position)
}

impl EventBusConsumer {
    /// Handle one delivery. Its `event` is taken out (the dead letter, if
    /// any, needs only the raw message).
    pub(super) async fn handle(
        &self,
        sub: &mut dyn Subscription,
        d: &mut Delivery,
        st: &mut LoopState,
        m: &TypeInstruments,
        shutdown: &CancellationToken,
    ) -> Handled {
        let o = &self.options;
        for hook in &self.hooks {
            let result = match AssertUnwindSafe(hook.prepare()).catch_unwind().await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(p) => Err(format!("panicked: {}", panic_text(p.as_ref()))),
            };
            if let Err(e) = result {
                tracing::error!(hook = hook.name(), error = %e, "work-cycle hook failed; handing the message back");
                st.error(format!("hook {}: {e}", hook.name()));
                return Outcome::HookFailed.into();
            }
        }
        let incoming = match std::mem::replace(&mut d.event, Err(String::new())) {
            Ok(e) => e,
            Err(reason) => return dead_letter(Reason::UnusableMessage, reason),
        };
        // Bytes from the wire must never end the consumer: a decoder that
        // panics on them dead-letters the message like any undecodable one.
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| self.decode(incoming, d))).unwrap_or_else(|p| {
            Err((
                Reason::Undecodable,
                format!("the decoder panicked: {}", panic_text(p.as_ref())),
            ))
        });
        let event = match decoded {
            Ok(event) => event,
            Err((reason, error)) => return dead_letter(reason, error),
        };
        let id = event.metadata.id;
        if o.deduplication_window > 0 && st.seen(&id) {
            return Outcome::Processed { id, duplicate: true }.into();
        }
        let Some(signal) = self.registry.get(event.event_type.name()) else {
            // decode() found it a moment ago; only a concurrent change gets here.
            return dead_letter(Reason::UnknownEventType, "event type is not registered");
        };
        let mut attempt = st.attempts_made(|| attempts_key(d)) + 1;
        let mut blocked = Duration::ZERO;
        let mut retried_in_place = 0;
        loop {
            let started = Instant::now();
            let result = keep_alive_while(sub, d, signal.dispatch(event.clone(), false)).await;
            let failures: Vec<String> = match result {
                Ok(outcomes) => outcomes
                    .iter()
                    .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.receiver)))
                    .collect(),
                Err(e) => vec![e.to_string()],
            };
            m.handle_duration.record(started.elapsed().as_secs_f64());
            st.health.progress();
            if failures.is_empty() {
                st.forget_attempts(|| attempts_key(d));
                return Handled {
                    outcome: Outcome::Processed { id, duplicate: false },
                    retried_in_place,
                };
            }
            let error = format!(
                "{} receiver(s) out of {} produced errors when handling {}: {}",
                failures.len(),
                signal.receiver_count(),
                event.event_type.name(),
                failures.join("; ")
            );
            tracing::error!(topic = %d.raw.topic, message_id = %id, position = %d.position,
                attempt, error = %error, "error handling event");
            st.error(error.clone());
            if attempt >= o.retry.max_attempts {
                st.forget_attempts(|| attempts_key(d));
                let outcome = Outcome::DeadLetter {
                    reason: Reason::ReceiverFailed,
                    error,
                    attempts: attempt,
                };
                return Handled {
                    outcome,
                    retried_in_place,
                };
            }
            let delay = o.retry.delay_before(attempt + 1);
            if blocked + delay > o.retry.max_blocking {
                // Hand it back with the delay; the stream goes on meanwhile.
                st.set_attempts(attempts_key(d), attempt);
                return Handled {
                    outcome: Outcome::Retry { delay },
                    retried_in_place,
                };
            }
            blocked += delay;
            if sleep_keeping_alive(sub, d, delay, shutdown).await {
                st.set_attempts(attempts_key(d), attempt);
                return Handled {
                    outcome: Outcome::HandBack,
                    retried_in_place,
                };
            }
            attempt += 1;
            retried_in_place += 1;
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
        let undecodable = |e: crate::event::EventError| (Reason::Undecodable, e.to_string());
        let mut data = match &incoming.writer_schema {
            Some(writer) => t.decode_data_from(writer, &incoming.body).map_err(undecodable)?,
            None if self.options.allow_trailing_bytes => {
                let (data, trailing) = t.decode_data_prefix(&incoming.body).map_err(undecodable)?;
                if trailing > 0 {
                    tracing::warn!(event_type = %t.name(), position = %d.position, trailing,
                        "ignoring bytes after the event data (written with a newer schema?)");
                }
                data
            }
            None => t.decode_data(&incoming.body).map_err(undecodable)?,
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
}

/// Run `work` (the receivers), asking the backend every few seconds to keep
/// the message in hand, so a slow handler does not see it given to another
/// member.
async fn keep_alive_while<F: std::future::Future>(sub: &mut dyn Subscription, d: &Delivery, work: F) -> F::Output {
    tokio::pin!(work);
    // Synchronous receivers finish at once: no timer needed.
    if let Some(r) = (&mut work).now_or_never() {
        return r;
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = ticker.tick() => keep_alive(sub, d).await,
        }
    }
}

/// Sleep before an in-place retry, keeping the message's lease meanwhile;
/// true if `shutdown` fired first.
async fn sleep_keeping_alive(
    sub: &mut dyn Subscription,
    d: &Delivery,
    delay: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let wake = tokio::time::sleep(delay);
    tokio::pin!(wake);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        tokio::select! {
            _ = &mut wake => return false,
            _ = shutdown.cancelled() => return true,
            _ = ticker.tick() => keep_alive(sub, d).await,
        }
    }
}

async fn keep_alive(sub: &mut dyn Subscription, d: &Delivery) {
    if let Err(e) = sub.keep_alive().await {
        tracing::warn!(error = %e, position = %d.position, "could not extend the message's lease");
    }
}
