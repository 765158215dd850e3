//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::render::Iso;
use chatsdk_actors::time::now_ms;
use serde::Serialize;

use super::json;
use crate::state::GatewayState;

// Every key here is one word: the same in both dialects.

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    status: &'static str,
    timestamp: Iso,
    uptime: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Live {
    alive: bool,
    timestamp: Iso,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    ready: bool,
    checks: Checks,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Checks {
    draining: Check,
    directory: Check,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Check {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

impl Check {
    fn new(ok: bool, failure: &'static str) -> Check {
        if ok {
            Check {
                status: "ok",
                message: None,
            }
        } else {
            Check {
                status: "error",
                message: Some(failure),
            }
        }
    }
}

/// `GET /health`: the process answers.
pub async fn health(State(state): State<GatewayState>) -> Response {
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            timestamp: Iso(now_ms()),
            uptime: state.started.elapsed().as_secs(),
        },
    )
}

/// `GET /live`.
pub async fn live() -> Response {
    json(
        StatusCode::OK,
        &Live {
            alive: true,
            timestamp: Iso(now_ms()),
        },
    )
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
    let body = Ready {
        ready,
        checks: Checks {
            draining: Check::new(!draining, "node is draining"),
            directory: Check::new(directory, "no directory leader"),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
