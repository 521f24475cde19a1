//! Internal errors, mapped to [`TransportError`] kinds at the boundary.

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use rusqlite::ErrorCode;

/// What went wrong inside the store, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// SQLite refused or failed.
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The file system refused (creating the directory).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The caller asked for something invalid (a bad position, a message too large).
    #[error("{0}")]
    Rejected(String),
    /// The file holds something this version cannot use.
    #[error("{0}")]
    Incompatible(String),
    /// The subscription is closed.
    #[error("{0}")]
    Closed(String),
    /// The blocking worker did not finish (it panicked or the runtime is shutting down).
    #[error("the SQLite worker did not finish: {0}")]
    Worker(String),
}

impl StoreError {
    fn kind(&self) -> TransportErrorKind {
        match self {
            StoreError::Sqlite { source, .. } => sqlite_kind(source),
            StoreError::Io { .. } => TransportErrorKind::Connection,
            StoreError::Rejected(_) => TransportErrorKind::Rejected,
            StoreError::Incompatible(_) => TransportErrorKind::Fatal,
            StoreError::Closed(_) => TransportErrorKind::Closed,
            StoreError::Worker(_) => TransportErrorKind::Other,
        }
    }

    /// As a transport error, naming the database file.
    pub(crate) fn into_transport(self, path: &std::path::Path) -> TransportError {
        TransportError::new(self.kind(), format!("sqlite {}: {self}", path.display()))
    }
}

/// Busy and locked are worth retrying (the loop does); corruption or a file
/// that is not a database is not.
fn sqlite_kind(e: &rusqlite::Error) -> TransportErrorKind {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => TransportErrorKind::Timeout,
        Some(ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::FileLockingProtocolFailed) => {
            TransportErrorKind::Connection
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::ReadOnly) => TransportErrorKind::Fatal,
        Some(ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied) => TransportErrorKind::Fatal,
        Some(ErrorCode::TooBig) => TransportErrorKind::Rejected,
        _ => TransportErrorKind::Other,
    }
}

/// Attach context to SQLite results.
pub(crate) trait Context<T> {
    /// On error, say what was being done.
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            context: what(),
            source,
        })
    }
}
