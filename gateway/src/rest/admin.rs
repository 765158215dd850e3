//! The super-admin API: apps.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use super::json;
use super::requests as req;
use crate::auth::extract::Admin;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;
use chatsdk_actors::codec::Json;
use chatsdk_actors::model::App;
use chatsdk_actors::render::{Empty, Iso};

// The admin API is called with the admin key as a bearer token: it answers in camelCase only.

/// An app with its counts.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppView<'a> {
    id: &'a str,
    name: &'a str,
    settings: &'a Json,
    created_at: Iso,
    updated_at: Iso,
    stats: AppStats,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppStats {
    user_count: usize,
    channel_count: usize,
}

/// A page of apps.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AppList<'a> {
    apps: Vec<AppView<'a>>,
    total: usize,
    limit: usize,
    offset: usize,
}

/// A new app and its first server key (the only time the key is shown).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedApp<'a> {
    id: &'a str,
    name: &'a str,
    api_key: &'a str,
    api_key_id: &'a str,
    api_key_name: &'a str,
    settings: &'a Json,
    created_at: Iso,
    warnings: Empty,
}

/// What deleting an app removed.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeletedApp {
    success: bool,
    deleted: DeletedCounts,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeletedCounts {
    users: u64,
    channels: u64,
}

/// A route the contract retired, answered in the shape of an error with its own code.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Deprecated {
    error: DeprecatedBody,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeprecatedBody {
    code: &'static str,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

async fn render<'a>(state: &GatewayState, app: &'a App) -> ApiResult<AppView<'a>> {
    let (users, channels) = state.chat.app_counts(&app.id).await?;
    Ok(AppView {
        id: &app.id,
        name: &app.name,
        settings: &app.settings,
        created_at: Iso(app.created_at),
        updated_at: Iso(app.updated_at),
        stats: AppStats {
            user_count: users,
            channel_count: channels,
        },
    })
}

/// `GET /admin/apps`.
pub async fn list(State(state): State<GatewayState>, _a: Admin, q: Query) -> ApiResult<Response> {
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let apps = state.chat.apps()?;
    let total = apps.len();
    let mut page = Vec::new();
    for a in apps.iter().skip(offset).take(limit) {
        page.push(render(&state, a).await?);
    }
    Ok(json(
        StatusCode::OK,
        &AppList {
            apps: page,
            total,
            limit,
            offset,
        },
    ))
}

/// `GET /admin/apps/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let app = state
        .chat
        .app(&id)?
        .ok_or_else(|| AppError::not_found("app not found"))?;
    Ok(json(StatusCode::OK, &render(&state, &app).await?))
}

/// `POST /admin/apps`: a new app and its first server key (shown once).
pub async fn create(
    State(state): State<GatewayState>,
    _a: Admin,
    Typed(body): Typed<req::AppFields>,
) -> ApiResult<Response> {
    let name = body.name.ok_or_else(|| AppError::bad("name is required"))?;
    chatsdk_actors::validate::text_len("name", &name, 1, 255)?;
    let settings = Value::Object(body.settings.unwrap_or_default());
    let app = state.chat.create_app(None, &name, settings).await?;
    let (key, plain) = state
        .chat
        .create_api_key(&app.id, "default", chatsdk_actors::model::full_key_scopes())
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &CreatedApp {
            id: &app.id,
            name: &app.name,
            api_key: &plain,
            api_key_id: &key.id,
            api_key_name: &key.name,
            settings: &app.settings,
            created_at: Iso(app.created_at),
            warnings: Empty,
        },
    ))
}

/// `PATCH /admin/apps/:id`.
pub async fn update(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
    Typed(body): Typed<req::AppFields>,
) -> ApiResult<Response> {
    let app = state
        .chat
        .update_app(&id, body.name, body.settings.map(Value::Object))
        .await?;
    Ok(json(StatusCode::OK, &render(&state, &app).await?))
}

/// `DELETE /admin/apps/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (users, channels) = state.chat.delete_app(&id).await?;
    Ok(json(
        StatusCode::OK,
        &DeletedApp {
            success: true,
            deleted: DeletedCounts { users, channels },
        },
    ))
}

/// `POST /admin/apps/:id/regenerate-key`: gone (keys are created with `/api/auth/api-keys`).
pub async fn regenerate_key(_a: Admin) -> ApiResult<Response> {
    Ok(json(
        StatusCode::GONE,
        &Deprecated {
            error: DeprecatedBody {
                code: "DEPRECATED_PRIMARY_APP_KEY_ROTATION",
                message: "create a new server key with POST /api/auth/api-keys",
                request_id: crate::layers::request_id(),
            },
        },
    ))
}

/// A user as the operator lists them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdminUser<'a> {
    id: &'a str,
    name: &'a str,
    email: Option<&'a str>,
    image: Option<&'a str>,
    role: Option<&'a str>,
    created_at: Iso,
    last_active_at: Option<Iso>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AdminUsers<'a> {
    users: Vec<AdminUser<'a>>,
    limit: usize,
    offset: usize,
}

/// A channel as the operator lists it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdminChannel<'a> {
    id: &'a str,
    cid: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    name: Option<&'a str>,
    workspace_id: Option<&'a str>,
    created_by: Option<&'a str>,
    member_count: u64,
    created_at: Iso,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AdminChannels<'a> {
    channels: Vec<AdminChannel<'a>>,
    total: usize,
    limit: usize,
    offset: usize,
}

fn existing_app(state: &GatewayState, id: &str) -> ApiResult<()> {
    state
        .chat
        .app(id)?
        .map(|_| ())
        .ok_or_else(|| AppError::not_found("app not found"))
}

/// `GET /admin/apps/{id}/users`: the app's users (`q` filters by name or id).
pub async fn users(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    existing_app(&state, &id)?;
    let limit = q.num("limit", 50, 200)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let users = state
        .chat
        .users(&id, q.str("q").as_deref(), limit, offset)
        .await?;
    let view = AdminUsers {
        users: users
            .iter()
            .map(|u| AdminUser {
                id: &u.id,
                name: &u.name,
                email: u.email.as_deref(),
                image: u.image.as_deref(),
                role: u.role.as_deref(),
                created_at: Iso(u.created_at),
                last_active_at: u.last_active_at.map(Iso),
            })
            .collect(),
        limit,
        offset,
    };
    Ok(json(StatusCode::OK, &view))
}

/// `GET /admin/apps/{id}/channels`: every channel of the app, newest first.
pub async fn channels(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    existing_app(&state, &id)?;
    let limit = q.num("limit", 50, 200)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let (channels, total) = state.chat.app_channels(&id, limit, offset).await?;
    let view = AdminChannels {
        channels: channels
            .iter()
            .map(|c| AdminChannel {
                id: &c.id,
                cid: &c.cid,
                kind: c.kind.as_str(),
                name: c.name.as_deref(),
                workspace_id: c.workspace_id.as_deref(),
                created_by: c.created_by.as_deref(),
                member_count: c.member_count,
                created_at: Iso(c.created_at),
            })
            .collect(),
        total,
        limit,
        offset,
    };
    Ok(json(StatusCode::OK, &view))
}
