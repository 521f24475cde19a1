//! [`RabbitMqSubscription`]: a member of a group, consuming the group's
//! quorum queue on a connection of its own with manual acknowledgements.

mod link;
mod settle;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt as _, StreamExt as _};
use lapin::types::ShortString;
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, SeekTarget, SubscribeRequest, Subscription, TransportError,
};
use openedx_events::bus::wire::cloudevent_incoming;

use crate::conn::Connector;
use crate::names;
use crate::wire;
use link::SubLink;

/// A message handed to the core and not settled yet.
struct Held {
    /// The link it came on (acks on another are meaningless).
    generation: u64,
    amqp_tag: u64,
    properties: lapin::BasicProperties,
    /// What was handed out (handed out again after a nack without delay).
    delivery: Delivery,
}

/// A membership in a consumer group (a consumer of the group's quorum
/// queue). Opened by [`Transport::subscribe`](openedx_events::bus::Transport::subscribe).
///
/// - `receive` reconnects by itself after a lost connection (what was not
///   acknowledged comes back from the broker);
/// - `ack` is `basic.ack`; `nack` without
///   delay keeps the message with this member and hands it out again
///   first (ordered redelivery); `nack` with a delay goes through a retry
///   queue;
/// - `keep_alive` does nothing (RabbitMQ has no per-message deadline);
/// - `seek` is unsupported (quorum queues cannot move).
pub struct RabbitMqSubscription {
    connector: Connector,
    topic: String,
    queue: ShortString,
    consumer_name: String,
    prefetch: u16,
    link: Option<SubLink>,
    generation: u64,
    held: HashMap<u64, Held>,
    /// Nacked without delay: handed out again before anything else.
    redeliver: VecDeque<Held>,
    next_tag: u64,
    /// Retry queues declared, and when (they are declared again after a
    /// while so an idle one never expires under a message).
    retry_declared: HashMap<u64, Instant>,
    closed: bool,
}

impl RabbitMqSubscription {
    /// Join the group: declare the topic, the group's queue and its
    /// binding, copy the topic's backlog into a new group, start consuming.
    pub(crate) async fn open(connector: Connector, request: &SubscribeRequest) -> Result<Self, TransportError> {
        let extras = crate::extras::SubscriptionExtras::parse(&request.extras)?;
        let queue = names::group_queue(&request.topic, &request.group)?;
        let prefetch = extras.prefetch.unwrap_or(connector.settings.prefetch);
        let mut sub = RabbitMqSubscription {
            connector,
            topic: request.topic.clone(),
            queue,
            consumer_name: request.consumer_name.clone(),
            prefetch,
            link: None,
            generation: 0,
            held: HashMap::new(),
            redeliver: VecDeque::new(),
            next_tag: 0,
            retry_declared: HashMap::new(),
            closed: false,
        };
        sub.reconnect().await?;
        Ok(sub)
    }

    /// The group's queue.
    pub fn queue(&self) -> &str {
        self.queue.as_str()
    }

    async fn reconnect(&mut self) -> Result<(), TransportError> {
        if let Some(old) = self.link.take() {
            old.close().await;
        }
        self.generation += 1;
        self.retry_declared.clear();
        self.redeliver.clear();
        let link = SubLink::open(
            &self.connector,
            &self.topic,
            &self.queue,
            &self.consumer_name,
            self.prefetch,
            self.generation,
        )
        .await?;
        self.link = Some(link);
        Ok(())
    }

    fn delivery(&mut self, d: lapin::message::Delivery) -> Delivery {
        let received = wire::from_amqp(
            &self.topic,
            d.exchange.as_str(),
            d.routing_key.as_str(),
            &d.properties,
            d.data,
        );
        let raw = received.raw;
        let event = cloudevent_incoming(&raw);
        let delivery = Delivery {
            position: wire::position(self.queue.as_str(), &d.properties, &raw),
            tag: DeliveryTag(0),
            attempt: received.attempt,
            raw,
            event,
        };
        self.hand_out(Held {
            generation: self.generation,
            amqp_tag: d.delivery_tag,
            properties: d.properties,
            delivery,
        })
    }

    /// Give `held` a new tag, keep it, and return its delivery.
    fn hand_out(&mut self, mut held: Held) -> Delivery {
        self.next_tag += 1;
        held.delivery.tag = DeliveryTag(self.next_tag);
        let out = held.delivery.clone();
        self.held.insert(self.next_tag, held);
        out
    }

    /// Messages nacked without delay, due again (of the current link).
    fn take_redeliveries(&mut self, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(mut held) = self.redeliver.pop_front() else {
                break;
            };
            if held.generation != self.generation {
                continue;
            }
            held.delivery.attempt = held.delivery.attempt.saturating_add(1);
            out.push(self.hand_out(held));
        }
        out
    }

    /// Wait up to `wait` for the first message, then take what is ready.
    /// `Ok(None)`: the link broke.
    async fn take(&mut self, max: usize, wait: Duration) -> Option<Vec<lapin::message::Delivery>> {
        let link = self.link.as_mut()?;
        let mut out = Vec::new();
        match tokio::time::timeout(wait, link.consumer.next()).await {
            Err(_) => return Some(out),
            Ok(Some(Ok(d))) => out.push(d),
            Ok(Some(Err(e))) => {
                tracing::warn!(queue = %self.queue, error = %self.connector.redactor.scrub(&e.to_string()),
                    "RabbitMQ consumer failed; reconnecting");
                return None;
            }
            Ok(None) => {
                tracing::warn!(queue = %self.queue, "RabbitMQ consumer cancelled by the broker; reconnecting");
                return None;
            }
        }
        while out.len() < max {
            match link.consumer.next().now_or_never() {
                Some(Some(Ok(d))) => out.push(d),
                _ => break,
            }
        }
        Some(out)
    }
}

#[async_trait]
impl Subscription for RabbitMqSubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        if self.closed {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let deadline = now.checked_add(wait).unwrap_or(now + Duration::from_secs(3600));
        loop {
            if self.link.as_ref().is_none_or(|l| !l.usable()) {
                self.reconnect().await?;
            }
            let again = self.take_redeliveries(max.max(1));
            if !again.is_empty() {
                return Ok(again);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.take(max.max(1), left).await {
                Some(batch) => return Ok(batch.into_iter().map(|d| self.delivery(d)).collect()),
                None => {
                    if let Some(old) = self.link.take() {
                        old.close().await;
                    }
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        let Some(held) = self.held.remove(&tag.0) else {
            return Ok(());
        };
        self.settle_ack(&held).await
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        let Some(held) = self.held.remove(&tag.0) else {
            return Ok(());
        };
        if delay.is_zero() {
            self.hold_for_redelivery(held);
            Ok(())
        } else {
            self.retry_later(held, delay).await
        }
    }

    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        Err(TransportError::unsupported(format!(
            "the rabbitmq backend cannot seek ({target:?}): a quorum queue has no positions to move to; \
             messages are consumed once per group"
        )))
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.held.clear();
        self.redeliver.clear();
        if let Some(link) = self.link.take() {
            link.close().await;
        }
        Ok(())
    }
}
