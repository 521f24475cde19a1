//! The Open edX event catalog: every event type of openedx-events 11.2.0 with
//! its payload data classes, grouped by architecture subdomain.
//!
//! Naming rules:
//!
//! * A data class keeps its Python class name (`XBlockData`,
//!   `ORASubmissionData`), since that name is the Avro record name on the
//!   wire. Inherited attrs fields are flattened into the struct, base-class
//!   fields first, as Python orders them.
//! * An event type struct is the Python signal variable converted word by
//!   word to CamelCase: each `_`-separated word keeps its first letter upper
//!   case and the rest lower case (`COURSE_ENROLLMENT_CREATED` →
//!   `CourseEnrollmentCreated`, `XBLOCK_PUBLISHED` → `XblockPublished`,
//!   `ORA_SUBMISSION_CREATED` → `OraSubmissionCreated`). Its single field is
//!   the Python data argument name.
//!
//! [`all`] lists the subdomains in the order Python's `load_all_signals`
//! imports them (analytics, authz, content_authoring, enterprise, learning),
//! and each subdomain's events in the order of its `signals.py`.
//!
//! ```
//! use openedx_events::catalog::{self, learning};
//! use openedx_events::data::OpenEdxEvent;
//! assert_eq!(catalog::all().len(), 75);
//! let t = learning::CourseEnrollmentCreated::event_type();
//! assert_eq!(t.name(), "org.openedx.learning.course.enrollment.created.v1");
//! assert!(catalog::get(t.name()).is_some());
//! ```

use std::sync::{Arc, OnceLock};

use crate::event::EventType;

pub mod analytics;
pub mod authz;
pub mod content_authoring;
pub mod enterprise;
pub mod learning;

/// The event types that never travel on the bus (Python's
/// `KNOWN_UNSERIALIZABLE_SIGNALS`): the two certificate configuration events
/// carry a file handle, and the external grader event is kept in-process.
pub const KNOWN_UNSERIALIZABLE: [&str; 3] = [
    "org.openedx.content_authoring.course.certificate_config.changed.v1",
    "org.openedx.content_authoring.course.certificate_config.deleted.v1",
    "org.openedx.learning.external_grader.score.submitted.v1",
];

/// Every catalog event type, in catalog order.
pub fn all() -> &'static [Arc<EventType>] {
    static ALL: OnceLock<Vec<Arc<EventType>>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        v.extend(analytics::event_types());
        v.extend(authz::event_types());
        v.extend(content_authoring::event_types());
        v.extend(enterprise::event_types());
        v.extend(learning::event_types());
        v
    })
}

/// The catalog event type with this name.
pub fn get(name: &str) -> Option<&'static Arc<EventType>> {
    all().iter().find(|t| t.name() == name)
}

/// The event types that can travel on the bus.
pub fn bus_capable() -> impl Iterator<Item = &'static Arc<EventType>> {
    all().iter().filter(|t| t.is_bus_capable())
}

pub(crate) fn types_of<const N: usize>(list: [&'static Arc<EventType>; N]) -> Vec<Arc<EventType>> {
    list.into_iter().cloned().collect()
}
