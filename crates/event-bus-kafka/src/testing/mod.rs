//! Test doubles and fixtures (feature `testing`): never for production.
//!
//! - [`RegistryDouble`]: an in-memory, Confluent-API-compatible schema
//!   registry **test double** over HTTP (also the `registry_double` example
//!   binary, for scripts and the Python side of the cross-language tests);
//! - [`TansuBroker`]: a **test fixture** running the `tansu` Kafka-compatible
//!   broker on a free port, with topic creation through the admin API;
//! - [`create_topics`]: create topics on any broker (tansu does not create
//!   them on first use).

mod registry_double;
mod tansu;

pub use registry_double::{RegistryDouble, RegistryDoubleBuilder};
pub use tansu::{create_topics, wait_for_broker, TansuBroker, TANSU_INSTALL_HINT, TANSU_SQLITE_HINT};
