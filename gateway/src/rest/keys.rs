//! Server API keys: create, list, revoke (snake_case in both dialects, as the original's key
//! route).
//!
//! Who may manage an app's keys: a key of the app with the `admin` scope, the super-admin
//! (`Authorization: Bearer <admin key>`, naming `app_id`), or, in dev mode only, anyone
//! creating a key for the demo app or a brand-new app.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::{default_key_scopes, full_key_scopes, ApiKey};
use chatsdk_actors::render::Iso;
use serde::Serialize;
use serde_json::json;

use super::{json, requests as req, success};
use crate::auth::extract::{api_key, bearer, constant_eq, scoped_key};
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// The dev seed's app, which dev mode lets anyone create keys for.
const DEMO_APP: &str = "00000000-0000-0000-0000-000000000001";

/// A new key, with its plaintext (shown once).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedKey<'a> {
    id: &'a str,
    api_key: &'a str,
    name: &'a str,
    app_id: &'a str,
    scopes: &'a [String],
    created_at: Iso,
}

/// A key as listed (never its plaintext or hash).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    app_id: &'a str,
    scopes: &'a [String],
    created_at: Iso,
    revoked_at: Option<Iso>,
}

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(k: &'a ApiKey) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            app_id: &k.app_id,
            scopes: &k.scopes,
            created_at: Iso(k.created_at),
            revoked_at: k.revoked_at.map(Iso),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct KeyList<'a> {
    api_keys: Vec<KeyView<'a>>,
}

fn is_super_admin(state: &GatewayState, parts: &Parts) -> bool {
    match (bearer(parts), state.config.admin_api_key.as_deref()) {
        (Some(t), Some(k)) => constant_eq(t.as_bytes(), k.as_bytes()),
        _ => false,
    }
}

/// The app whose keys the request manages: its `admin`-scoped key's, or the one the
/// super-admin names.
fn managed_app(state: &GatewayState, parts: &Parts, named: Option<String>) -> ApiResult<String> {
    if let Some(key) = api_key(parts) {
        let app = scoped_key(state, key, "admin")?.app_id;
        if named.as_ref().is_some_and(|n| n != &app) {
            return Err(AppError::forbidden("the API key belongs to another app"));
        }
        return Ok(app);
    }
    if is_super_admin(state, parts) {
        let app = named.ok_or_else(|| AppError::bad("app_id is required"))?;
        if state.chat.app(&app)?.is_none() {
            return Err(AppError::not_found("app not found"));
        }
        return Ok(app);
    }
    Err(AppError::unauthorized(
        "an admin key or a server key of the app with the admin scope is required",
    ))
}

/// `POST /api/auth/api-keys` `{name?, app_id?, scopes?}`: without `scopes`, a key made with a
/// server key gets `read`, `write` and `tokens`; one made by the super-admin or dev mode gets
/// every scope.
pub async fn create(
    State(state): State<GatewayState>,
    parts: Parts,
    Typed(body): Typed<req::CreateApiKey>,
) -> ApiResult<Response> {
    let name = body.name.unwrap_or_else(|| "default".into());
    let requested = body.app_id;
    let (app, full) = if api_key(&parts).is_some() || is_super_admin(&state, &parts) {
        let full = api_key(&parts).is_none();
        (managed_app(&state, &parts, requested)?, full)
    } else if state.config.dev {
        let id = requested.ok_or_else(|| AppError::bad("app_id is required"))?;
        chatsdk_actors::validate::app_id(&id)?;
        match state.chat.app(&id)? {
            // Without credentials, dev mode only opens the demo app and brand-new apps.
            Some(_) if id != DEMO_APP => {
                return Err(AppError::unauthorized(
                    "an admin key or a server key of the app is required",
                ))
            }
            Some(_) => {}
            None => {
                state
                    .chat
                    .create_app(Some(id.clone()), &id, json!({}))
                    .await?;
            }
        }
        (id, true)
    } else {
        return Err(AppError::unauthorized(
            "an admin key or a server key of the app is required",
        ));
    };
    let scopes = match body.scopes {
        Some(s) => s,
        None if full => full_key_scopes(),
        None => default_key_scopes(),
    };
    let (key, plain) = state.chat.create_api_key(&app, &name, scopes).await?;
    Ok(json(
        StatusCode::CREATED,
        &CreatedKey {
            id: &key.id,
            api_key: &plain,
            name: &key.name,
            app_id: &key.app_id,
            scopes: &key.scopes,
            created_at: Iso(key.created_at),
        },
    ))
}

/// `GET /api/auth/api-keys[?app_id]`: the app's keys that are not revoked.
pub async fn list(
    State(state): State<GatewayState>,
    parts: Parts,
    q: Query,
) -> ApiResult<Response> {
    let app = managed_app(&state, &parts, q.str("appId"))?;
    let keys = state.chat.api_keys(&app)?;
    Ok(json(
        StatusCode::OK,
        &KeyList {
            api_keys: keys.iter().map(KeyView::from).collect(),
        },
    ))
}

/// `DELETE /api/auth/api-keys/:id[?app_id]`: revokes a key; every node refuses it once this
/// answers. A key may revoke itself.
pub async fn revoke(
    State(state): State<GatewayState>,
    parts: Parts,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let app = managed_app(&state, &parts, q.str("appId"))?;
    state.chat.revoke_api_key(&app, &id).await?;
    Ok(success())
}
