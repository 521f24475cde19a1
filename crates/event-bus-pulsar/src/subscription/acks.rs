//! Acknowledgements: what is in flight, batch entries acknowledged as a
//! whole, and the acks and nacks sent to the broker.

use std::collections::HashSet;
use std::time::Duration;

use openedx_events::bus::transport::{DeliveryTag, TransportError};
use pulsar::proto::MessageIdData;

use super::{PulsarSubscription, MAX_TRACKED};
use crate::error::timed;
use crate::settings::SubscriptionKind;

/// A message id as a map key: ledger, entry, partition, batch index.
pub(super) type IdKey = (u64, u64, i32, i32);
/// An entry (a batch of messages shares one): ledger, entry, partition.
pub(super) type EntryKey = (u64, u64, i32);

pub(super) fn id_key(id: &MessageIdData) -> IdKey {
    (
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1),
    )
}

pub(super) fn entry_key(id: &MessageIdData) -> EntryKey {
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

/// A message handed out and not yet acknowledged or nacked.
pub(super) struct InFlight {
    /// The topic (partition) the message came from, for acks.
    pub(super) topic: String,
    pub(super) id: MessageIdData,
    /// Messages in its batch, if it came in one.
    pub(super) batch_size: Option<i32>,
    /// Its key (Key_Shared ordering).
    pub(super) key: Option<Vec<u8>>,
    /// Deliveries of it to this member, this one included.
    pub(super) attempt: u32,
}

/// A batch entry being acknowledged message by message: the broker can
/// only acknowledge the whole entry, so its ack is sent once every message
/// of it is acknowledged; a nack of any hands the whole entry back, and
/// acks of its other messages are moot until it comes back (they are
/// delivered again: at least once).
pub(super) struct BatchState {
    size: i32,
    acked: HashSet<i32>,
    pub(super) nacked: bool,
}

impl PulsarSubscription {
    /// The acknowledgement state of a batch entry, new if none is kept.
    fn batch_state(&mut self, entry: EntryKey, size: i32) -> &mut BatchState {
        self.batches.entry(entry).or_insert_with(|| BatchState {
            size,
            acked: HashSet::new(),
            nacked: false,
        })
    }

    /// Acknowledge a delivery: its message id, or its batch entry once every
    /// message of the entry is acknowledged.
    pub(super) async fn ack_delivery(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
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
                let state = self.batch_state(entry, size);
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

    /// Hand a delivery back (its whole entry if it came in a batch): at
    /// once, or after `delay` from the delayed queue. With Key_Shared its
    /// key is held until it comes back.
    pub(super) async fn nack_delivery(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        let Some(f) = self.inflight.remove(&tag.0) else {
            return Ok(());
        };
        let batched = f.batch_size.is_some_and(|n| n > 1);
        let id = if batched {
            let entry = entry_key(&f.id);
            let size = f.batch_size.unwrap_or(1);
            let state = self.batch_state(entry, size);
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
                self.hold_key(k.clone(), &f.id, delay);
            }
        }
        if delay.is_zero() {
            return self.send_nack(&f.topic, id).await;
        }
        self.delay_nack(tag, f.attempt, delay, f.topic, id);
        Ok(())
    }

    /// Ask the broker to deliver a message again now.
    pub(super) async fn send_nack(&mut self, topic: &str, id: MessageIdData) -> Result<(), TransportError> {
        let limit = self.limit();
        let consumer = self.consumer().await?;
        timed(limit, "negative acknowledge", async {
            consumer.nack_with_id(topic, id).await.map_err(pulsar::Error::from)
        })
        .await
    }

    /// Acknowledge a message id (or entry) at the broker.
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
}
