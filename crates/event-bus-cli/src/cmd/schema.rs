//! `event-bus schema`: the Avro schema of an event type.

use crate::cmd::event_type;
use crate::error::Result;
use crate::io::{stdout_is_terminal, write_stdout};

/// Print the `.avsc` text (or the canonical string with `--string`). A
/// trailing newline only on a terminal, so a redirect equals the Python file.
pub fn run(name: &str, canonical: bool) -> Result<()> {
    let schema = event_type(name)?.avro()?;
    let text = if canonical {
        schema.canonical.clone()
    } else {
        schema.avsc()
    };
    write_stdout(&text, stdout_is_terminal())
}
