//! The consume loop's metrics, through the `metrics` facade (an exporter
//! such as Prometheus is installed by the application; without one these
//! cost next to nothing).
//!
//! Labels: `topic` (full name) and `group` on every series, and
//! `event_type` on per-message series: the type the message names if it is
//! registered, else `unknown`, so a producer cannot grow the series without
//! bound. Handles are built once per run and per event type, not per
//! message.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `event_bus_consumer_messages_received_total` | counter | topic, group, event_type |
//! | `event_bus_consumer_messages_handled_total` | counter | topic, group, event_type |
//! | `event_bus_consumer_messages_retried_total` | counter | topic, group, event_type |
//! | `event_bus_consumer_messages_dead_lettered_total` | counter | topic, group, event_type, reason |
//! | `event_bus_consumer_duplicates_skipped_total` | counter | topic, group, event_type |
//! | `event_bus_consumer_decode_failures_total` | counter | topic, group, event_type |
//! | `event_bus_consumer_handle_duration_seconds` | histogram | topic, group, event_type |
//! | `event_bus_consumer_end_to_end_latency_seconds` | histogram | topic, group, event_type |
//! | `event_bus_consumer_poll_failures_total` | counter | topic, group |
//! | `event_bus_consumer_hook_failures_total` | counter | topic, group |
//! | `event_bus_consumer_consecutive_errors` | gauge | topic, group |
//! | `event_bus_consumer_in_flight_messages` | gauge | topic, group |

use std::collections::HashMap;

use metrics::{Counter, Gauge, Histogram, Label};

use super::super::dead_letter::Reason;
use crate::signal::Registry;

/// The label value of a message whose event type is not registered.
pub const UNKNOWN_EVENT_TYPE: &str = "unknown";

/// The metrics of one run: per topic and group, and per event type.
pub(super) struct Instruments {
    labels: Vec<Label>,
    per_type: HashMap<String, TypeInstruments>,
    pub poll_failures: Counter,
    pub hook_failures: Counter,
    pub consecutive_errors: Gauge,
    pub in_flight: Gauge,
}

/// The metrics of one event type.
#[derive(Clone)]
pub(super) struct TypeInstruments {
    labels: Vec<Label>,
    pub received: Counter,
    pub handled: Counter,
    pub retried: Counter,
    pub duplicates_skipped: Counter,
    pub decode_failures: Counter,
    pub handle_duration: Histogram,
    pub end_to_end_latency: Histogram,
}

impl TypeInstruments {
    /// The dead-letter counter for `reason` (looked up when used: dead
    /// letters are rare).
    pub fn dead_lettered(&self, reason: Reason) -> Counter {
        let mut labels = self.labels.clone();
        labels.push(Label::new("reason", reason.as_str()));
        metrics::counter!("event_bus_consumer_messages_dead_lettered_total", labels)
    }
}

impl Instruments {
    pub fn new(topic: &str, group: &str) -> Self {
        let labels = vec![
            Label::new("topic", topic.to_string()),
            Label::new("group", group.to_string()),
        ];
        Instruments {
            poll_failures: metrics::counter!("event_bus_consumer_poll_failures_total", labels.clone()),
            hook_failures: metrics::counter!("event_bus_consumer_hook_failures_total", labels.clone()),
            consecutive_errors: metrics::gauge!("event_bus_consumer_consecutive_errors", labels.clone()),
            in_flight: metrics::gauge!("event_bus_consumer_in_flight_messages", labels.clone()),
            labels,
            per_type: HashMap::new(),
        }
    }

    /// The metrics of the type a message names (`unknown` if it is not
    /// registered, or the message names none).
    pub fn for_type(&mut self, named: Option<&str>, registry: &Registry) -> TypeInstruments {
        let name = match named {
            Some(n) if registry.get(n).is_some() => n,
            _ => UNKNOWN_EVENT_TYPE,
        };
        if let Some(t) = self.per_type.get(name) {
            return t.clone();
        }
        let mut labels = self.labels.clone();
        labels.push(Label::new("event_type", name.to_string()));
        let t = TypeInstruments {
            received: metrics::counter!("event_bus_consumer_messages_received_total", labels.clone()),
            handled: metrics::counter!("event_bus_consumer_messages_handled_total", labels.clone()),
            retried: metrics::counter!("event_bus_consumer_messages_retried_total", labels.clone()),
            duplicates_skipped: metrics::counter!("event_bus_consumer_duplicates_skipped_total", labels.clone()),
            decode_failures: metrics::counter!("event_bus_consumer_decode_failures_total", labels.clone()),
            handle_duration: metrics::histogram!("event_bus_consumer_handle_duration_seconds", labels.clone()),
            end_to_end_latency: metrics::histogram!("event_bus_consumer_end_to_end_latency_seconds", labels.clone()),
            labels,
        };
        self.per_type.insert(name.to_string(), t.clone());
        t
    }
}

/// Describe every metric of the bus (help text and unit) to the installed
/// recorder. Call once after installing an exporter.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "event_bus_consumer_messages_received_total",
        "Messages received from the broker, redeliveries included."
    );
    describe_counter!(
        "event_bus_consumer_messages_handled_total",
        "Messages every receiver handled without error."
    );
    describe_counter!(
        "event_bus_consumer_messages_retried_total",
        "Receiver failures that were retried."
    );
    describe_counter!(
        "event_bus_consumer_messages_dead_lettered_total",
        "Messages sent to the dead-letter topic (or logged and dropped), by reason."
    );
    describe_counter!(
        "event_bus_consumer_duplicates_skipped_total",
        "Events skipped as already handled (deduplication window)."
    );
    describe_counter!(
        "event_bus_consumer_decode_failures_total",
        "Messages that could not be turned into an event (headers, unknown type, data)."
    );
    describe_histogram!(
        "event_bus_consumer_handle_duration_seconds",
        Unit::Seconds,
        "Time the receivers took on one attempt."
    );
    describe_histogram!(
        "event_bus_consumer_end_to_end_latency_seconds",
        Unit::Seconds,
        "From the event's time (metadata) to its handling."
    );
    describe_counter!(
        "event_bus_consumer_poll_failures_total",
        "Failed receives and subscribes."
    );
    describe_counter!("event_bus_consumer_hook_failures_total", "Work-cycle hook failures.");
    describe_gauge!(
        "event_bus_consumer_consecutive_errors",
        "Failures in a row (the error budget counts these)."
    );
    describe_gauge!(
        "event_bus_consumer_in_flight_messages",
        "Messages received and not yet settled."
    );
    describe_counter!("event_bus_producer_sends_total", "Events the broker accepted.");
    describe_counter!(
        "event_bus_producer_send_failures_total",
        "Events that could not be produced."
    );
    describe_histogram!(
        "event_bus_producer_send_duration_seconds",
        Unit::Seconds,
        "Time from send to the broker's confirmation."
    );
    describe_gauge!(
        "event_bus_consumer_lag_messages",
        "Messages of a topic the group has not acknowledged yet, as the broker tells it."
    );
    describe_gauge!(
        "event_bus_consumer_pending_messages",
        "Messages delivered to a member of the group and not acknowledged yet."
    );
}
