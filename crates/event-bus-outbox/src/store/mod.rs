//! The relay's side of the database: one implementation per database, the
//! same statements in each one's dialect.

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod pg;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::OutboxError;
use crate::row::OutboxRow;
use crate::settings::{DatabaseKind, OutboxSettings};

/// The columns read back, in [`OutboxRow`] order.
pub(crate) const COLUMNS: &str = "id, partition_no, topic, event_type, key_field, key_type, key_text, \
     event_id, event_time, minorversion, source, sourcehost, sourcelib, body";

/// The columns written by `enqueue`.
pub(crate) const INSERT_COLUMNS: &str = "partition_no, topic, event_type, key_field, key_type, key_text, \
     event_id, event_time, minorversion, source, sourcehost, sourcelib, body, created_at";

/// The migration for a table name: the migration file with the default
/// name replaced (the name was checked to be an identifier).
pub(crate) fn migration_for(template: &str, table: &str) -> String {
    template.replace(crate::settings::DEFAULT_TABLE, table)
}

/// The relay's database.
#[async_trait]
pub(crate) trait Store: Send + Sync {
    /// Create the tables if they do not exist.
    async fn migrate(&self) -> Result<(), OutboxError>;
    /// The partitions that have unsent rows (a plain read: locks nothing).
    async fn pending_partitions(&self) -> Result<Vec<i16>, OutboxError>;
    /// How many rows are unsent.
    async fn pending_count(&self) -> Result<i64, OutboxError>;
    /// Lock up to `max_partitions` of `partitions` that no other relay holds
    /// (`FOR UPDATE SKIP LOCKED`), trying them from `first` on (round
    /// robin), in a transaction kept open until [`Claim::commit`]; then read
    /// up to `batch` unsent rows of them, by id. `None` when every one is
    /// held by another relay.
    async fn claim(
        &self,
        partitions: &[i16],
        first: i16,
        max_partitions: usize,
        batch: usize,
    ) -> Result<Option<(Box<dyn Claim>, Vec<OutboxRow>)>, OutboxError>;
    /// Delete up to `limit` rows sent before `before`; how many went.
    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, OutboxError>;
}

/// Partitions held by one relay: its open transaction.
#[async_trait]
pub(crate) trait Claim: Send {
    /// The partitions held.
    fn partitions(&self) -> &[i16];
    /// Mark rows sent (at `at`).
    async fn mark_sent(&mut self, ids: &[i64], at: DateTime<Utc>) -> Result<(), OutboxError>;
    /// Count a failed attempt of a row, with the error.
    async fn mark_failed(&mut self, id: i64, error: &str) -> Result<(), OutboxError>;
    /// Commit the marks and release the partitions.
    async fn commit(self: Box<Self>) -> Result<(), OutboxError>;
}

/// Connect to the database the settings name.
pub(crate) async fn connect(settings: &OutboxSettings, max_connections: u32) -> Result<Box<dyn Store>, OutboxError> {
    match settings.kind {
        #[cfg(feature = "postgres")]
        DatabaseKind::Postgres => Ok(Box::new(pg::PgStore::connect(settings, max_connections).await?)),
        #[cfg(feature = "mysql")]
        DatabaseKind::MySql => Ok(Box::new(mysql::MySqlStore::connect(settings, max_connections).await?)),
        #[allow(unreachable_patterns)]
        other => Err(OutboxError::Config(openedx_events::config::ConfigError::new(
            crate::settings::DATABASE_URL,
            format!("this build has no {other:?} support (enable the crate feature)"),
        ))),
    }
}

/// A connection failure, with the URL masked and the password scrubbed.
pub(crate) fn connect_error(settings: &OutboxSettings) -> impl FnOnce(sqlx::Error) -> OutboxError + '_ {
    move |e| {
        let redactor = openedx_events::config::Redactor::from_url(settings.database_url.expose());
        let context = format!("connecting to {}", settings.masked_url());
        match e {
            sqlx::Error::Configuration(inner) => OutboxError::Config(openedx_events::config::ConfigError::new(
                crate::settings::DATABASE_URL,
                redactor.scrub(&inner.to_string()).into_owned(),
            )),
            source => OutboxError::Database { context, source },
        }
    }
}
