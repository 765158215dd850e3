//! The records ChatSDK keeps, as stored in the replicated state machines.
//!
//! Records are encoded by [`crate::codec`] (a format byte and bincode 2) inside the storage
//! layer's checksummed framing; free-form JSON (`custom`, `settings`, `config`, attachments) is
//! a [`Json`] field. Times are milliseconds since the epoch; the API renders them as ISO-8601
//! (see [`crate::render`]). Events are stored typed ([`Event`]) and rendered to client JSON
//! when they are emitted, so the API's JSON can change without a new log format.

use serde::{Deserialize, Serialize};

use crate::codec::Json;

/// A tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub settings: Json,
    pub created_at: u64,
    pub updated_at: u64,
}

/// An app's server key; only its SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub app_id: String,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    pub created_at: u64,
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

/// What a server key may do. `admin` includes the others and manages the app's keys; `read`
/// is every GET, `write` every other request, `tokens` minting user tokens.
pub const KEY_SCOPES: [&str; 4] = ["admin", "read", "write", "tokens"];

/// The scopes of a key made by the super-admin, dev mode or at first start: all of them.
pub fn full_key_scopes() -> Vec<String> {
    KEY_SCOPES.iter().map(|s| s.to_string()).collect()
}

/// The scopes of a key created without naming any: everything but key management.
pub fn default_key_scopes() -> Vec<String> {
    vec!["read".into(), "write".into(), "tokens".into()]
}

impl ApiKey {
    /// Whether the key may act with `scope`. Keys stored before scopes were enforced carry
    /// none and keep the full authority they were made with.
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == scope || s == "admin")
    }
}

/// A user of an app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// User-writable custom data (never holds privileges).
    #[serde(default)]
    pub custom: Json,
    /// Server-controlled role: `"admin"` makes an app admin.
    #[serde(default)]
    pub role: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub last_active_at: Option<u64>,
    /// The user's token generation: every revocation (and the deletion) raises it by one, in
    /// the directory's order, and a token is refused unless it was minted at this generation
    /// or later (its `gen` claim). A counter rather than an instant, so that no comparison of
    /// two nodes' clocks decides whether a token survives a revocation. (Directories written
    /// before held an instant in ms here: raising it still refuses every older token.)
    #[serde(default)]
    pub tokens_valid_after: u64,
    #[serde(default)]
    pub deleted: bool,
}

impl User {
    /// Whether the user is an app admin.
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }
}

/// Channel types of the ChatSDK contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Messaging,
    Group,
    Team,
    Livestream,
    Public,
    Private,
}

impl ChannelType {
    /// Parses the API's type name.
    pub fn parse(s: &str) -> Option<ChannelType> {
        Some(match s {
            "messaging" => ChannelType::Messaging,
            "group" => ChannelType::Group,
            "team" => ChannelType::Team,
            "livestream" => ChannelType::Livestream,
            "public" => ChannelType::Public,
            "private" => ChannelType::Private,
            _ => return None,
        })
    }

    /// The API's type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Messaging => "messaging",
            ChannelType::Group => "group",
            ChannelType::Team => "team",
            ChannelType::Livestream => "livestream",
            ChannelType::Public => "public",
            ChannelType::Private => "private",
        }
    }

    /// Public and team channels are readable by everyone in the app (workspace-gated).
    pub fn is_open(self) -> bool {
        matches!(self, ChannelType::Public | ChannelType::Team)
    }
}

/// A channel's directory record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub app_id: String,
    pub cid: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub config: Json,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub member_count: u64,
    /// A direct message: membership is fixed.
    #[serde(default)]
    pub dm: bool,
}

/// Channel roles, ordered by authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Moderator,
    Admin,
    Owner,
}

impl Role {
    /// Parses the API's role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "member" => Role::Member,
            "moderator" => Role::Moderator,
            "admin" => Role::Admin,
            "owner" => Role::Owner,
            _ => return None,
        })
    }

    /// The API's role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Owner, admin and moderator manage members and others' messages.
    pub fn can_moderate(self) -> bool {
        self >= Role::Moderator
    }
}

/// A user's membership of a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    pub role: Role,
    pub joined_at: u64,
}

/// A member's own flags on a channel (written at user rate, so kept with the user's stream in
/// the data shard of `(app, user)`, not with the membership in group 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFlags {
    pub muted: bool,
    pub starred: bool,
}

/// The part of a user that messages and events embed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub custom: Json,
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub updated_at: u64,
}

impl From<&User> for UserSummary {
    fn from(u: &User) -> Self {
        UserSummary {
            id: u.id.clone(),
            name: u.name.clone(),
            image: u.image.clone(),
            custom: u.custom.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub channel_id: String,
    pub user_id: String,
    pub seq: u64,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Json,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub reply_to_id: Option<String>,
    #[serde(default)]
    pub client_msg_id: Option<String>,
    pub created_at: u64,
    #[serde(default)]
    pub edited_at: Option<u64>,
    #[serde(default)]
    pub deleted_at: Option<u64>,
    #[serde(default)]
    pub reply_count: u64,
    #[serde(default)]
    pub mentions: Vec<String>,
    /// The author as they were when the message was sent.
    pub user: UserSummary,
}

/// Workspace types of the ChatSDK contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceType {
    Team,
    Project,
    Conference,
    Chapter,
}

impl WorkspaceType {
    /// Parses the API's type name.
    pub fn parse(s: &str) -> Option<WorkspaceType> {
        Some(match s {
            "team" => WorkspaceType::Team,
            "project" => WorkspaceType::Project,
            "conference" => WorkspaceType::Conference,
            "chapter" => WorkspaceType::Chapter,
            _ => return None,
        })
    }

    /// The API's type name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceType::Team => "team",
            WorkspaceType::Project => "project",
            WorkspaceType::Conference => "conference",
            WorkspaceType::Chapter => "chapter",
        }
    }
}

/// How busy a channel is: its messages (thread replies included) and when the last was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub message_count: u64,
    pub last_message_at: Option<u64>,
}

/// A user's presence as stored in their stream: when they were last seen (a session ended, a
/// heartbeat), their last heartbeat, and whether they asked to appear offline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    pub last_seen: Option<u64>,
    pub heartbeat: Option<u64>,
    pub hidden: bool,
}

/// A mention of a user, kept in the user's stream (their inbox).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    pub message_id: String,
    pub channel_id: String,
    pub seq: u64,
    /// The message's text when it was sent.
    pub text: Option<String>,
    pub mentioner: Reactor,
    /// When the message was sent.
    pub at: u64,
    /// Marked read explicitly (reading the channel past the message reads it too).
    pub read: bool,
}

/// A workspace: a group of users and the channels they share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub kind: WorkspaceType,
    pub image: Option<String>,
    pub config: Json,
    pub expires_at: Option<u64>,
    pub created_by: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub member_count: u64,
    pub channel_count: u64,
}

/// Workspace roles, ordered by authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkspaceRole {
    Member,
    Admin,
    Owner,
}

impl WorkspaceRole {
    /// Parses the API's role name.
    pub fn parse(s: &str) -> Option<WorkspaceRole> {
        Some(match s {
            "member" => WorkspaceRole::Member,
            "admin" => WorkspaceRole::Admin,
            "owner" => WorkspaceRole::Owner,
            _ => return None,
        })
    }

    /// The API's role name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceRole::Member => "member",
            WorkspaceRole::Admin => "admin",
            WorkspaceRole::Owner => "owner",
        }
    }
}

/// A user's membership of a workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceMember {
    pub user_id: String,
    pub role: WorkspaceRole,
    /// The workspace the user created (their default).
    pub is_default: bool,
    pub joined_at: u64,
}

/// A workspace's custom emoji. Its image is kept in the workspace's stream, content-addressed
/// (`image_hash`, SHA-256 hex) in chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Emoji {
    pub id: String,
    pub app_id: String,
    pub workspace_id: String,
    pub name: String,
    pub category: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub image_hash: String,
    pub created_by: Option<String>,
    pub created_at: u64,
}

/// A channel a workspace template creates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateChannel {
    pub name: String,
    /// `team`, `group` or `messaging` (made as a group: a workspace channel is never a DM).
    pub kind: String,
    pub read_only: bool,
}

/// A workspace template: the channels (and settings) a new workspace starts with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    /// `None` for the built-in templates every app sees.
    pub app_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub icon: Option<String>,
    pub config: Json,
    pub channels: Vec<TemplateChannel>,
    pub roles: Json,
    pub settings: Json,
    pub is_public: bool,
    pub usage_count: u64,
    pub created_by: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// An invitation to a workspace. Only the SHA-256 of its token is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    pub token_hash: String,
    pub workspace_id: String,
    pub email: String,
    pub role: WorkspaceRole,
    pub message: Option<String>,
    pub invited_by: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub accepted_by: Option<String>,
    pub accepted_at: Option<u64>,
}

/// Someone who reacted or voted, as events and reaction summaries show them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reactor {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
}

/// One emoji's reactions to a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: u64,
    /// The first reactors still reacting, at most [`REACTORS_SHOWN`].
    pub users: Vec<Reactor>,
}

/// Reactors a message's reaction summary names per emoji (the rest are counted).
pub const REACTORS_SHOWN: usize = 5;

/// A pinned message's pin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub by: String,
    pub at: u64,
}

/// One choice of a poll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollOption {
    pub id: String,
    pub text: String,
    pub votes: u64,
}

/// A poll attached to a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    pub id: String,
    pub message_id: String,
    pub question: String,
    pub options: Vec<PollOption>,
    pub anonymous: bool,
    pub multi: bool,
    /// Distinct voters.
    pub total_votes: u64,
    pub ends_at: Option<u64>,
    pub created_by: String,
    pub created_at: u64,
}

impl Poll {
    /// Whether votes are refused at `now` (the end date has passed).
    pub fn closed(&self, now: u64) -> bool {
        self.ends_at.is_some_and(|end| now >= end)
    }
}

/// What members added to a message after it was sent: its reactions, its pin and its poll.
/// Kept beside the message (its own key in the channel's stream), so a reaction rewrites a few
/// bytes instead of the message's chunk, and a send writes nothing more than before.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotations {
    /// In order of each emoji's first reaction.
    pub reactions: Vec<ReactionCount>,
    pub pin: Option<Pin>,
    pub poll: Option<Box<Poll>>,
}

impl Annotations {
    pub fn is_empty(&self) -> bool {
        self.reactions.is_empty() && self.pin.is_none() && self.poll.is_none()
    }

    /// Reactions of every emoji together.
    pub fn reaction_count(&self) -> u64 {
        self.reactions.iter().map(|r| r.count).sum()
    }
}

/// A message's annotations as one reader sees them: with the reader's own reactions and votes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Notes {
    pub seq: u64,
    pub annotations: Annotations,
    /// The emoji the reader reacted with.
    pub own_reactions: Vec<String>,
    /// The poll options the reader voted for.
    pub own_votes: Vec<String>,
    /// The message's link previews.
    pub link_previews: Vec<crate::previews::LinkPreview>,
}

/// A poll's outcome: the poll and who voted for what (`(user, options)`, oldest vote first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollResults {
    pub poll: Poll,
    pub channel_id: String,
    pub votes: Vec<(String, Vec<String>)>,
}

/// A durable event of a realtime stream, as stored: typed, rendered to client JSON only when it
/// is emitted or read back ([`crate::render::event`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// `message.new`.
    MessageNew(Box<Message>),
    /// `thread.reply`: a reply (its `parent_id` is the thread), after its `message.new`.
    ThreadReply(Box<Message>),
    /// `message.updated`.
    MessageUpdated(Box<Message>),
    /// `message.deleted`; `hard` when the message was purged.
    MessageDeleted {
        channel_id: String,
        message_id: String,
        hard: bool,
    },
    /// `read.updated`.
    ReadUpdated {
        channel_id: String,
        user_id: String,
        last_read_seq: u64,
    },
    /// `channel.created`, on the members' user streams.
    ChannelCreated(Box<Channel>),
    /// `channel.updated`.
    ChannelUpdated(Box<Channel>),
    /// `channel.deleted`, on the members' user streams.
    ChannelDeleted { channel_id: String },
    /// `channel.member_joined`.
    MemberJoined { channel_id: String, user_id: String },
    /// `channel.member_left`.
    MemberLeft { channel_id: String, user_id: String },
    /// `workspace.created` (on the creator's user stream).
    WorkspaceCreated(Box<Workspace>),
    /// `workspace.updated` (on the workspace's stream).
    WorkspaceUpdated(Box<Workspace>),
    /// `workspace.deleted` (on the workspace's stream and the members' user streams).
    WorkspaceDeleted { workspace_id: String },
    /// `workspace.member_joined` / `workspace.member_left` (on the workspace's stream and the
    /// member's user stream).
    WorkspaceMember {
        workspace_id: String,
        user_id: String,
        joined: bool,
    },
    /// `mention`, on the mentioned user's stream.
    Mention(Box<Mention>),
    /// `read_receipt`: a member read up to a message.
    ReadReceipt {
        channel_id: String,
        user_id: String,
        user_name: String,
        message_id: String,
        read_at: u64,
        last_read_seq: u64,
    },
    /// `reaction.added` / `reaction.removed`; `count` is the emoji's count after it.
    Reaction {
        channel_id: String,
        message_id: String,
        emoji: String,
        user: Reactor,
        added: bool,
        count: u64,
    },
    /// `message.updated` for a pin or an unpin (the original's partial form, `{id, channelId,
    /// pinned}`, with `pinnedAt` and `pinnedBy`).
    Pinned {
        channel_id: String,
        message_id: String,
        pin: Option<Pin>,
    },
    /// `poll.created`.
    PollCreated { channel_id: String, poll: Box<Poll> },
    /// `poll.voted` (`options` set) or `poll.vote_removed`; `user` and `options` are left out of
    /// the payload for an anonymous poll. `counts` are every option's votes after it.
    PollVote {
        channel_id: String,
        poll_id: String,
        user: String,
        options: Option<Vec<String>>,
        anonymous: bool,
        total_votes: u64,
        counts: Vec<(String, u64)>,
    },
    /// `message.updated` with a message's link previews (the original's partial form,
    /// `{id, channelId, linkPreviews}`); the message is not marked edited.
    LinkPreviews {
        channel_id: String,
        message_id: String,
        previews: Vec<crate::previews::LinkPreview>,
    },
}

impl Event {
    /// The user whose act the event reports, for those a user who blocks them does not
    /// receive in realtime: their messages (new, replies, edits), reactions and mentions.
    pub fn author(&self) -> Option<&str> {
        match self {
            Event::MessageNew(m) | Event::ThreadReply(m) | Event::MessageUpdated(m) => {
                Some(&m.user_id)
            }
            Event::Reaction { user, .. } => Some(&user.id),
            Event::Mention(m) => Some(&m.mentioner.id),
            _ => None,
        }
    }

    /// The message a message event carries whole.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Event::MessageNew(m) | Event::ThreadReply(m) | Event::MessageUpdated(m) => Some(m),
            _ => None,
        }
    }

    /// [`Event::message`], taken out of the event.
    pub fn into_message(self) -> Option<Box<Message>> {
        match self {
            Event::MessageNew(m) | Event::ThreadReply(m) | Event::MessageUpdated(m) => Some(m),
            _ => None,
        }
    }

    /// `message.deleted` for `m` (`hard` when it was purged).
    pub fn deleted(m: &Message, hard: bool) -> Event {
        Event::MessageDeleted {
            channel_id: m.channel_id.clone(),
            message_id: m.id.clone(),
            hard,
        }
    }
}

/// One durable event of a realtime stream, with its offset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub offset: u64,
    pub event: Event,
}

/// An event rendered for clients: its offset and its ChatSDK envelope `{"type", "payload"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub offset: u64,
    pub data: String,
    /// [`Event::author`]: subscribers who block this user are not sent the publication.
    pub author: Option<String>,
}

/// Where a stream stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamHead {
    /// Names this incarnation of the stream.
    pub epoch: String,
    /// Offset of the last event (0 when empty).
    pub offset: u64,
    /// Seq of the last message (chat streams).
    pub seq: u64,
    /// Oldest offset still retained (offset + 1 when nothing is).
    pub first_retained: u64,
}

/// An app's webhook: events are POSTed to `url`, signed with `secret`
/// (see `crate::hooks::sign`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// Event names of the catalogue (`crate::hooks::catalogue`).
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: String,
    pub enabled: bool,
    /// Consecutive failed deliveries (reset by a success).
    pub failure_count: u32,
    pub last_failure_at: Option<u64>,
    /// Why the server turned it off (too many failures), if it did.
    pub disabled_reason: Option<String>,
    pub created_by: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// One delivery of an event to a webhook, as its log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookDelivery {
    /// The delivery id the receiver saw (`X-ChatSDK-Delivery-Id`): one per event and webhook.
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub success: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// Attempts after the first.
    pub retry_count: u32,
    pub attempted_at: u64,
}

/// An auto-enrollment rule: when a trigger fires for a user who meets the conditions, the
/// actions run (see `chat::enrollment`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentRule {
    pub id: String,
    pub app_id: String,
    pub name: Option<String>,
    pub workspace_id: Option<String>,
    pub channel_id: Option<String>,
    /// `all_users`, `role_based`, `tag_based`, `event_trigger` or `attribute_match`.
    pub rule_type: String,
    /// Validated when the rule is saved (see `chat::enrollment::Conditions`).
    pub conditions: Json,
    /// Validated when the rule is saved (see `chat::enrollment::Actions`).
    pub actions: Json,
    pub priority: i64,
    pub enabled: bool,
    pub created_by: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A rule's run for one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentRun {
    pub id: String,
    pub rule_id: String,
    pub rule_type: String,
    pub user_id: String,
    /// `None` while the run is under way (claimed, actions not finished).
    pub success: Option<bool>,
    pub error: Option<String>,
    /// What fired it: `user_created`, `workspace_joined`, `attributes_changed`, `manual`.
    pub trigger: String,
    pub executed_at: u64,
}

/// A user supervised by another (a guardian, a school, an organisation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Supervision {
    pub supervisor: String,
    pub supervised: String,
    /// `guardian`, `school` or `organization`.
    pub kind: String,
    /// The highest channel age rating (`config.minAge`) the supervised user may join.
    pub age_restriction: Option<u8>,
    /// Whether the supervisor may see the user's activity.
    pub monitoring: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A registered device (a native push token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub token: String,
    /// `ios`, `android`, `web` or `expo`.
    pub platform: String,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub created_at: u64,
    pub last_active_at: u64,
}

/// A browser's Web Push subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushSubscription {
    pub endpoint: String,
    /// base64url of the browser's P-256 public key.
    pub p256dh: String,
    /// base64url of the browser's 16-byte auth secret.
    pub auth: String,
    pub expires_at: Option<u64>,
    pub created_at: u64,
}

/// A legal hold on a channel or on a user's messages: nothing it covers may be deleted,
/// purged or expired while it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegalHold {
    /// `channel` or `user`.
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub until: Option<u64>,
    pub by: Option<String>,
    pub created_at: u64,
}

impl LegalHold {
    /// Whether it holds at `now` (ms).
    pub fn active(&self, now: u64) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// A data export: an archive kept in its own stream until it expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub id: String,
    /// `user` or `channel`.
    pub scope: String,
    pub subject: String,
    /// Who may download it (None: server keys only).
    pub owner: Option<String>,
    pub size: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    pub counts: Json,
    pub created_at: u64,
    pub expires_at: u64,
}
