//! The super-admin's cluster routes: the cluster view, draining and removing nodes.
//!
//! `GET /admin/cluster` gathers every node's report (see [`crate::cluster_view`]);
//! `POST /admin/cluster/nodes/{id}/drain` makes a node stop taking clients;
//! `DELETE /admin/cluster/nodes/{id}` moves a node's replicas away and removes it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_cluster::transport::NodeId;
use chatsdk_proto::ErrorCode;
use serde::Serialize;

use super::json;
use crate::auth::extract::Admin;
use crate::cluster_view::{self, ViewError};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// `GET /admin/cluster`.
pub async fn view(State(state): State<GatewayState>, _a: Admin) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, &cluster_view::gather(&state).await))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeChange {
    id: NodeId,
    /// What happens now.
    status: &'static str,
}

fn node_id(raw: &str) -> Result<NodeId, AppError> {
    raw.parse()
        .map_err(|_| AppError::new(ErrorCode::BadRequest, "node id must be a number"))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct JoinToken {
    token: String,
}

/// `GET /admin/cluster/join-token`: a token for a new node (only the node that created the
/// cluster holds the join secret).
pub async fn join_token(State(state): State<GatewayState>, _a: Admin) -> ApiResult<Response> {
    let token = state
        .chat
        .cluster()
        .join_token()
        .map_err(|e| AppError::new(ErrorCode::Conflict, e.to_string()))?;
    Ok(json(StatusCode::OK, &JoinToken { token }))
}

/// `POST /admin/cluster/nodes/{id}/drain`.
pub async fn drain(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = node_id(&id)?;
    cluster_view::drain(&state, id).await.map_err(|e| match e {
        ViewError::UnknownNode(_) => AppError::new(ErrorCode::NotFound, e.to_string()),
        ViewError::Unreachable { .. } => AppError::new(ErrorCode::Unavailable, e.to_string()),
    })?;
    Ok(json(
        StatusCode::ACCEPTED,
        &NodeChange {
            id,
            status: "draining",
        },
    ))
}

/// `DELETE /admin/cluster/nodes/{id}`: the node turns `leaving`, its replicas move to the
/// other nodes, and it is removed once it holds none (follow it in `GET /admin/cluster`).
pub async fn remove(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = node_id(&id)?;
    let cluster = state.chat.cluster();
    match cluster.meta_state().nodes.get(&id).map(|n| n.state) {
        None | Some(chatsdk_cluster::NodeState::Removed) => {
            return Err(AppError::new(
                ErrorCode::NotFound,
                format!("node {id} is not a member of the cluster"),
            ))
        }
        Some(_) => {}
    }
    cluster.remove_node(id).await.map_err(|e| match e {
        chatsdk_cluster::ClusterError::Refused(chatsdk_cluster::Refusal::Failed { reason }) => {
            AppError::new(ErrorCode::Conflict, reason)
        }
        other => AppError::new(ErrorCode::Unavailable, other.to_string()),
    })?;
    Ok(json(
        StatusCode::ACCEPTED,
        &NodeChange {
            id,
            status: "leaving",
        },
    ))
}
