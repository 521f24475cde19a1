//! The command's error: a one-line message and an exit code.
//!
//! Every failure ends as `error: <message>` on stderr and exit code 1. The
//! message names the offending input (a flag, a setting key, a field path,
//! an event type); [`Context`] prefixes it.

use std::fmt::Display;

/// A failure of the command. It deliberately does not implement `Display`,
/// so that any displayable error converts into it with `?`.
#[derive(Debug)]
pub struct CliError {
    message: String,
    /// Exit without a message (stdout was closed by the reader).
    quiet: bool,
}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            quiet: false,
        }
    }

    /// The reader of stdout went away (`event-bus consume | head`): stop
    /// without an error message.
    pub fn stdout_closed() -> Self {
        CliError {
            message: "stdout was closed".into(),
            quiet: true,
        }
    }

    /// Whether to exit without a message.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The message on one line.
    pub fn one_line(&self) -> String {
        let mut out = String::with_capacity(self.message.len());
        for (i, line) in self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(line);
        }
        out
    }
}

impl<E: Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(e.to_string())
    }
}

/// The command's result.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Prefix an error with what was being done or which input was wrong.
pub trait Context<T> {
    /// `"{context}: {error}"`.
    fn context(self, context: impl Display) -> Result<T>;
    /// Like [`Context::context`], computed only on failure.
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| CliError::new(format!("{context}: {e}")))
    }

    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| CliError::new(format!("{}: {e}", f())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| CliError::new(context.to_string()))
    }

    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| CliError::new(f().to_string()))
    }
}

/// Fail with a formatted message.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError::new(format!($($arg)*)))
    };
}
