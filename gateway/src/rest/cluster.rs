//! The super-admin's cluster routes: the cluster view, draining and removing nodes.
//!
//! `GET /admin/cluster` gathers every node's report (see [`crate::cluster_view`]);
//! `POST /admin/cluster/join-tokens` mints a join token that expires;
//! `POST /admin/cluster/ca/rotate` replaces the cluster CA;
//! `POST /admin/cluster/token-secret/rotate` replaces the secret user tokens are signed with;
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
use crate::body::Typed;
use crate::cluster_view::{self, ViewError};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;
use chatsdk_actors::render::Iso;

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

/// A cluster change the metadata group refused is a conflict (409); any other failure (no
/// leader, a timeout) leaves the cluster unavailable for it (503).
fn cluster_change_error(e: chatsdk_cluster::ClusterError) -> AppError {
    match e {
        chatsdk_cluster::ClusterError::Refused(chatsdk_cluster::Refusal::Failed { reason }) => {
            AppError::new(ErrorCode::Conflict, reason)
        }
        other => AppError::new(ErrorCode::Unavailable, other.to_string()),
    }
}

/// How long a join token lives unless asked otherwise, and at most.
const JOIN_TOKEN_TTL_S: u64 = 3600;
const JOIN_TOKEN_MAX_TTL_S: u64 = 7 * 24 * 3600;

/// `POST /admin/cluster/join-tokens`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MintJoinToken {
    /// Seconds it admits nodes for (1..=604800; 3600 when left out).
    #[serde(default, alias = "ttl_seconds")]
    ttl_seconds: Option<u64>,
    /// Spent by the first node that joins with it.
    #[serde(default, alias = "single_use")]
    single_use: bool,
}

/// A new join token: shown once (the cluster keeps only its digest).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JoinToken {
    token: String,
    expires_at: Iso,
    single_use: bool,
}

/// `POST /admin/cluster/join-tokens`: a token that lets new nodes join until it expires.
pub async fn mint_join_token(
    State(state): State<GatewayState>,
    _a: Admin,
    Typed(body): Typed<MintJoinToken>,
) -> ApiResult<Response> {
    let ttl = body.ttl_seconds.unwrap_or(JOIN_TOKEN_TTL_S);
    if !(1..=JOIN_TOKEN_MAX_TTL_S).contains(&ttl) {
        return Err(AppError::bad(format!(
            "ttlSeconds must be between 1 and {JOIN_TOKEN_MAX_TTL_S}"
        )));
    }
    let (token, expires_at_ms) = state
        .chat
        .cluster()
        .mint_join_token(std::time::Duration::from_secs(ttl), body.single_use)
        .await
        .map_err(|e| AppError::new(ErrorCode::Unavailable, e.to_string()))?;
    Ok(json(
        StatusCode::CREATED,
        &JoinToken {
            token,
            expires_at: Iso(expires_at_ms),
            single_use: body.single_use,
        },
    ))
}

/// A CA rotation that has started.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CaRotation {
    /// SHA-256 of the new CA: join tokens pin it once the rotation is promoted.
    fingerprint: String,
    /// `staged`: every node adds it to the CAs it trusts, then it issues certificates, every
    /// node renews, and the old CA is trusted no more (follow it in `GET /admin/cluster`).
    status: &'static str,
}

/// `POST /admin/cluster/ca/rotate`: replaces the cluster CA (a node removal does it too).
pub async fn rotate_ca(State(state): State<GatewayState>, _a: Admin) -> ApiResult<Response> {
    let fingerprint = state
        .chat
        .cluster()
        .rotate_ca()
        .await
        .map_err(cluster_change_error)?;
    Ok(json(
        StatusCode::ACCEPTED,
        &CaRotation {
            fingerprint,
            status: "staged",
        },
    ))
}

/// The longest grace a replaced token secret may get (30 days).
const TOKEN_SECRET_MAX_GRACE_S: u64 = 30 * 86_400;

/// `POST /admin/cluster/token-secret/rotate`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateTokenSecret {
    /// Seconds tokens signed with the replaced secret stay valid (0..=2592000; the access
    /// token lifetime when left out).
    #[serde(default, alias = "grace_seconds")]
    grace_seconds: Option<u64>,
}

/// A rotated token secret.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenSecretRotation {
    /// The key tokens are signed with from now on (their header's `kid`).
    kid: String,
    /// The key it replaced.
    previous_kid: Option<String>,
    /// When tokens signed with the replaced key stop being accepted.
    previous_valid_until: Option<Iso>,
}

/// `POST /admin/cluster/token-secret/rotate`: a new secret signs user tokens from now on; those
/// signed with the one it replaces pass for the grace period, then are refused on every node.
pub async fn rotate_token_secret(
    State(state): State<GatewayState>,
    _a: Admin,
    Typed(body): Typed<RotateTokenSecret>,
) -> ApiResult<Response> {
    let grace = body.grace_seconds.unwrap_or(state.config.access_ttl);
    if grace > TOKEN_SECRET_MAX_GRACE_S {
        return Err(AppError::bad(format!(
            "graceSeconds must be at most {TOKEN_SECRET_MAX_GRACE_S}"
        )));
    }
    let keys = state
        .chat
        .rotate_token_secret(std::time::Duration::from_secs(grace))
        .await?;
    state.refresh_token_keys();
    let previous = keys.keys.get(1);
    Ok(json(
        StatusCode::OK,
        &TokenSecretRotation {
            kid: keys.current().map(|k| k.kid.clone()).unwrap_or_default(),
            previous_kid: previous.map(|k| k.kid.clone()),
            previous_valid_until: previous.and_then(|k| k.retire_at_ms).map(Iso),
        },
    ))
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
    cluster
        .remove_node(id)
        .await
        .map_err(cluster_change_error)?;
    Ok(json(
        StatusCode::ACCEPTED,
        &NodeChange {
            id,
            status: "leaving",
        },
    ))
}
