//! Events of the `learning` subdomain (`org.openedx.learning.*`).
//!
//! Event type structs are named after the Python signal variable, converted
//! word by word to CamelCase (`ORA_SUBMISSION_CREATED` →
//! [`OraSubmissionCreated`]). Data classes keep their Python class names
//! (`ORASubmissionData`), since those become the Avro record names.
//!
//! This module's [`CourseData`] is a different class from
//! [`content_authoring::CourseData`](super::content_authoring::CourseData).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::data::OpenEdxEvent;
use crate::datetime::IsoDateTime;
use crate::event::EventType;
use crate::keys::{CcxLocator, CourseKey, UsageKey};
use crate::{AvroRecord, OpenEdxEvent};

// ---------------------------------------------------------------------------
// Data classes
// ---------------------------------------------------------------------------

/// The parts of a user's data that do not identify a person.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct UserNonPersonalData {
    /// The LMS user id.
    pub id: i64,
    /// Whether the account is active.
    pub is_active: bool,
}

/// The personally identifying parts of a user's data.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct UserPersonalData {
    /// The login name.
    pub username: String,
    /// The email address.
    pub email: String,
    /// The full name (may be empty).
    pub name: String,
}

/// A user: the non-personal fields of [`UserNonPersonalData`] plus personal data.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct UserData {
    /// The LMS user id.
    pub id: i64,
    /// Whether the account is active.
    pub is_active: bool,
    /// The personally identifying data.
    pub pii: UserPersonalData,
}

/// A course as the LMS presents it.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseData {
    /// The course key.
    pub course_key: CourseKey,
    /// The course title (may be empty).
    pub display_name: String,
    /// When the course starts, if set.
    pub start: Option<IsoDateTime>,
    /// When the course ends, if set.
    pub end: Option<IsoDateTime>,
}

/// A custom course (CCX) derived from a master course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CcxCourseData {
    /// The CCX course key.
    pub ccx_course_key: CcxLocator,
    /// The key of the course the CCX is built from.
    pub master_course_key: CourseKey,
    /// The CCX title (may be empty).
    pub display_name: String,
    /// The email of the CCX coach (may be empty).
    pub coach_email: String,
    /// When the CCX starts, as text, if set.
    pub start: Option<String>,
    /// When the CCX ends, as text, if set.
    pub end: Option<String>,
    /// The enrollment cap, if any.
    pub max_students_allowed: Option<i64>,
}

/// A learner's enrollment in a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseEnrollmentData {
    /// The enrolled learner.
    pub user: UserData,
    /// The course.
    pub course: CourseData,
    /// The enrollment mode, e.g. `audit` or `verified`.
    pub mode: String,
    /// Whether the enrollment is active.
    pub is_active: bool,
    /// When the enrollment was created.
    pub creation_date: IsoDateTime,
    /// The user who made the enrollment on the learner's behalf, if any.
    pub created_by: Option<UserData>,
}

/// A learner's course certificate.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CertificateData {
    /// The certificate holder.
    pub user: UserData,
    /// The course.
    pub course: CourseData,
    /// The enrollment mode the certificate was earned in.
    pub mode: String,
    /// The grade on the certificate.
    pub grade: String,
    /// Where the certificate can be downloaded.
    pub download_url: String,
    /// The name printed on the certificate.
    pub name: String,
    /// The certificate's status now.
    pub current_status: String,
    /// The certificate's status before the change (may be empty).
    pub previous_status: String,
}

/// A learner's membership in a course cohort.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CohortData {
    /// The learner.
    pub user: UserData,
    /// The course.
    pub course: CourseData,
    /// The cohort name.
    pub name: String,
}

/// One discussion topic of a course and where it lives.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct DiscussionTopicContext {
    /// The topic title.
    pub title: String,
    /// The unit the topic is attached to, if any.
    pub usage_key: Option<UsageKey>,
    /// The group the topic is restricted to, if any.
    pub group_id: Option<i64>,
    /// The topic id in the discussion provider, if any.
    pub external_id: Option<String>,
    /// The position of the topic in listings, if set.
    pub ordering: Option<i64>,
    /// Extra provider-specific information.
    pub context: BTreeMap<String, String>,
}

/// The discussion settings of a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseDiscussionConfigurationData {
    /// The course key.
    pub course_key: CourseKey,
    /// The discussion provider in use.
    pub provider_type: String,
    /// Whether discussions are on.
    pub enabled: bool,
    /// Whether discussions show inside course units.
    pub enable_in_context: bool,
    /// Whether graded units get discussions.
    pub enable_graded_units: bool,
    /// Whether discussion visibility is set per unit.
    pub unit_level_visibility: bool,
    /// Provider plugin switches.
    pub plugin_configuration: BTreeMap<String, bool>,
    /// The course's discussion topics.
    pub contexts: Vec<DiscussionTopicContext>,
}

/// A learner's stored overall grade in a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct PersistentCourseGradeData {
    /// The LMS user id.
    pub user_id: i64,
    /// The course.
    pub course: CourseData,
    /// When the course content last changed before grading.
    pub course_edited_timestamp: IsoDateTime,
    /// The course content version that was graded.
    pub course_version: String,
    /// A hash of the grading policy used.
    pub grading_policy_hash: String,
    /// The grade as a fraction between 0 and 1.
    pub percent_grade: f64,
    /// The letter grade (may be empty).
    pub letter_grade: String,
    /// When the learner first passed.
    pub passed_timestamp: IsoDateTime,
}

/// The skills verified (or rejected) for an XBlock.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct XBlockSkillVerificationData {
    /// The block's usage key.
    pub usage_key: UsageKey,
    /// Ids of skills confirmed for the block.
    pub verified_skills: Vec<i64>,
    /// Ids of skills rejected for the block.
    pub ignored_skills: Vec<i64>,
}

/// A request to notify some users.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct UserNotificationData {
    /// The LMS ids of the users to notify.
    pub user_ids: Vec<i64>,
    /// The notification type.
    pub notification_type: String,
    /// The link the notification points to.
    pub content_url: String,
    /// The app that sends the notification.
    pub app_name: String,
    /// The course the notification is about.
    pub course_key: CourseKey,
    /// Values for the notification template.
    pub context: BTreeMap<String, String>,
}

/// A program (a series of courses).
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ProgramData {
    /// The program's id, as text.
    pub uuid: String,
    /// The program title.
    pub title: String,
    /// The kind of program, e.g. `MicroMasters`.
    pub program_type: String,
}

/// A learner's program certificate.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ProgramCertificateData {
    /// The certificate holder.
    pub user: UserData,
    /// The program.
    pub program: ProgramData,
    /// The certificate's id, as text.
    pub uuid: String,
    /// The certificate's status.
    pub status: String,
    /// Where the certificate can be viewed.
    pub url: String,
    /// When the certificate becomes visible, if set.
    pub certificate_available_date: Option<IsoDateTime>,
}

/// A learner's attempt at a special exam.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ExamAttemptData {
    /// The learner taking the exam.
    pub student_user: UserData,
    /// The course.
    pub course_key: CourseKey,
    /// The exam's usage key.
    pub usage_key: UsageKey,
    /// The exam kind, e.g. `proctored` or `timed`.
    pub exam_type: String,
    /// The user who triggered the change, if not the learner.
    pub requesting_user: Option<UserData>,
}

/// A user's access role in a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseAccessRoleData {
    /// The user holding the role.
    pub user: UserData,
    /// The organization the role belongs to.
    pub org_key: String,
    /// The course the role applies to.
    pub course_key: CourseKey,
    /// The role name, e.g. `staff` or `instructor`.
    pub role: String,
}

/// A post (thread, response or comment) in the course forums.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct DiscussionThreadData {
    /// The post text.
    pub body: String,
    /// The id of the discussion topic it belongs to.
    pub commentable_id: String,
    /// The post id.
    pub id: String,
    /// Whether `body` was shortened.
    pub truncated: bool,
    /// The link to the post.
    pub url: String,
    /// The author.
    pub user: UserData,
    /// The course.
    pub course_id: CourseKey,
    /// The thread kind (`discussion` or `question`), if a thread.
    pub thread_type: Option<String>,
    /// Whether the post is anonymous to everyone, if known.
    pub anonymous: Option<bool>,
    /// Whether the post is anonymous to other learners, if known.
    pub anonymous_to_peers: Option<bool>,
    /// The thread title, if a thread.
    pub title: Option<String>,
    /// Whether `title` was shortened, if known.
    pub title_truncated: Option<bool>,
    /// The cohort the post is restricted to, if any.
    pub group_id: Option<i64>,
    /// The team the post belongs to, if any.
    pub team_id: Option<i64>,
    /// The topic category id, if any.
    pub category_id: Option<i64>,
    /// The topic category name, if any.
    pub category_name: Option<String>,
    /// Extra information about the discussion, if any.
    pub discussion: Option<BTreeMap<String, String>>,
    /// The author's course roles.
    pub user_course_roles: Vec<String>,
    /// The author's forum roles.
    pub user_forums_roles: Vec<String>,
    /// Flags about the post.
    pub options: BTreeMap<String, bool>,
}

/// A request to notify an audience within a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseNotificationData {
    /// The course.
    pub course_key: CourseKey,
    /// The app that sends the notification.
    pub app_name: String,
    /// The notification type.
    pub notification_type: String,
    /// The link the notification points to.
    pub content_url: String,
    /// Values for the notification template.
    pub content_context: BTreeMap<String, String>,
    /// Who gets the notification: filter name to allowed values.
    pub audience_filters: BTreeMap<String, Vec<String>>,
}

/// The answer of an open response assessment submission.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ORASubmissionAnswer {
    /// The text parts of the answer.
    pub parts: Vec<BTreeMap<String, String>>,
    /// Storage keys of uploaded files.
    pub file_keys: Vec<String>,
    /// Descriptions of uploaded files.
    pub file_descriptions: Vec<String>,
    /// Names of uploaded files.
    pub file_names: Vec<String>,
    /// Sizes of uploaded files, in bytes.
    pub file_sizes: Vec<i64>,
    /// Links to uploaded files.
    pub file_urls: Vec<String>,
}

/// A submission to an open response assessment.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ORASubmissionData {
    /// The submission id.
    pub uuid: String,
    /// The learner's anonymous id for the course.
    pub anonymous_user_id: String,
    /// The usage key of the assessment block, as text.
    pub location: String,
    /// Which attempt this is.
    pub attempt_number: i64,
    /// When the submission was created.
    pub created_at: IsoDateTime,
    /// When the submission was handed in.
    pub submitted_at: IsoDateTime,
    /// The submitted answer.
    pub answer: ORASubmissionAnswer,
}

/// Whether a learner is passing a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CoursePassingStatusData {
    /// Whether the learner is passing.
    pub is_passing: bool,
    /// The course.
    pub course: CourseData,
    /// The learner.
    pub user: UserData,
}

/// Whether a learner is passing a custom course (CCX).
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CcxCoursePassingStatusData {
    /// Whether the learner is passing.
    pub is_passing: bool,
    /// The learner.
    pub user: UserData,
    /// The CCX course.
    pub course: CcxCourseData,
}

/// The template a badge is issued from.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct BadgeTemplateData {
    /// The template id, as text.
    pub uuid: String,
    /// The badge service the template comes from.
    pub origin: String,
    /// The badge name, if set.
    pub name: Option<String>,
    /// The badge description, if set.
    pub description: Option<String>,
    /// The badge image link, if set.
    pub image_url: Option<String>,
}

/// A badge issued to a learner.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct BadgeData {
    /// The badge id, as text.
    pub uuid: String,
    /// The badge holder.
    pub user: UserData,
    /// The template the badge was issued from.
    pub template: BadgeTemplateData,
}

/// An identity verification attempt.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct VerificationAttemptData {
    /// The attempt id.
    pub attempt_id: i64,
    /// The user being verified.
    pub user: UserData,
    /// The attempt's status.
    pub status: String,
    /// The name being verified, if given.
    pub name: Option<String>,
    /// When the verification stops being valid, if set.
    pub expiration_date: Option<IsoDateTime>,
}

/// A score returned by an external grader.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ExternalGraderScoreData {
    /// The maximum possible points.
    pub points_possible: i64,
    /// The points awarded.
    pub points_earned: i64,
    /// The course id, as text.
    pub course_id: String,
    /// The grader's feedback message.
    pub score_msg: String,
    /// The graded submission's id.
    pub submission_id: i64,
    /// The learner's id, as text.
    pub user_id: String,
    /// The graded block's id, as text.
    pub module_id: String,
    /// The key of the grading request in the queue.
    pub queue_key: String,
    /// The name of the grading queue.
    pub queue_name: String,
}

/// The parameters of an LTI launch into the platform.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LtiProviderLaunchParamsData {
    /// The LTI roles of the launching user.
    pub roles: String,
    /// The LTI context id.
    pub context_id: String,
    /// The LTI user id.
    pub user_id: String,
    /// Any other launch parameters.
    pub extra_params: BTreeMap<String, String>,
}

/// A successful LTI launch into a course block.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LtiProviderLaunchData {
    /// The launching user.
    pub user: UserData,
    /// The course.
    pub course_key: CourseKey,
    /// The launched block.
    pub usage_key: UsageKey,
    /// The launch parameters.
    pub launch_params: LtiProviderLaunchParamsData,
}

// ---------------------------------------------------------------------------
// Event types, in the order of the Python signals module
// ---------------------------------------------------------------------------

/// A user finished registering an account.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.student.registration.completed.v1")]
pub struct StudentRegistrationCompleted {
    /// The new user.
    pub user: UserData,
}

/// A user logged in.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.auth.session.login.completed.v1")]
pub struct SessionLoginCompleted {
    /// The user.
    pub user: UserData,
}

/// A learner enrolled in a course.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.course.enrollment.created.v1")]
pub struct CourseEnrollmentCreated {
    /// The new enrollment.
    pub enrollment: CourseEnrollmentData,
}

/// A course enrollment changed (mode or active flag).
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.course.enrollment.changed.v1")]
pub struct CourseEnrollmentChanged {
    /// The enrollment after the change.
    pub enrollment: CourseEnrollmentData,
}

/// A learner left a course.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.course.unenrollment.completed.v1")]
pub struct CourseUnenrollmentCompleted {
    /// The ended enrollment.
    pub enrollment: CourseEnrollmentData,
}

/// A course certificate was issued.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.certificate.created.v1")]
pub struct CertificateCreated {
    /// The new certificate.
    pub certificate: CertificateData,
}

/// A program certificate was awarded.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.program.certificate.awarded.v1")]
pub struct ProgramCertificateAwarded {
    /// The awarded certificate.
    pub program_certificate: ProgramCertificateData,
}

/// A course certificate changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.certificate.changed.v1")]
pub struct CertificateChanged {
    /// The certificate after the change.
    pub certificate: CertificateData,
}

/// A course certificate was revoked.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.certificate.revoked.v1")]
pub struct CertificateRevoked {
    /// The revoked certificate.
    pub certificate: CertificateData,
}

/// A program certificate was revoked.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.program.certificate.revoked.v1")]
pub struct ProgramCertificateRevoked {
    /// The revoked certificate.
    pub program_certificate: ProgramCertificateData,
}

/// A learner was added to or moved between course cohorts.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.cohort_membership.changed.v1")]
pub struct CohortMembershipChanged {
    /// The new membership.
    pub cohort: CohortData,
}

/// A course's discussion settings changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.discussions.configuration.changed.v1")]
pub struct CourseDiscussionsChanged {
    /// The new settings.
    pub configuration: CourseDiscussionConfigurationData,
}

/// A learner's stored course grade changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.course.persistent_grade_summary.changed.v1")]
pub struct PersistentGradeSummaryChanged {
    /// The new grade.
    pub grade: PersistentCourseGradeData,
}

/// The skills of an XBlock were verified.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.xblock.skill.verified.v1")]
pub struct XblockSkillVerified {
    /// The block and its verified and ignored skills.
    pub xblock_info: XBlockSkillVerificationData,
}

/// Users should be sent a notification.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.user.notification.requested.v1")]
pub struct UserNotificationRequested {
    /// The notification and its recipients.
    pub notification_data: UserNotificationData,
}

/// A learner submitted an exam attempt.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.exam.attempt.submitted.v1")]
pub struct ExamAttemptSubmitted {
    /// The attempt.
    pub exam_attempt: ExamAttemptData,
}

/// An exam attempt was rejected.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.exam.attempt.rejected.v1")]
pub struct ExamAttemptRejected {
    /// The attempt.
    pub exam_attempt: ExamAttemptData,
}

/// An exam attempt was verified.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.exam.attempt.verified.v1")]
pub struct ExamAttemptVerified {
    /// The attempt.
    pub exam_attempt: ExamAttemptData,
}

/// An exam attempt ended in an error.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.exam.attempt.errored.v1")]
pub struct ExamAttemptErrored {
    /// The attempt.
    pub exam_attempt: ExamAttemptData,
}

/// An exam attempt was reset.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.exam.attempt.reset.v1")]
pub struct ExamAttemptReset {
    /// The attempt.
    pub exam_attempt: ExamAttemptData,
}

/// A user was given a course access role.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.user.course_access_role.added.v1")]
pub struct CourseAccessRoleAdded {
    /// The granted role.
    pub course_access_role_data: CourseAccessRoleData,
}

/// A course access role was taken from a user.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.user.course_access_role.removed.v1")]
pub struct CourseAccessRoleRemoved {
    /// The removed role.
    pub course_access_role_data: CourseAccessRoleData,
}

/// A forum thread was started.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.forum.thread.created.v1")]
pub struct ForumThreadCreated {
    /// The new thread.
    pub thread: DiscussionThreadData,
}

/// A response was posted to a forum thread.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.forum.thread.response.created.v1")]
pub struct ForumThreadResponseCreated {
    /// The new response.
    pub thread: DiscussionThreadData,
}

/// A comment was posted on a forum response.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.forum.thread.response.comment.created.v1")]
pub struct ForumResponseCommentCreated {
    /// The new comment.
    pub thread: DiscussionThreadData,
}

/// An audience within a course should be sent a notification.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.course.notification.requested.v1")]
pub struct CourseNotificationRequested {
    /// The notification and its audience.
    pub course_notification_data: CourseNotificationData,
}

/// A learner submitted an open response assessment.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.ora.submission.created.v1")]
pub struct OraSubmissionCreated {
    /// The submission.
    pub submission: ORASubmissionData,
}

/// A learner's passing status in a course changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.course.passing.status.updated.v1")]
pub struct CoursePassingStatusUpdated {
    /// The new status.
    pub course_passing_status: CoursePassingStatusData,
}

/// A learner's passing status in a custom course (CCX) changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.ccx.course.passing.status.updated.v1")]
pub struct CcxCoursePassingStatusUpdated {
    /// The new status.
    pub course_passing_status: CcxCoursePassingStatusData,
}

/// A badge was awarded to a learner.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.badge.awarded.v1")]
pub struct BadgeAwarded {
    /// The awarded badge.
    pub badge: BadgeData,
}

/// A learner's badge was revoked.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.badge.revoked.v1")]
pub struct BadgeRevoked {
    /// The revoked badge.
    pub badge: BadgeData,
}

/// An identity verification attempt was started.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.idv_attempt.created.v1")]
pub struct IdvAttemptCreated {
    /// The attempt.
    pub idv_attempt: VerificationAttemptData,
}

/// An identity verification attempt is waiting for review.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.idv_attempt.pending.v1")]
pub struct IdvAttemptPending {
    /// The attempt.
    pub idv_attempt: VerificationAttemptData,
}

/// An identity verification attempt was approved.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.idv_attempt.approved.v1")]
pub struct IdvAttemptApproved {
    /// The attempt.
    pub idv_attempt: VerificationAttemptData,
}

/// An identity verification attempt was denied.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.idv_attempt.denied.v1")]
pub struct IdvAttemptDenied {
    /// The attempt.
    pub idv_attempt: VerificationAttemptData,
}

/// An external grader returned a score (kept off the bus, see
/// [`KNOWN_UNSERIALIZABLE`](super::KNOWN_UNSERIALIZABLE)).
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(
    event_type = "org.openedx.learning.external_grader.score.submitted.v1",
    unserializable
)]
pub struct ExternalGraderScoreSubmitted {
    /// The score.
    pub score: ExternalGraderScoreData,
}

/// A user was launched into a course block through LTI.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.learning.lti_provider.launch.success.v1")]
pub struct LtiProviderLaunchSuccess {
    /// The launch.
    pub launch_data: LtiProviderLaunchData,
}

/// Event types of this subdomain, in catalog order.
pub fn event_types() -> Vec<Arc<EventType>> {
    super::types_of([
        StudentRegistrationCompleted::event_type(),
        SessionLoginCompleted::event_type(),
        CourseEnrollmentCreated::event_type(),
        CourseEnrollmentChanged::event_type(),
        CourseUnenrollmentCompleted::event_type(),
        CertificateCreated::event_type(),
        ProgramCertificateAwarded::event_type(),
        CertificateChanged::event_type(),
        CertificateRevoked::event_type(),
        ProgramCertificateRevoked::event_type(),
        CohortMembershipChanged::event_type(),
        CourseDiscussionsChanged::event_type(),
        PersistentGradeSummaryChanged::event_type(),
        XblockSkillVerified::event_type(),
        UserNotificationRequested::event_type(),
        ExamAttemptSubmitted::event_type(),
        ExamAttemptRejected::event_type(),
        ExamAttemptVerified::event_type(),
        ExamAttemptErrored::event_type(),
        ExamAttemptReset::event_type(),
        CourseAccessRoleAdded::event_type(),
        CourseAccessRoleRemoved::event_type(),
        ForumThreadCreated::event_type(),
        ForumThreadResponseCreated::event_type(),
        ForumResponseCommentCreated::event_type(),
        CourseNotificationRequested::event_type(),
        OraSubmissionCreated::event_type(),
        CoursePassingStatusUpdated::event_type(),
        CcxCoursePassingStatusUpdated::event_type(),
        BadgeAwarded::event_type(),
        BadgeRevoked::event_type(),
        IdvAttemptCreated::event_type(),
        IdvAttemptPending::event_type(),
        IdvAttemptApproved::event_type(),
        IdvAttemptDenied::event_type(),
        ExternalGraderScoreSubmitted::event_type(),
        LtiProviderLaunchSuccess::event_type(),
    ])
}
