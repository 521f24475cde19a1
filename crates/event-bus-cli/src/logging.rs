//! Logs to stderr, filtered by `EVENT_BUS_LOG` (or `RUST_LOG`), as text for
//! people or as one JSON object per line for log shippers
//! (`--log-format json`, `EVENT_BUS_LOG_FORMAT`).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

use crate::error::{CliError, Result};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields, spans.
    Json,
}

impl LogFormat {
    /// The format named by a setting's value.
    pub fn parse_setting(key: &str, value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(CliError::new(format!(
                "{key}: expected \"text\" or \"json\", found {other:?}"
            ))),
        }
    }
}

/// Install the subscriber: the filter comes from `EVENT_BUS_LOG`, else
/// `RUST_LOG`, else `default` (a level such as `info`).
pub fn init(default: &str, format: LogFormat) -> Result<()> {
    let (source, directives) = match (std::env::var("EVENT_BUS_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) if !v.trim().is_empty() => ("EVENT_BUS_LOG", v),
        (_, Ok(v)) if !v.trim().is_empty() => ("RUST_LOG", v),
        _ => ("default", default.to_string()),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| CliError::new(format!("{source}: invalid log filter {directives:?}: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(crate::io::stderr_is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    installed.map_err(|e| CliError::new(format!("cannot install the logger: {e}")))
}
