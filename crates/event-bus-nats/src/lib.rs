//! NATS JetStream backend of the Open edX event bus.
