//! The gateway's one error type: every rejection leaves as the same JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chatsdk_actors::ChatError;
use chatsdk_proto::{ApiError, ErrorCode};

/// An error answered to a REST client: `{"error": {"code", "message", "requestId"}}` with the
/// code's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds after which a refused request may be retried (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// Adds a `Retry-After` of `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
}

impl From<ChatError> for AppError {
    fn from(e: ChatError) -> Self {
        let err = AppError::new(e.code(), e.to_string());
        match e {
            ChatError::RateLimited { retry_after } => err.retry_after(retry_after),
            _ => err,
        }
    }
}

impl From<chatsdk_cluster::StoreError> for AppError {
    fn from(e: chatsdk_cluster::StoreError) -> Self {
        AppError::new(ErrorCode::Internal, format!("storage: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.code == ErrorCode::Internal {
            tracing::error!(message = %self.message, "internal error");
        }
        let mut error = ApiError::new(self.code, self.message);
        if let Some(id) = crate::layers::request_id() {
            error = error.with_request_id(id);
        }
        let body = error.to_json();
        let mut res = (status, body).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        res.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read, so the server closes the connection after
            // this answer: say so, or a client reuses it and its next request meets the close.
            res.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        res
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, AppError>;
