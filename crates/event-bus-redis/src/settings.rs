//! Settings of the Redis backend, and keeping the password out of logs.

use std::fmt;
use std::time::Duration;

use openedx_events::config::{ConfigError, Settings};

/// `EVENT_BUS_REDIS_CONNECTION_URL`: `redis://[user[:password]@]host[:port][/db]`
/// or `rediss://...` (TLS). Required.
pub const CONNECTION_URL: &str = "EVENT_BUS_REDIS_CONNECTION_URL";
/// `EVENT_BUS_REDIS_STREAM_MAX_LEN`: the approximate `MAXLEN` of every `XADD`.
pub const STREAM_MAX_LEN: &str = "EVENT_BUS_REDIS_STREAM_MAX_LEN";
/// `EVENT_BUS_REDIS_COMMAND_TIMEOUT`: seconds one Redis call may take (a
/// blocking read gets its block time on top).
pub const COMMAND_TIMEOUT: &str = "EVENT_BUS_REDIS_COMMAND_TIMEOUT";

/// The default `MAXLEN` (edx-event-bus-redis ADR 3: about 5 MB per stream).
pub const DEFAULT_STREAM_MAX_LEN: u64 = 10_000;
/// The default command timeout (edx-event-bus-redis wraps its pending-phase
/// calls in a 5-second alarm).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach Redis and how to write streams.
///
/// The URL is kept private: [`fmt::Debug`] and [`RedisConfig::masked_url`]
/// show it with the password masked.
///
/// ```
/// use std::time::Duration;
/// use event_bus_redis::RedisConfig;
/// use openedx_events::config::Settings;
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_REDIS_CONNECTION_URL", "redis://app:s3cret@localhost:6379/2");
/// s.set("EVENT_BUS_REDIS_STREAM_MAX_LEN", 500);
/// let c = RedisConfig::from_settings(&s).unwrap();
/// assert_eq!(c.stream_max_len, 500);
/// assert_eq!(c.command_timeout, Duration::from_secs(5));
/// assert_eq!(c.masked_url(), "redis://app:********@localhost:6379/2");
/// assert!(!format!("{c:?}").contains("s3cret"));
///
/// let e = RedisConfig::from_settings(&Settings::new()).unwrap_err();
/// assert_eq!(e.key, "EVENT_BUS_REDIS_CONNECTION_URL");
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    /// Approximate `MAXLEN` of every stream written (`XADD ... MAXLEN ~ n`).
    pub stream_max_len: u64,
    /// Time limit of every Redis call (blocking reads get their block time on
    /// top); a call that takes longer fails with a timeout, never hangs.
    pub command_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.masked_url())
            .field("stream_max_len", &self.stream_max_len)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// A configuration for `url` with the default `MAXLEN` and timeout. The
    /// URL is checked (scheme, host, port, database number); an invalid one
    /// is a [`ConfigError`] for `EVENT_BUS_REDIS_CONNECTION_URL` that shows
    /// the URL masked.
    ///
    /// ```
    /// use event_bus_redis::RedisConfig;
    /// assert!(RedisConfig::new("rediss://default:pw@redis.example.org:6380/0").is_ok());
    /// let e = RedisConfig::new("http://user:pw@localhost").unwrap_err();
    /// assert!(!e.message.contains("pw"), "{e}");
    /// ```
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::new(
                CONNECTION_URL,
                "is required but not set (for example redis://localhost:6379/0)",
            ));
        }
        if let Err(e) = redis::Client::open(trimmed) {
            let secret = Redactor::from_url(trimmed);
            return Err(ConfigError::new(
                CONNECTION_URL,
                secret
                    .scrub(&format!(
                        "invalid Redis URL {}: {e} (expected redis://[user[:password]@]host[:port][/db] or rediss://...)",
                        mask_url(trimmed)
                    ))
                    .into_owned(),
            ));
        }
        Ok(RedisConfig {
            url: trimmed.to_string(),
            stream_max_len: DEFAULT_STREAM_MAX_LEN,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        })
    }

    /// Read `EVENT_BUS_REDIS_CONNECTION_URL` (required),
    /// `EVENT_BUS_REDIS_STREAM_MAX_LEN` (default 10000) and
    /// `EVENT_BUS_REDIS_COMMAND_TIMEOUT` (seconds, default 5). Errors name the
    /// offending key.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let url = settings.string(CONNECTION_URL)?.unwrap_or_default();
        let mut config = RedisConfig::new(url)?;
        if let Some(n) = settings.u64(STREAM_MAX_LEN)? {
            if n == 0 {
                return Err(ConfigError::new(STREAM_MAX_LEN, "must be at least 1"));
            }
            config.stream_max_len = n;
        }
        if let Some(t) = settings.seconds(COMMAND_TIMEOUT)? {
            if t.is_zero() {
                return Err(ConfigError::new(COMMAND_TIMEOUT, "must be more than 0 seconds"));
            }
            config.command_timeout = t;
        }
        Ok(config)
    }

    /// The URL with its password masked (for logs and errors).
    pub fn masked_url(&self) -> String {
        mask_url(&self.url)
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn redactor(&self) -> Redactor {
        Redactor::from_url(&self.url)
    }
}

/// The credentials of a Redis URL, scrubbed from any text before it is
/// logged or returned: the core's redactor (one masking style for every
/// backend).
pub(crate) use openedx_events::config::secret::Redactor;

/// `url` with its password (and a lone user-info part, which some clients
/// read as a password, and a `password=` query parameter) masked: the core's
/// [`redact_url`](openedx_events::config::secret::redact_url).
///
/// ```
/// use event_bus_redis::settings::mask_url;
/// assert_eq!(mask_url("redis://u:p@h:6379/0"), "redis://u:********@h:6379/0");
/// assert_eq!(mask_url("redis://h/0?password=p&protocol=resp3"), "redis://h/0?password=********&protocol=resp3");
/// ```
pub fn mask_url(url: &str) -> String {
    openedx_events::config::secret::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_name_their_key() {
        let mut s = Settings::new();
        s.set(CONNECTION_URL, "");
        assert_eq!(RedisConfig::from_settings(&s).unwrap_err().key, CONNECTION_URL);
        s.set(CONNECTION_URL, 5);
        assert_eq!(RedisConfig::from_settings(&s).unwrap_err().key, CONNECTION_URL);
        s.set(CONNECTION_URL, "redis://u:hunter2@localhost:notaport/0");
        let e = RedisConfig::from_settings(&s).unwrap_err();
        assert_eq!(e.key, CONNECTION_URL);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        s.set(CONNECTION_URL, "redis://localhost:6379/0");
        s.set(STREAM_MAX_LEN, 0);
        assert_eq!(RedisConfig::from_settings(&s).unwrap_err().key, STREAM_MAX_LEN);
        s.set(STREAM_MAX_LEN, "many");
        assert_eq!(RedisConfig::from_settings(&s).unwrap_err().key, STREAM_MAX_LEN);
        s.set(STREAM_MAX_LEN, "20000");
        s.set(COMMAND_TIMEOUT, 0);
        assert_eq!(RedisConfig::from_settings(&s).unwrap_err().key, COMMAND_TIMEOUT);
        s.set(COMMAND_TIMEOUT, "0.25");
        let c = RedisConfig::from_settings(&s).unwrap();
        assert_eq!(c.stream_max_len, 20_000);
        assert_eq!(c.command_timeout, Duration::from_millis(250));
    }

    #[test]
    fn secrets_are_scrubbed() {
        let s = Redactor::from_url("rediss://user:pa55word@host:6380/1");
        assert_eq!(s.scrub("auth pa55word failed"), "auth ******** failed");
        let s = Redactor::from_url("redis://host/0?password=qwerty");
        assert_eq!(s.scrub("qwerty"), "********");
        let s = Redactor::from_url("redis://host/0");
        assert_eq!(s.scrub("nothing"), "nothing");
        assert_eq!(mask_url("not a url with pw"), "********");
        assert_eq!(
            mask_url("redis://u:p/w@h/0?a=b#insecure"),
            "redis://u:********@h/0?a=b#insecure"
        );
    }
}
