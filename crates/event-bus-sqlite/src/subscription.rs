//! [`SqliteSubscription`]: a member of a consumer group with its own
//! connection; receive claims from the store, acks are buffered, nacks and
//! close hand messages back, and a lease keeper renews what it holds.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::{
    Delivery, DeliveryTag, LeaseKeeper, SeekTarget, SubscribeRequest, Subscription, TransportError,
};
use rusqlite::Connection;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::schema;
use crate::store::{self, Member};
use crate::transport::{blocking, lock, Inner};

/// Buffered acks written at once when this many are waiting.
const ACK_BUFFER: usize = 256;

/// A member of a consumer group, with its own connection.
pub(crate) struct SqliteSubscription {
    inner: Arc<Inner>,
    conn: Arc<Mutex<Connection>>,
    member: Arc<Member>,
    /// Claimed messages not yet returned (a receive whose future was dropped
    /// leaves them here for the next one: they are held by this member).
    stash: Arc<Mutex<VecDeque<Delivery>>>,
    /// Acknowledged message ids not yet written.
    acks: Vec<i64>,
    /// When this member last wrote (renewing its leases).
    last_write: Instant,
    last_reclaim: Instant,
    /// `PRAGMA data_version` after this member's last look.
    data_version: i64,
    closed: bool,
}

impl SqliteSubscription {
    /// Join the group of `request` as a new member holding messages for
    /// `lease`, on a connection of its own, and take back what dead members
    /// of the group hold.
    pub(crate) async fn open(
        inner: Arc<Inner>,
        request: &SubscribeRequest,
        lease: Duration,
    ) -> Result<Self, TransportError> {
        let member = Arc::new(Member {
            topic: request.topic.clone(),
            group: request.group.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: request.consumer_name.clone(),
            lease,
        });
        let path = inner.path.clone();
        let options = inner.options.clone();
        let conn = match tokio::task::spawn_blocking(move || schema::connect(&path, &options)).await {
            Ok(r) => r.map_err(|e| e.into_transport(&inner.path))?,
            Err(e) => return Err(StoreError::Worker(e.to_string()).into_transport(&inner.path)),
        };
        let conn = Arc::new(Mutex::new(conn));
        let (m, start) = (member.clone(), request.start.clone());
        let data_version = blocking(&inner.path, &conn, move |c| {
            store::join(c, &m, &start)?;
            store::data_version(c)
        })
        .await?;
        let mut sub = SqliteSubscription {
            inner,
            conn,
            member,
            stash: Arc::new(Mutex::new(VecDeque::new())),
            acks: Vec::new(),
            last_write: Instant::now(),
            last_reclaim: Instant::now(),
            data_version,
            closed: false,
        };
        sub.reclaim_dead().await?;
        Ok(sub)
    }

    fn closed_error(&self) -> TransportError {
        StoreError::Closed(format!(
            "the subscription to topic {:?} in group {:?} is closed",
            self.member.topic, self.member.group
        ))
        .into_transport(&self.inner.path)
    }

    fn renewal_due(&self) -> bool {
        self.last_write.elapsed() >= self.member.lease / 3
    }

    fn take_stash(&self, max: usize) -> Vec<Delivery> {
        let mut stash = lock(&self.stash);
        let n = max.min(stash.len());
        stash.drain(..n).collect()
    }

    fn tag_id(&self, tag: DeliveryTag) -> Result<i64, TransportError> {
        i64::try_from(tag.0).map_err(|_| {
            StoreError::Rejected(format!("delivery tag {} is not one of this backend's", tag.0))
                .into_transport(&self.inner.path)
        })
    }

    /// Take back what members of this group whose process died hold.
    async fn reclaim_dead(&mut self) -> Result<(), TransportError> {
        self.last_reclaim = Instant::now();
        let m = self.member.clone();
        let reclaimed = blocking(&self.inner.path, &self.conn, move |c| store::reclaim_dead(c, &m)).await?;
        for (owner, count) in &reclaimed {
            tracing::warn!(topic = %self.member.topic, group = %self.member.group, owner = %owner.id,
                pid = owner.pid.unwrap_or_default(), count,
                "a member of the group died holding messages; they are available again");
        }
        if !reclaimed.is_empty() {
            self.inner.notify.notify_waiters();
        }
        Ok(())
    }

    /// Claim into the stash; returns how many and when something is due.
    async fn claim(&mut self, max: usize) -> Result<(usize, Option<i64>), TransportError> {
        let m = self.member.clone();
        let acks = self.acks.clone();
        let renew = self.renewal_due();
        let stash = self.stash.clone();
        let (count, next_due, wrote, version) = blocking(&self.inner.path, &self.conn, move |c| {
            let claim = store::claim(c, &m, max, &acks, renew)?;
            let version = store::data_version(c)?;
            let count = claim.deliveries.len();
            lock(&stash).extend(claim.deliveries);
            Ok((count, claim.next_due, claim.wrote, version))
        })
        .await?;
        self.acks.clear();
        if wrote {
            self.last_write = Instant::now();
        }
        self.data_version = version;
        Ok((count, next_due))
    }

    /// Sleep until `until`, a wake-up from this process, or a commit by
    /// another connection, whichever comes first.
    async fn idle(&mut self, until: Instant, mut notified: Pin<&mut Notified<'_>>) -> Result<(), TransportError> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let step = self.inner.options.poll_interval.min(until - now);
            tokio::select! {
                _ = notified.as_mut() => return Ok(()),
                _ = tokio::time::sleep(step) => {}
            }
            let version = blocking(&self.inner.path, &self.conn, |c| store::data_version(c)).await?;
            if version != self.data_version {
                return Ok(());
            }
        }
    }

    async fn write_acks(&mut self) -> Result<(), TransportError> {
        let m = self.member.clone();
        let acks = self.acks.clone();
        blocking(&self.inner.path, &self.conn, move |c| store::flush(c, &m, &acks)).await?;
        self.acks.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// Leave the group now, blocking (for `Drop` without a runtime).
    fn release_blocking(conn: &Mutex<Connection>, member: &Member, acks: &[i64]) {
        match store::release(&mut lock(conn), member, acks) {
            Ok(n) if n > 0 => tracing::debug!(topic = %member.topic, group = %member.group, released = n,
                "subscription dropped; its messages are available again"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, topic = %member.topic, group = %member.group,
                "could not release the messages of a dropped subscription; other members get them after the lease"),
        }
    }
}

/// Renews the leases of a member from the loop's keeping task (a receiver
/// may hold the loop for longer than the lease).
struct SqliteLeaseKeeper {
    inner: Arc<Inner>,
    conn: Arc<Mutex<Connection>>,
    member: Arc<Member>,
}

#[async_trait]
impl LeaseKeeper for SqliteLeaseKeeper {
    async fn keep_alive(&self) -> Result<(), TransportError> {
        let m = self.member.clone();
        // Writing (even no acks) renews every lease this member holds.
        blocking(&self.inner.path, &self.conn, move |c| store::flush(c, &m, &[])).await
    }

    fn interval(&self) -> Duration {
        self.member.lease / 4
    }
}

#[async_trait]
impl Subscription for SqliteSubscription {
    fn lease_keeper(&self) -> Option<Arc<dyn LeaseKeeper>> {
        Some(Arc::new(SqliteLeaseKeeper {
            inner: self.inner.clone(),
            conn: self.conn.clone(),
            member: self.member.clone(),
        }))
    }

    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, TransportError> {
        if self.closed {
            return Err(self.closed_error());
        }
        let max = max.max(1);
        let deadline = Instant::from_std(openedx_events::bus::delayed::deadline_after(
            std::time::Instant::now(),
            wait,
        ));
        let notify = self.inner.notify.clone();
        loop {
            let ready = self.take_stash(max);
            if !ready.is_empty() {
                return Ok(ready);
            }
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.last_reclaim.elapsed() >= self.inner.options.reclaim_interval {
                self.reclaim_dead().await?;
            }
            let (count, next_due) = self.claim(max).await?;
            if count > 0 {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = match next_due {
                Some(due) => {
                    let wait = u64::try_from(due.saturating_sub(store::now_micros())).unwrap_or(0);
                    deadline.min(now + Duration::from_micros(wait))
                }
                None => deadline,
            };
            self.idle(until, notified).await?;
        }
    }

    async fn ack(&mut self, tag: DeliveryTag) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let id = self.tag_id(tag)?;
        self.acks.push(id);
        if self.acks.len() >= ACK_BUFFER || self.renewal_due() {
            self.write_acks().await?;
        }
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, delay: Duration) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let id = self.tag_id(tag)?;
        self.acks.retain(|a| *a != id);
        let m = self.member.clone();
        let acks = self.acks.clone();
        blocking(&self.inner.path, &self.conn, move |c| {
            store::nack(c, &m, id, delay, &acks)
        })
        .await?;
        self.acks.clear();
        self.last_write = Instant::now();
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<(), TransportError> {
        if self.closed || (self.acks.is_empty() && !self.renewal_due()) {
            return Ok(());
        }
        self.write_acks().await
    }

    async fn keep_alive(&mut self) -> Result<(), TransportError> {
        // Writing (even no acks) renews every lease this member holds.
        if self.closed || !self.renewal_due() {
            return Ok(());
        }
        self.write_acks().await
    }

    async fn seek(&mut self, target: &SeekTarget) -> Result<(), TransportError> {
        if self.closed {
            return Err(self.closed_error());
        }
        let m = self.member.clone();
        let t = target.clone();
        let position = blocking(&self.inner.path, &self.conn, move |c| store::seek(c, &m, &t)).await?;
        tracing::info!(topic = %self.member.topic, group = %self.member.group, target = ?target, position,
            "consumer group moved");
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        lock(&self.stash).clear();
        let m = self.member.clone();
        let acks = std::mem::take(&mut self.acks);
        let released = blocking(&self.inner.path, &self.conn, move |c| store::release(c, &m, &acks)).await?;
        if released > 0 {
            tracing::debug!(topic = %self.member.topic, group = %self.member.group, released,
                "subscription closed; its unacknowledged messages are available again");
        }
        self.inner.notify.notify_waiters();
        Ok(())
    }
}

impl Drop for SqliteSubscription {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let conn = self.conn.clone();
        let member = self.member.clone();
        let acks = std::mem::take(&mut self.acks);
        let notify = self.inner.notify.clone();
        let work = move || {
            Self::release_blocking(&conn, &member, &acks);
            notify.notify_waiters();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}
