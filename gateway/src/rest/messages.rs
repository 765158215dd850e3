//! Messages: send (with client message id idempotency), list, get, edit, delete, purge, threads.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::stream::MessagePage;
use chatsdk_actors::{Caller, NewMessage};

use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// The body of a send: the message, and for a server key the user it is sent as.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(flatten)]
    message: NewMessage,
}

/// `POST /api/messages` (Server API): a send that names its channel.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSendBody {
    #[serde(alias = "channel_id")]
    channel_id: String,
    #[serde(flatten)]
    send: SendBody,
}

/// The body of an edit.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    text: String,
}

chatsdk_actors::dialect_views! {
    scope: messages;
    records: chatsdk_actors::render;
    types {
        /// A page of a channel's messages.
        pub struct MessageList<'a> {
            pub messages: Vec<MessageView<'a>>,
            pub max_seq: u64,
            pub has_more: bool,
        }

        /// A thread: its parent and a page of replies.
        pub struct Thread<'a> {
            pub parent: MessageView<'a>,
            pub replies: Vec<MessageView<'a>>,
            pub has_more: bool,
        }

        /// A thread's participant.
        pub struct Participant<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
            pub reply_count: u64,
        }

        /// `GET …/thread/participants`.
        pub struct Participants<'a> {
            pub participants: Vec<Participant<'a>>,
        }

        /// The answer to a purge.
        pub struct Purged {
            pub success: bool,
            pub purged: bool,
        }
    }
}

/// Sends through the command layer (which applies the sender's rate limit and the client
/// message id's idempotency, as for the `message.send` RPC).
async fn send(
    state: &GatewayState,
    auth: &Auth,
    caller: &Caller,
    channel: &str,
    new: NewMessage,
) -> ApiResult<Response> {
    let chatsdk_actors::chat::Sent {
        message: m,
        duplicate,
        rendered,
    } = state.chat.send_message(caller, channel, new).await?;
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    // A new message's event rendered it in the Client API's spelling already: a bearer-token
    // caller gets those bytes.
    // (Its uploads' URLs carry no media token: a message with uploads is rendered again.)
    let uploads = !chatsdk_actors::media::attached_upload_ids(&m.attachments.0).is_empty();
    if let (Some(json), false, false, chatsdk_actors::dialect::Dialect::Camel) =
        (rendered, duplicate, uploads, auth.dialect)
    {
        return Ok(super::json_text(status, json));
    }
    let (signer, now) = super::media_signing(state);
    Ok(reply!(auth.dialect, status, v => v::SentView::new(&m, duplicate).with_media(signer, now)))
}

/// `POST /api/channels/:id/messages`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<SendBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    send(&state, &auth, &caller, &id, body.message).await
}

/// `POST /api/messages` (Server API).
pub async fn create_server(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<ServerSendBody>,
) -> ApiResult<Response> {
    auth.require_server()?;
    let caller = auth.user_caller(body.send.user_id)?;
    send(&state, &auth, &caller, &body.channel_id, body.send.message).await
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
    let page = state.chat.messages(&caller, &id, page, limit).await?;
    let (signer, now) = super::media_signing(&state);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::MessageList {
        messages: v::annotated_page(&page.messages, &page.notes)
            .into_iter()
            .map(|m| m.with_media(signer, now))
            .collect(),
        max_seq: page.max_seq,
        has_more: page.more,
    }))
}

/// `GET /api/channels/:id/messages/:mid`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let (m, notes) = state
        .chat
        .annotated_message(&auth.caller(q.str("userId")), &id, &mid)
        .await?;
    let (signer, now) = super::media_signing(&state);
    Ok(
        reply!(auth.dialect, StatusCode::OK, v => v::MessageView::annotated(&m, Some(&notes))
        .with_media(signer, now)),
    )
}

/// `PATCH /api/channels/:id/messages/:mid`.
pub async fn edit(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    Typed(body): Typed<EditBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.caller(body.user_id);
    let m = state
        .chat
        .edit_message(&caller, &id, &mid, body.text)
        .await?;
    let (signer, now) = super::media_signing(&state);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::MessageView::from(&m).with_media(signer, now)))
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
    Ok(success())
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
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Purged {
        success: true,
        purged: true,
    }))
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
    let (parent, parent_notes) = state.chat.annotated_message(&caller, &id, &mid).await?;
    let (mut replies, notes) = state.chat.replies(&caller, &id, &mid, limit + 1).await?;
    let more = replies.len() > limit;
    replies.truncate(limit);
    let (signer, now) = super::media_signing(&state);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Thread {
        parent: v::MessageView::annotated(&parent, Some(&parent_notes)).with_media(signer, now),
        replies: v::annotated_page(&replies, &notes)
            .into_iter()
            .map(|m| m.with_media(signer, now))
            .collect(),
        has_more: more,
    }))
}

/// `POST /api/channels/:id/messages/:mid/thread`.
pub async fn reply(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    Typed(body): Typed<SendBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let mut new = body.message;
    new.parent_id = Some(mid);
    send(&state, &auth, &caller, &id, new).await
}

/// `GET /api/channels/:id/messages/:mid/thread/participants`.
pub async fn participants(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let list = state
        .chat
        .thread_participants(&auth.caller(q.str("userId")), &id, &mid)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Participants {
        participants: list
            .iter()
            .map(|(u, n)| v::Participant {
                id: &u.id,
                name: &u.name,
                image: u.image.as_deref(),
                reply_count: *n,
            })
            .collect(),
    }))
}
