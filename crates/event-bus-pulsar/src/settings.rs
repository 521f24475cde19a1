//! The backend's settings (`EVENT_BUS_PULSAR_*`), parsed and checked once.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use openedx_events::config::{ConfigError, Settings};

/// `EVENT_BUS_PULSAR_URL`: `pulsar://host:6650` or `pulsar+ssl://host:6651` (required).
pub const URL: &str = "EVENT_BUS_PULSAR_URL";
/// `EVENT_BUS_PULSAR_TOKEN`: a JWT for token authentication (never logged).
pub const TOKEN: &str = "EVENT_BUS_PULSAR_TOKEN";
/// `EVENT_BUS_PULSAR_TENANT` (default `public`).
pub const TENANT: &str = "EVENT_BUS_PULSAR_TENANT";
/// `EVENT_BUS_PULSAR_NAMESPACE` (default `default`).
pub const NAMESPACE: &str = "EVENT_BUS_PULSAR_NAMESPACE";
/// `EVENT_BUS_PULSAR_OPERATION_TIMEOUT`: seconds any broker call may take (default 10).
pub const OPERATION_TIMEOUT: &str = "EVENT_BUS_PULSAR_OPERATION_TIMEOUT";
/// `EVENT_BUS_PULSAR_BATCHING`: batch messages in the producer (default false).
pub const BATCHING: &str = "EVENT_BUS_PULSAR_BATCHING";
/// `EVENT_BUS_PULSAR_BATCHING_MAX_MESSAGES`: largest batch (default 1000).
pub const BATCHING_MAX_MESSAGES: &str = "EVENT_BUS_PULSAR_BATCHING_MAX_MESSAGES";
/// `EVENT_BUS_PULSAR_BATCHING_MAX_PUBLISH_DELAY`: seconds a batch waits to fill (default 0.01).
pub const BATCHING_MAX_PUBLISH_DELAY: &str = "EVENT_BUS_PULSAR_BATCHING_MAX_PUBLISH_DELAY";
/// `EVENT_BUS_PULSAR_COMPRESSION`: `none`, `lz4`, `zlib`, `zstd` or `snappy` (default `none`).
pub const COMPRESSION: &str = "EVENT_BUS_PULSAR_COMPRESSION";
/// `EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE`: `shared` or `key_shared` (default `shared`).
pub const SUBSCRIPTION_TYPE: &str = "EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE";
/// `EVENT_BUS_PULSAR_RECEIVER_QUEUE_SIZE`: messages a consumer asks the broker for at a time (default 1000, as Pulsar).
pub const RECEIVER_QUEUE_SIZE: &str = "EVENT_BUS_PULSAR_RECEIVER_QUEUE_SIZE";
/// `EVENT_BUS_PULSAR_MAX_MESSAGE_BYTES`: largest payload accepted (default 5 MiB, the broker default).
pub const MAX_MESSAGE_BYTES: &str = "EVENT_BUS_PULSAR_MAX_MESSAGE_BYTES";
/// `EVENT_BUS_PULSAR_TLS_TRUST_CERTS_FILE`: PEM file of CA certificates for `pulsar+ssl://`.
pub const TLS_TRUST_CERTS_FILE: &str = "EVENT_BUS_PULSAR_TLS_TRUST_CERTS_FILE";
/// `EVENT_BUS_PULSAR_TLS_ALLOW_INSECURE_CONNECTION`: accept any server certificate (default false).
pub const TLS_ALLOW_INSECURE_CONNECTION: &str = "EVENT_BUS_PULSAR_TLS_ALLOW_INSECURE_CONNECTION";

/// Every setting the backend reads.
pub const ALL: &[&str] = &[
    URL,
    TOKEN,
    TENANT,
    NAMESPACE,
    OPERATION_TIMEOUT,
    BATCHING,
    BATCHING_MAX_MESSAGES,
    BATCHING_MAX_PUBLISH_DELAY,
    COMPRESSION,
    SUBSCRIPTION_TYPE,
    RECEIVER_QUEUE_SIZE,
    MAX_MESSAGE_BYTES,
    TLS_TRUST_CERTS_FILE,
    TLS_ALLOW_INSECURE_CONNECTION,
];

/// The Pulsar default `maxMessageSize`: 5 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 5 * 1024 * 1024;

/// How the members of a consumer group share a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionKind {
    /// Pulsar `Shared`: messages go to any member (no per-key order).
    #[default]
    Shared,
    /// Pulsar `Key_Shared`: all messages of a key go to one member, in order.
    KeyShared,
}

impl SubscriptionKind {
    /// Parse `shared` or `key_shared` (also `Key_Shared`, `keyshared`).
    ///
    /// ```
    /// use event_bus_pulsar::SubscriptionKind;
    /// assert_eq!(SubscriptionKind::parse("Key_Shared"), Some(SubscriptionKind::KeyShared));
    /// assert_eq!(SubscriptionKind::parse("exclusive"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "shared" => Some(SubscriptionKind::Shared),
            "keyshared" => Some(SubscriptionKind::KeyShared),
            _ => None,
        }
    }

    /// The setting value (`shared`, `key_shared`).
    pub fn as_str(&self) -> &'static str {
        match self {
            SubscriptionKind::Shared => "shared",
            SubscriptionKind::KeyShared => "key_shared",
        }
    }
}

/// Producer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionKind {
    /// No compression.
    #[default]
    None,
    /// LZ4.
    Lz4,
    /// zlib.
    Zlib,
    /// Zstandard.
    Zstd,
    /// Snappy.
    Snappy,
}

impl CompressionKind {
    /// Parse `none`, `lz4`, `zlib`, `zstd` or `snappy`.
    ///
    /// ```
    /// use event_bus_pulsar::CompressionKind;
    /// assert_eq!(CompressionKind::parse("ZSTD"), Some(CompressionKind::Zstd));
    /// assert_eq!(CompressionKind::parse("gzip"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Some(CompressionKind::None),
            "lz4" => Some(CompressionKind::Lz4),
            "zlib" => Some(CompressionKind::Zlib),
            "zstd" => Some(CompressionKind::Zstd),
            "snappy" => Some(CompressionKind::Snappy),
            _ => None,
        }
    }
}

/// The backend's configuration.
///
/// ```
/// use event_bus_pulsar::{PulsarSettings, SubscriptionKind};
/// use openedx_events::config::Settings;
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_PULSAR_URL", "pulsar://localhost:6650");
/// s.set("EVENT_BUS_PULSAR_TOKEN", "secret");
/// let p = PulsarSettings::from_settings(&s).unwrap();
/// assert_eq!((p.tenant.as_str(), p.namespace.as_str()), ("public", "default"));
/// assert_eq!(p.subscription_kind, SubscriptionKind::Shared);
/// assert!(!format!("{p:?}").contains("secret"), "the token is never printed");
///
/// s.set("EVENT_BUS_PULSAR_COMPRESSION", "gzip");
/// let e = PulsarSettings::from_settings(&s).unwrap_err();
/// assert_eq!(e.key, "EVENT_BUS_PULSAR_COMPRESSION");
/// ```
#[derive(Clone)]
pub struct PulsarSettings {
    /// The service URL.
    pub url: String,
    /// The token, if any.
    pub token: Option<String>,
    /// The tenant of every topic.
    pub tenant: String,
    /// The namespace of every topic.
    pub namespace: String,
    /// The limit on every broker call.
    pub operation_timeout: Duration,
    /// Whether the producer batches.
    pub batching: bool,
    /// Largest batch.
    pub batching_max_messages: u32,
    /// Longest a batch waits to fill.
    pub batching_max_publish_delay: Duration,
    /// Producer compression.
    pub compression: CompressionKind,
    /// The default subscription type.
    pub subscription_kind: SubscriptionKind,
    /// Messages a consumer prefetches.
    pub receiver_queue_size: u32,
    /// Largest payload accepted.
    pub max_message_bytes: usize,
    /// CA certificates for TLS.
    pub tls_trust_certs_file: Option<PathBuf>,
    /// Accept any server certificate.
    pub tls_allow_insecure_connection: bool,
}

impl fmt::Debug for PulsarSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PulsarSettings")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tenant", &self.tenant)
            .field("namespace", &self.namespace)
            .field("operation_timeout", &self.operation_timeout)
            .field("batching", &self.batching)
            .field("batching_max_messages", &self.batching_max_messages)
            .field("batching_max_publish_delay", &self.batching_max_publish_delay)
            .field("compression", &self.compression)
            .field("subscription_kind", &self.subscription_kind)
            .field("receiver_queue_size", &self.receiver_queue_size)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("tls_trust_certs_file", &self.tls_trust_certs_file)
            .field("tls_allow_insecure_connection", &self.tls_allow_insecure_connection)
            .finish()
    }
}

impl PulsarSettings {
    /// Defaults for a service URL (not checked).
    pub fn new(url: impl Into<String>) -> Self {
        PulsarSettings {
            url: url.into(),
            token: None,
            tenant: "public".into(),
            namespace: "default".into(),
            operation_timeout: Duration::from_secs(10),
            batching: false,
            batching_max_messages: 1000,
            batching_max_publish_delay: Duration::from_millis(10),
            compression: CompressionKind::None,
            subscription_kind: SubscriptionKind::Shared,
            receiver_queue_size: 1000,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls_trust_certs_file: None,
            tls_allow_insecure_connection: false,
        }
    }

    /// Read and check the `EVENT_BUS_PULSAR_*` settings; an invalid one is a
    /// [`ConfigError`] naming it.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let url = settings.required_string(URL)?;
        let url = url.trim().to_string();
        if !(url.starts_with("pulsar://") || url.starts_with("pulsar+ssl://")) {
            return Err(ConfigError::new(
                URL,
                format!("expected a pulsar:// or pulsar+ssl:// URL, found {url:?}"),
            ));
        }
        let authority = url.split("://").nth(1).unwrap_or("");
        if authority.trim_end_matches('/').is_empty() {
            return Err(ConfigError::new(URL, "the URL has no host"));
        }
        let mut p = PulsarSettings::new(url);
        p.token = settings.string(TOKEN)?.filter(|t| !t.is_empty());
        p.tenant = name_part(settings, TENANT, "public")?;
        p.namespace = name_part(settings, NAMESPACE, "default")?;
        if let Some(t) = settings.seconds(OPERATION_TIMEOUT)? {
            if t.is_zero() {
                return Err(ConfigError::new(OPERATION_TIMEOUT, "must be more than 0 seconds"));
            }
            p.operation_timeout = t;
        }
        p.batching = settings.bool(BATCHING)?.unwrap_or(false);
        if let Some(n) = settings.u64(BATCHING_MAX_MESSAGES)? {
            p.batching_max_messages = u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError::new(BATCHING_MAX_MESSAGES, "must be between 1 and 4294967295"))?;
        }
        if let Some(d) = settings.seconds(BATCHING_MAX_PUBLISH_DELAY)? {
            p.batching_max_publish_delay = d;
        }
        if let Some(text) = settings.string(COMPRESSION)? {
            p.compression = CompressionKind::parse(&text).ok_or_else(|| {
                ConfigError::new(
                    COMPRESSION,
                    format!("expected none, lz4, zlib, zstd or snappy, found {text:?}"),
                )
            })?;
            if p.compression != CompressionKind::None && !cfg!(feature = "compression") {
                return Err(ConfigError::new(
                    COMPRESSION,
                    "this build has no compression (the `compression` feature of event-bus-pulsar is off)",
                ));
            }
        }
        if let Some(text) = settings.string(SUBSCRIPTION_TYPE)? {
            p.subscription_kind = SubscriptionKind::parse(&text).ok_or_else(|| {
                ConfigError::new(
                    SUBSCRIPTION_TYPE,
                    format!(
                        "expected shared or key_shared, found {text:?} (exclusive and failover \
                         subscriptions cannot share a group)"
                    ),
                )
            })?;
        }
        if let Some(n) = settings.u64(RECEIVER_QUEUE_SIZE)? {
            p.receiver_queue_size = u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError::new(RECEIVER_QUEUE_SIZE, "must be between 1 and 4294967295"))?;
        }
        if let Some(n) = settings.u64(MAX_MESSAGE_BYTES)? {
            p.max_message_bytes = usize::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError::new(MAX_MESSAGE_BYTES, "must be at least 1"))?;
        }
        if let Some(path) = settings.string(TLS_TRUST_CERTS_FILE)?.filter(|s| !s.is_empty()) {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(ConfigError::new(
                    TLS_TRUST_CERTS_FILE,
                    format!("{} is not a readable file", path.display()),
                ));
            }
            p.tls_trust_certs_file = Some(path);
        }
        p.tls_allow_insecure_connection = settings.bool(TLS_ALLOW_INSECURE_CONNECTION)?.unwrap_or(false);
        Ok(p)
    }
}

fn name_part(settings: &Settings, key: &str, default: &str) -> Result<String, ConfigError> {
    let value = settings.string(key)?.unwrap_or_else(|| default.to_string());
    if value.is_empty() || value.contains('/') || value.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            key,
            format!("expected a name without '/' or spaces, found {value:?}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Settings {
        let mut s = Settings::new();
        s.set(URL, "pulsar://localhost:6650");
        for (k, v) in pairs {
            s.set(*k, *v);
        }
        s
    }

    #[test]
    fn defaults() {
        let p = PulsarSettings::from_settings(&with(&[])).unwrap();
        assert_eq!(p.operation_timeout, Duration::from_secs(10));
        assert_eq!(p.compression, CompressionKind::None);
        assert!(!p.batching);
        assert_eq!(p.max_message_bytes, 5 * 1024 * 1024);
        assert_eq!(p.token, None);
    }

    #[test]
    fn every_invalid_setting_names_its_key() {
        let cases: &[(&str, &str)] = &[
            (URL, "http://localhost:8080"),
            (URL, "pulsar://"),
            (TENANT, "a/b"),
            (NAMESPACE, ""),
            (OPERATION_TIMEOUT, "0"),
            (OPERATION_TIMEOUT, "soon"),
            (BATCHING, "maybe"),
            (BATCHING_MAX_MESSAGES, "0"),
            (COMPRESSION, "brotli"),
            (SUBSCRIPTION_TYPE, "exclusive"),
            (RECEIVER_QUEUE_SIZE, "-1"),
            (MAX_MESSAGE_BYTES, "0"),
            (TLS_TRUST_CERTS_FILE, "/no/such/file.pem"),
        ];
        for (key, value) in cases {
            let e = PulsarSettings::from_settings(&with(&[(key, value)]))
                .err()
                .unwrap_or_else(|| panic!("{key}={value:?} was accepted"));
            assert_eq!(e.key, *key, "{key}={value:?}: {e}");
        }
        let e = PulsarSettings::from_settings(&Settings::new()).unwrap_err();
        assert_eq!(e.key, URL);
    }

    #[test]
    fn parses_values() {
        let p = PulsarSettings::from_settings(&with(&[
            (URL, "pulsar+ssl://broker.example:6651"),
            (TENANT, "openedx"),
            (NAMESPACE, "prod"),
            (OPERATION_TIMEOUT, "2.5"),
            (BATCHING, "true"),
            (BATCHING_MAX_MESSAGES, "50"),
            (COMPRESSION, "lz4"),
            (SUBSCRIPTION_TYPE, "key_shared"),
        ]))
        .unwrap();
        assert_eq!(p.tenant, "openedx");
        assert_eq!(p.operation_timeout, Duration::from_millis(2500));
        assert!(p.batching);
        assert_eq!(p.batching_max_messages, 50);
        assert_eq!(p.compression, CompressionKind::Lz4);
        assert_eq!(p.subscription_kind, SubscriptionKind::KeyShared);
    }
}
