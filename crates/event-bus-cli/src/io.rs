//! Reading inputs given on the command line and writing to stdout.

use std::io::{IsTerminal, Read, Write};

use serde_json::Value as Json;

use crate::error::{CliError, Context, Result};

/// Write `text` (and a newline if `newline`) to stdout and flush. A closed
/// stdout becomes [`CliError::stdout_closed`].
pub fn write_stdout(text: &str, newline: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| out.flush());
    result.map_err(stdout_error)
}

/// Write one line to stdout and flush.
pub fn println(text: &str) -> Result<()> {
    write_stdout(text, true)
}

/// The error for a failed write to stdout.
pub fn stdout_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::stdout_closed()
    } else {
        CliError::new(format!("cannot write to stdout: {e}"))
    }
}

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// The text of an argument that may name a file: `@path` reads the file,
/// `@-` reads stdin, anything else is the text itself.
pub fn text_arg(flag: &str, value: &str) -> Result<String> {
    match value.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("{flag}: cannot read stdin"))?;
            Ok(text)
        }
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}")),
        None => Ok(value.to_string()),
    }
}

/// A JSON argument (inline, `@file` or `@-`).
pub fn json_arg(flag: &str, value: &str) -> Result<Json> {
    let text = text_arg(flag, value)?;
    serde_json::from_str(&text).with_context(|| format!("{flag}: invalid JSON"))
}

/// A JSON object argument.
pub fn json_object_arg(flag: &str, value: &str) -> Result<serde_json::Map<String, Json>> {
    match json_arg(flag, value)? {
        Json::Object(m) => Ok(m),
        other => Err(CliError::new(format!(
            "{flag}: expected a JSON object, found {}",
            json_kind(&other)
        ))),
    }
}

/// A short description of a JSON value's kind.
pub fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Peak resident set size of this process in KiB (`VmHWM`), where known.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A rate per second, guarding against a zero duration.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
