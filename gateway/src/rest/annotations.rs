//! Reactions, pins, saved messages and polls: what members add to messages.
//!
//! Every route here names its channel except the poll routes (`/api/polls/:id/...`), which the
//! command layer locates through the directory. Both dialects: a bearer token acts as its user,
//! a server key as the `user_id` it names (in the body, or the query of a `DELETE`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::PollResults;
use chatsdk_actors::render::Iso;
use chatsdk_actors::{NewPoll, SavedMessage};

use super::requests::ActingUser;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::ApiResult;
use crate::state::GatewayState;

/// `POST …/reactions`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReactBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    /// The emoji (`type` is what the original's clients name it in events).
    #[serde(alias = "type", alias = "reaction")]
    emoji: String,
}

/// `POST …/polls`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(default, alias = "ends_at")]
    ends_at: Option<String>,
    #[serde(flatten)]
    poll: NewPoll,
}

/// `POST /api/polls/:id/vote`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoteBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(alias = "option_ids")]
    option_ids: Vec<String>,
}

chatsdk_actors::dialect_views! {
    scope: annotations;
    records: chatsdk_actors::render;
    types {
        /// The answer to a reaction added.
        pub struct Reacted<'a> {
            pub success: bool,
            pub message_id: &'a str,
            pub user_id: &'a str,
            pub emoji: &'a str,
            pub created_at: Iso,
        }

        /// One reaction in a message's list.
        pub struct ReactionItem<'a> {
            pub emoji: &'a str,
            #[serde(rename = "type")]
            pub kind: &'a str,
            pub user_id: &'a str,
            pub user: ReactorView<'a>,
            pub created_at: Iso,
        }

        /// `GET …/reactions`.
        pub struct ReactionList<'a> {
            pub reactions: Vec<ReactionItem<'a>>,
        }

        /// Messages (pinned ones).
        pub struct Messages<'a> {
            pub messages: Vec<MessageView<'a>>,
        }

        /// A saved message's channel.
        pub struct SavedChannel<'a> {
            pub id: &'a str,
            pub name: Option<&'a str>,
        }

        /// A saved message.
        pub struct SavedItem<'a> {
            #[serde(flatten)]
            pub message: MessageView<'a>,
            pub saved_at: Iso,
            pub channel: SavedChannel<'a>,
        }

        /// `GET …/messages/me/saved`.
        pub struct SavedList<'a> {
            pub messages: Vec<SavedItem<'a>>,
        }

        /// The answer to a vote.
        pub struct Voted<'a> {
            pub success: bool,
            pub poll_id: &'a str,
            pub user_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub option_ids: Option<&'a [String]>,
            pub total_votes: u64,
        }

        /// Who voted for an option (anonymous polls show nobody).
        pub struct Voter<'a> {
            pub user_id: &'a str,
            pub name: Option<&'a str>,
            pub image: Option<&'a str>,
        }

        /// An option with its votes and voters.
        pub struct ResultOption<'a> {
            pub id: &'a str,
            pub text: &'a str,
            pub vote_count: u64,
            pub voters: Option<Vec<Voter<'a>>>,
        }

        /// `GET /api/polls/:id/results`.
        pub struct Results<'a> {
            pub id: &'a str,
            pub message_id: &'a str,
            pub channel_id: &'a str,
            pub question: &'a str,
            pub options: Vec<ResultOption<'a>>,
            pub is_anonymous: bool,
            pub is_multi_choice: bool,
            pub total_votes: u64,
            pub user_votes: Vec<&'a str>,
            pub ends_at: Option<Iso>,
            pub closed: bool,
            pub created_at: Iso,
        }
    }
    impls {
        impl<'a> Results<'a> {
            pub fn new(
                r: &'a PollResults,
                viewer: Option<&str>,
                users: &'a [Option<std::sync::Arc<chatsdk_actors::model::User>>],
                now: u64,
            ) -> Self {
                let p = &r.poll;
                Results {
                    id: &p.id,
                    message_id: &p.message_id,
                    channel_id: &r.channel_id,
                    question: &p.question,
                    options: p
                        .options
                        .iter()
                        .map(|o| ResultOption {
                            id: &o.id,
                            text: &o.text,
                            vote_count: o.votes,
                            voters: (!p.anonymous).then(|| {
                                r.votes
                                    .iter()
                                    .zip(users)
                                    .filter(|((_, chosen), _)| chosen.contains(&o.id))
                                    .map(|((user, _), u)| Voter {
                                        user_id: user,
                                        name: u.as_deref().map(|u| u.name.as_str()),
                                        image: u.as_deref().and_then(|u| u.image.as_deref()),
                                    })
                                    .collect()
                            }),
                        })
                        .collect(),
                    is_anonymous: p.anonymous,
                    is_multi_choice: p.multi,
                    total_votes: p.total_votes,
                    user_votes: r
                        .votes
                        .iter()
                        .find(|(u, _)| Some(u.as_str()) == viewer)
                        .map(|(_, chosen)| chosen.iter().map(String::as_str).collect())
                        .unwrap_or_default(),
                    ends_at: p.ends_at.map(Iso),
                    closed: p.closed(now),
                    created_at: Iso(p.created_at),
                }
            }
        }

        impl<'a> SavedItem<'a> {
            pub fn new(s: &'a SavedMessage) -> Self {
                SavedItem {
                    message: MessageView::from(&s.message),
                    saved_at: Iso(s.saved_at),
                    channel: SavedChannel {
                        id: &s.channel.id,
                        name: s.channel.name.as_deref(),
                    },
                }
            }
        }
    }
}

/// The acting user of a `DELETE` (Server API): the query's `user_id`, else the body's.
fn acting(q: &Query, body: ActingUser) -> Option<String> {
    q.str("userId").or(body.user_id)
}

/// `POST /api/channels/:id/messages/:mid/reactions`.
pub async fn react(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    Typed(body): Typed<ReactBody>,
) -> ApiResult<Response> {
    auth.require_scope("reaction:write")?;
    let caller = auth.user_caller(body.user_id)?;
    state
        .chat
        .react(&caller, &id, &mid, &body.emoji, true)
        .await?;
    let user = caller.user.as_deref().unwrap_or_default();
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::Reacted {
        success: true,
        message_id: &mid,
        user_id: user,
        emoji: &body.emoji,
        created_at: Iso(chatsdk_actors::time::now_ms()),
    }))
}

/// `DELETE /api/channels/:id/messages/:mid/reactions/:emoji` (the emoji URL-encoded).
pub async fn unreact(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid, emoji)): Path<(String, String, String)>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    auth.require_scope("reaction:write")?;
    let caller = auth.user_caller(acting(&q, body))?;
    state.chat.react(&caller, &id, &mid, &emoji, false).await?;
    Ok(success())
}

/// `GET /api/channels/:id/messages/:mid/reactions`.
pub async fn reactions(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let list = state
        .chat
        .reactions(&auth.caller(q.str("userId")), &id, &mid)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReactionList {
        reactions: list
            .iter()
            .map(|(emoji, user, at)| v::ReactionItem {
                emoji,
                kind: emoji,
                user_id: &user.id,
                user: v::ReactorView::from(user),
                created_at: Iso(*at),
            })
            .collect(),
    }))
}

async fn set_pin(
    state: &GatewayState,
    auth: &Auth,
    id: &str,
    mid: &str,
    user: Option<String>,
    pin: bool,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(user)?;
    state.chat.pin(&caller, id, mid, pin).await?;
    Ok(success())
}

/// `POST /api/channels/:id/messages/:mid/pin`.
pub async fn pin(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    set_pin(&state, &auth, &id, &mid, body.user_id, true).await
}

/// `DELETE /api/channels/:id/messages/:mid/pin`.
pub async fn unpin(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    set_pin(&state, &auth, &id, &mid, acting(&q, body), false).await
}

/// `GET /api/channels/:id/messages/pins`.
pub async fn pins(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let (messages, notes) = state
        .chat
        .pinned(&auth.caller(q.str("userId")), &id)
        .await?;
    let (signer, now) = super::media_signing(&state);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Messages {
        messages: v::annotated_page(&messages, &notes)
            .into_iter()
            .map(|m| m.with_media(signer, now))
            .collect(),
    }))
}

async fn set_saved(
    state: &GatewayState,
    auth: &Auth,
    id: &str,
    mid: &str,
    user: Option<String>,
    save: bool,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(user)?;
    state.chat.save(&caller, id, mid, save).await?;
    Ok(success())
}

/// `POST /api/channels/:id/messages/:mid/save`.
pub async fn save(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    set_saved(&state, &auth, &id, &mid, body.user_id, true).await
}

/// `DELETE /api/channels/:id/messages/:mid/save`.
pub async fn unsave(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    set_saved(&state, &auth, &id, &mid, acting(&q, body), false).await
}

/// `GET /api/channels/:any/messages/me/saved` (the original's path: any channel segment).
pub async fn saved(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.user_caller(q.str("userId"))?;
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, 100_000)? as usize;
    let list = state.chat.saved(&caller, limit, offset).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::SavedList {
        messages: list.iter().map(v::SavedItem::new).collect(),
    }))
}

/// `POST /api/channels/:id/messages/:mid/polls`.
pub async fn create_poll(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, mid)): Path<(String, String)>,
    Typed(body): Typed<PollBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let mut new = body.poll;
    new.ends_at = crate::body::iso_time("endsAt", body.ends_at.as_deref())?;
    let poll = state.chat.create_poll(&caller, &id, &mid, new).await?;
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::PollView::new(&poll, &[])))
}

/// `POST /api/polls/:id/vote`.
pub async fn vote(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<VoteBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let (_, total) = state
        .chat
        .vote(&caller, &id, Some(body.option_ids.clone()))
        .await?;
    let user = caller.user.as_deref().unwrap_or_default();
    Ok(reply!(auth.dialect, StatusCode::CREATED, v => v::Voted {
        success: true,
        poll_id: &id,
        user_id: user,
        option_ids: Some(&body.option_ids),
        total_votes: total,
    }))
}

/// `DELETE /api/polls/:id/vote`.
pub async fn unvote(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(acting(&q, body))?;
    let (_, total) = state.chat.vote(&caller, &id, None).await?;
    let user = caller.user.as_deref().unwrap_or_default();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Voted {
        success: true,
        poll_id: &id,
        user_id: user,
        option_ids: None,
        total_votes: total,
    }))
}

/// `GET /api/polls/:id/results` (and `GET /api/polls/:id`).
pub async fn results(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let r = state.chat.poll_results(&caller, &id).await?;
    let users: Vec<_> = r
        .votes
        .iter()
        .map(|(u, _)| state.chat.user(&caller.app, u).ok().flatten())
        .collect();
    let now = chatsdk_actors::time::now_ms();
    let viewer = caller.user.as_deref();
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Results::new(&r, viewer, &users, now)))
}
