//! pulsar-rs errors as [`TransportError`]s, and the operation timeout every
//! broker call runs under.

use std::future::Future;
use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};

/// Run `f` with the operation timeout: a dead broker never hangs the caller.
pub(crate) async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = Result<T, pulsar::Error>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(what, &e)),
        Err(_) => Err(TransportError::new(
            TransportErrorKind::Timeout,
            format!("{what}: no answer from the Pulsar broker within {limit:?}"),
        )),
    }
}

/// A pulsar-rs error as a transport error: refusals by the broker
/// (authentication, authorization, invalid names, too large) are
/// `Rejected`, the rest is a connection problem worth retrying.
pub(crate) fn classify(what: &str, e: &pulsar::Error) -> TransportError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let rejected = matches!(e, pulsar::Error::Authentication(_))
        || [
            "authentication",
            "authorization",
            "notallowed",
            "not allowed",
            "invalidtopicname",
            "topicnotfound",
            "too large",
            "toolarge",
            "incompatibleschema",
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
