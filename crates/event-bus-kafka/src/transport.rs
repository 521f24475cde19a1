//! The Kafka [`Transport`]: an idempotent producer that waits for each
//! delivery report, the schema registry client, and consumer subscriptions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::{
    Capabilities, OutgoingMessage, RawMessage, SubscribeRequest, Subscription, Transport, TransportError,
    TransportErrorKind,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientContext;

use crate::consumer::{position, KafkaSubscription};
use crate::errors::{self, transport_error};
use crate::registry::SchemaRegistry;
use crate::settings::{mask_text, KafkaSettings};
use crate::wire::build_record;

/// The producer's context: librdkafka logs to tracing, fatal errors noted.
pub(crate) struct ProducerContext {
    fatal: Arc<Mutex<Option<String>>>,
    settings: Arc<KafkaSettings>,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        errors::log(level, fac, &mask_text(log_message, &self.settings));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = mask_text(reason, &self.settings);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "fatal Kafka producer error");
            let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| format!("{error}: {reason}"));
        } else {
            tracing::warn!(%error, reason, "Kafka producer error");
        }
    }
}

/// A connection to a Kafka cluster and its schema registry.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use event_bus_kafka::{KafkaSettings, KafkaTransport};
/// use openedx_events::bus::{EventBusProducer, Transport};
/// use openedx_events::{catalog, metadata::EventsMetadata};
/// let transport: Arc<dyn Transport> =
///     Arc::new(KafkaTransport::connect(KafkaSettings::new("127.0.0.1:9092", "http://127.0.0.1:8081")).unwrap());
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = t.data_from_json(&serde_json::json!({"user": {"id": 1, "is_active": true,
///     "pii": {"username": "ada", "email": "ada@example.com", "name": "Ada"}}})).unwrap();
/// let producer = EventBusProducer::new(transport, Some("dev".into()));
/// let position = producer
///     .send(t, "user-login", Some("user.pii.username"), &data, &EventsMetadata::new(t.name(), 0))
///     .await
///     .unwrap();
/// println!("delivered at {position:?}");
/// # });
/// ```
pub struct KafkaTransport {
    settings: Arc<KafkaSettings>,
    registry: Arc<SchemaRegistry>,
    producer: FutureProducer<ProducerContext>,
    fatal: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("bootstrap_servers", &self.settings.bootstrap_servers)
            .field("registry", &self.registry)
            .finish()
    }
}

impl KafkaTransport {
    /// Create the producer and the registry client. Nothing is contacted
    /// yet: librdkafka connects in the background, and the registry is asked
    /// on first use of each subject.
    pub fn connect(settings: KafkaSettings) -> Result<Self, TransportError> {
        let settings = Arc::new(settings);
        let registry = SchemaRegistry::new(
            &settings.schema_registry_url,
            settings.schema_registry_auth.clone(),
            settings.schema_registry_timeout,
        )
        .map_err(TransportError::from)?
        .with_unknown_id_grace(settings.schema_registry_unknown_id_grace);
        let fatal = Arc::new(Mutex::new(None));
        let config = settings.producer_config();
        tracing::debug!(config = ?settings.redacted_config(&config), "creating the Kafka producer");
        let producer = config
            .create_with_context(ProducerContext {
                fatal: fatal.clone(),
                settings: settings.clone(),
            })
            .map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Config,
                    mask_text(&format!("cannot create the Kafka producer: {e}"), &settings),
                )
            })?;
        Ok(KafkaTransport {
            settings,
            registry: Arc::new(registry),
            producer,
            fatal,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The schema registry client (shared by producer and consumers).
    pub fn registry(&self) -> &Arc<SchemaRegistry> {
        &self.registry
    }

    /// Join a consumer group (as [`Transport::subscribe`], with the concrete
    /// type).
    pub fn subscribe_kafka(&self, request: &SubscribeRequest) -> Result<KafkaSubscription, TransportError> {
        KafkaSubscription::open(self.settings.clone(), self.registry.clone(), request)
    }

    /// Test hook: make librdkafka raise a fabricated fatal error on the
    /// producer, as an idempotence violation would.
    #[cfg(feature = "testing")]
    pub fn inject_fatal_error_for_tests(&self, reason: &str) -> Result<(), String> {
        crate::errors::inject_fatal_error(self.producer.client().native_ptr(), reason)
    }

    fn check_fatal(&self) -> Result<(), TransportError> {
        if let Some(reason) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(TransportError::new(TransportErrorKind::Fatal, reason));
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Err(TransportError::new(
                TransportErrorKind::Fatal,
                format!("fatal Kafka producer error {code}: {reason}"),
            ));
        }
        Ok(())
    }

    /// Send one record and wait for its delivery report.
    async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(String, Vec<u8>)],
    ) -> Result<String, TransportError> {
        self.check_fatal()?;
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (name, v) in headers {
            h = h.insert(Header {
                key: name,
                value: Some(v.as_slice()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(value).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        let delivery = match self.producer.send_result(record) {
            Ok(d) => d,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(TransportError::new(
                    TransportErrorKind::Rejected,
                    format!(
                        "cannot publish to {topic}: the local producer queue is full \
                         (queue.buffering.max.messages={}); the broker is not keeping up or cannot be reached",
                        self.settings.producer_queue_max_messages()
                    ),
                ))
            }
            Err((e, _)) => return Err(self.delivery_error(topic, &e)),
        };
        match delivery.await {
            Ok(Ok(d)) => Ok(position(d.partition, d.offset)),
            Ok(Err((e, _))) => Err(self.delivery_error(topic, &e)),
            Err(_) => Err(TransportError::new(
                TransportErrorKind::Closed,
                format!("the Kafka producer closed before {topic} confirmed the message"),
            )),
        }
    }

    fn delivery_error(&self, topic: &str, e: &KafkaError) -> TransportError {
        let mut err = transport_error(&format!("cannot publish to {topic}"), e);
        err.message = mask_text(&err.message, &self.settings);
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            err.kind = TransportErrorKind::Fatal;
            err.message = format!("{}; fatal producer error {code}: {reason}", err.message);
        }
        err
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    fn name(&self) -> &str {
        "kafka"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            consumer_groups: true,
            ordered_per_key: true,
            persistent: true,
            replay_from_start: true,
            seek_time: true,
            max_message_bytes: self.settings.max_message_bytes(),
        }
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.check_fatal()?;
        let record = build_record(message, &self.registry).await?;
        self.send(&record.topic, record.key.as_deref(), &record.value, &record.headers)
            .await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        self.send(&message.topic, message.key.as_deref(), &message.value, &message.headers)
            .await
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        Ok(Box::new(self.subscribe_kafka(request)?))
    }

    async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| TransportError::other(format!("flush task failed: {e}")))?
            .map_err(|e| transport_error("cannot flush the Kafka producer", &e))
    }
}
