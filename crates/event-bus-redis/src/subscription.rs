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
//! After a connection trouble the pending list is read again from its
//! start, skipping the entries held (see `after_call`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::delayed::deadline_after;
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, IncomingEvent, RawMessage, SeekTarget, Subscription, TransportError, TransportErrorKind,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::conn::Conn;
use crate::raw::Packer;
use crate::reader::{ReadConn, Reply};
use crate::reply::{self, Entry};
use crate::resp;
use crate::transport::{create_group, is_nogroup, set_id};
use crate::wire::{self, EntryId};

/// How often held entries are refreshed when no `claim_msgs_older_than` is
/// set (other members may still claim with their own setting).
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// At most this many `XAUTOCLAIM` pages per `receive`.
const CLAIM_PAGES: usize = 10;
/// At most this many ids per `XACK`.
const ACK_CHUNK: usize = 1000;
/// How often a consumer checks whether entries were trimmed before its
/// group read them.
const TRIM_CHECK: Duration = Duration::from_secs(5);

/// An entry handed out and not acknowledged yet. Its fields are kept as
/// they came (one RESP array, a single copy) to hand it out again after a
/// nack, even if the stream was trimmed meanwhile.
struct Held {
    id: EntryId,
    attempt: u32,
    /// Set while nacked: when it may be handed out again.
    due: Option<Instant>,
    saved: Vec<u8>,
}

/// An entry just read, parsed, not handed out yet.
struct Fresh {
    id: EntryId,
    attempt: u32,
    raw: RawMessage,
    event: Result<IncomingEvent, String>,
    saved: Vec<u8>,
}

/// Entries read: the usable ones, and the ids of pending entries that were
/// trimmed from the stream (no fields any more).
type Read = (Vec<Fresh>, Vec<EntryId>);

/// Hashes delivery tags (sequential numbers) with one multiplication.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type TagMap<V> = HashMap<DeliveryTag, V, BuildHasherDefault<TagHasher>>;

/// See the module documentation.
pub(crate) struct RedisSubscription {
    conn: Conn,
    reader: ReadConn,
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
    held: TagMap<Held>,
    delayed: BTreeMap<EntryId, DeliveryTag>,
    /// Acknowledged, not sent yet (`flush_acks`).
    acks: Vec<EntryId>,
    /// New entries read ahead (with the acks of the previous batch), not
    /// handed out yet.
    ready: VecDeque<Fresh>,
    /// The last read of new entries filled its batch: more are probably
    /// waiting, worth reading ahead.
    backlog: bool,
    /// The batch size the loop asks for.
    batch: usize,
    next_tag: u64,
    /// The ids held (in flight or delayed) for the background task to
    /// refresh: a copy of `held`'s, renewed at the end of a `receive` that
    /// changed them.
    lease: Arc<Mutex<Vec<EntryId>>>,
    lease_stale: bool,
    refresher: Option<JoinHandle<()>>,
    closed: bool,
    /// The connection troubles seen so far (of the reading and the command
    /// connections): when they change, a command may have run in Redis
    /// without its reply arriving, and the pending list is read again.
    troubles: u64,
}

/// `now + delay` on tokio's clock, never overflowing (a nack's delay or a
/// receive's wait come from settings).
fn after(delay: Duration) -> Instant {
    Instant::from_std(deadline_after(Instant::now().into_std(), delay))
}

fn closed_error() -> TransportError {
    TransportError::new(TransportErrorKind::Closed, "the redis subscription is closed")
}

fn lock(lease: &Mutex<Vec<EntryId>>) -> std::sync::MutexGuard<'_, Vec<EntryId>> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisSubscription {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: Conn,
        reader: ReadConn,
        stream: String,
        group: String,
        consumer: String,
        claim_idle: Option<Duration>,
        trim_reported: i64,
    ) -> Self {
        let refresh = claim_idle.map_or(DEFAULT_REFRESH, |idle| {
            (idle / 3).clamp(Duration::from_millis(50), DEFAULT_REFRESH)
        });
        let claim_every = claim_idle.map_or(DEFAULT_REFRESH, |idle| {
            (idle / 2).clamp(Duration::from_millis(100), DEFAULT_REFRESH)
        });
        let lease = Arc::new(Mutex::new(Vec::new()));
        let refresher = tokio::spawn(refresh_held_entries(
            conn.clone(),
            stream.clone(),
            group.clone(),
            consumer.clone(),
            lease.clone(),
            refresh,
            trim_reported,
        ));
        tracing::info!(stream = %stream, group = %group, consumer = %consumer,
            claim_msgs_older_than_ms = claim_idle.map(|d| d.as_millis() as u64),
            "joined consumer group; reading this consumer's pending entries first");
        RedisSubscription {
            conn,
            reader,
            stream,
            group,
            consumer,
            claim_idle,
            claim_every,
            next_claim: Instant::now(),
            claim_cursor: EntryId::ZERO,
            recovering: Some(EntryId::ZERO),
            recovered: 0,
            held: TagMap::default(),
            delayed: BTreeMap::new(),
            acks: Vec::new(),
            ready: VecDeque::new(),
            backlog: false,
            batch: 1,
            next_tag: 0,
            lease,
            lease_stale: false,
            refresher: Some(refresher),
            closed: false,
            troubles: 0,
        }
    }

    /// Connection troubles so far, of both connections.
    fn troubles_now(&self) -> u64 {
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
    fn after_call(&mut self, failed: bool) {
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
    fn in_flight(&self) -> HashSet<EntryId> {
        self.held
            .values()
            .map(|h| h.id)
            .chain(self.ready.iter().map(|f| f.id))
            .chain(self.acks.iter().copied())
            .collect()
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
        let mut cmd = redis::Cmd::with_capacity(ids.len() + 3, ids.len() * 24 + 64);
        cmd.arg("XACK").arg(&self.stream).arg(&self.group);
        let mut buf = [0u8; 41];
        for id in ids {
            cmd.arg(id.text(&mut buf));
        }
        self.conn.query(&self.what("XACK"), &cmd).await.map(|_| ())
    }

    /// Pending entries that were trimmed from the stream (MAXLEN) cannot be
    /// read any more: warn and acknowledge them, so they do not stay
    /// pending for ever.
    async fn drop_trimmed(&self, trimmed: &[EntryId], source: &str) -> Result<(), TransportError> {
        for id in trimmed {
            tracing::warn!(stream = %self.stream, group = %self.group, consumer = %self.consumer, entry_id = %id,
                source, "a pending entry was trimmed from the stream (MAXLEN) before it was handled; \
                acknowledging it, it cannot be read any more");
        }
        self.ack_now(trimmed).await
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

    /// Set the attempt of entries recovered or claimed from Redis's delivery
    /// counts (which include this delivery).
    async fn count_attempts(&self, fresh: &mut [Fresh]) {
        let ids: Vec<EntryId> = fresh.iter().map(|f| f.id).collect();
        let counts = self.deliveries(&ids).await;
        for f in fresh {
            let attempt = counts.get(&f.id).copied().unwrap_or(2).max(1);
            f.attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        }
    }

    /// `XREADGROUP GROUP <group> <consumer> COUNT <room> [BLOCK <ms>] STREAMS <stream> <from>`.
    fn xreadgroup(&self, room: usize, block_ms: Option<u64>, from: &[u8]) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(room);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        cmd
    }

    /// The next page of this consumer's own pending list (entries a previous
    /// run under this name received but did not acknowledge).
    async fn recover(&mut self, room: usize, cursor: EntryId) -> Result<Vec<Fresh>, TransportError> {
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
    async fn claim(&mut self, room: usize, idle: Duration) -> Result<Vec<Fresh>, TransportError> {
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

    /// New entries (`XREADGROUP ... >`), waiting up to `block` on this
    /// subscription's own connection.
    async fn read_new(&mut self, room: usize, block: Duration) -> Result<Vec<Fresh>, TransportError> {
        let block_ms = block.as_millis() as u64;
        // BLOCK 0 would wait for ever: without BLOCK the read returns at once.
        let cmd = self.xreadgroup(room, (block_ms > 0).then_some(block_ms), b">");
        let limit = Duration::from_millis(block_ms) + self.conn.timeout();
        let what = self.what("XREADGROUP");
        let read = match self.reader.call(&what, &cmd, limit).await {
            Ok(reply) => entries_of(&self.stream, reply, 1),
            Err(e) if is_nogroup(&e) => {
                self.recreate_group().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let (fresh, trimmed) = read.map_err(|e| self.bad_reply("XREADGROUP", e))?;
        self.backlog = fresh.len() + trimmed.len() >= room;
        self.drop_trimmed(&trimmed, "new").await?;
        Ok(fresh)
    }

    /// Send the first `n` buffered acks. On a connection of our own, when
    /// more entries are probably waiting, the next batch is read in the same
    /// round trip (`XACK ...` then `XREADGROUP ... >`, pipelined) and kept
    /// for the next `receive`: one round trip per batch instead of two. The
    /// acks are durable when this returns either way.
    async fn send_acks(&mut self, n: usize) -> Result<(), TransportError> {
        let ReadConn::Raw(raw) = &mut self.reader else {
            return self.ack_now(&self.acks[..n]).await;
        };
        let mut id = [0u8; 41];
        let ids = &self.acks[..n];
        let mut xack = Packer::new(ids.len() + 3, ids.len() * 32 + 64);
        xack.arg(b"XACK");
        xack.arg(self.stream.as_bytes());
        xack.arg(self.group.as_bytes());
        for i in ids {
            xack.arg(i.text(&mut id));
        }
        let mut packed = xack.into_bytes();
        let read_ahead =
            !self.closed && self.backlog && self.ready.is_empty() && self.recovering.is_none() && n == self.acks.len();
        if read_ahead {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(self.batch)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">");
            cmd.write_packed_command(&mut packed);
        }
        let what = format!("XACK {} {} {}", self.stream, self.group, self.consumer);
        let secret = raw.secret().clone();
        let bytes = raw
            .call(&what, &packed, if read_ahead { 2 } else { 1 }, self.conn.timeout())
            .await?;
        let mut c = resp::Cursor::new(bytes);
        match c.next_item() {
            Ok(resp::Item::Int(_)) => {}
            Ok(resp::Item::Error(text)) => return Err(crate::raw::server_error(&what, text, &secret)),
            Ok(other) => {
                return Err(TransportError::other(format!(
                    "{what}: Redis replied with {}, not a count",
                    resp::describe(&other)
                )))
            }
            Err(e) => return Err(TransportError::other(format!("{what}: {e}"))),
        }
        if !read_ahead {
            return Ok(());
        }
        // The read ahead: any trouble is left to the next `receive` (the
        // entries it may have read are pending for this consumer).
        let rest = bytes.get(c.pos()..).unwrap_or_default();
        if rest.first() == Some(&b'-') {
            self.backlog = false;
            return Ok(());
        }
        match entries_of(&self.stream, Reply::Raw(rest), 1) {
            Ok((fresh, trimmed)) => {
                self.backlog = fresh.len() + trimmed.len() >= self.batch;
                if !fresh.is_empty() {
                    self.lease_stale = true;
                }
                self.ready.extend(fresh);
                self.renew_lease();
                if let Err(e) = self.drop_trimmed(&trimmed, "new").await {
                    tracing::warn!(error = %e, "cannot acknowledge trimmed entries");
                }
            }
            Err(e) => {
                self.backlog = false;
                tracing::warn!(stream = %self.stream, group = %self.group, error = %e,
                    "unexpected reply to a read ahead; its entries stay pending for this consumer");
            }
        }
        Ok(())
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
    fn hand_out(&mut self, max: usize, fresh: Vec<Fresh>) -> Vec<Delivery> {
        let now = Instant::now();
        let room = max.saturating_sub(fresh.len());
        let mut out = Vec::with_capacity(fresh.len() + room.min(self.delayed.len()));
        if room > 0 && !self.delayed.is_empty() {
            let due: Vec<(EntryId, DeliveryTag)> = self
                .delayed
                .iter()
                .filter(|(_, tag)| self.held.get(tag).and_then(|h| h.due).is_some_and(|d| d <= now))
                .map(|(id, tag)| (*id, *tag))
                .take(room)
                .collect();
            for (id, tag) in due {
                self.delayed.remove(&id);
                if let Some(h) = self.held.get_mut(&tag) {
                    h.due = None;
                    h.attempt = h.attempt.saturating_add(1);
                    let (raw, event) = saved_entry(&self.stream, h.id, &h.saved);
                    out.push(Delivery {
                        raw,
                        tag,
                        position: h.id.to_text(),
                        attempt: h.attempt,
                        event,
                    });
                }
            }
        }
        if !fresh.is_empty() {
            self.lease_stale = true;
        }
        self.held.reserve(fresh.len());
        for f in fresh {
            let tag = DeliveryTag(self.next_tag);
            self.next_tag += 1;
            out.push(Delivery {
                raw: f.raw,
                tag,
                position: f.id.to_text(),
                attempt: f.attempt,
                event: f.event,
            });
            self.held.insert(
                tag,
                Held {
                    id: f.id,
                    attempt: f.attempt,
                    due: None,
                    saved: f.saved,
                },
            );
        }
        out
    }

    /// Entries read ahead and never handed out: they are pending for this
    /// consumer (Redis cannot give them back to the group), so mark them
    /// idle for long (`XCLAIM ... IDLE`, to this same consumer, without
    /// counting a delivery): the other members claim them at their next
    /// look instead of after `claim_msgs_older_than`, and a restart under
    /// this name recovers them as before.
    async fn release_read_ahead(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream).arg(&self.group).arg(&self.consumer).arg(0);
        let mut buf = [0u8; 41];
        for f in &self.ready {
            cmd.arg(f.id.text(&mut buf));
        }
        // A year: any member's claim_msgs_older_than is shorter (Redis
        // ignores an idle time that goes back before the epoch).
        cmd.arg("IDLE").arg(365u64 * 24 * 3600 * 1000).arg("JUSTID");
        match self.conn.query(&self.what("XCLAIM (release)"), &cmd).await {
            Ok(_) => tracing::info!(stream = %self.stream, group = %self.group, consumer = %self.consumer,
                entries = self.ready.len(),
                "entries read ahead but not handed out were released for the other members to claim"),
            Err(e) => tracing::warn!(stream = %self.stream, group = %self.group, consumer = %self.consumer,
                entries = self.ready.len(), error = %e,
                "entries read ahead but not handed out stay pending for this consumer name"),
        }
        self.ready.clear();
    }

    /// Give the refresh task the ids held now.
    fn renew_lease(&mut self) {
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

    /// One `receive` (see the module documentation).
    async fn receive_once(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        let max = max.max(1);
        self.batch = max;
        let deadline = after(wait);
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
                if fresh.is_empty() && !self.ready.is_empty() {
                    let n = room.min(self.ready.len());
                    fresh = self.ready.drain(..n).collect();
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
                self.renew_lease();
                return Ok(out);
            }
        }
    }
}

/// The entries of an `XREADGROUP` reply, each with `attempt`.
fn entries_of(stream: &str, reply: Reply<'_>, attempt: u32) -> Result<Read, String> {
    let mut fresh = Vec::new();
    let mut trimmed = Vec::new();
    match reply {
        Reply::Raw(bytes) => {
            let mut pairs = Vec::new();
            let entries = resp::read_reply_entries(bytes, &mut pairs).map_err(|e| e.to_string())?;
            fresh.reserve(entries.len());
            for e in entries {
                let Some(at) = e.fields else {
                    trimmed.push(e.id);
                    continue;
                };
                let fields = pairs.get(at.pairs.0..at.pairs.1).unwrap_or_default();
                let (raw, event) = wire::parse_entry_from(stream, e.id, fields.iter().copied(), fields.len());
                fresh.push(Fresh {
                    id: e.id,
                    attempt,
                    raw,
                    event,
                    saved: bytes.get(at.bytes.0..at.bytes.1).unwrap_or_default().to_vec(),
                });
            }
        }
        Reply::Value(v) => {
            for e in reply::read_reply(v)? {
                let id = e.id;
                match owned_fresh(stream, e, attempt) {
                    Some(f) => fresh.push(f),
                    None => trimmed.push(id),
                }
            }
        }
    }
    Ok((fresh, trimmed))
}

/// An entry parsed by [`reply`] as a fresh one (`None` if trimmed).
fn owned_fresh(stream: &str, e: Entry, attempt: u32) -> Option<Fresh> {
    let fields = e.fields?;
    let saved = resp::encode_fields(fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
    let (raw, event) = wire::parse_entry(stream, e.id, fields);
    Some(Fresh {
        id: e.id,
        attempt,
        raw,
        event,
        saved,
    })
}

/// A held entry, from its saved fields, to hand out again.
fn saved_entry(stream: &str, id: EntryId, saved: &[u8]) -> (RawMessage, Result<IncomingEvent, String>) {
    match resp::fields(saved) {
        Ok(fields) => {
            let count = fields.len();
            wire::parse_entry_from(stream, id, fields.map_while(Result::ok), count)
        }
        // Saved by this process from a checked reply: cannot happen.
        Err(e) => {
            let (raw, _) = wire::parse_entry(stream, id, Vec::new());
            (raw, Err(format!("cannot read the entry kept for a redelivery: {e}")))
        }
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        let result = self.receive_once(max, wait).await;
        self.after_call(result.is_err());
        result
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        if let Some(h) = self.held.remove(&tag) {
            if h.due.is_some() {
                self.delayed.remove(&h.id);
            }
            self.acks.push(h.id);
            self.lease_stale = true;
        }
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        if let Some(h) = self.held.get_mut(&tag) {
            if h.due.is_none() {
                h.due = Some(after(delay));
                self.delayed.insert(h.id, tag);
            }
        }
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        let mut result = Ok(());
        while !self.acks.is_empty() {
            let n = self.acks.len().min(ACK_CHUNK);
            if let Err(e) = self.send_acks(n).await {
                result = Err(e);
                break;
            }
            self.acks.drain(..n);
        }
        // The read-ahead piped with the acks may have been lost with its reply.
        self.after_call(result.is_err());
        result
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
        self.release_read_ahead().await;
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

/// Entries trimmed from the stream (`MAXLEN ~`) before the group read them
/// are lost to it without a trace in the replies of reads (in Python too):
/// a consumer that lags by more than about `MAXLEN` entries, or a group
/// whose consumers were all down while producers went on. Redis 7 keeps
/// the count: while the group's `last-delivered-id` is before the stream's
/// `recorded-first-entry-id` (the trimming went past the group), every entry
/// in the stream is still to be read, so `entries-added - entries-read -
/// length` entries were trimmed unread (in the group's lifetime). Warns
/// (when `report`) if that is more than `reported`; returns the count (to
/// warn only about new losses) and, when it warned, how many are new. Does
/// nothing on Redis before 7, when Redis cannot count (`entries-read` is
/// nil: a group that never read anything), or on any error.
pub(crate) async fn check_trimmed(
    conn: &Conn,
    stream: &str,
    group: &str,
    reported: i64,
    report: bool,
) -> (i64, Option<i64>) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("XINFO").arg("STREAM").arg(stream);
    pipe.cmd("XINFO").arg("GROUPS").arg(stream);
    let Ok(mut replies) = conn.pipeline("XINFO", &pipe, conn.timeout()).await else {
        return (reported, None);
    };
    let (Some(groups), Some(info)) = (replies.pop(), replies.pop()) else {
        return (reported, None);
    };
    let info = reply::info_map(info);
    let Some(ours) = reply::info_list(groups)
        .into_iter()
        .find(|g| info_field(g, "name").and_then(reply::text).as_deref() == Some(group))
    else {
        return (reported, None);
    };
    let id = |m: &[(String, redis::Value)], k: &str| info_field(m, k).and_then(|v| reply::entry_id(v).ok());
    let int = |m: &[(String, redis::Value)], k: &str| info_field(m, k).and_then(reply::int);
    let (Some(first), Some(delivered)) = (id(&info, "recorded-first-entry-id"), id(&ours, "last-delivered-id")) else {
        return (reported, None); // before Redis 7
    };
    let (Some(added), Some(read), Some(length)) = (
        int(&info, "entries-added"),
        int(&ours, "entries-read"),
        int(&info, "length"),
    ) else {
        return (reported, None);
    };
    let lost = added - read - length;
    if delivered >= first || lost <= reported {
        return (reported, None);
    }
    let new = lost - reported;
    if report {
        tracing::warn!(stream = %stream, group = %group, lost = new, lost_in_all = lost,
            last_delivered_id = %delivered, first_entry_id = %first,
            "{new} entries were trimmed from the stream (MAXLEN, EVENT_BUS_REDIS_STREAM_MAX_LEN) before this \
             group read them: it lagged by more than the stream keeps, and they are lost to it \
             (raise EVENT_BUS_REDIS_STREAM_MAX_LEN, or add consumers)");
    }
    (lost, Some(new))
}

fn info_field<'a>(m: &'a [(String, redis::Value)], name: &str) -> Option<&'a redis::Value> {
    m.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;
    use crate::conn::Purpose;

    #[tokio::test]
    async fn entries_trimmed_before_the_group_read_them_are_reported_once() {
        let url = std::env::var("EVENT_BUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let config = RedisConfig::new(url).expect("url");
        let client = redis::Client::open(config.url()).expect("client");
        let conn = Conn::open(&client, &config, Purpose::Commands).expect("conn");
        let stream = format!("trim-check-{}", std::process::id());
        let run = |c: &redis::Cmd| {
            let (conn, c) = (conn.clone(), c.clone());
            async move { conn.query("test", &c).await.expect("command") }
        };
        let add = |n: usize| {
            let run = &run;
            let stream = stream.clone();
            async move {
                for i in 0..n {
                    run(redis::cmd("XADD")
                        .arg(&stream)
                        .arg("MAXLEN")
                        .arg(3)
                        .arg("*")
                        .arg("n")
                        .arg(i))
                    .await;
                }
            }
        };
        let read = |n: usize| {
            run(redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(n)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">"))
        };
        run(redis::cmd("DEL").arg(&stream)).await;
        run(redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg("g")
            .arg("0")
            .arg("MKSTREAM"))
        .await;
        add(2).await;
        read(2).await;
        assert_eq!(
            check_trimmed(&conn, &stream, "g", 0, true).await,
            (0, None),
            "nothing lost yet"
        );
        // 10 more, 3 kept: the 7 the group had not read are lost.
        add(10).await;
        let (reported, new) = check_trimmed(&conn, &stream, "g", 0, true).await;
        assert_eq!((reported, new), (7, Some(7)));
        assert_eq!(
            check_trimmed(&conn, &stream, "g", reported, true).await,
            (7, None),
            "reported once"
        );
        // Past the gap, then behind again: 2 unread + 5 new, 3 kept: 4 more lost.
        read(1).await;
        assert_eq!(check_trimmed(&conn, &stream, "g", reported, true).await, (7, None));
        add(5).await;
        assert_eq!(check_trimmed(&conn, &stream, "g", reported, true).await, (11, Some(4)));
        // A group that read everything has lost nothing.
        run(redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg("h").arg("$")).await;
        assert_eq!(check_trimmed(&conn, &stream, "h", 0, true).await.1, None);
        run(redis::cmd("DEL").arg(&stream)).await;
    }
}
