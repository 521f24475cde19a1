//! `EVENT_BUS_PRODUCER_CONFIG`: event type → topic → `{event_key_field, enabled}`.
//!
//! ```
//! use openedx_events::config::ProducerConfig;
//! use openedx_events::signal::Registry;
//! let toml = r#"
//! ["org.openedx.content_authoring.xblock.published.v1".content-authoring-xblock-lifecycle]
//! event_key_field = "xblock_info.usage_key"
//! enabled = true
//! "#;
//! let config = ProducerConfig::from_toml_str(toml, &Registry::global()).unwrap();
//! let topics = config.topics_for("org.openedx.content_authoring.xblock.published.v1");
//! assert_eq!(topics[0].0, "content-authoring-xblock-lifecycle");
//!
//! // Errors name the offending entry.
//! let bad = r#"["org.openedx.content_authoring.xblock.published.v1".t]
//! event_key_field = "xblock_info.nope"
//! enabled = true"#;
//! let e = ProducerConfig::from_toml_str(bad, &Registry::global()).unwrap_err();
//! assert!(e.key.contains("event_key_field"), "{e}");
//! ```

use serde_json::{Map, Value as Json};

use super::key::check_key_path;
use super::ConfigError;
use crate::signal::Registry;

/// The name of the setting, used in error messages.
pub const SETTING: &str = "EVENT_BUS_PRODUCER_CONFIG";

/// How one event type goes to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Dotted path to the message key in the event data.
    pub event_key_field: String,
    /// Whether to produce to this topic.
    pub enabled: bool,
}

/// A validated producer configuration, in the order it was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerConfig {
    entries: Vec<(String, Vec<(String, TopicConfig)>)>,
}

fn entry_key(event_type: &str, topic: Option<&str>, field: Option<&str>) -> String {
    let mut k = format!("{SETTING}[{event_type:?}]");
    if let Some(t) = topic {
        k.push_str(&format!("[{t:?}]"));
    }
    if let Some(f) = field {
        k.push('.');
        k.push_str(f);
    }
    k
}

impl ProducerConfig {
    /// An empty configuration (nothing is produced).
    pub fn empty() -> Self {
        ProducerConfig::default()
    }

    /// Parse and validate TOML text.
    pub fn from_toml_str(text: &str, registry: &Registry) -> Result<Self, ConfigError> {
        let value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        let json = serde_json::to_value(value).map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        Self::from_json(&json, registry)
    }

    /// Parse and validate JSON text.
    pub fn from_json_str(text: &str, registry: &Registry) -> Result<Self, ConfigError> {
        let json: Json = serde_json::from_str(text).map_err(|e| ConfigError::new(SETTING, e.to_string()))?;
        Self::from_json(&json, registry)
    }

    /// Validate a JSON value: every event type must be known and
    /// bus-capable; every topic entry needs a string `event_key_field` that
    /// names a non-optional primitive field of that event, and a boolean
    /// `enabled`. Unknown extra keys in an entry are allowed, as in Python.
    pub fn from_json(json: &Json, registry: &Registry) -> Result<Self, ConfigError> {
        let Json::Object(map) = json else {
            return Err(ConfigError::new(
                SETTING,
                "should be a table/dictionary with event types as keys",
            ));
        };
        let mut entries = Vec::with_capacity(map.len());
        for (event_type, topics) in map {
            let Json::Object(topics) = topics else {
                return Err(ConfigError::new(
                    entry_key(event_type, None, None),
                    "configuration for an event type should be a table of topics",
                ));
            };
            let Some(signal) = registry.get(event_type) else {
                return Err(ConfigError::new(
                    entry_key(event_type, None, None),
                    format!("no event type named {event_type:?}"),
                ));
            };
            if !signal.event_type().is_bus_capable() {
                return Err(ConfigError::new(
                    entry_key(event_type, None, None),
                    "this event type cannot be serialized for the event bus",
                ));
            }
            let mut topic_list = Vec::with_capacity(topics.len());
            for (topic, cfg) in topics {
                let Json::Object(cfg) = cfg else {
                    return Err(ConfigError::new(
                        entry_key(event_type, Some(topic), None),
                        "topic configuration should be a table with event_key_field and enabled",
                    ));
                };
                let key_field = match cfg.get("event_key_field") {
                    Some(Json::String(s)) => s.clone(),
                    Some(other) => {
                        return Err(ConfigError::new(
                            entry_key(event_type, Some(topic), Some("event_key_field")),
                            format!("expected a string, found {other}"),
                        ))
                    }
                    None => {
                        return Err(ConfigError::new(
                            entry_key(event_type, Some(topic), Some("event_key_field")),
                            "missing",
                        ))
                    }
                };
                let enabled = match cfg.get("enabled") {
                    Some(Json::Bool(b)) => *b,
                    Some(other) => {
                        return Err(ConfigError::new(
                            entry_key(event_type, Some(topic), Some("enabled")),
                            format!("expected a boolean, found {other}"),
                        ))
                    }
                    None => {
                        return Err(ConfigError::new(
                            entry_key(event_type, Some(topic), Some("enabled")),
                            "missing",
                        ))
                    }
                };
                check_key_path(signal.event_type(), &key_field).map_err(|e| {
                    ConfigError::new(
                        entry_key(event_type, Some(topic), Some("event_key_field")),
                        e.to_string(),
                    )
                })?;
                topic_list.push((
                    topic.clone(),
                    TopicConfig {
                        event_key_field: key_field,
                        enabled,
                    },
                ));
            }
            entries.push((event_type.clone(), topic_list));
        }
        Ok(ProducerConfig { entries })
    }

    /// Event types that have a configuration, in order.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(t, _)| t.as_str())
    }

    /// The topics configured for an event type (enabled or not), in order.
    pub fn topics_for(&self, event_type: &str) -> &[(String, TopicConfig)] {
        self.entries
            .iter()
            .find(|(t, _)| t == event_type)
            .map(|(_, topics)| topics.as_slice())
            .unwrap_or(&[])
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Merge two raw producer configurations as openedx-events'
/// `merge_producer_configs` does: neither input changes; for each topic of
/// `overrides`, a present non-null `enabled` or `event_key_field` replaces the
/// original's; new event types and topics are added; other keys are ignored.
///
/// ```
/// use openedx_events::config::merge_producer_configs;
/// use serde_json::json;
/// let a = json!({"e0": {"a": {"event_key_field": "f", "enabled": true}, "b": {"event_key_field": "f", "enabled": true}}});
/// let b = json!({"e0": {"a": {"enabled": false}, "d": {"event_key_field": "g", "enabled": true}}});
/// let m = merge_producer_configs(&a, &b);
/// assert_eq!(m["e0"]["a"], json!({"event_key_field": "f", "enabled": false}));
/// assert_eq!(m["e0"]["d"]["event_key_field"], "g");
/// assert_eq!(m["e0"]["b"]["enabled"], true);
/// ```
pub fn merge_producer_configs(original: &Json, overrides: &Json) -> Json {
    let mut merged = original.clone();
    let (Json::Object(out), Json::Object(over)) = (&mut merged, overrides) else {
        return merged;
    };
    for (event_type, topics) in over {
        let Json::Object(topics) = topics else {
            continue;
        };
        let slot = out
            .entry(event_type.clone())
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        let Json::Object(existing_topics) = slot else {
            continue;
        };
        for (topic, cfg) in topics {
            let target = existing_topics
                .entry(topic.clone())
                .or_insert_with(|| Json::Object(Map::new()));
            if !target.is_object() {
                *target = Json::Object(Map::new());
            }
            let (Json::Object(target), Json::Object(cfg)) = (target, cfg) else {
                continue;
            };
            for key in ["enabled", "event_key_field"] {
                if let Some(v) = cfg.get(key).filter(|v| !v.is_null()) {
                    target.insert(key.to_string(), v.clone());
                }
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const XB: &str = "org.openedx.content_authoring.xblock.published.v1";

    fn err(j: Json) -> ConfigError {
        ProducerConfig::from_json(&j, &Registry::global()).unwrap_err()
    }

    #[test]
    fn errors_name_the_offending_entry() {
        let e = err(json!({"org.nope.v1": {}}));
        assert_eq!(e.key, r#"EVENT_BUS_PRODUCER_CONFIG["org.nope.v1"]"#);
        let e = err(json!({XB: {"t": {"event_key_field": "xblock_info.usage_key", "enabled": 1}}}));
        assert_eq!(e.key, format!("EVENT_BUS_PRODUCER_CONFIG[{XB:?}][\"t\"].enabled"));
        let e = err(json!({XB: {"t": {"enabled": true}}}));
        assert!(e.key.ends_with(".event_key_field") && e.message == "missing", "{e}");
        let e = err(json!({XB: {"t": {"event_key_field": "xblock_info", "enabled": true}}}));
        assert!(e.message.contains("non-optional primitive"), "{e}");
        let e = err(json!({XB: {"t": {"event_key_field": "xblock_info.version", "enabled": true}}}));
        assert!(e.message.contains("optional"), "{e}");
        let e = err(json!({"org.openedx.content_authoring.course.certificate_config.changed.v1": {}}));
        assert!(e.message.contains("cannot be serialized"), "{e}");
        let e = err(json!([]));
        assert_eq!(e.key, SETTING);
    }

    #[test]
    fn merge_matches_python_example() {
        let base = json!({
            "event_type_0": {"topic_a": {"event_key_field": "field", "enabled": true},
                             "topic_b": {"event_key_field": "field", "enabled": true}},
            "event_type_1": {"topic_c": {"event_key_field": "field", "enabled": true}}});
        let over = json!({
            "event_type_0": {"topic_a": {"event_key_field": "new_field", "enabled": false},
                             "topic_d": {"event_key_field": "field", "enabled": false}},
            "event_type_2": {"topic_e": {"event_key_field": "field", "enabled": true}}});
        let m = merge_producer_configs(&base, &over);
        assert_eq!(
            m,
            json!({
                "event_type_0": {"topic_a": {"event_key_field": "new_field", "enabled": false},
                                 "topic_b": {"event_key_field": "field", "enabled": true},
                                 "topic_d": {"event_key_field": "field", "enabled": false}},
                "event_type_1": {"topic_c": {"event_key_field": "field", "enabled": true}},
                "event_type_2": {"topic_e": {"event_key_field": "field", "enabled": true}}})
        );
        assert_eq!(base["event_type_0"]["topic_a"]["enabled"], true, "input unchanged");
    }
}
