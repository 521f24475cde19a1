//! What can go wrong in the outbox, with the context to act on it.

use openedx_events::bus::{ProduceError, TransportError};
use openedx_events::config::ConfigError;

/// An outbox failure.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A setting is invalid (the error names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The event does not encode, or its key cannot be extracted (the
    /// same checks as the producer's `prepare`).
    #[error("cannot enqueue the event: {0}")]
    Prepare(#[from] ProduceError),
    /// The event's metadata names another event type than the event.
    #[error("cannot enqueue the event: its metadata is of event type {metadata:?}, the event is {event_type:?}")]
    MetadataMismatch {
        /// The event type.
        event_type: String,
        /// The type named by the metadata.
        metadata: String,
    },
    /// A database call failed.
    #[error("outbox database error while {context}: {source}")]
    Database {
        /// What the outbox was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row cannot be turned back into a message.
    #[error("outbox row {id} of table {table} is unusable: {reason}")]
    BadRow {
        /// The table.
        table: String,
        /// The row id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// The broker did not take a message.
    #[error("cannot publish outbox row {id} to {topic}: {error}")]
    Publish {
        /// The row id.
        id: i64,
        /// The full topic.
        topic: String,
        /// The transport's error.
        error: TransportError,
    },
}

impl OutboxError {
    /// A database error with what the outbox was doing.
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> OutboxError {
        let context = context.into();
        move |source| OutboxError::Database { context, source }
    }
}
