//! The JSON shapes of the Client API (camelCase), built from stored records.
//!
//! One place renders each record, so REST responses and realtime event payloads agree. The
//! Server API's snake_case dialect is derived from these by the gateway.

use serde_json::{json, Value};

use crate::model::{Channel, Member, Message, User, UserSummary};
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
        "attachments": if deleted || m.attachments.is_null() { json!([]) } else { m.attachments.clone() },
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
        "config": if c.config.is_null() { json!({}) } else { c.config.clone() },
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

/// The ChatSDK event envelope `{"type", "payload"}`, serialized.
pub fn envelope(kind: &str, payload: Value) -> String {
    json!({"type": kind, "payload": payload}).to_string()
}
