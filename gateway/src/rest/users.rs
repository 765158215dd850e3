//! Users: the caller's profile, lookups, and the Server API's user management.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::codec::Json as JsonField;
use chatsdk_actors::directory::{UpsertAction, UpsertMode, UserPatch};
use chatsdk_actors::model::User;
use chatsdk_actors::UserPresence;
use serde_json::Value;

use super::requests as req;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

chatsdk_actors::dialect_views! {
    scope: users;
    records: chatsdk_actors::render;
    types {
        /// A user as the server key (or the user themself) sees them, or as another user of
        /// the app does (no email, with presence).
        #[serde(untagged)]
        pub enum UserView<'a> {
            Profile(ProfileView<'a>),
            Public(PublicUserView<'a>),
        }

        /// A list of users.
        pub struct UserList<'a> {
            pub users: Vec<UserView<'a>>,
        }

        /// The fields a user writes about themself.
        pub struct OwnFields<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
            pub custom: &'a JsonField,
        }

        /// A user as `PUT /api/users/:id` answers it.
        pub struct PutUser<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
            pub email: Option<&'a str>,
            pub custom: &'a JsonField,
        }

        /// One user ensured.
        pub struct Ensured<'a> {
            pub action: &'static str,
            pub created: bool,
            pub updated: bool,
            pub user: ProfileView<'a>,
        }

        /// One user of a bulk ensure.
        pub struct EnsuredItem<'a> {
            pub action: &'static str,
            pub user: ProfileView<'a>,
        }

        /// A refused item of a bulk ensure.
        pub struct UserIdError<'a> {
            pub user_id: Option<&'a str>,
            pub error: &'a str,
        }

        /// `POST /api/users/bulk-ensure`.
        pub struct BulkEnsured<'a> {
            pub ensured: Vec<EnsuredItem<'a>>,
            pub count: usize,
            pub created: usize,
            pub updated: usize,
            pub existing: usize,
            pub errors: Vec<UserIdError<'a>>,
        }

        /// A refused item of a sync.
        pub struct IdError<'a> {
            pub id: &'a str,
            pub error: &'a str,
        }

        /// `POST /api/users/sync`.
        pub struct Synced<'a> {
            pub synced: usize,
            pub created: usize,
            pub updated: usize,
            pub errors: Vec<IdError<'a>>,
        }

        /// A deleted (anonymised) user.
        pub struct Deleted<'a> {
            pub success: bool,
            pub anonymized_user_id: &'a str,
        }

        /// A user whose tokens were revoked.
        pub struct Revoked<'a> {
            pub success: bool,
            pub revoked_user_id: &'a str,
        }
    }
    impls {
        impl<'a> UserView<'a> {
            /// `u` as a server key (`full`) or another user sees them, with the presence the
            /// caller may see.
            pub fn new(u: &'a User, full: bool, presence: UserPresence) -> Self {
                if full {
                    UserView::Profile(ProfileView::seen(u, presence))
                } else {
                    UserView::Public(PublicUserView::new(u, presence))
                }
            }
        }
    }
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
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ProfileView::from(&*u)))
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
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::OwnFields {
        id: &u.id,
        name: &u.name,
        image: u.image.as_deref(),
        custom: &u.custom,
    }))
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
    let presence = state
        .chat
        .visible_presence(&auth.caller(None), std::slice::from_ref(&u.id))
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::UserView::new(&u, auth.server, presence[0])))
}

/// `GET /api/users`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let users = state
        .chat
        .users(&auth.app, q.str("q").as_deref(), limit, offset)
        .await?;
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let presence = state
        .chat
        .visible_presence(&auth.caller(None), &ids)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::UserList {
        users: users
            .iter()
            .zip(&presence)
            .map(|(u, p)| v::UserView::new(u, auth.server, *p))
            .collect(),
    }))
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
    Ok(reply!(auth.dialect, status, v => v::Ensured {
        action: action_name(action),
        created: action == UpsertAction::Created,
        updated: action == UpsertAction::Updated,
        user: v::ProfileView::from(&u),
    }))
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
            (id, Err(err)) => errors.push(((!id.is_empty()).then_some(id), err.message)),
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
                ensured.push((action, user));
            }
            Err(err) => errors.push((Some(id), AppError::from(err).message)),
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(reply!(auth.dialect, status, v => v::BulkEnsured {
        ensured: ensured
            .iter()
            .map(|(action, user)| v::EnsuredItem {
                action: action_name(*action),
                user: v::ProfileView::from(user),
            })
            .collect(),
        count: ensured.len(),
        created: c,
        updated: u,
        existing: e,
        errors: errors
            .iter()
            .map(|(id, error)| v::UserIdError {
                user_id: id.as_deref(),
                error,
            })
            .collect(),
    }))
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
            (id, Err(err)) => errors.push((id, err.message)),
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
            Err(err) => errors.push((id, AppError::from(err).message)),
        }
    }
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Synced {
        synced,
        created: created_n,
        updated,
        errors: errors
            .iter()
            .map(|(id, error)| v::IdError { id, error })
            .collect(),
    }))
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
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::PutUser {
        id: &u.id,
        name: &u.name,
        image: u.image.as_deref(),
        email: u.email.as_deref(),
        custom: &u.custom,
    }))
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
    let status = if action == UpsertAction::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply!(auth.dialect, status, v => v::ProfileView::from(&u)))
}

/// `DELETE /api/users/:id` (server key): anonymise, revoke, disconnect.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require_server()?;
    state.chat.delete_user(&auth.app, &id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Deleted {
        success: true,
        anonymized_user_id: &id,
    }))
}

/// `POST /api/users/:id/revoke-tokens` (server key).
pub async fn revoke(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth.require_server()?;
    state.chat.revoke_tokens(&auth.app, &id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Revoked {
        success: true,
        revoked_user_id: &id,
    }))
}
