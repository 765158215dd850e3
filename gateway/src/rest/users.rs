//! Users: the caller's profile, lookups, and the Server API's user management.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatsdk_actors::codec::Json as JsonField;
use chatsdk_actors::directory::{UpsertAction, UpsertMode, UserPatch};
use chatsdk_actors::model::User;
use chatsdk_actors::render;
use chatsdk_actors::time::{iso, now_ms};
use serde_json::{json, Value};

use super::requests as req;
use super::{created, ok};
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
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

fn patch_from(fields: req::UserFields, id: String) -> ApiResult<UserPatch> {
    if let Some(i) = &fields.image {
        if !(i.is_empty() || i.starts_with("http://") || i.starts_with("https://")) {
            return Err(AppError::bad("image must be an http(s) URL"));
        }
    }
    Ok(UserPatch {
        id,
        name: fields.name,
        image: fields.image,
        email: fields.email,
        custom: fields.custom.map(|m| JsonField(Value::Object(m))),
        role: None,
    })
}

/// One item of a bulk user write: its id (from `id_key`) and its patch, or why it was refused.
/// Which field names a bulk item's user.
#[derive(Clone, Copy)]
enum ItemId {
    /// `userId` / `user_id` (bulk-ensure).
    UserId,
    /// `id` (sync).
    Id,
}

fn item_patch(item: Value, id_field: ItemId) -> (String, ApiResult<UserPatch>) {
    if !item.is_object() {
        return (
            String::new(),
            Err(AppError::bad("each user must be an object")),
        );
    }
    match serde_json::from_value::<req::UserFields>(item) {
        Ok(mut fields) => {
            let id = match id_field {
                ItemId::UserId => fields.user_id.take(),
                ItemId::Id => fields.id.take(),
            }
            .unwrap_or_default();
            let patch = patch_from(fields, id.clone());
            (id, patch)
        }
        Err(e) => (
            String::new(),
            Err(AppError::bad(format!("invalid user: {e}"))),
        ),
    }
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
    Typed(body): Typed<req::UserFields>,
) -> ApiResult<Response> {
    let c = auth.user_caller(body.user_id.clone())?;
    let patch = patch_from(body, c.user.clone().unwrap_or_default())?;
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
    Typed(body): Typed<req::UserFields>,
) -> ApiResult<Response> {
    auth.require_server()?;
    let id = body
        .user_id
        .clone()
        .ok_or_else(|| AppError::bad("userId is required"))?;
    let (action, u) = state
        .chat
        .upsert_user(&auth.app, patch_from(body, id)?, UpsertMode::Merge)
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
    Typed(body): Typed<req::UserList>,
) -> ApiResult<Response> {
    auth.require_server()?;
    let users = body.users;
    if users.is_empty() || users.len() > 1000 {
        return Err(AppError::bad("users must hold 1 to 1000 entries"));
    }
    let (mut ensured, mut errors) = (Vec::new(), Vec::new());
    let (mut c, mut u, mut e) = (0, 0, 0);
    // Bad items are answered one by one; the good ones go in one directory write.
    let mut ids = Vec::new();
    let mut patches = Vec::new();
    for item in users {
        match item_patch(item, ItemId::UserId) {
            (id, Ok(p)) => {
                ids.push(id);
                patches.push(p);
            }
            (id, Err(err)) => {
                let id = if id.is_empty() {
                    Value::Null
                } else {
                    Value::String(id)
                };
                errors.push(json!({"userId": id, "error": err.message}));
            }
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
    Typed(body): Typed<req::UserList>,
) -> ApiResult<Response> {
    auth.require_server()?;
    let users = body.users;
    if users.is_empty() || users.len() > 100 {
        return Err(AppError::bad("users must hold 1 to 100 entries"));
    }
    let (mut synced, mut created_n, mut updated, mut errors) = (0, 0, 0, Vec::new());
    let mut ids = Vec::new();
    let mut patches = Vec::new();
    for item in users {
        if !item.is_object() {
            continue;
        }
        match item_patch(item, ItemId::Id) {
            (id, Ok(p)) => {
                ids.push(id);
                patches.push(p);
            }
            (id, Err(err)) => errors.push(json!({"id": id, "error": err.message})),
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
    Typed(body): Typed<req::UserFields>,
) -> ApiResult<Response> {
    auth.require_server()?;
    let (_, u) = state
        .chat
        .upsert_user(&auth.app, patch_from(body, id)?, UpsertMode::Merge)
        .await?;
    Ok(ok(
        json!({"id": u.id, "name": u.name, "image": u.image, "email": u.email, "custom": u.custom}),
    ))
}

/// `POST /api/users` (server key): idempotent upsert; `role: "admin"` makes an app admin.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<req::UserFields>,
) -> ApiResult<Response> {
    auth.require_server()?;
    let id = body
        .user_id
        .clone()
        .ok_or_else(|| AppError::bad("userId is required"))?;
    let role = body.role.clone();
    let mut patch = patch_from(body, id)?;
    patch.role = match role.as_deref() {
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
