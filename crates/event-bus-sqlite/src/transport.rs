//! [`SqliteTransport`] and its subscriptions: the async face of the store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, LeaseKeeper, OutgoingMessage, RawMessage, SeekTarget, SubscribeRequest,
    Subscription, Transport, TransportError,
};
use openedx_events::bus::wire;
use rusqlite::Connection;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::options::SqliteOptions;
use crate::schema;
use crate::store::{self, Member, TrimReport};

/// Buffered acks written at once when this many are waiting.
const ACK_BUFFER: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One `Notify` per database file in this process, so that a publish wakes
/// the receivers of every transport open on the same file at once (other
/// processes are noticed by polling `PRAGMA data_version`).
fn notifier(path: &Path) -> Arc<Notify> {
    static HUB: OnceLock<Mutex<HashMap<PathBuf, Weak<Notify>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut hub = lock(HUB.get_or_init(Default::default));
    hub.retain(|_, n| n.strong_count() > 0);
    if let Some(n) = hub.get(&key).and_then(Weak::upgrade) {
        return n;
    }
    let n = Arc::new(Notify::new());
    hub.insert(key, Arc::downgrade(&n));
    n
}

/// Run blocking SQLite work on the blocking pool, with this connection.
async fn blocking<T, F>(path: &Path, conn: &Arc<Mutex<Connection>>, f: F) -> Result<T, TransportError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let conn = conn.clone();
    match tokio::task::spawn_blocking(move || f(&mut lock(&conn))).await {
        Ok(r) => r.map_err(|e| e.into_transport(path)),
        Err(e) => Err(StoreError::Worker(e.to_string()).into_transport(path)),
    }
}

/// A connection to an event bus database file: publishes and opens
/// subscriptions. Cheap to clone; clones share the connection. Several
/// transports, in this process or others, may use the same file at once.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use event_bus_sqlite::{SqliteOptions, SqliteTransport};
/// use openedx_events::bus::transport::{RawMessage, StartPosition, SubscribeRequest, Transport};
/// let dir = tempfile::tempdir().unwrap();
/// let t = SqliteTransport::open(dir.path().join("bus.db"), SqliteOptions::default()).unwrap();
/// let position = t.publish_raw(&RawMessage { topic: "t".into(), value: b"hi".to_vec(), ..Default::default() })
///     .await.unwrap();
/// assert_eq!(position, "1");
/// let mut sub = t.subscribe(&SubscribeRequest { topic: "t".into(), group: "g".into(),
///     consumer_name: "c".into(), start: StartPosition::Earliest, extras: Default::default() }).await.unwrap();
/// let got = sub.receive(10, Duration::from_secs(1)).await.unwrap();
/// assert_eq!(got[0].raw.value, b"hi");
/// assert_eq!(got[0].attempt, 1);
/// sub.ack(got[0].tag).await.unwrap();
/// sub.close().await.unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct SqliteTransport {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    /// Publishes and browses.
    conn: Arc<Mutex<Connection>>,
    /// Trims, lazily opened (so trimming never holds up a publish here).
    maintenance: Arc<Mutex<Option<Connection>>>,
    notify: Arc<Notify>,
    trim_clock: Mutex<TrimClock>,
    trim_state: Arc<Mutex<TrimState>>,
}

/// The background trim: none, one running, or one running and another due
/// (a trim that comes due while one runs is run after it, never dropped).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TrimState {
    Idle,
    Running,
    RunningAndDue,
}

struct TrimClock {
    publishes: u64,
    last: Instant,
}

impl fmt::Debug for SqliteTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTransport")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl SqliteTransport {
    /// Open (creating if needed) the database file and its directory, switch
    /// it to WAL mode and create the tables. This blocks briefly: call it at
    /// start-up, or from `spawn_blocking`.
    ///
    /// ```
    /// use event_bus_sqlite::{SqliteOptions, SqliteTransport};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("nested/dir/bus.db");
    /// let t = SqliteTransport::open(&path, SqliteOptions::default()).unwrap();
    /// assert_eq!(t.path(), path);
    /// // A file that is not a database is refused.
    /// std::fs::write(dir.path().join("junk"), vec![7u8; 4096]).unwrap();
    /// assert!(SqliteTransport::open(dir.path().join("junk"), SqliteOptions::default()).is_err());
    /// ```
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, TransportError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Io {
                    context: format!("creating the directory {}", dir.display()),
                    source,
                })
                .map_err(|e| e.into_transport(&path))?;
        }
        let mut conn = schema::connect(&path, &options).map_err(|e| e.into_transport(&path))?;
        schema::init(&mut conn, &path).map_err(|e| e.into_transport(&path))?;
        Ok(SqliteTransport {
            inner: Arc::new(Inner {
                notify: notifier(&path),
                path,
                options,
                conn: Arc::new(Mutex::new(conn)),
                maintenance: Arc::new(Mutex::new(None)),
                trim_clock: Mutex::new(TrimClock {
                    publishes: 0,
                    last: Instant::now(),
                }),
                trim_state: Arc::new(Mutex::new(TrimState::Idle)),
            }),
        })
    }

    /// The database file.
    ///
    /// ```
    /// # use event_bus_sqlite::{SqliteOptions, SqliteTransport};
    /// let dir = tempfile::tempdir().unwrap();
    /// let t = SqliteTransport::open(dir.path().join("a.db"), SqliteOptions::default()).unwrap();
    /// assert!(t.path().ends_with("a.db"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options it was opened with.
    ///
    /// ```
    /// # use event_bus_sqlite::{SqliteOptions, SqliteTransport};
    /// let dir = tempfile::tempdir().unwrap();
    /// let o = SqliteOptions { max_messages_per_topic: Some(10), ..SqliteOptions::default() };
    /// let t = SqliteTransport::open(dir.path().join("a.db"), o.clone()).unwrap();
    /// assert_eq!(t.options(), &o);
    /// ```
    pub fn options(&self) -> &SqliteOptions {
        &self.inner.options
    }

    /// Apply the retention limits now, to every topic (publishers also do it
    /// by themselves, every [`SqliteOptions::trim_interval`] or
    /// [`SqliteOptions::trim_every_publishes`]).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use event_bus_sqlite::{SqliteOptions, SqliteTransport};
    /// use openedx_events::bus::transport::{RawMessage, Transport};
    /// let dir = tempfile::tempdir().unwrap();
    /// let o = SqliteOptions { max_messages_per_topic: Some(2), ..SqliteOptions::default() };
    /// let t = SqliteTransport::open(dir.path().join("bus.db"), o).unwrap();
    /// for i in 0..5u8 {
    ///     t.publish_raw(&RawMessage { topic: "t".into(), value: vec![i], ..Default::default() }).await.unwrap();
    /// }
    /// let report = t.trim().await.unwrap();
    /// assert_eq!(report.removed, 3);
    /// let left = t.browse("t", None, 10).await.unwrap();
    /// assert_eq!(left.iter().map(|d| d.raw.value[0]).collect::<Vec<_>>(), vec![3, 4]);
    /// # });
    /// ```
    pub async fn trim(&self) -> Result<TrimReport, TransportError> {
        let inner = self.inner.clone();
        let path = inner.path.clone();
        let options = inner.options.clone();
        let maintenance = inner.maintenance.clone();
        match tokio::task::spawn_blocking(move || trim_with(&path, &options, &maintenance)).await {
            Ok(r) => r.map_err(|e| e.into_transport(&inner.path)),
            Err(e) => Err(StoreError::Worker(e.to_string()).into_transport(&inner.path)),
        }
    }

    /// Count a publish; start a trim in the background when one is due.
    fn after_publish(&self) {
        let o = &self.inner.options;
        if o.max_messages_per_topic.is_none() && o.retention.is_none() {
            return;
        }
        {
            let mut clock = lock(&self.inner.trim_clock);
            clock.publishes += 1;
            if clock.publishes < o.trim_every_publishes.max(1) && clock.last.elapsed() < o.trim_interval {
                return;
            }
            clock.publishes = 0;
            clock.last = Instant::now();
        }
        {
            let mut state = lock(&self.inner.trim_state);
            match *state {
                TrimState::Idle => *state = TrimState::Running,
                TrimState::Running | TrimState::RunningAndDue => {
                    *state = TrimState::RunningAndDue;
                    return;
                }
            }
        }
        let path = self.inner.path.clone();
        let options = self.inner.options.clone();
        let maintenance = self.inner.maintenance.clone();
        let trim_state = self.inner.trim_state.clone();
        tokio::task::spawn_blocking(move || loop {
            if let Err(e) = trim_with(&path, &options, &maintenance) {
                tracing::warn!(error = %e.into_transport(&path), "could not apply the retention limits; will try again");
            }
            let mut state = lock(&trim_state);
            if *state == TrimState::RunningAndDue {
                *state = TrimState::Running;
            } else {
                *state = TrimState::Idle;
                return;
            }
        });
    }
}

fn trim_with(
    path: &Path,
    options: &SqliteOptions,
    maintenance: &Mutex<Option<Connection>>,
) -> Result<TrimReport, StoreError> {
    let mut slot = lock(maintenance);
    let conn = match slot.take() {
        Some(c) => c,
        None => schema::connect(path, options)?,
    };
    let conn = slot.insert(conn);
    store::trim(conn, options)
}

#[async_trait]
impl Transport for SqliteTransport {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            consumer_groups: true,
            ordered_per_key: true,
            persistent: true,
            replay_from_start: true,
            seek_time: true,
            max_message_bytes: self.inner.options.max_message_bytes,
        }
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.publish_raw(&wire::cloudevent_message(message)).await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        let size = message.value.len()
            + message.key.as_ref().map_or(0, Vec::len)
            + message.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let limit = self.inner.options.max_message_bytes;
        if size > limit {
            return Err(StoreError::Rejected(format!(
                "message of {size} bytes for topic {:?} is larger than the limit of {limit} bytes",
                message.topic
            ))
            .into_transport(&self.inner.path));
        }
        let raw = message.clone();
        let id = blocking(&self.inner.path, &self.inner.conn, move |c| store::publish(c, &raw)).await?;
        self.inner.notify.notify_waiters();
        self.after_publish();
        Ok(id.to_string())
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        let mut lease = self.inner.options.lease;
        for (key, value) in &request.extras {
            match (key.as_str(), value.as_f64()) {
                ("lease_seconds", Some(s)) if (0.1..=3.2e9).contains(&s) => lease = Duration::from_secs_f64(s),
                ("lease_seconds", _) => {
                    return Err(StoreError::Rejected(format!(
                        "extra lease_seconds must be a number of seconds from 0.1 to 3.2e9, found {value}"
                    ))
                    .into_transport(&self.inner.path))
                }
                _ => tracing::warn!(extra = %key, "the sqlite backend ignores this subscription extra"),
            }
        }
        let member = Arc::new(Member {
            topic: request.topic.clone(),
            group: request.group.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: request.consumer_name.clone(),
            lease,
        });
        let path = self.inner.path.clone();
        let options = self.inner.options.clone();
        let conn = match tokio::task::spawn_blocking(move || schema::connect(&path, &options)).await {
            Ok(r) => r.map_err(|e| e.into_transport(&self.inner.path))?,
            Err(e) => return Err(StoreError::Worker(e.to_string()).into_transport(&self.inner.path)),
        };
        let conn = Arc::new(Mutex::new(conn));
        let (m, start) = (member.clone(), request.start.clone());
        let data_version = blocking(&self.inner.path, &conn, move |c| {
            store::join(c, &m, &start)?;
            store::data_version(c)
        })
        .await?;
        let mut sub = SqliteSubscription {
            inner: self.inner.clone(),
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
        Ok(Box::new(sub))
    }

    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let after = match after {
            Some(p) => store::parse_position(p).map_err(|e| e.into_transport(&self.inner.path))?,
            None => 0,
        };
        let topic = topic.to_string();
        blocking(&self.inner.path, &self.inner.conn, move |c| {
            store::browse(c, &topic, after, limit)
        })
        .await
    }
}

/// A member of a consumer group, with its own connection.
struct SqliteSubscription {
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
