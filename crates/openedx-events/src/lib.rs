//! # openedx-events
//!
//! The core of the Open edX event bus in Rust: event types and their
//! payloads, the metadata envelope, the catalog of Open edX events, and the
//! Avro wire format, byte for byte as the Python `openedx-events` library
//! writes it.
//!
//! ```
//! use openedx_events::catalog;
//! let t = catalog::get("org.openedx.learning.course.enrollment.created.v1").unwrap();
//! let data = t.data_from_json(&serde_json::json!({"enrollment": {
//!     "user": {"id": 42, "is_active": true, "pii": {"username": "ana", "email": "a@x.org", "name": "Ana"}},
//!     "course": {"course_key": "course-v1:edX+D+R", "display_name": "Demo", "start": null, "end": null},
//!     "mode": "audit", "is_active": true, "creation_date": "2024-05-06T07:08:09+00:00", "created_by": null}})).unwrap();
//! let bytes = t.encode_data(&data).unwrap();
//! assert_eq!(t.decode_data(&bytes).unwrap(), data);
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

extern crate self as openedx_events;

pub mod avro;
pub mod bus;
pub mod catalog;
pub mod config;
pub mod data;
pub mod datetime;
pub mod event;
pub mod keys;
pub mod metadata;
pub mod pyjson;
pub mod sample;
pub mod signal;
pub mod testing;
pub mod types;
pub mod value;

pub use openedx_events_derive::{AvroRecord, OpenEdxEvent};
