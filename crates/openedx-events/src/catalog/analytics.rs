//! Events of the `analytics` subdomain (`org.openedx.analytics.*`).

use std::sync::Arc;

use crate::data::OpenEdxEvent;
use crate::datetime::IsoDateTime;
use crate::event::EventType;
use crate::{AvroRecord, OpenEdxEvent};

/// One tracking log entry, as the tracking pipeline records it.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct TrackingLogData {
    /// The tracking event name, e.g. `edx.course.enrollment.activated`.
    pub name: String,
    /// When the tracked action happened.
    pub timestamp: IsoDateTime,
    /// The event-specific payload, as JSON text.
    pub data: String,
    /// The request and course context of the event, as JSON text.
    pub context: String,
}

/// A tracking log event was emitted and can be forwarded to consumers.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.analytics.tracking.event.emitted.v1")]
pub struct TrackingEventEmitted {
    /// The emitted tracking log entry.
    pub tracking_log: TrackingLogData,
}

/// Event types of this subdomain, in catalog order.
pub fn event_types() -> Vec<Arc<EventType>> {
    super::types_of([TrackingEventEmitted::event_type()])
}
