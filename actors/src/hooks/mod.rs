//! Webhooks: which events they may subscribe to, how a delivery is signed, the guarded HTTP
//! client that sends it, and the dispatcher that delivers a shard's pending events.
//!
//! Delivery is at least once. An event a webhook wants is recorded as pending in the same Raft
//! command that writes it (`StreamOp::Hooked`, see `stream::hooks`); the leader of the event's
//! shard delivers it, retrying on network errors and 5xx answers, logs the outcome in the
//! webhook's delivery log and then removes the pending record. If that leader dies first, the
//! shard's next leader finds the record and delivers again, with the same delivery id (one
//! per event and webhook), so receivers can deduplicate. Events that are not written to a
//! stream (typing, presence, reports) are delivered once, from the node where they happen,
//! with the same retries but no durability.

mod client;
mod dispatch;
pub mod sign;

pub use client::{check_url, is_public, AttemptResult, Guard, HookClient, UrlError, MAX_URL_LEN};
pub use dispatch::{deliver, Attempt, Outgoing};

use crate::model::Event;

/// Every event name a webhook may subscribe to (`message.created` is accepted as another
/// name of `message.new`).
pub const CATALOGUE: [&str; 20] = [
    "message.new",
    "message.updated",
    "message.deleted",
    "thread.reply",
    "channel.created",
    "channel.updated",
    "channel.deleted",
    "user.joined",
    "user.left",
    "reaction.added",
    "reaction.removed",
    "typing.start",
    "typing.stop",
    "presence.changed",
    "message.read",
    "message.reported",
    "poll.created",
    "poll.voted",
    "poll.vote_removed",
    "webhook.test",
];

/// The catalogue name of `name` (aliases resolved), or None when it is not an event.
pub fn canonical(name: &str) -> Option<&'static str> {
    let name = match name {
        "message.created" => "message.new",
        other => other,
    };
    CATALOGUE
        .iter()
        .copied()
        .find(|c| *c == name && *c != "webhook.test")
}

/// The webhook name of a stored event, for those webhooks deliver.
pub fn event_name(e: &Event) -> Option<&'static str> {
    Some(match e {
        Event::MessageNew(_) => "message.new",
        Event::ThreadReply(_) => "thread.reply",
        Event::MessageUpdated(_) => "message.updated",
        Event::MessageDeleted { .. } => "message.deleted",
        Event::ReadUpdated { .. } | Event::ReadReceipt { .. } => "message.read",
        Event::ChannelCreated(_) => "channel.created",
        Event::ChannelUpdated(_) => "channel.updated",
        Event::ChannelDeleted { .. } => "channel.deleted",
        Event::MemberJoined { .. } => "user.joined",
        Event::MemberLeft { .. } => "user.left",
        Event::Reaction { added: true, .. } => "reaction.added",
        Event::Reaction { added: false, .. } => "reaction.removed",
        Event::PollCreated { .. } => "poll.created",
        Event::PollVote {
            options: Some(_), ..
        } => "poll.voted",
        Event::PollVote { options: None, .. } => "poll.vote_removed",
        Event::Pinned { .. }
        | Event::LinkPreviews { .. }
        | Event::Mention(_)
        | Event::WorkspaceCreated(_)
        | Event::WorkspaceUpdated(_)
        | Event::WorkspaceDeleted { .. }
        | Event::WorkspaceMember { .. } => return None,
    })
}

/// Settings of webhook delivery.
#[derive(Clone, Debug)]
pub struct HookConfig {
    /// Hosts (names, IP addresses or CIDR ranges) that may be delivered to even though they are
    /// loopback, private, link-local or otherwise internal. Empty: only public addresses.
    pub allowed_hosts: Vec<String>,
    /// Time for one attempt (connect, send, answer).
    pub timeout: std::time::Duration,
    /// Attempts after the first, on network errors and 5xx answers.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub backoff: std::time::Duration,
    /// Consecutive failed deliveries that turn a webhook off.
    pub disable_after: u32,
    /// Records kept in each webhook's delivery log.
    pub log_keep: u32,
    /// How often a shard leader looks for pending deliveries (it also looks right after a
    /// write that left some).
    pub poll_every: std::time::Duration,
}

impl HookConfig {
    /// These settings with an empty allow list (public addresses only).
    pub fn without_allow_list(self) -> HookConfig {
        HookConfig {
            allowed_hosts: Vec::new(),
            ..self
        }
    }
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            allowed_hosts: Vec::new(),
            timeout: std::time::Duration::from_secs(10),
            retries: 3,
            backoff: std::time::Duration::from_secs(1),
            disable_after: 10,
            log_keep: 100,
            poll_every: std::time::Duration::from_secs(1),
        }
    }
}
