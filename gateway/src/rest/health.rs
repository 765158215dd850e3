//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::GatewayState;

/// `GET /health`: the process answers.
pub async fn health(State(state): State<GatewayState>) -> Response {
    Json(json!({"status": "ok", "timestamp": chatsdk_actors::time::iso(chatsdk_actors::time::now_ms()), "uptime": state.started.elapsed().as_secs()})).into_response()
}

/// `GET /live`.
pub async fn live() -> Response {
    Json(json!({"alive": true, "timestamp": chatsdk_actors::time::iso(chatsdk_actors::time::now_ms())})).into_response()
}

/// `GET /ready`: 503 while draining or while the directory has no leader.
pub async fn ready(State(state): State<GatewayState>) -> Response {
    let draining = state.draining.is_cancelled();
    let directory = state
        .chat
        .cluster()
        .linearizable_reader(chatsdk_cluster::META_GROUP)
        .await
        .is_ok();
    let ready = !draining && directory;
    let check = |ok: bool, msg: &str| {
        if ok {
            json!({"status": "ok"})
        } else {
            json!({"status": "error", "message": msg})
        }
    };
    let body = json!({
        "ready": ready,
        "checks": {
            "draining": check(!draining, "node is draining"),
            "directory": check(directory, "no directory leader"),
        }
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
