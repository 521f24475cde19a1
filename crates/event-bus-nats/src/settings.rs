//! The backend's settings (`EVENT_BUS_NATS_*`), read and checked once at
//! start-up; every error names its key.

use std::path::PathBuf;
use std::time::Duration;

use openedx_events::config::{redact_url, ConfigError, Secret, Settings};

use crate::names;

/// `EVENT_BUS_NATS_URL`: one server URL or a comma-separated list (default `nats://127.0.0.1:4222`).
pub const URL: &str = "EVENT_BUS_NATS_URL";
/// `EVENT_BUS_NATS_USER`: user name for user/password authentication.
pub const USER: &str = "EVENT_BUS_NATS_USER";
/// `EVENT_BUS_NATS_PASSWORD`: password for user/password authentication (never logged).
pub const PASSWORD: &str = "EVENT_BUS_NATS_PASSWORD";
/// `EVENT_BUS_NATS_TOKEN`: token authentication (never logged).
pub const TOKEN: &str = "EVENT_BUS_NATS_TOKEN";
/// `EVENT_BUS_NATS_CREDS_FILE`: a `.creds` file (JWT and NKey seed).
pub const CREDS_FILE: &str = "EVENT_BUS_NATS_CREDS_FILE";
/// `EVENT_BUS_NATS_NKEY_SEED`: an NKey user seed (`SU...`, never logged).
pub const NKEY_SEED: &str = "EVENT_BUS_NATS_NKEY_SEED";
/// `EVENT_BUS_NATS_TLS_CA_FILE`: PEM CA certificates to trust.
pub const TLS_CA_FILE: &str = "EVENT_BUS_NATS_TLS_CA_FILE";
/// `EVENT_BUS_NATS_TLS_CERT_FILE`: PEM client certificate (with `EVENT_BUS_NATS_TLS_KEY_FILE`).
pub const TLS_CERT_FILE: &str = "EVENT_BUS_NATS_TLS_CERT_FILE";
/// `EVENT_BUS_NATS_TLS_KEY_FILE`: PEM client key (with `EVENT_BUS_NATS_TLS_CERT_FILE`).
pub const TLS_KEY_FILE: &str = "EVENT_BUS_NATS_TLS_KEY_FILE";
/// `EVENT_BUS_NATS_TLS_REQUIRED`: refuse a connection without TLS (default false).
pub const TLS_REQUIRED: &str = "EVENT_BUS_NATS_TLS_REQUIRED";
/// `EVENT_BUS_NATS_SUBJECT_PREFIX`: first subject token(s) of every stream (default `openedx`).
pub const SUBJECT_PREFIX: &str = "EVENT_BUS_NATS_SUBJECT_PREFIX";
/// `EVENT_BUS_NATS_STREAM_MAX_AGE`: seconds a message is kept; 0 for no limit (default 0).
pub const STREAM_MAX_AGE: &str = "EVENT_BUS_NATS_STREAM_MAX_AGE";
/// `EVENT_BUS_NATS_STREAM_MAX_BYTES`: bytes a stream keeps; 0 for no limit (default 0).
pub const STREAM_MAX_BYTES: &str = "EVENT_BUS_NATS_STREAM_MAX_BYTES";
/// `EVENT_BUS_NATS_STREAM_REPLICAS`: replicas of a new stream, 1 to 5 (default 1).
pub const STREAM_REPLICAS: &str = "EVENT_BUS_NATS_STREAM_REPLICAS";
/// `EVENT_BUS_NATS_STREAM_STORAGE`: `file` or `memory` (default `file`).
pub const STREAM_STORAGE: &str = "EVENT_BUS_NATS_STREAM_STORAGE";
/// `EVENT_BUS_NATS_DUPLICATE_WINDOW`: seconds the server remembers event ids (default 120).
pub const DUPLICATE_WINDOW: &str = "EVENT_BUS_NATS_DUPLICATE_WINDOW";
/// `EVENT_BUS_NATS_PUBLISH_DEDUPLICATION`: send `Nats-Msg-Id` = event id (default true).
pub const PUBLISH_DEDUPLICATION: &str = "EVENT_BUS_NATS_PUBLISH_DEDUPLICATION";
/// `EVENT_BUS_NATS_ACK_WAIT_SECONDS`: a new group's ack wait (default 30).
pub const ACK_WAIT_SECONDS: &str = "EVENT_BUS_NATS_ACK_WAIT_SECONDS";
/// `EVENT_BUS_NATS_MAX_ACK_PENDING`: a new group's bound on unacknowledged messages (default 1000).
pub const MAX_ACK_PENDING: &str = "EVENT_BUS_NATS_MAX_ACK_PENDING";
/// `EVENT_BUS_NATS_OPERATION_TIMEOUT`: seconds any server call may take (default 10).
pub const OPERATION_TIMEOUT: &str = "EVENT_BUS_NATS_OPERATION_TIMEOUT";

/// Every setting the backend reads.
pub const ALL: &[&str] = &[
    URL,
    USER,
    PASSWORD,
    TOKEN,
    CREDS_FILE,
    NKEY_SEED,
    TLS_CA_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    TLS_REQUIRED,
    SUBJECT_PREFIX,
    STREAM_MAX_AGE,
    STREAM_MAX_BYTES,
    STREAM_REPLICAS,
    STREAM_STORAGE,
    DUPLICATE_WINDOW,
    PUBLISH_DEDUPLICATION,
    ACK_WAIT_SECONDS,
    MAX_ACK_PENDING,
    OPERATION_TIMEOUT,
];

/// The default server.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// How a client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No credentials (or only those inside the URL).
    #[default]
    None,
    /// `EVENT_BUS_NATS_USER` / `EVENT_BUS_NATS_PASSWORD`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: SecretText,
    },
    /// `EVENT_BUS_NATS_TOKEN`.
    Token(SecretText),
    /// `EVENT_BUS_NATS_CREDS_FILE`.
    CredsFile(PathBuf),
    /// `EVENT_BUS_NATS_NKEY_SEED`.
    NKey(SecretText),
}

/// A secret that compares by value (for tests) and never prints.
#[derive(Clone)]
pub struct SecretText(pub Secret);

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose() == other.0.expose()
    }
}
impl Eq for SecretText {}
impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// On disk (survives a server restart).
    #[default]
    File,
    /// In memory.
    Memory,
}

/// The backend's configuration.
///
/// ```
/// use event_bus_nats::NatsSettings;
/// use openedx_events::config::Settings;
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_NATS_URL", "nats://a:4222, nats://b:4222");
/// s.set("EVENT_BUS_NATS_TOKEN", "s3cret");
/// let n = NatsSettings::from_settings(&s).unwrap();
/// assert_eq!(n.urls, vec!["nats://a:4222", "nats://b:4222"]);
/// assert_eq!(n.subject_prefix, "openedx");
/// assert!(!format!("{n:?}").contains("s3cret"), "secrets never print");
///
/// s.set("EVENT_BUS_NATS_USER", "app");
/// let e = NatsSettings::from_settings(&s).unwrap_err();
/// assert!(e.to_string().contains("EVENT_BUS_NATS_TOKEN") && e.to_string().contains("EVENT_BUS_NATS_USER"));
/// ```
#[derive(Clone, PartialEq)]
pub struct NatsSettings {
    /// The servers (credentials inside a URL are allowed; logs redact them).
    pub urls: Vec<String>,
    /// How to authenticate.
    pub auth: Auth,
    /// CA certificates to trust.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Require TLS.
    pub tls_required: bool,
    /// First subject token(s).
    pub subject_prefix: String,
    /// A new stream's message age limit (zero: none).
    pub stream_max_age: Duration,
    /// A new stream's byte limit (`None`: none).
    pub stream_max_bytes: Option<i64>,
    /// A new stream's replicas.
    pub stream_replicas: usize,
    /// A new stream's storage.
    pub stream_storage: Storage,
    /// A new stream's duplicate window.
    pub duplicate_window: Duration,
    /// Whether `publish` sends `Nats-Msg-Id` (the event id).
    pub publish_deduplication: bool,
    /// A new group's ack wait.
    pub ack_wait: Duration,
    /// A new group's max ack pending.
    pub max_ack_pending: i64,
    /// The limit on any server call.
    pub operation_timeout: Duration,
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("urls", &self.redacted_urls())
            .field("auth", &self.auth)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client", &self.tls_client)
            .field("tls_required", &self.tls_required)
            .field("subject_prefix", &self.subject_prefix)
            .field("stream_max_age", &self.stream_max_age)
            .field("stream_max_bytes", &self.stream_max_bytes)
            .field("stream_replicas", &self.stream_replicas)
            .field("stream_storage", &self.stream_storage)
            .field("duplicate_window", &self.duplicate_window)
            .field("publish_deduplication", &self.publish_deduplication)
            .field("ack_wait", &self.ack_wait)
            .field("max_ack_pending", &self.max_ack_pending)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            urls: vec![DEFAULT_URL.to_string()],
            auth: Auth::None,
            tls_ca_file: None,
            tls_client: None,
            tls_required: false,
            subject_prefix: "openedx".into(),
            stream_max_age: Duration::ZERO,
            stream_max_bytes: None,
            stream_replicas: 1,
            stream_storage: Storage::File,
            duplicate_window: Duration::from_secs(120),
            publish_deduplication: true,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            operation_timeout: Duration::from_secs(10),
        }
    }
}

fn secret(settings: &Settings, key: &str) -> Result<Option<SecretText>, ConfigError> {
    Ok(settings
        .string(key)?
        .filter(|s| !s.is_empty())
        .map(|s| SecretText(Secret::new(s))))
}

fn file(settings: &Settings, key: &str) -> Result<Option<PathBuf>, ConfigError> {
    match settings.string(key)?.filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(p) => {
            let path = PathBuf::from(p.trim());
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(ConfigError::new(
                    key,
                    format!("{} is not a readable file", path.display()),
                ))
            }
        }
    }
}

fn positive_seconds(settings: &Settings, key: &str) -> Result<Option<Duration>, ConfigError> {
    match settings.seconds(key)? {
        Some(d) if d.is_zero() => Err(ConfigError::new(key, "must be more than 0 seconds")),
        other => Ok(other),
    }
}

impl NatsSettings {
    /// Read and check the `EVENT_BUS_NATS_*` settings; an invalid one is a
    /// [`ConfigError`] naming it (two conflicting ones: naming both).
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let mut n = NatsSettings::default();
        if let Some(text) = settings.string(URL)?.filter(|s| !s.trim().is_empty()) {
            n.urls = parse_urls(&text)?;
        }
        n.auth = read_auth(settings)?;
        n.tls_ca_file = file(settings, TLS_CA_FILE)?;
        n.tls_client = match (file(settings, TLS_CERT_FILE)?, file(settings, TLS_KEY_FILE)?) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    TLS_KEY_FILE,
                    format!("is required with {TLS_CERT_FILE}"),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    TLS_CERT_FILE,
                    format!("is required with {TLS_KEY_FILE}"),
                ))
            }
        };
        n.tls_required = settings.bool(TLS_REQUIRED)?.unwrap_or(false);
        if let Some(p) = settings.string(SUBJECT_PREFIX)? {
            let p = p.trim().to_string();
            if !names::valid_subject_prefix(&p) {
                return Err(ConfigError::new(
                    SUBJECT_PREFIX,
                    format!("expected dot-separated tokens of letters, digits, '-' and '_', found {p:?}"),
                ));
            }
            n.subject_prefix = p;
        }
        if let Some(d) = settings.seconds(STREAM_MAX_AGE)? {
            n.stream_max_age = d;
        }
        if let Some(b) = settings.u64(STREAM_MAX_BYTES)? {
            n.stream_max_bytes = match b {
                0 => None,
                b => Some(i64::try_from(b).map_err(|_| ConfigError::new(STREAM_MAX_BYTES, "is too large"))?),
            };
        }
        if let Some(r) = settings.u64(STREAM_REPLICAS)? {
            if !(1..=5).contains(&r) {
                return Err(ConfigError::new(
                    STREAM_REPLICAS,
                    format!("must be from 1 to 5, found {r}"),
                ));
            }
            n.stream_replicas = r as usize;
        }
        if let Some(s) = settings.string(STREAM_STORAGE)? {
            n.stream_storage = match s.trim().to_ascii_lowercase().as_str() {
                "file" => Storage::File,
                "memory" => Storage::Memory,
                _ => {
                    return Err(ConfigError::new(
                        STREAM_STORAGE,
                        format!("expected file or memory, found {s:?}"),
                    ))
                }
            };
        }
        if let Some(d) = positive_seconds(settings, DUPLICATE_WINDOW)? {
            n.duplicate_window = d;
        }
        n.publish_deduplication = settings.bool(PUBLISH_DEDUPLICATION)?.unwrap_or(true);
        if let Some(d) = positive_seconds(settings, ACK_WAIT_SECONDS)? {
            n.ack_wait = d;
        }
        if let Some(m) = settings.u64(MAX_ACK_PENDING)? {
            n.max_ack_pending = i64::try_from(m)
                .ok()
                .filter(|m| *m >= 1)
                .ok_or_else(|| ConfigError::new(MAX_ACK_PENDING, "must be at least 1"))?;
        }
        if let Some(d) = positive_seconds(settings, OPERATION_TIMEOUT)? {
            n.operation_timeout = d;
        }
        Ok(n)
    }

    /// The URLs as logs may show them (credentials masked).
    pub fn redacted_urls(&self) -> String {
        self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>().join(",")
    }
}

/// The comma-separated server list: `nats://`, `tls://`, `ws://`, `wss://`
/// or a bare `host:port`.
fn parse_urls(text: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let rest = match part.split_once("://") {
            Some((scheme, rest)) if ["nats", "tls", "ws", "wss"].contains(&scheme) => rest,
            Some(_) => {
                return Err(ConfigError::new(
                    URL,
                    format!(
                        "expected nats://, tls://, ws:// or wss:// URLs, found {:?}",
                        redact_url(part)
                    ),
                ))
            }
            None => part,
        };
        if rest.rsplit('@').next().unwrap_or("").trim_end_matches('/').is_empty() {
            return Err(ConfigError::new(URL, format!("{:?} has no host", redact_url(part))));
        }
        if part.parse::<async_nats::ServerAddr>().is_err() {
            return Err(ConfigError::new(
                URL,
                format!("{:?} is not a valid server URL", redact_url(part)),
            ));
        }
        out.push(part.to_string());
    }
    if out.is_empty() {
        return Err(ConfigError::new(URL, "no server URL given"));
    }
    Ok(out)
}

fn read_auth(settings: &Settings) -> Result<Auth, ConfigError> {
    let user = settings.string(USER)?.filter(|s| !s.is_empty());
    let password = secret(settings, PASSWORD)?;
    let token = secret(settings, TOKEN)?;
    let creds = file(settings, CREDS_FILE)?;
    let nkey = secret(settings, NKEY_SEED)?;
    let mut given: Vec<&str> = Vec::new();
    if user.is_some() || password.is_some() {
        given.push(if user.is_some() { USER } else { PASSWORD });
    }
    if token.is_some() {
        given.push(TOKEN);
    }
    if creds.is_some() {
        given.push(CREDS_FILE);
    }
    if nkey.is_some() {
        given.push(NKEY_SEED);
    }
    if given.len() > 1 {
        return Err(ConfigError::new(
            given[1],
            format!(
                "conflicts with {}: set only one way to authenticate (user/password, token, creds file or NKey)",
                given[0]
            ),
        ));
    }
    Ok(match (user, password, token, creds, nkey) {
        (Some(user), Some(password), ..) => Auth::UserPassword { user, password },
        (Some(_), None, ..) => return Err(ConfigError::new(PASSWORD, format!("is required with {USER}"))),
        (None, Some(_), ..) => return Err(ConfigError::new(USER, format!("is required with {PASSWORD}"))),
        (_, _, Some(t), ..) => Auth::Token(t),
        (_, _, _, Some(c), _) => Auth::CredsFile(c),
        (_, _, _, _, Some(seed)) => {
            if !seed.0.expose().starts_with("SU") {
                return Err(ConfigError::new(
                    NKEY_SEED,
                    "expected an NKey user seed (starting with SU)",
                ));
            }
            Auth::NKey(seed)
        }
        _ => Auth::None,
    })
}

#[cfg(test)]
mod tests;
