//! The receive path: messages taken from pulsar-rs into the local buffer,
//! turned into deliveries (skipped after a seek, parked with Key_Shared),
//! within the wait the consume loop gives.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use openedx_events::bus::transport::{Delivery, DeliveryTag, Subscription, TransportError};
use pulsar::proto::MessageIdData;
use tokio::time::Instant;

use super::acks::{entry_key, id_key, InFlight};
use super::{after, PulsarSubscription};
use crate::error::classify;
use crate::settings::SubscriptionKind;
use crate::wire;

type Message = pulsar::consumer::Message<Vec<u8>>;

impl PulsarSubscription {
    /// Up to `max` deliveries, waiting at most `wait` for the first; due
    /// delayed nacks are sent on the way.
    pub(super) async fn receive_deliveries(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let max = max.max(1);
        self.batch_hint = self.batch_hint.max(max);
        let deadline = after(wait);
        let mut out = Vec::new();
        loop {
            let next_due = self.fire_due_nacks().await?;
            self.unpark(max, &mut out);
            self.deliver_buffered(max, &mut out);
            if out.len() < max {
                let consumer = self.consumer().await?;
                let first = if out.is_empty() {
                    let until = next_due.map_or(deadline, |d| d.min(deadline));
                    match tokio::time::timeout_at(until, consumer.next()).await {
                        Err(_) => None,
                        Ok(None) => {
                            // pulsar-rs gave up reconnecting: subscribe again
                            // (the broker redelivers what it held).
                            tracing::warn!(topic = %self.pulsar_topic, subscription = %self.group,
                                "the Pulsar consumer stopped; subscribing again");
                            self.lost_consumer();
                            if Instant::now() >= deadline {
                                return Ok(out);
                            }
                            continue;
                        }
                        Ok(Some(Err(e))) => return Err(classify("receive", &e)),
                        Ok(Some(Ok(m))) => Some(m),
                    }
                } else {
                    None
                };
                if let Some(m) = first {
                    self.buffer.push_back(m);
                }
                self.drain(self.receive_bound())?;
                self.deliver_buffered(max, &mut out);
            }
            self.unpark(max, &mut out);
            for tag in std::mem::take(&mut self.skipped) {
                Subscription::ack(self, DeliveryTag(tag)).await?;
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }

    /// Hand out buffered messages until `out` holds `max`.
    fn deliver_buffered(&mut self, max: usize, out: &mut Vec<Delivery>) {
        while out.len() < max {
            let Some(m) = self.buffer.pop_front() else {
                break;
            };
            if let Some(d) = self.accept(m, false) {
                out.push(d);
            }
        }
    }

    /// Move messages pulsar-rs has ready into the local buffer until it
    /// holds `bound` (`receive_bound` to read; everything so the engine is
    /// free to answer the request that follows, see `consumer_builder`).
    /// A consumer that stopped is dropped (the next call subscribes again).
    pub(super) fn drain(&mut self, bound: usize) -> Result<(), TransportError> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(());
        };
        loop {
            if self.buffer.len() + self.parked.len() >= bound {
                return Ok(());
            }
            match consumer.next().now_or_never() {
                None => return Ok(()),
                Some(Some(Ok(m))) => self.buffer.push_back(m),
                Some(Some(Err(e))) => {
                    tracing::warn!(topic = %self.pulsar_topic, error = %e, "the Pulsar consumer reported an error");
                }
                Some(None) => {
                    self.lost_consumer();
                    return Ok(());
                }
            }
        }
    }

    /// Turn a received message into a delivery (`None` if it is skipped or
    /// parked).
    pub(super) fn accept(&mut self, m: Message, from_parked: bool) -> Option<Delivery> {
        let id = m.message_id().clone();
        if let Some(skip) = &self.skip_through {
            if wire::position_cmp(&id, skip) != std::cmp::Ordering::Greater {
                // At or before the position sought after: already consumed.
                let tag = self.track(&m, &id);
                self.skipped.push(tag);
                return None;
            }
            self.skip_through = None;
        }
        let key = m.key_bytes().ok().flatten();
        if self.kind == SubscriptionKind::KeyShared {
            if let Some(k) = &key {
                if self.held_back(k, &id, from_parked) {
                    self.parked.push_back(m);
                    return None;
                }
            }
        }
        if m.message_id.batch_size.is_some_and(|n| n > 1) {
            // A batch handed back arrives again: count its acks afresh.
            let entry = entry_key(&id);
            if self.batches.get(&entry).is_some_and(|b| b.nacked) {
                self.batches.remove(&entry);
            }
        }
        let key_id = id_key(&id);
        let attempt = self.attempts.delivered(key_id);
        let tag = self.next_tag;
        self.next_tag += 1;
        let delivery = wire::delivery(
            &self.topic,
            &id,
            &m.payload.metadata,
            &m.payload.data,
            DeliveryTag(tag),
            attempt,
        );
        self.inflight.insert(
            tag,
            InFlight {
                topic: m.topic.clone(),
                id,
                batch_size: m.message_id.batch_size,
                key,
                attempt,
            },
        );
        Some(delivery)
    }

    /// Record a skipped message as in flight so it can be acknowledged.
    fn track(&mut self, m: &Message, id: &MessageIdData) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.inflight.insert(
            tag,
            InFlight {
                topic: m.topic.clone(),
                id: id.clone(),
                batch_size: m.message_id.batch_size,
                key: None,
                attempt: 0,
            },
        );
        tag
    }
}
