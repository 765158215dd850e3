//! Cross-cutting response handling: request ids, `Retry-After`, and 404s.
//!
//! Responses are not rewritten here: handlers render typed views in the caller's dialect
//! (`chatsdk_actors::dialect_views!`), and error bodies take the request id from
//! [`request_id`] when they are built.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chatsdk_proto::ErrorCode;

use crate::error::AppError;

tokio::task_local! {
    /// The id of the request this task is answering.
    static REQUEST_ID: String;
}

/// The id of the request being answered, when called while answering one.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Assigns a request id (or echoes `X-Request-ID`), makes it available to error bodies, and
/// adds the `X-Request-ID` and default `Retry-After` headers.
pub async fn respond(
    State(state): State<crate::GatewayState>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(chatsdk_actors::new_id);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);
    let run = tracing::Instrument::instrument(next.run(req), span);
    let mut res = REQUEST_ID.scope(request_id.clone(), run).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    if res.status() == StatusCode::TOO_MANY_REQUESTS
        && !res.headers().contains_key(axum::http::header::RETRY_AFTER)
    {
        res.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
    }
    tracing::debug!(request_id = %request_id, %method, %path, status = res.status().as_u16(), "request");
    state.metrics.http(
        method.as_str(),
        &route,
        res.status(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Unknown routes.
pub async fn not_found() -> Response {
    AppError::new(ErrorCode::NotFound, "Not Found").into_response()
}

/// Wrong method on a known route.
pub async fn method_not_allowed() -> Response {
    AppError::new(
        ErrorCode::MethodNotFound,
        "method not allowed on this route",
    )
    .into_response()
}
