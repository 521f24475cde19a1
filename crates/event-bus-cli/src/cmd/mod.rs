//! One module per command.

pub mod bench;
pub mod codec;
pub mod consume;
pub mod demo;
pub mod dlq;
pub mod events;
pub mod lag;
#[cfg(feature = "outbox")]
pub mod outbox;
pub mod produce;
pub mod schema;

use std::sync::Arc;

use openedx_events::catalog;
use openedx_events::event::EventType;

use crate::error::{CliError, Result};

/// The catalog event type with this name, or an error naming it.
pub fn event_type(name: &str) -> Result<&'static Arc<EventType>> {
    catalog::get(name).ok_or_else(|| {
        CliError::new(format!(
            "unknown event type {name:?} (`event-bus events` lists the {} known ones)",
            catalog::all().len()
        ))
    })
}

/// The catalog event type with this name, if it can travel on the bus.
pub fn bus_event_type(name: &str) -> Result<&'static Arc<EventType>> {
    let t = event_type(name)?;
    // The schema derivation reports unserializable types by name.
    t.avro()?;
    Ok(t)
}
