//! Options of the SQLite backend and the settings that set them.

use std::path::PathBuf;
use std::time::Duration;

use openedx_events::config::{ConfigError, Settings};

/// `EVENT_BUS_SQLITE_PATH`: the database file (default `event-bus.db` in the
/// working directory).
///
/// ```
/// assert_eq!(event_bus_sqlite::SETTING_PATH, "EVENT_BUS_SQLITE_PATH");
/// ```
pub const SETTING_PATH: &str = "EVENT_BUS_SQLITE_PATH";
/// `EVENT_BUS_SQLITE_LEASE_SECONDS`: how long a received message stays
/// reserved for its consumer without sign of life (default 30).
///
/// ```
/// assert_eq!(event_bus_sqlite::SETTING_LEASE_SECONDS, "EVENT_BUS_SQLITE_LEASE_SECONDS");
/// ```
pub const SETTING_LEASE_SECONDS: &str = "EVENT_BUS_SQLITE_LEASE_SECONDS";
/// `EVENT_BUS_SQLITE_MAX_MESSAGES_PER_TOPIC`: messages kept per topic
/// (default 100000; 0 = no limit).
///
/// ```
/// assert_eq!(event_bus_sqlite::SETTING_MAX_MESSAGES_PER_TOPIC, "EVENT_BUS_SQLITE_MAX_MESSAGES_PER_TOPIC");
/// ```
pub const SETTING_MAX_MESSAGES_PER_TOPIC: &str = "EVENT_BUS_SQLITE_MAX_MESSAGES_PER_TOPIC";
/// `EVENT_BUS_SQLITE_RETENTION_SECONDS`: the age after which messages are
/// removed (default 604800, 7 days; 0 = keep forever).
///
/// ```
/// assert_eq!(event_bus_sqlite::SETTING_RETENTION_SECONDS, "EVENT_BUS_SQLITE_RETENTION_SECONDS");
/// ```
pub const SETTING_RETENTION_SECONDS: &str = "EVENT_BUS_SQLITE_RETENTION_SECONDS";
/// `EVENT_BUS_SQLITE_BUSY_TIMEOUT_SECONDS`: how long a statement waits for
/// another process's write lock before failing (default 5).
///
/// ```
/// assert_eq!(event_bus_sqlite::SETTING_BUSY_TIMEOUT_SECONDS, "EVENT_BUS_SQLITE_BUSY_TIMEOUT_SECONDS");
/// ```
pub const SETTING_BUSY_TIMEOUT_SECONDS: &str = "EVENT_BUS_SQLITE_BUSY_TIMEOUT_SECONDS";
/// `EVENT_BUS_SQLITE_SYNCHRONOUS`: `normal` (default: a publish survives a
/// crash of the process) or `full` (it also survives a power loss).
///
/// ```
/// assert_eq!(event_bus_sqlite::SETTING_SYNCHRONOUS, "EVENT_BUS_SQLITE_SYNCHRONOUS");
/// ```
pub const SETTING_SYNCHRONOUS: &str = "EVENT_BUS_SQLITE_SYNCHRONOUS";

/// Every setting the backend reads (what
/// [`BackendFactory::settings`](openedx_events::bus::BackendFactory::settings) lists).
///
/// ```
/// assert!(event_bus_sqlite::SETTINGS.contains(&"EVENT_BUS_SQLITE_PATH"));
/// assert!(event_bus_sqlite::SETTINGS.iter().all(|s| s.starts_with("EVENT_BUS_SQLITE_")));
/// ```
pub const SETTINGS: &[&str] = &[
    SETTING_PATH,
    SETTING_LEASE_SECONDS,
    SETTING_MAX_MESSAGES_PER_TOPIC,
    SETTING_RETENTION_SECONDS,
    SETTING_BUSY_TIMEOUT_SECONDS,
    SETTING_SYNCHRONOUS,
];

/// The default database file, relative to the working directory.
///
/// ```
/// use openedx_events::config::Settings;
/// let (path, _) = event_bus_sqlite::SqliteOptions::from_settings(&Settings::new()).unwrap();
/// assert_eq!(path.to_str(), Some(event_bus_sqlite::DEFAULT_PATH));
/// ```
pub const DEFAULT_PATH: &str = "event-bus.db";

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
///
/// ```
/// use event_bus_sqlite::Synchronous;
/// assert_eq!(Synchronous::default(), Synchronous::Normal);
/// assert_eq!("full".parse::<Synchronous>(), Ok(Synchronous::Full));
/// assert!("sometimes".parse::<Synchronous>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// In WAL mode: a commit survives a crash of the process, and may be lost
    /// on a power loss or an operating system crash.
    #[default]
    Normal,
    /// Every commit is synced to disk: it survives a power loss too (slower).
    Full,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            other => Err(format!("expected \"normal\" or \"full\", found {other:?}")),
        }
    }
}

/// How a [`SqliteTransport`](crate::SqliteTransport) behaves. The defaults
/// suit a service; tests shorten the lease and the polling.
///
/// ```
/// use std::time::Duration;
/// use event_bus_sqlite::SqliteOptions;
/// let o = SqliteOptions::default();
/// assert_eq!(o.lease, Duration::from_secs(30));
/// assert_eq!(o.max_messages_per_topic, Some(100_000));
/// assert_eq!(o.retention, Some(Duration::from_secs(7 * 24 * 3600)));
/// let quick = SqliteOptions { lease: Duration::from_secs(2), ..SqliteOptions::default() };
/// assert_eq!(quick.max_message_bytes, 64 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteOptions {
    /// How long a received message stays reserved for its consumer while the
    /// consumer shows no sign of life (a receive, ack, nack or flush renews
    /// the lease of everything it holds). After that another member may take
    /// it. The fallback for hung processes and for owners whose death cannot
    /// be seen (another host, no `/proc`).
    pub lease: Duration,
    /// Keep at most this many messages per topic (`None`: no limit).
    /// Neither limit applies to topics holding dead letters.
    pub max_messages_per_topic: Option<u64>,
    /// Remove messages older than this (`None`: keep forever).
    pub retention: Option<Duration>,
    /// Trim at most this often...
    pub trim_interval: Duration,
    /// ...or after this many publishes by this transport, whichever comes first.
    pub trim_every_publishes: u64,
    /// How long a statement waits for another connection's write lock.
    pub busy_timeout: Duration,
    /// How often an idle receive checks the file for new messages (it is
    /// also woken at once by publishers in the same process).
    pub poll_interval: Duration,
    /// How often a receiving member looks for members of its group whose
    /// process died (besides when it subscribes).
    pub reclaim_interval: Duration,
    /// The largest message (value, key and headers) accepted.
    pub max_message_bytes: usize,
    /// Durability of commits.
    pub synchronous: Synchronous,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            lease: Duration::from_secs(30),
            max_messages_per_topic: Some(100_000),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            trim_interval: Duration::from_secs(5),
            trim_every_publishes: 1000,
            busy_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(10),
            reclaim_interval: Duration::from_secs(1),
            max_message_bytes: 64 * 1024 * 1024,
            synchronous: Synchronous::Normal,
        }
    }
}

impl SqliteOptions {
    /// The database path and options from settings (see [`SETTINGS`]);
    /// an invalid value is a [`ConfigError`] naming its key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use event_bus_sqlite::SqliteOptions;
    /// use openedx_events::config::Settings;
    /// let mut s = Settings::new();
    /// s.set("EVENT_BUS_SQLITE_PATH", "/var/lib/bus/events.db");
    /// s.set("EVENT_BUS_SQLITE_LEASE_SECONDS", "12.5");
    /// s.set("EVENT_BUS_SQLITE_RETENTION_SECONDS", 0);
    /// let (path, o) = SqliteOptions::from_settings(&s).unwrap();
    /// assert_eq!(path.to_str(), Some("/var/lib/bus/events.db"));
    /// assert_eq!(o.lease, Duration::from_millis(12_500));
    /// assert_eq!(o.retention, None);
    ///
    /// s.set("EVENT_BUS_SQLITE_MAX_MESSAGES_PER_TOPIC", "lots");
    /// let e = SqliteOptions::from_settings(&s).unwrap_err();
    /// assert_eq!(e.key, "EVENT_BUS_SQLITE_MAX_MESSAGES_PER_TOPIC");
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<(PathBuf, SqliteOptions), ConfigError> {
        let mut o = SqliteOptions::default();
        let path = match settings.string(SETTING_PATH)? {
            Some(p) if p.trim().is_empty() => return Err(ConfigError::new(SETTING_PATH, "is empty")),
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(DEFAULT_PATH),
        };
        if let Some(lease) = settings.seconds(SETTING_LEASE_SECONDS)? {
            if lease < Duration::from_millis(100) {
                return Err(ConfigError::new(SETTING_LEASE_SECONDS, "must be at least 0.1 seconds"));
            }
            o.lease = lease;
        }
        if let Some(n) = settings.u64(SETTING_MAX_MESSAGES_PER_TOPIC)? {
            o.max_messages_per_topic = (n > 0).then_some(n);
        }
        if let Some(age) = settings.seconds(SETTING_RETENTION_SECONDS)? {
            o.retention = (!age.is_zero()).then_some(age);
        }
        if let Some(t) = settings.seconds(SETTING_BUSY_TIMEOUT_SECONDS)? {
            o.busy_timeout = t;
        }
        if let Some(s) = settings.string(SETTING_SYNCHRONOUS)? {
            o.synchronous = s.parse().map_err(|e| ConfigError::new(SETTING_SYNCHRONOUS, e))?;
        }
        Ok((path, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_key() {
        let (path, o) = SqliteOptions::from_settings(&Settings::new()).unwrap();
        assert_eq!(path, PathBuf::from("event-bus.db"));
        assert_eq!(o, SqliteOptions::default());
        for (key, bad) in [
            (SETTING_PATH, serde_json::json!(3)),
            (SETTING_PATH, serde_json::json!("  ")),
            (SETTING_LEASE_SECONDS, serde_json::json!("0")),
            (SETTING_LEASE_SECONDS, serde_json::json!("-1")),
            (SETTING_MAX_MESSAGES_PER_TOPIC, serde_json::json!(-5)),
            (SETTING_RETENTION_SECONDS, serde_json::json!("forever")),
            (SETTING_BUSY_TIMEOUT_SECONDS, serde_json::json!(true)),
            (SETTING_SYNCHRONOUS, serde_json::json!("extra")),
        ] {
            let mut s = Settings::new();
            s.set(key, bad.clone());
            let e = SqliteOptions::from_settings(&s).expect_err(&format!("{key} = {bad}"));
            assert_eq!(e.key, key);
        }
        let mut s = Settings::new();
        s.set(SETTING_MAX_MESSAGES_PER_TOPIC, 0);
        s.set(SETTING_SYNCHRONOUS, "FULL");
        s.set(SETTING_BUSY_TIMEOUT_SECONDS, 1);
        let (_, o) = SqliteOptions::from_settings(&s).unwrap();
        assert_eq!(o.max_messages_per_topic, None);
        assert_eq!(o.synchronous, Synchronous::Full);
        assert_eq!(o.busy_timeout, Duration::from_secs(1));
    }
}
