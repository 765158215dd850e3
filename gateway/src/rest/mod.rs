//! REST handlers, one module per resource. Each handler authenticates with [`crate::auth`]
//! extractors, calls the chat service, and renders camelCase JSON (the response layer converts
//! Server API answers to snake_case).

pub mod admin;
pub mod channels;
pub mod health;
pub mod messages;
pub mod requests;
pub mod tokens;
pub mod users;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

/// Marks a response whose keys must not be converted to the caller's dialect (routes whose
/// contract fixes the spelling).
#[derive(Clone, Copy, Debug)]
pub struct KeepCase;

/// `200` with a JSON body.
pub fn ok(v: Value) -> Response {
    Json(v).into_response()
}

/// `201` with a JSON body.
pub fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

/// A JSON body whose keys are kept as written.
pub fn keep_case(status: StatusCode, v: Value) -> Response {
    let mut r = (status, Json(v)).into_response();
    r.extensions_mut().insert(KeepCase);
    r
}
