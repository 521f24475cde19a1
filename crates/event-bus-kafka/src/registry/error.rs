//! Why a schema registry call failed ([`RegistryError`]), which failures
//! are transient (tried again later rather than dead-lettered), and how
//! they map to transport errors.

use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};

/// Why a registry call failed. Messages name the registry URL without its
/// credentials.
///
/// ```
/// use event_bus_kafka::registry::RegistryError;
/// let e = RegistryError::UnknownId { url: "http://registry:8081".into(), id: 7 };
/// assert_eq!(e.to_string(), "the schema registry at http://registry:8081 has no schema with id 7");
/// assert!(!e.is_transient());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry cannot be reached (connection refused, DNS, TLS...).
    #[error("cannot reach the schema registry at {url}: {message}")]
    Unreachable {
        /// The registry URL (without credentials).
        url: String,
        /// What failed.
        message: String,
    },
    /// The registry did not answer in time.
    #[error("the schema registry at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The registry URL (without credentials).
        url: String,
        /// The time limit.
        timeout: Duration,
    },
    /// The registry has no schema with this id.
    #[error("the schema registry at {url} has no schema with id {id}")]
    UnknownId {
        /// The registry URL (without credentials).
        url: String,
        /// The id asked for.
        id: u32,
    },
    /// The registry has no schema with this id *yet*: a `404` within
    /// [`UNKNOWN_ID_GRACE`](super::UNKNOWN_ID_GRACE) of the first one for this id (a replica that has
    /// not caught up). Transient.
    #[error(
        "the schema registry at {url} has no schema with id {id} (yet: missing for {missing_for:?}; tried again later)"
    )]
    NotYetKnown {
        /// The registry URL (without credentials).
        url: String,
        /// The id asked for.
        id: u32,
        /// How long this id has been missing.
        missing_for: Duration,
    },
    /// The registry refused the request.
    #[error("the schema registry at {url} refused {what}: HTTP {status}{}", .error_code.map(|c| format!(", error code {c}")).unwrap_or_default())]
    Refused {
        /// The registry URL (without credentials).
        url: String,
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's `error_code`, if any.
        error_code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// An answer that is not what the API says.
    #[error("unexpected answer from the schema registry at {url}: {message}")]
    BadResponse {
        /// The registry URL (without credentials).
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The schema text of an id does not parse.
    #[error("schema {id} from the schema registry at {url} is not a valid Avro schema: {message}")]
    InvalidSchema {
        /// The registry URL (without credentials).
        url: String,
        /// The id.
        id: u32,
        /// The parse error.
        message: String,
    },
}

impl RegistryError {
    /// Whether trying again later may succeed: the registry is down or slow,
    /// a body was cut short, it answered `401`/`403` (credentials being
    /// rotated), `404` for an id within its grace (a replica catching up),
    /// `408`, `429` or `5xx`. A schema that was fetched and is unusable is
    /// not transient.
    ///
    /// ```
    /// use event_bus_kafka::registry::RegistryError;
    /// let refused = |status| RegistryError::Refused { url: "http://r".into(), what: "x".into(), status,
    ///     error_code: None, message: String::new() };
    /// for status in [401, 403, 404, 408, 429, 500, 503] {
    ///     assert!(refused(status).is_transient(), "{status}");
    /// }
    /// assert!(!refused(400).is_transient());
    /// assert!(!refused(422).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Timeout { .. } | RegistryError::NotYetKnown { .. } => {
                true
            }
            RegistryError::Refused { status, .. } => is_transient_status(*status),
            RegistryError::UnknownId { .. }
            | RegistryError::BadResponse { .. }
            | RegistryError::InvalidSchema { .. } => false,
        }
    }

    /// The HTTP status the registry answered, when it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Refused { status, .. } => Some(*status),
            RegistryError::UnknownId { .. } | RegistryError::NotYetKnown { .. } => Some(404),
            _ => None,
        }
    }
}

/// HTTP statuses worth trying again after: authentication (`401`, `403`:
/// a credential rotation), not found (`404`: a replica behind), timeouts
/// (`408`), throttling (`429`) and server errors.
fn is_transient_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 408 | 429) || status >= 500
}

impl From<RegistryError> for TransportError {
    fn from(e: RegistryError) -> Self {
        let kind = match &e {
            RegistryError::Unreachable { .. } | RegistryError::NotYetKnown { .. } => TransportErrorKind::Connection,
            RegistryError::Timeout { .. } => TransportErrorKind::Timeout,
            RegistryError::Refused { status, .. } if *status == 408 => TransportErrorKind::Timeout,
            RegistryError::Refused { status, .. } if is_transient_status(*status) => TransportErrorKind::Connection,
            RegistryError::Refused { .. } | RegistryError::UnknownId { .. } | RegistryError::InvalidSchema { .. } => {
                TransportErrorKind::Rejected
            }
            RegistryError::BadResponse { .. } => TransportErrorKind::Other,
        };
        let message = match &e {
            RegistryError::Refused { message, .. } if !message.is_empty() => format!("{e}: {message}"),
            _ => e.to_string(),
        };
        TransportError::new(kind, message)
    }
}
