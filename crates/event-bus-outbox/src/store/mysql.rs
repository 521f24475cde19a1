//! MySQL and MariaDB: `?` placeholders, id lists written out as `IN (?, ...)`,
//! `DELETE ... LIMIT`, InnoDB in READ COMMITTED (no gap locks: the relay
//! never blocks the services' inserts).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Executor, Row, Transaction};

use super::{connect_error, migration_for, Claim, Store, COLUMNS};
use crate::error::OutboxError;
use crate::row::OutboxRow;
use crate::settings::OutboxSettings;

/// The MySQL / MariaDB migration (default table name).
pub(crate) const MIGRATION: &str = include_str!("../../migrations/mysql/0001_create_event_bus_outbox.sql");

pub(crate) struct MySqlStore {
    pool: MySqlPool,
    table: String,
}

/// `?, ?, ?` for `n` values.
fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// Relay transactions read committed rows statement by statement (each
/// read after a partition lock sees what its previous holder committed),
/// and InnoDB takes no gap locks in this level.
fn read_committed(conn: &mut sqlx::MySqlConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await?;
        Ok(())
    })
}

impl MySqlStore {
    pub(crate) async fn connect(settings: &OutboxSettings, max_connections: u32) -> Result<Self, OutboxError> {
        let options = MySqlConnectOptions::from_str(settings.database_url.expose()).map_err(connect_error(settings))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| read_committed(conn))
            .connect_with(options)
            .await
            .map_err(connect_error(settings))?;
        Ok(MySqlStore {
            pool,
            table: settings.table.clone(),
        })
    }
}

fn decode(row: &MySqlRow) -> Result<OutboxRow, sqlx::Error> {
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
impl Store for MySqlStore {
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
        if partitions.is_empty() {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(OutboxError::db("beginning a claim"))?;
        // The round-robin order is applied here and not in SQL: InnoDB keeps
        // the lock on every row an `ORDER BY <expression> LIMIT` sorted, so
        // one relay would hold every pending partition. Ordered by the key
        // and limited, the scan stops at the rows it returns.
        let (from_first, wrapped): (Vec<i16>, Vec<i16>) = partitions.iter().partition(|&&p| p >= first);
        let mut claimed: Vec<i16> = Vec::with_capacity(max_partitions);
        for part in [from_first, wrapped] {
            let room = max_partitions.saturating_sub(claimed.len());
            if part.is_empty() || room == 0 {
                continue;
            }
            let lock = format!(
                "SELECT partition_no FROM {t}_partitions WHERE partition_no IN ({}) \
                 ORDER BY partition_no LIMIT {room} FOR UPDATE SKIP LOCKED",
                placeholders(part.len())
            );
            let mut q = sqlx::query_scalar(AssertSqlSafe(lock));
            for p in &part {
                q = q.bind(*p);
            }
            let got: Vec<i16> = q
                .fetch_all(&mut *tx)
                .await
                .map_err(OutboxError::db("locking partitions"))?;
            claimed.extend(got);
        }
        if claimed.is_empty() {
            tx.rollback().await.map_err(OutboxError::db("ending an empty claim"))?;
            return Ok(None);
        }
        let select = format!(
            "SELECT {COLUMNS} FROM {t} WHERE sent_at IS NULL AND partition_no IN ({}) ORDER BY id LIMIT {batch}",
            placeholders(claimed.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(select));
        for p in &claimed {
            q = q.bind(*p);
        }
        let rows = q
            .fetch_all(&mut *tx)
            .await
            .map_err(OutboxError::db("reading pending rows"))?;
        let rows = rows
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(OutboxError::db("decoding pending rows"))?;
        let claim = MySqlClaim {
            tx,
            table: t.clone(),
            partitions: claimed,
        };
        Ok(Some((Box::new(claim), rows)))
    }

    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, OutboxError> {
        let sql = format!(
            "DELETE FROM {} WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY id LIMIT {limit}",
            self.table
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(OutboxError::db("purging sent rows"))?;
        Ok(done.rows_affected())
    }
}

struct MySqlClaim {
    tx: Transaction<'static, MySql>,
    table: String,
    partitions: Vec<i16>,
}

#[async_trait]
impl Claim for MySqlClaim {
    fn partitions(&self) -> &[i16] {
        &self.partitions
    }

    async fn mark_sent(&mut self, ids: &[i64], at: DateTime<Utc>) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE {} SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id IN ({})",
            self.table,
            placeholders(ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(at);
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&mut *self.tx)
            .await
            .map_err(OutboxError::db("marking rows sent"))?;
        Ok(())
    }

    async fn mark_failed(&mut self, id: i64, error: &str) -> Result<(), OutboxError> {
        let sql = format!(
            "UPDATE {} SET attempts = attempts + 1, last_error = ? WHERE id = ?",
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
    conn: &mut sqlx::MySqlConnection,
    table: &str,
    row: &OutboxRow,
    created_at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        super::INSERT_COLUMNS
    );
    let done = sqlx::query(AssertSqlSafe(sql))
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
        .execute(conn)
        .await?;
    Ok(i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX))
}

/// Run the migration on the caller's connection.
pub(crate) async fn migrate(conn: &mut sqlx::MySqlConnection, table: &str) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(migration_for(MIGRATION, table))))
        .await?;
    Ok(())
}
