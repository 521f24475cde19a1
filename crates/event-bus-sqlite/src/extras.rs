//! The subscription's `--extra` options ([`SubscribeRequest::extras`]):
//! `lease_seconds`, which overrides the lease; checked by the core's
//! [`Extras`] parser.

use std::time::Duration;

use openedx_events::bus::extras::Extras;
use openedx_events::bus::transport::{SubscribeRequest, TransportError};

/// `lease_seconds`: how long a received message stays reserved for this
/// member (0.1 to 3.2e9 seconds), instead of `EVENT_BUS_SQLITE_LEASE_SECONDS`.
pub const LEASE_SECONDS: &str = "lease_seconds";

/// The lease a request asks for, else `default`. An unknown option or a bad
/// value is a configuration error naming it.
pub(crate) fn lease(request: &SubscribeRequest, default: Duration) -> Result<Duration, TransportError> {
    let extras = Extras::new("sqlite", &request.extras, &[LEASE_SECONDS])?;
    Ok(extras.seconds(LEASE_SECONDS, 0.1..=3.2e9)?.unwrap_or(default))
}
