//! Dintero's error body, `{"error": {"code"?, "message"}}`, for every refusal the emulator makes.
//!
//! One type for all routes so that no path (an unknown route, a wrong method, a body that is not
//! JSON) ever answers in another shape: a client's error parsing is tested by every failure.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiErr {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.code`, for refusals a client must tell apart (`TERMINAL_BUSY`).
    pub code: Option<&'static str>,
    /// `error.message`; names the field on validation errors.
    pub message: String,
}

impl ApiErr {
    /// 400 without a code: the message names the field and what is wrong with it.
    pub fn bad_request(message: impl Into<String>) -> ApiErr {
        ApiErr {
            status: StatusCode::BAD_REQUEST,
            code: None,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiErr {
        ApiErr {
            status: StatusCode::NOT_FOUND,
            code: Some("NOT_FOUND"),
            message: message.into(),
        }
    }

    /// 401: the caller must fetch a (new) token.
    pub fn unauthorized(message: impl Into<String>) -> ApiErr {
        ApiErr {
            status: StatusCode::UNAUTHORIZED,
            code: Some("UNAUTHORIZED"),
            message: message.into(),
        }
    }

    /// 409 `TERMINAL_BUSY`.
    pub fn terminal_busy(terminal_id: &str, what: &str) -> ApiErr {
        ApiErr {
            status: StatusCode::CONFLICT,
            code: Some("TERMINAL_BUSY"),
            message: format!(
                "terminal {terminal_id} is busy with {what}; wait for it to end or cancel it"
            ),
        }
    }

    /// Any status, e.g. from a `status` fault rule.
    pub fn with_status(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiErr {
        ApiErr {
            status,
            code: Some(code),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut error = json!({ "message": self.message });
        if let Some(code) = self.code {
            error["code"] = json!(code);
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
