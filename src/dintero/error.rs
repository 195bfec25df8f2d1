//! What can go wrong talking to Dintero, sorted by what the payment flow must do about it.
//!
//! The one distinction that protects customers from double charges: a call that was
//! **definitely rejected** (Dintero answered 4xx: nothing happened) versus a call whose
//! **outcome is unknown** (timeout, connection reset, 5xx, an answer we could not read: the
//! server may have done the work). After an unknown outcome on a session create the flow must
//! look the payment up by `merchant_reference` before doing anything else, never retry blindly.

use std::time::Duration;

/// An error from a Dintero call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Dintero answered with a 4xx (other than an auth failure): the request was refused and had
    /// no effect. Fix the request or the configuration; retrying the same call will not help.
    #[error("Dintero refused the call ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Dintero's `error.code`, when given (e.g. `TERMINAL_BUSY`).
        code: Option<String>,
        /// Dintero's `error.message` (names the bad field on validation errors).
        message: String,
    },
    /// The credentials were refused (401 after a fresh token, or 403). Check `dintero.client_id`,
    /// the client secret file and the client's scopes in Dintero Backoffice.
    #[error("Dintero refused the credentials ({status}): {message}; check dintero.client_id, the client secret file and the API client's scopes")]
    Auth {
        /// 401 or 403.
        status: u16,
        /// Dintero's message.
        message: String,
    },
    /// The call may or may not have taken effect: timeout, connection reset, 5xx, or an answer
    /// that could not be read. Look the payment up before acting on it.
    #[error("outcome of the Dintero call is unknown: {reason}")]
    Unknown {
        /// What happened on the wire.
        reason: String,
        /// `Retry-After` from a 429 or 503, when Dintero sent one.
        retry_after: Option<Duration>,
    },
    /// Nothing was sent: the request could not be built or connected (DNS failure, connection
    /// refused). Safe to retry; the network or `checkout_url`/`api_url` may be wrong.
    #[error("could not reach Dintero: {reason}; check the network and dintero.checkout_url / dintero.api_url")]
    Unreachable {
        /// What failed.
        reason: String,
    },
}

impl ApiError {
    /// Whether the server may have done the work although we have no answer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ApiError::Unknown { .. })
    }

    /// Whether Dintero answered 404 (not found).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Rejected { status: 404, .. })
    }

    /// Dintero's `error.code`, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Rejected { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// How long Dintero asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Unknown { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
