//! Events of the `enterprise` subdomain (`org.openedx.enterprise.*`).

use std::sync::Arc;

use uuid::Uuid;

use crate::data::OpenEdxEvent;
use crate::datetime::IsoDateTime;
use crate::event::EventType;
use crate::keys::CourseKey;
use crate::{AvroRecord, OpenEdxEvent};

// ---------------------------------------------------------------------------
// Data classes
// ---------------------------------------------------------------------------

/// A redemption of an enterprise subsidy.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct SubsidyRedemption {
    /// The identifier of the subsidy that paid.
    pub subsidy_identifier: String,
    /// The content the subsidy paid for.
    pub content_key: String,
    /// The LMS id of the learner who benefits.
    pub lms_user_id: i64,
}

/// The reversal of a subsidy ledger transaction.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LedgerTransactionReversal {
    /// The reversal's id.
    pub uuid: Uuid,
    /// When the reversal record was created.
    pub created: IsoDateTime,
    /// When the reversal record last changed.
    pub modified: IsoDateTime,
    /// A key that makes repeating the reversal harmless.
    pub idempotency_key: String,
    /// The amount given back (in the ledger's unit).
    pub quantity: i64,
    /// The reversal's lifecycle state.
    pub state: String,
}

/// A transaction on a subsidy ledger.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LedgerTransaction {
    /// The transaction's id.
    pub uuid: Uuid,
    /// When the transaction record was created.
    pub created: IsoDateTime,
    /// When the transaction record last changed.
    pub modified: IsoDateTime,
    /// A key that makes repeating the transaction harmless.
    pub idempotency_key: String,
    /// The amount moved (in the ledger's unit).
    pub quantity: i64,
    /// The transaction's lifecycle state.
    pub state: String,
    /// The id of the ledger the transaction belongs to.
    pub ledger_uuid: Uuid,
    /// The id of the access policy that allowed the spend.
    pub subsidy_access_policy_uuid: Uuid,
    /// The LMS id of the learner who benefits.
    pub lms_user_id: i64,
    /// The course run paid for.
    pub content_key: CourseKey,
    /// The course that contains the paid-for run, if known.
    pub parent_content_key: Option<String>,
    /// The id of the fulfillment in the enrollment system, if any.
    pub fulfillment_identifier: Option<String>,
    /// The reversal of this transaction, if it was reversed.
    pub reversal: Option<LedgerTransactionReversal>,
}

/// A learner linked to an enterprise customer.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct EnterpriseCustomerUser {
    /// The link record's id.
    pub id: i64,
    /// When the link was created.
    pub created: IsoDateTime,
    /// When the link last changed.
    pub modified: IsoDateTime,
    /// The enterprise customer's id.
    pub enterprise_customer_uuid: Uuid,
    /// The LMS user id.
    pub user_id: i64,
    /// Whether this is the learner's active enterprise.
    pub active: bool,
    /// Whether the learner is currently linked to the customer.
    pub linked: bool,
    /// Whether the learner may be linked again after unlinking.
    pub is_relinkable: bool,
    /// Whether activating this link deactivates the learner's other links.
    pub should_inactivate_other_customers: bool,
    /// The invitation key used to join, if any.
    pub invite_key: Option<Uuid>,
}

/// An enrollment of an enterprise learner in a course run.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct EnterpriseCourseEnrollment {
    /// The enrollment record's id.
    pub id: i64,
    /// When the enrollment was created.
    pub created: IsoDateTime,
    /// When the enrollment last changed.
    pub modified: IsoDateTime,
    /// The enrolled learner and their enterprise.
    pub enterprise_customer_user: EnterpriseCustomerUser,
    /// The course run.
    pub course_id: CourseKey,
    /// Whether the learner saved the course for later.
    pub saved_for_later: bool,
    /// Where the enrollment came from, if known.
    pub source_slug: Option<String>,
    /// Whether the learner has unenrolled, if known.
    pub unenrolled: Option<bool>,
    /// When the learner unenrolled, if they did.
    pub unenrolled_at: Option<IsoDateTime>,
}

/// An enrollment paid for with enterprise learner credit.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LearnerCreditEnterpriseCourseEnrollment {
    /// The fulfillment record's id.
    pub uuid: Uuid,
    /// When the record was created.
    pub created: IsoDateTime,
    /// When the record last changed.
    pub modified: IsoDateTime,
    /// How the enrollment was fulfilled.
    pub fulfillment_type: String,
    /// Whether the enrollment has been revoked.
    pub is_revoked: bool,
    /// The related enterprise course entitlement, if any.
    pub enterprise_course_entitlement_uuid: Option<Uuid>,
    /// The underlying enterprise enrollment, if any.
    pub enterprise_course_enrollment: Option<EnterpriseCourseEnrollment>,
    /// The ledger transaction that paid for it, if any.
    pub transaction_id: Option<Uuid>,
}

/// A group of learners within an enterprise.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct EnterpriseGroup {
    /// The group's id.
    pub uuid: Uuid,
}

// ---------------------------------------------------------------------------
// Event types, in the order of the Python signals module
// ---------------------------------------------------------------------------

/// An enterprise subsidy was redeemed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.subsidy.redeemed.v1")]
pub struct SubsidyRedeemed {
    /// The redemption.
    pub redemption: SubsidyRedemption,
}

/// A subsidy redemption was reversed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.subsidy.redemption-reversed.v1")]
pub struct SubsidyRedemptionReversed {
    /// The reversed redemption.
    pub redemption: SubsidyRedemption,
}

/// A subsidy ledger transaction was created.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.subsidy_ledger_transaction.created.v1")]
pub struct LedgerTransactionCreated {
    /// The new transaction.
    pub ledger_transaction: LedgerTransaction,
}

/// A subsidy ledger transaction was committed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.subsidy_ledger_transaction.committed.v1")]
pub struct LedgerTransactionCommitted {
    /// The committed transaction.
    pub ledger_transaction: LedgerTransaction,
}

/// A subsidy ledger transaction failed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.subsidy_ledger_transaction.failed.v1")]
pub struct LedgerTransactionFailed {
    /// The failed transaction.
    pub ledger_transaction: LedgerTransaction,
}

/// A subsidy ledger transaction was reversed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.subsidy_ledger_transaction.reversed.v1")]
pub struct LedgerTransactionReversed {
    /// The reversed transaction, with its reversal.
    pub ledger_transaction: LedgerTransaction,
}

/// A course enrollment paid with learner credit was revoked.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.learner_credit_course_enrollment.revoked.v1")]
pub struct LearnerCreditCourseEnrollmentRevoked {
    /// The revoked enrollment.
    pub learner_credit_course_enrollment: LearnerCreditEnterpriseCourseEnrollment,
}

/// An enterprise group was deleted.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.enterprise.enterprise_group.deleted.v1")]
pub struct EnterpriseGroupDeleted {
    /// The deleted group.
    pub enterprise_group: EnterpriseGroup,
}

/// Event types of this subdomain, in catalog order.
pub fn event_types() -> Vec<Arc<EventType>> {
    super::types_of([
        SubsidyRedeemed::event_type(),
        SubsidyRedemptionReversed::event_type(),
        LedgerTransactionCreated::event_type(),
        LedgerTransactionCommitted::event_type(),
        LedgerTransactionFailed::event_type(),
        LedgerTransactionReversed::event_type(),
        LearnerCreditCourseEnrollmentRevoked::event_type(),
        EnterpriseGroupDeleted::event_type(),
    ])
}
