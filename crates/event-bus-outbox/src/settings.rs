//! `EVENT_BUS_OUTBOX_*`: read and checked at start-up; errors name the key,
//! the database password is never shown.

use std::time::Duration;

use openedx_events::config::{redact_url, ConfigError, Secret, Settings};

/// `EVENT_BUS_OUTBOX_DATABASE_URL`: `postgres://`, `postgresql://`,
/// `mysql://` or `mariadb://`.
pub const DATABASE_URL: &str = "EVENT_BUS_OUTBOX_DATABASE_URL";
/// `EVENT_BUS_OUTBOX_TABLE`: the outbox table (an identifier).
pub const TABLE: &str = "EVENT_BUS_OUTBOX_TABLE";
/// `EVENT_BUS_OUTBOX_BATCH_SIZE`: rows a relay claims at most per round.
pub const BATCH_SIZE: &str = "EVENT_BUS_OUTBOX_BATCH_SIZE";
/// `EVENT_BUS_OUTBOX_POLL_INTERVAL_SECONDS`: the wait when nothing is pending.
pub const POLL_INTERVAL: &str = "EVENT_BUS_OUTBOX_POLL_INTERVAL_SECONDS";
/// `EVENT_BUS_OUTBOX_RETENTION_SECONDS`: how long sent rows are kept.
pub const RETENTION: &str = "EVENT_BUS_OUTBOX_RETENTION_SECONDS";
/// `EVENT_BUS_OUTBOX_BACKOFF_INITIAL_SECONDS`: the first wait after a failure.
pub const BACKOFF_INITIAL: &str = "EVENT_BUS_OUTBOX_BACKOFF_INITIAL_SECONDS";
/// `EVENT_BUS_OUTBOX_BACKOFF_MAX_SECONDS`: the longest wait after failures.
pub const BACKOFF_MAX: &str = "EVENT_BUS_OUTBOX_BACKOFF_MAX_SECONDS";

/// Every setting this crate reads (the CLI lists them as known settings).
pub const SETTINGS: &[&str] = &[
    DATABASE_URL,
    TABLE,
    BATCH_SIZE,
    POLL_INTERVAL,
    RETENTION,
    BACKOFF_INITIAL,
    BACKOFF_MAX,
];

/// The default table name.
pub const DEFAULT_TABLE: &str = "event_bus_outbox";
/// The longest table name: the partition table and index names add up to
/// 20 characters, and PostgreSQL names stop at 63.
pub const MAX_TABLE_LEN: usize = 40;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    MySql,
}

/// The outbox settings, checked.
///
/// ```
/// use openedx_events::config::Settings;
/// use event_bus_outbox::settings::{DatabaseKind, OutboxSettings};
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_OUTBOX_DATABASE_URL", "mysql://app:hunter2@db/lms");
/// s.set("EVENT_BUS_OUTBOX_BATCH_SIZE", "500");
/// let o = OutboxSettings::from_settings(&s).unwrap();
/// assert_eq!(o.kind, DatabaseKind::MySql);
/// assert_eq!(o.table, "event_bus_outbox");
/// assert_eq!(o.batch_size, 500);
/// assert!(!format!("{o:?}").contains("hunter2"));
/// s.set("EVENT_BUS_OUTBOX_TABLE", "outbox; DROP TABLE users");
/// assert_eq!(OutboxSettings::from_settings(&s).unwrap_err().key, "EVENT_BUS_OUTBOX_TABLE");
/// ```
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// The database URL (masked by `Debug`).
    pub database_url: Secret,
    /// The database it names.
    pub kind: DatabaseKind,
    /// The outbox table.
    pub table: String,
    /// Rows claimed at most per round (default 100).
    pub batch_size: usize,
    /// The wait when nothing is pending (default 1 s).
    pub poll_interval: Duration,
    /// How long sent rows are kept before they are purged (default 7 days;
    /// 0 purges them on the next purge round).
    pub retention: Duration,
    /// The first wait after a failure (default 0.5 s); it doubles on each
    /// failure in a row.
    pub backoff_initial: Duration,
    /// The longest wait after failures (default 30 s).
    pub backoff_max: Duration,
}

impl OutboxSettings {
    /// Settings for a database URL, with every default.
    pub fn new(database_url: &str) -> Result<Self, ConfigError> {
        let kind = database_kind(database_url)?;
        Ok(OutboxSettings {
            database_url: Secret::new(database_url.trim()),
            kind,
            table: DEFAULT_TABLE.to_string(),
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        })
    }

    /// Read the `EVENT_BUS_OUTBOX_*` settings (see the crate docs).
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let mut o = OutboxSettings::new(&settings.required_string(DATABASE_URL)?)?;
        if let Some(table) = settings.string(TABLE)? {
            check_table_name(&table).map_err(|m| ConfigError::new(TABLE, m))?;
            o.table = table;
        }
        if let Some(n) = settings.u64(BATCH_SIZE)? {
            if !(1..=10_000).contains(&n) {
                return Err(ConfigError::new(BATCH_SIZE, format!("{n} is not between 1 and 10000")));
            }
            o.batch_size = usize::try_from(n).map_err(|e| ConfigError::new(BATCH_SIZE, e.to_string()))?;
        }
        if let Some(d) = settings.seconds(POLL_INTERVAL)? {
            if d.is_zero() {
                return Err(ConfigError::new(POLL_INTERVAL, "must be more than 0 seconds"));
            }
            o.poll_interval = d;
        }
        if let Some(d) = settings.seconds(RETENTION)? {
            o.retention = d;
        }
        if let Some(d) = settings.seconds(BACKOFF_INITIAL)? {
            if d.is_zero() {
                return Err(ConfigError::new(BACKOFF_INITIAL, "must be more than 0 seconds"));
            }
            o.backoff_initial = d;
        }
        if let Some(d) = settings.seconds(BACKOFF_MAX)? {
            o.backoff_max = d;
        }
        if o.backoff_max < o.backoff_initial {
            return Err(ConfigError::new(
                BACKOFF_MAX,
                format!(
                    "{:?} is shorter than {BACKOFF_INITIAL} ({:?})",
                    o.backoff_max, o.backoff_initial
                ),
            ));
        }
        Ok(o)
    }

    /// The URL with its password masked, for logs and errors.
    pub fn masked_url(&self) -> String {
        redact_url(self.database_url.expose())
    }
}

/// The database a URL names, or an error naming [`DATABASE_URL`] (the URL
/// shown masked).
fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    let url = url.trim();
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(DatabaseKind::Postgres),
        Some("mysql" | "mariadb") => Ok(DatabaseKind::MySql),
        _ => Err(ConfigError::new(
            DATABASE_URL,
            format!(
                "{} is not a postgres://, postgresql://, mysql:// or mariadb:// URL",
                redact_url(url)
            ),
        )),
    }
}

/// Check a table name: an unquoted SQL identifier (letters, digits and `_`,
/// not starting with a digit), at most [`MAX_TABLE_LEN`] characters. It is
/// written into SQL text, so nothing else is accepted.
///
/// ```
/// use event_bus_outbox::settings::check_table_name;
/// assert!(check_table_name("event_bus_outbox").is_ok());
/// assert!(check_table_name("1outbox").is_err());
/// assert!(check_table_name("out-box").is_err());
/// assert!(check_table_name("").is_err());
/// ```
pub fn check_table_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("must not be empty".into());
    };
    if name.len() > MAX_TABLE_LEN {
        return Err(format!("{name:?} is longer than {MAX_TABLE_LEN} characters"));
    }
    let ok_first = first.is_ascii_alphabetic() || first == '_';
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{name:?} is not an identifier (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_key_and_mask_the_password() {
        let mut s = Settings::new();
        assert_eq!(OutboxSettings::from_settings(&s).unwrap_err().key, DATABASE_URL);
        s.set(DATABASE_URL, "redis://u:hunter2@h/0");
        let e = OutboxSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, DATABASE_URL);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        s.set(DATABASE_URL, "postgresql://u:hunter2@h/db");
        let o = OutboxSettings::from_settings(&s).unwrap();
        assert_eq!(o.kind, DatabaseKind::Postgres);
        assert_eq!(o.masked_url(), "postgresql://u:********@h/db");
        for (key, bad) in [
            (BATCH_SIZE, "0"),
            (BATCH_SIZE, "lots"),
            (POLL_INTERVAL, "0"),
            (RETENTION, "-1"),
            (BACKOFF_INITIAL, "0"),
            (BACKOFF_MAX, "0.1"),
            (TABLE, "a.b"),
        ] {
            let mut s = s.clone();
            s.set(key, bad);
            assert_eq!(OutboxSettings::from_settings(&s).unwrap_err().key, key, "{key}={bad}");
        }
        s.set(RETENTION, "0");
        s.set(BACKOFF_MAX, "2");
        let o = OutboxSettings::from_settings(&s).unwrap();
        assert!(o.retention.is_zero());
        assert_eq!(o.backoff_max, Duration::from_secs(2));
    }
}
