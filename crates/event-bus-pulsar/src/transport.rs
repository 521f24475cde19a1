//! [`PulsarTransport`]: one Pulsar client per process, producers cached per
//! topic, consumers created per subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, OutgoingMessage, RawMessage, SubscribeRequest, Subscription, Transport,
    TransportError, TransportErrorKind,
};
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{
    Authentication, ConnectionRetryOptions, OperationRetryOptions, Producer, ProducerOptions, Pulsar, TokioExecutor,
};
use tokio::sync::Mutex;

use crate::error::{classify, timed};
use crate::extras::requested_kind;
use crate::settings::{CompressionKind, PulsarSettings, SubscriptionKind};
use crate::subscription::PulsarSubscription;
use crate::wire::{self, PulsarRecord};

/// The pulsar-rs client type this backend uses.
pub type Client = Pulsar<TokioExecutor>;

type SharedProducer = Arc<Mutex<Producer<TokioExecutor>>>;

/// A connection to a Pulsar cluster: publishes (one cached producer per
/// topic, send receipts awaited) and opens subscriptions.
///
/// ```no_run
/// # async fn run() -> Result<(), openedx_events::bus::TransportError> {
/// use event_bus_pulsar::{PulsarSettings, PulsarTransport};
/// use openedx_events::bus::transport::{RawMessage, Transport};
/// let transport = PulsarTransport::connect(PulsarSettings::new("pulsar://localhost:6650")).await?;
/// let position = transport
///     .publish_raw(&RawMessage { topic: "dev-user-login".into(), value: b"hi".to_vec(), ..Default::default() })
///     .await?;
/// println!("stored at {position}");
/// # Ok(()) }
/// ```
pub struct PulsarTransport {
    client: Client,
    settings: Arc<PulsarSettings>,
    producers: Mutex<HashMap<String, SharedProducer>>,
}

impl PulsarTransport {
    /// Connect to the cluster (within the operation timeout).
    pub async fn connect(settings: PulsarSettings) -> Result<Self, TransportError> {
        let timeout = settings.operation_timeout;
        let mut builder = Pulsar::builder(settings.url.clone(), TokioExecutor)
            .with_operation_retry_options(OperationRetryOptions {
                operation_timeout: timeout,
                retry_delay: Duration::from_millis(500).min(timeout),
                max_retries: None,
            })
            .with_connection_retry_options(ConnectionRetryOptions {
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                max_retries: 20,
                connection_timeout: timeout,
                keep_alive: Duration::from_secs(30),
                ..ConnectionRetryOptions::default()
            });
        if let Some(token) = &settings.token {
            builder = builder.with_auth(Authentication {
                name: "token".into(),
                data: token.clone().into_bytes(),
            });
        }
        if let Some(path) = &settings.tls_trust_certs_file {
            builder = builder.with_certificate_chain_file(path).map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Config,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
        }
        if settings.tls_allow_insecure_connection {
            builder = builder.with_allow_insecure_connection(true);
        }
        let client = timed(timeout, &format!("connect to {}", settings.url), builder.build()).await?;
        tracing::info!(url = %settings.url, tenant = %settings.tenant, namespace = %settings.namespace,
            "connected to Pulsar");
        Ok(PulsarTransport {
            client,
            settings: Arc::new(settings),
            producers: Mutex::new(HashMap::new()),
        })
    }

    /// Join a subscription (as [`Transport::subscribe`], with the concrete
    /// type).
    pub async fn subscribe_pulsar(&self, request: &SubscribeRequest) -> Result<PulsarSubscription, TransportError> {
        let kind = requested_kind(request, self.settings.subscription_kind)?;
        PulsarSubscription::open(
            self.client.clone(),
            self.settings.clone(),
            self.pulsar_topic(&request.topic),
            request,
            kind,
        )
        .await
    }

    /// The settings in use.
    pub fn settings(&self) -> &PulsarSettings {
        &self.settings
    }

    /// The Pulsar topic of an event bus topic (see [`wire::pulsar_topic`]).
    pub fn pulsar_topic(&self, topic: &str) -> String {
        wire::pulsar_topic(&self.settings.tenant, &self.settings.namespace, topic)
    }

    fn producer_options(&self) -> ProducerOptions {
        let s = &self.settings;
        let mut options = ProducerOptions {
            compression: Some(compression(s.compression)),
            ..ProducerOptions::default()
        };
        if s.batching {
            options.batch_size = Some(s.batching_max_messages);
            options.batch_timeout = Some(s.batching_max_publish_delay);
            options.batch_byte_size = Some(s.max_message_bytes);
        }
        options
    }

    async fn producer(&self, topic: &str) -> Result<SharedProducer, TransportError> {
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(topic) {
            return Ok(p.clone());
        }
        let build = self
            .client
            .producer()
            .with_topic(topic)
            .with_options(self.producer_options())
            .build();
        let producer = timed(
            self.settings.operation_timeout,
            &format!("create a producer on {topic}"),
            build,
        )
        .await?;
        let producer = Arc::new(Mutex::new(producer));
        producers.insert(topic.to_string(), producer.clone());
        Ok(producer)
    }

    async fn forget_producer(&self, topic: &str) {
        let removed = self.producers.lock().await.remove(topic);
        if let Some(p) = removed {
            // Close it in the background: its pending sends already failed.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), async { p.lock().await.close().await }).await;
            });
        }
    }

    /// Send one record and wait for the broker's receipt; returns the
    /// message id as text.
    async fn send(&self, topic: &str, record: PulsarRecord) -> Result<String, TransportError> {
        let size = record.approximate_size();
        if size > self.settings.max_message_bytes {
            return Err(TransportError::new(
                TransportErrorKind::Rejected,
                format!(
                    "a message of {size} bytes is larger than the {} bytes Pulsar accepts (EVENT_BUS_PULSAR_MAX_MESSAGE_BYTES)",
                    self.settings.max_message_bytes
                ),
            ));
        }
        let pulsar_topic = self.pulsar_topic(topic);
        let limit = self.settings.operation_timeout;
        let producer = self.producer(&pulsar_topic).await?;
        let result = async {
            let receipt_future = {
                let mut p = producer.lock().await;
                timed(
                    limit,
                    &format!("send to {pulsar_topic}"),
                    p.send_non_blocking(record.into_message()),
                )
                .await?
            };
            let receipt = timed(
                limit,
                &format!("wait for the receipt from {pulsar_topic}"),
                receipt_future,
            )
            .await?;
            Ok::<_, TransportError>(match receipt.message_id {
                Some(id) => wire::format_position(&id),
                None => String::new(),
            })
        }
        .await;
        if let Err(e) = &result {
            if e.kind != TransportErrorKind::Rejected {
                // A new producer next time: this one may be closed for good.
                self.forget_producer(&pulsar_topic).await;
            }
        }
        result
    }

    /// Read up to `limit` messages of `topic` after `after` with a
    /// non-durable reader (nothing is acknowledged).
    async fn read_range(
        &self,
        topic: &str,
        after: Option<MessageIdData>,
        limit: usize,
    ) -> Result<Vec<Delivery>, TransportError> {
        let pulsar_topic = self.pulsar_topic(topic);
        let op = self.settings.operation_timeout;
        let permits = limit.clamp(1, 1000) as u32;
        let options = pulsar::ConsumerOptions {
            initial_position: InitialPosition::Earliest,
            durable: Some(false),
            start_message_id: after.clone(),
            // Room for the permits plus one batch, so pulsar-rs's engine is
            // free to answer the last-message-id request (see the
            // subscription's receiver queue).
            receiver_queue_size: Some(permits * 2 + 1000),
            ..Default::default()
        };
        let name = format!("event-bus-browse-{}", uuid::Uuid::new_v4().simple());
        let build = self
            .client
            .consumer()
            .with_topic(&pulsar_topic)
            .with_subscription(&name)
            .with_consumer_name(&name)
            .with_consumer_id(rand::random::<u64>() >> 1)
            .with_subscription_type(pulsar::SubType::Shared)
            .with_batch_size(permits)
            .with_options(options)
            .build::<Vec<u8>>();
        let mut consumer = timed(op, &format!("open a reader on {pulsar_topic}"), build).await?;
        let last = timed(op, "get the last message id", consumer.get_last_message_id()).await;
        let last = match last {
            Ok(ids) => ids.into_iter().next(),
            // pulsar-lite's answer for an empty topic (Pulsar answers -1:-1).
            Err(e) if e.message.contains("no messages") => None,
            Err(e) => {
                let _ = tokio::time::timeout(op, consumer.close()).await;
                return Err(e);
            }
        };
        let mut out: Vec<Delivery> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let at_end = |id: &MessageIdData| {
            last.as_ref()
                .is_none_or(|l| (id.ledger_id, id.entry_id) >= (l.ledger_id, l.entry_id))
        };
        let nothing_after = match (&last, &after) {
            (None, _) => true,
            (Some(l), _) if (l.entry_id as i64) < 0 => true,
            (Some(l), Some(a)) => (a.ledger_id, a.entry_id) >= (l.ledger_id, l.entry_id),
            _ => false,
        };
        if !nothing_after {
            let idle = Duration::from_millis(1500).min(op);
            while out.len() < limit {
                // Messages are known to follow: the first may take long on a
                // busy broker; after it, a pause this long ends the page.
                let wait = if out.is_empty() { op } else { idle };
                let next = match tokio::time::timeout(wait, consumer.next()).await {
                    Err(_) | Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        let _ = tokio::time::timeout(op, consumer.close()).await;
                        return Err(classify("browse", &e));
                    }
                    Ok(Some(Ok(m))) => m,
                };
                let id = next.message_id().clone();
                let past_after = after
                    .as_ref()
                    .is_none_or(|a| wire::position_cmp(&id, a) == std::cmp::Ordering::Greater);
                let done = at_end(&id)
                    && next
                        .message_id
                        .batch_size
                        .is_none_or(|n| id.batch_index.unwrap_or(0) + 1 >= n);
                if past_after && seen.insert(wire::format_position(&id)) {
                    out.push(wire::delivery(
                        topic,
                        &id,
                        &next.payload.metadata,
                        &next.payload.data,
                        DeliveryTag(out.len() as u64),
                        1,
                    ));
                }
                if done {
                    break;
                }
            }
        }
        // Free pulsar-rs's engine (it stops while its channel is full) so it
        // can send the close.
        while let Some(Some(_)) = consumer.next().now_or_never() {}
        let _ = tokio::time::timeout(op, consumer.close()).await;
        out.sort_by(|a, b| {
            let pa = wire::parse_position(&a.position).unwrap_or_default();
            let pb = wire::parse_position(&b.position).unwrap_or_default();
            wire::position_cmp(&pa, &pb)
        });
        out.truncate(limit);
        Ok(out)
    }
}

fn compression(kind: CompressionKind) -> pulsar::compression::Compression {
    use pulsar::compression::Compression;
    match kind {
        CompressionKind::None => Compression::None,
        #[cfg(feature = "compression")]
        CompressionKind::Lz4 => Compression::Lz4(pulsar::compression::CompressionLz4::default()),
        #[cfg(feature = "compression")]
        CompressionKind::Zlib => Compression::Zlib(pulsar::compression::CompressionZlib::default()),
        #[cfg(feature = "compression")]
        CompressionKind::Zstd => Compression::Zstd(pulsar::compression::CompressionZstd::default()),
        #[cfg(feature = "compression")]
        CompressionKind::Snappy => Compression::Snappy(pulsar::compression::CompressionSnappy::default()),
        // Refused by the settings when the feature is off.
        #[cfg(not(feature = "compression"))]
        _ => Compression::None,
    }
}

#[async_trait]
impl Transport for PulsarTransport {
    fn name(&self) -> &str {
        "pulsar"
    }

    /// Per-key order only with Key_Shared subscriptions
    /// (`EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE=key_shared`): Shared ones give
    /// messages of one key to any member.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ordered_per_key: self.settings.subscription_kind == SubscriptionKind::KeyShared,
            ..Capabilities::durable_log(self.settings.max_message_bytes)
        }
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        let record = wire::event_record(message).map_err(|e| TransportError::new(TransportErrorKind::Rejected, e))?;
        self.send(&message.topic, record).await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        let record = wire::raw_record(message).map_err(|e| TransportError::new(TransportErrorKind::Rejected, e))?;
        self.send(&message.topic, record).await
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        Ok(Box::new(self.subscribe_pulsar(request).await?))
    }

    /// Read a topic without a group, oldest first, after a position
    /// (`ledger:entry:partition:batch`), with a non-durable subscription
    /// that is gone when the call returns.
    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = match after {
            None => None,
            Some(p) => Some(wire::parse_position(p).map_err(TransportError::other)?),
        };
        self.read_range(topic, after, limit).await
    }

    /// Send every batch still being filled and wait for their receipts.
    async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        if !self.settings.batching {
            // Every publish already waited for its receipt.
            return Ok(());
        }
        let producers: Vec<SharedProducer> = self.producers.lock().await.values().cloned().collect();
        let all = async {
            for p in producers {
                p.lock().await.send_batch().await?;
            }
            Ok::<(), pulsar::Error>(())
        };
        timed(timeout, "flush the producers", all).await
    }
}
