//! lapin's errors as [`TransportError`]s, and the operation timeout every
//! broker call runs under.

use std::future::Future;
use std::time::Duration;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;
use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use openedx_events::config::Redactor;

/// Run `f` under the operation timeout: a dead broker never hangs the caller.
pub(crate) async fn timed<T>(
    limit: Duration,
    what: &str,
    redactor: &Redactor,
    f: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(what, &e, redactor)),
        Err(_) => Err(TransportError::new(
            TransportErrorKind::Timeout,
            format!("{what}: no answer from RabbitMQ within {limit:?}"),
        )),
    }
}

/// Whether the error is the broker's refusal (not worth retrying as is).
pub(crate) fn is_refusal(e: &lapin::Error) -> bool {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::NOTFOUND
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::CONTENTTOOLARGE
                    | AMQPSoftError::RESOURCELOCKED
            ) | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED | AMQPHardError::INVALIDPATH | AMQPHardError::FRAMEERROR)
        ),
        ErrorKind::InvalidProtocolVersion(_) | ErrorKind::AuthProviderError(_) => true,
        _ => false,
    }
}

/// A lapin error as a transport error: refusals by the broker are
/// `Rejected`, a lost heartbeat a `Timeout`, the rest a connection problem
/// worth retrying. Secrets in the text are masked.
pub(crate) fn classify(what: &str, e: &lapin::Error, redactor: &Redactor) -> TransportError {
    let kind = if is_refusal(e) {
        TransportErrorKind::Rejected
    } else if matches!(e.kind(), ErrorKind::MissingHeartbeatError) {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Connection
    };
    let text = format!("{what}: {e}");
    TransportError::new(kind, redactor.scrub(&text).into_owned())
}

/// A transport error of this crate's own.
pub(crate) fn rejected(message: impl Into<String>) -> TransportError {
    TransportError::new(TransportErrorKind::Rejected, message)
}
