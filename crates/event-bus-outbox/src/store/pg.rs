//! PostgreSQL: `$n` placeholders, arrays for id lists, partial indexes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Executor, Postgres, Row, Transaction};

use super::{connect_error, migration_for, Claim, Store, COLUMNS};
use crate::error::OutboxError;
use crate::row::{OutboxRow, PARTITIONS};
use crate::settings::OutboxSettings;

/// The PostgreSQL migration (default table name).
pub(crate) const MIGRATION: &str = include_str!("../../migrations/postgres/0001_create_event_bus_outbox.sql");

pub(crate) struct PgStore {
    pool: PgPool,
    table: String,
}

/// Relay transactions read committed rows statement by statement: each read
/// after a partition lock sees what its previous holder committed.
fn read_committed(conn: &mut sqlx::PgConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await?;
        Ok(())
    })
}

impl PgStore {
    pub(crate) async fn connect(settings: &OutboxSettings, max_connections: u32) -> Result<Self, OutboxError> {
        let options = PgConnectOptions::from_str(settings.database_url.expose()).map_err(connect_error(settings))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| read_committed(conn))
            .connect_with(options)
            .await
            .map_err(connect_error(settings))?;
        Ok(PgStore {
            pool,
            table: settings.table.clone(),
        })
    }
}

/// A row as the relay reads it.
pub(crate) fn decode(row: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        id: row.try_get(0)?,
        partition_no: row.try_get(1)?,
        topic: row.try_get(2)?,
        event_type: row.try_get(3)?,
        key_field: row.try_get(4)?,
        key_type: row.try_get(5)?,
        key_text: row.try_get(6)?,
        event_id: row.try_get(7)?,
        event_time: row.try_get(8)?,
        minorversion: row.try_get(9)?,
        source: row.try_get(10)?,
        sourcehost: row.try_get(11)?,
        sourcelib: row.try_get(12)?,
        body: row.try_get(13)?,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), OutboxError> {
        let sql = migration_for(MIGRATION, &self.table);
        self.pool
            .execute(sqlx::raw_sql(AssertSqlSafe(sql)))
            .await
            .map_err(OutboxError::db(format!("creating the outbox table {}", self.table)))?;
        Ok(())
    }

    async fn pending_partitions(&self) -> Result<Vec<i16>, OutboxError> {
        let sql = format!("SELECT DISTINCT partition_no FROM {} WHERE sent_at IS NULL", self.table);
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(OutboxError::db("finding pending partitions"))
    }

    async fn pending_count(&self) -> Result<i64, OutboxError> {
        let sql = format!("SELECT COUNT(*) FROM {} WHERE sent_at IS NULL", self.table);
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(OutboxError::db("counting pending rows"))
    }

    async fn claim(
        &self,
        partitions: &[i16],
        first: i16,
        max_partitions: usize,
        batch: usize,
    ) -> Result<Option<(Box<dyn Claim>, Vec<OutboxRow>)>, OutboxError> {
        let t = &self.table;
        let mut tx = self.pool.begin().await.map_err(OutboxError::db("beginning a claim"))?;
        let lock = format!(
            "SELECT partition_no FROM {t}_partitions WHERE partition_no = ANY($1) \
             ORDER BY MOD(partition_no + {PARTITIONS} - $2, {PARTITIONS}) LIMIT $3 FOR UPDATE SKIP LOCKED"
        );
        let claimed: Vec<i16> = sqlx::query_scalar(AssertSqlSafe(lock))
            .bind(partitions)
            .bind(first)
            .bind(i64::try_from(max_partitions).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(OutboxError::db("locking partitions"))?;
        if claimed.is_empty() {
            tx.rollback().await.map_err(OutboxError::db("ending an empty claim"))?;
            return Ok(None);
        }
        let select =
            format!("SELECT {COLUMNS} FROM {t} WHERE sent_at IS NULL AND partition_no = ANY($1) ORDER BY id LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(select))
            .bind(&claimed)
            .bind(i64::try_from(batch).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(OutboxError::db("reading pending rows"))?;
        let rows = rows
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(OutboxError::db("decoding pending rows"))?;
        let claim = PgClaim {
            tx,
            table: t.clone(),
            partitions: claimed,
        };
        Ok(Some((Box::new(claim), rows)))
    }

    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, OutboxError> {
        let t = &self.table;
        let sql = format!(
            "DELETE FROM {t} WHERE id IN \
             (SELECT id FROM {t} WHERE sent_at IS NOT NULL AND sent_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(OutboxError::db("purging sent rows"))?;
        Ok(done.rows_affected())
    }
}

struct PgClaim {
    tx: Transaction<'static, Postgres>,
    table: String,
    partitions: Vec<i16>,
}

#[async_trait]
impl Claim for PgClaim {
    fn partitions(&self) -> &[i16] {
        &self.partitions
    }

    async fn mark_sent(&mut self, ids: &[i64], at: DateTime<Utc>) -> Result<(), OutboxError> {
        let sql = format!(
            "UPDATE {} SET sent_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = ANY($2)",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(at)
            .bind(ids)
            .execute(&mut *self.tx)
            .await
            .map_err(OutboxError::db("marking rows sent"))?;
        Ok(())
    }

    async fn mark_failed(&mut self, id: i64, error: &str) -> Result<(), OutboxError> {
        let sql = format!(
            "UPDATE {} SET attempts = attempts + 1, last_error = $1 WHERE id = $2",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(error)
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(OutboxError::db("recording a failed attempt"))?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), OutboxError> {
        self.tx.commit().await.map_err(OutboxError::db("committing a claim"))
    }
}

/// Insert a row in the caller's transaction; its id.
pub(crate) async fn insert(
    conn: &mut sqlx::PgConnection,
    table: &str,
    row: &OutboxRow,
    created_at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        super::INSERT_COLUMNS
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(row.partition_no)
        .bind(&row.topic)
        .bind(&row.event_type)
        .bind(&row.key_field)
        .bind(&row.key_type)
        .bind(&row.key_text)
        .bind(&row.event_id)
        .bind(row.event_time)
        .bind(row.minorversion)
        .bind(&row.source)
        .bind(&row.sourcehost)
        .bind(&row.sourcelib)
        .bind(&row.body)
        .bind(created_at)
        .fetch_one(conn)
        .await
}

/// Run the migration on the caller's connection.
pub(crate) async fn migrate(conn: &mut sqlx::PgConnection, table: &str) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(migration_for(MIGRATION, table))))
        .await?;
    Ok(())
}
