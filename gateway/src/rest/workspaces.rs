//! Workspaces: create, list, get, update, delete, members and roles, the workspace's
//! channels, statistics, and invitations (both dialects; a server key names its acting user
//! as `user_id`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::WorkspaceRole;
use chatsdk_actors::render::Iso;
use chatsdk_actors::WorkspaceSpec;
use serde_json::Value;

use super::channels::channel_page;
use super::requests::ActingUser;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// `POST /api/workspaces` and `PUT`/`PATCH /api/workspaces/:id`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    image: Option<String>,
    /// An ISO-8601 time, or `null` to clear it (updates).
    #[serde(default, alias = "expires_at")]
    expires_at: Option<Value>,
    #[serde(default)]
    config: Option<Value>,
}

/// `POST /api/workspaces/:id/members`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembersBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(default, alias = "user_ids")]
    user_ids: Vec<String>,
    #[serde(default)]
    role: Option<String>,
}

/// `PATCH /api/workspaces/:id/members/:user`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    role: String,
}

/// `POST /api/workspaces/:id/invite`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    emails: Vec<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

chatsdk_actors::dialect_views! {
    scope: workspaces;
    records: chatsdk_actors::render;
    types {
        /// `GET /api/workspaces`.
        pub struct WorkspaceList<'a> {
            pub workspaces: Vec<WorkspaceView<'a>>,
        }

        /// Users added to a workspace.
        pub struct Added<'a> {
            pub added: &'a [String],
            pub count: usize,
        }

        /// A role change.
        pub struct RoleSet<'a> {
            pub success: bool,
            pub role: &'a str,
        }

        /// `GET /api/workspaces/:id/stats`.
        pub struct Stats {
            pub member_count: u64,
            pub channel_count: u64,
            pub message_count: u64,
        }

        /// One invitation sent.
        pub struct Invited<'a> {
            pub email: &'a str,
            pub token: &'a str,
            pub invite_url: String,
            pub expires_at: Iso,
        }

        /// `POST /api/workspaces/:id/invite`.
        pub struct Invitations<'a> {
            pub success: bool,
            pub invites: Vec<Invited<'a>>,
        }

        /// The workspace an accepted invitation leads to.
        pub struct Joined<'a> {
            pub success: bool,
            pub workspace: WorkspaceView<'a>,
            pub already_member: bool,
        }
    }
}

fn role(name: Option<&str>) -> Result<WorkspaceRole, AppError> {
    match name {
        None => Ok(WorkspaceRole::Member),
        Some(r) => WorkspaceRole::parse(r)
            .ok_or_else(|| AppError::bad("role must be one of owner, admin, member")),
    }
}

/// The spec of a create or update; `expiresAt: null` clears the expiry.
fn spec(body: WorkspaceBody) -> Result<WorkspaceSpec, AppError> {
    let expires_at = match body.expires_at {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(crate::body::iso_time("expiresAt", Some(&s))?),
        Some(_) => {
            return Err(AppError::bad(
                "expiresAt must be an ISO-8601 string or null",
            ))
        }
    };
    if body.config.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(AppError::bad("config must be an object"));
    }
    Ok(WorkspaceSpec {
        name: body.name,
        kind: body.kind,
        image: body.image,
        expires_at,
        config: body.config,
    })
}

/// `POST /api/workspaces`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<WorkspaceBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id.clone());
    if caller.user.is_none() && !caller.server {
        return Err(AppError::bad("user_id is required"));
    }
    let (w, me) = state.chat.create_workspace(&caller, spec(body)?).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::WorkspaceView::new(&w, me.as_ref())))
}

/// `GET /api/workspaces`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let all = state.chat.workspaces_for(&caller)?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::WorkspaceList {
        workspaces: all.iter().map(|(w, me)| v::WorkspaceView::new(w, me.as_ref())).collect(),
    }))
}

/// `GET /api/workspaces/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let (w, me) = state
        .chat
        .workspace(&auth.caller(q.str("userId")), &id)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::WorkspaceView::new(&w, me.as_ref())))
}

/// `PUT` and `PATCH /api/workspaces/:id`.
pub async fn update(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<WorkspaceBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id.clone());
    let w = state
        .chat
        .update_workspace(&caller, &id, spec(body)?)
        .await?;
    let me = match &caller.user {
        Some(u) => state.chat.workspace_membership(&caller.app, &id, u).await?,
        None => None,
    };
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::WorkspaceView::new(&w, me.as_deref())))
}

/// `DELETE /api/workspaces/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId").or(body.user_id));
    state.chat.delete_workspace(&caller, &id).await?;
    Ok(success())
}

/// `POST /api/workspaces/:id/members`.
pub async fn add_members(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<MembersBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let role = role(body.role.as_deref())?;
    let added = state
        .chat
        .add_workspace_members(&caller, &id, body.user_ids, role)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Added {
        added: &added,
        count: added.len(),
    }))
}

/// `PATCH /api/workspaces/:id/members/:user`.
pub async fn set_role(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
    Typed(body): Typed<RoleBody>,
) -> ApiResult<Response> {
    let caller = auth.caller(body.user_id);
    let new_role = role(Some(&body.role))?;
    state
        .chat
        .set_workspace_role(&caller, &id, &user, new_role)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::RoleSet {
        success: true,
        role: new_role.as_str(),
    }))
}

/// `DELETE /api/workspaces/:id/members/:user`.
pub async fn remove_member(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId").or(body.user_id));
    state
        .chat
        .remove_workspace_member(&caller, &id, &user)
        .await?;
    Ok(success())
}

/// `GET /api/workspaces/:id/channels`.
pub async fn channels(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let limit = q.num("limit", 100, 500)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let all = state.chat.workspace_channels(&caller, &id).await?;
    channel_page(&state, &auth, &caller, &all, offset, limit).await
}

/// `GET /api/workspaces/:id/stats`.
pub async fn stats(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let s = state
        .chat
        .workspace_stats(&auth.caller(q.str("userId")), &id)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Stats {
        member_count: s.members,
        channel_count: s.channels,
        message_count: s.messages,
    }))
}

/// `POST /api/workspaces/:id/invite`.
pub async fn invite(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<InviteBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    let role = role(body.role.as_deref())?;
    let issued = state
        .chat
        .invite(&caller, &id, body.emails, role, body.message)
        .await?;
    let base = state
        .config
        .invite_url_base
        .trim_end_matches('/')
        .to_string();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Invitations {
        success: true,
        invites: issued
            .iter()
            .map(|i| v::Invited {
                email: &i.email,
                token: &i.token,
                invite_url: format!("{base}/invite/{}", i.token),
                expires_at: Iso(i.expires_at),
            })
            .collect(),
    }))
}

/// `GET` (the original's) and `POST /api/workspaces/invites/:token`: accepts an invitation.
pub async fn accept(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(token): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let (w, already) = state.chat.accept_invite(&caller, &token).await?;
    let me = match &caller.user {
        Some(u) => {
            state
                .chat
                .workspace_membership(&caller.app, &w.id, u)
                .await?
        }
        None => None,
    };
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Joined {
        success: true,
        workspace: v::WorkspaceView::new(&w, me.as_deref()),
        already_member: already,
    }))
}
