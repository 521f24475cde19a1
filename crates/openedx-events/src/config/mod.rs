//! Configuration: settings named like the Django settings of the Python peers
//! (`EVENT_BUS_*`), read from the environment or a TOML file, and the
//! producer configuration that maps event types to topics.

pub mod key;
pub mod producer;
pub mod secret;
pub mod settings;

pub use key::{extract_event_key, EventKey, KeyError};
pub use producer::{merge_producer_configs, ProducerConfig, TopicConfig};
pub use secret::{redact_url, Redactor, Secret};
pub use settings::Settings;

/// A configuration problem, naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {key}: {message}")]
pub struct ConfigError {
    /// The setting or entry, e.g. `EVENT_BUS_REDIS_CONNECTION_URL` or
    /// `EVENT_BUS_PRODUCER_CONFIG["org.openedx..."]["topic"].enabled`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A new error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// `<prefix>-<topic>`, or the topic alone when the prefix is empty
/// (`EVENT_BUS_TOPIC_PREFIX`, as `get_full_topic` in the Python backends).
///
/// ```
/// use openedx_events::config::full_topic;
/// assert_eq!(full_topic(Some("stage"), "user-logins"), "stage-user-logins");
/// assert_eq!(full_topic(Some(""), "user-logins"), "user-logins");
/// assert_eq!(full_topic(None, "user-logins"), "user-logins");
/// ```
pub fn full_topic(prefix: Option<&str>, topic: &str) -> String {
    match prefix {
        Some(p) if !p.is_empty() => format!("{p}-{topic}"),
        _ => topic.to_string(),
    }
}
