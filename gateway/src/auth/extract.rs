//! Request authentication as axum extractors.
//!
//! - `Authorization: Bearer <access token>`: a user of an app (Client API, camelCase).
//! - `X-API-Key: <server key>`: the app's server authority (Server API, snake_case); the acting
//!   user is named in the body or query as `user_id`.
//! - Both: the bearer's user with the server key's authority (the key must belong to the same
//!   app), answered in camelCase.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chatsdk_actors::Caller;
use chatsdk_proto::ErrorCode;

use super::jwt::JwtError;
use super::tokens::Claims;
use crate::error::AppError;
use crate::state::GatewayState;
use chatsdk_actors::dialect::Dialect;

/// An authenticated request.
#[derive(Clone, Debug)]
pub struct Auth {
    pub app: String,
    /// The bearer token's user.
    pub user: Option<String>,
    /// Server-key authority.
    pub server: bool,
    pub dialect: Dialect,
    /// Scopes of a restricted token (None: full user rights).
    pub scopes: Option<Vec<String>>,
}

impl Auth {
    /// The caller acting as `acting` (the Server API names its user per request; a bearer
    /// token's user always wins).
    pub fn caller(&self, acting: Option<String>) -> Caller {
        Caller {
            app: self.app.clone(),
            user: self.user.clone().or(acting),
            server: self.server,
        }
    }

    /// A caller that must be a user (Client API routes).
    pub fn user_caller(&self, acting: Option<String>) -> Result<Caller, AppError> {
        let c = self.caller(acting);
        if c.user.is_none() {
            return Err(AppError::bad("user_id is required"));
        }
        Ok(c)
    }

    /// Refuses restricted tokens that lack `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), AppError> {
        match &self.scopes {
            Some(s) if !s.iter().any(|x| x == scope) => Err(AppError::forbidden(format!(
                "Token scope required: {scope}"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses callers without server authority.
    pub fn require_server(&self) -> Result<(), AppError> {
        if self.server {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "this route needs the app's server key (X-API-Key)",
            ))
        }
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn api_key(parts: &Parts) -> Option<&str> {
    parts.headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

pub(crate) fn token_error(e: JwtError) -> AppError {
    match e {
        JwtError::Expired => AppError::new(ErrorCode::TokenExpired, "token expired"),
        other => AppError::unauthorized(format!("invalid token: {other}")),
    }
}

/// Checks that the token's user exists and was not revoked after it was issued.
pub(crate) fn live_user(state: &GatewayState, claims: &Claims) -> Result<(), AppError> {
    if let Some(sid) = &claims.sid {
        if state
            .chat
            .session_revoked(&claims.app_id, &claims.user_id, sid)?
        {
            return Err(AppError::unauthorized("session revoked"));
        }
    }
    match state.chat.user_record(&claims.app_id, &claims.user_id)? {
        Some(u) if !u.deleted && claims.gen >= u.tokens_valid_after => Ok(state
            .chat
            .check_not_banned(&claims.app_id, &claims.user_id)?),
        Some(_) => Err(AppError::unauthorized("token revoked")),
        None => Err(AppError::unauthorized("Token user not found")),
    }
}

/// Resolves a server key.
pub(crate) fn server_key(
    state: &GatewayState,
    key: &str,
) -> Result<chatsdk_actors::model::ApiKey, AppError> {
    state
        .chat
        .api_key(key)?
        .ok_or_else(|| AppError::unauthorized("Invalid API key"))
}

/// Resolves a server key that must carry `scope` (see `chatsdk_actors::model::KEY_SCOPES`).
pub(crate) fn scoped_key(
    state: &GatewayState,
    key: &str,
    scope: &str,
) -> Result<chatsdk_actors::model::ApiKey, AppError> {
    let k = server_key(state, key)?;
    if !k.allows(scope) {
        return Err(AppError::forbidden(format!(
            "this API key lacks the {scope} scope"
        )));
    }
    Ok(k)
}

/// The scope a request needs of its server key: `read` for GET and HEAD, `write` otherwise.
fn method_scope(parts: &Parts) -> &'static str {
    match parts.method {
        axum::http::Method::GET | axum::http::Method::HEAD => "read",
        _ => "write",
    }
}

impl FromRequestParts<GatewayState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &GatewayState) -> Result<Self, AppError> {
        let key = api_key(parts);
        if let Some(token) = bearer(parts) {
            let claims = state.tokens.access(token).map_err(token_error)?;
            live_user(state, &claims)?;
            let server = match key {
                Some(k) => {
                    if scoped_key(state, k, method_scope(parts))?.app_id != claims.app_id {
                        return Err(AppError::forbidden("the API key belongs to another app"));
                    }
                    true
                }
                None => false,
            };
            return Ok(Auth {
                app: claims.app_id,
                user: Some(claims.user_id),
                server,
                dialect: Dialect::Camel,
                scopes: claims.scopes,
            });
        }
        if let Some(k) = key {
            let app = scoped_key(state, k, method_scope(parts))?.app_id;
            return Ok(Auth {
                app,
                user: None,
                server: true,
                dialect: Dialect::Snake,
                scopes: None,
            });
        }
        Err(AppError::unauthorized("Missing authorization"))
    }
}

/// The super-admin (`Authorization: Bearer <admin key>`).
pub struct Admin;

impl FromRequestParts<GatewayState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &GatewayState) -> Result<Self, AppError> {
        let Some(expected) = state.config.admin_api_key.as_deref() else {
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "the admin API is disabled (no admin key configured)",
            ));
        };
        match bearer(parts) {
            Some(t) if constant_eq(t.as_bytes(), expected.as_bytes()) => Ok(Admin),
            _ => Err(AppError::unauthorized("admin key required")),
        }
    }
}

/// Compares secrets without an early exit.
pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
