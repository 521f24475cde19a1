//! The event bus: a producer and a consumer over a swappable transport,
//! chosen by configuration (`EVENT_BUS_BACKEND`), never by code.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use openedx_events::bus::{Backends, EventBus};
//! use openedx_events::config::Settings;
//! let mut settings = Settings::new();
//! settings.set("EVENT_BUS_BACKEND", "memory");
//! settings.set("EVENT_BUS_TOPIC_PREFIX", "dev");
//! let bus = EventBus::from_settings(settings, &Backends::new()).await.unwrap();
//! assert_eq!(bus.producer().full_topic("user-login"), "dev-user-login");
//!
//! // Nothing configured: a no-op producer and a consumer that refuses to run.
//! let idle = EventBus::from_settings(Settings::new(), &Backends::new()).await.unwrap();
//! assert!(idle.producer().is_noop());
//! assert!(idle.consumer("user-login", "g").is_err());
//! # });
//! ```

pub mod consumer;
pub mod dead_letter;
pub mod delayed;
pub mod extras;
pub mod health;
pub mod hooks;
pub mod memory;
pub mod options;
pub mod producer;
pub mod transport;
pub mod wire;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

pub use consumer::{ConsumerError, ConsumerStats, EventBusConsumer};
pub use options::{ConsumerOptions, RetryPolicy};
pub use producer::{AutoProducer, EventBusProducer, ProduceError};
pub use transport::{Transport, TransportError};

use crate::config::{ConfigError, ProducerConfig, Settings};
use crate::signal::Registry;

/// Settings the core reads (each backend lists its own).
pub const CORE_SETTINGS: &[&str] = &[
    "EVENT_BUS_BACKEND",
    "EVENT_BUS_TOPIC_PREFIX",
    "EVENT_BUS_PRODUCER_CONFIG",
    "EVENTS_SERVICE_NAME",
    "SERVICE_VARIANT",
    "EVENT_BUS_CONSUMERS_ENABLED",
    "EVENT_BUS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT",
    "EVENT_BUS_AUDIT_LOGGING_ENABLED",
    "EVENT_BUS_CONSUMER_POLL_TIMEOUT",
    "EVENT_BUS_CONSUMER_POLL_FAILURE_SLEEP",
    "EVENT_BUS_CONSUMER_BATCH_SIZE",
    "EVENT_BUS_CONSUMER_START",
    "EVENT_BUS_RETRY_MAX_ATTEMPTS",
    "EVENT_BUS_RETRY_INITIAL_DELAY",
    "EVENT_BUS_RETRY_MAX_DELAY",
    "EVENT_BUS_RETRY_MAX_BLOCKING",
    "EVENT_BUS_DEAD_LETTER_ENABLED",
    "EVENT_BUS_DEAD_LETTER_TOPIC",
    "EVENT_BUS_ALLOW_TRAILING_BYTES",
    "EVENT_BUS_CONSUMER_DEDUPLICATION_WINDOW",
    // Read by the `event-bus` command and the Python package, not the
    // library: the log filter and format, the metrics and health server.
    "EVENT_BUS_LOG",
    "EVENT_BUS_LOG_FORMAT",
    "EVENT_BUS_METRICS_ADDR",
    "EVENT_BUS_HEALTH_STALL_SECONDS",
    "EVENT_BUS_LAG_POLL_SECONDS",
];

/// Why the bus cannot be built or used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No backend is configured, so there is nothing to consume.
    #[error("Cannot consume events; no consumer configured (set EVENT_BUS_BACKEND)")]
    NotConfigured,
    /// The backend could not be reached or refused.
    #[error("{0}")]
    Transport(#[from] TransportError),
}

/// Builds a backend's transport from settings. A backend crate provides one;
/// an application lists the backends it compiles in.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The `EVENT_BUS_BACKEND` value that selects it.
    fn name(&self) -> &'static str;
    /// The settings it reads (for the unknown-setting warning and docs).
    fn settings(&self) -> &'static [&'static str];
    /// Connect. Invalid settings are a [`ConfigError`] naming the key.
    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError>;
}

/// The backends an application knows.
#[derive(Clone)]
pub struct Backends {
    factories: Vec<Arc<dyn BackendFactory>>,
}

impl Default for Backends {
    fn default() -> Self {
        Self::new()
    }
}

impl Backends {
    /// The built-in backends (memory).
    pub fn new() -> Self {
        Backends {
            factories: vec![Arc::new(MemoryFactory)],
        }
    }

    /// Add a backend.
    pub fn with(mut self, factory: Arc<dyn BackendFactory>) -> Self {
        self.factories.push(factory);
        self
    }

    /// The backend names.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }

    /// The factory for a name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn BackendFactory>> {
        self.factories.iter().find(|f| f.name() == name)
    }

    fn warn_unknown_settings(&self, settings: &Settings) {
        for key in settings.keys() {
            let known = CORE_SETTINGS.contains(&key)
                || self.factories.iter().any(|f| f.settings().contains(&key))
                || key.ends_with("_CONSUMERS_ENABLED")
                || key.ends_with("_CONSUMER_CONSECUTIVE_ERRORS_LIMIT")
                || key.ends_with("_AUDIT_LOGGING_ENABLED")
                || key.ends_with("_CONSUMER_POLL_TIMEOUT")
                || key.ends_with("_CONSUMER_POLL_FAILURE_SLEEP");
            if !known {
                tracing::warn!(setting = key, "unknown event bus setting (ignored); check its spelling");
            }
        }
    }
}

/// `EVENT_BUS_BACKEND = "memory"`: one broker per process.
struct MemoryFactory;

#[async_trait]
impl BackendFactory for MemoryFactory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn settings(&self) -> &'static [&'static str] {
        &[]
    }
    async fn create(&self, _settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        static BROKER: OnceLock<memory::MemoryBroker> = OnceLock::new();
        Ok(Arc::new(BROKER.get_or_init(memory::MemoryBroker::new).transport()))
    }
}

/// A configured bus: the backend, the settings, the registry of event types
/// and the producer configuration, all validated at start-up.
pub struct EventBus {
    transport: Option<Arc<dyn Transport>>,
    settings: Settings,
    registry: Arc<Registry>,
    producer_config: ProducerConfig,
}

impl EventBus {
    /// Build from settings with the global registry (the catalog).
    pub async fn from_settings(settings: Settings, backends: &Backends) -> Result<Self, BusError> {
        Self::with_registry(settings, backends, Registry::global()).await
    }

    /// Build from settings with a registry of your own.
    pub async fn with_registry(
        settings: Settings,
        backends: &Backends,
        registry: Arc<Registry>,
    ) -> Result<Self, BusError> {
        backends.warn_unknown_settings(&settings);
        if settings.get("EVENTS_SERVICE_NAME").is_some() || settings.get("SERVICE_VARIANT").is_some() {
            let name = settings
                .string("EVENTS_SERVICE_NAME")?
                .filter(|s| !s.is_empty())
                .or(settings.string("SERVICE_VARIANT")?);
            crate::metadata::set_service_name(name);
        }
        let producer_config = match settings.structured("EVENT_BUS_PRODUCER_CONFIG")? {
            Some(json) => ProducerConfig::from_json(&json, &registry)?,
            None => ProducerConfig::empty(),
        };
        settings.string("EVENT_BUS_TOPIC_PREFIX")?;
        let transport = match settings.string("EVENT_BUS_BACKEND")? {
            None => {
                tracing::warn!("Event Bus setting EVENT_BUS_BACKEND is missing; component will be inactive");
                None
            }
            Some(name) => {
                let Some(factory) = backends.get(&name) else {
                    return Err(ConfigError::new(
                        "EVENT_BUS_BACKEND",
                        format!(
                            "unknown backend {name:?}; this build has: {}",
                            backends.names().join(", ")
                        ),
                    )
                    .into());
                };
                Some(factory.create(&settings).await?)
            }
        };
        // Consumer settings are checked now too, so errors surface at start-up.
        ConsumerOptions::new("-", "-").apply_settings(&settings, transport.as_ref().map_or("none", |t| t.name()))?;
        Ok(EventBus {
            transport,
            settings,
            registry,
            producer_config,
        })
    }

    /// The transport, if a backend is configured.
    pub fn transport(&self) -> Option<&Arc<dyn Transport>> {
        self.transport.as_ref()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The registry of event types.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The producer configuration.
    pub fn producer_config(&self) -> &ProducerConfig {
        &self.producer_config
    }

    /// The producer (the no-op producer when no backend is configured).
    pub fn producer(&self) -> EventBusProducer {
        match &self.transport {
            Some(t) => EventBusProducer::new(t.clone(), self.prefix()),
            None => EventBusProducer::noop(),
        }
    }

    fn prefix(&self) -> Option<String> {
        self.settings.string("EVENT_BUS_TOPIC_PREFIX").ok().flatten()
    }

    /// Consumer options for a topic and group, from the settings.
    pub fn consumer_options(&self, topic: &str, group: &str) -> Result<ConsumerOptions, BusError> {
        let mut o = ConsumerOptions::new(topic, group);
        o.apply_settings(&self.settings, self.transport.as_ref().map_or("none", |t| t.name()))?;
        Ok(o)
    }

    /// A consumer of `topic` (without prefix) in `group`, with options from
    /// the settings. Fails when no backend is configured.
    pub fn consumer(&self, topic: &str, group: &str) -> Result<EventBusConsumer, BusError> {
        let options = self.consumer_options(topic, group)?;
        self.consumer_with(options)
    }

    /// A consumer with explicit options.
    pub fn consumer_with(&self, options: ConsumerOptions) -> Result<EventBusConsumer, BusError> {
        let transport = self.transport.clone().ok_or(BusError::NotConfigured)?;
        Ok(EventBusConsumer::new(transport, self.registry.clone(), options))
    }

    /// Produce every configured event type when it is sent in process.
    pub fn install_auto_produce(&self) -> AutoProducer {
        AutoProducer::install(&self.registry, &self.producer_config, self.producer())
    }
}
