//! [`RabbitMqTransport`]: publishing with confirms on one channel of one
//! connection (reopened after a failure), and subscriptions.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection};
use openedx_events::bus::transport::{
    Capabilities, Delivery, GroupLag, OutgoingMessage, RawMessage, SubscribeRequest, Subscription, Transport,
    TransportError, TransportErrorKind,
};

use crate::conn::Connector;
use crate::error::{rejected, timed};
use crate::settings::RabbitMqSettings;
use crate::subscription::RabbitMqSubscription;
use crate::topology::On;
use crate::wire::{self, AmqpMessage};

/// The longest wait between two reconnection attempts of the publisher.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// A RabbitMQ connection for producers and consumers of one process.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use event_bus_rabbitmq::{RabbitMqSettings, RabbitMqTransport};
/// use openedx_events::bus::Transport;
/// let transport = RabbitMqTransport::connect(RabbitMqSettings::new("amqp://guest:guest@127.0.0.1:5672/%2f")).await?;
/// assert_eq!(transport.name(), "rabbitmq");
/// assert!(!transport.capabilities().replay_from_start);
/// # Ok(()) }
/// ```
pub struct RabbitMqTransport {
    connector: Connector,
    publisher: tokio::sync::Mutex<Publisher>,
}

/// The publisher's connection, or when to try again.
#[derive(Default)]
struct Publisher {
    link: Option<Arc<Link>>,
    backoff: Duration,
    next_try: Option<Instant>,
    last_error: Option<TransportError>,
}

/// A connection and its confirm-mode channel.
struct Link {
    connection: Connection,
    channel: Channel,
    /// Topics whose exchange this connection has declared.
    declared: Mutex<HashSet<String>>,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl RabbitMqTransport {
    /// Connect (the publisher's connection is opened now, so a wrong URL or
    /// password fails at start-up).
    pub async fn connect(settings: RabbitMqSettings) -> Result<Self, TransportError> {
        let transport = RabbitMqTransport {
            connector: Connector::new(settings),
            publisher: tokio::sync::Mutex::new(Publisher::default()),
        };
        transport.link().await?;
        Ok(transport)
    }

    /// The settings in use.
    pub fn settings(&self) -> &RabbitMqSettings {
        &self.connector.settings
    }

    async fn open_link(&self) -> Result<Link, TransportError> {
        let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let connection = self.connector.connect(&format!("event-bus publisher {n}")).await?;
        let s = &self.connector.settings;
        let r = &self.connector.redactor;
        let channel = timed(s.operation_timeout, "open a channel", r, connection.create_channel()).await?;
        let confirm = channel.confirm_select(ConfirmSelectOptions::default());
        timed(s.operation_timeout, "turn publisher confirms on", r, confirm).await?;
        Ok(Link {
            connection,
            channel,
            declared: Mutex::new(HashSet::new()),
        })
    }

    /// The publisher's link, reconnecting when it broke (no sooner than the
    /// backoff after a failed attempt).
    async fn link(&self) -> Result<Arc<Link>, TransportError> {
        let mut p = self.publisher.lock().await;
        if let Some(link) = p.link.as_ref().filter(|l| l.usable()) {
            return Ok(link.clone());
        }
        p.link = None;
        if let (Some(at), Some(e)) = (p.next_try, &p.last_error) {
            if Instant::now() < at {
                return Err(TransportError::new(
                    e.kind,
                    format!("{} (reconnecting in {:?})", e.message, at - Instant::now()),
                ));
            }
        }
        match self.open_link().await {
            Ok(link) => {
                let link = Arc::new(link);
                *p = Publisher {
                    link: Some(link.clone()),
                    ..Publisher::default()
                };
                Ok(link)
            }
            Err(e) => {
                p.backoff = (p.backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                p.next_try = Some(Instant::now() + p.backoff);
                p.last_error = Some(e.clone());
                tracing::warn!(error = %e, retry_in = ?p.backoff, "RabbitMQ publisher connection failed");
                Err(e)
            }
        }
    }

    async fn forget(&self, link: &Arc<Link>) {
        let mut p = self.publisher.lock().await;
        if p.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            p.link = None;
        }
    }

    async fn send_on(&self, link: &Link, topic: &str, message: &AmqpMessage) -> Result<(), TransportError> {
        let s = &self.connector.settings;
        let r = &self.connector.redactor;
        let known = link.declared.lock().map(|d| d.contains(topic)).unwrap_or(false);
        if !known {
            On {
                channel: &link.channel,
                timeout: s.operation_timeout,
                redactor: r,
            }
            .topic(topic)
            .await?;
            if let Ok(mut d) = link.declared.lock() {
                d.insert(topic.to_string());
            }
        }
        let what = format!("publish to exchange {topic}");
        let publish = async {
            let confirm = link
                .channel
                .basic_publish(
                    message.exchange.clone(),
                    message.routing_key.clone(),
                    BasicPublishOptions::default(),
                    &message.body,
                    message.properties.clone(),
                )
                .await?;
            confirm.await
        };
        let confirmation = timed(s.operation_timeout, &what, r, publish).await?;
        if confirmation.is_nack() {
            return Err(TransportError::other(format!(
                "{what}: the broker could not take the message (nack)"
            )));
        }
        Ok(())
    }

    /// Publish, reconnecting once when the connection turns out broken.
    async fn send(&self, topic: &str, message: AmqpMessage) -> Result<String, TransportError> {
        let limit = self.connector.settings.max_message_bytes;
        let size = wire::size(&message);
        if size > limit {
            return Err(rejected(format!(
                "the message is {size} bytes, more than {limit} ({})",
                crate::settings::MAX_MESSAGE_BYTES
            )));
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let link = self.link().await?;
            match self.send_on(&link, topic, &message).await {
                Ok(()) => {
                    let id = message.properties.message_id().as_ref().map(|m| m.to_string());
                    return Ok(match id {
                        Some(id) => format!("exchange {topic} message {id}"),
                        None => format!("exchange {topic}"),
                    });
                }
                Err(e) => {
                    // A failed call on a channel closes it (AMQP): the next
                    // publish needs a new one either way.
                    let broken = !link.usable();
                    if broken || e.kind != TransportErrorKind::Rejected {
                        self.forget(&link).await;
                    }
                    if !broken || tries >= 2 {
                        return Err(e);
                    }
                    tracing::info!(error = %e, "RabbitMQ publisher connection lost; reconnecting");
                }
            }
        }
    }
}

#[async_trait]
impl Transport for RabbitMqTransport {
    fn name(&self) -> &str {
        "rabbitmq"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            consumer_groups: true,
            ordered_per_key: true,
            persistent: true,
            replay_from_start: false,
            seek_time: false,
            max_message_bytes: self.connector.settings.max_message_bytes,
        }
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.send(&message.topic, wire::event_to_amqp(message)?).await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        self.send(&message.topic, wire::raw_to_amqp(message)?).await
    }

    /// The topic's backlog (what arrived while no group queue was bound,
    /// such as the letters of a dead-letter topic nobody consumes), read
    /// without consuming it.
    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let link = self.link().await?;
        let s = &self.connector.settings;
        crate::browse::backlog(
            &link.connection,
            s.operation_timeout,
            &self.connector.redactor,
            topic,
            after,
            limit,
        )
        .await
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        Ok(Box::new(
            RabbitMqSubscription::open(self.connector.clone(), request).await?,
        ))
    }

    /// The ready messages of the group's queue `<topic>.<group>` plus those
    /// of its retry queues (nacked with a delay, waiting to come back), by
    /// passive declarations. AMQP does not count the messages delivered to
    /// members and not acknowledged yet (only the management API does):
    /// they are not in `lag`, which is then less than what the group still
    /// has to handle by up to the members' prefetch; `pending` is not known
    /// (`None`). A group whose queue does not exist has no row. AMQP cannot
    /// list queues, so `group: None` is an `Unsupported` error: give the
    /// group.
    async fn lag(&self, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
        let Some(group) = group else {
            return Err(TransportError::unsupported(
                "the rabbitmq backend cannot list the consumer groups of a topic (AMQP cannot list queues): \
                 give the group",
            ));
        };
        let queue = crate::names::group_queue(topic, group)?;
        let s = &self.connector.settings;
        let mut queues = vec![queue.clone()];
        for ms in &s.retry_delays_ms {
            queues.push(crate::names::retry_queue(queue.as_str(), *ms)?);
        }
        let link = self.link().await?;
        let on = On {
            channel: &link.channel,
            timeout: s.operation_timeout,
            redactor: &self.connector.redactor,
        };
        let counts = on.ready_counts(&link.connection, &queues).await?;
        let Some(Some(ready)) = counts.first().copied() else {
            return Ok(Vec::new());
        };
        let retrying: u64 = counts.iter().skip(1).flatten().sum();
        Ok(vec![GroupLag {
            topic: topic.to_string(),
            group: group.to_string(),
            partition: "0".to_string(),
            lag: ready + retrying,
            pending: None,
        }])
    }
}
