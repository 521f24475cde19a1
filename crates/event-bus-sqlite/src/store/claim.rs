//! Receiving: a member claims due redeliveries and then new messages, in
//! one transaction (after a read that finds whether there is anything to
//! take).

use openedx_events::bus::transport::Delivery;
use rusqlite::{params, Connection, OptionalExtension};

use super::group::write_acks;
use super::log::messages_after;
use super::{immediate, micros, now_micros, trimmed_through, Member};
use crate::error::{Context, StoreError};
use crate::wire;

fn attempt(n: i64) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// What a claim did.
#[derive(Debug, Default)]
pub(crate) struct Claim {
    /// The messages now held by the member, due redeliveries first.
    pub deliveries: Vec<Delivery>,
    /// When nothing was claimed: the earliest time (µs) a message of the
    /// group becomes available (a delayed nack, another member's lease).
    pub next_due: Option<i64>,
    /// Whether a write transaction ran (acks flushed, leases renewed).
    pub wrote: bool,
}

fn next_due(tx: &Connection, m: &Member) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached(
        "SELECT MIN(visible_at) FROM deliveries
         WHERE topic = ?1 AND grp = ?2 AND (owner IS NULL OR owner != ?3)",
    )?
    .query_row(params![m.topic, m.group, m.id], |r| r.get(0))
}

/// Whether anything can be claimed now (a read, no write lock).
fn claimable(conn: &mut Connection, m: &Member, now: i64) -> rusqlite::Result<Result<(), Option<i64>>> {
    let tx = conn.transaction()?;
    let Some(position) = tx
        .prepare_cached("SELECT position FROM groups WHERE topic = ?1 AND name = ?2")?
        .query_row(params![m.topic, m.group], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(Ok(()));
    };
    let position = position.max(trimmed_through(&tx, &m.topic)?);
    let due: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM deliveries WHERE topic = ?1 AND grp = ?2 AND visible_at <= ?3)")?
        .query_row(params![m.topic, m.group, now], |r| r.get(0))?;
    let new: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE topic = ?1 AND id > ?2)")?
        .query_row(params![m.topic, position], |r| r.get(0))?;
    if due || new {
        Ok(Ok(()))
    } else {
        Ok(Err(next_due(&tx, m)?))
    }
}

/// Flush `acks`, renew this member's leases, and take up to `max` messages:
/// due redeliveries first (oldest first), then new ones in publish order.
/// Without acks to flush or leases to renew, a read first checks that there
/// is something to take, so idle members never take the write lock.
pub(crate) fn claim(
    conn: &mut Connection,
    m: &Member,
    max: usize,
    acks: &[i64],
    renew: bool,
) -> Result<Claim, StoreError> {
    let what = || format!("receiving from topic {:?} in group {:?}", m.topic, m.group);
    let now = now_micros();
    if acks.is_empty() && !renew {
        if let Err(next_due) = claimable(conn, m, now).context(what)? {
            return Ok(Claim {
                next_due,
                ..Claim::default()
            });
        }
    }
    let lease_until = now.saturating_add(micros(m.lease));
    let max_rows = i64::try_from(max).unwrap_or(i64::MAX);
    let tx = immediate(conn, &what)?;
    write_acks(&tx, m, acks, lease_until, now).context(what)?;
    let mut out = Vec::new();
    let mut lost = Vec::new();
    {
        // Due redeliveries: nacked messages whose delay passed, released
        // ones, and leases that expired.
        let mut due = tx
            .prepare_cached(
                "SELECT d.message_id, d.attempts, m.id, m.key, m.headers, m.value, m.created_at
                 FROM deliveries d LEFT JOIN messages m ON m.id = d.message_id
                 WHERE d.topic = ?1 AND d.grp = ?2 AND d.visible_at <= ?3
                 ORDER BY d.message_id LIMIT ?4",
            )
            .context(what)?;
        let rows = due
            .query_map(params![m.topic, m.group, now, max_rows], |r| {
                let id: i64 = r.get(0)?;
                let attempts: i64 = r.get(1)?;
                let present: Option<i64> = r.get(2)?;
                let message = match present {
                    Some(_) => Some(wire::stored(r, 2)?),
                    None => None,
                };
                Ok((id, attempts, message))
            })
            .context(what)?
            .collect::<Result<Vec<_>, _>>()
            .context(what)?;
        let mut take = tx
            .prepare_cached(
                "UPDATE deliveries SET owner = ?4, attempts = attempts + 1, visible_at = ?5
                 WHERE topic = ?1 AND grp = ?2 AND message_id = ?3",
            )
            .context(what)?;
        let mut forget = tx
            .prepare_cached("DELETE FROM deliveries WHERE topic = ?1 AND grp = ?2 AND message_id = ?3")
            .context(what)?;
        for (id, attempts, message) in rows {
            match message {
                Some(message) => {
                    take.execute(params![m.topic, m.group, id, m.id, lease_until])
                        .context(what)?;
                    out.push(message.into_delivery(&m.topic, attempt(attempts.saturating_add(1))));
                }
                None => {
                    forget.execute(params![m.topic, m.group, id]).context(what)?;
                    lost.push(id);
                }
            }
        }
    }
    // New messages after the group's position.
    let stored_position: Option<i64> = tx
        .prepare_cached("SELECT position FROM groups WHERE topic = ?1 AND name = ?2")
        .and_then(|mut s| s.query_row(params![m.topic, m.group], |r| r.get(0)).optional())
        .context(what)?;
    let trimmed = trimmed_through(&tx, &m.topic).context(what)?;
    let mut position = stored_position.unwrap_or(trimmed);
    if position < trimmed {
        tracing::warn!(topic = %m.topic, group = %m.group, position, oldest_retained_after = trimmed,
            "the group fell behind the retention limit: messages after its position were removed unread; \
             continuing from the oldest retained message");
        position = trimmed;
    }
    let remaining = max.saturating_sub(out.len());
    if remaining > 0 {
        let rows = messages_after(&tx, &m.topic, position, remaining).context(what)?;
        let mut hold = tx
            .prepare_cached(
                "INSERT INTO deliveries (topic, grp, message_id, attempts, owner, visible_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)
                 ON CONFLICT (topic, grp, message_id) DO UPDATE
                 SET owner = excluded.owner, attempts = deliveries.attempts + 1, visible_at = excluded.visible_at
                 RETURNING attempts",
            )
            .context(what)?;
        for message in rows {
            position = position.max(message.id);
            if out.iter().any(|d| d.tag.0 == u64::try_from(message.id).unwrap_or(0)) {
                // Already taken as a redelivery (after a seek back).
                continue;
            }
            let attempts: i64 = hold
                .query_row(params![m.topic, m.group, message.id, m.id, lease_until], |r| r.get(0))
                .context(what)?;
            out.push(message.into_delivery(&m.topic, attempt(attempts)));
        }
    }
    if stored_position != Some(position) {
        tx.prepare_cached(
            "INSERT INTO groups (topic, name, position, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (topic, name) DO UPDATE SET position = excluded.position",
        )
        .and_then(|mut s| s.execute(params![m.topic, m.group, position, now]))
        .context(what)?;
    }
    let next = if out.is_empty() {
        next_due(&tx, m).context(what)?
    } else {
        None
    };
    tx.commit().context(what)?;
    if !lost.is_empty() {
        tracing::warn!(topic = %m.topic, group = %m.group, count = lost.len(), first = lost[0],
            "messages waiting for redelivery were removed by the retention limit before they could be delivered again");
    }
    Ok(Claim {
        deliveries: out,
        next_due: next,
        wrote: true,
    })
}
