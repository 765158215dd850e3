//! The mentions inbox: list (newest first, `before` an ISO time, `unread=true`), the unread
//! count, marking read, and the user search of mention pickers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::render::Iso;
use chatsdk_actors::MentionItem;

use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// `POST /api/mentions/read`: the mentions of these messages, or every mention.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(
        default,
        alias = "message_ids",
        alias = "mentionIds",
        alias = "mention_ids"
    )]
    message_ids: Option<Vec<String>>,
}

chatsdk_actors::dialect_views! {
    scope: mentions;
    records: chatsdk_actors::render;
    types {
        /// The mentioning message.
        pub struct MentionMessage<'a> {
            pub id: &'a str,
            pub channel_id: &'a str,
            pub text: Option<&'a str>,
            pub created_at: Iso,
        }

        /// The channel of a mention.
        pub struct MentionChannel<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
            #[serde(rename = "type")]
            pub kind: &'a str,
        }

        /// One mention.
        pub struct MentionView<'a> {
            pub id: &'a str,
            pub mentioned_at: Iso,
            pub message: MentionMessage<'a>,
            pub mentioner: ReactorView<'a>,
            pub channel: Option<MentionChannel<'a>>,
            pub read: bool,
        }

        /// `GET /api/mentions`.
        pub struct MentionList<'a> {
            pub mentions: Vec<MentionView<'a>>,
            pub has_more: bool,
        }

        /// A count.
        pub struct Count {
            pub count: u64,
        }

        /// Mentions marked read.
        pub struct Marked {
            pub success: bool,
            pub count: u64,
        }

        /// A user a mention picker offers.
        pub struct Candidate<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
        }

        /// `GET /api/mentions/search`.
        pub struct Candidates<'a> {
            pub users: Vec<Candidate<'a>>,
        }
    }
    impls {
        impl<'a> MentionView<'a> {
            pub fn new(i: &'a MentionItem) -> Self {
                let m = &i.mention;
                MentionView {
                    id: &m.message_id,
                    mentioned_at: Iso(m.at),
                    message: MentionMessage {
                        id: &m.message_id,
                        channel_id: &m.channel_id,
                        text: m.text.as_deref(),
                        created_at: Iso(m.at),
                    },
                    mentioner: ReactorView::from(&m.mentioner),
                    channel: i.channel.as_ref().map(|c| MentionChannel {
                        id: &c.id,
                        name: c.name.as_deref(),
                        kind: c.kind.as_str(),
                    }),
                    read: i.read,
                }
            }
        }
    }
}

/// `GET /api/mentions`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let limit = q.num("limit", 50, 100)?.max(1) as usize;
    let before = crate::body::iso_time("before", q.str("before").as_deref())?;
    let unread = match q.str("unread").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(AppError::bad("unread must be true or false")),
    };
    let (items, more) = state.chat.mentions(&caller, before, limit, unread).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::MentionList {
        mentions: items.iter().map(v::MentionView::new).collect(),
        has_more: more,
    }))
}

/// `GET /api/mentions/unread-count`.
pub async fn unread_count(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.user_caller(q.str("userId"))?;
    let count = state.chat.mention_unread_count(&caller).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Count { count }))
}

/// `POST /api/mentions/read`.
pub async fn mark_read(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<MarkBody>,
) -> ApiResult<Response> {
    let caller = auth.user_caller(body.user_id)?;
    let count = state
        .chat
        .mark_mentions_read(&caller, body.message_ids)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Marked {
        success: true,
        count,
    }))
}

/// `GET /api/mentions/search`.
pub async fn search(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    let caller = auth.caller(q.str("userId"));
    let text = q.str("q").unwrap_or_default();
    if text.chars().count() > 100 {
        return Err(AppError::bad("q must be at most 100 characters"));
    }
    let limit = q.num("limit", 10, 50)?.max(1) as usize;
    let users = state
        .chat
        .mention_search(&caller, &text, q.str("channelId").as_deref(), limit)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Candidates {
        users: users
            .iter()
            .map(|u| v::Candidate {
                id: &u.id,
                name: &u.name,
                image: u.image.as_deref(),
            })
            .collect(),
    }))
}
