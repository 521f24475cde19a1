//! Events of the `authz` subdomain (`org.openedx.authz.*`).
//!
//! Unlike the rest of the catalog, these event type names carry no `.v1`
//! suffix.

use std::sync::Arc;

use crate::data::OpenEdxEvent;
use crate::event::EventType;
use crate::{AvroRecord, OpenEdxEvent};

/// A change to a role assignment in the authorization system.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct RoleAssignmentData {
    /// What was done to the assignment (for example an add or a removal).
    pub operation: String,
    /// Who the role is granted to (a user or group identifier).
    pub subject: String,
    /// The role that is granted or withdrawn.
    pub role: String,
    /// Where the role applies (for example a library or a course).
    pub scope: String,
    /// The id of the user who made the change, when known.
    pub actor_id: Option<i64>,
}

/// A role was assigned to a subject within a scope.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.authz.role_assignment.created")]
pub struct RoleAssignmentCreated {
    /// The new assignment.
    pub role_assignment: RoleAssignmentData,
}

/// A role assignment was removed from a subject within a scope.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.authz.role_assignment.deleted")]
pub struct RoleAssignmentDeleted {
    /// The removed assignment.
    pub role_assignment: RoleAssignmentData,
}

/// Event types of this subdomain, in catalog order.
pub fn event_types() -> Vec<Arc<EventType>> {
    super::types_of([RoleAssignmentCreated::event_type(), RoleAssignmentDeleted::event_type()])
}
