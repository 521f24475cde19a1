//! A group's state: joining it, acks and lease renewals, nacks, leaving it
//! and moving its position.

use std::time::Duration;

use openedx_events::bus::transport::{SeekTarget, StartPosition};
use rusqlite::{params, Connection, OptionalExtension};

use super::{immediate, last_id, micros, now_micros, parse_position, trimmed_through, Member};
use crate::error::{Context, StoreError};
use crate::process;

fn upsert_consumer(tx: &Connection, m: &Member, now: i64) -> rusqlite::Result<()> {
    let me = process::current();
    tx.prepare_cached(
        "INSERT INTO consumers (id, topic, grp, name, host, pid, pid_start, started_at, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
    )?
    .execute(params![
        m.id,
        m.topic,
        m.group,
        m.name,
        me.host,
        i64::from(me.pid),
        me.start.and_then(|s| i64::try_from(s).ok()),
        now
    ])?;
    Ok(())
}

/// Join a group: create the topic and the group (at `start` if new) and
/// register this member.
pub(crate) fn join(conn: &mut Connection, m: &Member, start: &StartPosition) -> Result<(), StoreError> {
    let what = || format!("joining group {:?} on topic {:?}", m.group, m.topic);
    let tx = immediate(conn, &what)?;
    let now = now_micros();
    tx.execute("INSERT OR IGNORE INTO topics (name) VALUES (?1)", [&m.topic])
        .context(what)?;
    let position = match start {
        StartPosition::Earliest => trimmed_through(&tx, &m.topic),
        StartPosition::Latest => last_id(&tx),
    }
    .context(what)?;
    let created = tx
        .execute(
            "INSERT OR IGNORE INTO groups (topic, name, position, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.topic, m.group, position, now],
        )
        .context(what)?;
    upsert_consumer(&tx, m, now).context(what)?;
    tx.commit().context(what)?;
    if created > 0 {
        tracing::info!(topic = %m.topic, group = %m.group, start = ?start, position, "created consumer group");
    }
    Ok(())
}

/// Delete acknowledged deliveries (only while this member holds them),
/// renew this member's leases and note that it is alive.
pub(super) fn write_acks(
    tx: &Connection,
    m: &Member,
    acks: &[i64],
    lease_until: i64,
    now: i64,
) -> rusqlite::Result<()> {
    if !acks.is_empty() {
        let mut delete = tx.prepare_cached(
            "DELETE FROM deliveries WHERE topic = ?1 AND grp = ?2 AND message_id = ?3 AND owner = ?4",
        )?;
        for id in acks {
            delete.execute(params![m.topic, m.group, id, m.id])?;
        }
    }
    tx.prepare_cached("UPDATE deliveries SET visible_at = ?2 WHERE owner = ?1")?
        .execute(params![m.id, lease_until])?;
    upsert_consumer(tx, m, now)
}

/// Flush acks and renew leases.
pub(crate) fn flush(conn: &mut Connection, m: &Member, acks: &[i64]) -> Result<(), StoreError> {
    let what = || format!("acknowledging on topic {:?} in group {:?}", m.topic, m.group);
    let now = now_micros();
    let tx = immediate(conn, &what)?;
    write_acks(&tx, m, acks, now.saturating_add(micros(m.lease)), now).context(what)?;
    tx.commit().context(what)
}

/// Hand a message back, available again after `delay` (acks flushed too).
pub(crate) fn nack(
    conn: &mut Connection,
    m: &Member,
    id: i64,
    delay: Duration,
    acks: &[i64],
) -> Result<bool, StoreError> {
    let what = || {
        format!(
            "handing back message {id} of topic {:?} in group {:?}",
            m.topic, m.group
        )
    };
    let now = now_micros();
    let tx = immediate(conn, &what)?;
    write_acks(&tx, m, acks, now.saturating_add(micros(m.lease)), now).context(what)?;
    let changed = tx
        .prepare_cached(
            "UPDATE deliveries SET owner = NULL, visible_at = ?5
             WHERE topic = ?1 AND grp = ?2 AND message_id = ?3 AND owner = ?4",
        )
        .and_then(|mut s| s.execute(params![m.topic, m.group, id, m.id, now.saturating_add(micros(delay))]))
        .context(what)?;
    tx.commit().context(what)?;
    Ok(changed > 0)
}

/// Leave the group: flush acks, make everything held available at once,
/// forget the member. Returns how many messages were released.
pub(crate) fn release(conn: &mut Connection, m: &Member, acks: &[i64]) -> Result<usize, StoreError> {
    let what = || format!("leaving group {:?} on topic {:?}", m.group, m.topic);
    let now = now_micros();
    let tx = immediate(conn, &what)?;
    write_acks(&tx, m, acks, now, now).context(what)?;
    let released = forget_member(&tx, &m.id, now).context(what)?;
    tx.commit().context(what)?;
    Ok(released)
}

/// Make everything the member `owner` holds available at once and forget
/// the member; returns how many messages it held.
pub(super) fn forget_member(tx: &Connection, owner: &str, now: i64) -> rusqlite::Result<usize> {
    let released = tx.execute(
        "UPDATE deliveries SET owner = NULL, visible_at = ?2 WHERE owner = ?1",
        params![owner, now],
    )?;
    tx.execute("DELETE FROM consumers WHERE id = ?1", [owner])?;
    Ok(released)
}

/// Move the group's position; pending redeliveries after it are dropped
/// (they will come again as new messages).
pub(crate) fn seek(conn: &mut Connection, m: &Member, target: &SeekTarget) -> Result<i64, StoreError> {
    let what = || format!("seeking group {:?} on topic {:?} to {target:?}", m.group, m.topic);
    let tx = immediate(conn, &what)?;
    let trimmed = trimmed_through(&tx, &m.topic).context(what)?;
    let last = last_id(&tx).context(what)?;
    let position = match target {
        SeekTarget::Earliest => trimmed,
        SeekTarget::Latest => last,
        SeekTarget::Time(t) => tx
            .prepare_cached(
                "SELECT id FROM messages WHERE topic = ?1 AND created_at >= ?2 ORDER BY created_at, id LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![m.topic, t.timestamp_micros()], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .context(what)?
            .map_or(last, |id| id - 1),
        SeekTarget::After(p) => {
            let p = parse_position(p)?;
            if p < trimmed {
                tracing::warn!(topic = %m.topic, group = %m.group, requested = p, oldest_retained_after = trimmed,
                    "seek target is no longer retained; starting from the oldest retained message");
            }
            p.clamp(trimmed, last.max(trimmed))
        }
    };
    tx.execute(
        "INSERT INTO groups (topic, name, position, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (topic, name) DO UPDATE SET position = excluded.position",
        params![m.topic, m.group, position, now_micros()],
    )
    .context(what)?;
    tx.execute(
        "DELETE FROM deliveries WHERE topic = ?1 AND grp = ?2 AND owner IS NULL AND message_id > ?3",
        params![m.topic, m.group, position],
    )
    .context(what)?;
    tx.commit().context(what)?;
    Ok(position)
}
