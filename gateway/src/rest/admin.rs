//! The super-admin API: apps.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::requests as req;
use super::{created, keep_case, ok};
use crate::auth::extract::Admin;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;
use chatsdk_actors::model::App;
use chatsdk_actors::time::iso;

fn render(state: &GatewayState, app: &App) -> ApiResult<Value> {
    let users = state.chat.users(&app.id, None, usize::MAX, 0)?.len();
    let channels = state.chat.directory().channels(&app.id)?.len();
    Ok(
        json!({"id": app.id, "name": app.name, "settings": app.settings, "createdAt": iso(app.created_at), "updatedAt": iso(app.updated_at),
              "stats": {"userCount": users, "channelCount": channels}}),
    )
}

/// `GET /admin/apps`.
pub async fn list(State(state): State<GatewayState>, _a: Admin, q: Query) -> ApiResult<Response> {
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let apps = state.chat.apps()?;
    let total = apps.len();
    let page: Vec<Value> = apps
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| render(&state, a))
        .collect::<Result<_, _>>()?;
    Ok(ok(
        json!({"apps": page, "total": total, "limit": limit, "offset": offset}),
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
    Ok(ok(render(&state, &app)?))
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
        .create_api_key(&app.id, "default", Vec::new())
        .await?;
    Ok(created(
        json!({"id": app.id, "name": app.name, "apiKey": plain, "apiKeyId": key.id, "apiKeyName": key.name,
                      "settings": app.settings, "createdAt": iso(app.created_at), "warnings": []}),
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
    Ok(ok(render(&state, &app)?))
}

/// `DELETE /admin/apps/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    _a: Admin,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (users, channels) = state.chat.delete_app(&id).await?;
    Ok(ok(
        json!({"success": true, "deleted": {"users": users, "channels": channels}}),
    ))
}

/// `POST /admin/apps/:id/regenerate-key`: gone (keys are created with `/api/auth/api-keys`).
pub async fn regenerate_key(_a: Admin) -> ApiResult<Response> {
    Ok(keep_case(
        StatusCode::GONE,
        json!({"error": {"code": "DEPRECATED_PRIMARY_APP_KEY_ROTATION", "message": "create a new server key with POST /api/auth/api-keys"}}),
    ))
}
