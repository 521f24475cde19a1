//! The backends compiled into this build, one Cargo feature each.

use openedx_events::bus::Backends;

/// The backends of this build: the core's `memory`, plus each backend whose
/// feature is on.
pub fn backends() -> Backends {
    #[allow(unused_mut)]
    let mut backends = Backends::new();
    #[cfg(feature = "sqlite")]
    {
        backends = backends.with(std::sync::Arc::new(event_bus_sqlite::SqliteBackend));
    }
    #[cfg(feature = "redis")]
    {
        backends = backends.with(std::sync::Arc::new(event_bus_redis::RedisBackend));
    }
    #[cfg(feature = "kafka")]
    {
        backends = backends.with(std::sync::Arc::new(event_bus_kafka::KafkaBackend));
    }
    #[cfg(feature = "pulsar")]
    {
        backends = backends.with(std::sync::Arc::new(event_bus_pulsar::PulsarBackend));
    }
    #[cfg(feature = "nats")]
    {
        backends = backends.with(std::sync::Arc::new(event_bus_nats::NatsBackend));
    }
    #[cfg(feature = "rabbitmq")]
    {
        backends = backends.with(std::sync::Arc::new(event_bus_rabbitmq::RabbitMqBackend));
    }
    backends
}
