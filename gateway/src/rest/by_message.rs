//! The routes that name a message without its channel (`/api/messages/:id/...`): the
//! Server API's reactions and polls, and the paths ChatSDK's SDKs call. The channel is found
//! from the message id (`chatsdk_actors::locate`), or named by `channel_id` in the query or
//! body (needed for messages sent with a client message id); then the channel's own route
//! answers.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use super::{annotations, messages};
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// The channel hint of a request: `channelId` / `channel_id` in the query or the body.
fn hint(q: &Query, body: Option<&Value>) -> Option<String> {
    q.str("channelId").or_else(|| {
        let b = body?;
        b.get("channelId")
            .or_else(|| b.get("channel_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// The acting user of a request, for locating under their rights.
fn acting(q: &Query, body: Option<&Value>) -> Option<String> {
    q.str("userId").or_else(|| {
        let b = body?;
        b.get("userId")
            .or_else(|| b.get("user_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

async fn locate(
    state: &GatewayState,
    auth: &Auth,
    q: &Query,
    body: Option<&Value>,
    mid: &str,
) -> ApiResult<String> {
    let caller = auth.caller(acting(q, body));
    Ok(state
        .chat
        .locate_message(&caller, mid, hint(q, body).as_deref())
        .await?)
}

/// A JSON body decoded as an endpoint's type once its hint was read.
fn typed<T: serde::de::DeserializeOwned>(body: Value) -> ApiResult<Typed<T>> {
    serde_json::from_value(body)
        .map(Typed)
        .map_err(|e| AppError::bad(format!("invalid request body: {e}")))
}

/// `GET /api/messages/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, None, &mid).await?;
    messages::get(State(state), auth, Path((channel, mid)), q).await
}

/// `PATCH /api/messages/:id`.
pub async fn edit(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    q: Query,
    Typed(body): Typed<Value>,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, Some(&body), &mid).await?;
    messages::edit(State(state), auth, Path((channel, mid)), typed(body)?).await
}

/// `DELETE /api/messages/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, None, &mid).await?;
    messages::delete(State(state), auth, Path((channel, mid)), q).await
}

/// `POST /api/messages/:id/reactions`.
pub async fn react(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    q: Query,
    Typed(body): Typed<Value>,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, Some(&body), &mid).await?;
    annotations::react(State(state), auth, Path((channel, mid)), typed(body)?).await
}

/// `GET /api/messages/:id/reactions`.
pub async fn reactions(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, None, &mid).await?;
    annotations::reactions(State(state), auth, Path((channel, mid)), q).await
}

/// `DELETE /api/messages/:id/reactions/:emoji`.
pub async fn unreact(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((mid, emoji)): Path<(String, String)>,
    q: Query,
    Typed(body): Typed<Value>,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, Some(&body), &mid).await?;
    annotations::unreact(
        State(state),
        auth,
        Path((channel, mid, emoji)),
        q,
        typed(body)?,
    )
    .await
}

/// `POST /api/messages/:id/polls`.
pub async fn create_poll(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(mid): Path<String>,
    q: Query,
    Typed(body): Typed<Value>,
) -> ApiResult<Response> {
    let channel = locate(&state, &auth, &q, Some(&body), &mid).await?;
    annotations::create_poll(State(state), auth, Path((channel, mid)), typed(body)?).await
}
