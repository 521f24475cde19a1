//! A subscription's backend options (`SubscribeRequest::extras`, the CLI's
//! and `consume_events`' `--extra` JSON), checked by name: one parser for
//! every backend, whose errors name the option.
//!
//! `null` means "not given". An option no backend knows is a configuration
//! error naming it, reported when the subscription opens (at start-up), so a
//! misspelt option never goes unnoticed. `consumer_name` is known to every
//! backend: it names the member (`SubscribeRequest::consumer_name`).

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use super::transport::{TransportError, TransportErrorKind};

/// The option every backend accepts: the member's name.
pub const CONSUMER_NAME: &str = "consumer_name";

/// A subscription's options, checked against the names a backend knows.
///
/// ```
/// use openedx_events::bus::extras::Extras;
/// let mut given = serde_json::Map::new();
/// given.insert("lease_seconds".into(), 2.5.into());
/// given.insert("check_backlog".into(), serde_json::Value::Null);
/// let extras = Extras::new("sqlite", &given, &["lease_seconds", "check_backlog"]).unwrap();
/// let lease = extras.seconds("lease_seconds", 0.1..=60.0).unwrap();
/// assert_eq!(lease, Some(std::time::Duration::from_millis(2500)));
/// assert_eq!(extras.bool("check_backlog").unwrap(), None);
///
/// given.insert("lease_secs".into(), 1.into());
/// let err = Extras::new("sqlite", &given, &["lease_seconds"]).unwrap_err();
/// assert!(err.message.contains("\"lease_secs\""), "{err}");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Extras<'a> {
    backend: &'static str,
    given: &'a Map<String, Json>,
}

impl<'a> Extras<'a> {
    /// Check that every option given (not `null`) is one of `known` or
    /// [`CONSUMER_NAME`]; an unknown one is a configuration error naming it
    /// and the options the backend knows.
    pub fn new(backend: &'static str, given: &'a Map<String, Json>, known: &[&str]) -> Result<Self, TransportError> {
        let extras = Extras { backend, given };
        for (name, value) in given {
            if value.is_null() || name == CONSUMER_NAME || known.contains(&name.as_str()) {
                continue;
            }
            let mut names: Vec<&str> = known.to_vec();
            names.push(CONSUMER_NAME);
            return Err(extras.error(name, format!("unknown option; this backend knows {}", names.join(", "))));
        }
        Ok(extras)
    }

    /// A configuration error about option `name`.
    pub fn error(&self, name: &str, message: impl Display) -> TransportError {
        TransportError::new(
            TransportErrorKind::Config,
            format!("{} consumer option (--extra) \"{name}\": {message}", self.backend),
        )
    }

    /// The value of `name`, unless absent or `null`.
    pub fn value(&self, name: &str) -> Option<&'a Json> {
        self.given.get(name).filter(|v| !v.is_null())
    }

    /// A non-empty string.
    pub fn string(&self, name: &str) -> Result<Option<&'a str>, TransportError> {
        match self.value(name) {
            None => Ok(None),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
            Some(other) => Err(self.error(name, format!("expected a non-empty string, found {other}"))),
        }
    }

    /// `true` or `false`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, TransportError> {
        match self.value(name) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(name, format!("expected true or false, found {other}"))),
        }
    }

    /// A non-negative integer.
    pub fn u64(&self, name: &str, what: &str) -> Result<Option<u64>, TransportError> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.error(name, format!("expected a non-negative integer {what}, found {v}"))),
        }
    }

    /// A number of seconds within `range`.
    pub fn seconds(&self, name: &str, range: RangeInclusive<f64>) -> Result<Option<Duration>, TransportError> {
        let Some(v) = self.value(name) else {
            return Ok(None);
        };
        match v.as_f64() {
            Some(s) if range.contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(self.error(
                name,
                format!(
                    "expected a number of seconds from {} to {}, found {v}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// One of `choices` (a string).
    pub fn choice(&self, name: &str, choices: &[&'static str]) -> Result<Option<&'static str>, TransportError> {
        let Some(v) = self.value(name) else {
            return Ok(None);
        };
        match choices.iter().find(|c| v.as_str() == Some(**c)) {
            Some(c) => Ok(Some(c)),
            None => Err(self.error(name, format!("expected one of {}, found {v}", choices.join(", ")))),
        }
    }

    /// A string turned into `T` by `parse`, whose error text is given with
    /// the option's name.
    pub fn parsed<T, E: Display>(
        &self,
        name: &str,
        parse: impl FnOnce(&'a str) -> Result<T, E>,
    ) -> Result<Option<T>, TransportError> {
        match self.string(name)? {
            None => Ok(None),
            Some(s) => parse(s).map(Some).map_err(|e| self.error(name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn unknown_options_are_named_and_null_or_consumer_name_pass() {
        let given = map(json!({"consumer_name": "w1", "skip": null}));
        assert!(Extras::new("redis", &given, &[]).is_ok());
        let given = map(json!({"claim_msgs_older_tan": 5}));
        let err = Extras::new("redis", &given, &["claim_msgs_older_than"]).unwrap_err();
        assert_eq!(err.kind, TransportErrorKind::Config);
        assert!(
            err.message
                .starts_with("redis consumer option (--extra) \"claim_msgs_older_tan\""),
            "{err}"
        );
        assert!(err.message.contains("claim_msgs_older_than, consumer_name"), "{err}");
    }

    #[test]
    fn typed_getters_check_and_name_the_option() {
        let given = map(json!({"s": "x", "empty": " ", "b": true, "n": 7, "neg": -1, "secs": 0.5, "mode": "replay"}));
        let e = Extras::new("t", &given, &["s", "empty", "b", "n", "neg", "secs", "mode"]).unwrap();
        assert_eq!(e.string("s").unwrap(), Some("x"));
        assert!(e.string("empty").unwrap_err().message.contains("\"empty\""));
        assert_eq!(e.bool("b").unwrap(), Some(true));
        assert!(e.bool("s").is_err());
        assert_eq!(e.u64("n", "of milliseconds").unwrap(), Some(7));
        let neg = e.u64("neg", "of milliseconds").unwrap_err();
        assert!(
            neg.message.contains("non-negative integer of milliseconds, found -1"),
            "{neg}"
        );
        assert_eq!(e.seconds("secs", 0.1..=10.0).unwrap(), Some(Duration::from_millis(500)));
        assert!(e.seconds("n", 0.1..=1.0).is_err());
        assert_eq!(e.choice("mode", &["replay", "reset_only"]).unwrap(), Some("replay"));
        assert!(e
            .choice("s", &["replay"])
            .unwrap_err()
            .message
            .contains("expected one of replay"));
        assert_eq!(
            e.parsed("n", |s| s.parse::<u8>()).unwrap_err().kind,
            TransportErrorKind::Config
        );
        assert_eq!(e.parsed("s", |s| Ok::<_, String>(s.len())).unwrap(), Some(1));
        assert_eq!(e.string("absent").unwrap(), None);
    }
}
