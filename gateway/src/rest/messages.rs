//! Messages: send (with client message id idempotency), list, get, edit, delete, purge, threads.

use axum::extract::{Path, State};
use axum::response::Response;
use chatsdk_actors::render;
use chatsdk_actors::stream::MessagePage;
use chatsdk_actors::{Caller, NewMessage};
use chatsdk_proto::ErrorCode;
use serde_json::{json, Value};

use super::{created, ok};
use crate::auth::extract::Auth;
use crate::body::{Body, Query};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// Per-user send limit. A server key's calls are exempt: a backend writing on its users'
/// behalf (imports, dual writes) is trusted with the app's full authority.
fn rate_limit(state: &GatewayState, caller: &Caller) -> ApiResult<()> {
    if caller.server {
        return Ok(());
    }
    let key = format!("{}:{}", caller.app, caller.user.as_deref().unwrap_or("-"));
    state.limiter.take(&key).map_err(|wait| {
        AppError::new(
            ErrorCode::RateLimited,
            format!("too many messages; retry in {wait} s"),
        )
        .retry_after(wait)
    })
}

fn new_message(body: &Body) -> ApiResult<NewMessage> {
    Ok(NewMessage {
        text: body
            .str("text")?
            .ok_or_else(|| AppError::bad("text is required"))?,
        client_msg_id: body.str("clientMsgId")?,
        attachments: body.value("attachments"),
        parent_id: body.str("parentId")?,
        reply_to_id: body.str("replyToId")?,
    })
}

async fn send(
    state: &GatewayState,
    caller: &Caller,
    channel: &str,
    new: NewMessage,
) -> ApiResult<Response> {
    rate_limit(state, caller)?;
    let (m, duplicate) = state.chat.send_message(caller, channel, new).await?;
    let mut v = render::message(&m);
    if duplicate {
        v["duplicate"] = json!(true);
        return Ok(ok(v));
    }
    Ok(created(v))
}

/// `POST /api/channels/:id/messages`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.str("userId")?)?;
    send(&state, &caller, &id, new_message(&body)?).await
}

/// `POST /api/messages` (Server API).
pub async fn create_server(
    State(state): State<GatewayState>,
    auth: Auth,
    body: Body,
) -> ApiResult<Response> {
    auth.require_server()?;
    let caller = auth.user_caller(body.str("userId")?)?;
    let channel = body.req("channelId")?;
    send(&state, &caller, &channel, new_message(&body)?).await
}

/// `GET /api/channels/:id/messages`.
pub async fn list(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let limit = q.num("limit", 100, 200)?.max(1) as usize;
    let seq_of = |mid: String| {
        let state = state.clone();
        let caller = caller.clone();
        let id = id.clone();
        async move { state.chat.message(&caller, &id, &mid).await.map(|m| m.seq) }
    };
    let page = if let Some(s) = q.str("sinceSeq") {
        MessagePage::After(
            s.parse()
                .map_err(|_| AppError::bad("since_seq must be a non-negative integer"))?,
        )
    } else if let Some(mid) = q.str("before") {
        MessagePage::Before(seq_of(mid).await?)
    } else if let Some(mid) = q.str("after") {
        MessagePage::After(seq_of(mid).await?)
    } else {
        MessagePage::Latest
    };
    let (messages, max_seq, more) = state.chat.messages(&caller, &id, page, limit).await?;
    let list: Vec<Value> = messages.iter().map(render::message).collect();
    Ok(ok(
        json!({"messages": list, "maxSeq": max_seq, "hasMore": more}),
    ))
}

/// `GET /api/channels/:id/messages/:mid`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let m = state
        .chat
        .message(&auth.caller(q.str("userId")), &id, &mid)
        .await?;
    Ok(ok(render::message(&m)))
}

/// `PATCH /api/channels/:id/messages/:mid`.
pub async fn edit(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.caller(body.str("userId")?);
    let m = state
        .chat
        .edit_message(&caller, &id, &mid, body.req("text")?)
        .await?;
    Ok(ok(render::message(&m)))
}

/// `DELETE /api/channels/:id/messages/:mid`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    state
        .chat
        .delete_message(&auth.caller(q.str("userId")), &id, &mid, false)
        .await?;
    Ok(ok(json!({"success": true})))
}

/// `DELETE /api/channels/:id/messages/:mid/purge`.
pub async fn purge(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    state
        .chat
        .delete_message(&auth.caller(q.str("userId")), &id, &mid, true)
        .await?;
    Ok(ok(json!({"success": true, "purged": true})))
}

/// `GET /api/channels/:id/messages/:mid/thread`.
pub async fn thread(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let limit = q.num("limit", 50, 200)? as usize;
    let parent = state.chat.message(&caller, &id, &mid).await?;
    let replies = state.chat.replies(&caller, &id, &mid, limit + 1).await?;
    let more = replies.len() > limit;
    let list: Vec<Value> = replies.iter().take(limit).map(render::message).collect();
    Ok(ok(
        json!({"parent": render::message(&parent), "replies": list, "hasMore": more}),
    ))
}

/// `POST /api/channels/:id/messages/:mid/thread`.
pub async fn reply(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.str("userId")?)?;
    state.chat.message(&caller, &id, &mid).await?;
    let mut new = new_message(&body)?;
    new.parent_id = Some(mid);
    send(&state, &caller, &id, new).await
}
