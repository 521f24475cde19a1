//! The writing side: [`Outbox::enqueue`] puts an event into the caller's
//! own transaction.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use openedx_events::bus::{memory::MemoryBroker, EventBusProducer};
use openedx_events::config::{ConfigError, Settings};
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Event;
use openedx_events::value::Record;

use crate::error::OutboxError;
use crate::row::OutboxRow;
use crate::settings::{check_table_name, DEFAULT_TABLE, TABLE};

mod sealed {
    use super::*;

    /// The statements of one database (not nameable outside the crate).
    #[async_trait]
    pub trait Sealed: sqlx::Database {
        async fn insert_row(
            conn: &mut Self::Connection,
            table: &str,
            row: &OutboxRow,
            created_at: DateTime<Utc>,
        ) -> Result<i64, sqlx::Error>;

        async fn create_tables(conn: &mut Self::Connection, table: &str) -> Result<(), sqlx::Error>;
    }
}

/// A database the outbox can write to: PostgreSQL (`sqlx::Postgres`) and
/// MySQL / MariaDB (`sqlx::MySql`). Sealed: the SQL is this crate's.
pub trait OutboxDatabase: sealed::Sealed {}

#[cfg(feature = "postgres")]
impl OutboxDatabase for sqlx::Postgres {}

#[cfg(feature = "postgres")]
#[async_trait]
impl sealed::Sealed for sqlx::Postgres {
    async fn insert_row(
        conn: &mut sqlx::PgConnection,
        table: &str,
        row: &OutboxRow,
        created_at: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        crate::store::pg::insert(conn, table, row, created_at).await
    }

    async fn create_tables(conn: &mut sqlx::PgConnection, table: &str) -> Result<(), sqlx::Error> {
        crate::store::pg::migrate(conn, table).await
    }
}

#[cfg(feature = "mysql")]
impl OutboxDatabase for sqlx::MySql {}

#[cfg(feature = "mysql")]
#[async_trait]
impl sealed::Sealed for sqlx::MySql {
    async fn insert_row(
        conn: &mut sqlx::MySqlConnection,
        table: &str,
        row: &OutboxRow,
        created_at: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        crate::store::mysql::insert(conn, table, row, created_at).await
    }

    async fn create_tables(conn: &mut sqlx::MySqlConnection, table: &str) -> Result<(), sqlx::Error> {
        crate::store::mysql::migrate(conn, table).await
    }
}

/// The id the database gave an enqueued row.
pub type OutboxId = i64;

/// Writes events into the outbox table, inside the caller's transaction.
/// Cheap to clone; holds no connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use event_bus_outbox::Outbox;
/// use openedx_events::{catalog, metadata::EventsMetadata, sample};
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// let outbox = Outbox::new("event_bus_outbox", Some("dev".into()))?;
/// outbox.migrate(&pool).await?;
/// let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
/// let data = sample::event_data(t, &mut sample::rng(1));
/// let mut tx = pool.begin().await?;
/// // ... the service's own writes in `tx` ...
/// outbox
///     .enqueue_data(&mut tx, t, "user-login", Some("user.id"), &data, &EventsMetadata::new(t.name(), 0))
///     .await?;
/// tx.commit().await?; // the event and the service's rows, or neither
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    table: String,
    producer: EventBusProducer,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("table", &self.table)
            .field("topic", &self.producer.full_topic("<topic>"))
            .finish()
    }
}

impl Outbox {
    /// An outbox writing to `table`, adding `topic_prefix` to topics as the
    /// producer does (`EVENT_BUS_TOPIC_PREFIX`).
    pub fn new(table: &str, topic_prefix: Option<String>) -> Result<Self, ConfigError> {
        check_table_name(table).map_err(|m| ConfigError::new(TABLE, m))?;
        // `prepare` only encodes: the transport is never used.
        let inert = Arc::new(MemoryBroker::new().transport());
        Ok(Outbox {
            table: table.to_string(),
            producer: EventBusProducer::new(inert, topic_prefix),
        })
    }

    /// From `EVENT_BUS_OUTBOX_TABLE` (default `event_bus_outbox`) and
    /// `EVENT_BUS_TOPIC_PREFIX`.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let table = settings.string(TABLE)?.unwrap_or_else(|| DEFAULT_TABLE.to_string());
        Self::new(&table, settings.string("EVENT_BUS_TOPIC_PREFIX")?)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Create the outbox tables if they do not exist (the migration of
    /// `migrations/<database>/` with this table's name).
    pub async fn migrate<DB: OutboxDatabase>(&self, pool: &sqlx::Pool<DB>) -> Result<(), OutboxError> {
        let mut conn = pool
            .acquire()
            .await
            .map_err(OutboxError::db("acquiring a connection to migrate"))?;
        <DB as sealed::Sealed>::create_tables(&mut conn, &self.table)
            .await
            .map_err(OutboxError::db(format!("creating the outbox table {}", self.table)))
    }

    /// Enqueue an event (as a signal hands it to receivers) for `topic`
    /// (without prefix), keyed by `event_key_field`, in the caller's
    /// transaction: it is relayed if and only if the transaction commits.
    pub async fn enqueue<DB: OutboxDatabase>(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        event: &Event,
        topic: &str,
        event_key_field: Option<&str>,
    ) -> Result<OutboxId, OutboxError> {
        self.enqueue_data(
            tx,
            &event.event_type,
            topic,
            event_key_field,
            &event.data,
            &event.metadata,
        )
        .await
    }

    /// Enqueue an event given by its parts; see [`Outbox::enqueue`]. The
    /// data is encoded and keyed exactly as `EventBusProducer::prepare` does.
    pub async fn enqueue_data<DB: OutboxDatabase>(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        event_type: &Arc<EventType>,
        topic: &str,
        event_key_field: Option<&str>,
        data: &Record,
        metadata: &EventsMetadata,
    ) -> Result<OutboxId, OutboxError> {
        if metadata.event_type != event_type.name() {
            return Err(OutboxError::MetadataMismatch {
                event_type: event_type.name().to_string(),
                metadata: metadata.event_type.clone(),
            });
        }
        let message = self
            .producer
            .prepare(event_type, topic, event_key_field, data, metadata)?;
        let row = OutboxRow::from_message(&message);
        let id = <DB as sealed::Sealed>::insert_row(&mut *tx, &self.table, &row, Utc::now())
            .await
            .map_err(OutboxError::db(format!(
                "inserting into the outbox table {}",
                self.table
            )))?;
        metrics::counter!("event_bus_outbox_enqueued_total").increment(1);
        tracing::debug!(target: "event_bus::audit", table = %self.table, id, topic = %message.topic,
            message_id = %metadata.id, event_type = %event_type.name(), "event enqueued in the outbox");
        Ok(id)
    }
}
