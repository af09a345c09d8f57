//! The engine's error type. The HTTP layer maps it to status codes in one place
//! (`http::ApiError`); the desktop shell serialises it for the window.

use crate::verification::VerificationFailure;

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
    /// A programming error (a task that panicked, a value that would not
    /// encode): not the storage's fault, so not reported as if it were.
    #[error("internal error: {0}")]
    Internal(String),
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

    /// No `kind` (`webhook`, `delivery`…) with this id.
    pub fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

/// An error as the admin API and the desktop window show it:
/// `{"code", "message", "step"?}` (the `error` object of SPEC.md).
/// The one mapping: the HTTP layer, the OpenAPI document and the Tauri
/// commands all answer with this (named `ErrorDetail` in the document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
pub struct ErrorBody {
    /// Machine-readable, e.g. `unknown_event_type`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// For `verification_failed`: `dns`, `connect`, `tls`, `timeout`, `status`, `challenge_mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub step: Option<&'static str>,
}

/// `{"error": {...}}`, the shape of every error the listener answers with
/// (named `ErrorBody` in the document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } | Self::IdempotencyConflict(_) => 409,
            Self::UnknownEventType(_) | Self::Verification(_) => 422,
            Self::Config(_) | Self::Internal(_) => 500,
            Self::ShuttingDown
            | Self::Storage(_)
            | Self::Corrupt(_)
            | Self::AlreadyRunning(_)
            | Self::Io { .. } => 503,
        }
    }

    /// The error for the admin: storage details stay in the logs.
    pub fn body(&self) -> ErrorBody {
        let (code, message, step) = match self {
            Self::Invalid { code, message } => (*code, message.clone(), None),
            Self::UnknownEventType(t) => (
                "unknown_event_type",
                crate::event_types::unknown_message(t),
                None,
            ),
            Self::Verification(f) => (
                "verification_failed",
                format!("verification failed ({}): {}", f.step.as_str(), f.message),
                Some(f.step.as_str()),
            ),
            Self::NotFound { .. } => ("not_found", self.to_string(), None),
            Self::Conflict { code, message } => (*code, message.clone(), None),
            Self::IdempotencyConflict(_) => ("idempotency_conflict", self.to_string(), None),
            Self::ShuttingDown => (
                "shutting_down",
                "the engine is shutting down; try again shortly".to_owned(),
                None,
            ),
            Self::Storage(_) | Self::Corrupt(_) | Self::AlreadyRunning(_) | Self::Io { .. } => (
                "storage_unavailable",
                "storage is unavailable; nothing was stored, try again".to_owned(),
                None,
            ),
            Self::Config(_) => ("internal", self.to_string(), None),
            Self::Internal(_) => (
                "internal",
                "an internal error occurred; the log file says more".to_owned(),
                None,
            ),
        };
        ErrorBody {
            code,
            message,
            step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_programming_error_is_a_500_that_keeps_its_detail_in_the_log() {
        let e = Error::Internal("encoding a record: key must be a string".into());
        assert_eq!(e.http_status(), 500);
        let body = e.body();
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("key must be"), "{}", body.message);
        let storage = Error::Storage("disk full".into());
        assert_eq!(
            (storage.http_status(), storage.body().code),
            (503, "storage_unavailable")
        );
    }

    #[test]
    fn every_error_has_the_one_shape_with_its_step() {
        let e = Error::Verification(VerificationFailure {
            step: crate::verification::Step::Tls,
            message: "unknown issuer".into(),
        });
        let json = serde_json::to_value(ErrorEnvelope { error: e.body() }).expect("json");
        assert_eq!(json["error"]["code"], "verification_failed");
        assert_eq!(json["error"]["step"], "tls");
        let json = serde_json::to_value(ErrorEnvelope {
            error: Error::not_found("webhook", "wh_x").body(),
        })
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "not_found", "message": "webhook wh_x not found"}})
        );
    }
}
