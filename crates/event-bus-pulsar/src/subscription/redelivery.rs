//! Redelivery held back locally: delayed nacks (pulsar-rs can only ask for
//! an immediate redelivery, so a nack with a delay waits in a
//! [`DelayedQueue`] and is sent when due) and, with Key_Shared, the keys of
//! nacked messages, whose later messages are parked until the nacked one
//! comes back.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use openedx_events::bus::delayed::DelayedQueue;
use openedx_events::bus::transport::{Delivery, DeliveryTag, TransportError};
use pulsar::proto::MessageIdData;
use tokio::time::Instant;

use super::acks::id_key;
use super::{after, PulsarSubscription};

/// A nack waiting for its delay: what to send when it is due.
pub(super) struct DelayedNack {
    topic: String,
    id: MessageIdData,
}

/// The nacks of a subscription waiting for their delay.
pub(super) type DelayedNacks = DelayedQueue<DelayedNack>;

impl PulsarSubscription {
    /// Send the nack of `tag` (delivered `attempt` times) once `delay` has
    /// passed; the message stays with this member meanwhile.
    pub(super) fn delay_nack(
        &mut self,
        tag: DeliveryTag,
        attempt: u32,
        delay: Duration,
        topic: String,
        id: MessageIdData,
    ) {
        self.delayed.schedule(tag, attempt, delay, DelayedNack { topic, id });
    }

    /// Send the delayed nacks that are due; returns when the next one is.
    pub(super) async fn fire_due_nacks(&mut self) -> Result<Option<Instant>, TransportError> {
        let now = Instant::now().into_std();
        // One at a time: a nack that fails leaves the others waiting.
        while let Some(due) = self.delayed.pop_due(now, 1).pop() {
            // The broker delivers the message again, and `accept` counts
            // that delivery.
            self.send_nack(&due.item.topic, due.item.id).await?;
        }
        Ok(self.delayed.next_due().map(Instant::from_std))
    }

    /// Key_Shared: hold `key` for the nacked message `id` until it comes
    /// back, or until `delay` plus the operation timeout passed (it may have
    /// gone to another member).
    pub(super) fn hold_key(&mut self, key: Vec<u8>, id: &MessageIdData, delay: Duration) {
        let until = after(delay.saturating_add(self.limit()));
        self.held_keys.insert(key, (id_key(id), until));
    }

    /// Key_Shared: whether a message of `key` must wait (be parked): its key
    /// is held for another message, or messages of the key already wait
    /// (order is kept behind them). The message a key was held for releases
    /// it.
    pub(super) fn held_back(&mut self, key: &[u8], id: &MessageIdData, from_parked: bool) -> bool {
        let now = Instant::now();
        self.held_keys.retain(|_, (_, until)| *until > now);
        match self.held_keys.get(key) {
            Some((waiting_for, _)) if *waiting_for == id_key(id) => {
                self.held_keys.remove(key);
                false
            }
            Some(_) => true,
            None if !from_parked
                && self
                    .parked
                    .iter()
                    .any(|p| p.key_bytes().ok().flatten().as_deref() == Some(key)) =>
            {
                // Keep the key's order behind the ones already waiting.
                true
            }
            None => false,
        }
    }

    /// Release parked messages whose key is no longer held, in order.
    pub(super) fn unpark(&mut self, max: usize, out: &mut Vec<Delivery>) {
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
}
