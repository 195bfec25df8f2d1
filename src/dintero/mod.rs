//! Talking to Dintero: the checkout and management APIs of the in-person contract.
//!
//! [`Gateway`] is what the payment flow needs from Dintero and nothing more. The real
//! [`client::Client`] implements it over HTTPS with `ureq` (blocking calls moved onto tokio's
//! blocking pool); flow unit tests use scripted fakes; integration tests run the real client
//! against the [emulator](crate::emulator) on loopback.

pub mod client;
pub mod error;
pub mod ids;
pub mod model;
pub mod signature;

use std::future::Future;

pub use error::ApiError;
pub use ids::{AccountId, TerminalId};
pub use model::*;

/// The calls the payment flow makes. Every method may fail with an [`ApiError`] whose kind says
/// whether the call took effect.
pub trait Gateway: Send + Sync + 'static {
    /// `POST /v1/sessions-profile`. Starts the payment on the terminal. **Not idempotent**: after
    /// an [`ApiError::Unknown`] look the payment up by `merchant_reference` instead of retrying.
    fn create_session(
        &self,
        request: &SessionProfileRequest,
    ) -> impl Future<Output = Result<CreatedSession, ApiError>> + Send;

    /// `GET /v1/sessions/{id}`.
    fn get_session(&self, id: &str) -> impl Future<Output = Result<Session, ApiError>> + Send;

    /// `GET /v1/sessions?search=<text>`: sessions whose references match.
    fn search_sessions(
        &self,
        text: &str,
    ) -> impl Future<Output = Result<Vec<Session>, ApiError>> + Send;

    /// `GET /v1/transactions/{id}`.
    fn get_transaction(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Transaction, ApiError>> + Send;

    /// `GET /v1/transactions?merchant_reference=…&terminal_id=…`.
    fn list_transactions(
        &self,
        query: &TransactionQuery,
    ) -> impl Future<Output = Result<Vec<Transaction>, ApiError>> + Send;

    /// `POST /v1/sessions/{id}/cancel`. Refused (400) once the payment is final: read the state
    /// again afterwards and believe only that.
    fn cancel_session(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// `POST /v1/transactions/{id}/refund` (the request carries `terminal_id`).
    fn refund(
        &self,
        transaction_id: &str,
        request: &RefundRequest,
    ) -> impl Future<Output = Result<RefundOutcome, ApiError>> + Send;

    /// `GET {api}/v1/accounts/{aid}/terminals/{terminal_id}`.
    fn terminal(
        &self,
        terminal_id: &str,
    ) -> impl Future<Output = Result<Terminal, ApiError>> + Send;

    /// Makes sure a valid access token is cached (fetching one if needed), so the health gate
    /// can tell "API reachable with our credentials" without a payment.
    fn ensure_token(&self) -> impl Future<Output = Result<(), ApiError>> + Send;
}
