//! The engine's error type. The HTTP layer maps it to status codes in one place
//! (`api::ApiError`); the desktop shell serialises it for the window.

use crate::handshake::VerificationFailure;

/// Everything that can go wrong in the engine, with the context a person needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input was rejected; nothing was changed. `code` is machine-readable.
    #[error("{message}")]
    Invalid {
        /// Machine-readable code, e.g. `https_required`.
        code: &'static str,
        /// What was wrong, for a person.
        message: String,
    },
    /// The event type is not one of the known types.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The ownership handshake failed; nothing was saved.
    #[error("verification failed at step {}: {}", .0.step.as_str(), .0.message)]
    Verification(VerificationFailure),
    /// No such resource.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `webhook`, `attempt`, `delivery`…
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The request conflicts with the current state (e.g. redelivering to a deleted webhook).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// What was wrong, for a person.
        message: String,
    },
    /// The same idempotency key was used with a different request body.
    #[error("the Idempotency-Key {0:?} was already used with a different request")]
    IdempotencyConflict(String),
    /// Another process holds the database file.
    #[error("the database {0} is in use by another running instance")]
    AlreadyRunning(String),
    /// The database could not be read or written.
    #[error("storage error: {0}")]
    Storage(String),
    /// A stored value could not be decoded (corruption or an incompatible version).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O error outside the database (CA files, log directory…).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// The crate's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A validation error with a machine code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);
