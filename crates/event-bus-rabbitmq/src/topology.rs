//! What the backend declares on the broker (all durable, all idempotent):
//!
//! - per topic: the topic exchange `<topic>` (type `topic`) whose alternate
//!   exchange is the fanout `<topic>.unrouted`, bound to the quorum queue
//!   `<topic>.unrouted` (the backlog: what is published while no group
//!   queue is bound; at most [`BACKLOG_MAX_MESSAGES`], the oldest dropped);
//! - per group: the quorum queue `<topic>.<group>`, bound with `#`;
//! - per group and delay bucket: the retry queue `<queue>.retry.<ms>`.

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use openedx_events::bus::transport::TransportError;
use openedx_events::config::Redactor;

use crate::error::{rejected, timed};
use crate::names;

/// The most messages a topic's backlog keeps (the oldest are dropped).
pub const BACKLOG_MAX_MESSAGES: i64 = 100_000;
/// How long an idle retry queue lives beyond its delay.
const RETRY_QUEUE_GRACE: Duration = Duration::from_secs(600);

/// Calls on one channel, under the operation timeout.
pub(crate) struct On<'a> {
    pub(crate) channel: &'a Channel,
    pub(crate) timeout: Duration,
    pub(crate) redactor: &'a Redactor,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

impl On<'_> {
    async fn exchange(&self, name: ShortString, kind: ExchangeKind, args: FieldTable) -> Result<(), TransportError> {
        let what = format!("declare exchange {name}");
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        timed(
            self.timeout,
            &what,
            self.redactor,
            self.channel.exchange_declare(name, kind, options, args),
        )
        .await
    }

    async fn queue(&self, name: ShortString, args: FieldTable) -> Result<(), TransportError> {
        let what = format!("declare queue {name}");
        timed(
            self.timeout,
            &what,
            self.redactor,
            self.channel.queue_declare(name, durable(), args),
        )
        .await
        .map(|_| ())
    }

    async fn bind(&self, queue: ShortString, exchange: ShortString, key: &str) -> Result<(), TransportError> {
        let what = format!("bind queue {queue} to exchange {exchange}");
        let bind = self.channel.queue_bind(
            queue,
            exchange,
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        timed(self.timeout, &what, self.redactor, bind).await
    }

    /// The topic's exchange and its backlog.
    pub(crate) async fn topic(&self, topic: &str) -> Result<(), TransportError> {
        let exchange = names::exchange(topic)?;
        let backlog = names::backlog(topic)?;
        self.exchange(backlog.clone(), ExchangeKind::Fanout, FieldTable::default())
            .await?;
        let mut args = quorum();
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(BACKLOG_MAX_MESSAGES));
        args.insert("x-overflow".into(), text("drop-head"));
        self.queue(backlog.clone(), args).await?;
        self.bind(backlog.clone(), backlog.clone(), "").await?;
        let mut args = FieldTable::default();
        args.insert("alternate-exchange".into(), text(backlog.as_str()));
        self.exchange(exchange, ExchangeKind::Topic, args).await
    }

    /// The group's queue, bound to the topic with `#` (the topic declared first).
    pub(crate) async fn group(&self, topic: &str, queue: &ShortString) -> Result<(), TransportError> {
        self.topic(topic).await?;
        self.queue(queue.clone(), quorum()).await?;
        self.bind(queue.clone(), names::exchange(topic)?, "#").await
    }

    /// The retry queue of `queue` for a bucket: messages wait `delay_ms`
    /// there, then the broker dead-letters them back to `queue` through the
    /// default exchange (at least once: quorum's own dead-letter strategy).
    pub(crate) async fn retry(&self, queue: &str, delay_ms: u64) -> Result<ShortString, TransportError> {
        let name = names::retry_queue(queue, delay_ms)?;
        let mut args = quorum();
        let ttl = i64::try_from(delay_ms).unwrap_or(i64::MAX);
        let grace = i64::try_from(RETRY_QUEUE_GRACE.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ttl.saturating_add(grace)));
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert("x-dead-letter-routing-key".into(), text(queue));
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        self.queue(name.clone(), args).await?;
        Ok(name)
    }

    /// Publish through the default exchange to `queue`, waiting for the
    /// broker's confirm (the channel is in confirm mode).
    pub(crate) async fn to_queue(
        &self,
        queue: &ShortString,
        properties: lapin::BasicProperties,
        body: &[u8],
    ) -> Result<(), TransportError> {
        let what = format!("publish to queue {queue}");
        let publish = async {
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.clone(),
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let confirmation = timed(self.timeout, &what, self.redactor, publish).await?;
        if confirmation.is_nack() {
            return Err(rejected(format!("{what}: the broker refused the message (nack)")));
        }
        Ok(())
    }

    /// Whether `queue` exists (a passive declaration, on a channel of its
    /// own: a refused one closes its channel).
    pub(crate) async fn exists(
        &self,
        connection: &lapin::Connection,
        queue: &ShortString,
    ) -> Result<bool, TransportError> {
        let probe = timed(
            self.timeout,
            "open a channel",
            self.redactor,
            connection.create_channel(),
        )
        .await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = tokio::time::timeout(
            self.timeout,
            probe.queue_declare(queue.clone(), options, FieldTable::default()),
        )
        .await;
        let found = match declared {
            Ok(Ok(_)) => true,
            Ok(Err(e)) if is_not_found(&e) => false,
            Ok(Err(e)) => {
                return Err(crate::error::classify(
                    &format!("look for queue {queue}"),
                    &e,
                    self.redactor,
                ))
            }
            Err(_) => {
                return Err(TransportError::new(
                    openedx_events::bus::transport::TransportErrorKind::Timeout,
                    format!("look for queue {queue}: no answer within {:?}", self.timeout),
                ))
            }
        };
        if probe.status().connected() {
            let _ = tokio::time::timeout(self.timeout, probe.close(200, "probe done".into())).await;
        }
        Ok(found)
    }

    /// The ready messages of each of `queues` (`None`: no such queue), by
    /// passive declarations on channels of `connection` of their own (a
    /// declaration of a missing queue closes its channel, so the next one
    /// opens another).
    pub(crate) async fn ready_counts(
        &self,
        connection: &lapin::Connection,
        queues: &[ShortString],
    ) -> Result<Vec<Option<u64>>, TransportError> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let mut probe: Option<Channel> = None;
        let mut out = Vec::with_capacity(queues.len());
        for queue in queues {
            let ch = match probe.take() {
                Some(ch) if ch.status().connected() => ch,
                _ => {
                    timed(
                        self.timeout,
                        "open a channel",
                        self.redactor,
                        connection.create_channel(),
                    )
                    .await?
                }
            };
            let declared = tokio::time::timeout(
                self.timeout,
                ch.queue_declare(queue.clone(), options, FieldTable::default()),
            )
            .await;
            match declared {
                Ok(Ok(q)) => {
                    out.push(Some(u64::from(q.message_count())));
                    probe = Some(ch);
                }
                Ok(Err(e)) if is_not_found(&e) => out.push(None),
                Ok(Err(e)) => {
                    return Err(crate::error::classify(
                        &format!("look for queue {queue}"),
                        &e,
                        self.redactor,
                    ))
                }
                Err(_) => {
                    return Err(TransportError::new(
                        openedx_events::bus::transport::TransportErrorKind::Timeout,
                        format!("look for queue {queue}: no answer within {:?}", self.timeout),
                    ))
                }
            }
        }
        if let Some(ch) = probe.filter(|ch| ch.status().connected()) {
            let _ = tokio::time::timeout(self.timeout, ch.close(200, "probe done".into())).await;
        }
        Ok(out)
    }

    /// Copy the topic's backlog (what was published while no group queue
    /// was bound) into the new group's `queue`; the backlog keeps it for
    /// the next new group. Returns how many were copied.
    pub(crate) async fn copy_backlog(&self, topic: &str, queue: &ShortString) -> Result<u64, TransportError> {
        let backlog = names::backlog(topic)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let what = format!("read the backlog {backlog}");
        let declared = self
            .channel
            .queue_declare(backlog.clone(), passive, FieldTable::default());
        let count = timed(self.timeout, &what, self.redactor, declared)
            .await?
            .message_count();
        let mut copied = 0;
        let mut last = None;
        while copied < u64::from(count) {
            let get = self
                .channel
                .basic_get(backlog.clone(), BasicGetOptions { no_ack: false });
            let Some(message) = timed(self.timeout, &what, self.redactor, get).await? else {
                break;
            };
            let d = message.delivery;
            last = Some(d.delivery_tag);
            let key = (d.routing_key.as_str() != names::NO_KEY).then(|| d.routing_key.as_str().as_bytes());
            let has_key = d
                .properties
                .headers()
                .as_ref()
                .is_some_and(|h| h.contains_key(crate::wire::KEY_HEADER));
            let properties = crate::wire::for_copy(&d.properties, if has_key { None } else { key }, None);
            self.to_queue(queue, properties, &d.data).await?;
            copied += 1;
        }
        if let Some(tag) = last {
            let back = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            timed(self.timeout, &what, self.redactor, self.channel.basic_nack(tag, back)).await?;
            wait_ready(self.channel, &backlog, copied, self.timeout).await;
            tracing::info!(topic, queue = %queue, copied, "copied the topic's backlog into a new group's queue");
        }
        Ok(copied)
    }
}

/// After handing `taken` messages back to `queue` (a `basic.nack`, which
/// the broker does not answer), wait until they count as ready again, so
/// the next reader (another channel) sees them. Bounded by `timeout`.
pub(crate) async fn wait_ready(channel: &Channel, queue: &ShortString, taken: u64, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout.min(Duration::from_secs(5));
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    while std::time::Instant::now() < deadline {
        let declared = channel.queue_declare(queue.clone(), passive, FieldTable::default());
        match tokio::time::timeout(timeout, declared).await {
            Ok(Ok(q)) if u64::from(q.message_count()) >= taken => return,
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => return,
        }
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}
