//! The JSON shapes of the API, built from stored records.
//!
//! One place renders each record, so REST responses and realtime event payloads agree. Each
//! view is declared once and derived in both dialects ([`camel`] for the Client API and the
//! realtime events, [`snake`] for the Server API; see [`crate::dialect_views`]). Views borrow
//! the record and are serialized straight to text, without an intermediate JSON tree. Events
//! are rendered here too ([`event`]), once when a channel actor emits them and by the same
//! function when history or recovery reads them back: the stored form is the typed [`Event`].

use serde::ser::SerializeSeq;
use serde::Serialize;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

use crate::codec::Json;

use crate::model::{
    Channel, ChannelFlags, Event, Member, Message, Notes, Poll, Reactor, User, UserSummary,
    Workspace, WorkspaceMember,
};
use crate::time::with_iso;
use crate::UserPresence;

/// A time as the API shows it (ISO-8601).
#[derive(Clone, Copy)]
pub struct Iso(pub u64);

impl Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_iso(self.0, |t| s.serialize_str(t))
    }
}

/// An ISO-8601 date-time string.
impl utoipa::PartialSchema for Iso {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples(["2026-01-31T12:00:00.000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Iso {
    fn name() -> std::borrow::Cow<'static, str> {
        "Time".into()
    }
}

/// An empty JSON list (features this build does not have yet render as empty).
pub struct Empty;

/// An empty list.
impl utoipa::PartialSchema for Empty {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new().max_items(Some(0)).into()
    }
}

impl utoipa::ToSchema for Empty {
    fn name() -> std::borrow::Cow<'static, str> {
        "Empty".into()
    }
}

impl Serialize for Empty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

/// A message's attachments: none for deleted messages or when never set.
enum Attachments<'a> {
    None,
    Some(&'a Json),
    /// With a media token on the URLs of uploads (reads; events carry canonical URLs).
    Signed(&'a Json, &'a crate::media::MediaSigner, u64),
}

/// A message's attachments: the list the sender wrote (objects of their own keys), with media
/// tokens on the URLs of uploads.
impl utoipa::PartialSchema for Attachments<'_> {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::Object))
            .into()
    }
}

impl utoipa::ToSchema for Attachments<'_> {
    fn name() -> std::borrow::Cow<'static, str> {
        "Attachments".into()
    }
}

impl Serialize for Attachments<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Attachments::None => Empty.serialize(s),
            Attachments::Some(j) => j.serialize(s),
            Attachments::Signed(j, signer, now_s) => {
                signed_attachments(&j.0, signer, *now_s).serialize(s)
            }
        }
    }
}

/// Attachments with fresh media tokens on the URLs of our uploads.
fn signed_attachments(
    attachments: &serde_json::Value,
    signer: &crate::media::MediaSigner,
    now_s: u64,
) -> serde_json::Value {
    let mut out = attachments.clone();
    for a in out.as_array_mut().into_iter().flatten() {
        let Some(obj) = a.as_object_mut() else {
            continue;
        };
        if !obj.contains_key("uploadId") {
            continue;
        }
        for field in ["url", "thumbnailUrl"] {
            let Some(key) = obj
                .get(field)
                .and_then(serde_json::Value::as_str)
                .and_then(crate::media::key_in_url)
            else {
                continue;
            };
            if let Some(r) = crate::media::parse_key(&key) {
                let url = signer.url(&r.app, &key, now_s);
                obj.insert(field.into(), serde_json::Value::String(url));
            }
        }
    }
    out
}

/// A user-owned object that reads as `{}` when it was never set.
struct Object<'a>(&'a Json);

/// Any JSON object, `{}` when never set.
impl utoipa::PartialSchema for Object<'_> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}

impl utoipa::ToSchema for Object<'_> {
    fn name() -> std::borrow::Cow<'static, str> {
        "Object".into()
    }
}

impl Serialize for Object<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_null() {
            s.serialize_map(Some(0))
                .and_then(serde::ser::SerializeMap::end)
        } else {
            self.0.serialize(s)
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

crate::dialect_views! {
    scope: render;
    types {
        /// A video a link preview shows.
        pub struct LinkVideoView<'a> {
            url: &'a str,
            #[serde(rename = "type")]
            kind: Option<&'a str>,
            width: Option<u32>,
            height: Option<u32>,
            embed_url: Option<&'a str>,
        }

        /// A link preview.
        pub struct LinkPreviewView<'a> {
            url: &'a str,
            title: Option<&'a str>,
            description: Option<&'a str>,
            image: Option<&'a str>,
            site_name: Option<&'a str>,
            video: Option<LinkVideoView<'a>>,
        }

        /// The embedded author of a message.
        pub struct UserSummaryView<'a> {
            id: &'a str,
            name: &'a str,
            image: Option<&'a str>,
            custom: &'a Json,
            created_at: Iso,
            updated_at: Iso,
        }

        /// A message as clients see it (formatMessage of the original).
        pub struct MessageView<'a> {
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
            reactions: Vec<ReactionView<'a>>,
            reply_count: u64,
            thread_count: u64,
            status: &'static str,
            pinned: bool,
            pinned_at: Option<Iso>,
            pinned_by: Option<&'a str>,
            link_previews: Vec<LinkPreviewView<'a>>,
            poll_id: Option<&'a str>,
            poll: Option<PollView<'a>>,
            mentions: &'a [String],
            created_at: Iso,
            updated_at: Iso,
            edited_at: Option<Iso>,
            deleted_at: Option<Iso>,
            /// Only in the answer to a send (see [`SentView`]).
            #[serde(skip_serializing_if = "is_false")]
            duplicate: bool,
        }

        /// One emoji's reactions to a message, as one reader sees them.
        pub struct ReactionView<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            count: u64,
            own: bool,
            users: Vec<ReactorView<'a>>,
        }

        /// A reactor or voter.
        pub struct ReactorView<'a> {
            id: &'a str,
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            image: Option<&'a str>,
        }

        /// One option of a poll with its votes.
        pub struct PollOptionView<'a> {
            id: &'a str,
            text: &'a str,
            vote_count: u64,
        }

        /// A poll as a message embeds it and its events carry it (`user_votes`: the reader's).
        pub struct PollView<'a> {
            id: &'a str,
            message_id: &'a str,
            question: &'a str,
            options: Vec<PollOptionView<'a>>,
            is_anonymous: bool,
            is_multi_choice: bool,
            total_votes: u64,
            user_votes: &'a [String],
            ends_at: Option<Iso>,
            created_at: Iso,
        }

        /// A user as the user and server keys see them (`GET /api/users/me`, the Server API).
        pub struct ProfileView<'a> {
            id: &'a str,
            name: &'a str,
            image: Option<&'a str>,
            email: Option<&'a str>,
            custom: &'a Json,
            role: Option<&'a str>,
            last_active_at: Option<Iso>,
            created_at: Iso,
            updated_at: Iso,
        }

        /// A user as other users of the app see them: no email, with presence.
        pub struct PublicUserView<'a> {
            id: &'a str,
            name: &'a str,
            image: Option<&'a str>,
            custom: &'a Json,
            role: Option<&'a str>,
            last_active_at: Option<Iso>,
            created_at: Iso,
            updated_at: Iso,
            online: bool,
        }

        /// A channel, with the caller's membership fields (null when not a member).
        pub struct ChannelView<'a> {
            id: &'a str,
            cid: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            name: Option<&'a str>,
            image: Option<&'a str>,
            member_count: u64,
            message_count: u64,
            last_message_at: Option<Iso>,
            created_by: Option<&'a str>,
            created_at: Iso,
            updated_at: Iso,
            config: Object<'a>,
            workspace_id: Option<&'a str>,
            idempotency_key: Option<&'a str>,
            last_read_seq: Option<u64>,
            unread_count: Option<u64>,
            muted: Option<bool>,
            starred: Option<bool>,
            role: Option<&'static str>,
        }

        /// A workspace, with the caller's membership when known.
        pub struct WorkspaceView<'a> {
            id: &'a str,
            name: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            image: Option<&'a str>,
            member_count: u64,
            channel_count: u64,
            expires_at: Option<Iso>,
            created_at: Iso,
            updated_at: Iso,
            created_by: Option<&'a str>,
            config: Object<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            is_default: Option<bool>,
        }

        /// A member with their user record.
        pub struct MemberView<'a> {
            id: &'a str,
            user_id: &'a str,
            name: Option<&'a str>,
            image: Option<&'a str>,
            email: Option<&'a str>,
            custom: Option<&'a Json>,
            role: &'static str,
            joined_at: Iso,
        }
    }
    impls {
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
                    reactions: Vec::new(),
                    reply_count: m.reply_count,
                    thread_count: m.reply_count,
                    status: "sent",
                    pinned: false,
                    pinned_at: None,
                    pinned_by: None,
                    link_previews: Vec::new(),
                    poll_id: None,
                    poll: None,
                    mentions: &m.mentions,
                    created_at: Iso(m.created_at),
                    updated_at: Iso(m.edited_at.unwrap_or(m.created_at)),
                    edited_at: m.edited_at.map(Iso),
                    deleted_at: m.deleted_at.map(Iso),
                    duplicate: false,
                }
            }
        }

        /// The answer to a send: the message, marked `duplicate` when its client message id
        /// had already been used (REST and the `message.send` RPC answer alike). The same
        /// struct as [`MessageView`], not a wrapper with a flattened field (serde writes a
        /// flattened struct field by field through its map path).
        pub type SentView<'a> = MessageView<'a>;

        impl<'a> From<&'a crate::previews::LinkPreview> for LinkPreviewView<'a> {
            fn from(p: &'a crate::previews::LinkPreview) -> Self {
                LinkPreviewView {
                    url: &p.url,
                    title: p.title.as_deref(),
                    description: p.description.as_deref(),
                    image: p.image.as_deref(),
                    site_name: p.site_name.as_deref(),
                    video: p.video.as_ref().map(|v| LinkVideoView {
                        url: &v.url,
                        kind: v.kind.as_deref(),
                        width: v.width,
                        height: v.height,
                        embed_url: v.embed_url.as_deref(),
                    }),
                }
            }
        }

        impl<'a> MessageView<'a> {
            /// The message with media tokens on its uploads' URLs, valid from `now_s`.
            pub fn with_media(self, signer: &'a crate::media::MediaSigner, now_s: u64) -> Self {
                let attachments = match self.attachments {
                    Attachments::Some(j) => Attachments::Signed(j, signer, now_s),
                    other => other,
                };
                MessageView { attachments, ..self }
            }

            pub fn new(m: &'a Message, duplicate: bool) -> Self {
                MessageView {
                    duplicate,
                    ..MessageView::from(m)
                }
            }

            /// A message with its reactions, pin and poll as one reader sees them.
            pub fn annotated(m: &'a Message, notes: Option<&'a Notes>) -> Self {
                let view = MessageView::from(m);
                let Some(n) = notes else {
                    return view;
                };
                let a = &n.annotations;
                MessageView {
                    reaction_count: a.reaction_count(),
                    reactions: a
                        .reactions
                        .iter()
                        .map(|r| ReactionView {
                            kind: &r.emoji,
                            count: r.count,
                            own: n.own_reactions.contains(&r.emoji),
                            users: r.users.iter().map(ReactorView::from).collect(),
                        })
                        .collect(),
                    link_previews: n.link_previews.iter().map(LinkPreviewView::from).collect(),
                    pinned: a.pin.is_some(),
                    pinned_at: a.pin.as_ref().map(|p| Iso(p.at)),
                    pinned_by: a.pin.as_ref().map(|p| p.by.as_str()),
                    poll_id: a.poll.as_ref().map(|p| p.id.as_str()),
                    poll: a.poll.as_deref().map(|p| PollView::new(p, &n.own_votes)),
                    ..view
                }
            }
        }

        /// Each message of a page with its notes (matched by seq).
        pub fn annotated_page<'a>(messages: &'a [Message], notes: &'a [Notes]) -> Vec<MessageView<'a>> {
            messages
                .iter()
                .map(|m| MessageView::annotated(m, notes.iter().find(|n| n.seq == m.seq)))
                .collect()
        }

        impl<'a> From<&'a Reactor> for ReactorView<'a> {
            fn from(r: &'a Reactor) -> Self {
                ReactorView {
                    id: &r.id,
                    name: &r.name,
                    image: r.image.as_deref(),
                }
            }
        }

        impl<'a> PollView<'a> {
            pub fn new(p: &'a Poll, user_votes: &'a [String]) -> Self {
                PollView {
                    id: &p.id,
                    message_id: &p.message_id,
                    question: &p.question,
                    options: p
                        .options
                        .iter()
                        .map(|o| PollOptionView {
                            id: &o.id,
                            text: &o.text,
                            vote_count: o.votes,
                        })
                        .collect(),
                    is_anonymous: p.anonymous,
                    is_multi_choice: p.multi,
                    total_votes: p.total_votes,
                    user_votes,
                    ends_at: p.ends_at.map(Iso),
                    created_at: Iso(p.created_at),
                }
            }
        }

        impl<'a> From<&'a User> for ProfileView<'a> {
            fn from(u: &'a User) -> Self {
                ProfileView {
                    id: &u.id,
                    name: &u.name,
                    image: u.image.as_deref(),
                    email: u.email.as_deref(),
                    custom: &u.custom,
                    role: u.role.as_deref(),
                    last_active_at: u.last_active_at.map(Iso),
                    created_at: Iso(u.created_at),
                    updated_at: Iso(u.updated_at),
                }
            }
        }

        impl<'a> ProfileView<'a> {
            /// A profile with the user's presence (their last-seen time).
            pub fn seen(u: &'a User, presence: UserPresence) -> Self {
                ProfileView {
                    last_active_at: presence.last_seen.map(Iso),
                    ..ProfileView::from(u)
                }
            }
        }

        impl<'a> PublicUserView<'a> {
            /// `u` as another user sees them, with the presence they may see (see
            /// `Chat::visible_presence`).
            pub fn new(u: &'a User, presence: UserPresence) -> Self {
                PublicUserView {
                    id: &u.id,
                    name: &u.name,
                    image: u.image.as_deref(),
                    custom: &u.custom,
                    role: u.role.as_deref(),
                    last_active_at: presence.last_seen.map(Iso),
                    created_at: Iso(u.created_at),
                    updated_at: Iso(u.updated_at),
                    online: presence.online,
                }
            }
        }

        impl<'a> ChannelView<'a> {
            /// `read` is the caller's `(last_read_seq, unread)` when known.
            pub fn new(
                c: &'a Channel,
                me: Option<&Member>,
                read: Option<(u64, u64)>,
                flags: ChannelFlags,
            ) -> Self {
                let (last_read_seq, unread_count) = match (me, read) {
                    (Some(_), Some((seq, unread))) => (Some(seq), Some(unread)),
                    (Some(_), None) => (Some(0), Some(0)),
                    (None, _) => (None, None),
                };
                ChannelView {
                    id: &c.id,
                    cid: &c.cid,
                    kind: c.kind.as_str(),
                    name: c.name.as_deref(),
                    image: c.image.as_deref(),
                    member_count: c.member_count,
                    message_count: 0,
                    last_message_at: None,
                    created_by: c.created_by.as_deref(),
                    created_at: Iso(c.created_at),
                    updated_at: Iso(c.updated_at),
                    config: Object(&c.config),
                    workspace_id: c.workspace_id.as_deref(),
                    idempotency_key: c.idempotency_key.as_deref(),
                    last_read_seq,
                    unread_count,
                    muted: me.map(|_| flags.muted),
                    starred: me.map(|_| flags.starred),
                    role: me.map(|m| m.role.as_str()),
                }
            }

            /// The channel with its activity.
            pub fn with_activity(self, a: crate::model::Activity) -> Self {
                ChannelView {
                    message_count: a.message_count,
                    last_message_at: a.last_message_at.map(Iso),
                    ..self
                }
            }

            /// A channel as someone who is not a member sees it (and as events show it).
            pub fn plain(c: &'a Channel) -> Self {
                Self::new(c, None, None, ChannelFlags::default())
            }
        }

        impl<'a> WorkspaceView<'a> {
            pub fn new(w: &'a Workspace, me: Option<&WorkspaceMember>) -> Self {
                WorkspaceView {
                    id: &w.id,
                    name: &w.name,
                    kind: w.kind.as_str(),
                    image: w.image.as_deref(),
                    member_count: w.member_count,
                    channel_count: w.channel_count,
                    expires_at: w.expires_at.map(Iso),
                    created_at: Iso(w.created_at),
                    updated_at: Iso(w.updated_at),
                    created_by: w.created_by.as_deref(),
                    config: Object(&w.config),
                    role: me.map(|m| m.role.as_str()),
                    is_default: me.map(|m| m.is_default),
                }
            }
        }

        impl<'a> MemberView<'a> {
            pub fn new(m: &'a Member, u: Option<&'a User>) -> Self {
                MemberView {
                    id: &m.user_id,
                    user_id: &m.user_id,
                    name: u.map(|u| u.name.as_str()),
                    image: u.and_then(|u| u.image.as_deref()),
                    email: u.and_then(|u| u.email.as_deref()),
                    custom: u.map(|u| &u.custom),
                    role: m.role.as_str(),
                    joined_at: Iso(m.joined_at),
                }
            }
        }
    }
}

/// The ChatSDK event envelope `{"type", "payload"}`. Events are realtime-only, so their
/// payloads are in the Client API's camelCase.
#[derive(Serialize)]
struct Envelope<P> {
    #[serde(rename = "type")]
    kind: &'static str,
    payload: P,
}

/// The payload of a message event, as [`message_event_around`] writes it (kept as the oracle of
/// its test).
#[cfg(test)]
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
    message: camel::MessageView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedPayload<'a> {
    channel_id: &'a str,
    message_id: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    hard: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadPayload<'a> {
    channel_id: &'a str,
    user_id: &'a str,
    last_read_seq: u64,
}

#[derive(Serialize)]
struct ChannelPayload<'a> {
    channel: camel::ChannelView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelIdPayload<'a> {
    channel_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberPayload<'a> {
    channel_id: &'a str,
    user_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MentionPayload<'a> {
    id: &'a str,
    channel_id: &'a str,
    message_id: &'a str,
    message: MentionedMessage<'a>,
    mentioner: camel::ReactorView<'a>,
    mentioned_at: Iso,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MentionedMessage<'a> {
    id: &'a str,
    channel_id: &'a str,
    seq: u64,
    text: Option<&'a str>,
    created_at: Iso,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptPayload<'a> {
    channel_id: &'a str,
    user_id: &'a str,
    user_name: &'a str,
    message_id: &'a str,
    read_at: Iso,
    last_read_seq: u64,
}

#[derive(Serialize)]
struct WorkspacePayload<'a> {
    workspace: camel::WorkspaceView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceIdPayload<'a> {
    workspace_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceMemberPayload<'a> {
    workspace_id: &'a str,
    user_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReactionPayload<'a> {
    channel_id: &'a str,
    message_id: &'a str,
    reaction: ReactionEventView<'a>,
    /// The emoji's reactions after this one.
    count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReactionEventView<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    user_id: &'a str,
    user: camel::ReactorView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PreviewsPayload<'a> {
    id: &'a str,
    channel_id: &'a str,
    message_id: &'a str,
    link_previews: Vec<camel::LinkPreviewView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PinPayload<'a> {
    id: &'a str,
    channel_id: &'a str,
    message_id: &'a str,
    pinned: bool,
    pinned_at: Option<Iso>,
    pinned_by: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PollCreatedPayload<'a> {
    channel_id: &'a str,
    message_id: &'a str,
    poll: camel::PollView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VotePayload<'a> {
    channel_id: &'a str,
    poll_id: &'a str,
    /// Null for an anonymous poll.
    user_id: Option<&'a str>,
    /// The options voted for (left out for an anonymous poll and for a removed vote).
    #[serde(skip_serializing_if = "Option::is_none")]
    option_ids: Option<&'a [String]>,
    total_votes: u64,
    /// Every option's votes after this one, so clients show live results without a read.
    options: Vec<OptionCount<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OptionCount<'a> {
    id: &'a str,
    vote_count: u64,
}

/// A payload's envelope, serialized (a typed value cannot fail to serialize; an empty string
/// would only hide a bug, so it is logged).
pub fn envelope<P: Serialize>(kind: &'static str, payload: P) -> String {
    serde_json::to_string(&Envelope { kind, payload }).unwrap_or_else(|e| {
        tracing::error!(kind, error = %e, "event payload did not serialize");
        String::new()
    })
}

/// A message in the Client API's shape, serialized once: the event that carries it embeds these
/// bytes, and the answer to the send that wrote it reuses them (see [`event_and_message`]).
fn message_json(m: &Message) -> String {
    serde_json::to_string(&camel::MessageView::from(m)).unwrap_or_else(|e| {
        tracing::error!(message = %m.id, error = %e, "message did not serialize");
        String::from("null")
    })
}

/// A message event (`message.new`, `thread.reply`, `message.updated`) around the message's JSON:
/// the same bytes as [`envelope`] of a [`MessagePayload`], written without serializing the
/// message again.
fn message_event_around(kind: &'static str, m: &Message, thread: bool, message: &str) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let channel = json(&m.channel_id);
    let parent = match (thread, m.parent_id.as_deref()) {
        (true, Some(p)) => Some(json(p)),
        _ => None,
    };
    let mut out = String::with_capacity(message.len() + channel.len() + kind.len() + 96);
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push_str("\",\"payload\":{\"channelId\":");
    out.push_str(&channel);
    if let Some(p) = &parent {
        out.push_str(",\"parentId\":");
        out.push_str(p);
        out.push_str(",\"threadId\":");
        out.push_str(p);
    }
    out.push_str(",\"message\":");
    out.push_str(message);
    out.push_str("}}");
    out
}

/// A stored event as clients see it and, for an event that carries a message, that message's
/// JSON (which the event embeds), to answer the send with the same bytes.
pub fn event_and_message(e: &Event) -> (String, Option<String>) {
    let (kind, m, thread) = match e {
        Event::MessageNew(m) => ("message.new", m, false),
        Event::ThreadReply(m) => ("thread.reply", m, true),
        Event::MessageUpdated(m) => ("message.updated", m, false),
        other => return (event(other), None),
    };
    let message = message_json(m);
    (
        message_event_around(kind, m, thread, &message),
        Some(message),
    )
}

/// A stored event as clients see it: the ChatSDK envelope, serialized.
pub fn event(e: &Event) -> String {
    match e {
        Event::MessageNew(_) | Event::ThreadReply(_) | Event::MessageUpdated(_) => {
            event_and_message(e).0
        }
        Event::MessageDeleted {
            channel_id,
            message_id,
            hard,
        } => envelope(
            "message.deleted",
            DeletedPayload {
                channel_id,
                message_id,
                hard: *hard,
            },
        ),
        Event::ReadUpdated {
            channel_id,
            user_id,
            last_read_seq,
        } => envelope(
            "read.updated",
            ReadPayload {
                channel_id,
                user_id,
                last_read_seq: *last_read_seq,
            },
        ),
        Event::ChannelCreated(c) => envelope(
            "channel.created",
            ChannelPayload {
                channel: camel::ChannelView::plain(c),
            },
        ),
        Event::ChannelUpdated(c) => envelope(
            "channel.updated",
            ChannelPayload {
                channel: camel::ChannelView::plain(c),
            },
        ),
        Event::ChannelDeleted { channel_id } => {
            envelope("channel.deleted", ChannelIdPayload { channel_id })
        }
        Event::MemberJoined {
            channel_id,
            user_id,
        } => envelope(
            "channel.member_joined",
            MemberPayload {
                channel_id,
                user_id,
            },
        ),
        Event::MemberLeft {
            channel_id,
            user_id,
        } => envelope(
            "channel.member_left",
            MemberPayload {
                channel_id,
                user_id,
            },
        ),
        Event::Mention(m) => envelope(
            "mention",
            MentionPayload {
                id: &m.message_id,
                channel_id: &m.channel_id,
                message_id: &m.message_id,
                message: MentionedMessage {
                    id: &m.message_id,
                    channel_id: &m.channel_id,
                    seq: m.seq,
                    text: m.text.as_deref(),
                    created_at: Iso(m.at),
                },
                mentioner: camel::ReactorView::from(&m.mentioner),
                mentioned_at: Iso(m.at),
            },
        ),
        Event::ReadReceipt {
            channel_id,
            user_id,
            user_name,
            message_id,
            read_at,
            last_read_seq,
        } => envelope(
            "read_receipt",
            ReceiptPayload {
                channel_id,
                user_id,
                user_name,
                message_id,
                read_at: Iso(*read_at),
                last_read_seq: *last_read_seq,
            },
        ),
        Event::WorkspaceCreated(w) => envelope(
            "workspace.created",
            WorkspacePayload {
                workspace: camel::WorkspaceView::new(w, None),
            },
        ),
        Event::WorkspaceUpdated(w) => envelope(
            "workspace.updated",
            WorkspacePayload {
                workspace: camel::WorkspaceView::new(w, None),
            },
        ),
        Event::WorkspaceDeleted { workspace_id } => {
            envelope("workspace.deleted", WorkspaceIdPayload { workspace_id })
        }
        Event::WorkspaceMember {
            workspace_id,
            user_id,
            joined,
        } => envelope(
            if *joined {
                "workspace.member_joined"
            } else {
                "workspace.member_left"
            },
            WorkspaceMemberPayload {
                workspace_id,
                user_id,
            },
        ),
        Event::Reaction {
            channel_id,
            message_id,
            emoji,
            user,
            added,
            count,
        } => envelope(
            if *added {
                "reaction.added"
            } else {
                "reaction.removed"
            },
            ReactionPayload {
                channel_id,
                message_id,
                reaction: ReactionEventView {
                    kind: emoji,
                    user_id: &user.id,
                    user: camel::ReactorView::from(user),
                },
                count: *count,
            },
        ),
        Event::Pinned {
            channel_id,
            message_id,
            pin,
        } => envelope(
            "message.updated",
            PinPayload {
                id: message_id,
                channel_id,
                message_id,
                pinned: pin.is_some(),
                pinned_at: pin.as_ref().map(|p| Iso(p.at)),
                pinned_by: pin.as_ref().map(|p| p.by.as_str()),
            },
        ),
        Event::LinkPreviews {
            channel_id,
            message_id,
            previews,
        } => envelope(
            "message.updated",
            PreviewsPayload {
                id: message_id,
                channel_id,
                message_id,
                link_previews: previews.iter().map(camel::LinkPreviewView::from).collect(),
            },
        ),
        Event::PollCreated { channel_id, poll } => envelope(
            "poll.created",
            PollCreatedPayload {
                channel_id,
                message_id: &poll.message_id,
                poll: camel::PollView::new(poll, &[]),
            },
        ),
        Event::PollVote {
            channel_id,
            poll_id,
            user,
            options,
            anonymous,
            total_votes,
            counts,
        } => envelope(
            if options.is_some() {
                "poll.voted"
            } else {
                "poll.vote_removed"
            },
            VotePayload {
                channel_id,
                poll_id,
                user_id: (!anonymous).then_some(user.as_str()),
                option_ids: options.as_deref().filter(|_| !anonymous),
                total_votes: *total_votes,
                options: counts
                    .iter()
                    .map(|(id, n)| OptionCount { id, vote_count: *n })
                    .collect(),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserSummary;

    fn message(parent: Option<&str>) -> Message {
        Message {
            id: "m\"1".into(),
            channel_id: "c\\1 é".into(),
            user_id: "u1".into(),
            seq: 7,
            text: Some("hi \"there\"\n<b>".into()),
            attachments: Json::array(),
            parent_id: parent.map(str::to_string),
            reply_to_id: None,
            client_msg_id: Some("k1".into()),
            created_at: 1_700_000_000_000,
            edited_at: Some(1_700_000_000_500),
            deleted_at: None,
            reply_count: 2,
            mentions: vec!["u2".into()],
            user: UserSummary {
                id: "u1".into(),
                name: "Ann".into(),
                ..UserSummary::default()
            },
        }
    }

    /// The hand-written envelope around the shared message JSON is byte for byte what serde
    /// writes for the typed payload, for every message event, and the message JSON is the send's
    /// answer.
    #[test]
    fn message_events_embed_the_message_as_serde_would_write_them() {
        for (event, kind, thread) in [
            (
                Event::MessageNew(Box::new(message(None))),
                "message.new",
                false,
            ),
            (
                Event::ThreadReply(Box::new(message(Some("p\"1")))),
                "thread.reply",
                true,
            ),
            (
                Event::MessageUpdated(Box::new(message(Some("p1")))),
                "message.updated",
                false,
            ),
        ] {
            let m = event.message().unwrap();
            let parent = if thread { m.parent_id.as_deref() } else { None };
            let expected = envelope(
                kind,
                MessagePayload {
                    channel_id: &m.channel_id,
                    parent_id: parent,
                    thread_id: parent,
                    message: camel::MessageView::from(m),
                },
            );
            let (rendered, json) = event_and_message(&event);
            assert_eq!(rendered, expected);
            assert_eq!(rendered, super::event(&event));
            let json = json.unwrap();
            assert_eq!(
                json,
                serde_json::to_string(&camel::SentView::new(m, false)).unwrap()
            );
            let value: serde_json::Value = serde_json::from_str(&rendered).unwrap();
            assert_eq!(value["payload"]["message"]["text"], "hi \"there\"\n<b>");
        }
        let deleted = Event::MessageDeleted {
            channel_id: "c1".into(),
            message_id: "m1".into(),
            hard: false,
        };
        assert_eq!(event_and_message(&deleted), (super::event(&deleted), None));
    }
}
