//! A membership in a consumer group on one stream: `impl Subscription` and
//! the read path.
//!
//! Start-up order: this consumer's own pending entries (its PEL, left by a
//! previous run under the same name), then, when `claim_msgs_older_than` is
//! set, entries other members left pending for longer than that (again every
//! few seconds, not only at start), then new entries ([`recovery`]).
//! Acknowledgements are buffered and sent in one `XACK` by `flush_acks`
//! ([`acks`]). A nacked entry stays in this consumer's PEL and is handed out
//! again from the core's [`DelayedQueue`], with its attempt one higher.
//! While this consumer holds entries, a background task keeps them fresh
//! (`XCLAIM ... JUSTID`, [`lease`]), so that other members do not claim
//! entries that a live consumer is still handling or waiting to retry;
//! entries of a consumer that died stop being refreshed and are claimed by
//! the others. After a connection trouble the pending list is read again
//! from its start, skipping the entries held (see `after_call`).

mod acks;
mod entries;
mod lease;
mod recovery;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::delayed::{deadline_after, DelayedQueue, Due};
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, SeekTarget, Subscription, TransportError, TransportErrorKind,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::entries::{entries_of, saved_entry, Fresh, Held, TagMap};
use crate::conn::Conn;
use crate::error::is_nogroup;
use crate::reader::ReadConn;
use crate::transport::set_id;
use crate::wire::EntryId;

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
    /// The nacked ones among `held`, until they are due again.
    retry: DelayedQueue<()>,
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

/// Now on tokio's clock, as the delay queue takes it.
fn clock() -> std::time::Instant {
    Instant::now().into_std()
}

fn closed_error() -> TransportError {
    TransportError::new(TransportErrorKind::Closed, "the redis subscription is closed")
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
        let refresh = lease::refresh_every(claim_idle);
        let claim_every = recovery::claim_every(claim_idle);
        let lease = Arc::new(Mutex::new(Vec::new()));
        let refresher = tokio::spawn(lease::refresh_held_entries(
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
            retry: DelayedQueue::new(),
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

    pub(super) fn what(&self, command: &str) -> String {
        format!("{command} {} {} {}", self.stream, self.group, self.consumer)
    }

    pub(super) fn bad_reply(&self, command: &str, e: String) -> TransportError {
        TransportError::other(format!("{}: unexpected reply: {e}", self.what(command)))
    }

    /// `XREADGROUP GROUP <group> <consumer> COUNT <room> [BLOCK <ms>] STREAMS <stream> <from>`.
    pub(super) fn xreadgroup(&self, room: usize, block_ms: Option<u64>, from: &[u8]) -> redis::Cmd {
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

    /// Due delayed entries first (in stream order), then the fresh ones.
    /// `due` were taken from the delay queue before the read; entries that
    /// fell due meanwhile fill the room left.
    fn hand_out(&mut self, max: usize, mut due: Vec<Due<()>>, fresh: Vec<Fresh>) -> Vec<Delivery> {
        let room = max.saturating_sub(fresh.len() + due.len());
        if room > 0 && !self.retry.is_empty() {
            due.extend(self.retry.pop_due(clock(), room));
        }
        due.sort_by_key(|d| self.held.get(&d.tag).map(|h| h.id));
        let mut out = Vec::with_capacity(fresh.len() + due.len());
        for d in due {
            if let Some(h) = self.held.get_mut(&d.tag) {
                h.attempt = d.attempt;
                let (raw, event) = saved_entry(&self.stream, h.id, &h.saved);
                out.push(Delivery {
                    raw,
                    tag: d.tag,
                    position: h.id.to_text(),
                    attempt: h.attempt,
                    event,
                });
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
                    saved: f.saved,
                },
            );
        }
        out
    }

    /// Due entries taken out for a `receive` that failed: due again at once,
    /// with the attempt they had.
    fn put_back(&mut self, due: Vec<Due<()>>) {
        let now = clock();
        for d in due {
            if let Some(h) = self.held.get(&d.tag) {
                self.retry.schedule_at(now, d.tag, h.attempt, Duration::ZERO, ());
            }
        }
    }

    /// One `receive` (see the module documentation).
    async fn receive_once(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        let max = max.max(1);
        self.batch = max;
        let deadline = after(wait);
        loop {
            let due = self.retry.pop_due(clock(), max);
            let fresh = match self.fetch(max, due.len(), deadline).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    self.put_back(due);
                    return Err(e);
                }
            };
            let out = self.hand_out(max, due, fresh);
            if !out.is_empty() || Instant::now() >= deadline {
                self.renew_lease();
                return Ok(out);
            }
        }
    }

    /// The entries to hand out besides `due` delayed ones: this consumer's
    /// pending ones while it recovers them, else claimed ones when a claim
    /// is due, else ones read ahead; and when none of these nor any delayed
    /// entry is there, new ones, waiting until `deadline`, the next delayed
    /// entry or the next claim.
    async fn fetch(&mut self, max: usize, due: usize, deadline: Instant) -> Result<Vec<Fresh>, TransportError> {
        let room = max.saturating_sub(due);
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
            if let Some(d) = self.retry.next_due() {
                until = until.min(Instant::from_std(d));
            }
            if self.claim_idle.is_some() {
                until = until.min(self.next_claim);
            }
            let block = until.saturating_duration_since(Instant::now());
            fresh = self.read_new(max, block).await?;
        }
        Ok(fresh)
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
            self.retry.cancel(tag);
            self.acks.push(h.id);
            self.lease_stale = true;
        }
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        if self.closed {
            return Err(closed_error());
        }
        if let Some(h) = self.held.get(&tag) {
            // One already waiting keeps its earlier schedule.
            self.retry.schedule_at(clock(), tag, h.attempt, delay, ());
        }
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        let result = self.send_all_acks().await;
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
