//! The transactional outbox of the Open edX event bus.
