//! Error answers: a status, a stable machine-readable code and a message.
//! Client errors say what was wrong; server errors are logged and answered
//! without internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A server-side failure: logged in full, answered opaquely.
    pub fn unavailable(context: &str, error: &anyhow::Error) -> Self {
        tracing::error!("{context}: {error:#}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{context}; try again"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "status": "rejected", "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
