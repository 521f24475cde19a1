//! The Kafka settings (Django names) and the librdkafka configuration built
//! from them. Secrets never appear in `Debug` output, config dumps or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use openedx_events::config::secret::{is_secret_setting, redact_url, Redactor};
use openedx_events::config::{ConfigError, Settings};
use rdkafka::ClientConfig;
use serde_json::Value as Json;

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

/// librdkafka properties whose values are secrets.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];

/// librdkafka properties the backend owns: setting them through
/// `EVENT_BUS_KAFKA_CLIENT_CONFIG` would break delivery guarantees or
/// duplicate a setting.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"),
    ("group.id", "the consumer group comes from the consumer"),
    ("enable.auto.commit", "the backend commits acknowledged offsets itself"),
    (
        "enable.auto.offset.store",
        "the backend commits acknowledged offsets itself",
    ),
    ("auto.offset.reset", "use EVENT_BUS_CONSUMER_START (earliest or latest)"),
];

pub use openedx_events::config::secret::{Secret, MASK};

/// Whether a librdkafka property holds a secret: the known ones, and any
/// whose name says so ([`is_secret_setting`]: `password`, `secret`,
/// `token`, `key.pem`...).
///
/// ```
/// use event_bus_kafka::settings::is_secret_property;
/// assert!(is_secret_property("sasl.password"));
/// assert!(is_secret_property("ssl.key.password"));
/// assert!(is_secret_property("sasl.oauthbearer.config"));
/// assert!(!is_secret_property("sasl.username"));
/// ```
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PROPERTIES.contains(&n.as_str()) || is_secret_setting(&n)
}

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

/// Secrets masked: the registry URL's credentials, and the values of
/// secret `client_config` properties.
impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client_config: BTreeMap<&str, &str> = self
            .client_config
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_property(k) { MASK } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("schema_registry_url", &redact_url(&self.schema_registry_url))
            .field("schema_registry_auth", &self.schema_registry_auth)
            .field("schema_registry_timeout", &self.schema_registry_timeout)
            .field(
                "schema_registry_unknown_id_grace",
                &self.schema_registry_unknown_id_grace,
            )
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_credentials", &self.sasl_credentials)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("client_config", &client_config)
            .field("client_id", &self.client_id)
            .field("dead_letters", &self.dead_letters)
            .finish()
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

/// A property value as librdkafka wants it (text).
fn property_text(key: &str, name: &str, value: &Json) -> Result<String, ConfigError> {
    match value {
        Json::String(s) => Ok(s.clone()),
        Json::Bool(b) => Ok(b.to_string()),
        Json::Number(n) => Ok(n.to_string()),
        _ => Err(ConfigError::new(
            format!("{key}[{name:?}]"),
            "expected a string, number or boolean",
        )),
    }
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
        let mut client_config = BTreeMap::new();
        const CC: &str = "EVENT_BUS_KAFKA_CLIENT_CONFIG";
        match settings.structured(CC)? {
            None => {}
            Some(Json::Object(map)) => {
                for (name, value) in map {
                    if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(p, _)| *p == name) {
                        return Err(ConfigError::new(
                            format!("{CC}[{name:?}]"),
                            format!("cannot be set here: {why}"),
                        ));
                    }
                    let text = property_text(CC, &name, &value)?;
                    client_config.insert(name, text);
                }
            }
            Some(_) => {
                return Err(ConfigError::new(
                    CC,
                    "expected a table of librdkafka properties, e.g. {\"linger.ms\": 20}",
                ))
            }
        }
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

    /// Let librdkafka check every property now, so a bad one is a
    /// configuration error at start-up naming the setting.
    fn check_with_librdkafka(&self) -> Result<(), ConfigError> {
        for (name, config) in [
            ("producer", self.producer_config()),
            ("consumer", self.consumer_config("check")),
        ] {
            if let Err(e) = config.create_native_config() {
                let text = match &e {
                    rdkafka::error::KafkaError::ClientConfig(_, desc, key, _value) => {
                        format!("librdkafka rejects {key:?} for the {name}: {desc}")
                    }
                    other => format!("librdkafka rejects the {name} configuration: {other}"),
                };
                let key = match &e {
                    rdkafka::error::KafkaError::ClientConfig(_, _, key, _) if self.client_config.contains_key(key) => {
                        format!("EVENT_BUS_KAFKA_CLIENT_CONFIG[{key:?}]")
                    }
                    _ => "EVENT_BUS_KAFKA_CLIENT_CONFIG".to_string(),
                };
                return Err(ConfigError::new(key, self.redactor().scrub(&text).into_owned()));
            }
        }
        Ok(())
    }

    /// The properties both clients share.
    pub fn common_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        if let Some(id) = &self.client_id {
            c.set("client.id", id);
        }
        if let Some(p) = &self.security_protocol {
            c.set("security.protocol", p);
        }
        if let Some(m) = &self.sasl_mechanism {
            c.set("sasl.mechanism", m);
        }
        if let Some((user, password)) = &self.sasl_credentials {
            c.set("sasl.username", user);
            c.set("sasl.password", password.expose());
        }
        if let Some(p) = &self.ssl_ca_location {
            c.set("ssl.ca.location", p);
        }
        if let Some(p) = &self.ssl_certificate_location {
            c.set("ssl.certificate.location", p);
        }
        if let Some(p) = &self.ssl_key_location {
            c.set("ssl.key.location", p);
        }
        c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        c
    }

    /// The producer configuration: idempotent, `acks=all`, then the extra
    /// properties.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.common_config();
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        for (k, v) in &self.client_config {
            c.set(k, v);
        }
        c
    }

    /// The consumer configuration for `group`: manual commits of
    /// acknowledged offsets only, then the extra properties. The start
    /// position (`auto.offset.reset`) is set by the subscription.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.common_config();
        c.set("group.id", group);
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("enable.partition.eof", "false");
        if let Some(ms) = self.session_timeout_ms {
            c.set("session.timeout.ms", ms.to_string());
        }
        for (k, v) in &self.client_config {
            c.set(k, v);
        }
        c
    }

    /// The largest message librdkafka accepts (`message.max.bytes`, 1,000,000
    /// by default).
    pub fn max_message_bytes(&self) -> usize {
        self.client_config
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// The producer's local queue bound (`queue.buffering.max.messages`,
    /// 100,000 by default).
    pub fn producer_queue_max_messages(&self) -> usize {
        self.client_config
            .get("queue.buffering.max.messages")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    }

    /// A configuration as name/value pairs, secrets masked: for logs.
    pub fn redacted_config(&self, config: &ClientConfig) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = config
            .config_map()
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    MASK.to_string()
                } else {
                    v.to_string()
                };
                (k.to_string(), v)
            })
            .collect();
        out.sort();
        out
    }

    /// The secrets of these settings (SASL password, registry credentials,
    /// in its URL too, secret `client_config` values), to scrub from any
    /// text librdkafka or the registry client gives back.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::from_url(&self.schema_registry_url);
        if let Some((_, s)) = &self.sasl_credentials {
            r.add(s);
        }
        if let Some((_, s)) = &self.schema_registry_auth {
            r.add(s);
        }
        for (k, v) in &self.client_config {
            if is_secret_property(k) {
                r.add_text(v);
            }
        }
        r
    }
}

/// `text` with every secret of `settings` replaced by [`MASK`] (through
/// [`KafkaSettings::redactor`]).
pub(crate) fn mask_text(text: &str, settings: &KafkaSettings) -> String {
    settings.redactor().scrub(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        let mut s = Settings::new();
        s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092");
        s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "http://registry:8081");
        s
    }

    fn dump(k: &KafkaSettings, c: &ClientConfig) -> BTreeMap<String, String> {
        k.redacted_config(c).into_iter().collect()
    }

    #[test]
    fn minimal_settings_match_python_plus_our_guarantees() {
        let k = KafkaSettings::from_settings(&base()).unwrap();
        let p = dump(&k, &k.producer_config());
        assert_eq!(p["bootstrap.servers"], "b1:9092,b2:9092");
        assert_eq!(p["enable.idempotence"], "true");
        assert_eq!(p["acks"], "all");
        assert!(!p.contains_key("security.protocol"));
        assert!(!p.contains_key("client.id"));
        let c = dump(&k, &k.consumer_config("grp"));
        assert_eq!(c["group.id"], "grp");
        assert_eq!(c["enable.auto.commit"], "false");
        assert_eq!(c["enable.auto.offset.store"], "false");
        assert!(!c.contains_key("enable.idempotence"));
        assert_eq!(k.max_message_bytes(), 1_000_000);
        assert!(k.schema_registry_auth.is_none());
    }

    #[test]
    fn required_settings_are_named() {
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"
        );
        let mut s = Settings::new();
        s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "b:9092");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL"
        );
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "registry:8081");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL"
        );
    }

    #[test]
    fn api_key_and_secret_mean_sasl_ssl_plain_as_python() {
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_API_KEY", "the-key");
        s.set("EVENT_BUS_KAFKA_API_SECRET", "s3cr3t-value");
        let k = KafkaSettings::from_settings(&s).unwrap();
        let p = dump(&k, &k.producer_config());
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.mechanism"], "PLAIN");
        assert_eq!(p["sasl.username"], "the-key");
        assert_eq!(p["sasl.password"], MASK);
        assert!(!format!("{k:?}").contains("s3cr3t-value"));
        assert!(!format!("{:?}", k.redacted_config(&k.consumer_config("g"))).contains("s3cr3t-value"));
        assert_eq!(
            mask_text("auth failed for s3cr3t-value", &k),
            "auth failed for ********"
        );
    }

    #[test]
    fn half_set_credentials_are_errors() {
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_API_KEY", "k");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_API_SECRET"
        );
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_SASL_USERNAME", "u");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_SASL_PASSWORD"
        );
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_SASL_MECHANISM"
        );
    }

    #[test]
    fn scram_with_explicit_protocol_and_tls_files() {
        let dir = std::env::temp_dir().join(format!("kafka-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_SASL_MECHANISM", "scram-sha-256");
        s.set("EVENT_BUS_KAFKA_SASL_USERNAME", "alice");
        s.set("EVENT_BUS_KAFKA_SASL_PASSWORD", "pw-123456");
        s.set("EVENT_BUS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT");
        s.set("EVENT_BUS_KAFKA_SSL_CA_LOCATION", ca.to_str().unwrap());
        s.set("EVENTS_SERVICE_NAME", "lms");
        s.set("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS", "6000");
        let k = KafkaSettings::from_settings(&s).unwrap();
        let c = dump(&k, &k.consumer_config("g"));
        assert_eq!(c["sasl.mechanism"], "SCRAM-SHA-256");
        assert_eq!(c["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(c["sasl.password"], MASK);
        assert_eq!(c["ssl.ca.location"], ca.to_str().unwrap());
        assert_eq!(c["client.id"], "lms");
        assert_eq!(c["session.timeout.ms"], "6000");
        s.set("EVENT_BUS_KAFKA_SSL_KEY_LOCATION", "/does/not/exist.pem");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_SSL_KEY_LOCATION"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn service_variant_is_the_fallback_client_id() {
        let mut s = base();
        s.set("SERVICE_VARIANT", "cms");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap().client_id.as_deref(),
            Some("cms")
        );
        s.set("EVENTS_SERVICE_NAME", "discovery");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap().client_id.as_deref(),
            Some("discovery")
        );
    }

    #[test]
    fn client_config_table_is_applied_checked_and_masked() {
        let mut s = base();
        s.set(
            "EVENT_BUS_KAFKA_CLIENT_CONFIG",
            serde_json::json!({"linger.ms": 20, "message.max.bytes": 2000000, "ssl.key.password": "kp-secret"}),
        );
        let k = KafkaSettings::from_settings(&s).unwrap();
        assert_eq!(k.max_message_bytes(), 2_000_000);
        let p = dump(&k, &k.producer_config());
        assert_eq!(p["linger.ms"], "20");
        assert_eq!(p["ssl.key.password"], MASK);

        s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", r#"{"enable.auto.commit": true}"#);
        let e = KafkaSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, r#"EVENT_BUS_KAFKA_CLIENT_CONFIG["enable.auto.commit"]"#);

        s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", r#"{"no.such.property": 1}"#);
        let e = KafkaSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, r#"EVENT_BUS_KAFKA_CLIENT_CONFIG["no.such.property"]"#, "{e:?}");

        s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", r#"{"linger.ms": "soon"}"#);
        let e = KafkaSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, r#"EVENT_BUS_KAFKA_CLIENT_CONFIG["linger.ms"]"#, "{e:?}");

        s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", "[1, 2]");
        assert_eq!(
            KafkaSettings::from_settings(&s).unwrap_err().key,
            "EVENT_BUS_KAFKA_CLIENT_CONFIG"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (key, value) in [
            ("EVENT_BUS_KAFKA_SECURITY_PROTOCOL", "TLS"),
            ("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS", "soon"),
            ("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS", "0"),
            ("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT", "-1"),
        ] {
            let mut s = base();
            s.set(key, value);
            assert_eq!(KafkaSettings::from_settings(&s).unwrap_err().key, key, "{key}={value}");
        }
    }

    #[test]
    fn registry_credentials_are_basic_auth_and_masked() {
        let mut s = base();
        s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY", "rk");
        s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET", "reg-secret-1");
        let k = KafkaSettings::from_settings(&s).unwrap();
        let (user, pass) = k.schema_registry_auth.clone().unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("rk", "reg-secret-1"));
        assert!(!format!("{k:?}").contains("reg-secret-1"));
        assert_eq!(k.redactor().scrub("x reg-secret-1 y"), "x ******** y");
    }

    #[test]
    fn debug_shows_no_secret_even_with_url_characters() {
        let mut s = base();
        s.set(
            "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL",
            "https://rkey:Yv/8q@Lm@registry.example:8081/api",
        );
        s.set("EVENT_BUS_KAFKA_SASL_USERNAME", "alice");
        s.set("EVENT_BUS_KAFKA_SASL_PASSWORD", "Qz/3x@Wp");
        s.set(
            "EVENT_BUS_KAFKA_CLIENT_CONFIG",
            serde_json::json!({"ssl.key.password": "Kd/7r@Hn", "sasl.oauthbearer.config": "Tc/5s@Gb", "linger.ms": 5}),
        );
        let k = KafkaSettings::from_settings(&s).unwrap();
        let debug = format!("{k:?}");
        for piece in ["Yv", "8q", "Lm@", "Qz", "3x", "Wp", "Kd", "7r", "Hn", "Tc", "5s", "Gb"] {
            assert!(!debug.contains(piece), "{piece} in {debug}");
        }
        assert!(
            debug.contains("https://rkey:********@registry.example:8081/api"),
            "{debug}"
        );
        assert!(debug.contains("\"linger.ms\": \"5\""), "{debug}");
        let r = k.redactor();
        assert_eq!(r.scrub("Yv/8q@Lm Qz/3x@Wp Kd/7r@Hn"), "******** ******** ********");
        let dump = format!("{:?}", k.redacted_config(&k.producer_config()));
        for piece in ["Qz", "Kd", "Tc"] {
            assert!(!dump.contains(piece), "{piece} in {dump}");
        }
    }
}
