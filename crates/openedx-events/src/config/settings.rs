//! Settings by their Django names (`EVENT_BUS_BACKEND`, `EVENT_BUS_TOPIC_PREFIX`,
//! `EVENT_BUS_REDIS_CONNECTION_URL`, ...), from a TOML file and the
//! environment (the environment wins). Typed getters report the offending
//! key when a value has the wrong type.
//!
//! ```
//! use openedx_events::config::Settings;
//! let s = Settings::from_toml_str(r#"
//! EVENT_BUS_BACKEND = "sqlite"
//! EVENT_BUS_SQLITE_PATH = "/tmp/bus.db"
//! EVENT_BUS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT = 5
//! "#).unwrap();
//! assert_eq!(s.string("EVENT_BUS_BACKEND").unwrap().as_deref(), Some("sqlite"));
//! assert_eq!(s.u64("EVENT_BUS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT").unwrap(), Some(5));
//! assert!(s.bool("EVENT_BUS_SQLITE_PATH").is_err());
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;

use super::ConfigError;

/// The longest duration a setting may give, in seconds (about a century):
/// anything longer is a typo, and would overflow a deadline.
const MAX_SECONDS: f64 = 3.2e9;

/// A set of settings. `Debug` masks secrets: values of settings whose
/// name says they are secret ([`super::secret::is_secret_setting`]),
/// credentials inside URLs, and structured values (client configurations
/// may hold passwords).
///
/// ```
/// use openedx_events::config::Settings;
/// let mut s = Settings::new();
/// s.set("EVENT_BUS_REDIS_CONNECTION_URL", "redis://app:hunter2@cache:6379/0");
/// s.set("EVENT_BUS_KAFKA_API_SECRET", "hunter3");
/// s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", serde_json::json!({"sasl.password": "hunter4"}));
/// let shown = format!("{s:?}");
/// assert!(!shown.contains("hunter"), "{shown}");
/// assert!(shown.contains("redis://app:********@cache:6379/0"), "{shown}");
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Settings {
    values: BTreeMap<String, Json>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.values {
            map.entry(k, &Shown(k, v));
        }
        map.finish()
    }
}

/// A setting's value as `Debug` shows it (see [`Settings`]): nested
/// objects are shown with their secret-named entries masked.
struct Shown<'a>(&'a str, &'a Json);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::secret::{is_secret_setting, redact_url, MASK};
        match self.1 {
            _ if is_secret_setting(self.0) => f.write_str(MASK),
            Json::String(s) if s.contains("://") => write!(f, "{:?}", redact_url(s)),
            Json::Object(o) => {
                let mut map = f.debug_map();
                for (k, v) in o {
                    map.entry(k, &Shown(k, v));
                }
                map.finish()
            }
            v => write!(f, "{v}"),
        }
    }
}

/// Whether an environment variable belongs to the event bus settings.
fn is_bus_setting(name: &str) -> bool {
    name.starts_with("EVENT_BUS_") || name == "EVENTS_SERVICE_NAME" || name == "SERVICE_VARIANT"
}

impl Settings {
    /// No settings.
    pub fn new() -> Self {
        Settings::default()
    }

    /// The `EVENT_BUS_*`, `EVENTS_SERVICE_NAME` and `SERVICE_VARIANT`
    /// environment variables (as strings; getters parse them).
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Settings from name/value pairs, keeping only event bus settings.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut s = Settings::new();
        for (k, v) in vars {
            if is_bus_setting(&k) {
                s.values.insert(k, Json::String(v));
            }
        }
        s
    }

    /// Settings from TOML text: top-level keys are setting names.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::new("(config file)", e.to_string()))?;
        let mut s = Settings::new();
        for (k, v) in value {
            let json = serde_json::to_value(v).map_err(|e| ConfigError::new(k.clone(), e.to_string()))?;
            s.values.insert(k, json);
        }
        Ok(s)
    }

    /// Settings from a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read config file: {e}")))?;
        Self::from_toml_str(&text).map_err(|e| ConfigError::new(format!("{} ({})", e.key, path.display()), e.message))
    }

    /// These settings with `other`'s values on top.
    pub fn overlay(mut self, other: Settings) -> Self {
        self.values.extend(other.values);
        self
    }

    /// Set a value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Json>) {
        self.values.insert(key.into(), value.into());
    }

    /// Set a value if none is set.
    pub fn set_default(&mut self, key: impl Into<String>, value: impl Into<Json>) {
        self.values.entry(key.into()).or_insert_with(|| value.into());
    }

    /// The raw value.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    /// All keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// A string setting (numbers and booleans are not strings).
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ConfigError::new(key, format!("expected a string, found {other}"))),
        }
    }

    /// A non-empty string setting that must be present.
    pub fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ConfigError::new(key, "is required but not set")),
        }
    }

    /// A boolean (`true`/`false`, or in the environment also `1`/`0`/`yes`/`no`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(Json::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(ConfigError::new(key, format!("expected a boolean, found {s:?}"))),
            },
            Some(other) => Err(ConfigError::new(key, format!("expected a boolean, found {other}"))),
        }
    }

    /// A non-negative integer.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| ConfigError::new(key, format!("expected a non-negative integer, found {n}"))),
            Some(Json::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::new(key, format!("expected a non-negative integer, found {s:?}"))),
            Some(other) => Err(ConfigError::new(key, format!("expected an integer, found {other}"))),
        }
    }

    /// A number of seconds (integer or decimal), as the Python settings use.
    pub fn seconds(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let f = match self.get(key) {
            None => return Ok(None),
            Some(Json::Number(n)) => n.as_f64(),
            Some(Json::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match f {
            // In range, so the conversion cannot overflow.
            Some(f) if (0.0..=MAX_SECONDS).contains(&f) => Ok(Some(Duration::from_secs_f64(f))),
            Some(f) if f.is_finite() && f > MAX_SECONDS => Err(ConfigError::new(
                key,
                format!("{f} seconds is too long (at most {MAX_SECONDS}, about a century)"),
            )),
            _ => Err(ConfigError::new(key, "expected a non-negative number of seconds")),
        }
    }

    /// A structured value: a table in the file, or JSON text (or a path to a
    /// `.json`/`.toml` file) in the environment.
    pub fn structured(&self, key: &str) -> Result<Option<Json>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => {
                let t = s.trim();
                if t.starts_with('{') || t.starts_with('[') {
                    serde_json::from_str(t)
                        .map(Some)
                        .map_err(|e| ConfigError::new(key, format!("invalid JSON: {e}")))
                } else {
                    let text = std::fs::read_to_string(t)
                        .map_err(|e| ConfigError::new(key, format!("cannot read {t}: {e}")))?;
                    if t.ends_with(".toml") {
                        let v: toml::Value =
                            toml::from_str(&text).map_err(|e| ConfigError::new(key, format!("{t}: {e}")))?;
                        serde_json::to_value(v)
                            .map(Some)
                            .map_err(|e| ConfigError::new(key, e.to_string()))
                    } else {
                        serde_json::from_str(&text)
                            .map(Some)
                            .map_err(|e| ConfigError::new(key, format!("{t}: {e}")))
                    }
                }
            }
            Some(other) => Ok(Some(other.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_or_odd_durations_are_errors_naming_the_key_not_panics() {
        for bad in ["1e20", "-1", "NaN", "inf", "1e400", "ten"] {
            let mut s = Settings::new();
            s.set("EVENT_BUS_RETRY_MAX_DELAY", bad);
            let e = s.seconds("EVENT_BUS_RETRY_MAX_DELAY").unwrap_err();
            assert!(e.to_string().contains("EVENT_BUS_RETRY_MAX_DELAY"), "{bad}: {e}");
        }
        let mut s = Settings::new();
        s.set("EVENT_BUS_RETRY_MAX_DELAY", "3e9");
        assert_eq!(
            s.seconds("EVENT_BUS_RETRY_MAX_DELAY").unwrap(),
            Some(Duration::from_secs(3_000_000_000))
        );
    }

    #[test]
    fn env_strings_are_parsed_by_type() {
        let s = Settings::from_vars([
            ("EVENT_BUS_KAFKA_CONSUMERS_ENABLED".to_string(), "false".to_string()),
            ("EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT".to_string(), "0.5".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
            ("EVENT_BUS_X".to_string(), "maybe".to_string()),
        ]);
        assert_eq!(s.bool("EVENT_BUS_KAFKA_CONSUMERS_ENABLED").unwrap(), Some(false));
        assert_eq!(
            s.seconds("EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert!(s.get("PATH").is_none());
        let e = s.bool("EVENT_BUS_X").unwrap_err();
        assert_eq!(e.key, "EVENT_BUS_X");
    }

    #[test]
    fn overlay_prefers_the_top_layer() {
        let file = Settings::from_toml_str("EVENT_BUS_BACKEND = \"sqlite\"").unwrap();
        let env = Settings::from_vars([("EVENT_BUS_BACKEND".to_string(), "redis".to_string())]);
        assert_eq!(
            file.overlay(env).string("EVENT_BUS_BACKEND").unwrap().as_deref(),
            Some("redis")
        );
    }
}
