//! Settling a handled message, in one place: ack, nack or dead letter, and
//! the counts that go with each.
//!
//! Every fate is defined, so nothing is lost and nothing pins the stream:
//! a dead letter the broker cannot take for now (it is down) hands the
//! message back with a backoff; a dead letter the broker refuses for good
//! (too large, say) is tried once more with a short error text, and if that
//! is refused too, the message is written in full to the error log (Base64
//! bytes and headers, for recovery by hand) and acknowledged.

use std::time::Duration;

use base64::Engine as _;

use crate::config::full_topic;

use super::super::dead_letter::{self, bounded, Reason};
use super::super::transport::{Delivery, RawMessage, Subscription, TransportError, TransportErrorKind};
use super::handle::{Handled, Outcome};
use super::instruments::TypeInstruments;
use super::state::LoopState;
use super::{ConsumerError, EventBusConsumer};

/// The error text kept when a full dead letter is refused.
const SHORT_ERROR_BYTES: usize = 256;

impl EventBusConsumer {
    /// Ack, nack or dead-letter `d` as `handled` says, and count it.
    pub(super) async fn settle(
        &self,
        sub: &mut dyn Subscription,
        d: &Delivery,
        handled: Handled,
        st: &mut LoopState,
        m: &TypeInstruments,
        event_time: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ConsumerError> {
        let o = &self.options;
        if handled.retried_in_place > 0 {
            st.stats.retried += u64::from(handled.retried_in_place);
            m.retried.increment(u64::from(handled.retried_in_place));
        }
        match handled.outcome {
            Outcome::Processed { id, duplicate } => {
                // Remembered before the ack: if the ack fails, the delivery
                // that follows is a duplicate the window skips.
                st.remember(id, o.deduplication_window);
                if let Err(e) = sub.ack(d.tag).await {
                    return self.ack_failed(e, st);
                }
                st.stats.processed += 1;
                if duplicate {
                    st.stats.duplicates_skipped += 1;
                    m.duplicates_skipped.increment(1);
                    tracing::info!(target: "event_bus::audit", topic = %d.raw.topic, message_id = %id,
                        position = %d.position, "duplicate event skipped (already processed)");
                    return Ok(());
                }
                st.clear_errors();
                m.handled.increment(1);
                if let Some(time) = event_time {
                    let latency = chrono::Utc::now().signed_duration_since(time);
                    m.end_to_end_latency
                        .record(latency.num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
                }
                if o.audit_log {
                    tracing::info!(target: "event_bus::audit", topic = %d.raw.topic, message_id = %id,
                        position = %d.position, "message processed successfully");
                }
            }
            Outcome::Retry { delay } => {
                st.stats.retried += 1;
                m.retried.increment(1);
                nack_quietly(sub, d, delay).await;
            }
            Outcome::HandBack => nack_quietly(sub, d, Duration::ZERO).await,
            Outcome::HookFailed => {
                st.stats.hook_failures += 1;
                st.metrics.hook_failures.increment(1);
                nack_quietly(sub, d, o.retry.initial_delay).await;
            }
            Outcome::DeadLetter {
                reason,
                error,
                attempts,
            } => {
                return self
                    .dead_letter(
                        sub,
                        d,
                        st,
                        Why {
                            reason,
                            error: &error,
                            attempts,
                        },
                        m,
                    )
                    .await
            }
        }
        Ok(())
    }

    fn ack_failed(&self, e: TransportError, st: &mut LoopState) -> Result<(), ConsumerError> {
        if e.is_fatal() {
            return Err(ConsumerError::Fatal(e));
        }
        tracing::error!(error = %e, "could not acknowledge; the message may be delivered again");
        st.error(e.to_string());
        Ok(())
    }

    async fn dead_letter(
        &self,
        sub: &mut dyn Subscription,
        d: &Delivery,
        st: &mut LoopState,
        why: Why<'_>,
        m: &TypeInstruments,
    ) -> Result<(), ConsumerError> {
        let Why {
            reason,
            error,
            attempts,
        } = why;
        let o = &self.options;
        st.error(format!("{}: {}", reason.as_str(), bounded(error, SHORT_ERROR_BYTES)));
        if !o.dead_letter {
            tracing::error!(topic = %d.raw.topic, position = %d.position, reason = reason.as_str(), error,
                "cannot handle message; dead letters are off, so it is dropped");
        } else {
            let dlq = full_topic(o.prefix.as_deref(), &o.dead_letter_topic());
            let letter = dead_letter::dead_letter(d, &dlq, &o.group, reason, error, attempts);
            let mut published = self.transport.publish_raw(&letter).await;
            if matches!(&published, Err(e) if e.kind == TransportErrorKind::Rejected) {
                let short = bounded(error, SHORT_ERROR_BYTES);
                tracing::warn!(dead_letter_topic = %dlq, error = %published.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                    "the broker refused the dead letter; trying again with a short error text");
                let letter = dead_letter::dead_letter(d, &dlq, &o.group, reason, &short, attempts);
                published = self.transport.publish_raw(&letter).await;
            }
            match published {
                Ok(position) => {
                    tracing::error!(topic = %d.raw.topic, position = %d.position, reason = reason.as_str(), error,
                        dead_letter_topic = %dlq, dead_letter_position = %position, "message dead-lettered");
                }
                Err(e) if e.is_fatal() => {
                    nack_quietly(sub, d, Duration::ZERO).await;
                    return Err(ConsumerError::Fatal(e));
                }
                Err(e) if e.kind == TransportErrorKind::Rejected => {
                    // Refused for good: keeping it would pin the stream
                    // behind it for ever. The log line is the recovery path.
                    tracing::error!(topic = %d.raw.topic, position = %d.position, reason = reason.as_str(),
                        error, dead_letter_topic = %dlq, publish_error = %e, message = %LoggedMessage(&d.raw),
                        "the broker refuses this dead letter; the message is logged here in full and dropped");
                }
                Err(e) => {
                    let delay = self.poll_failure_delay(st);
                    tracing::error!(error = %e, dead_letter_topic = %dlq, retry_in = ?delay,
                        "cannot publish the dead letter now; handing the message back to try again later");
                    st.error(e.to_string());
                    nack_quietly(sub, d, delay).await;
                    return Ok(());
                }
            }
        }
        if let Err(e) = sub.ack(d.tag).await {
            return self.ack_failed(e, st);
        }
        st.stats.dead_lettered += 1;
        // Counted once settled: a dead letter handed back to be tried again
        // later is counted when it is done.
        m.dead_lettered(reason).increment(1);
        if reason != Reason::ReceiverFailed {
            m.decode_failures.increment(1);
        }
        Ok(())
    }
}

/// Why a message is dead-lettered.
struct Why<'a> {
    reason: Reason,
    error: &'a str,
    attempts: u32,
}

pub(super) async fn nack_quietly(sub: &mut dyn Subscription, d: &Delivery, delay: Duration) {
    if let Err(e) = sub.nack(d.tag, delay).await {
        tracing::warn!(error = %e, position = %d.position, "could not hand the message back; the broker will redeliver it");
    }
}

/// A raw message as JSON for a log line: topic, key, headers and value, the
/// bytes in Base64 (standard alphabet).
struct LoggedMessage<'a>(&'a RawMessage);

impl std::fmt::Display for LoggedMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let m = self.0;
        let headers: serde_json::Map<String, serde_json::Value> =
            m.headers.iter().map(|(k, v)| (k.clone(), b64(v).into())).collect();
        let json = serde_json::json!({
            "topic": m.topic,
            "key_base64": m.key.as_deref().map(b64),
            "headers_base64": headers,
            "value_base64": b64(&m.value),
        });
        json.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_message_can_be_rebuilt() {
        let m = RawMessage {
            topic: "t".into(),
            key: Some(vec![0, 1]),
            headers: vec![("ce_type".into(), vec![0xff, b'x'])],
            value: vec![1, 2, 3],
            timestamp: None,
        };
        let json: serde_json::Value = serde_json::from_str(&LoggedMessage(&m).to_string()).unwrap();
        let d = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
        };
        assert_eq!(d(&json["value_base64"]), m.value);
        assert_eq!(d(&json["key_base64"]), vec![0, 1]);
        assert_eq!(d(&json["headers_base64"]["ce_type"]), vec![0xff, b'x']);
    }
}
