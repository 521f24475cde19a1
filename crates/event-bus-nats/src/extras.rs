//! The subscription's `--extra` options ([`SubscribeRequest::extras`]),
//! checked by the core's [`Extras`] parser: `ack_wait_seconds` and
//! `max_ack_pending` (used when the group's consumer is created), `batch`
//! (most messages one pull asks for).

use std::time::Duration;

use openedx_events::bus::extras::Extras;
use openedx_events::bus::transport::{SubscribeRequest, TransportError};

/// `ack_wait_seconds`: the ack wait of a new group (instead of `EVENT_BUS_NATS_ACK_WAIT_SECONDS`).
pub const ACK_WAIT_SECONDS: &str = "ack_wait_seconds";
/// `max_ack_pending`: the bound of a new group (instead of `EVENT_BUS_NATS_MAX_ACK_PENDING`).
pub const MAX_ACK_PENDING: &str = "max_ack_pending";
/// `batch`: most messages one pull asks for (default: what the loop asks for).
pub const BATCH: &str = "batch";

/// What a subscription request asks for beyond the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Requested {
    pub ack_wait: Option<Duration>,
    pub max_ack_pending: Option<i64>,
    pub batch: Option<usize>,
}

/// Read the options; an unknown one or a bad value is a configuration
/// error naming it.
pub(crate) fn requested(request: &SubscribeRequest) -> Result<Requested, TransportError> {
    let extras = Extras::new("nats", &request.extras, &[ACK_WAIT_SECONDS, MAX_ACK_PENDING, BATCH])?;
    let ack_wait = extras.seconds(ACK_WAIT_SECONDS, 0.1..=86_400.0)?;
    let max_ack_pending = match extras.u64(MAX_ACK_PENDING, "of messages")? {
        None => None,
        Some(n) => Some(
            i64::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| extras.error(MAX_ACK_PENDING, "must be at least 1"))?,
        ),
    };
    let batch = match extras.u64(BATCH, "of messages")? {
        None => None,
        Some(n) => Some(
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| extras.error(BATCH, "must be from 1 to 10000"))?,
        ),
    };
    Ok(Requested {
        ack_wait,
        max_ack_pending,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(extras: serde_json::Value) -> SubscribeRequest {
        SubscribeRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer_name: "c".into(),
            start: Default::default(),
            extras: extras.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn options_are_checked_by_name() {
        let r = requested(&request(
            json!({"ack_wait_seconds": 2.5, "max_ack_pending": 10, "batch": 5}),
        ))
        .unwrap();
        assert_eq!(r.ack_wait, Some(Duration::from_millis(2500)));
        assert_eq!((r.max_ack_pending, r.batch), (Some(10), Some(5)));
        for bad in [
            json!({"ack_wait": 1}),
            json!({"batch": 0}),
            json!({"max_ack_pending": -1}),
        ] {
            let e = requested(&request(bad.clone())).unwrap_err();
            assert!(e.message.contains("nats consumer option"), "{bad}: {e}");
        }
        assert_eq!(requested(&request(json!({}))).unwrap(), Requested::default());
    }
}
