//! `Bus`: one configured event bus (settings, backend, registry), its
//! producer, and the event types the Python side described.

use std::sync::Arc;
use std::time::Duration;

use openedx_events::bus::{Backends, BusError as CoreBusError, EventBus, EventBusProducer};
use openedx_events::config::Settings;
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value as Json;

use crate::{convert, runtime, schema, BusError, ConfigError, SendError};

/// Every backend of the workspace: all are in the wheel.
pub fn backends() -> Backends {
    Backends::new()
        .with(Arc::new(event_bus_sqlite::SqliteBackend))
        .with(Arc::new(event_bus_redis::RedisBackend))
        .with(Arc::new(event_bus_kafka::KafkaBackend))
        .with(Arc::new(event_bus_pulsar::PulsarBackend))
        .with(Arc::new(event_bus_nats::NatsBackend))
        .with(Arc::new(event_bus_rabbitmq::RabbitMqBackend))
}

/// A core error as the Python exception that fits it: a setting's error
/// names the setting.
pub fn to_py_err(e: CoreBusError) -> PyErr {
    match e {
        CoreBusError::Config(c) => Python::with_gil(|py| {
            let err = ConfigError::new_err(c.to_string());
            let value = err.value(py);
            // Both set on a fresh exception object: cannot fail.
            let _ = value.setattr("key", &c.key);
            let _ = value.setattr("reason", &c.message);
            err
        }),
        other => BusError::new_err(other.to_string()),
    }
}

/// A configured event bus.
#[pyclass(module = "openedx_event_bus._core", frozen)]
pub struct Bus {
    pub(crate) bus: Arc<EventBus>,
    pub(crate) producer: EventBusProducer,
}

impl Bus {
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        self.bus.registry()
    }

    fn event_type(&self, name: &str) -> PyResult<Arc<EventType>> {
        self.registry()
            .get(name)
            .map(|s| s.event_type().clone())
            .ok_or_else(|| BusError::new_err(format!("the event type {name} was not described to the bus")))
    }
}

#[pymethods]
impl Bus {
    /// Build from settings given as a JSON object (`{"EVENT_BUS_BACKEND":
    /// "redis", ...}`); connects to the backend. Raises `ConfigError`
    /// naming the key of an invalid setting.
    #[new]
    fn new(py: Python<'_>, settings_json: &str) -> PyResult<Self> {
        let values: serde_json::Map<String, Json> = serde_json::from_str(settings_json)
            .map_err(|e| BusError::new_err(format!("the settings are not a JSON object: {e}")))?;
        let mut settings = Settings::new();
        for (k, v) in values {
            settings.set(k, v);
        }
        let rt = runtime()?;
        // Each bus has a registry of its own: the catalog plus the signals
        // described to it.
        let registry = Arc::new(Registry::with_catalog());
        let bus = py
            .allow_threads(|| rt.block_on(EventBus::with_registry(settings, &backends(), registry)))
            .map_err(to_py_err)?;
        let producer = bus.producer();
        Ok(Bus {
            bus: Arc::new(bus),
            producer,
        })
    }

    /// The backend's name (`None` when `EVENT_BUS_BACKEND` is not set: the
    /// producer does nothing and consuming fails).
    #[getter]
    fn backend(&self) -> Option<String> {
        self.bus.transport().map(|t| t.name().to_string())
    }

    /// The full name of a topic (with `EVENT_BUS_TOPIC_PREFIX`).
    fn full_topic(&self, topic: &str) -> String {
        self.producer.full_topic(topic)
    }

    /// Whether the bus knows this event type (the catalog's, or described).
    fn knows(&self, event_type: &str) -> bool {
        self.registry().get(event_type).is_some()
    }

    /// Describe a signal the catalog does not know (JSON, see `schema.rs`).
    /// Returns the Avro schema the core derived, as openedx-events' sorted
    /// JSON text; a described type already known is kept as it is.
    fn describe(&self, description_json: &str) -> PyResult<String> {
        let json: Json = serde_json::from_str(description_json)
            .map_err(|e| BusError::new_err(format!("bad signal description: {e}")))?;
        let et = schema::event_type(&json).map_err(BusError::new_err)?;
        let known = match self.registry().get(et.name()) {
            Some(s) => s.event_type().clone(),
            None => {
                let et = Arc::new(et);
                self.registry()
                    .register(et.clone())
                    .map_err(|e| BusError::new_err(e.to_string()))?;
                et
            }
        };
        self.schema(known.name())
    }

    /// The Avro schema of an event type, as the Kafka bus registers it.
    fn schema(&self, event_type: &str) -> PyResult<String> {
        let et = self.event_type(event_type)?;
        let avro = et.avro().map_err(|e| BusError::new_err(e.to_string()))?;
        Ok(avro.canonical.clone())
    }

    /// Send one event: `event_data` is the signal's keyword arguments (the
    /// attrs objects), `metadata_json` the metadata's `to_json()` with its
    /// `minorversion`. Waits at most `timeout` seconds for the broker.
    /// Returns the position the broker gave (or None). Raises `SendError`
    /// with the event data as JSON when it was not sent.
    #[pyo3(signature = (event_type, topic, event_key_field, event_data, metadata_json, timeout))]
    // The arguments of the Python call, one by one.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        event_type: &str,
        topic: &str,
        event_key_field: Option<&str>,
        event_data: &Bound<'_, PyDict>,
        metadata_json: &str,
        timeout: f64,
    ) -> PyResult<Option<String>> {
        let et = self
            .event_type(event_type)
            .map_err(|e| SendError::new_err((e.to_string(), py.None())))?;
        let record = convert::record_from_kwargs(event_data, et.fields())
            .map_err(|e| SendError::new_err((format!("cannot serialize event: {e}"), py.None())))?;
        let metadata = EventsMetadata::from_json(metadata_json)
            .map_err(|e| SendError::new_err((format!("bad metadata: {e}"), record.to_json_string())))?;
        let wait = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::from_secs(10));
        let rt = runtime()?;
        let producer = &self.producer;
        let result = py.allow_threads(|| {
            rt.block_on(async {
                match tokio::time::timeout(wait, producer.send(&et, topic, event_key_field, &record, &metadata)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "cannot publish to {}: no confirmation from the broker within {timeout} s \
                         (the event may still arrive: it is logged for recovery)",
                        producer.full_topic(topic)
                    )),
                }
            })
        });
        result.map_err(|e| SendError::new_err((e, record.to_json_string())))
    }

    /// Wait up to `timeout` seconds for every event sent to be confirmed.
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let wait = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::from_secs(10));
        let rt = runtime()?;
        py.allow_threads(|| rt.block_on(self.producer.flush(wait)))
            .map_err(|e| BusError::new_err(e.to_string()))
    }
}
