//! Events of the `content_authoring` subdomain (`org.openedx.content_authoring.*`).
//!
//! Event type structs are named after the Python signal variable, converted
//! word by word to CamelCase (`XBLOCK_PUBLISHED` → [`XblockPublished`]).
//! Data classes keep their Python class names (`XBlockData`), since those
//! become the Avro record names.
//!
//! This module's [`CourseData`] is a different class from
//! [`learning::CourseData`](super::learning::CourseData): it only holds the
//! course key.

use std::sync::Arc;

use crate::data::{BinaryIo, OpenEdxEvent};
use crate::datetime::IsoDateTime;
use crate::event::EventType;
use crate::keys::{
    CourseKey, LibraryCollectionLocator, LibraryContainerLocator, LibraryLocatorV2, LibraryUsageLocatorV2, UsageKey,
};
use crate::{AvroRecord, OpenEdxEvent};

// ---------------------------------------------------------------------------
// Data classes
// ---------------------------------------------------------------------------

/// A course as Studio knows it: just its key.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseData {
    /// The course key.
    pub course_key: CourseKey,
}

/// The schedule settings of a course run.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseScheduleData {
    /// When the course run opens.
    pub start: IsoDateTime,
    /// The pacing mode (`instructor` or `self`).
    pub pacing: String,
    /// When the course run closes, if it does.
    pub end: Option<IsoDateTime>,
    /// When enrollment opens, if restricted.
    pub enrollment_start: Option<IsoDateTime>,
    /// When enrollment closes, if restricted.
    pub enrollment_end: Option<IsoDateTime>,
}

/// The catalog-relevant information of a course run.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CourseCatalogData {
    /// The course key.
    pub course_key: CourseKey,
    /// The course title.
    pub name: String,
    /// The run's schedule.
    pub schedule_data: CourseScheduleData,
    /// Whether the run is hidden from the catalog.
    pub hidden: bool,
    /// Whether enrollment is by invitation only.
    pub invitation_only: bool,
}

/// An XBlock in a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct XBlockData {
    /// The block's usage key.
    pub usage_key: UsageKey,
    /// The block type, e.g. `problem` or `html`.
    pub block_type: String,
    /// The versioned usage key of the block, when known.
    pub version: Option<UsageKey>,
}

/// An XBlock created as a copy of another one.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct DuplicatedXBlockData {
    /// The new block's usage key.
    pub usage_key: UsageKey,
    /// The block type, e.g. `problem` or `html`.
    pub block_type: String,
    /// The versioned usage key of the new block, when known.
    pub version: Option<UsageKey>,
    /// The usage key of the block that was copied.
    pub source_usage_key: UsageKey,
}

/// A person who signs a course certificate.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CertificateSignatoryData {
    /// The signature image file (not serializable for the bus).
    pub image: BinaryIo,
    /// The signatory's name.
    pub name: String,
    /// The signatory's organization.
    pub organization: String,
    /// The signatory's title or position.
    pub title: String,
}

/// The certificate configuration of a course.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct CertificateConfigData {
    /// The certificate type (course mode), e.g. `verified`.
    pub certificate_type: String,
    /// The course key.
    pub course_key: CourseKey,
    /// The certificate title.
    pub title: String,
    /// The people who sign the certificate.
    pub signatories: Vec<CertificateSignatoryData>,
    /// Whether this configuration is in use.
    pub is_active: bool,
}

/// A content library (v2).
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ContentLibraryData {
    /// The library key.
    pub library_key: LibraryLocatorV2,
    /// Whether dependent blocks should be refreshed (deprecated).
    pub update_blocks: bool,
}

/// A block inside a content library (v2).
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LibraryBlockData {
    /// The key of the library holding the block.
    pub library_key: LibraryLocatorV2,
    /// The block's usage key within the library.
    pub usage_key: LibraryUsageLocatorV2,
}

/// A content object, identified by its id (a usage key or similar).
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ContentObjectData {
    /// The object's identifier, as text.
    pub object_id: String,
}

/// A content object whose associations changed.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct ContentObjectChangedData {
    /// The object's identifier, as text.
    pub object_id: String,
    /// Which kinds of association changed (e.g. `tags`, `collections`).
    pub changes: Vec<String>,
}

/// A collection inside a content library.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LibraryCollectionData {
    /// The collection key.
    pub collection_key: LibraryCollectionLocator,
    /// Whether receivers may handle the change in the background (deprecated).
    pub background: bool,
}

/// A container (unit, section, ...) inside a content library.
#[derive(Debug, Clone, PartialEq, AvroRecord)]
pub struct LibraryContainerData {
    /// The container key.
    pub container_key: LibraryContainerLocator,
    /// Whether receivers may handle the change in the background.
    pub background: bool,
}

// ---------------------------------------------------------------------------
// Event types, in the order of the Python signals module
// ---------------------------------------------------------------------------

/// The catalog information of a course run changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.course.catalog_info.changed.v1")]
pub struct CourseCatalogInfoChanged {
    /// The course run's new catalog information.
    pub catalog_info: CourseCatalogData,
}

/// An XBlock was created in a course.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.xblock.created.v1")]
pub struct XblockCreated {
    /// The new block.
    pub xblock_info: XBlockData,
}

/// An XBlock of a course was changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.xblock.updated.v1")]
pub struct XblockUpdated {
    /// The changed block.
    pub xblock_info: XBlockData,
}

/// An XBlock of a course was published.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.xblock.published.v1")]
pub struct XblockPublished {
    /// The published block.
    pub xblock_info: XBlockData,
}

/// An XBlock was removed from a course.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.xblock.deleted.v1")]
pub struct XblockDeleted {
    /// The removed block.
    pub xblock_info: XBlockData,
}

/// An XBlock was duplicated within a course.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.xblock.duplicated.v1")]
pub struct XblockDuplicated {
    /// The copy, with the key of its source.
    pub xblock_info: DuplicatedXBlockData,
}

/// A course's certificate configuration changed (cannot travel on the bus).
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(
    event_type = "org.openedx.content_authoring.course.certificate_config.changed.v1",
    unserializable
)]
pub struct CourseCertificateConfigChanged {
    /// The new configuration.
    pub certificate_config: CertificateConfigData,
}

/// A course's certificate configuration was deleted (cannot travel on the bus).
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(
    event_type = "org.openedx.content_authoring.course.certificate_config.deleted.v1",
    unserializable
)]
pub struct CourseCertificateConfigDeleted {
    /// The deleted configuration.
    pub certificate_config: CertificateConfigData,
}

/// A course was created in Studio.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.course.created.v1")]
pub struct CourseCreated {
    /// The new course.
    pub course: CourseData,
}

/// A content library was created.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.created.v1")]
pub struct ContentLibraryCreated {
    /// The new library.
    pub content_library: ContentLibraryData,
}

/// A content library's settings or content changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.updated.v1")]
pub struct ContentLibraryUpdated {
    /// The changed library.
    pub content_library: ContentLibraryData,
}

/// A content library was deleted.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.deleted.v1")]
pub struct ContentLibraryDeleted {
    /// The deleted library.
    pub content_library: ContentLibraryData,
}

/// A block was added to a content library.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.library_block.created.v1")]
pub struct LibraryBlockCreated {
    /// The new library block.
    pub library_block: LibraryBlockData,
}

/// A block of a content library was changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.library_block.updated.v1")]
pub struct LibraryBlockUpdated {
    /// The changed library block.
    pub library_block: LibraryBlockData,
}

/// A block was removed from a content library.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.library_block.deleted.v1")]
pub struct LibraryBlockDeleted {
    /// The removed library block.
    pub library_block: LibraryBlockData,
}

/// A block of a content library was published.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.library_block.published.v1")]
pub struct LibraryBlockPublished {
    /// The published library block.
    pub library_block: LibraryBlockData,
}

/// The associations (tags, collections, ...) of a content object changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content.object.associations.changed.v1")]
pub struct ContentObjectAssociationsChanged {
    /// The object and which of its associations changed.
    pub content_object: ContentObjectChangedData,
}

/// The tags of a content object changed (deprecated in favour of
/// [`ContentObjectAssociationsChanged`]).
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content.object.tags.changed.v1")]
pub struct ContentObjectTagsChanged {
    /// The object whose tags changed.
    pub content_object: ContentObjectData,
}

/// A collection was created in a content library.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.collection.created.v1")]
pub struct LibraryCollectionCreated {
    /// The new collection.
    pub library_collection: LibraryCollectionData,
}

/// A collection of a content library was changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.collection.updated.v1")]
pub struct LibraryCollectionUpdated {
    /// The changed collection.
    pub library_collection: LibraryCollectionData,
}

/// A collection was removed from a content library.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.collection.deleted.v1")]
pub struct LibraryCollectionDeleted {
    /// The removed collection.
    pub library_collection: LibraryCollectionData,
}

/// A container was created in a content library.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.container.created.v1")]
pub struct LibraryContainerCreated {
    /// The new container.
    pub library_container: LibraryContainerData,
}

/// A container of a content library was changed.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.container.updated.v1")]
pub struct LibraryContainerUpdated {
    /// The changed container.
    pub library_container: LibraryContainerData,
}

/// A container was removed from a content library.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.container.deleted.v1")]
pub struct LibraryContainerDeleted {
    /// The removed container.
    pub library_container: LibraryContainerData,
}

/// A container of a content library was published.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.content_library.container.published.v1")]
pub struct LibraryContainerPublished {
    /// The published container.
    pub library_container: LibraryContainerData,
}

/// A course import into Studio finished.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.course.import.completed.v1")]
pub struct CourseImportCompleted {
    /// The course that received the import.
    pub course: CourseData,
}

/// A course rerun (a copy of a course as a new run) finished.
#[derive(Debug, Clone, PartialEq, OpenEdxEvent)]
#[openedx_event(event_type = "org.openedx.content_authoring.course.rerun.completed.v1")]
pub struct CourseRerunCompleted {
    /// The new course run.
    pub course: CourseData,
}

/// Event types of this subdomain, in catalog order.
pub fn event_types() -> Vec<Arc<EventType>> {
    super::types_of([
        CourseCatalogInfoChanged::event_type(),
        XblockCreated::event_type(),
        XblockUpdated::event_type(),
        XblockPublished::event_type(),
        XblockDeleted::event_type(),
        XblockDuplicated::event_type(),
        CourseCertificateConfigChanged::event_type(),
        CourseCertificateConfigDeleted::event_type(),
        CourseCreated::event_type(),
        ContentLibraryCreated::event_type(),
        ContentLibraryUpdated::event_type(),
        ContentLibraryDeleted::event_type(),
        LibraryBlockCreated::event_type(),
        LibraryBlockUpdated::event_type(),
        LibraryBlockDeleted::event_type(),
        LibraryBlockPublished::event_type(),
        ContentObjectAssociationsChanged::event_type(),
        ContentObjectTagsChanged::event_type(),
        LibraryCollectionCreated::event_type(),
        LibraryCollectionUpdated::event_type(),
        LibraryCollectionDeleted::event_type(),
        LibraryContainerCreated::event_type(),
        LibraryContainerUpdated::event_type(),
        LibraryContainerDeleted::event_type(),
        LibraryContainerPublished::event_type(),
        CourseImportCompleted::event_type(),
        CourseRerunCompleted::event_type(),
    ])
}
