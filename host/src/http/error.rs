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
    /// A finer reason within `code` (the verification failure's).
    pub reason: Option<&'static str>,
    pub message: String,
    /// Seconds for a `Retry-After` header, on answers that invite a retry.
    pub retry_after: Option<u32>,
    /// The methods an `Allow` header names, on a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: None,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// A request whose signature did not verify (401), or that could not be
    /// verified right now (503 with `Retry-After`, so the sender retries).
    pub fn unverified(rejection: &crate::verify::Rejection) -> Self {
        let (status, code, retry_after) = match rejection {
            crate::verify::Rejection::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "verification_unavailable",
                Some(30),
            ),
            crate::verify::Rejection::VerifierFailed(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "verification_unavailable",
                Some(30),
            ),
            crate::verify::Rejection::KeysRefreshing { retry_after_secs } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "verification_unavailable",
                Some(u32::try_from(*retry_after_secs).unwrap_or(u32::MAX)),
            ),
            _ => (StatusCode::UNAUTHORIZED, "invalid_signature", None),
        };
        Self {
            status,
            code,
            reason: Some(rejection.code()),
            message: rejection.to_string(),
            retry_after,
            allow: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The host is turning work away to stay responsive (503 with
    /// `Retry-After`); counted and logged.
    pub fn overloaded(why: String) -> Self {
        crate::telemetry::count_rejection("overloaded");
        tracing::warn!("delivery turned away: {why}");
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("{why}; retry later"),
            )
        }
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
        let mut body = json!({ "status": "rejected", "error": self.code, "message": self.message });
        if let Some(reason) = self.reason {
            body["reason"] = reason.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if let Some(methods) = self.allow {
            response.headers_mut().insert(
                axum::http::header::ALLOW,
                axum::http::HeaderValue::from_static(methods),
            );
        }
        response
    }
}
