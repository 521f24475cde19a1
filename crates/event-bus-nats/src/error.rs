//! async-nats errors as [`TransportError`]s, and the operation timeout every
//! server call runs under.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};

/// Run `f` with the operation timeout: a dead server never hangs the caller.
pub(crate) async fn timed<T, E: Display>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(what, &e)),
        Err(_) => Err(TransportError::new(
            TransportErrorKind::Timeout,
            format!("{what}: no answer from the NATS server within {limit:?}"),
        )),
    }
}

/// An error as a transport error, by its text: refusals by the server
/// (permissions, authorization, limits, invalid names) are `Rejected`,
/// timeouts `Timeout`, the rest a connection problem worth retrying.
pub(crate) fn classify(what: &str, e: &dyn Display) -> TransportError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let rejected = [
        "permission",
        "authorization",
        "authentication",
        "maximum payload",
        "max payload",
        "payload exceeded",
        "message size exceeds",
        "invalid",
        "insufficient resources",
        "maximum bytes",
        "maximum messages",
        "subjects overlap",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    let kind = if rejected {
        TransportErrorKind::Rejected
    } else if lower.contains("timed out") || lower.contains("timeout") {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Connection
    };
    TransportError::new(kind, format!("{what}: {text}"))
}

/// Whether an error says the stream or consumer is gone (deleted by an
/// operator or by a seek of another member): the caller looks it up again.
pub(crate) fn is_not_found(e: &TransportError) -> bool {
    let lower = e.message.to_ascii_lowercase();
    lower.contains("not found") || lower.contains("no responders") || lower.contains("consumer deleted")
}

/// A message the server will never take (too large, a header NATS cannot
/// carry).
pub(crate) fn rejected(message: impl Into<String>) -> TransportError {
    TransportError::new(TransportErrorKind::Rejected, message)
}
