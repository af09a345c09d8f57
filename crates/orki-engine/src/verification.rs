//! Why an ownership handshake failed: the step and a sentence (data only;
//! `handshake` runs the check).

use serde::Serialize;

/// The step at which a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The host name did not resolve.
    Dns,
    /// No connection (refused, unreachable).
    Connect,
    /// TLS or certificate failure.
    Tls,
    /// No complete answer in time.
    Timeout,
    /// The answer was not 2xx.
    Status,
    /// The body was not the challenge.
    ChallengeMismatch,
}

impl Step {
    /// The wire name, e.g. `challenge_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::ChallengeMismatch => "challenge_mismatch",
        }
    }
}

/// Why a handshake failed, for the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationFailure {
    /// The failed step.
    pub step: Step,
    /// What happened, for a person.
    pub message: String,
}
