//! The SQL of the backend: blocking functions on one connection, each a
//! short transaction. The async side runs them on the blocking pool. The
//! modules below hold the log (publish, browse), a group's state (join,
//! acks and leases, nacks, leave, seek), receiving (claim), taking back what
//! dead members hold (reclaim) and the retention limits (trim).

mod claim;
mod group;
mod lag;
mod log;
mod reclaim;
mod retention;

use std::time::Duration;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::{Context, StoreError};

pub(crate) use claim::claim;
pub(crate) use group::{flush, join, nack, release, seek};
pub(crate) use lag::lag;
pub(crate) use log::{browse, parse_position, publish};
pub(crate) use reclaim::reclaim_dead;
pub(crate) use retention::trim;
pub use retention::TrimReport;

/// Now, in microseconds since the Unix epoch (the unit of every time column).
pub(crate) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A duration in microseconds, saturating.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// One member of a group, as the SQL sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub topic: String,
    pub group: String,
    /// A random id for this subscription (the `owner` of what it holds).
    pub id: String,
    /// The consumer name given at subscribe (informational).
    pub name: String,
    pub lease: Duration,
}

/// Begin a write transaction (`BEGIN IMMEDIATE`: it takes the write lock
/// at once, waiting up to the busy timeout).
fn immediate<'c>(conn: &'c mut Connection, what: &impl Fn() -> String) -> Result<Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .context(what)
}

/// The id through which the topic's messages were removed by retention.
fn trimmed_through(tx: &Connection, topic: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT trimmed_through FROM topics WHERE name = ?1")?
        .query_row([topic], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

/// The highest message id of the file (0 when empty).
fn last_id(tx: &Connection) -> rusqlite::Result<i64> {
    tx.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| r.get(0))
}

/// `PRAGMA data_version`: changes when another connection commits.
pub(crate) fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .context(|| "reading the data version".to_string())
}
