//! The subscription's `--extra` options ([`SubscribeRequest::extras`]):
//! `subscription_type`; checked by the core's [`Extras`] parser.

use openedx_events::bus::extras::Extras;
use openedx_events::bus::transport::{SubscribeRequest, TransportError};

use crate::settings::SubscriptionKind;

/// `subscription_type`: `shared` or `key_shared`, instead of
/// `EVENT_BUS_PULSAR_SUBSCRIPTION_TYPE`.
pub const SUBSCRIPTION_TYPE: &str = "subscription_type";

/// The subscription type a request asks for, else the setting. An unknown
/// option or a bad value is a configuration error naming it.
pub(crate) fn requested_kind(
    request: &SubscribeRequest,
    default: SubscriptionKind,
) -> Result<SubscriptionKind, TransportError> {
    let extras = Extras::new("pulsar", &request.extras, &[SUBSCRIPTION_TYPE])?;
    let kind = extras.parsed(SUBSCRIPTION_TYPE, |s| {
        SubscriptionKind::parse(s).ok_or_else(|| format!("expected shared or key_shared, found {s:?}"))
    })?;
    Ok(kind.unwrap_or(default))
}
