//! Errors in the OpenAI shape, `{"error": {"message", "type", "code"}}`, so that OpenAI
//! clients (and lm-eval's) show our message instead of failing to parse a plain-text body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `code`: a short machine-readable name of what was wrong (which limit, ...).
    pub code: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code,
        }
    }

    /// A request the client can fix: 400 with what is wrong.
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// OpenAI's `type`: invalid_request_error for 4xx, server_error for 5xx.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {"message": self.message, "type": self.kind(), "code": self.code}
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut r = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        // refusals under load say when to come back: the queue moves within seconds
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}

/// axum's body rejections (too large, unreadable) in our shape, keeping their status
/// (413 for the body limit) and naming the limit.
pub fn body_rejection(r: axum::extract::rejection::BytesRejection, limit: usize) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "body_too_large",
            format!("request body exceeds the limit of {limit} bytes (--max_body_bytes)"),
        );
    }
    ApiError::new(status, "bad_body", r.body_text())
}
