//! Getting back the entries a consumer is owed: its own pending list (at
//! start, and again after any connection trouble, since a read whose reply
//! was lost has left entries pending for it), the entries other members
//! left pending longer than `claim_msgs_older_than` (`XAUTOCLAIM`), their
//! attempts from Redis's delivery counts, pending entries trimmed from the
//! stream, and a group that disappeared.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use openedx_events::bus::transport::TransportError;

use super::entries::{entries_of, owned_fresh, Fresh};
use super::lease::DEFAULT_REFRESH;
use super::{after, RedisSubscription};
use crate::error::is_nogroup;
use crate::reply::{self, Entry};
use crate::transport::create_group;
use crate::wire::EntryId;

/// At most this many `XAUTOCLAIM` pages per `receive`.
const CLAIM_PAGES: usize = 10;

/// How often a consumer looks for entries to claim: half of
/// `claim_msgs_older_than`, within 100 ms and [`DEFAULT_REFRESH`].
pub(super) fn claim_every(claim_idle: Option<Duration>) -> Duration {
    claim_idle.map_or(DEFAULT_REFRESH, |idle| {
        (idle / 2).clamp(Duration::from_millis(100), DEFAULT_REFRESH)
    })
}

impl RedisSubscription {
    /// Connection troubles so far, of both connections.
    pub(super) fn troubles_now(&self) -> u64 {
        self.reader.troubles().wrapping_add(self.conn.troubles())
    }

    /// After a call: if it failed or a connection had trouble meanwhile
    /// (even one retried with success), read this consumer's pending list
    /// again from its start before any new entry. An `XREADGROUP ... >` (or
    /// the read-ahead piped with an `XACK`) whose reply was lost, because
    /// the server died or the connection dropped after it ran, has put its
    /// entries in this consumer's pending list; nothing else would hand
    /// them out before `claim_msgs_older_than`. Entries held already are
    /// not handed out twice (see [`RedisSubscription::in_flight`]).
    pub(super) fn after_call(&mut self, failed: bool) {
        let now = self.troubles_now();
        if !failed && now == self.troubles {
            return;
        }
        self.troubles = now;
        if self.recovering != Some(EntryId::ZERO) {
            tracing::info!(stream = %self.stream, group = %self.group, consumer = %self.consumer,
                "connection trouble: reading this consumer's pending entries again before new ones");
        }
        self.recovering = Some(EntryId::ZERO);
        self.recovered = 0;
    }

    /// The ids this consumer holds: handed out and not acknowledged (in
    /// the loop's hands or waiting for a redelivery), read ahead, or
    /// acknowledged but not sent yet. All are still pending in Redis, and
    /// none may be handed out again by a re-read of the pending list or a
    /// claim.
    pub(super) fn in_flight(&self) -> HashSet<EntryId> {
        self.held
            .values()
            .map(|h| h.id)
            .chain(self.ready.iter().map(|f| f.id))
            .chain(self.acks.iter().copied())
            .collect()
    }

    /// Pending entries that were trimmed from the stream (MAXLEN) cannot be
    /// read any more: warn and acknowledge them, so they do not stay
    /// pending for ever.
    pub(super) async fn drop_trimmed(&self, trimmed: &[EntryId], source: &str) -> Result<(), TransportError> {
        for id in trimmed {
            tracing::warn!(stream = %self.stream, group = %self.group, consumer = %self.consumer, entry_id = %id,
                source, "a pending entry was trimmed from the stream (MAXLEN) before it was handled; \
                acknowledging it, it cannot be read any more");
        }
        self.ack_now(trimmed).await
    }

    /// Delivery counts of entries pending for this consumer.
    pub(super) async fn deliveries(&self, ids: &[EntryId]) -> HashMap<EntryId, u64> {
        let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
            return HashMap::new();
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.stream)
            .arg(&self.group)
            .arg(first.to_string())
            .arg(last.to_string())
            .arg(ids.len() + self.held.len() + self.acks.len() + 16)
            .arg(&self.consumer);
        match self.conn.query(&self.what("XPENDING"), &cmd).await.map(reply::pending) {
            Ok(Ok(rows)) => rows.into_iter().map(|p| (p.id, p.deliveries)).collect(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read delivery counts");
                HashMap::new()
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read delivery counts");
                HashMap::new()
            }
        }
    }

    /// Set the attempt of entries recovered or claimed from Redis's delivery
    /// counts (which include this delivery).
    pub(super) async fn count_attempts(&self, fresh: &mut [Fresh]) {
        let ids: Vec<EntryId> = fresh.iter().map(|f| f.id).collect();
        let counts = self.deliveries(&ids).await;
        for f in fresh {
            let attempt = counts.get(&f.id).copied().unwrap_or(2).max(1);
            f.attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        }
    }

    /// The next page of this consumer's own pending list (entries a previous
    /// run under this name received but did not acknowledge).
    pub(super) async fn recover(&mut self, room: usize, cursor: EntryId) -> Result<Vec<Fresh>, TransportError> {
        let mut buf = [0u8; 41];
        let cmd = self.xreadgroup(room, None, cursor.text(&mut buf));
        let what = self.what("XREADGROUP (pending)");
        let read = match self.reader.call(&what, &cmd, self.conn.timeout()).await {
            Ok(reply) => entries_of(&self.stream, reply, 2),
            Err(e) if is_nogroup(&e) => {
                self.recreate_group().await?;
                self.recovering = None;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let (mut fresh, trimmed) = read.map_err(|e| self.bad_reply("XREADGROUP", e))?;
        let last = fresh.iter().map(|f| f.id).chain(trimmed.iter().copied()).max();
        let Some(last) = last else {
            self.recovering = None;
            if self.recovered > 0 {
                tracing::info!(stream = %self.stream, consumer = %self.consumer, entries = self.recovered,
                    "done with this consumer's pending entries");
            }
            return Ok(Vec::new());
        };
        // After a connection trouble the pending list holds the entries in
        // hand too: they stay where they are.
        let held = self.in_flight();
        fresh.retain(|f| !held.contains(&f.id));
        let trimmed: Vec<EntryId> = trimmed.into_iter().filter(|id| !held.contains(id)).collect();
        self.drop_trimmed(&trimmed, "pending list").await?;
        self.recovering = Some(last);
        self.recovered += fresh.len() as u64;
        // Reading the pending list counts as a delivery: the count includes this one.
        self.count_attempts(&mut fresh).await;
        Ok(fresh)
    }

    /// Claim entries other members left pending longer than
    /// `claim_msgs_older_than` (`XAUTOCLAIM`).
    pub(super) async fn claim(&mut self, room: usize, idle: Duration) -> Result<Vec<Fresh>, TransportError> {
        let mut got: Vec<Entry> = Vec::new();
        // Entries this consumer holds already (its refresh was late) stay where they are.
        let mine = self.in_flight();
        for _ in 0..CLAIM_PAGES {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(idle.as_millis() as u64)
                .arg(self.claim_cursor.to_string())
                .arg("COUNT")
                .arg(room.saturating_sub(got.len()).max(1));
            let reply = match self.conn.query(&self.what("XAUTOCLAIM"), &cmd).await {
                Ok(r) => r,
                Err(e) if is_nogroup(&e) => {
                    self.recreate_group().await?;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            };
            let claim = reply::autoclaim(reply).map_err(|e| self.bad_reply("XAUTOCLAIM", e))?;
            for id in &claim.deleted {
                tracing::warn!(stream = %self.stream, group = %self.group, entry_id = %id,
                    "a pending entry was trimmed from the stream before it was handled; Redis dropped it");
            }
            let (mut entries, trimmed): (Vec<Entry>, Vec<Entry>) =
                claim.entries.into_iter().partition(|e| e.fields.is_some());
            let trimmed: Vec<EntryId> = trimmed.iter().map(|e| e.id).collect();
            self.drop_trimmed(&trimmed, "claimed").await?;
            entries.retain(|e| !mine.contains(&e.id));
            got.extend(entries);
            self.claim_cursor = claim.cursor;
            if claim.cursor == EntryId::ZERO {
                self.next_claim = after(self.claim_every);
                break;
            }
            if got.len() >= room {
                break;
            }
        }
        if got.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!(stream = %self.stream, group = %self.group, consumer = %self.consumer, entries = got.len(),
            idle_ms = idle.as_millis() as u64, "claimed entries other consumers left pending");
        let mut fresh: Vec<Fresh> = got
            .into_iter()
            .filter_map(|e| owned_fresh(&self.stream, e, 2))
            .collect();
        self.count_attempts(&mut fresh).await;
        Ok(fresh)
    }

    /// The stream or the group was deleted while we were reading (an
    /// operator, a test clean-up): make it again, from the start.
    pub(super) async fn recreate_group(&self) -> Result<(), TransportError> {
        tracing::warn!(stream = %self.stream, group = %self.group,
            "the consumer group (or its stream) disappeared; creating it again");
        create_group(&self.conn, &self.stream, &self.group, "0")
            .await
            .map(|_| ())
    }
}
