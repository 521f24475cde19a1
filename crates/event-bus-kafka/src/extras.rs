//! The `--extra` options of a Kafka subscription
//! ([`SubscribeRequest::extras`]): `offset_time` (move the group's
//! partitions to that time) and `offset_time_mode` (`"replay"` or
//! `"reset_only"`), and their checks.

use openedx_events::bus::extras::Extras;
use openedx_events::bus::transport::{SeekTarget, SubscribeRequest, TransportError};

use crate::positions::parse_offset_time;

/// What to do once the offsets were moved to `offset_time` (the extra
/// `offset_time_mode`: `"replay"` or `"reset_only"`).
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use openedx_events::bus::transport::{StartPosition, SubscribeRequest, Transport};
/// use event_bus_kafka::{KafkaSettings, KafkaTransport};
/// let t = KafkaTransport::connect(KafkaSettings::new("127.0.0.1:9092", "http://127.0.0.1:8081")).unwrap();
/// let mut extras = serde_json::Map::new();
/// // Python's `--extra '{"offset_time": "..."}'`, and its behaviour:
/// // reset and commit the offsets, then consume nothing.
/// extras.insert("offset_time".into(), "2023-03-14T05:56:05+00:00".into());
/// extras.insert("offset_time_mode".into(), "reset_only".into());
/// let sub = t.subscribe(&SubscribeRequest { topic: "dev-user-login".into(), group: "analytics".into(),
///     consumer_name: "worker-1".into(), start: StartPosition::Earliest, extras }).await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetTimeMode {
    /// Move to the time and keep consuming (the default).
    #[default]
    Replay,
    /// As Python: move to the time, commit, then deliver nothing; the
    /// operator restarts the consumer without `offset_time`.
    ResetOnly,
}

/// `offset_time`: move the group's partitions to this time (Python's
/// `isoformat()`, as edx-event-bus-kafka takes it).
pub const OFFSET_TIME: &str = "offset_time";
/// `offset_time_mode`: `"replay"` (the default) or `"reset_only"`.
pub const OFFSET_TIME_MODE: &str = "offset_time_mode";

/// Read the Kafka extras of a subscription: `offset_time` and
/// `offset_time_mode`. An unknown option or a bad value is a configuration
/// error naming it.
pub(crate) fn replay_extras(
    request: &SubscribeRequest,
) -> Result<(Option<SeekTarget>, OffsetTimeMode), TransportError> {
    let extras = Extras::new("kafka", &request.extras, &[OFFSET_TIME, OFFSET_TIME_MODE])?;
    let text = match extras.value(OFFSET_TIME) {
        None => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let target = match text {
        None => None,
        Some(text) => Some(SeekTarget::Time(
            parse_offset_time(&text).map_err(|e| extras.error(OFFSET_TIME, e))?,
        )),
    };
    let mode = match extras.choice(OFFSET_TIME_MODE, &["replay", "reset_only"])? {
        Some("reset_only") => OffsetTimeMode::ResetOnly,
        _ => OffsetTimeMode::Replay,
    };
    if mode == OffsetTimeMode::ResetOnly && target.is_none() {
        return Err(extras.error(OFFSET_TIME_MODE, "\"reset_only\" needs offset_time"));
    }
    Ok((target, mode))
}

#[cfg(test)]
mod tests {
    use openedx_events::bus::transport::{StartPosition, TransportErrorKind};

    use super::*;

    #[test]
    fn extras_are_checked() {
        let mut r = SubscribeRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer_name: "c".into(),
            start: StartPosition::Earliest,
            extras: Default::default(),
        };
        assert_eq!(replay_extras(&r).unwrap(), (None, OffsetTimeMode::Replay));
        r.extras
            .insert("offset_time".into(), "2023-03-14T05:56:05+00:00".into());
        let (target, mode) = replay_extras(&r).unwrap();
        assert!(matches!(target, Some(SeekTarget::Time(_))));
        assert_eq!(mode, OffsetTimeMode::Replay);
        r.extras.insert("offset_time_mode".into(), "reset_only".into());
        assert_eq!(replay_extras(&r).unwrap().1, OffsetTimeMode::ResetOnly);
        r.extras.insert("offset_time_mode".into(), "rewind".into());
        assert_eq!(replay_extras(&r).unwrap_err().kind, TransportErrorKind::Config);
        r.extras.insert("offset_time_mode".into(), "reset_only".into());
        r.extras.insert("offset_time".into(), "garbage".into());
        let e = replay_extras(&r).unwrap_err();
        assert!(e.is_fatal(), "a bad offset_time stops the consumer, as in Python");
        r.extras.remove("offset_time");
        assert!(replay_extras(&r).is_err(), "reset_only needs a time");
        r.extras.insert("offset_tme".into(), "2023-03-14T05:56:05+00:00".into());
        let e = replay_extras(&r).unwrap_err();
        assert!(e.message.contains("\"offset_tme\": unknown option"), "{e}");
    }
}
