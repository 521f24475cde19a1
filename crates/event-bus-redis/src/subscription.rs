//! A membership in a consumer group on one stream.
//!
//! Start-up order: this consumer's own pending entries (its PEL, left by a
//! previous run under the same name), then, when `claim_msgs_older_than` is
//! set, entries other members left pending for longer than that (again every
//! few seconds, not only at start), then new entries. Acknowledgements are
//! buffered and sent in one `XACK` by `flush_acks`. A nacked entry stays in
//! this consumer's PEL and is handed out again from a local delay queue.
//! While this consumer holds entries, a background task keeps them fresh
//! (`XCLAIM ... JUSTID`), so that other members do not claim entries that a
//! live consumer is still handling or waiting to retry; entries of a
//! consumer that died stop being refreshed and are claimed by the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, IncomingEvent, RawMessage, SeekTarget, Subscription, TransportError, TransportErrorKind,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::RedisConfig;
use crate::conn::{Conn, Purpose};
use crate::reply::{self, Entry};
use crate::transport::{create_group, is_nogroup, set_id};
use crate::wire::{self, EntryId};

/// How often held entries are refreshed when no `claim_msgs_older_than` is
/// set (other members may still claim with their own setting).
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// At most this many `XAUTOCLAIM` pages per `receive`.
const CLAIM_PAGES: usize = 10;
/// At most this many ids per `XACK`.
const ACK_CHUNK: usize = 1000;

struct Held {
    id: EntryId,
    raw: RawMessage,
    event: Result<IncomingEvent, String>,
    attempt: u32,
    /// Set while nacked: when it may be handed out again.
    due: Option<Instant>,
}

impl Held {
    fn delivery(&self, tag: DeliveryTag) -> Delivery {
        Delivery {
            raw: self.raw.clone(),
            tag,
            position: self.id.to_string(),
            attempt: self.attempt,
            event: self.event.clone(),
        }
    }
}

/// See the module documentation.
pub(crate) struct RedisSubscription {
    conn: Conn,
    blocking: Conn,
    client: redis::Client,
    config: RedisConfig,
    stream: String,
    group: String,
    consumer: String,
    claim_idle: Option<Duration>,
    claim_every: Duration,
    next_claim: Instant,
    claim_cursor: EntryId,
    /// While reading this consumer's own pending list: read after this id.
    recovering: Option<EntryId>,
    recovered: u64,
    held: HashMap<DeliveryTag, Held>,
    tags: HashMap<EntryId, DeliveryTag>,
    delayed: BTreeMap<EntryId, DeliveryTag>,
    acks: Vec<EntryId>,
    acked: HashSet<EntryId>,
    next_tag: u64,
    /// Ids held (in flight or delayed), refreshed by the background task.
    lease: Arc<Mutex<BTreeSet<EntryId>>>,
    refresher: Option<JoinHandle<()>>,
    closed: bool,
}

fn closed_error() -> TransportError {
    TransportError::new(TransportErrorKind::Closed, "the redis subscription is closed")
}

fn lock(lease: &Mutex<BTreeSet<EntryId>>) -> std::sync::MutexGuard<'_, BTreeSet<EntryId>> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisSubscription {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: Conn,
        blocking: Conn,
        client: redis::Client,
        config: RedisConfig,
        stream: String,
        group: String,
        consumer: String,
        claim_idle: Option<Duration>,
    ) -> Self {
        let refresh = claim_idle.map_or(DEFAULT_REFRESH, |idle| {
            (idle / 3).clamp(Duration::from_millis(50), DEFAULT_REFRESH)
        });
        let claim_every = claim_idle.map_or(DEFAULT_REFRESH, |idle| {
            (idle / 2).clamp(Duration::from_millis(100), DEFAULT_REFRESH)
        });
        let lease = Arc::new(Mutex::new(BTreeSet::new()));
        let refresher = tokio::spawn(refresh_held_entries(
            conn.clone(),
            stream.clone(),
            group.clone(),
            consumer.clone(),
            lease.clone(),
            refresh,
        ));
        tracing::info!(stream = %stream, group = %group, consumer = %consumer,
            claim_msgs_older_than_ms = claim_idle.map(|d| d.as_millis() as u64),
            "joined consumer group; reading this consumer's pending entries first");
        RedisSubscription {
            conn,
            blocking,
            client,
            config,
            stream,
            group,
            consumer,
            claim_idle,
            claim_every,
            next_claim: Instant::now(),
            claim_cursor: EntryId::ZERO,
            recovering: Some(EntryId::ZERO),
            recovered: 0,
            held: HashMap::new(),
            tags: HashMap::new(),
            delayed: BTreeMap::new(),
            acks: Vec::new(),
            acked: HashSet::new(),
            next_tag: 0,
            lease,
            refresher: Some(refresher),
            closed: false,
        }
    }

    fn what(&self, command: &str) -> String {
        format!("{command} {} {} {}", self.stream, self.group, self.consumer)
    }

    fn bad_reply(&self, command: &str, e: String) -> TransportError {
        TransportError::other(format!("{}: unexpected reply: {e}", self.what(command)))
    }

    /// How many delayed entries are due now (at most `max`).
    fn due_count(&self, now: Instant, max: usize) -> usize {
        self.delayed
            .values()
            .filter(|tag| self.held.get(tag).and_then(|h| h.due).is_some_and(|d| d <= now))
            .take(max)
            .count()
    }

    /// When the next delayed entry is due.
    fn next_due(&self) -> Option<Instant> {
        self.delayed
            .values()
            .filter_map(|tag| self.held.get(tag).and_then(|h| h.due))
            .min()
    }

    /// Acknowledge entries at once (trimmed ones that cannot be handled).
    async fn ack_now(&self, ids: &[EntryId]) -> Result<(), TransportError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        self.conn.query(&self.what("XACK"), &cmd).await.map(|_| ())
    }

    /// Trimmed pending entries (no fields) cannot be read any more: warn and
    /// acknowledge them, so they do not stay pending for ever.
    async fn drop_trimmed(&self, entries: &mut Vec<Entry>, source: &str) -> Result<(), TransportError> {
        let trimmed: Vec<EntryId> = entries.iter().filter(|e| e.fields.is_none()).map(|e| e.id).collect();
        if trimmed.is_empty() {
            return Ok(());
        }
        entries.retain(|e| e.fields.is_some());
        for id in &trimmed {
            tracing::warn!(stream = %self.stream, group = %self.group, consumer = %self.consumer, entry_id = %id,
                source, "a pending entry was trimmed from the stream (MAXLEN) before it was handled; \
                acknowledging it, it cannot be read any more");
        }
        self.ack_now(&trimmed).await
    }

    /// Delivery counts of entries pending for this consumer.
    async fn deliveries(&self, ids: &[EntryId]) -> HashMap<EntryId, u64> {
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

    /// The next page of this consumer's own pending list (entries a previous
    /// run under this name received but did not acknowledge).
    async fn recover(&mut self, room: usize, cursor: EntryId) -> Result<Vec<(Entry, u32)>, TransportError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(room)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(cursor.to_string());
        let reply = match self.conn.query(&self.what("XREADGROUP (pending)"), &cmd).await {
            Ok(r) => r,
            Err(e) if is_nogroup(&e) => {
                self.recreate_group().await?;
                self.recovering = None;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut entries = reply::read_reply(reply).map_err(|e| self.bad_reply("XREADGROUP", e))?;
        let Some(last) = entries.last().map(|e| e.id) else {
            self.recovering = None;
            if self.recovered > 0 {
                tracing::info!(stream = %self.stream, consumer = %self.consumer, entries = self.recovered,
                    "done with this consumer's pending entries");
            }
            return Ok(Vec::new());
        };
        self.drop_trimmed(&mut entries, "pending list").await?;
        self.recovering = Some(last);
        self.recovered += entries.len() as u64;
        // Reading the pending list counts as a delivery: the count includes this one.
        let ids: Vec<EntryId> = entries.iter().map(|e| e.id).collect();
        let counts = self.deliveries(&ids).await;
        Ok(entries
            .into_iter()
            .map(|e| {
                let attempt = counts.get(&e.id).copied().unwrap_or(2).max(1);
                (e, u32::try_from(attempt).unwrap_or(u32::MAX))
            })
            .collect())
    }

    /// Claim entries other members left pending longer than
    /// `claim_msgs_older_than` (`XAUTOCLAIM`).
    async fn claim(&mut self, room: usize, idle: Duration) -> Result<Vec<(Entry, u32)>, TransportError> {
        let mut got: Vec<Entry> = Vec::new();
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
            let mut entries = claim.entries;
            self.drop_trimmed(&mut entries, "claimed").await?;
            // Entries this consumer holds already (its refresh was late) stay where they are.
            entries.retain(|e| !self.tags.contains_key(&e.id) && !self.acked.contains(&e.id));
            got.extend(entries);
            self.claim_cursor = claim.cursor;
            if claim.cursor == EntryId::ZERO {
                self.next_claim = Instant::now() + self.claim_every;
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
        let ids: Vec<EntryId> = got.iter().map(|e| e.id).collect();
        let counts = self.deliveries(&ids).await;
        Ok(got
            .into_iter()
            .map(|e| {
                let attempt = counts.get(&e.id).copied().unwrap_or(2).max(1);
                (e, u32::try_from(attempt).unwrap_or(u32::MAX))
            })
            .collect())
    }

    /// New entries (`XREADGROUP ... >`), waiting up to `block` on this
    /// subscription's own connection.
    async fn read_new(&mut self, room: usize, block: Duration) -> Result<Vec<(Entry, u32)>, TransportError> {
        let block_ms = block.as_millis() as u64;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(room);
        // BLOCK 0 would wait for ever: without BLOCK the read returns at once.
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let limit = Duration::from_millis(block_ms) + self.blocking.timeout();
        let reply = match self.blocking.query_within(&self.what("XREADGROUP"), &cmd, limit).await {
            Ok(r) => r,
            Err(e) if is_nogroup(&e) => {
                self.recreate_group().await?;
                return Ok(Vec::new());
            }
            Err(e) => {
                if e.kind == TransportErrorKind::Timeout {
                    // The connection may still be blocked in Redis: start afresh.
                    self.blocking = Conn::open(&self.client, &self.config, Purpose::Blocking)?;
                }
                return Err(e);
            }
        };
        let mut entries = reply::read_reply(reply).map_err(|e| self.bad_reply("XREADGROUP", e))?;
        self.drop_trimmed(&mut entries, "new").await?;
        Ok(entries.into_iter().map(|e| (e, 1)).collect())
    }

    /// The stream or the group was deleted while we were reading (an
    /// operator, a test clean-up): make it again, from the start.
    async fn recreate_group(&self) -> Result<(), TransportError> {
        tracing::warn!(stream = %self.stream, group = %self.group,
            "the consumer group (or its stream) disappeared; creating it again");
        create_group(&self.conn, &self.stream, &self.group, "0")
            .await
            .map(|_| ())
    }

    /// Due delayed entries first (in stream order), then the fresh ones.
    fn hand_out(&mut self, max: usize, fresh: Vec<(Entry, u32)>) -> Vec<Delivery> {
        let now = Instant::now();
        let room = max.saturating_sub(fresh.len());
        let due: Vec<(EntryId, DeliveryTag)> = self
            .delayed
            .iter()
            .filter(|(_, tag)| self.held.get(tag).and_then(|h| h.due).is_some_and(|d| d <= now))
            .map(|(id, tag)| (*id, *tag))
            .take(room)
            .collect();
        let mut out = Vec::with_capacity(due.len() + fresh.len());
        for (id, tag) in due {
            self.delayed.remove(&id);
            if let Some(h) = self.held.get_mut(&tag) {
                h.due = None;
                h.attempt = h.attempt.saturating_add(1);
                out.push(h.delivery(tag));
            }
        }
        let mut lease = lock(&self.lease);
        for (entry, attempt) in fresh {
            let (raw, event) = wire::parse_entry(&self.stream, entry.id, entry.fields.unwrap_or_default());
            let tag = DeliveryTag(self.next_tag);
            self.next_tag += 1;
            let held = Held {
                id: entry.id,
                raw,
                event,
                attempt,
                due: None,
            };
            out.push(held.delivery(tag));
            self.held.insert(tag, held);
            self.tags.insert(entry.id, tag);
            lease.insert(entry.id);
        }
        out
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        let max = max.max(1);
        let deadline = Instant::now() + wait;
        loop {
            let due = self.due_count(Instant::now(), max);
            let room = max - due;
            let mut fresh = Vec::new();
            if room > 0 {
                if let Some(cursor) = self.recovering {
                    fresh = self.recover(room, cursor).await?;
                } else if let Some(idle) = self.claim_idle.filter(|_| Instant::now() >= self.next_claim) {
                    fresh = self.claim(room, idle).await?;
                }
            }
            if due == 0 && fresh.is_empty() && self.recovering.is_none() {
                let mut until = deadline;
                if let Some(d) = self.next_due() {
                    until = until.min(d);
                }
                if self.claim_idle.is_some() {
                    until = until.min(self.next_claim);
                }
                let block = until.saturating_duration_since(Instant::now());
                fresh = self.read_new(max, block).await?;
            }
            let out = self.hand_out(max, fresh);
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        if let Some(h) = self.held.remove(&tag) {
            self.tags.remove(&h.id);
            self.delayed.remove(&h.id);
            lock(&self.lease).remove(&h.id);
            self.acks.push(h.id);
            self.acked.insert(h.id);
        }
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        if let Some(h) = self.held.get_mut(&tag) {
            if h.due.is_none() {
                h.due = Some(Instant::now() + delay);
                self.delayed.insert(h.id, tag);
            }
        }
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        while !self.acks.is_empty() {
            let n = self.acks.len().min(ACK_CHUNK);
            self.ack_now(&self.acks[..n]).await?;
            for id in self.acks.drain(..n) {
                self.acked.remove(&id);
            }
        }
        Ok(())
    }

    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        let id = match target {
            SeekTarget::Time(t) => EntryId::just_before(*t).to_string(),
            SeekTarget::After(p) => p
                .parse::<EntryId>()
                .map_err(|e| TransportError::other(e.to_string()))?
                .to_string(),
            SeekTarget::Earliest => "0".to_string(),
            SeekTarget::Latest => "$".to_string(),
        };
        set_id(&self.conn, &self.stream, &self.group, &id).await?;
        tracing::info!(stream = %self.stream, group = %self.group, id = %id, "moved the consumer group");
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
        let flushed = self.flush_acks().await;
        if !self.held.is_empty() {
            tracing::info!(stream = %self.stream, group = %self.group, consumer = %self.consumer,
                entries = self.held.len(),
                "unacknowledged entries stay pending for this consumer name: a restart under the same name \
                 handles them, other members claim them after claim_msgs_older_than");
        }
        flushed
    }
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
    }
}

/// Keep the entries this consumer holds from looking idle to other members
/// (`XCLAIM <min-idle 0> ... JUSTID` resets the idle time without counting a
/// delivery). Only entries still pending for this consumer are touched, so
/// one that another member has claimed meanwhile is not taken back.
async fn refresh_held_entries(
    conn: Conn,
    stream: String,
    group: String,
    consumer: String,
    lease: Arc<Mutex<BTreeSet<EntryId>>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ids: Vec<EntryId> = lock(&lease).iter().copied().collect();
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
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
