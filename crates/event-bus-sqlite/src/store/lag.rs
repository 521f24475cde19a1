//! The backlog of a topic's groups, for [`Transport::lag`](openedx_events::bus::transport::Transport::lag).

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_micros, trimmed_through};
use crate::error::{Context, StoreError};

/// The backlog of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backlog {
    pub group: String,
    /// Retained messages the group has not acknowledged: those after its
    /// position (never delivered) plus its deliveries not acknowledged yet.
    pub lag: u64,
    /// Of those, the ones a member holds now (claimed, lease not expired).
    pub held: u64,
}

/// The backlog of `group` (or of every group) on `topic`, in group name
/// order; a group or topic the file does not know has no row. One read
/// transaction, so the counts are of one moment.
pub(crate) fn lag(conn: &mut Connection, topic: &str, group: Option<&str>) -> Result<Vec<Backlog>, StoreError> {
    let what = || format!("reading the backlog of topic {topic:?}");
    let now = now_micros();
    let tx = conn.transaction().context(what)?;
    let groups: Vec<(String, i64)> = match group {
        Some(g) => tx
            .prepare_cached("SELECT name, position FROM groups WHERE topic = ?1 AND name = ?2")
            .and_then(|mut s| {
                s.query_row(params![topic, g], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .context(what)?
            .into_iter()
            .collect(),
        None => tx
            .prepare_cached("SELECT name, position FROM groups WHERE topic = ?1 ORDER BY name")
            .and_then(|mut s| {
                s.query_map([topic], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .context(what)?,
    };
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let trimmed = trimmed_through(&tx, topic).context(what)?;
    let mut out = Vec::with_capacity(groups.len());
    for (name, position) in groups {
        // Claims move the position past what they deliver; the messages
        // removed by retention are lost to the group, as claims treat them.
        let position = position.max(trimmed);
        let (new, delivered, held): (i64, i64, i64) = tx
            .prepare_cached(
                "SELECT
                   (SELECT COUNT(*) FROM messages WHERE topic = ?1 AND id > ?3),
                   (SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id
                    WHERE d.topic = ?1 AND d.grp = ?2 AND d.message_id <= ?3),
                   (SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id
                    WHERE d.topic = ?1 AND d.grp = ?2 AND d.owner IS NOT NULL AND d.visible_at > ?4)",
            )
            .and_then(|mut s| {
                s.query_row(params![topic, name, position, now], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .context(what)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        out.push(Backlog {
            group: name,
            lag: count(new) + count(delivered),
            held: count(held),
        });
    }
    Ok(out)
}
