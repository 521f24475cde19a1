//! The producer side: `send(event type, topic, event_key_field, data,
//! metadata)`, and auto-production of configured event types.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{extract_event_key, full_topic, KeyError, ProducerConfig};
use crate::event::{EventError, EventType};
use crate::metadata::EventsMetadata;
use crate::signal::{Event, ReceiverId, Registry, Signal};
use crate::value::Record;

use super::transport::{OutgoingMessage, Transport, TransportError};

/// Why an event was not produced. The caller always learns of it: nothing is
/// dropped silently.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The data does not encode.
    #[error("cannot serialize event: {0}")]
    Encode(#[from] EventError),
    /// The key cannot be extracted.
    #[error("cannot extract the event key: {0}")]
    Key(#[from] KeyError),
    /// The broker did not take it.
    #[error("cannot publish to {topic}: {error}")]
    Transport {
        /// Full topic.
        topic: String,
        /// The failure.
        error: TransportError,
    },
}

/// Publishes events through a transport. Cheap to clone. Built with no
/// transport it is the no-op producer (nothing is configured).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use openedx_events::bus::{memory::MemoryBroker, EventBusProducer};
/// use openedx_events::{catalog, metadata::EventsMetadata, sample};
/// let producer = EventBusProducer::new(Arc::new(MemoryBroker::new().transport()), Some("dev".into()));
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = sample::event_data(t, &mut sample::rng(1));
/// let metadata = EventsMetadata::new(t.name(), 0);
/// let position = producer.send(t, "user-login", Some("user.id"), &data, &metadata).await.unwrap();
/// assert_eq!(position.as_deref(), Some("0"));
/// # });
/// ```
#[derive(Clone)]
pub struct EventBusProducer {
    transport: Option<Arc<dyn Transport>>,
    prefix: Option<String>,
    instruments: Arc<RwLock<HashMap<String, SendInstruments>>>,
}

/// The producer's metrics of one topic (label `topic`, the full name):
/// `event_bus_producer_sends_total`, `event_bus_producer_send_failures_total`
/// and `event_bus_producer_send_duration_seconds`. Built once per topic.
#[derive(Clone)]
struct SendInstruments {
    sent: metrics::Counter,
    failed: metrics::Counter,
    duration: metrics::Histogram,
}

impl SendInstruments {
    fn new(topic: &str) -> Self {
        let labels = [metrics::Label::new("topic", topic.to_string())];
        SendInstruments {
            sent: metrics::counter!("event_bus_producer_sends_total", labels.iter()),
            failed: metrics::counter!("event_bus_producer_send_failures_total", labels.iter()),
            duration: metrics::histogram!("event_bus_producer_send_duration_seconds", labels.iter()),
        }
    }
}

impl std::fmt::Debug for EventBusProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBusProducer")
            .field("backend", &self.transport.as_ref().map(|t| t.name().to_string()))
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EventBusProducer {
    /// A producer on a transport, adding `prefix` to topics.
    pub fn new(transport: Arc<dyn Transport>, prefix: Option<String>) -> Self {
        EventBusProducer {
            transport: Some(transport),
            prefix,
            instruments: Arc::default(),
        }
    }

    /// The no-op producer: `send` does nothing (used when no backend is
    /// configured, after a warning at start-up).
    pub fn noop() -> Self {
        EventBusProducer {
            transport: None,
            prefix: None,
            instruments: Arc::default(),
        }
    }

    /// Whether this is the no-op producer.
    pub fn is_noop(&self) -> bool {
        self.transport.is_none()
    }

    /// The topic with the prefix.
    pub fn full_topic(&self, topic: &str) -> String {
        full_topic(self.prefix.as_deref(), topic)
    }

    /// Publish one event to `topic` (without prefix). `event_key_field` is the
    /// dotted path of the message key in the data, or `None` for no key.
    /// Returns the broker position (`None` from the no-op producer).
    pub async fn send(
        &self,
        event_type: &Arc<EventType>,
        topic: &str,
        event_key_field: Option<&str>,
        data: &Record,
        metadata: &EventsMetadata,
    ) -> Result<Option<String>, ProduceError> {
        let Some(transport) = &self.transport else {
            return Ok(None);
        };
        let full = self.full_topic(topic);
        let m = self.instruments_for(&full);
        let message = match self.prepare(event_type, topic, event_key_field, data, metadata) {
            Ok(message) => message,
            Err(e) => {
                m.failed.increment(1);
                return Err(e);
            }
        };
        let started = Instant::now();
        let published = transport.publish(&message).await;
        m.duration.record(started.elapsed().as_secs_f64());
        let position = match published {
            Ok(position) => {
                m.sent.increment(1);
                position
            }
            Err(error) => {
                m.failed.increment(1);
                return Err(ProduceError::Transport {
                    topic: message.topic.clone(),
                    error,
                });
            }
        };
        tracing::debug!(target: "event_bus::audit", topic = %message.topic, message_id = %metadata.id,
            event_type = %event_type.name(), position = %position, "message produced");
        Ok(Some(position))
    }

    fn instruments_for(&self, full_topic: &str) -> SendInstruments {
        if let Some(m) = self
            .instruments
            .read()
            .ok()
            .and_then(|all| all.get(full_topic).cloned())
        {
            return m;
        }
        let m = SendInstruments::new(full_topic);
        if let Ok(mut all) = self.instruments.write() {
            all.insert(full_topic.to_string(), m.clone());
        }
        m
    }

    /// Encode and key an event without publishing it.
    pub fn prepare(
        &self,
        event_type: &Arc<EventType>,
        topic: &str,
        event_key_field: Option<&str>,
        data: &Record,
        metadata: &EventsMetadata,
    ) -> Result<OutgoingMessage, ProduceError> {
        let body = event_type.encode_data(data)?;
        let key = match event_key_field {
            Some(path) if !path.is_empty() => Some(extract_event_key(event_type, data, path)?),
            _ => None,
        };
        Ok(OutgoingMessage {
            topic: self.full_topic(topic),
            event_type: event_type.clone(),
            metadata: metadata.clone(),
            key,
            body,
        })
    }

    /// Wait until everything sent has reached the broker.
    pub async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        match &self.transport {
            Some(t) => t.flush(timeout).await,
            None => Ok(()),
        }
    }
}

/// The receivers auto-production connected; dropping this does not
/// disconnect them, [`AutoProducer::uninstall`] does.
pub struct AutoProducer {
    connected: Vec<(Arc<Signal>, ReceiverId)>,
}

impl AutoProducer {
    /// Connect a receiver to every event type of `config`: each event sent in
    /// process is published to each enabled topic with its key. Events that
    /// came from the bus are never re-published (no loops).
    pub fn install(registry: &Registry, config: &ProducerConfig, producer: EventBusProducer) -> Self {
        let mut connected = Vec::new();
        for event_type in config.event_types() {
            let Some(signal) = registry.get(event_type) else {
                continue;
            };
            let topics: Vec<(String, String)> = config
                .topics_for(event_type)
                .iter()
                .filter(|(_, c)| c.enabled)
                .map(|(t, c)| (t.clone(), c.event_key_field.clone()))
                .collect();
            let producer = producer.clone();
            let topics = Arc::new(topics);
            let id = signal.connect_async("event_bus.auto_produce", move |event: Event| {
                let producer = producer.clone();
                let topics = topics.clone();
                async move {
                    if event.from_event_bus {
                        tracing::debug!(event_type = %event.event_type.name(),
                            "not producing an event that came from the event bus (preventing recursion)");
                        return Ok(());
                    }
                    for (topic, key_field) in topics.iter() {
                        if let Err(e) = producer
                            .send(&event.event_type, topic, Some(key_field), &event.data, &event.metadata)
                            .await
                        {
                            tracing::error!(event_type = %event.event_type.name(), topic = %topic,
                                message_id = %event.metadata.id, error = %e, "error producing event to the event bus");
                            return Err(Box::new(e) as crate::signal::ReceiverError);
                        }
                    }
                    Ok(())
                }
            });
            connected.push((signal, id));
        }
        AutoProducer { connected }
    }

    /// Disconnect the receivers.
    pub fn uninstall(self) {
        for (signal, id) in self.connected {
            signal.disconnect(id);
        }
    }

    /// How many event types are auto-produced.
    pub fn len(&self) -> usize {
        self.connected.len()
    }

    /// Whether no event type is auto-produced.
    pub fn is_empty(&self) -> bool {
        self.connected.is_empty()
    }
}
