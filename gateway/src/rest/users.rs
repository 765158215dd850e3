//! Users: the caller's profile, lookups, and the Server API's user management.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatsdk_actors::directory::{UpsertAction, UpsertMode, UserPatch};
use chatsdk_actors::model::User;
use chatsdk_actors::render;
use chatsdk_actors::time::{iso, now_ms};
use serde_json::{json, Map, Value};

use super::{created, ok};
use crate::auth::extract::Auth;
use crate::body::{Body, Query};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

fn profile(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "image": u.image, "email": u.email, "custom": u.custom, "role": u.role,
           "lastActiveAt": u.last_active_at.map(iso), "createdAt": iso(u.created_at), "updatedAt": iso(u.updated_at)})
}

/// A user as another user of the app sees them (no email).
fn public(u: &User) -> Value {
    let mut v = render::user(u, now_ms());
    if let Some(m) = v.as_object_mut() {
        m.remove("email");
    }
    v
}

fn patch_from(body: &Map<String, Value>, id: String) -> ApiResult<UserPatch> {
    let b = Body(body.clone());
    let image = b.str("image")?;
    if let Some(i) = &image {
        if !(i.is_empty() || i.starts_with("http://") || i.starts_with("https://")) {
            return Err(AppError::bad("image must be an http(s) URL"));
        }
    }
    Ok(UserPatch {
        id,
        name: b.str("name")?,
        image,
        email: b.str("email")?,
        custom: b.object("custom")?.map(chatsdk_actors::codec::Json),
        role: None,
    })
}

fn action_name(a: UpsertAction) -> &'static str {
    match a {
        UpsertAction::Created => "created",
        UpsertAction::Updated => "updated",
        UpsertAction::Existing => "existing",
    }
}

/// `GET /api/users/me`.
pub async fn me(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let c = auth.user_caller(q.str("userId"))?;
    let u = state
        .chat
        .user(&c.app, c.user.as_deref().unwrap_or_default())?
        .ok_or_else(|| AppError::not_found("user not found"))?;
    Ok(ok(profile(&u)))
}

/// `PATCH /api/users/me`: name, image and custom (replaced); never the role.
pub async fn update_me(
    State(state): State<GatewayState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    let c = auth.user_caller(body.str("userId")?)?;
    let patch = patch_from(&body.0, c.user.clone().unwrap_or_default())?;
    let (_, u) = state
        .chat
        .upsert_user(&c.app, patch, UpsertMode::Replace)
        .await?;
    Ok(ok(
        json!({"id": u.id, "name": u.name, "image": u.image, "custom": u.custom}),
    ))
}

/// `GET /api/users/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let u = state
        .chat
        .user(&auth.app, &id)?
        .ok_or_else(|| AppError::not_found("user not found"))?;
    Ok(ok(if auth.server { profile(&u) } else { public(&u) }))
}

/// `GET /api/users`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let users = state
        .chat
        .users(&auth.app, q.str("q").as_deref(), limit, offset)?;
    let list: Vec<Value> = users
        .iter()
        .map(|u| if auth.server { profile(u) } else { public(u) })
        .collect();
    Ok(ok(json!({"users": list})))
}

/// `POST /api/users/ensure` (server key).
pub async fn ensure(
    State(state): State<GatewayState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    auth.require_server()?;
    let id = body.req("userId")?;
    let (action, u) = state
        .chat
        .upsert_user(&auth.app, patch_from(&body.0, id)?, UpsertMode::Merge)
        .await?;
    let status = if action == UpsertAction::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let v = json!({"action": action_name(action), "created": action == UpsertAction::Created, "updated": action == UpsertAction::Updated, "user": profile(&u)});
    Ok((status, Json(v)).into_response())
}

/// `POST /api/users/bulk-ensure` (server key): 1 to 1000 users; 207 when some failed.
pub async fn bulk_ensure(
    State(state): State<GatewayState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    auth.require_server()?;
    let Some(Value::Array(users)) = body.value("users") else {
        return Err(AppError::bad("users must be an array"));
    };
    if users.is_empty() || users.len() > 1000 {
        return Err(AppError::bad("users must hold 1 to 1000 entries"));
    }
    let (mut ensured, mut errors) = (Vec::new(), Vec::new());
    let (mut c, mut u, mut e) = (0, 0, 0);
    // Shape errors are answered per item; the well-formed ones go in one directory write.
    let mut ids = Vec::new();
    let mut patches = Vec::new();
    for item in users {
        let Value::Object(m) = item else {
            errors.push(json!({"userId": Value::Null, "error": "each user must be an object"}));
            continue;
        };
        let id = m
            .get("userId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match patch_from(&m, id.clone()) {
            Ok(p) => {
                ids.push(id);
                patches.push(p);
            }
            Err(err) => errors.push(json!({"userId": id, "error": err.message})),
        }
    }
    let results = state
        .chat
        .upsert_users(&auth.app, patches, UpsertMode::Merge)
        .await?;
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok((action, user)) => {
                match action {
                    UpsertAction::Created => c += 1,
                    UpsertAction::Updated => u += 1,
                    UpsertAction::Existing => e += 1,
                }
                ensured.push(json!({"action": action_name(action), "user": profile(&user)}));
            }
            Err(err) => errors.push(json!({"userId": id, "error": AppError::from(err).message})),
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let v = json!({"ensured": ensured, "count": ensured.len(), "created": c, "updated": u, "existing": e, "errors": errors});
    Ok((status, Json(v)).into_response())
}

/// `POST /api/users/sync` (server key): 1 to 100 users.
pub async fn sync(
    State(state): State<GatewayState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    auth.require_server()?;
    let Some(Value::Array(users)) = body.value("users") else {
        return Err(AppError::bad("users must be an array"));
    };
    if users.is_empty() || users.len() > 100 {
        return Err(AppError::bad("users must hold 1 to 100 entries"));
    }
    let (mut synced, mut created_n, mut updated, mut errors) = (0, 0, 0, Vec::new());
    let mut ids = Vec::new();
    let mut patches = Vec::new();
    for item in users {
        let Value::Object(m) = item else { continue };
        let id = m
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match patch_from(&m, id.clone()) {
            Ok(p) => {
                ids.push(id);
                patches.push(p);
            }
            Err(err) => errors.push(json!({"id": id, "error": err.message})),
        }
    }
    let results = state
        .chat
        .upsert_users(&auth.app, patches, UpsertMode::Merge)
        .await?;
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok((a, _)) => {
                synced += 1;
                match a {
                    UpsertAction::Created => created_n += 1,
                    UpsertAction::Updated => updated += 1,
                    UpsertAction::Existing => {}
                }
            }
            Err(err) => errors.push(json!({"id": id, "error": AppError::from(err).message})),
        }
    }
    Ok(ok(
        json!({"synced": synced, "created": created_n, "updated": updated, "errors": errors}),
    ))
}

/// `PUT /api/users/:id` (server key): upsert.
pub async fn put(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    auth.require_server()?;
    let (_, u) = state
        .chat
        .upsert_user(&auth.app, patch_from(&body.0, id)?, UpsertMode::Merge)
        .await?;
    Ok(ok(
        json!({"id": u.id, "name": u.name, "image": u.image, "email": u.email, "custom": u.custom}),
    ))
}

/// `POST /api/users` (server key): idempotent upsert; `role: "admin"` makes an app admin.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    auth.require_server()?;
    let id = body.req("userId")?;
    let mut patch = patch_from(&body.0, id)?;
    patch.role = match body.str("role")?.as_deref() {
        None => None,
        Some("admin") => Some("admin".into()),
        Some("user") | Some("") => Some(String::new()),
        Some(other) => return Err(AppError::bad(format!("unknown role {other}"))),
    };
    let (action, u) = state
        .chat
        .upsert_user(&auth.app, patch, UpsertMode::Merge)
        .await?;
    Ok(if action == UpsertAction::Created {
        created(profile(&u))
    } else {
        ok(profile(&u))
    })
}

/// `DELETE /api/users/:id` (server key): anonymise, revoke, disconnect.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require_server()?;
    state.chat.delete_user(&auth.app, &id).await?;
    Ok(ok(json!({"success": true, "anonymizedUserId": id})))
}

/// `POST /api/users/:id/revoke-tokens` (server key).
pub async fn revoke(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require_server()?;
    state.chat.revoke_tokens(&auth.app, &id).await?;
    Ok(ok(json!({"success": true, "revokedUserId": id})))
}
