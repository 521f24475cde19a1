//! The Avro side of openedx-events: schema derivation, schemaless binary
//! encoding and decoding, schema resolution, and the JSON record form.
//!
//! Written by hand rather than on `apache-avro`: one catalog event type,
//! `org.openedx.enterprise.subsidy.redemption-reversed.v1`, has a hyphen in its
//! namespace, which strict Avro name rules (and that crate) reject while
//! fastavro, the Python peer, accepts it. The schemaless encoding itself is
//! small, and owning it lets decoding of untrusted bytes be bounded and
//! panic-free.
//!
//! ```
//! use openedx_events::avro::{Schema, encode, decode};
//! use openedx_events::value::{Record, Value};
//! let schema = Schema::parse_str(r#"{"type": "record", "name": "R", "fields": [
//!     {"name": "i", "type": "long"}, {"name": "s", "type": "string"}]}"#).unwrap();
//! let rec = Value::Record(Record::new().with("i", Value::Long(1)).with("s", Value::from("ab")));
//! let bytes = encode(&schema, &rec).unwrap();
//! assert_eq!(bytes, [0x02, 0x04, b'a', b'b']);
//! assert_eq!(decode(&schema, &bytes).unwrap(), rec);
//! ```

pub mod decode;
pub mod derive;
pub mod encode;
pub mod json;
pub mod resolve;
pub mod schema;
pub mod validate;

pub use decode::{decode, decode_prefix, DecodeError};
pub use encode::{encode, encode_into, EncodeError};
pub use resolve::{decode_resolved, ResolveError};
pub use schema::{Schema, SchemaError};

/// A position inside a value, for error messages: `enrollment.user.pii.email`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    pub(crate) fn push_front(&mut self, segment: impl Into<String>) {
        self.0.insert(0, segment.into());
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        let mut first = true;
        for seg in &self.0 {
            if seg.starts_with('[') {
                f.write_str(seg)?;
            } else {
                if !first {
                    f.write_str(".")?;
                }
                f.write_str(seg)?;
            }
            first = false;
        }
        Ok(())
    }
}
