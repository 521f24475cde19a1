//! RabbitMQ backend of the Open edX event bus.
