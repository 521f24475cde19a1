//! The SQL of the backend: blocking functions on one connection, each a
//! short transaction. The async side runs them on the blocking pool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openedx_events::bus::transport::{Delivery, DeliveryTag, RawMessage, SeekTarget, StartPosition};
use openedx_events::bus::wire;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::error::{Context, StoreError};
use crate::headers;
use crate::options::SqliteOptions;
use crate::process::{self, Liveness};

/// Rows deleted per transaction when trimming, so that publishers and
/// consumers of other processes never wait long for the write lock.
const TRIM_CHUNK: i64 = 5000;

/// A consumer whose row has not been seen for this long and that holds no
/// message is forgotten.
const STALE_CONSUMER: Duration = Duration::from_secs(24 * 3600);

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

fn immediate<'c>(conn: &'c mut Connection, what: &impl Fn() -> String) -> Result<Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .context(what)
}

/// Leniently read a stored column as bytes (a row edited by hand must not
/// stop the stream).
fn bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Null => None,
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(f) => Some(f.to_string().into_bytes()),
    }
}

/// A message row: `id, key, headers, value, created_at` from column `at`.
struct Stored {
    id: i64,
    key: Option<Vec<u8>>,
    headers: Result<Vec<(String, Vec<u8>)>, String>,
    value: Vec<u8>,
    created_at: Option<i64>,
}

fn stored(row: &Row<'_>, at: usize) -> rusqlite::Result<Stored> {
    let headers = match row.get_ref(at + 2)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => match std::str::from_utf8(b) {
            Ok(text) => headers::decode(text),
            Err(_) => Err("headers are not UTF-8 text".to_string()),
        },
        ValueRef::Null => Err("headers are missing".to_string()),
        _ => Err("headers are not text".to_string()),
    };
    Ok(Stored {
        id: row.get(at)?,
        key: bytes(row.get_ref(at + 1)?),
        headers,
        value: bytes(row.get_ref(at + 3)?).unwrap_or_default(),
        created_at: match row.get_ref(at + 4)? {
            ValueRef::Integer(t) => Some(t),
            _ => None,
        },
    })
}

impl Stored {
    fn into_delivery(self, topic: &str, attempt: u32) -> Delivery {
        let (headers, problem) = match self.headers {
            Ok(h) => (h, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let raw = RawMessage {
            topic: topic.to_string(),
            key: self.key,
            headers,
            value: self.value,
            timestamp: self.created_at.and_then(DateTime::<Utc>::from_timestamp_micros),
        };
        let event = match problem {
            Some(p) => Err(format!(
                "Error determining metadata from message headers: the headers stored with message {} cannot be read: {p}",
                self.id
            )),
            None => wire::cloudevent_incoming(&raw),
        };
        Delivery {
            raw,
            tag: DeliveryTag(u64::try_from(self.id).unwrap_or(0)),
            position: self.id.to_string(),
            attempt,
            event,
        }
    }
}

fn attempt(n: i64) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// Append a message; returns its id (the position).
pub(crate) fn publish(conn: &mut Connection, raw: &RawMessage) -> Result<i64, StoreError> {
    let what = || format!("publishing to topic {:?}", raw.topic);
    let encoded = headers::encode(&raw.headers);
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

fn trimmed_through(tx: &Connection, topic: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT trimmed_through FROM topics WHERE name = ?1")?
        .query_row([topic], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

fn last_id(tx: &Connection) -> rusqlite::Result<i64> {
    tx.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| r.get(0))
}

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

/// `PRAGMA data_version`: changes when another connection commits.
pub(crate) fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .context(|| "reading the data version".to_string())
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
                    Some(_) => Some(stored(r, 2)?),
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
        let mut select = tx
            .prepare_cached(
                "SELECT id, key, headers, value, created_at FROM messages
                 WHERE topic = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .context(what)?;
        let rows = select
            .query_map(
                params![m.topic, position, i64::try_from(remaining).unwrap_or(i64::MAX)],
                |r| stored(r, 0),
            )
            .context(what)?
            .collect::<Result<Vec<_>, _>>()
            .context(what)?;
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

/// Delete acknowledged deliveries (only while this member holds them),
/// renew this member's leases and note that it is alive.
fn write_acks(tx: &Connection, m: &Member, acks: &[i64], lease_until: i64, now: i64) -> rusqlite::Result<()> {
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
    let released = tx
        .execute(
            "UPDATE deliveries SET owner = NULL, visible_at = ?2 WHERE owner = ?1",
            params![m.id, now],
        )
        .context(what)?;
    tx.execute("DELETE FROM consumers WHERE id = ?1", [&m.id])
        .context(what)?;
    tx.commit().context(what)?;
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
    let mut select = conn
        .prepare_cached(
            "SELECT id, key, headers, value, created_at FROM messages
             WHERE topic = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .context(what)?;
    let rows = select
        .query_map(params![topic, after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            stored(r, 0)
        })
        .context(what)?
        .collect::<Result<Vec<_>, _>>()
        .context(what)?;
    Ok(rows.into_iter().map(|s| s.into_delivery(topic, 1)).collect())
}

/// A member of the group holding messages, as registered.
pub(crate) struct Owner {
    pub id: String,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub pid_start: Option<i64>,
}

/// The other members holding messages of this group under a live lease.
fn foreign_owners(conn: &Connection, m: &Member, now: i64) -> rusqlite::Result<Vec<Owner>> {
    let mut s = conn.prepare_cached(
        "SELECT DISTINCT d.owner, c.host, c.pid, c.pid_start
         FROM deliveries d LEFT JOIN consumers c ON c.id = d.owner
         WHERE d.topic = ?1 AND d.grp = ?2 AND d.owner IS NOT NULL AND d.owner != ?3 AND d.visible_at > ?4",
    )?;
    let rows = s.query_map(params![m.topic, m.group, m.id, now], |r| {
        Ok(Owner {
            id: r.get(0)?,
            host: r.get(1)?,
            pid: r.get(2)?,
            pid_start: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Take back at once what members of this group whose process died hold.
/// Returns the owners reclaimed and how many messages they held.
pub(crate) fn reclaim_dead(conn: &mut Connection, m: &Member) -> Result<Vec<(Owner, usize)>, StoreError> {
    let what = || format!("looking for dead members of group {:?} on topic {:?}", m.group, m.topic);
    let now = now_micros();
    let dead: Vec<Owner> = foreign_owners(conn, m, now)
        .context(what)?
        .into_iter()
        .filter(|o| match (&o.host, o.pid) {
            (Some(host), Some(pid)) => process::liveness(host, pid, o.pid_start) == Liveness::Dead,
            _ => false,
        })
        .collect();
    if dead.is_empty() {
        return Ok(Vec::new());
    }
    let tx = immediate(conn, &what)?;
    let mut out = Vec::new();
    for owner in dead {
        let n = tx
            .execute(
                "UPDATE deliveries SET owner = NULL, visible_at = ?2 WHERE owner = ?1",
                params![owner.id, now],
            )
            .context(what)?;
        tx.execute("DELETE FROM consumers WHERE id = ?1", [&owner.id])
            .context(what)?;
        out.push((owner, n));
    }
    tx.commit().context(what)?;
    Ok(out)
}

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
