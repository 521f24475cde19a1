//! Keeping held entries from looking idle: a background task refreshes the
//! entries this consumer holds (`XCLAIM ... JUSTID`), so that other members
//! claim only the entries of a consumer that stopped; it also checks now
//! and then whether entries were trimmed before the group read them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{after, RedisSubscription};
use crate::conn::Conn;
use crate::reply;
use crate::trim_check::check_trimmed;
use crate::wire::EntryId;

/// How often held entries are refreshed when no `claim_msgs_older_than` is
/// set (other members may still claim with their own setting).
pub(super) const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// How often a consumer checks whether entries were trimmed before its
/// group read them.
const TRIM_CHECK: Duration = Duration::from_secs(5);

/// How often held entries are refreshed: a third of
/// `claim_msgs_older_than`, within 50 ms and [`DEFAULT_REFRESH`].
pub(super) fn refresh_every(claim_idle: Option<Duration>) -> Duration {
    claim_idle.map_or(DEFAULT_REFRESH, |idle| {
        (idle / 3).clamp(Duration::from_millis(50), DEFAULT_REFRESH)
    })
}

fn lock(lease: &Mutex<Vec<EntryId>>) -> std::sync::MutexGuard<'_, Vec<EntryId>> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisSubscription {
    /// Give the refresh task the ids held now.
    pub(super) fn renew_lease(&mut self) {
        if self.lease_stale {
            let ids: Vec<EntryId> = self
                .held
                .values()
                .map(|h| h.id)
                .chain(self.ready.iter().map(|f| f.id))
                .collect();
            *lock(&self.lease) = ids;
            self.lease_stale = false;
        }
    }
}

/// Keep the entries this consumer holds from looking idle to other members
/// (`XCLAIM <min-idle 0> ... JUSTID` resets the idle time without counting a
/// delivery). Only entries still pending for this consumer are touched, so
/// one that another member has claimed meanwhile is not taken back.
pub(super) async fn refresh_held_entries(
    conn: Conn,
    stream: String,
    group: String,
    consumer: String,
    lease: Arc<Mutex<Vec<EntryId>>>,
    every: Duration,
    mut trim_reported: i64,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut next_trim_check = after(TRIM_CHECK);
    loop {
        tick.tick().await;
        if Instant::now() >= next_trim_check {
            next_trim_check = after(TRIM_CHECK);
            trim_reported = check_trimmed(&conn, &stream, &group, trim_reported, true).await.0;
        }
        let ids: Vec<EntryId> = lock(&lease).clone();
        let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
            continue;
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&stream)
            .arg(&group)
            .arg(first.to_string())
            .arg(last.to_string())
            .arg(ids.len() * 2 + 1000)
            .arg(&consumer);
        let mine: HashSet<EntryId> = match conn.query("XPENDING (refresh)", &cmd).await.map(reply::pending) {
            Ok(Ok(rows)) => rows.into_iter().map(|p| p.id).collect(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot refresh held entries");
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot refresh held entries");
                continue;
            }
        };
        let keep: Vec<&EntryId> = ids.iter().filter(|id| mine.contains(id)).collect();
        if keep.is_empty() {
            continue;
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&stream).arg(&group).arg(&consumer).arg(0);
        for id in keep {
            cmd.arg(id.to_string());
        }
        cmd.arg("JUSTID");
        if let Err(e) = conn.query("XCLAIM (refresh)", &cmd).await {
            tracing::debug!(error = %e, "cannot refresh held entries");
        }
    }
}
