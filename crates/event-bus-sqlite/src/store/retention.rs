//! The retention limits: the oldest messages of each topic beyond the count
//! limit or older than the age limit are removed, in short transactions;
//! topics holding dead letters are never trimmed.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{immediate, micros, now_micros};
use crate::error::{Context, StoreError};
use crate::settings::SqliteOptions;

/// Rows deleted per transaction when trimming, so that publishers and
/// consumers of other processes never wait long for the write lock.
const TRIM_CHUNK: i64 = 5000;

/// A consumer whose row has not been seen for this long and that holds no
/// message is forgotten.
const STALE_CONSUMER: Duration = Duration::from_secs(24 * 3600);

/// What [`SqliteTransport::trim`](crate::SqliteTransport::trim) removed.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use event_bus_sqlite::{SqliteOptions, SqliteTransport, TrimReport};
/// let dir = tempfile::tempdir().unwrap();
/// let t = SqliteTransport::open(dir.path().join("bus.db"), SqliteOptions::default()).unwrap();
/// assert_eq!(t.trim().await.unwrap(), TrimReport { removed: 0, topics: vec![] });
/// # });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Messages removed, all topics together.
    pub removed: u64,
    /// Topics that lost messages.
    pub topics: Vec<String>,
}

/// Apply the retention limits to every topic, in short transactions.
pub(crate) fn trim(conn: &mut Connection, options: &SqliteOptions) -> Result<TrimReport, StoreError> {
    let what = || "applying the retention limits".to_string();
    let now = now_micros();
    let topics: Vec<(String, i64)> = conn
        // Dead letters are never removed: they wait for someone to look.
        .prepare(
            "SELECT name, trimmed_through FROM topics
             WHERE name NOT IN (SELECT name FROM dead_letter_topics)",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .context(what)?;
    let mut report = TrimReport::default();
    for (topic, trimmed) in topics {
        let what = || format!("applying the retention limits to topic {topic:?}");
        let mut cutoff = trimmed;
        if let Some(limit) = options.max_messages_per_topic {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let newest: Option<i64> = conn
                .query_row("SELECT MAX(id) FROM messages WHERE topic = ?1", [&topic], |r| r.get(0))
                .context(what)?;
            // Ids grow across topics, so fewer ids than the limit since the
            // last trim means fewer messages: no need to count.
            if newest.is_some_and(|n| n.saturating_sub(trimmed) > limit) {
                let over: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM messages WHERE topic = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                        params![topic, limit],
                        |r| r.get(0),
                    )
                    .optional()
                    .context(what)?;
                cutoff = cutoff.max(over.unwrap_or(0));
            }
        }
        if let Some(age) = options.retention {
            let oldest_kept = now.saturating_sub(micros(age));
            let expired: Option<i64> = conn
                .query_row(
                    "SELECT id FROM messages WHERE topic = ?1 AND created_at < ?2
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                    params![topic, oldest_kept],
                    |r| r.get(0),
                )
                .optional()
                .context(what)?;
            cutoff = cutoff.max(expired.unwrap_or(0));
        }
        if cutoff <= trimmed {
            continue;
        }
        let mut removed = 0u64;
        let mut dropped_redeliveries = 0usize;
        loop {
            let tx = immediate(conn, &what)?;
            let chunk_end: i64 = tx
                .query_row(
                    "SELECT id FROM messages WHERE topic = ?1 AND id <= ?2 ORDER BY id LIMIT 1 OFFSET ?3",
                    params![topic, cutoff, TRIM_CHUNK - 1],
                    |r| r.get(0),
                )
                .optional()
                .context(what)?
                .unwrap_or(cutoff);
            let n = tx
                .execute(
                    "DELETE FROM messages WHERE topic = ?1 AND id <= ?2",
                    params![topic, chunk_end],
                )
                .context(what)?;
            dropped_redeliveries += tx
                .execute(
                    "DELETE FROM deliveries WHERE topic = ?1 AND message_id <= ?2 AND owner IS NULL",
                    params![topic, chunk_end],
                )
                .context(what)?;
            tx.execute(
                "UPDATE topics SET trimmed_through = MAX(trimmed_through, ?2) WHERE name = ?1",
                params![topic, chunk_end],
            )
            .context(what)?;
            tx.commit().context(what)?;
            removed += n as u64;
            if chunk_end >= cutoff {
                break;
            }
        }
        if dropped_redeliveries > 0 {
            tracing::warn!(topic = %topic, count = dropped_redeliveries,
                "messages waiting for redelivery were removed by the retention limit");
        }
        tracing::info!(topic = %topic, removed, through = cutoff, "retention limit applied");
        if removed > 0 {
            report.topics.push(topic.clone());
        }
        report.removed += removed;
    }
    conn.execute(
        "DELETE FROM consumers WHERE seen_at < ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.owner = consumers.id)",
        [now.saturating_sub(micros(STALE_CONSUMER))],
    )
    .context(what)?;
    Ok(report)
}
