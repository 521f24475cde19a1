//! The subscription's `--extra` options, on the core's [`Extras`].
//!
//! - `prefetch`: unacknowledged messages this member may hold (1 to 65535;
//!   default `EVENT_BUS_RABBITMQ_PREFETCH`).

use openedx_events::bus::extras::Extras;
use openedx_events::bus::transport::TransportError;

/// The option names this backend knows.
pub const KNOWN: &[&str] = &["prefetch"];

/// The options of one subscription.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SubscriptionExtras {
    pub(crate) prefetch: Option<u16>,
}

impl SubscriptionExtras {
    pub(crate) fn parse(given: &serde_json::Map<String, serde_json::Value>) -> Result<Self, TransportError> {
        let extras = Extras::new("rabbitmq", given, KNOWN)?;
        let prefetch = match extras.u64("prefetch", "of messages")? {
            None => None,
            Some(n) => Some(
                u16::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| extras.error("prefetch", format!("expected 1 to 65535, found {n}")))?,
            ),
        };
        Ok(SubscriptionExtras { prefetch })
    }
}
