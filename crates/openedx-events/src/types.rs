//! Semantic payload types: what an event's fields are, before they become Avro.
//!
//! A [`DataType`] says more than an Avro schema does: a `CourseKey` and a
//! `datetime` are both Avro `"string"`, but only the first must parse as a
//! course key and only the second is a timestamp. The Avro schema is derived
//! from these types by the rules of openedx-events (see [`crate::avro::derive`]).

use std::fmt;
use std::sync::Arc;

/// The type of one payload field or container item.
#[derive(Debug, Clone, PartialEq)]
pub enum DataType {
    /// Python `bool`, Avro `"boolean"`.
    Boolean,
    /// Python `int`, Avro `"long"`.
    Long,
    /// Python `float`, Avro `"double"`.
    Double,
    /// Python `bytes`, Avro `"bytes"`.
    Bytes,
    /// Python `str`, Avro `"string"`.
    String,
    /// A type carried as an Avro string with its own text form (opaque keys,
    /// datetimes, UUIDs).
    Custom(CustomType),
    /// `List[T]`, Avro array.
    Array(Box<DataType>),
    /// `Dict[str, T]`, Avro map.
    Map(Box<DataType>),
    /// An attrs data class, Avro record.
    Record(Arc<RecordType>),
    /// A type that has no Avro mapping (for example `typing.BinaryIO`). Events
    /// that carry one are not serializable.
    Unsupported(&'static str),
}

/// The custom types openedx-events serializes as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomType {
    /// `opaque_keys.edx.keys.CourseKey`, e.g. `course-v1:edX+DemoX+2024`.
    CourseKey,
    /// `ccx_keys.locator.CCXLocator`, e.g. `ccx-v1:edX+DemoX+2024+ccx@3`.
    CcxLocator,
    /// `opaque_keys.edx.keys.UsageKey`, e.g. `block-v1:edX+DemoX+2024+type@html+block@b1`.
    UsageKey,
    /// `LibraryLocatorV2`, e.g. `lib:MITx:physics`.
    LibraryLocatorV2,
    /// `LibraryUsageLocatorV2`, e.g. `lb:MITx:physics:problem:p1`.
    LibraryUsageLocatorV2,
    /// `LibraryCollectionLocator`, e.g. `lib-collection:MITx:physics:c1`.
    LibraryCollectionLocator,
    /// `LibraryContainerLocator`, e.g. `lct:MITx:physics:unit:u1`.
    LibraryContainerLocator,
    /// `datetime.datetime`, in Python `isoformat()` text.
    DateTime,
    /// `uuid.UUID`, lower-case hyphenated.
    Uuid,
}

impl CustomType {
    /// The Python class name, for messages.
    pub fn python_name(self) -> &'static str {
        match self {
            CustomType::CourseKey => "CourseKey",
            CustomType::CcxLocator => "CCXLocator",
            CustomType::UsageKey => "UsageKey",
            CustomType::LibraryLocatorV2 => "LibraryLocatorV2",
            CustomType::LibraryUsageLocatorV2 => "LibraryUsageLocatorV2",
            CustomType::LibraryCollectionLocator => "LibraryCollectionLocator",
            CustomType::LibraryContainerLocator => "LibraryContainerLocator",
            CustomType::DateTime => "datetime",
            CustomType::Uuid => "UUID",
        }
    }
}

impl fmt::Display for CustomType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.python_name())
    }
}

/// A data class: a named, ordered list of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordType {
    /// The short class name; it becomes the Avro record name.
    pub name: String,
    /// Fields in declaration order, inherited fields first.
    pub fields: Vec<FieldDef>,
}

impl RecordType {
    /// A record type from its name and fields.
    ///
    /// ```
    /// use openedx_events::types::{DataType, FieldDef, RecordType};
    /// let r = RecordType::new("ProgramData", vec![FieldDef::required("uuid", DataType::String)]);
    /// assert_eq!(r.fields[0].name, "uuid");
    /// ```
    pub fn new(name: impl Into<String>, fields: Vec<FieldDef>) -> Self {
        RecordType {
            name: name.into(),
            fields,
        }
    }

    /// The field with this name, if any.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// One field of a record or one top-level payload argument.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// The attribute or argument name.
    pub name: String,
    /// Its type.
    pub ty: DataType,
    /// `default=None` in Python: the Avro type becomes `["null", T]` with a
    /// null default, and the value may be absent.
    pub optional: bool,
}

impl FieldDef {
    /// A required field.
    pub fn required(name: impl Into<String>, ty: DataType) -> Self {
        FieldDef {
            name: name.into(),
            ty,
            optional: false,
        }
    }

    /// An optional (`default=None`) field.
    pub fn optional(name: impl Into<String>, ty: DataType) -> Self {
        FieldDef {
            name: name.into(),
            ty,
            optional: true,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Boolean => f.write_str("bool"),
            DataType::Long => f.write_str("int"),
            DataType::Double => f.write_str("float"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::String => f.write_str("str"),
            DataType::Custom(c) => write!(f, "{c}"),
            DataType::Array(t) => write!(f, "List[{t}]"),
            DataType::Map(t) => write!(f, "Dict[str, {t}]"),
            DataType::Record(r) => f.write_str(&r.name),
            DataType::Unsupported(name) => f.write_str(name),
        }
    }
}
