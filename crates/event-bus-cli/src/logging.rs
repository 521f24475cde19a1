//! Logs to stderr, filtered by `EVENT_BUS_LOG` (or `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::error::{CliError, Result};

/// Install the subscriber: the filter comes from `EVENT_BUS_LOG`, else
/// `RUST_LOG`, else `default` (a level such as `info`).
pub fn init(default: &str) -> Result<()> {
    let (source, directives) = match (std::env::var("EVENT_BUS_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) if !v.trim().is_empty() => ("EVENT_BUS_LOG", v),
        (_, Ok(v)) if !v.trim().is_empty() => ("RUST_LOG", v),
        _ => ("default", default.to_string()),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| CliError::new(format!("{source}: invalid log filter {directives:?}: {e}")))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::io::stderr_is_terminal())
        .try_init()
        .map_err(|e| CliError::new(format!("cannot install the logger: {e}")))
}
