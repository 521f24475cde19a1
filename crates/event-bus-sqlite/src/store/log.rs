//! The log: appending a message to a topic, and reading a topic without a
//! group.

use openedx_events::bus::transport::{Delivery, RawMessage};
use rusqlite::{params, Connection};

use super::{immediate, now_micros};
use crate::error::{Context, StoreError};
use crate::wire::{self, Stored};

/// Append a message; returns its id (the position).
pub(crate) fn publish(conn: &mut Connection, raw: &RawMessage) -> Result<i64, StoreError> {
    let what = || format!("publishing to topic {:?}", raw.topic);
    let encoded = wire::encode_headers(&raw.headers);
    let tx = immediate(conn, &what)?;
    {
        tx.prepare_cached("INSERT OR IGNORE INTO topics (name) VALUES (?1)")
            .and_then(|mut s| s.execute([&raw.topic]))
            .context(what)?;
        if openedx_events::bus::dead_letter::is_dead_letter(raw) {
            // A topic that holds dead letters is exempt from retention.
            tx.prepare_cached("INSERT OR IGNORE INTO dead_letter_topics (name) VALUES (?1)")
                .and_then(|mut s| s.execute([&raw.topic]))
                .context(what)?;
        }
        tx.prepare_cached("INSERT INTO messages (topic, key, headers, value, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![raw.topic, raw.key, encoded, raw.value, now_micros()]))
            .context(what)?;
    }
    let id = tx.last_insert_rowid();
    tx.commit().context(what)?;
    Ok(id)
}

/// A position as stored: the row id in decimal.
pub(crate) fn parse_position(p: &str) -> Result<i64, StoreError> {
    p.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
        StoreError::Rejected(format!(
            "bad position {p:?}: expected a row id (a non-negative integer)"
        ))
    })
}

/// Messages of a topic after a position, without a group.
pub(crate) fn browse(conn: &Connection, topic: &str, after: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
    let what = || format!("browsing topic {topic:?}");
    let rows = messages_after(conn, topic, after, limit).context(what)?;
    Ok(rows.into_iter().map(|s| s.into_delivery(topic, 1)).collect())
}

/// Up to `limit` messages of `topic` after the position `after`, in id order.
pub(super) fn messages_after(
    conn: &Connection,
    topic: &str,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Stored>> {
    let mut select = conn.prepare_cached(
        "SELECT id, key, headers, value, created_at FROM messages
         WHERE topic = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = select
        .query_map(params![topic, after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            wire::stored(r, 0)
        })?
        .collect();
    rows
}
