//! Redis's errors as transport errors: the kind each failure maps to (what
//! the consume loop retries, what is fatal), with the password scrubbed from
//! every message.

use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use redis::{RedisError, ServerErrorKind};

use crate::settings::Redactor;

/// A Redis error as a transport error: authentication and permission
/// failures are fatal, a bad URL is a configuration error, I/O failures and
/// a server that is loading or failing over are connection errors (retried
/// later), other server errors are rejections.
pub(crate) fn from_redis(what: &str, e: &RedisError, secret: &Redactor) -> TransportError {
    use redis::ErrorKind as K;
    let code = e.code().unwrap_or_default();
    let kind = if matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM") || e.kind() == K::AuthenticationFailed {
        TransportErrorKind::Fatal
    } else {
        match e.kind() {
            K::InvalidClientConfig => TransportErrorKind::Config,
            K::Io if e.is_timeout() => TransportErrorKind::Timeout,
            K::Io => TransportErrorKind::Connection,
            K::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::ReadOnly,
            ) => TransportErrorKind::Connection,
            K::Server(_) | K::Extension => TransportErrorKind::Rejected,
            _ => TransportErrorKind::Other,
        }
    };
    let hint = match kind {
        TransportErrorKind::Fatal => " (check the user and password of EVENT_BUS_REDIS_CONNECTION_URL)",
        _ => "",
    };
    TransportError::new(kind, secret.scrub(&prefixed(what, format!("{e}{hint}"))).into_owned())
}

/// An error reply (`-CODE message`) as a transport error, classified as
/// the `redis` crate's errors are (see [`from_redis`]).
pub(crate) fn server_error(what: &str, text: &[u8], secret: &Redactor) -> TransportError {
    let text = String::from_utf8_lossy(text);
    let code = text.split_whitespace().next().unwrap_or_default();
    let kind = match code {
        "WRONGPASS" | "NOAUTH" | "NOPERM" => TransportErrorKind::Fatal,
        "LOADING" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY" => TransportErrorKind::Connection,
        _ => TransportErrorKind::Rejected,
    };
    let hint = match kind {
        TransportErrorKind::Fatal => " (check the user and password of EVENT_BUS_REDIS_CONNECTION_URL)",
        _ => "",
    };
    TransportError::new(
        kind,
        secret.scrub(&prefixed(what, format!("{text}{hint}"))).into_owned(),
    )
}

/// A call that got no reply within `limit`: a timeout (retried by the loop).
pub(crate) fn no_reply(what: &str, limit: Duration) -> TransportError {
    TransportError::new(
        TransportErrorKind::Timeout,
        prefixed(
            what,
            format!("no reply from Redis within {limit:?} (EVENT_BUS_REDIS_COMMAND_TIMEOUT)"),
        ),
    )
}

/// Whether the error says the group (or its stream) is gone.
pub(crate) fn is_nogroup(e: &TransportError) -> bool {
    e.kind == TransportErrorKind::Rejected && e.message.contains("NOGROUP")
}

/// `what: message`, or the message alone when `what` is empty.
pub(crate) fn prefixed(what: &str, message: String) -> String {
    if what.is_empty() {
        message
    } else {
        format!("{what}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified() {
        let secret = Redactor::from_url("redis://u:hunter2@h/0");
        let e = server_error("XREADGROUP s g c", b"NOGROUP No such key 's'", &secret);
        assert_eq!(e.kind, TransportErrorKind::Rejected);
        assert!(is_nogroup(&e), "{e}");
        let e = server_error("AUTH", b"WRONGPASS invalid username-password pair hunter2", &secret);
        assert_eq!(e.kind, TransportErrorKind::Fatal);
        assert!(!e.message.contains("hunter2"), "{e}");
        assert_eq!(
            server_error("x", b"LOADING", &secret).kind,
            TransportErrorKind::Connection
        );
    }
}
