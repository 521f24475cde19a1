//! The secrets of the Kafka settings: which librdkafka properties hold
//! one, the masked `Debug` output and configuration dumps, and the
//! [`Redactor`] that scrubs them from any text librdkafka or the registry
//! client gives back.

use std::collections::BTreeMap;
use std::fmt;

use openedx_events::config::secret::{is_secret_setting, redact_url, Redactor, MASK};
use rdkafka::ClientConfig;

use super::KafkaSettings;

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

impl KafkaSettings {
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
