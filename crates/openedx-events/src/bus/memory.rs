//! The in-memory backend: one process, nothing persisted. For tests and for
//! wiring a service without a broker. Topics are logs; each consumer group
//! has its own position, in-flight messages and redelivery queue, like the
//! durable backends.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use openedx_events::bus::memory::MemoryBroker;
//! use openedx_events::bus::transport::{RawMessage, StartPosition, SubscribeRequest, Transport};
//! let broker = MemoryBroker::new();
//! let t = broker.transport();
//! t.publish_raw(&RawMessage { topic: "t".into(), value: b"hi".to_vec(), ..Default::default() }).await.unwrap();
//! let mut sub = t.subscribe(&SubscribeRequest { topic: "t".into(), group: "g".into(),
//!     consumer_name: "c".into(), start: StartPosition::Earliest, extras: Default::default() }).await.unwrap();
//! let got = sub.receive(10, Duration::from_millis(10)).await.unwrap();
//! assert_eq!(got[0].raw.value, b"hi");
//! sub.ack(got[0].tag).await.unwrap();
//! # });
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::transport::{
    Capabilities, Delivery, DeliveryTag, OutgoingMessage, RawMessage, SeekTarget, StartPosition, SubscribeRequest,
    Subscription, Transport, TransportError,
};
use super::wire;

/// A broker living in this process. Clone it (or call [`MemoryBroker::transport`]
/// several times) to connect several producers and consumers.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
    next_member: AtomicU64,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
}

#[derive(Default)]
struct Topic {
    messages: Vec<(RawMessage, DateTime<Utc>)>,
    groups: HashMap<String, Group>,
}

#[derive(Default)]
struct Group {
    next: usize,
    /// offset -> (member, deliveries so far)
    inflight: BTreeMap<usize, (u64, u32)>,
    /// offset -> (visible at, deliveries so far)
    ready: BTreeMap<usize, (Instant, u32)>,
}

/// A connection to a [`MemoryBroker`].
#[derive(Clone)]
pub struct MemoryTransport {
    shared: Arc<Shared>,
}

impl MemoryBroker {
    /// A new, empty broker.
    pub fn new() -> Self {
        MemoryBroker::default()
    }

    /// A transport on this broker.
    pub fn transport(&self) -> MemoryTransport {
        MemoryTransport {
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn delivery(raw: &RawMessage, offset: usize, attempt: u32) -> Delivery {
    Delivery {
        raw: raw.clone(),
        tag: DeliveryTag(offset as u64),
        position: offset.to_string(),
        attempt,
        event: wire::cloudevent_incoming(raw),
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            consumer_groups: true,
            ordered_per_key: true,
            persistent: false,
            replay_from_start: true,
            seek_time: true,
            max_message_bytes: 64 * 1024 * 1024,
        }
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.publish_raw(&wire::cloudevent_message(message)).await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        let offset = {
            let mut state = self.shared.lock();
            let topic = state.topics.entry(message.topic.clone()).or_default();
            let mut m = message.clone();
            let now = Utc::now();
            m.timestamp = Some(now);
            topic.messages.push((m, now));
            topic.messages.len() - 1
        };
        self.shared.notify.notify_waiters();
        Ok(offset.to_string())
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        {
            let mut state = self.shared.lock();
            let topic = state.topics.entry(request.topic.clone()).or_default();
            let len = topic.messages.len();
            topic.groups.entry(request.group.clone()).or_insert_with(|| Group {
                next: if request.start == StartPosition::Latest { len } else { 0 },
                ..Group::default()
            });
        }
        Ok(Box::new(MemorySubscription {
            shared: self.shared.clone(),
            topic: request.topic.clone(),
            group: request.group.clone(),
            member: self.shared.next_member.fetch_add(1, Ordering::Relaxed),
            closed: false,
        }))
    }

    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let start = match after {
            Some(p) => {
                p.parse::<usize>()
                    .map_err(|_| TransportError::other(format!("bad position {p:?}")))?
                    + 1
            }
            None => 0,
        };
        let state = self.shared.lock();
        Ok(state
            .topics
            .get(topic)
            .map(|t| {
                t.messages
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(limit)
                    .map(|(i, (m, _))| delivery(m, i, 1))
                    .collect()
            })
            .unwrap_or_default())
    }
}

struct MemorySubscription {
    shared: Arc<Shared>,
    topic: String,
    group: String,
    member: u64,
    closed: bool,
}

impl MemorySubscription {
    /// Take up to `max` messages; otherwise how long until one is due.
    fn take(&self, max: usize) -> (Vec<Delivery>, Option<Duration>) {
        let mut state = self.shared.lock();
        let Some(topic) = state.topics.get_mut(&self.topic) else {
            return (Vec::new(), None);
        };
        let Topic { messages, groups } = topic;
        let group = groups.entry(self.group.clone()).or_default();
        let now = Instant::now();
        let mut out = Vec::new();
        let due: Vec<usize> = group
            .ready
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(o, _)| *o)
            .take(max)
            .collect();
        for offset in due {
            if let Some((_, attempts)) = group.ready.remove(&offset) {
                group.inflight.insert(offset, (self.member, attempts + 1));
                out.push(delivery(&messages[offset].0, offset, attempts + 1));
            }
        }
        while out.len() < max && group.next < messages.len() {
            let offset = group.next;
            group.next += 1;
            group.inflight.insert(offset, (self.member, 1));
            out.push(delivery(&messages[offset].0, offset, 1));
        }
        let wait = group
            .ready
            .values()
            .map(|(at, _)| at.saturating_duration_since(now))
            .min();
        (out, wait)
    }

    /// Leave the group: everything in flight becomes available at once.
    fn release(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let member = self.member;
        self.with_group(|g, _| {
            let now = Instant::now();
            let mine: Vec<(usize, u32)> = g
                .inflight
                .iter()
                .filter(|(_, (m, _))| *m == member)
                .map(|(o, (_, a))| (*o, *a))
                .collect();
            for (offset, attempts) in mine {
                g.inflight.remove(&offset);
                g.ready.insert(offset, (now, attempts));
            }
        });
        self.shared.notify.notify_waiters();
    }

    fn with_group<T>(&self, f: impl FnOnce(&mut Group, &[(RawMessage, DateTime<Utc>)]) -> T) -> Option<T> {
        let mut state = self.shared.lock();
        let topic = state.topics.get_mut(&self.topic)?;
        let Topic { messages, groups } = topic;
        let group = groups.get_mut(&self.group)?;
        Some(f(group, messages))
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        if self.closed {
            return Err(TransportError::new(
                super::transport::TransportErrorKind::Closed,
                "subscription is closed",
            ));
        }
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, due_in) = self.take(max.max(1));
            if !got.is_empty() {
                return Ok(got);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = due_in.map_or(deadline, |d| (now + d).min(deadline));
            tokio::select! {
                _ = &mut notified => {},
                _ = tokio::time::sleep_until(until) => {},
            }
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        let member = self.member;
        self.with_group(|g, _| {
            if g.inflight.get(&(tag.0 as usize)).is_some_and(|(m, _)| *m == member) {
                g.inflight.remove(&(tag.0 as usize));
            }
        });
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        let member = self.member;
        self.with_group(|g, _| {
            let offset = tag.0 as usize;
            if let Some((m, attempts)) = g.inflight.get(&offset).copied() {
                if m == member {
                    g.inflight.remove(&offset);
                    g.ready.insert(offset, (Instant::now() + delay, attempts));
                }
            }
        });
        self.shared.notify.notify_waiters();
        Ok(())
    }

    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        self.with_group(|g, messages| {
            g.next = match target {
                SeekTarget::Earliest => 0,
                SeekTarget::Latest => messages.len(),
                SeekTarget::Time(t) => messages.iter().position(|(_, at)| at >= t).unwrap_or(messages.len()),
                SeekTarget::After(p) => p.parse::<usize>().map(|o| o + 1).unwrap_or(g.next).min(messages.len()),
            };
            g.ready.retain(|o, _| *o < g.next);
        });
        self.shared.notify.notify_waiters();
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.release();
        Ok(())
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.release();
    }
}
