//! Token endpoints: minting a user's bundle with a server key, refresh, validation, server keys
//! and realtime subscription tokens.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::codec::Json;
use chatsdk_actors::directory::{UpsertMode, UserPatch};
use serde::Serialize;

use super::json;
use super::requests as req;
use crate::auth::extract::{api_key, bearer, live_user, scoped_key, token_error, Auth};
use crate::auth::tokens::{Bundle, UserRef};
use crate::body::Typed;
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

// The token routes' contract fixes their spelling (the same for every caller), so their
// answers are single-dialect structs.

/// `POST /tokens`: the bundle and its user.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Minted<'a> {
    #[serde(flatten)]
    tokens: Refreshed<'a>,
    user: MintedUser<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MintedUser<'a> {
    id: &'a str,
    name: &'a str,
    email: Option<&'a str>,
    image: Option<&'a str>,
}

/// `POST /api/auth/connect`: its user and the bundle.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Connected<'a> {
    user: ConnectedUser<'a>,
    #[serde(flatten)]
    tokens: AuthRefreshed<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectedUser<'a> {
    id: &'a str,
    display_name: &'a str,
    avatar: Option<&'a str>,
    metadata: &'a Json,
}

/// The realtime token of the `/api/auth` routes, which the original kept out of the main body.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Internal<'a> {
    ws_token: &'a str,
}

/// `POST /tokens/refresh` (and the tokens of `POST /tokens`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Refreshed<'a> {
    token: &'a str,
    refresh_token: &'a str,
    ws_token: &'a str,
    expires_in: u64,
}

/// `POST /api/auth/refresh` (and the tokens of `POST /api/auth/connect`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthRefreshed<'a> {
    token: &'a str,
    refresh_token: &'a str,
    expires_in: u64,
    #[serde(rename = "_internal")]
    internal: Internal<'a>,
}

/// `GET /tokens/validate` and `/tokens/validate-ws`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Validated<'a> {
    valid: bool,
    payload: TokenPayload<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Option<ValidatedUser<'a>>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenPayload<'a> {
    user_id: &'a str,
    app_id: &'a str,
    issued_at: u64,
    expires_at: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ValidatedUser<'a> {
    id: &'a str,
    name: &'a str,
    image: Option<&'a str>,
}

chatsdk_actors::dialect_views! {
    scope: tokens;
    types {
        /// A realtime subscription token.
        pub struct SubscriptionToken<'a> {
            pub token: &'a str,
            pub expires_in: u64,
        }
    }
}

impl<'a> From<&'a Bundle> for Refreshed<'a> {
    fn from(b: &'a Bundle) -> Self {
        Refreshed {
            token: &b.token,
            refresh_token: &b.refresh_token,
            ws_token: &b.ws_token,
            expires_in: b.expires_in,
        }
    }
}

impl<'a> From<&'a Bundle> for AuthRefreshed<'a> {
    fn from(b: &'a Bundle) -> Self {
        AuthRefreshed {
            token: &b.token,
            refresh_token: &b.refresh_token,
            expires_in: b.expires_in,
            internal: Internal {
                ws_token: &b.ws_token,
            },
        }
    }
}

/// The app of the `X-API-Key` on a minting request.
fn minting_app(state: &GatewayState, parts: &Parts) -> Result<String, AppError> {
    let key = api_key(parts).ok_or_else(|| AppError::unauthorized("Missing API key"))?;
    Ok(scoped_key(state, key, "tokens")?.app_id)
}

/// Which spelling of the profile fields a minting route prefers.
#[derive(Clone, Copy)]
enum Prefer {
    /// `name`, `image`, `custom` (`POST /tokens`).
    Plain,
    /// `displayName`, `avatar`, `metadata` (`POST /api/auth/connect`).
    Connect,
}

async fn mint(
    state: &GatewayState,
    app: &str,
    body: req::MintUser,
    prefer: Prefer,
) -> ApiResult<(chatsdk_actors::model::User, crate::auth::tokens::Bundle)> {
    let (name, image, custom) = match prefer {
        Prefer::Plain => (
            body.name.or(body.display_name),
            body.image.or(body.avatar),
            body.custom.or(body.metadata),
        ),
        Prefer::Connect => (
            body.display_name.or(body.name),
            body.avatar.or(body.image),
            body.metadata.or(body.custom),
        ),
    };
    // A banned user gets no tokens (and their profile is left as it is).
    state.chat.check_not_banned(app, &body.user_id)?;
    let patch = UserPatch {
        id: body.user_id,
        name,
        image: image.filter(|s| !s.is_empty()),
        email: body.email,
        custom: custom.map(|m| chatsdk_actors::codec::Json(serde_json::Value::Object(m))),
        role: None,
    };
    let (_, user) = state
        .chat
        .upsert_user(app, patch, UpsertMode::Merge)
        .await?;
    let bundle = state.tokens.bundle(UserRef::of(app, &user), None);
    Ok((user, bundle))
}

/// `POST /tokens`.
pub async fn tokens(
    State(state): State<GatewayState>,
    parts: Parts,
    Typed(body): Typed<req::MintUser>,
) -> ApiResult<Response> {
    let app = minting_app(&state, &parts)?;
    let (user, b) = mint(&state, &app, body, Prefer::Plain).await?;
    Ok(json(
        StatusCode::OK,
        &Minted {
            tokens: Refreshed::from(&b),
            user: MintedUser {
                id: &user.id,
                name: &user.name,
                email: user.email.as_deref(),
                image: user.image.as_deref(),
            },
        },
    ))
}

/// `POST /api/auth/connect`.
pub async fn connect(
    State(state): State<GatewayState>,
    parts: Parts,
    Typed(body): Typed<req::MintUser>,
) -> ApiResult<Response> {
    let app = minting_app(&state, &parts)?;
    let (user, b) = mint(&state, &app, body, Prefer::Connect).await?;
    Ok(json(
        StatusCode::OK,
        &Connected {
            user: ConnectedUser {
                id: &user.id,
                display_name: &user.name,
                avatar: user.image.as_deref(),
                metadata: &user.custom,
            },
            tokens: AuthRefreshed::from(&b),
        },
    ))
}

/// Rotates a refresh token: each one works once; presenting a spent one again revokes the
/// whole login session (every token of it), as a leaked token would be.
async fn refreshed(state: &GatewayState, parts: &Parts) -> ApiResult<crate::auth::tokens::Bundle> {
    let token = bearer(parts).ok_or_else(|| AppError::unauthorized("Missing refresh token"))?;
    let claims = state.tokens.refresh(token).map_err(token_error)?;
    live_user(state, &claims)?;
    let sid = claims
        .sid
        .clone()
        .ok_or_else(|| AppError::unauthorized("refresh token without a session"))?;
    // The revocation group 0 records is the one that lasts: the user's shard forgets ended
    // sessions (see `forget_ended_sessions`).
    if state
        .chat
        .session_revoked(&claims.app_id, &claims.user_id, &sid)?
    {
        return Err(AppError::unauthorized("session revoked"));
    }
    state
        .chat
        .spend_refresh(
            &claims.app_id,
            &claims.user_id,
            &sid,
            &claims.jti,
            claims.exp,
        )
        .await
        .map_err(|e| AppError::unauthorized(e.to_string()))?;
    // The refresh token passed the revocation check: its generation is the user's.
    let user = UserRef {
        app: &claims.app_id,
        id: &claims.user_id,
        gen: claims.gen,
    };
    Ok(state.tokens.bundle(user, Some(&sid)))
}

/// `POST /tokens/refresh`.
pub async fn tokens_refresh(
    State(state): State<GatewayState>,
    parts: Parts,
) -> ApiResult<Response> {
    let b = refreshed(&state, &parts).await?;
    Ok(json(StatusCode::OK, &Refreshed::from(&b)))
}

/// `POST /api/auth/refresh`.
pub async fn auth_refresh(State(state): State<GatewayState>, parts: Parts) -> ApiResult<Response> {
    let b = refreshed(&state, &parts).await?;
    Ok(json(StatusCode::OK, &AuthRefreshed::from(&b)))
}

/// `GET /tokens/validate`.
pub async fn validate(State(state): State<GatewayState>, parts: Parts) -> ApiResult<Response> {
    let token = bearer(&parts).ok_or_else(|| AppError::unauthorized("Missing authorization"))?;
    let c = state.tokens.access(token).map_err(token_error)?;
    live_user(&state, &c)?;
    let user = state.chat.user(&c.app_id, &c.user_id)?;
    Ok(json(
        StatusCode::OK,
        &Validated {
            valid: true,
            payload: TokenPayload {
                user_id: &c.user_id,
                app_id: &c.app_id,
                issued_at: c.iat,
                expires_at: c.exp,
            },
            user: Some(user.as_ref().map(|u| ValidatedUser {
                id: &u.id,
                name: &u.name,
                image: u.image.as_deref(),
            })),
        },
    ))
}

/// `GET /tokens/validate-ws`.
pub async fn validate_ws(State(state): State<GatewayState>, parts: Parts) -> ApiResult<Response> {
    let token = bearer(&parts).ok_or_else(|| AppError::unauthorized("Missing authorization"))?;
    let c = state.tokens.connection(token).map_err(token_error)?;
    live_user(&state, &c)?;
    Ok(json(
        StatusCode::OK,
        &Validated {
            valid: true,
            payload: TokenPayload {
                user_id: &c.sub,
                app_id: &c.app_id,
                issued_at: c.iat,
                expires_at: c.exp,
            },
            user: None,
        },
    ))
}

/// `POST /api/realtime/subscription-token`.
pub async fn subscription_token(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<req::SubscriptionToken>,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let channel = body.channel;
    if channel.is_empty() || channel.len() > 255 {
        return Err(AppError::bad("channel must be 1 to 255 characters"));
    }
    let caller = auth.user_caller(body.user_id)?;
    let user = caller.user.clone().unwrap_or_default();
    state
        .chat
        .may_subscribe(&caller.app, &user, &channel)
        .await?;
    let gen = state
        .chat
        .user_record(&caller.app, &user)?
        .map_or(0, |u| u.tokens_valid_after);
    let token = state.tokens.subscription(
        UserRef {
            app: &caller.app,
            id: &user,
            gen,
        },
        &channel,
    );
    Ok(
        reply!(auth.dialect, StatusCode::OK, v => v::SubscriptionToken {
            token: &token,
            expires_in: state.tokens.access_ttl,
        }),
    )
}
