//! The JSON shapes of the Client API (camelCase), built from stored records.
//!
//! One place renders each record, so REST responses and realtime event payloads agree. The
//! Server API's snake_case dialect is derived from these by the gateway. Events are rendered
//! here too ([`event`]), once when a channel actor emits them and by the same function when
//! history or recovery reads them back: the stored form is the typed [`Event`].

use serde_json::{json, Value};

use crate::model::{Channel, Event, Member, Message, User, UserSummary};
use crate::time::iso;

fn opt_iso(ms: Option<u64>) -> Value {
    ms.map(|m| Value::String(iso(m))).unwrap_or(Value::Null)
}

/// The embedded author of a message.
pub fn user_summary(u: &UserSummary) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "image": u.image,
        "custom": u.custom,
        "createdAt": iso(u.created_at),
        "updatedAt": iso(u.updated_at),
    })
}

/// A user as `GET /api/users/:id` shows it.
pub fn user(u: &User, now_ms: u64) -> Value {
    let online = u
        .last_active_at
        .is_some_and(|t| now_ms.saturating_sub(t) < 5 * 60 * 1000);
    json!({
        "id": u.id,
        "name": u.name,
        "image": u.image,
        "email": u.email,
        "custom": u.custom,
        "role": u.role,
        "lastActiveAt": opt_iso(u.last_active_at),
        "createdAt": iso(u.created_at),
        "updatedAt": iso(u.updated_at),
        "online": online,
    })
}

/// A message (formatMessage of the original).
pub fn message(m: &Message) -> Value {
    let deleted = m.deleted_at.is_some();
    let updated = m.edited_at.unwrap_or(m.created_at);
    json!({
        "id": m.id,
        "channelId": m.channel_id,
        "cid": m.channel_id,
        "userId": m.user_id,
        "type": if deleted { "deleted" } else { "regular" },
        "text": if deleted { Value::Null } else { json!(m.text) },
        "seq": m.seq,
        "clientMsgId": m.client_msg_id,
        "user": user_summary(&m.user),
        "attachments": if deleted || m.attachments.is_null() { json!([]) } else { m.attachments.0.clone() },
        "parentId": m.parent_id,
        "replyToId": m.reply_to_id,
        "reactionCount": 0,
        "reactions": [],
        "replyCount": m.reply_count,
        "threadCount": m.reply_count,
        "status": "sent",
        "pinned": false,
        "pinnedAt": Value::Null,
        "pinnedBy": Value::Null,
        "linkPreviews": [],
        "pollId": Value::Null,
        "poll": Value::Null,
        "mentions": m.mentions,
        "createdAt": iso(m.created_at),
        "updatedAt": iso(updated),
        "editedAt": opt_iso(m.edited_at),
        "deletedAt": opt_iso(m.deleted_at),
    })
}

/// The answer to a send: the message, marked `duplicate` when its client message id had
/// already been used (REST and the `message.send` RPC answer alike).
pub fn sent(m: &Message, duplicate: bool) -> Value {
    let mut v = message(m);
    if duplicate {
        v["duplicate"] = json!(true);
    }
    v
}

/// A channel, with the caller's membership fields (null when not a member).
pub fn channel(c: &Channel, me: Option<&Member>, read: Option<(u64, u64)>) -> Value {
    let (last_read_seq, unread) = match (me, read) {
        (Some(_), Some((seq, unread))) => (json!(seq), json!(unread)),
        (Some(_), None) => (json!(0), json!(0)),
        (None, _) => (Value::Null, Value::Null),
    };
    json!({
        "id": c.id,
        "cid": c.cid,
        "type": c.kind.as_str(),
        "name": c.name,
        "image": c.image,
        "memberCount": c.member_count,
        "createdBy": c.created_by,
        "createdAt": iso(c.created_at),
        "updatedAt": iso(c.updated_at),
        "config": if c.config.is_null() { json!({}) } else { c.config.0.clone() },
        "workspaceId": c.workspace_id,
        "idempotencyKey": c.idempotency_key,
        "lastReadSeq": last_read_seq,
        "unreadCount": unread,
        "muted": me.map(|m| m.muted),
        "starred": me.map(|m| m.starred),
        "role": me.map(|m| m.role.as_str()),
    })
}

/// A member with their user record.
pub fn member(m: &Member, u: Option<&User>) -> Value {
    json!({
        "id": m.user_id,
        "userId": m.user_id,
        "name": u.map(|u| u.name.clone()),
        "image": u.and_then(|u| u.image.clone()),
        "email": u.and_then(|u| u.email.clone()),
        "custom": u.map(|u| u.custom.clone()),
        "role": m.role.as_str(),
        "joinedAt": iso(m.joined_at),
    })
}

/// A stored event as clients see it: the ChatSDK envelope, serialized.
pub fn event(e: &Event) -> String {
    match e {
        Event::MessageNew(m) => envelope(
            "message.new",
            json!({"channelId": m.channel_id, "message": message(m)}),
        ),
        // `threadId` is what clients read, `parentId` what the original server sent.
        Event::ThreadReply(m) => envelope(
            "thread.reply",
            json!({"channelId": m.channel_id, "parentId": m.parent_id, "threadId": m.parent_id, "message": message(m)}),
        ),
        Event::MessageUpdated(m) => envelope(
            "message.updated",
            json!({"channelId": m.channel_id, "message": message(m)}),
        ),
        Event::MessageDeleted {
            channel_id,
            message_id,
            hard,
        } => {
            let mut payload = json!({"channelId": channel_id, "messageId": message_id});
            if *hard {
                payload["hard"] = json!(true);
            }
            envelope("message.deleted", payload)
        }
        Event::ReadUpdated {
            channel_id,
            user_id,
            last_read_seq,
        } => envelope(
            "read.updated",
            json!({"channelId": channel_id, "userId": user_id, "lastReadSeq": last_read_seq}),
        ),
        Event::ChannelCreated(c) => envelope(
            "channel.created",
            json!({"channel": channel(c, None, None)}),
        ),
        Event::ChannelUpdated(c) => envelope(
            "channel.updated",
            json!({"channel": channel(c, None, None)}),
        ),
        Event::ChannelDeleted { channel_id } => {
            envelope("channel.deleted", json!({"channelId": channel_id}))
        }
        Event::MemberJoined {
            channel_id,
            user_id,
        } => envelope(
            "channel.member_joined",
            json!({"channelId": channel_id, "userId": user_id}),
        ),
        Event::MemberLeft {
            channel_id,
            user_id,
        } => envelope(
            "channel.member_left",
            json!({"channelId": channel_id, "userId": user_id}),
        ),
    }
}

/// The ChatSDK event envelope `{"type", "payload"}`, serialized.
pub fn envelope(kind: &str, payload: Value) -> String {
    json!({"type": kind, "payload": payload}).to_string()
}
