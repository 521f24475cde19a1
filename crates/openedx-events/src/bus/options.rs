//! Consumer options and the error policy, with their settings.

use std::time::Duration;

use crate::config::{ConfigError, Settings};

use super::transport::StartPosition;

/// How receiver failures are retried before dead-lettering.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Handling attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// Each further delay is the previous one times this.
    pub multiplier: f64,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// How long one message may hold up the stream by retrying in place (in
    /// order); retries that do not fit are handed back to the broker with the
    /// delay, and the stream goes on.
    pub max_blocking: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(500),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60),
            max_blocking: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next` (2 for the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(30) as i32;
        let d = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        Duration::try_from_secs_f64(d.min(self.max_delay.as_secs_f64()).max(0.0)).unwrap_or(self.max_delay)
    }
}

/// Options of one consumer.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The topic, without prefix.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// `EVENT_BUS_TOPIC_PREFIX`.
    pub prefix: Option<String>,
    /// This member's name (defaults to host and process id).
    pub consumer_name: String,
    /// Where a new group starts.
    pub start: StartPosition,
    /// Backend-specific options (`--extra`).
    pub extras: serde_json::Map<String, serde_json::Value>,
    /// Messages asked for per receive.
    pub batch_size: usize,
    /// How long one receive waits.
    pub poll_timeout: Duration,
    /// Sleep after a failed receive (doubles up to 30 s while failures continue).
    pub poll_failure_sleep: Duration,
    /// Exit with an error after this many failures in a row (`None`: never).
    pub consecutive_errors_limit: Option<u32>,
    /// Kill switch: when false the consumer logs and returns at once.
    pub enabled: bool,
    /// Log a line per message received and processed.
    pub audit_log: bool,
    /// Receiver-failure retries.
    pub retry: RetryPolicy,
    /// Dead-letter messages that cannot be handled (false: log and ack them,
    /// as the Python consumers do).
    pub dead_letter: bool,
    /// The dead-letter topic, without prefix (default `<topic>-dlq`).
    pub dead_letter_topic: Option<String>,
    /// Accept bodies with bytes after the datum (fields a newer producer
    /// appended), as fastavro does; they are logged.
    pub allow_trailing_bytes: bool,
    /// Stop after handling this many messages (processed or dead-lettered).
    pub limit: Option<u64>,
    /// Skip events whose id was processed among the last this-many events
    /// (an idempotent-consumer guard against duplicate publishes; 0 = off,
    /// the default, since operators replay on purpose).
    pub deduplication_window: usize,
}

impl ConsumerOptions {
    /// Defaults for a topic and group.
    pub fn new(topic: impl Into<String>, group: impl Into<String>) -> Self {
        ConsumerOptions {
            topic: topic.into(),
            group: group.into(),
            prefix: None,
            consumer_name: default_consumer_name(),
            start: StartPosition::Earliest,
            extras: serde_json::Map::new(),
            batch_size: 64,
            poll_timeout: Duration::from_secs(1),
            poll_failure_sleep: Duration::from_secs(1),
            consecutive_errors_limit: None,
            enabled: true,
            audit_log: true,
            retry: RetryPolicy::default(),
            dead_letter: true,
            dead_letter_topic: None,
            allow_trailing_bytes: true,
            limit: None,
            deduplication_window: 0,
        }
    }

    /// Read the consumer settings. Generic names (`EVENT_BUS_CONSUMER_*`) and
    /// the Python backend-specific ones (`EVENT_BUS_KAFKA_CONSUMERS_ENABLED`,
    /// `EVENT_BUS_REDIS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT`...) both work; the
    /// backend-specific one wins.
    pub fn apply_settings(&mut self, settings: &Settings, backend: &str) -> Result<(), ConfigError> {
        let b = backend.to_ascii_uppercase();
        let pick = |generic: &str, specific: String| -> String {
            if settings.get(&specific).is_some() {
                specific
            } else {
                generic.to_string()
            }
        };
        if let Some(p) = settings.string("EVENT_BUS_TOPIC_PREFIX")? {
            self.prefix = Some(p);
        }
        let k = pick(
            "EVENT_BUS_CONSUMERS_ENABLED",
            format!("EVENT_BUS_{b}_CONSUMERS_ENABLED"),
        );
        if let Some(v) = settings.bool(&k)? {
            self.enabled = v;
        }
        let k = pick(
            "EVENT_BUS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT",
            format!("EVENT_BUS_{b}_CONSUMER_CONSECUTIVE_ERRORS_LIMIT"),
        );
        if let Some(v) = settings.u64(&k)? {
            self.consecutive_errors_limit = Some(u32::try_from(v).map_err(|_| ConfigError::new(k, "too large"))?);
        }
        let k = pick(
            "EVENT_BUS_AUDIT_LOGGING_ENABLED",
            format!("EVENT_BUS_{b}_AUDIT_LOGGING_ENABLED"),
        );
        if let Some(v) = settings.bool(&k)? {
            self.audit_log = v;
        }
        let k = pick(
            "EVENT_BUS_CONSUMER_POLL_TIMEOUT",
            format!("EVENT_BUS_{b}_CONSUMER_POLL_TIMEOUT"),
        );
        if let Some(v) = settings.seconds(&k)? {
            self.poll_timeout = v;
        }
        let k = pick(
            "EVENT_BUS_CONSUMER_POLL_FAILURE_SLEEP",
            format!("EVENT_BUS_{b}_CONSUMER_POLL_FAILURE_SLEEP"),
        );
        if let Some(v) = settings.seconds(&k)? {
            self.poll_failure_sleep = v;
        }
        if let Some(v) = settings.u64("EVENT_BUS_CONSUMER_BATCH_SIZE")? {
            if v == 0 {
                return Err(ConfigError::new("EVENT_BUS_CONSUMER_BATCH_SIZE", "must be at least 1"));
            }
            self.batch_size = v as usize;
        }
        if let Some(v) = settings.u64("EVENT_BUS_RETRY_MAX_ATTEMPTS")? {
            if v == 0 {
                return Err(ConfigError::new("EVENT_BUS_RETRY_MAX_ATTEMPTS", "must be at least 1"));
            }
            self.retry.max_attempts =
                u32::try_from(v).map_err(|_| ConfigError::new("EVENT_BUS_RETRY_MAX_ATTEMPTS", "too large"))?;
        }
        if let Some(v) = settings.seconds("EVENT_BUS_RETRY_INITIAL_DELAY")? {
            self.retry.initial_delay = v;
        }
        if let Some(v) = settings.seconds("EVENT_BUS_RETRY_MAX_DELAY")? {
            self.retry.max_delay = v;
        }
        if let Some(v) = settings.seconds("EVENT_BUS_RETRY_MAX_BLOCKING")? {
            self.retry.max_blocking = v;
        }
        if let Some(v) = settings.bool("EVENT_BUS_DEAD_LETTER_ENABLED")? {
            self.dead_letter = v;
        }
        if let Some(v) = settings.string("EVENT_BUS_DEAD_LETTER_TOPIC")? {
            self.dead_letter_topic = Some(v);
        }
        if let Some(v) = settings.bool("EVENT_BUS_ALLOW_TRAILING_BYTES")? {
            self.allow_trailing_bytes = v;
        }
        if let Some(v) = settings.u64("EVENT_BUS_CONSUMER_DEDUPLICATION_WINDOW")? {
            self.deduplication_window = v as usize;
        }
        if let Some(v) = settings.string("EVENT_BUS_CONSUMER_START")? {
            self.start = match v.as_str() {
                "earliest" => StartPosition::Earliest,
                "latest" => StartPosition::Latest,
                other => {
                    return Err(ConfigError::new(
                        "EVENT_BUS_CONSUMER_START",
                        format!("expected \"earliest\" or \"latest\", found {other:?}"),
                    ))
                }
            };
        }
        Ok(())
    }

    /// The dead-letter topic without prefix.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}-dlq", self.topic))
    }
}

/// `<host>-<pid>`: unique per running process, stable for its life.
pub fn default_consumer_name() -> String {
    format!("{}-{}", crate::metadata::default_sourcehost(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_before(2), Duration::from_millis(100));
        assert_eq!(p.delay_before(3), Duration::from_millis(200));
        assert_eq!(p.delay_before(4), Duration::from_millis(350));
    }

    #[test]
    fn backend_specific_settings_win_and_errors_name_keys() {
        let s = Settings::from_vars([
            ("EVENT_BUS_CONSUMERS_ENABLED".into(), "true".into()),
            ("EVENT_BUS_REDIS_CONSUMERS_ENABLED".into(), "false".into()),
            ("EVENT_BUS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT".into(), "3".into()),
        ]);
        let mut o = ConsumerOptions::new("t", "g");
        o.apply_settings(&s, "redis").unwrap();
        assert!(!o.enabled);
        assert_eq!(o.consecutive_errors_limit, Some(3));
        let bad = Settings::from_vars([("EVENT_BUS_RETRY_MAX_ATTEMPTS".into(), "many".into())]);
        let e = ConsumerOptions::new("t", "g")
            .apply_settings(&bad, "sqlite")
            .unwrap_err();
        assert_eq!(e.key, "EVENT_BUS_RETRY_MAX_ATTEMPTS");
    }
}
