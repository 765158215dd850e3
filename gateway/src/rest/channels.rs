//! Channels: create (incl. DM and group ensure), list, get, update, delete, members, and the
//! caller's per-channel state (typing, read, star, mute, unread).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use chatsdk_actors::model::{Channel, ChannelFlags, Member, Role, User};
use chatsdk_actors::render::Iso;
use chatsdk_actors::{Caller, NewChannel};
use serde_json::{json, Value};

use super::requests as req;
use super::success;
use crate::auth::extract::Auth;
use crate::body::{Query, Typed};
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

chatsdk_actors::dialect_views! {
    scope: channels;
    records: chatsdk_actors::render;
    types {
        /// A channel in a list: direct and group conversations show their members.
        pub struct ChannelItem<'a> {
            #[serde(flatten)]
            pub channel: ChannelView<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub members: Option<Vec<MemberView<'a>>>,
        }

        /// `GET /api/channels`.
        pub struct ChannelList<'a> {
            pub channels: Vec<ChannelItem<'a>>,
        }

        /// A member as `GET /api/channels/:id` embeds them.
        pub struct ChannelMember<'a> {
            pub user_id: &'a str,
            pub role: &'static str,
            pub joined_at: Iso,
            pub user: Option<MemberUser<'a>>,
        }

        /// The user of a [`ChannelMember`].
        pub struct MemberUser<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub image: Option<&'a str>,
            pub custom: &'a chatsdk_actors::codec::Json,
        }

        /// `GET /api/channels/:id`: the channel and its first members.
        pub struct ChannelDetail<'a> {
            #[serde(flatten)]
            pub channel: ChannelView<'a>,
            pub members: Vec<ChannelMember<'a>>,
        }

        /// The answer of the Server API's channel ensures.
        pub struct Ensured<'a> {
            pub action: &'static str,
            pub created: bool,
            pub channel: ChannelView<'a>,
        }

        /// A count.
        pub struct Count {
            pub count: u64,
        }

        /// `GET /api/channels/:id/members`.
        pub struct MemberList<'a> {
            pub members: Vec<MemberView<'a>>,
        }

        /// Members added by a server key.
        pub struct MembersAdded<'a> {
            pub channel_id: &'a str,
            pub user_id: &'a str,
            pub user_ids: &'a [String],
            pub role: &'static str,
            pub added: &'a [String],
        }

        /// Members added by a user.
        pub struct AddedCount {
            pub success: bool,
            pub added_count: usize,
        }

        /// A member's new role.
        pub struct RoleSet {
            pub success: bool,
            pub role: &'static str,
        }

        /// The caller's new read position.
        pub struct ReadMarked {
            pub success: bool,
            pub last_read_seq: u64,
        }

        /// The caller's new star flag.
        pub struct Starred {
            pub success: bool,
            pub starred: bool,
        }

        /// The caller's new mute flag.
        pub struct Muted {
            pub success: bool,
            pub muted: bool,
        }
    }
    impls {
        impl<'a> ChannelMember<'a> {
            pub fn new(m: &'a Member, u: Option<&'a User>) -> Self {
                ChannelMember {
                    user_id: &m.user_id,
                    role: m.role.as_str(),
                    joined_at: Iso(m.joined_at),
                    user: u.map(|u| MemberUser {
                        id: &u.id,
                        name: &u.name,
                        image: u.image.as_deref(),
                        custom: &u.custom,
                    }),
                }
            }
        }
    }
}

/// What a channel looks like to its caller beyond the record: their read state and flags.
#[derive(Clone, Copy)]
struct Mine {
    read: Option<(u64, u64)>,
    flags: ChannelFlags,
}

/// The caller's read state and flags on a channel (when a member).
async fn mine(state: &GatewayState, caller: &Caller, ch: &Channel, me: Option<&Member>) -> Mine {
    let flags = match (me, &caller.user) {
        (Some(_), Some(u)) => my_flags(state, &caller.app, u)
            .await
            .remove(&ch.id)
            .unwrap_or_default(),
        _ => ChannelFlags::default(),
    };
    mine_with(state, caller, ch, me, flags).await
}

/// The caller's channel flags. They only decorate a channel, so a failure to read them shows
/// the channel without them (logged) rather than failing the request.
async fn my_flags(
    state: &GatewayState,
    app: &str,
    user: &str,
) -> std::collections::HashMap<String, ChannelFlags> {
    match state.chat.channel_flags(app, user).await {
        Ok(flags) => flags,
        Err(e) => {
            tracing::warn!(app, user, error = %e, "channel flags unavailable");
            Default::default()
        }
    }
}

/// The caller's read state on a channel, with their flags already known (lists read all of a
/// user's flags with one query).
async fn mine_with(
    state: &GatewayState,
    caller: &Caller,
    ch: &Channel,
    me: Option<&Member>,
    flags: ChannelFlags,
) -> Mine {
    let read = match (me, &caller.user) {
        (Some(_), Some(u)) => state.chat.read_state(&caller.app, &ch.id, u).await.ok(),
        _ => None,
    };
    Mine { read, flags }
}

/// Members with their user records (a member whose record cannot be read shows without it).
fn with_users(
    state: &GatewayState,
    app: &str,
    members: Vec<Member>,
) -> Vec<(Member, Option<User>)> {
    members
        .into_iter()
        .map(|m| {
            let u = state
                .chat
                .user(app, &m.user_id)
                .ok()
                .flatten()
                .map(std::sync::Arc::unwrap_or_clone);
            (m, u)
        })
        .collect()
}

/// Answers a channel as its caller sees it.
fn channel_reply(
    auth: &Auth,
    status: StatusCode,
    ch: &Channel,
    me: Option<&Member>,
    mine: Mine,
) -> Response {
    reply!(auth.dialect, status, v => v::ChannelView::new(ch, me, mine.read, mine.flags))
}

/// `POST /api/channels`.
pub async fn create(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<req::CreateChannel>,
) -> ApiResult<Response> {
    auth.require_scope("channel:create")?;
    let caller = auth.user_caller(body.user_id)?;
    let mut kind = body.kind;
    if kind.is_none() && body.is_private == Some(true) {
        kind = Some("private".into());
    }
    if kind.is_none() && auth.server {
        kind = Some("group".into());
    }
    let spec = NewChannel {
        kind,
        name: body.name,
        image: body.image,
        member_ids: body.member_ids.unwrap_or_default(),
        workspace_id: body.workspace_id,
        idempotency_key: body.idempotency_key,
        config: body.config.map(Value::Object),
        cid: None,
        id: None,
    };
    let (is_new, ch) = state.chat.create_channel(&caller, spec).await?;
    let me = state
        .chat
        .membership(
            &caller.app,
            &ch.id,
            caller.user.as_deref().unwrap_or_default(),
        )
        .await?;
    let mine = mine(&state, &caller, &ch, me.as_deref()).await;
    if is_new {
        return Ok(channel_reply(
            &auth,
            StatusCode::CREATED,
            &ch,
            me.as_deref(),
            mine,
        ));
    }
    if ch.dm && !auth.server && ch.idempotency_key.is_none() {
        let mut res = channel_reply(&auth, StatusCode::SEE_OTHER, &ch, me.as_deref(), mine);
        if let Ok(location) = HeaderValue::from_str(&format!("/api/channels/{}", ch.id)) {
            res.headers_mut().insert(header::LOCATION, location);
        }
        return Ok(res);
    }
    Ok(channel_reply(
        &auth,
        StatusCode::OK,
        &ch,
        me.as_deref(),
        mine,
    ))
}

async fn ensure(state: &GatewayState, auth: &Auth, spec: NewChannel) -> ApiResult<Response> {
    auth.require_server()?;
    let caller = Caller {
        app: auth.app.clone(),
        user: None,
        server: true,
    };
    let (is_new, ch) = state.chat.create_channel(&caller, spec).await?;
    let status = if is_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply!(auth.dialect, status, v => v::Ensured {
        action: if is_new { "created" } else { "existing" },
        created: is_new,
        channel: v::ChannelView::plain(&ch),
    }))
}

/// `POST /api/channels/dm/ensure` (server key).
pub async fn dm_ensure(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<req::DmEnsure>,
) -> ApiResult<Response> {
    let a = body.requester_user_id;
    let b = body.peer_user_id;
    if a == b {
        return Err(AppError::bad("a direct message needs two different users"));
    }
    if state.chat.blocks(&auth.app, &b, &a)? {
        return Err(AppError::forbidden(
            "the peer blocked the requester: no conversation can be opened",
        ));
    }
    let mut pair = vec![a.clone(), b.clone()];
    pair.sort();
    let cid = format!(
        "messaging:dm:{}",
        chatsdk_actors::hash_hex(json!(pair).to_string().as_bytes())
    );
    let spec = NewChannel {
        kind: Some("messaging".into()),
        member_ids: vec![a, b],
        cid: Some(cid),
        idempotency_key: body.idempotency_key,
        ..Default::default()
    };
    ensure(&state, &auth, spec).await
}

/// `POST /api/channels/group/ensure` (server key).
pub async fn group_ensure(
    State(state): State<GatewayState>,
    auth: Auth,
    Typed(body): Typed<req::GroupEnsure>,
) -> ApiResult<Response> {
    let key = match body.external_id.or(body.idempotency_key) {
        Some(k) => k,
        None => return Err(AppError::bad("externalId or idempotencyKey is required")),
    };
    if key.starts_with("messaging:dm:") {
        return Err(AppError::bad("the messaging:dm: prefix is reserved"));
    }
    let members = body.member_ids.unwrap_or_default();
    if members.is_empty() || members.len() > 500 {
        return Err(AppError::bad("memberIds must hold 1 to 500 users"));
    }
    let mut config = json!({"kind": "group", "source": "app-auth-ensure"});
    if let Some(custom) = body.custom {
        config["custom"] = Value::Object(custom);
    }
    let spec = NewChannel {
        kind: Some("group".into()),
        name: body.name,
        image: body.image,
        member_ids: members,
        cid: Some(key),
        config: Some(config),
        ..Default::default()
    };
    if let Some(existing) = state
        .chat
        .directory()
        .channel_by_cid(&auth.app, &spec.cid.clone().unwrap_or_default())?
    {
        if existing.kind != chatsdk_actors::model::ChannelType::Group {
            return Err(AppError::new(
                chatsdk_proto::ErrorCode::Conflict,
                "a channel of another type has this id",
            ));
        }
    }
    ensure(&state, &auth, spec).await
}

/// `GET /api/channels`.
pub async fn list(State(state): State<GatewayState>, auth: Auth, q: Query) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.user_caller(q.str("userId"))?;
    let limit = q.num("limit", 50, 100)? as usize;
    let offset = q.num("offset", 0, u64::MAX)? as usize;
    let user = caller.user.clone().unwrap_or_default();
    let mut all = state
        .chat
        .channels_for(&caller.app, &user, q.str("type").as_deref())
        .await?;
    if let Some(ws) = q.str("workspaceId") {
        // Refused (403) unless the caller is in the workspace; another app's is not found.
        state.chat.workspace(&caller, &ws).await?;
        all.retain(|(c, _)| c.workspace_id.as_deref() == Some(ws.as_str()));
    }
    channel_page(&state, &auth, &caller, &all, offset, limit).await
}

/// A page of channels as the caller sees them: read state and flags, and the members of
/// direct and group conversations.
pub(super) async fn channel_page(
    state: &GatewayState,
    auth: &Auth,
    caller: &Caller,
    all: &[(Channel, Option<Member>)],
    offset: usize,
    limit: usize,
) -> ApiResult<Response> {
    let user = caller.user.clone().unwrap_or_default();
    let mut flags = my_flags(state, &caller.app, &user).await;
    // Busiest first: the last message's time (channels without one last), then the newest.
    let activity = futures::future::join_all(
        all.iter()
            .map(|(ch, _)| state.chat.activity(&caller.app, &ch.id)),
    )
    .await;
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(activity[i].last_message_at),
            std::cmp::Reverse(all[i].0.created_at),
        )
    });
    let mut page = Vec::new();
    for i in order.into_iter().skip(offset).take(limit) {
        let (ch, me) = &all[i];
        let own = flags.remove(&ch.id).unwrap_or_default();
        let mine = mine_with(state, caller, ch, me.as_ref(), own).await;
        let members = if matches!(ch.kind.as_str(), "messaging" | "group") {
            Some(with_users(
                state,
                &caller.app,
                state.chat.members(&caller.app, &ch.id)?,
            ))
        } else {
            None
        };
        page.push((ch, me, mine, members, activity[i]));
    }
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ChannelList {
        channels: page
            .iter()
            .map(|(ch, me, mine, members, activity)| v::ChannelItem {
                channel: v::ChannelView::new(ch, me.as_ref(), mine.read, mine.flags)
                    .with_activity(*activity),
                members: members.as_ref().map(|ms| {
                    ms.iter().map(|(m, u)| v::MemberView::new(m, u.as_ref())).collect()
                }),
            })
            .collect(),
    }))
}

/// `GET /api/channels/unread-count`.
pub async fn unread_count(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.user_caller(q.str("userId"))?;
    let user = caller.user.clone().unwrap_or_default();
    let count = state.chat.total_unread(&caller.app, &user).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Count { count }))
}

/// `GET /api/channels/:id`.
pub async fn get(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let (ch, me) = state.chat.readable_channel(&caller, &id).await?;
    let mine = mine(&state, &caller, &ch, me.as_ref()).await;
    let mut members = state.chat.members(&caller.app, &id)?;
    members.truncate(100);
    let members = with_users(&state, &caller.app, members);
    let activity = state.chat.activity(&caller.app, &id).await;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ChannelDetail {
        channel: v::ChannelView::new(&ch, me.as_ref(), mine.read, mine.flags)
            .with_activity(activity),
        members: members.iter().map(|(m, u)| v::ChannelMember::new(m, u.as_ref())).collect(),
    }))
}

/// `PATCH /api/channels/:id`.
pub async fn update(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<req::UpdateChannel>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.caller(body.user_id);
    let ch = state
        .chat
        .update_channel(
            &caller,
            &id,
            body.name,
            body.image,
            body.config.map(Value::Object),
        )
        .await?;
    let me = match &caller.user {
        Some(u) => state.chat.membership(&caller.app, &id, u).await?,
        None => None,
    };
    let mine = mine(&state, &caller, &ch, me.as_deref()).await;
    Ok(channel_reply(
        &auth,
        StatusCode::OK,
        &ch,
        me.as_deref(),
        mine,
    ))
}

/// `DELETE /api/channels/:id`.
pub async fn delete(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    state
        .chat
        .delete_channel(&auth.caller(q.str("userId")), &id)
        .await?;
    Ok(success())
}

/// `GET /api/channels/:id/members`.
pub async fn members(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("chat:read")?;
    let caller = auth.caller(q.str("userId"));
    let (_, me) = state.chat.readable_channel(&caller, &id).await?;
    if me.is_none() && !caller.server {
        return Err(AppError::forbidden("not a member of this channel"));
    }
    let members = with_users(&state, &caller.app, state.chat.members(&caller.app, &id)?);
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::MemberList {
        members: members.iter().map(|(m, u)| v::MemberView::new(m, u.as_ref())).collect(),
    }))
}

/// `POST /api/channels/:id/members`.
pub async fn add_members(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<req::AddMembers>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let acting = if auth.user.is_some() {
        None
    } else {
        body.acting_user_id
    };
    let caller = auth.caller(acting);
    let mut users = body.user_ids.unwrap_or_default();
    if let Some(u) = body.user_id {
        users.push(u);
    }
    let role = match body.role {
        Some(r) => Role::parse(&r).ok_or_else(|| AppError::bad(format!("unknown role {r}")))?,
        None => Role::Member,
    };
    let added = state
        .chat
        .add_members(&caller, &id, users.clone(), role)
        .await?;
    if auth.server && auth.user.is_none() {
        let first = users.first().map(String::as_str).unwrap_or_default();
        return Ok(
            reply!(auth.dialect, StatusCode::CREATED, v => v::MembersAdded {
                channel_id: &id,
                user_id: first,
                user_ids: &users,
                role: role.as_str(),
                added: &added,
            }),
        );
    }
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::AddedCount {
        success: true,
        added_count: added.len(),
    }))
}

/// `PATCH /api/channels/:id/members/:user`.
pub async fn set_role(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
    Typed(body): Typed<req::SetRole>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let role_name = body.role;
    let role = Role::parse(&role_name)
        .ok_or_else(|| AppError::bad(format!("unknown role {role_name}")))?;
    state
        .chat
        .set_role(&auth.caller(None), &id, &user, role)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::RoleSet {
        success: true,
        role: role.as_str(),
    }))
}

/// `DELETE /api/channels/:id/members/:user`.
pub async fn remove_member(
    State(state): State<GatewayState>,
    auth: Auth,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let target = if user == "me" {
        auth.user
            .clone()
            .ok_or_else(|| AppError::bad("me needs a user token"))?
    } else {
        user
    };
    state
        .chat
        .remove_member(&auth.caller(None), &id, &target)
        .await?;
    Ok(success())
}

/// `POST /api/channels/:id/typing`.
pub async fn typing(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<req::Typing>,
) -> ApiResult<Response> {
    auth.require_scope("typing:write")?;
    let caller = auth.user_caller(body.user_id)?;
    state
        .chat
        .typing(&caller, &id, body.typing.unwrap_or(true))
        .await?;
    Ok(success())
}

/// The body of `POST /api/channels/:id/read` and `…/receipts`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadBody {
    #[serde(default, alias = "user_id")]
    pub user_id: Option<String>,
    #[serde(default, alias = "message_id")]
    pub message_id: Option<String>,
}

/// `POST /api/channels/:id/read`: everything read, or up to `messageId` when it names one (a
/// read receipt, as `POST …/receipts`).
pub async fn read(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<ReadBody>,
) -> ApiResult<Response> {
    if body.message_id.is_some() {
        return super::receipts::receipt(&state, &auth, &id, body).await;
    }
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let seq = state.chat.mark_read(&caller, &id).await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::ReadMarked {
        success: true,
        last_read_seq: seq,
    }))
}

/// `PATCH /api/channels/:id/star`.
pub async fn star(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<req::Star>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let starred = body.starred;
    state
        .chat
        .set_flags(&caller, &id, None, Some(starred))
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Starred {
        success: true,
        starred,
    }))
}

/// `PATCH /api/channels/:id/mute`.
pub async fn mute(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    Typed(body): Typed<req::Mute>,
) -> ApiResult<Response> {
    auth.require_scope("chat:write")?;
    let caller = auth.user_caller(body.user_id)?;
    let muted = body.muted;
    state
        .chat
        .set_flags(&caller, &id, Some(muted), None)
        .await?;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Muted {
        success: true,
        muted,
    }))
}
