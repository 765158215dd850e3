//! Presence: heartbeats, appearing online or offline, presence of users who share a channel
//! with the caller, a channel's members online, and a channel's live connections.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::model::User;
use chatsdk_actors::render::Iso;
use chatsdk_actors::UserPresence;

use super::requests::ActingUser;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// Users one presence query may name.
const MAX_QUERY: usize = 100;

/// `POST /api/presence/query`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryBody {
    #[serde(default, alias = "user_id")]
    user_id: Option<String>,
    #[serde(alias = "user_ids")]
    user_ids: Vec<String>,
}

chatsdk_actors::dialect_views! {
    scope: presence;
    records: chatsdk_actors::render;
    types {
        /// A user in a presence answer.
        pub struct PresenceUser<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
        }

        /// One user's presence.
        pub struct PresenceOf<'a> {
            pub online: bool,
            pub last_seen: Option<Iso>,
            pub user: PresenceUser<'a>,
        }

        /// `POST /api/presence/query`.
        pub struct PresenceMap<'a> {
            pub presence: std::collections::BTreeMap<&'a str, PresenceOf<'a>>,
        }

        /// A member in a channel's presence.
        pub struct MemberPresence<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
            pub online: bool,
            pub last_seen: Option<Iso>,
        }

        /// `GET /api/channels/:id/presence`.
        pub struct ChannelPresence<'a> {
            pub online: Vec<MemberPresence<'a>>,
            pub offline: Vec<MemberPresence<'a>>,
            pub total_online: usize,
            pub total_members: usize,
        }

        /// A live connection subscribed to a channel.
        pub struct LiveClient<'a> {
            pub client_id: &'a str,
            pub user_id: &'a str,
        }

        /// `GET /api/channels/:id/presence/live`.
        pub struct LiveClients<'a> {
            pub clients: Vec<LiveClient<'a>>,
            pub count: usize,
        }
    }
    impls {
        impl<'a> MemberPresence<'a> {
            pub fn new(u: &'a User, p: UserPresence) -> Self {
                MemberPresence {
                    id: &u.id,
                    name: &u.name,
                    image: u.image.as_deref(),
                    online: p.online,
                    last_seen: p.last_seen.map(Iso),
                }
            }
        }
    }
}

/// `POST /api/presence/heartbeat`.
pub async fn heartbeat(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    auth.require_scope("typing:write")?;
    state
        .chat
        .heartbeat(&auth.user_caller(body.user_id)?)
        .await?;
    Ok(success())
}

async fn set(
    state: &GatewayState,
    auth: &Auth,
    user: Option<String>,
    online: bool,
) -> ApiResult<Response> {
    auth.require_scope("typing:write")?;
    state
        .chat
        .set_presence(&auth.user_caller(user)?, online)
        .await?;
    Ok(success())
}

/// `POST /api/presence/online`.
pub async fn online(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    set(&state, &auth, body.user_id, true).await
}

/// `POST /api/presence/offline`.
pub async fn offline(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<ActingUser>,
) -> ApiResult<Response> {
    set(&state, &auth, body.user_id, false).await
}

/// `POST /api/presence/query`: users who share no channel with the caller are left out.
pub async fn query(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<QueryBody>,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    if body.user_ids.is_empty() || body.user_ids.len() > MAX_QUERY {
        return Err(AppError::bad(format!(
            "userIds must have 1 to {MAX_QUERY} items"
        )));
    }
    let caller = auth.caller(body.user_id);
    let mut users = Vec::new();
    for id in &body.user_ids {
        if users.iter().any(|u: &std::sync::Arc<User>| &u.id == id)
            || !state.chat.shares_channel(&caller, id)?
        {
            continue;
        }
        if let Some(u) = state.chat.user(&caller.app, id)? {
            users.push(u);
        }
    }
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let presence = state.chat.presence_of(&caller.app, &ids).await;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::PresenceMap {
        presence: users
            .iter()
            .zip(&presence)
            .map(|(u, p)| {
                (
                    u.id.as_str(),
                    v::PresenceOf {
                        online: p.online,
                        last_seen: p.last_seen.map(Iso),
                        user: v::PresenceUser {
                            id: &u.id,
                            name: &u.name,
                            image: u.image.as_deref(),
                        },
                    },
                )
            })
            .collect(),
    }))
}

/// `GET /api/channels/:id/presence`.
pub async fn channel(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    state.chat.readable_channel(&caller, &id).await?;
    let members: Vec<String> = state
        .chat
        .members(&caller.app, &id)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let presence = state.chat.presence_of(&caller.app, &members).await;
    let users: Vec<_> = members
        .iter()
        .map(|m| state.chat.user(&caller.app, m).ok().flatten())
        .collect();
    let entries: Vec<(&User, UserPresence)> = users
        .iter()
        .zip(&presence)
        .filter_map(|(u, p)| u.as_deref().map(|u| (u, *p)))
        .collect();
    Ok(reply!(auth.dialect, StatusCode::OK, v => {
        let online: Vec<_> = entries
            .iter()
            .filter(|(_, p)| p.online)
            .map(|(u, p)| v::MemberPresence::new(u, *p))
            .collect();
        let offline: Vec<_> = entries
            .iter()
            .filter(|(_, p)| !p.online)
            .map(|(u, p)| v::MemberPresence::new(u, *p))
            .collect();
        v::ChannelPresence {
            total_online: online.len(),
            total_members: members.len(),
            online,
            offline,
        }
    }))
}

/// `GET /api/channels/:id/presence/live`: the realtime connections subscribed to the channel,
/// on every node.
pub async fn live(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    state.chat.readable_channel(&caller, &id).await?;
    let clients = state
        .chat
        .presence(&chatsdk_actors::chat_stream(&caller.app, &id))
        .await;
    let prefix = format!("{}:", caller.app);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::LiveClients {
        count: clients.len(),
        clients: clients
            .iter()
            .map(|c| v::LiveClient {
                client_id: &c.client,
                user_id: c.user.strip_prefix(&prefix).unwrap_or(&c.user),
            })
            .collect(),
    }))
}
