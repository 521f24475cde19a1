//! [`NatsSubscription`]: a member of a group, pulling from the group's
//! durable consumer. Each `receive` is one pull (`fetch`: up to `max`
//! messages, returning as soon as some are there or after `wait`), so no
//! message waits in a local buffer: with one member the stream order is
//! kept, and a nacked message comes back before the ones after it.

mod lease;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::AckKind;
use async_nats::{Client, Subject};
use async_trait::async_trait;
use futures::StreamExt as _;
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, LeaseKeeper, SeekTarget, Subscription, TransportError, TransportErrorKind,
};

use crate::error::{classify, is_not_found, timed};
use crate::streams::Group;
use crate::wire;

/// The ack subjects of the messages in hand, by delivery tag.
pub(crate) type Held = Arc<Mutex<HashMap<u64, Subject>>>;

pub(crate) fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<u64, Subject>> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

/// A membership in a consumer group (a durable pull consumer).
///
/// - `ack` sends `+ACK` on the message's reply subject; `flush_acks` waits
///   for a round trip to the server on the same connection, so the server
///   has read every ack sent before it.
/// - `nack(delay)` sends `-NAK` with the delay and waits for the server's
///   confirmation: the server redelivers no sooner (no local queue).
/// - `keep_alive` (and the [`LeaseKeeper`]) sends `+WPI` for the messages
///   in hand, restarting their ack wait.
/// - `close` naks what is in hand, so the group gets it again at once.
pub struct NatsSubscription {
    client: Client,
    group: Group,
    held: Held,
    next_tag: u64,
    batch: Option<usize>,
    unflushed: bool,
    closed: bool,
}

impl NatsSubscription {
    pub(crate) fn new(client: Client, group: Group, batch: Option<usize>) -> Self {
        NatsSubscription {
            client,
            group,
            held: Held::default(),
            next_tag: 1,
            batch,
            unflushed: false,
            closed: false,
        }
    }

    fn timeout(&self) -> Duration {
        self.group.streams.settings.operation_timeout
    }

    /// Send an ack of `kind` for a message in hand (removed from the hand
    /// unless it is a progress report).
    async fn reply(&mut self, tag: DeliveryTag, kind: AckKind) -> Result<(), TransportError> {
        let subject = {
            let mut held = lock(&self.held);
            if matches!(kind, AckKind::Progress) {
                held.get(&tag.0).cloned()
            } else {
                held.remove(&tag.0)
            }
        };
        let Some(subject) = subject else {
            return Ok(());
        };
        self.unflushed = true;
        if let AckKind::Nak(_) = kind {
            // Confirmed by the server before the next pull, so a nacked
            // message comes back ahead of the ones after it.
            return timed(self.timeout(), "nack", self.client.request(subject, kind.into()))
                .await
                .map(|_| ());
        }
        timed(self.timeout(), "acknowledge", self.client.publish(subject, kind.into())).await
    }

    /// One pull: up to `n` messages within `wait`.
    async fn pull(&mut self, n: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        let limit = self.timeout();
        let consumer = self.group.consumer().await?;
        let mut fetch = consumer.fetch().max_messages(n);
        if wait >= Duration::from_millis(1) {
            fetch = fetch.expires(wait);
        }
        let mut batch = timed(limit, "pull", fetch.messages()).await?;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait + limit;
        loop {
            let next = match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(topic = %self.group.topic, "a pull got no end from the server in time");
                    break;
                }
            };
            let m = match next {
                Ok(m) => m,
                Err(e) => {
                    let e = classify(&format!("pull from {}", self.group.topic), &e);
                    if out.is_empty() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "a pull ended early");
                    break;
                }
            };
            let (sequence, attempt, time) = match m.info() {
                Ok(i) => (
                    i.stream_sequence,
                    u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX),
                    wire::chrono_time(&i.published),
                ),
                Err(_) => (0, 1, None),
            };
            let tag = DeliveryTag(self.next_tag);
            self.next_tag += 1;
            if let Some(reply) = m.reply.clone() {
                lock(&self.held).insert(tag.0, reply);
            }
            let raw = wire::raw_from_nats(&self.group.topic, m.headers.as_ref(), &m.payload, time);
            out.push(wire::delivery(raw, tag, sequence, attempt));
        }
        Ok(out)
    }

    /// Nak everything in hand (close, drop).
    fn release_all(&mut self) -> Vec<Subject> {
        lock(&self.held).drain().map(|(_, s)| s).collect()
    }
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        if self.closed {
            return Ok(Vec::new());
        }
        let n = self.batch.map_or(max, |b| b.min(max)).max(1);
        match self.pull(n, wait).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if is_not_found(&e) || e.message.contains("503") {
                    tracing::warn!(topic = %self.group.topic, error = %e, "the group's consumer is gone; it is looked up again");
                    self.group.forget();
                }
                Err(e)
            }
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        self.reply(tag, AckKind::Ack).await
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.reply(tag, AckKind::Nak(delay)).await
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        if !self.unflushed {
            return Ok(());
        }
        timed(self.timeout(), "flush acknowledgements", self.client.flush()).await?;
        self.unflushed = false;
        Ok(())
    }

    async fn keep_alive(&mut self) -> Result<(), TransportError> {
        lease::progress(&self.client, &self.held, self.timeout()).await
    }

    fn lease_keeper(&self) -> Option<Arc<dyn LeaseKeeper>> {
        Some(Arc::new(lease::Keeper::new(
            self.client.clone(),
            self.held.clone(),
            self.group.ack_wait(),
            self.timeout(),
        )))
    }

    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        let policy = match target {
            SeekTarget::Earliest => DeliverPolicy::All,
            SeekTarget::Latest => DeliverPolicy::New,
            SeekTarget::Time(t) => DeliverPolicy::ByStartTime {
                start_time: wire::nats_time(t).ok_or_else(|| {
                    TransportError::new(
                        TransportErrorKind::Rejected,
                        format!("cannot seek to {t}: out of range"),
                    )
                })?,
            },
            SeekTarget::After(p) => DeliverPolicy::ByStartSequence {
                start_sequence: wire::parse_position(p)
                    .map_err(|e| TransportError::new(TransportErrorKind::Rejected, e))?
                    .saturating_add(1),
            },
        };
        self.flush_acks().await?;
        self.group.recreate(policy).await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let limit = self.timeout();
        let mut first_error = None;
        for subject in self.release_all() {
            if let Err(e) = timed(
                limit,
                "hand back",
                self.client.publish(subject, AckKind::Nak(None).into()),
            )
            .await
            {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = timed(limit, "flush on close", self.client.flush()).await {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for NatsSubscription {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let subjects = self.release_all();
        if subjects.is_empty() {
            return;
        }
        // Dropped without close: hand the messages back if a runtime is
        // there to send on; otherwise the server redelivers them after the
        // ack wait.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            handle.spawn(async move {
                for subject in subjects {
                    let _ = client.publish(subject, AckKind::Nak(None).into()).await;
                }
                let _ = client.flush().await;
            });
        }
    }
}
