//! The JSON shapes of the Client API (camelCase), built from stored records.
//!
//! One place renders each record, so REST responses and realtime event payloads agree. The
//! Server API's snake_case dialect is derived from these by the gateway. Events are rendered
//! here too ([`event`]), once when a channel actor emits them and by the same function when
//! history or recovery reads them back: the stored form is the typed [`Event`].

use serde::ser::SerializeSeq;
use serde::Serialize;
use serde_json::{json, Value};

use crate::codec::Json;

use crate::model::{Channel, ChannelFlags, Event, Member, Message, User, UserSummary};
use crate::time::iso;

fn opt_iso(ms: Option<u64>) -> Value {
    ms.map(|m| Value::String(iso(m))).unwrap_or(Value::Null)
}

/// A time as the API shows it (ISO-8601).
struct Iso(u64);

impl Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&iso(self.0))
    }
}

/// The embedded author of a message, as clients see it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserSummaryView<'a> {
    id: &'a str,
    name: &'a str,
    image: Option<&'a str>,
    custom: &'a Json,
    created_at: Iso,
    updated_at: Iso,
}

impl<'a> From<&'a UserSummary> for UserSummaryView<'a> {
    fn from(u: &'a UserSummary) -> Self {
        UserSummaryView {
            id: &u.id,
            name: &u.name,
            image: u.image.as_deref(),
            custom: &u.custom,
            created_at: Iso(u.created_at),
            updated_at: Iso(u.updated_at),
        }
    }
}

/// The embedded author of a message.
pub fn user_summary(u: &UserSummary) -> Value {
    serde_json::to_value(UserSummaryView::from(u)).unwrap_or(Value::Null)
}

/// An empty JSON list (features this build does not have yet render as empty).
struct Empty;

impl Serialize for Empty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

/// A message's attachments: none for deleted messages or when never set.
enum Attachments<'a> {
    None,
    Some(&'a Json),
}

impl Serialize for Attachments<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Attachments::None => Empty.serialize(s),
            Attachments::Some(j) => j.serialize(s),
        }
    }
}

/// A message as clients see it (formatMessage of the original), borrowed from the record:
/// events are written straight to text from it, without an intermediate JSON tree.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageView<'a> {
    id: &'a str,
    channel_id: &'a str,
    cid: &'a str,
    user_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    text: Option<&'a str>,
    seq: u64,
    client_msg_id: Option<&'a str>,
    user: UserSummaryView<'a>,
    attachments: Attachments<'a>,
    parent_id: Option<&'a str>,
    reply_to_id: Option<&'a str>,
    reaction_count: u64,
    reactions: Empty,
    reply_count: u64,
    thread_count: u64,
    status: &'static str,
    pinned: bool,
    pinned_at: Option<()>,
    pinned_by: Option<()>,
    link_previews: Empty,
    poll_id: Option<()>,
    poll: Option<()>,
    mentions: &'a [String],
    created_at: Iso,
    updated_at: Iso,
    edited_at: Option<Iso>,
    deleted_at: Option<Iso>,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        let deleted = m.deleted_at.is_some();
        MessageView {
            id: &m.id,
            channel_id: &m.channel_id,
            cid: &m.channel_id,
            user_id: &m.user_id,
            kind: if deleted { "deleted" } else { "regular" },
            text: if deleted { None } else { m.text.as_deref() },
            seq: m.seq,
            client_msg_id: m.client_msg_id.as_deref(),
            user: UserSummaryView::from(&m.user),
            attachments: if deleted || m.attachments.is_null() {
                Attachments::None
            } else {
                Attachments::Some(&m.attachments)
            },
            parent_id: m.parent_id.as_deref(),
            reply_to_id: m.reply_to_id.as_deref(),
            reaction_count: 0,
            reactions: Empty,
            reply_count: m.reply_count,
            thread_count: m.reply_count,
            status: "sent",
            pinned: false,
            pinned_at: None,
            pinned_by: None,
            link_previews: Empty,
            poll_id: None,
            poll: None,
            mentions: &m.mentions,
            created_at: Iso(m.created_at),
            updated_at: Iso(m.edited_at.unwrap_or(m.created_at)),
            edited_at: m.edited_at.map(Iso),
            deleted_at: m.deleted_at.map(Iso),
        }
    }
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
    serde_json::to_value(MessageView::from(m)).unwrap_or(Value::Null)
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
pub fn channel(
    c: &Channel,
    me: Option<&Member>,
    read: Option<(u64, u64)>,
    flags: ChannelFlags,
) -> Value {
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
        "muted": me.map(|_| flags.muted),
        "starred": me.map(|_| flags.starred),
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

/// The envelope of an event about one message, written straight to text.
#[derive(Serialize)]
struct MessageEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    payload: MessagePayload<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessagePayload<'a> {
    channel_id: &'a str,
    /// Thread replies name their thread twice: `threadId` is what clients read, `parentId`
    /// what the original server sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
    message: MessageView<'a>,
}

fn message_event(kind: &'static str, m: &Message, thread: bool) -> String {
    let parent = if thread { m.parent_id.as_deref() } else { None };
    let envelope = MessageEnvelope {
        kind,
        payload: MessagePayload {
            channel_id: &m.channel_id,
            parent_id: parent,
            thread_id: parent,
            message: MessageView::from(m),
        },
    };
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// A stored event as clients see it: the ChatSDK envelope, serialized.
pub fn event(e: &Event) -> String {
    match e {
        Event::MessageNew(m) => message_event("message.new", m, false),
        Event::ThreadReply(m) => message_event("thread.reply", m, true),
        Event::MessageUpdated(m) => message_event("message.updated", m, false),
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
            json!({"channel": channel(c, None, None, ChannelFlags::default())}),
        ),
        Event::ChannelUpdated(c) => envelope(
            "channel.updated",
            json!({"channel": channel(c, None, None, ChannelFlags::default())}),
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
