//! [`SqliteTransport`]: the async face of the store (publish, browse, trim,
//! subscribe), and the helpers its subscriptions share with it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use async_trait::async_trait;
use openedx_events::bus::transport::{
    Capabilities, Delivery, GroupLag, OutgoingMessage, RawMessage, SubscribeRequest, Subscription, Transport,
    TransportError,
};
use openedx_events::bus::wire::cloudevent_message;
use rusqlite::Connection;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::extras;
use crate::schema;
use crate::settings::SqliteOptions;
use crate::store::{self, TrimReport};
use crate::subscription::SqliteSubscription;

/// Lock a mutex, taking it over if a holder panicked (the guarded state is
/// a connection or a plain value, valid at any point).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
pub(crate) async fn blocking<T, F>(path: &Path, conn: &Arc<Mutex<Connection>>, f: F) -> Result<T, TransportError>
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

/// What a transport and its subscriptions share.
pub(crate) struct Inner {
    /// The database file.
    pub(crate) path: PathBuf,
    pub(crate) options: SqliteOptions,
    /// Publishes and browses.
    conn: Arc<Mutex<Connection>>,
    /// Trims, lazily opened (so trimming never holds up a publish here).
    maintenance: Arc<Mutex<Option<Connection>>>,
    /// Wakes the receivers on this file in this process.
    pub(crate) notify: Arc<Notify>,
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
        Capabilities::durable_log(self.inner.options.max_message_bytes)
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.publish_raw(&cloudevent_message(message)).await
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
        let lease = extras::lease(request, self.inner.options.lease)?;
        Ok(Box::new(
            SqliteSubscription::open(self.inner.clone(), request, lease).await?,
        ))
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

    /// Per group, from the file: the messages after the group's position
    /// (never delivered to it) plus its deliveries not acknowledged yet
    /// (held by a member or waiting for redelivery), messages removed by
    /// retention not counted; `pending` is what members hold now (claimed,
    /// lease not expired). Partition `0`.
    async fn lag(&self, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
        let (owned_topic, group) = (topic.to_string(), group.map(str::to_string));
        let rows = blocking(&self.inner.path, &self.inner.conn, move |c| {
            store::lag(c, &owned_topic, group.as_deref())
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|b| GroupLag {
                topic: topic.to_string(),
                group: b.group,
                partition: "0".to_string(),
                lag: b.lag,
                pending: Some(b.held),
            })
            .collect())
    }
}
