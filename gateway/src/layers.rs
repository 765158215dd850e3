//! Cross-cutting response handling: request ids, the dialect conversion, and 404s.

use axum::body::Body as AxBody;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chatsdk_proto::ErrorCode;
use serde_json::Value;

use crate::dialect::{to_snake, Dialect};
use crate::error::{AppError, ErrorBody};
use crate::rest::KeepCase;

/// Largest response body the dialect layer rewrites (bigger ones pass unchanged).
const MAX_REWRITE: usize = 16 << 20;

fn dialect_of(req: &Request) -> Dialect {
    let h = req.headers();
    let bearer = h
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if h.contains_key("x-api-key") && !bearer {
        Dialect::Snake
    } else {
        Dialect::Camel
    }
}

/// Assigns a request id (or echoes `X-Request-ID`), puts it in error bodies, and converts
/// Server API responses to snake_case.
pub async fn respond(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(chatsdk_actors::new_id);
    let dialect = dialect_of(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);
    let res = tracing::Instrument::instrument(next.run(req), span).await;
    let is_error = res.extensions().get::<ErrorBody>().is_some();
    let keep = res.extensions().get::<KeepCase>().is_some();
    let json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut res = if json && (is_error || (dialect == Dialect::Snake && !keep)) {
        let (mut parts, body) = res.into_parts();
        match axum::body::to_bytes(body, MAX_REWRITE).await {
            Ok(bytes) => {
                let out = match serde_json::from_slice::<Value>(&bytes) {
                    Ok(mut v) if is_error => {
                        if let Some(e) = v.get_mut("error").and_then(Value::as_object_mut) {
                            e.insert("requestId".into(), Value::String(request_id.clone()));
                        }
                        serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec())
                    }
                    Ok(v) => serde_json::to_vec(&to_snake(v)).unwrap_or_else(|_| bytes.to_vec()),
                    Err(_) => bytes.to_vec(),
                };
                parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                Response::from_parts(parts, AxBody::from(out))
            }
            Err(_) => {
                AppError::new(ErrorCode::Internal, "response too large to rewrite").into_response()
            }
        }
    } else {
        res
    };
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
