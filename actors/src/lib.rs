//! ChatSDK's domain: the replicated chat state, the channel actors and the node's fanout.
//!
//! This crate gives the cluster's opaque commands their meaning and owns the rules of chat
//! (membership, roles, idempotency, ordering). It parses no HTTP and no protocol frames: the
//! gateway authenticates a request and calls [`Chat`]. Module map:
//! - [`chat`]: the service the gateway calls ([`Chat`]): permissions, routing to channel actors.
//! - [`directory`]: apps, keys, users, channels and members in group 0 (on every node).
//! - [`stream`]: realtime streams and messages in the data shards.
//! - [`channel`]: the channel actor (ractor), one per stream on its shard's leader;
//!   [`registry`]: the ones running on this node.
//! - [`session`]: the realtime session, one per connection, driven by its connection's task.
//! - [`fanout`], [`emitter`], [`interest`], [`outbound`]: getting one event to every subscriber,
//!   in order, with bounded queues, crossing only to nodes that have subscribers.
//! - [`model`], [`codec`], [`render`], [`keys`](crate::keys), [`time`], [`validate`]: records,
//!   their binary form, their client JSON, their key layout.

pub mod channel;
pub mod chat;
pub mod codec;
pub mod dialect;
pub mod directory;
pub mod emitter;
pub mod error;
pub mod fanout;
pub mod fuzzing;
pub mod hooks;
pub mod interest;
pub mod limits;
pub mod media;
pub mod model;
pub mod outbound;
pub mod previews;
pub mod push;
pub mod registry;
pub mod render;
pub mod resequence;
pub mod search;
pub mod session;
pub mod stats;
pub mod stream;
pub mod time;
pub mod validate;

mod chunk;
mod id_index;
mod keys;
mod kv;
pub mod locate;

pub use chat::{
    chat_stream, split_stream, user_stream, workspace_stream, Caller, Chat, ChatConfig,
    IssuedInvite, MentionItem, MessagePageOut, MessageReceipts, ModerationStats, NewChannel,
    NewEmoji, NewMessage, NewPoll, NewPollOption, NewWebhook, Position, Review, RuleOutcome,
    RuleSpec, SavedMessage, SessionSweep, SupervisionSpec, TemplateSpec, UserPresence,
    WebhookPatch, WorkspaceSpec, WorkspaceStats, MEDIA_DIR,
};
pub use error::ChatError;

/// Hex SHA-256 of `data`.
pub fn hash_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A new time-ordered id (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
