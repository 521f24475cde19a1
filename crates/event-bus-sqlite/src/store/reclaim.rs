//! Taking back at once what members of a group whose process died hold.

use rusqlite::{params, Connection};

use super::group::forget_member;
use super::{immediate, now_micros, Member};
use crate::error::{Context, StoreError};
use crate::process::{self, Liveness};

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
        let n = forget_member(&tx, &owner.id, now).context(what)?;
        out.push((owner, n));
    }
    tx.commit().context(what)?;
    Ok(out)
}
