//! Blocking, in the Client API's form (`/api/users/:id/block`, the caller blocks `:id`) and
//! the Server API's (`/api/users/:id/blocks`, user `:id` blocks `blocked_user_id`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::render::Iso;
use chatsdk_actors::Caller;

use super::requests::ActingUser;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// `POST /api/users/:id/blocks`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockBody {
    #[serde(alias = "blocked_user_id")]
    blocked_user_id: String,
}

chatsdk_actors::dialect_views! {
    scope: blocks;
    records: chatsdk_actors::render;
    types {
        /// A blocked user as their blocker lists them.
        pub struct BlockedUser<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
            pub image: Option<&'a str>,
            pub blocked_at: Iso,
        }

        /// `GET /api/users/me/blocked`.
        pub struct BlockedList<'a> {
            pub blocked_users: Vec<BlockedUser<'a>>,
        }

        /// A block, as the Server API shows it.
        pub struct Block<'a> {
            pub user_id: &'a str,
            pub blocked_user_id: &'a str,
            pub created_at: Iso,
        }

        /// `GET /api/users/:id/blocks`.
        pub struct Blocks<'a> {
            pub blocks: Vec<Block<'a>>,
        }
    }
}

/// The caller acting as user `id` of its app (a bearer token only as itself).
fn acting_as(state: &GatewayState, auth: &Auth, id: &str) -> ApiResult<Caller> {
    let caller = auth.user_caller(Some(id.to_string()))?;
    if caller.user.as_deref() != Some(id) {
        return Err(AppError::forbidden("blocks are managed by their owner"));
    }
    if state.chat.user(&caller.app, id)?.is_none() {
        return Err(AppError::not_found("user not found"));
    }
    Ok(caller)
}

/// `POST /api/users/:id/block`: the caller blocks `:id`.
pub async fn block(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    state.chat.set_block(&caller, &id, true).await?;
    Ok(success())
}

/// `DELETE /api/users/:id/block`.
pub async fn unblock(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId").or(body.user_id))?;
    state.chat.set_block(&caller, &id, false).await?;
    Ok(success())
}

/// `GET /api/users/me/blocked`.
pub async fn mine(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let list = state.chat.blocked_users(&caller)?;
    let users: Vec<_> = list
        .iter()
        .map(|(u, _)| state.chat.user(&caller.app, u).ok().flatten())
        .collect();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::BlockedList {
        blocked_users: list
            .iter()
            .zip(&users)
            .map(|((id, at), u)| v::BlockedUser {
                id,
                name: u.as_deref().map(|u| u.name.as_str()),
                image: u.as_deref().and_then(|u| u.image.as_deref()),
                blocked_at: Iso(*at),
            })
            .collect(),
    }))
}

/// `POST /api/users/:id/blocks` (Server API form).
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<BlockBody>,
) -> ApiResult<Response> {
    let caller = acting_as(&state, &auth, &id)?;
    state
        .chat
        .set_block(&caller, &body.blocked_user_id, true)
        .await?;
    let at = state
        .chat
        .blocked_users(&caller)?
        .into_iter()
        .find(|(u, _)| *u == body.blocked_user_id)
        .map(|(_, at)| at)
        .unwrap_or_else(chatsdk_actors::time::now_ms);
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::Block {
        user_id: &id,
        blocked_user_id: &body.blocked_user_id,
        created_at: Iso(at),
    }))
}

/// `GET /api/users/:id/blocks` (Server API form).
pub async fn list(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let caller = acting_as(&state, &auth, &id)?;
    let list = state.chat.blocked_users(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Blocks {
        blocks: list
            .iter()
            .map(|(blocked, at)| v::Block {
                user_id: &id,
                blocked_user_id: blocked,
                created_at: Iso(*at),
            })
            .collect(),
    }))
}

/// `DELETE /api/users/:id/blocks/:blocked` (Server API form).
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, blocked)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = acting_as(&state, &auth, &id)?;
    state.chat.set_block(&caller, &blocked, false).await?;
    Ok(success())
}
