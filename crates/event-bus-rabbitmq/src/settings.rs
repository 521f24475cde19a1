//! The backend's settings (`EVENT_BUS_RABBITMQ_*`), read and checked once at
//! start-up; every error names its key, the password never shows.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use openedx_events::config::{redact_url, ConfigError, Redactor, Secret, Settings};

/// `EVENT_BUS_RABBITMQ_URL`: `amqp://user:password@host:5672/vhost` or `amqps://…`.
pub const URL: &str = "EVENT_BUS_RABBITMQ_URL";
/// `EVENT_BUS_RABBITMQ_USER`: the user, when not in the URL.
pub const USER: &str = "EVENT_BUS_RABBITMQ_USER";
/// `EVENT_BUS_RABBITMQ_PASSWORD`: the password, when not in the URL (never logged).
pub const PASSWORD: &str = "EVENT_BUS_RABBITMQ_PASSWORD";
/// `EVENT_BUS_RABBITMQ_VHOST`: the virtual host, when the URL has no path.
pub const VHOST: &str = "EVENT_BUS_RABBITMQ_VHOST";
/// `EVENT_BUS_RABBITMQ_TLS_CA_FILE`: PEM CA certificates for `amqps://`.
pub const TLS_CA_FILE: &str = "EVENT_BUS_RABBITMQ_TLS_CA_FILE";
/// `EVENT_BUS_RABBITMQ_TLS_CERT_FILE`: PEM client certificate (with the key file).
pub const TLS_CERT_FILE: &str = "EVENT_BUS_RABBITMQ_TLS_CERT_FILE";
/// `EVENT_BUS_RABBITMQ_TLS_KEY_FILE`: PEM (PKCS#8) client key (with the certificate file).
pub const TLS_KEY_FILE: &str = "EVENT_BUS_RABBITMQ_TLS_KEY_FILE";
/// `EVENT_BUS_RABBITMQ_PREFETCH`: unacknowledged messages a member may hold (default 100).
pub const PREFETCH: &str = "EVENT_BUS_RABBITMQ_PREFETCH";
/// `EVENT_BUS_RABBITMQ_RETRY_DELAYS`: the retry-delay buckets, seconds, ascending, comma-separated.
pub const RETRY_DELAYS: &str = "EVENT_BUS_RABBITMQ_RETRY_DELAYS";
/// `EVENT_BUS_RABBITMQ_OPERATION_TIMEOUT`: seconds any broker call may take (default 10).
pub const OPERATION_TIMEOUT: &str = "EVENT_BUS_RABBITMQ_OPERATION_TIMEOUT";
/// `EVENT_BUS_RABBITMQ_HEARTBEAT`: AMQP heartbeat, seconds (default 20; 0 turns it off).
pub const HEARTBEAT: &str = "EVENT_BUS_RABBITMQ_HEARTBEAT";
/// `EVENT_BUS_RABBITMQ_MAX_MESSAGE_BYTES`: largest message accepted (default 16 MiB).
pub const MAX_MESSAGE_BYTES: &str = "EVENT_BUS_RABBITMQ_MAX_MESSAGE_BYTES";

/// Every setting the backend reads.
pub const ALL: &[&str] = &[
    URL,
    USER,
    PASSWORD,
    VHOST,
    TLS_CA_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    PREFETCH,
    RETRY_DELAYS,
    OPERATION_TIMEOUT,
    HEARTBEAT,
    MAX_MESSAGE_BYTES,
];

/// The URL used when none is set: the local broker's guest account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// 16 MiB (RabbitMQ 3.10 accepts up to 128 MiB by default).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The default prefetch.
pub const DEFAULT_PREFETCH: u16 = 100;

/// The default retry-delay buckets, in milliseconds: a delay is rounded up
/// to the next one (21 buckets, so at most 21 retry queues per group).
pub const DEFAULT_RETRY_DELAYS_MS: &[u64] = &[
    100,
    250,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    1_200_000,
    1_800_000,
    3_600_000,
    7_200_000,
    14_400_000,
    43_200_000,
    86_400_000,
    604_800_000,
];

/// The backend's configuration.
///
/// ```
/// use event_bus_rabbitmq::RabbitMqSettings;
/// use openedx_events::config::Settings;
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_RABBITMQ_URL", "amqp://app:hunter2@mq:5672/%2f");
/// let r = RabbitMqSettings::from_settings(&s).unwrap();
/// assert_eq!(r.prefetch, 100);
/// assert!(!format!("{r:?}").contains("hunter2"), "the password is never printed");
///
/// s.set("EVENT_BUS_RABBITMQ_PASSWORD", "other");
/// let e = RabbitMqSettings::from_settings(&s).unwrap_err();
/// assert_eq!(e.key, "EVENT_BUS_RABBITMQ_PASSWORD");
/// assert!(e.message.contains("EVENT_BUS_RABBITMQ_URL"), "{e}");
/// ```
#[derive(Clone)]
pub struct RabbitMqSettings {
    /// The URL as given (it may hold the password: show it with
    /// [`RabbitMqSettings::redacted_url`]).
    pub url: String,
    /// The user given apart from the URL.
    pub user: Option<String>,
    /// The password given apart from the URL.
    pub password: Option<Secret>,
    /// The virtual host given apart from the URL.
    pub vhost: Option<String>,
    /// CA certificates (PEM) for `amqps://`.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for `amqps://`.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Messages a member may hold unacknowledged.
    pub prefetch: u16,
    /// Retry-delay buckets, milliseconds, ascending.
    pub retry_delays_ms: Vec<u64>,
    /// The limit on every broker call.
    pub operation_timeout: Duration,
    /// AMQP heartbeat in seconds (0: none).
    pub heartbeat: u16,
    /// Largest message (key, headers and body) accepted.
    pub max_message_bytes: usize,
}

impl fmt::Debug for RabbitMqSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqSettings")
            .field("url", &self.redacted_url())
            .field("user", &self.user)
            .field("password", &self.password)
            .field("vhost", &self.vhost)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client", &self.tls_client)
            .field("prefetch", &self.prefetch)
            .field("retry_delays_ms", &self.retry_delays_ms)
            .field("operation_timeout", &self.operation_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

impl RabbitMqSettings {
    /// Defaults for a URL (not checked).
    pub fn new(url: impl Into<String>) -> Self {
        RabbitMqSettings {
            url: url.into(),
            user: None,
            password: None,
            vhost: None,
            tls_ca_file: None,
            tls_client: None,
            prefetch: DEFAULT_PREFETCH,
            retry_delays_ms: DEFAULT_RETRY_DELAYS_MS.to_vec(),
            operation_timeout: Duration::from_secs(10),
            heartbeat: 20,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// The URL with its password masked, for errors and logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// What masks the secrets in texts from the client library.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::from_url(&self.url);
        if let Some(p) = &self.password {
            r.add(p);
        }
        r
    }

    /// Read and check the `EVENT_BUS_RABBITMQ_*` settings; an invalid one is
    /// a [`ConfigError`] naming it.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let url = settings
            .string(URL)?
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let mut r = RabbitMqSettings::new(url);
        let parsed = r.parse_url()?;
        let has_userinfo = authority(&r.url).contains('@');
        r.user = settings.string(USER)?.filter(|u| !u.is_empty());
        r.password = settings.string(PASSWORD)?.filter(|p| !p.is_empty()).map(Secret::new);
        for (key, given) in [(USER, r.user.is_some()), (PASSWORD, r.password.is_some())] {
            if given && has_userinfo {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "credentials are also in {URL} ({}): give them in one place only",
                        r.redacted_url()
                    ),
                ));
            }
        }
        r.vhost = settings.string(VHOST)?.filter(|v| !v.is_empty());
        if r.vhost.is_some() && has_vhost_path(&r.url) {
            return Err(ConfigError::new(
                VHOST,
                format!(
                    "{URL} already names a virtual host ({:?}): give it in one place only",
                    parsed.vhost
                ),
            ));
        }
        let tls = parsed.scheme == AMQPScheme::AMQPS;
        r.tls_ca_file = file(settings, TLS_CA_FILE, tls)?;
        let cert = file(settings, TLS_CERT_FILE, tls)?;
        let key = file(settings, TLS_KEY_FILE, tls)?;
        r.tls_client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::new(TLS_KEY_FILE, format!("required with {TLS_CERT_FILE}"))),
            (None, Some(_)) => return Err(ConfigError::new(TLS_CERT_FILE, format!("required with {TLS_KEY_FILE}"))),
        };
        if let Some(n) = settings.u64(PREFETCH)? {
            r.prefetch = u16::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError::new(PREFETCH, "must be between 1 and 65535"))?;
        }
        if let Some(text) = settings.string(RETRY_DELAYS)? {
            r.retry_delays_ms = parse_delays(&text).map_err(|m| ConfigError::new(RETRY_DELAYS, m))?;
        }
        if let Some(t) = settings.seconds(OPERATION_TIMEOUT)? {
            if t.is_zero() {
                return Err(ConfigError::new(OPERATION_TIMEOUT, "must be more than 0 seconds"));
            }
            r.operation_timeout = t;
        }
        if let Some(h) = settings.u64(HEARTBEAT)? {
            r.heartbeat = u16::try_from(h).map_err(|_| ConfigError::new(HEARTBEAT, "must be at most 65535 seconds"))?;
        }
        if let Some(n) = settings.u64(MAX_MESSAGE_BYTES)? {
            r.max_message_bytes = usize::try_from(n)
                .ok()
                .filter(|n| (1..=128 * 1024 * 1024).contains(n))
                .ok_or_else(|| ConfigError::new(MAX_MESSAGE_BYTES, "must be from 1 to 134217728 (128 MiB)"))?;
        }
        Ok(r)
    }

    fn parse_url(&self) -> Result<AMQPUri, ConfigError> {
        let parsed: AMQPUri = self
            .url
            .parse()
            .map_err(|e| ConfigError::new(URL, format!("{} is not an AMQP URL: {e}", self.redacted_url())))?;
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return Err(ConfigError::new(
                URL,
                format!("expected an amqp:// or amqps:// URL, found {}", self.redacted_url()),
            ));
        }
        Ok(parsed)
    }

    /// The URI lapin connects to: the URL with the separate user, password
    /// and virtual host applied, and the heartbeat and connection timeout
    /// unless the URL sets them.
    pub fn amqp_uri(&self) -> Result<AMQPUri, ConfigError> {
        let mut uri = self.parse_url()?;
        if let Some(u) = &self.user {
            uri.authority.userinfo.username = u.clone();
        }
        if let Some(p) = &self.password {
            uri.authority.userinfo.password = p.expose().to_string();
        }
        if let Some(v) = &self.vhost {
            uri.vhost = v.clone();
        }
        uri.query.heartbeat.get_or_insert(self.heartbeat);
        let ms = u64::try_from(self.operation_timeout.as_millis()).unwrap_or(u64::MAX);
        uri.query.connection_timeout.get_or_insert(ms);
        Ok(uri)
    }

    /// The user the connection authenticates as (for errors).
    pub fn effective_user(&self) -> String {
        self.amqp_uri()
            .map(|u| u.authority.userinfo.username)
            .unwrap_or_default()
    }

    /// The TLS configuration for `amqps://` (files read now).
    pub fn tls_config(&self) -> Result<OwnedTLSConfig, ConfigError> {
        let mut config = OwnedTLSConfig::default();
        if let Some(ca) = &self.tls_ca_file {
            config.cert_chain = Some(read(TLS_CA_FILE, ca).and_then(|b| {
                String::from_utf8(b).map_err(|_| ConfigError::new(TLS_CA_FILE, "is not a PEM (text) file"))
            })?);
        }
        if let Some((cert, key)) = &self.tls_client {
            config.identity = Some(OwnedIdentity::PKCS8 {
                pem: read(TLS_CERT_FILE, cert)?,
                key: read(TLS_KEY_FILE, key)?,
            });
        }
        Ok(config)
    }
}

fn read(key: &str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))
}

/// The authority part of a URL (`user:pass@host:port`).
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Whether the URL has a path (a virtual host, even the empty one).
fn has_vhost_path(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    rest.find('/').is_some_and(|i| i + 1 < rest.len())
}

fn file(settings: &Settings, key: &str, tls: bool) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = settings.string(key)?.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if !tls {
        return Err(ConfigError::new(key, format!("needs an amqps:// URL in {URL}")));
    }
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(ConfigError::new(
            key,
            format!("{} is not a readable file", path.display()),
        ));
    }
    Ok(Some(path))
}

/// `"0.5, 1, 10"` (seconds) as ascending milliseconds.
fn parse_delays(text: &str) -> Result<Vec<u64>, String> {
    let mut out: Vec<u64> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let secs: f64 = part
            .parse()
            .map_err(|_| format!("expected seconds separated by commas, found {part:?}"))?;
        if !(0.001..=604_800.0).contains(&secs) {
            return Err(format!("{part} is not from 0.001 to 604800 seconds (7 days)"));
        }
        let ms = (secs * 1000.0).round() as u64;
        if out.last().is_some_and(|last| *last >= ms) {
            return Err(format!("the delays must be ascending ({part} is not)"));
        }
        out.push(ms);
    }
    if out.is_empty() || out.len() > 64 {
        return Err("expected from 1 to 64 delays".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
