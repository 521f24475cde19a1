//! Taking messages from the group's client into the member's state: each
//! is registered with its partition's tracker (a message older than a
//! replay time is skipped), poll errors become transport errors, and the
//! client's fatal error ends the subscription.

use futures::FutureExt;
use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};

use crate::error::transport_error;
use crate::settings::mask_text;
use crate::subscription::group::{Held, Shared};
use crate::subscription::rebalance::GroupContext;
use crate::wire::raw_message;

/// The client of a group member.
pub(crate) type GroupConsumer = StreamConsumer<GroupContext>;

/// Register a message taken from Kafka.
pub(crate) fn take(shared: &Shared, m: &BorrowedMessage<'_>) {
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
pub(crate) fn on_poll_error(shared: &Shared, e: &KafkaError) -> TransportError {
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
pub(crate) fn poll_without_waiting(shared: &Shared, consumer: &GroupConsumer, limit: usize) {
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
pub(crate) fn check_fatal(shared: &Shared, consumer: &GroupConsumer) -> Result<(), TransportError> {
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
