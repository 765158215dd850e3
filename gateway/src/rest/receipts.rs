//! Read receipts: mark read up to a message, who read a message, receipts of several
//! messages, members' read positions. Mounted under both `/receipts` and `/read` (the
//! original's two mounts), with `POST /read` marking everything read unless it names a message.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::render::Iso;
use chatsdk_actors::MessageReceipts;

use super::channels::ReadBody;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// Readers `POST …/receipts/query` names per message.
const READERS_PER_MESSAGE: usize = 10;

/// `POST /api/channels/:id/receipts/query`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(alias = "message_ids")]
    message_ids: Vec<String>,
}

chatsdk_actors::dialect_views! {
    scope: receipts;
    records: chatsdk_actors::render;
    types {
        /// The answer to a receipt.
        pub struct Receipted<'a> {
            pub success: bool,
            pub last_read_message_id: &'a str,
            pub last_read_seq: u64,
        }

        /// A reader of a message.
        pub struct Reader<'a> {
            pub user_id: &'a str,
            pub name: Option<&'a str>,
            pub image: Option<&'a str>,
            pub read_at: Option<Iso>,
        }

        /// `GET …/messages/:mid/receipts`.
        pub struct ReadBy<'a> {
            pub read_by: Vec<Reader<'a>>,
            pub read_count: usize,
            pub total_members: u64,
        }

        /// One message's receipts in a query.
        pub struct Receipts<'a> {
            pub read_count: usize,
            pub readers: Vec<Reader<'a>>,
        }

        /// `POST …/receipts/query`.
        pub struct ReceiptMap<'a> {
            pub receipts: std::collections::BTreeMap<&'a str, Receipts<'a>>,
        }

        /// A member's read position.
        pub struct MemberRead<'a> {
            pub user_id: &'a str,
            pub name: Option<&'a str>,
            pub image: Option<&'a str>,
            pub last_read_message_id: Option<&'a str>,
            pub last_read_seq: u64,
        }

        /// `GET …/receipts/read-status`.
        pub struct ReadStatus<'a> {
            pub members: Vec<MemberRead<'a>>,
        }
    }
}

type Users = Vec<Option<std::sync::Arc<chatsdk_actors::model::User>>>;

fn users_of<'a>(state: &GatewayState, app: &str, ids: impl Iterator<Item = &'a str>) -> Users {
    ids.map(|u| state.chat.user(app, u).ok().flatten())
        .collect()
}

/// Marks the channel read up to `message_id` (`POST …/receipts`, `POST …/read` naming one).
pub(super) async fn receipt(
    state: &GatewayState,
    auth: &Auth,
    channel: &str,
    body: ReadBody,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let message_id = body
        .message_id
        .ok_or_else(|| AppError::bad("messageId is required"))?;
    let seq = state.chat.receipt(&caller, channel, &message_id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Receipted {
        success: true,
        last_read_message_id: &message_id,
        last_read_seq: seq,
    }))
}

/// `POST /api/channels/:id/receipts`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<ReadBody>,
) -> ApiResult<Response> {
    receipt(&state, &auth, &id, body).await
}

/// `GET /api/channels/:id/receipts/messages/:mid/receipts` (and under `/read`).
pub async fn message(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let (mut found, total) = state.chat.message_receipts(&caller, &id, vec![mid]).await?;
    let r: MessageReceipts = found
        .pop()
        .flatten()
        .ok_or_else(|| AppError::not_found("message not found"))?;
    let users = users_of(
        &state,
        &caller.app,
        r.readers.iter().map(|(u, _)| u.as_str()),
    );
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReadBy {
        read_by: r
            .readers
            .iter()
            .zip(&users)
            .map(|((u, at), user)| v::Reader {
                user_id: u,
                name: user.as_deref().map(|x| x.name.as_str()),
                image: user.as_deref().and_then(|x| x.image.as_deref()),
                read_at: at.map(Iso),
            })
            .collect(),
        read_count: r.readers.len(),
        total_members: total,
    }))
}

/// `POST /api/channels/:id/receipts/query` (and under `/read`).
pub async fn query(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<QueryBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(body.user_id);
    let ids = body.message_ids;
    let (found, _) = state
        .chat
        .message_receipts(&caller, &id, ids.clone())
        .await?;
    let users: Vec<Users> = found
        .iter()
        .map(|r| match r {
            Some(r) => users_of(
                &state,
                &caller.app,
                r.readers
                    .iter()
                    .take(READERS_PER_MESSAGE)
                    .map(|(u, _)| u.as_str()),
            ),
            None => Vec::new(),
        })
        .collect();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReceiptMap {
        receipts: ids
            .iter()
            .zip(&found)
            .zip(&users)
            .filter_map(|((id, r), users)| {
                let r = r.as_ref()?;
                Some((
                    id.as_str(),
                    v::Receipts {
                        read_count: r.readers.len(),
                        readers: r
                            .readers
                            .iter()
                            .zip(users)
                            .map(|((u, at), user)| v::Reader {
                                user_id: u,
                                name: user.as_deref().map(|x| x.name.as_str()),
                                image: user.as_deref().and_then(|x| x.image.as_deref()),
                                read_at: at.map(Iso),
                            })
                            .collect(),
                    },
                ))
            })
            .collect(),
    }))
}

/// `GET /api/channels/:id/receipts/read-status` (and under `/read`).
pub async fn status(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let readers = state.chat.read_status(&caller, &id).await?;
    let users = users_of(&state, &caller.app, readers.iter().map(|r| r.user.as_str()));
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReadStatus {
        members: readers
            .iter()
            .zip(&users)
            .map(|(r, user)| v::MemberRead {
                user_id: &r.user,
                name: user.as_deref().map(|x| x.name.as_str()),
                image: user.as_deref().and_then(|x| x.image.as_deref()),
                last_read_message_id: r.receipts.message_id.as_deref(),
                last_read_seq: r.last_read_seq,
            })
            .collect(),
    }))
}
