//! The librdkafka configuration built from the settings: the properties
//! both clients share, the producer's and the consumer's, the
//! `EVENT_BUS_KAFKA_CLIENT_CONFIG` table of extra properties (read, checked
//! against the properties the backend owns, and checked by librdkafka at
//! start-up), and the limits read from it.

use std::collections::BTreeMap;

use openedx_events::config::{ConfigError, Settings};
use rdkafka::ClientConfig;
use serde_json::Value as Json;

use super::KafkaSettings;

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

/// Read `EVENT_BUS_KAFKA_CLIENT_CONFIG`: a table of librdkafka properties,
/// none of them one the backend owns; each value as text.
pub(super) fn read_client_config(settings: &Settings) -> Result<BTreeMap<String, String>, ConfigError> {
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
    Ok(client_config)
}

impl KafkaSettings {
    /// Let librdkafka check every property now, so a bad one is a
    /// configuration error at start-up naming the setting.
    pub(super) fn check_with_librdkafka(&self) -> Result<(), ConfigError> {
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
}
