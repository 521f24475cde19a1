//! The Kafka settings (Django names), read and checked at start-up: an
//! error names the offending key. The librdkafka configuration is built from
//! them in `settings/client_config.rs`; `settings/secrets.rs` keeps their
//! secrets out of `Debug` output, config dumps and errors.

mod client_config;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use openedx_events::config::secret::redact_url;
use openedx_events::config::{ConfigError, Settings};

pub use secrets::is_secret_property;
pub(crate) use secrets::mask_text;

/// Every setting the Kafka backend reads.
pub const SETTINGS: &[&str] = &[
    "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_UNKNOWN_ID_GRACE",
    "EVENT_BUS_KAFKA_API_KEY",
    "EVENT_BUS_KAFKA_API_SECRET",
    "EVENT_BUS_KAFKA_SECURITY_PROTOCOL",
    "EVENT_BUS_KAFKA_SASL_MECHANISM",
    "EVENT_BUS_KAFKA_SASL_USERNAME",
    "EVENT_BUS_KAFKA_SASL_PASSWORD",
    "EVENT_BUS_KAFKA_SSL_CA_LOCATION",
    "EVENT_BUS_KAFKA_SSL_CERTIFICATE_LOCATION",
    "EVENT_BUS_KAFKA_SSL_KEY_LOCATION",
    "EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS",
    "EVENT_BUS_KAFKA_CLIENT_CONFIG",
    // Read by the Python package; accepted here for the same meaning.
    "EVENT_BUS_KAFKA_POLL_INTERVAL_SEC",
];

pub use openedx_events::config::secret::{Secret, MASK};

/// `security.protocol` values.
const PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
/// `sasl.mechanism` values.
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The Kafka backend's settings, validated.
///
/// ```
/// use event_bus_kafka::KafkaSettings;
/// use openedx_events::config::Settings;
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092");
/// s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "http://registry:8081");
/// s.set("EVENT_BUS_KAFKA_API_KEY", "key");
/// s.set("EVENT_BUS_KAFKA_API_SECRET", "hunter2");
/// let k = KafkaSettings::from_settings(&s).unwrap();
/// let dump = k.redacted_config(&k.common_config());
/// assert!(dump.contains(&("security.protocol".to_string(), "SASL_SSL".to_string())));
/// assert!(dump.contains(&("sasl.password".to_string(), "********".to_string())));
/// assert!(!format!("{k:?}").contains("hunter2"));
/// assert_eq!(k.redactor().scrub("auth failed: hunter2"), "auth failed: ********");
///
/// s.set("EVENT_BUS_KAFKA_SASL_MECHANISM", "GSSAPI");
/// let e = KafkaSettings::from_settings(&s).unwrap_err();
/// assert_eq!(e.key, "EVENT_BUS_KAFKA_SASL_MECHANISM");
/// ```
#[derive(Clone)]
pub struct KafkaSettings {
    /// `EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS` (required).
    pub bootstrap_servers: String,
    /// `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL` (required).
    pub schema_registry_url: String,
    /// `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY` / `_API_SECRET` (basic auth).
    pub schema_registry_auth: Option<(String, Secret)>,
    /// `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT` (seconds, default 10).
    pub schema_registry_timeout: Duration,
    /// `EVENT_BUS_KAFKA_SCHEMA_REGISTRY_UNKNOWN_ID_GRACE` (seconds, default
    /// 300): how long a schema id the registry answers `404` for is looked
    /// for again (a lagging replica) before its messages are unusable.
    pub schema_registry_unknown_id_grace: Duration,
    /// `security.protocol` (upper case), if set.
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`, if set.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username` / `sasl.password`, if set.
    pub sasl_credentials: Option<(String, Secret)>,
    /// `ssl.ca.location`.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`.
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`.
    pub ssl_key_location: Option<String>,
    /// `session.timeout.ms` for consumers.
    pub session_timeout_ms: Option<u64>,
    /// Extra librdkafka properties for both clients.
    pub client_config: BTreeMap<String, String>,
    /// `client.id`: the service name, when set.
    pub client_id: Option<String>,
    /// The dead-letter topics consumers of this transport publish to, which
    /// a subscription creates when missing (from the core's
    /// `EVENT_BUS_DEAD_LETTER_ENABLED`, `EVENT_BUS_DEAD_LETTER_TOPIC` and
    /// `EVENT_BUS_TOPIC_PREFIX`).
    pub dead_letters: DeadLetterTopics,
}

/// Which dead-letter topic a consumer of a topic publishes to, as the
/// core's consumer options name it: `<full topic>-dlq`, or
/// `EVENT_BUS_DEAD_LETTER_TOPIC` (with the prefix); none when dead
/// letters are off.
///
/// ```
/// use event_bus_kafka::settings::DeadLetterTopics;
/// let d = DeadLetterTopics::default();
/// assert_eq!(d.for_topic("dev-user-login").as_deref(), Some("dev-user-login-dlq"));
/// assert_eq!(d.for_topic("dev-user-login-dlq"), None, "a dead-letter topic has none");
/// let d = DeadLetterTopics { enabled: true, topic: Some("failed".into()), prefix: Some("dev".into()) };
/// assert_eq!(d.for_topic("dev-user-login").as_deref(), Some("dev-failed"));
/// assert_eq!(DeadLetterTopics { enabled: false, ..d }.for_topic("dev-user-login"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterTopics {
    /// `EVENT_BUS_DEAD_LETTER_ENABLED` (default true).
    pub enabled: bool,
    /// `EVENT_BUS_DEAD_LETTER_TOPIC`, without prefix.
    pub topic: Option<String>,
    /// `EVENT_BUS_TOPIC_PREFIX`.
    pub prefix: Option<String>,
}

impl Default for DeadLetterTopics {
    fn default() -> Self {
        DeadLetterTopics {
            enabled: true,
            topic: None,
            prefix: None,
        }
    }
}

impl DeadLetterTopics {
    /// The full dead-letter topic of consumers of `full_topic`.
    pub fn for_topic(&self, full_topic: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let dlq = match &self.topic {
            Some(t) => openedx_events::config::full_topic(self.prefix.as_deref(), t),
            None => format!("{full_topic}-dlq"),
        };
        // Reading a dead-letter topic (requeue) has no dead letters of its own.
        if dlq == full_topic || full_topic.ends_with("-dlq") {
            return None;
        }
        Some(dlq)
    }
}

fn non_empty(settings: &Settings, key: &str) -> Result<Option<String>, ConfigError> {
    Ok(settings.string(key)?.filter(|s| !s.trim().is_empty()))
}

fn existing_file(settings: &Settings, key: &str) -> Result<Option<String>, ConfigError> {
    let Some(path) = non_empty(settings, key)? else {
        return Ok(None);
    };
    if !std::path::Path::new(&path).exists() {
        return Err(ConfigError::new(key, format!("file {path:?} does not exist")));
    }
    Ok(Some(path))
}

impl KafkaSettings {
    /// Read and check the settings; an error names the offending key.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let bootstrap_servers = settings.required_string("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS")?;
        let schema_registry_url = settings.required_string("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL")?;
        if !(schema_registry_url.starts_with("http://") || schema_registry_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL",
                format!(
                    "expected an http:// or https:// URL, found {:?}",
                    redact_url(&schema_registry_url)
                ),
            ));
        }
        let reg_key = non_empty(settings, "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY")?;
        let reg_secret = non_empty(settings, "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET")?;
        // Python sends "key:secret" as basic auth, and ":" means none.
        let schema_registry_auth = match (reg_key, reg_secret) {
            (None, None) => None,
            (k, s) => Some((k.unwrap_or_default(), Secret::new(s.unwrap_or_default()))),
        };
        let schema_registry_timeout = settings
            .seconds("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT")?
            .unwrap_or(Duration::from_secs(10));
        if schema_registry_timeout.is_zero() {
            return Err(ConfigError::new(
                "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT",
                "must be more than 0 seconds",
            ));
        }
        let schema_registry_unknown_id_grace = settings
            .seconds("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_UNKNOWN_ID_GRACE")?
            .unwrap_or(crate::registry::UNKNOWN_ID_GRACE);

        let api_key = non_empty(settings, "EVENT_BUS_KAFKA_API_KEY")?;
        let api_secret = non_empty(settings, "EVENT_BUS_KAFKA_API_SECRET")?;
        let sasl_username = non_empty(settings, "EVENT_BUS_KAFKA_SASL_USERNAME")?;
        let sasl_password = non_empty(settings, "EVENT_BUS_KAFKA_SASL_PASSWORD")?;
        let mut security_protocol =
            non_empty(settings, "EVENT_BUS_KAFKA_SECURITY_PROTOCOL")?.map(|p| p.trim().to_ascii_uppercase());
        if let Some(p) = &security_protocol {
            if !PROTOCOLS.contains(&p.as_str()) {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SECURITY_PROTOCOL",
                    format!("expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, found {p:?}"),
                ));
            }
        }
        let mut sasl_mechanism =
            non_empty(settings, "EVENT_BUS_KAFKA_SASL_MECHANISM")?.map(|m| m.trim().to_ascii_uppercase());
        if let Some(m) = &sasl_mechanism {
            if !MECHANISMS.contains(&m.as_str()) {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SASL_MECHANISM",
                    format!("expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, found {m:?}"),
                ));
            }
        }
        let sasl_credentials = match (api_key, api_secret, sasl_username, sasl_password) {
            (None, None, None, None) => None,
            // As Python: both API key and secret mean SASL_SSL + PLAIN.
            (Some(k), Some(s), None, None) => {
                security_protocol.get_or_insert_with(|| "SASL_SSL".into());
                sasl_mechanism.get_or_insert_with(|| "PLAIN".into());
                Some((k, Secret::new(s)))
            }
            (None, None, Some(u), Some(p)) => {
                security_protocol.get_or_insert_with(|| "SASL_SSL".into());
                sasl_mechanism.get_or_insert_with(|| "PLAIN".into());
                Some((u, Secret::new(p)))
            }
            (Some(_), None, _, _) => {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_API_SECRET",
                    "is required when EVENT_BUS_KAFKA_API_KEY is set",
                ))
            }
            (None, Some(_), _, _) => {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_API_KEY",
                    "is required when EVENT_BUS_KAFKA_API_SECRET is set",
                ))
            }
            (Some(_), Some(_), _, _) => return Err(ConfigError::new(
                "EVENT_BUS_KAFKA_SASL_USERNAME",
                "set either EVENT_BUS_KAFKA_API_KEY/_API_SECRET or EVENT_BUS_KAFKA_SASL_USERNAME/_PASSWORD, not both",
            )),
            (None, None, Some(_), None) => {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SASL_PASSWORD",
                    "is required when EVENT_BUS_KAFKA_SASL_USERNAME is set",
                ))
            }
            (None, None, None, Some(_)) => {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SASL_USERNAME",
                    "is required when EVENT_BUS_KAFKA_SASL_PASSWORD is set",
                ))
            }
        };
        if sasl_credentials.is_none() {
            if let Some(m) = &sasl_mechanism {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SASL_MECHANISM",
                    format!("{m} needs EVENT_BUS_KAFKA_SASL_USERNAME and EVENT_BUS_KAFKA_SASL_PASSWORD (or EVENT_BUS_KAFKA_API_KEY and _API_SECRET)"),
                ));
            }
            if matches!(security_protocol.as_deref(), Some("SASL_SSL" | "SASL_PLAINTEXT")) {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SECURITY_PROTOCOL",
                    "a SASL protocol needs EVENT_BUS_KAFKA_SASL_USERNAME and EVENT_BUS_KAFKA_SASL_PASSWORD (or EVENT_BUS_KAFKA_API_KEY and _API_SECRET)",
                ));
            }
        } else if matches!(security_protocol.as_deref(), Some("PLAINTEXT" | "SSL")) {
            return Err(ConfigError::new(
                "EVENT_BUS_KAFKA_SECURITY_PROTOCOL",
                "SASL credentials are set, so the protocol must be SASL_SSL or SASL_PLAINTEXT",
            ));
        }
        let ssl_ca_location = existing_file(settings, "EVENT_BUS_KAFKA_SSL_CA_LOCATION")?;
        let ssl_certificate_location = existing_file(settings, "EVENT_BUS_KAFKA_SSL_CERTIFICATE_LOCATION")?;
        let ssl_key_location = existing_file(settings, "EVENT_BUS_KAFKA_SSL_KEY_LOCATION")?;
        if ssl_certificate_location.is_some() != ssl_key_location.is_some() {
            let missing = if ssl_key_location.is_none() {
                "EVENT_BUS_KAFKA_SSL_KEY_LOCATION"
            } else {
                "EVENT_BUS_KAFKA_SSL_CERTIFICATE_LOCATION"
            };
            return Err(ConfigError::new(
                missing,
                "a client certificate needs both EVENT_BUS_KAFKA_SSL_CERTIFICATE_LOCATION and EVENT_BUS_KAFKA_SSL_KEY_LOCATION",
            ));
        }
        let session_timeout_ms = settings.u64("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS")?;
        if let Some(ms) = session_timeout_ms {
            if !(1..=3_600_000).contains(&ms) {
                return Err(ConfigError::new(
                    "EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS",
                    "expected milliseconds between 1 and 3600000",
                ));
            }
        }
        let client_config = client_config::read_client_config(settings)?;
        let client_id = non_empty(settings, "EVENTS_SERVICE_NAME")?.or(non_empty(settings, "SERVICE_VARIANT")?);
        let dead_letters = DeadLetterTopics {
            enabled: settings.bool("EVENT_BUS_DEAD_LETTER_ENABLED")?.unwrap_or(true),
            topic: non_empty(settings, "EVENT_BUS_DEAD_LETTER_TOPIC")?,
            prefix: non_empty(settings, "EVENT_BUS_TOPIC_PREFIX")?,
        };
        let k = KafkaSettings {
            bootstrap_servers,
            schema_registry_url,
            schema_registry_auth,
            schema_registry_timeout,
            schema_registry_unknown_id_grace,
            security_protocol,
            sasl_mechanism,
            sasl_credentials,
            ssl_ca_location,
            ssl_certificate_location,
            ssl_key_location,
            session_timeout_ms,
            client_config,
            client_id,
            dead_letters,
        };
        k.check_with_librdkafka()?;
        Ok(k)
    }

    /// Settings for a broker and registry without authentication (tests,
    /// local development).
    ///
    /// ```
    /// use event_bus_kafka::KafkaSettings;
    /// let k = KafkaSettings::new("127.0.0.1:9092", "http://127.0.0.1:8081");
    /// assert_eq!(k.max_message_bytes(), 1_000_000);
    /// ```
    pub fn new(bootstrap_servers: impl Into<String>, schema_registry_url: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            schema_registry_url: schema_registry_url.into(),
            schema_registry_auth: None,
            schema_registry_timeout: Duration::from_secs(10),
            schema_registry_unknown_id_grace: crate::registry::UNKNOWN_ID_GRACE,
            security_protocol: None,
            sasl_mechanism: None,
            sasl_credentials: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            session_timeout_ms: None,
            client_config: BTreeMap::new(),
            client_id: None,
            dead_letters: DeadLetterTopics::default(),
        }
    }
}
