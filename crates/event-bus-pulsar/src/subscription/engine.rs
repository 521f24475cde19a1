//! Calls that need pulsar-rs's consumer engine to answer (the last message
//! id, closing the consumer): the engine handles its events in order and
//! stops while its channel to the subscription is full, so these drain the
//! channel while they wait.

use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use pulsar::proto::MessageIdData;
use tokio::time::Instant;

use super::{after, PulsarSubscription};
use crate::error::classify;

/// How long the first try of a call through pulsar-rs's consumer engine
/// waits before the channel is drained again (see `ask_last_message_id`);
/// each further try waits twice as long.
const ENGINE_RETRY: Duration = Duration::from_millis(250);

impl PulsarSubscription {
    /// Ask the broker for the topic's last message id through the consumer.
    ///
    /// The request goes through pulsar-rs's consumer engine, which handles
    /// its events in order and stops while the channel to us is full: the
    /// messages it received before the request must reach us first. So the
    /// channel is drained, and drained again each time the answer is slow,
    /// until the answer comes or the operation timeout passes. (An abandoned
    /// try only leaves an unanswered request behind.)
    pub(super) async fn ask_last_message_id(
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
    pub(super) async fn last_message_id(&mut self) -> Result<Option<MessageIdData>, TransportError> {
        match self.ask_last_message_id("get the last message id").await? {
            Ok(ids) => Ok(ids.into_iter().next().filter(|id| (id.entry_id as i64) >= 0)),
            // pulsar-lite's answer for an empty topic.
            Err(e) if e.to_string().contains("no messages") => Ok(None),
            Err(e) => Err(classify("get the last message id", &e)),
        }
    }

    /// Close the consumer (within the operation timeout, draining while
    /// pulsar-rs's engine catches up, as in `ask_last_message_id`).
    pub(super) async fn close_consumer(&mut self) -> Result<(), TransportError> {
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
}
