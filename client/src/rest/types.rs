//! Request and response bodies of the REST routes [`super::RestClient`] types, in the Client
//! API's camelCase. Every response field has a default, so a server that adds fields (or
//! leaves one null) does not break a client; fields not listed here are ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The token bundle of `POST /tokens` and `POST /tokens/refresh`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Tokens {
    /// Access token for the REST Client API (`Authorization: Bearer`).
    pub token: String,
    /// Single-use refresh token (`POST /tokens/refresh`).
    pub refresh_token: String,
    /// Token for the realtime `connect` command.
    pub ws_token: String,
    /// Lifetime of `token`, in seconds.
    pub expires_in: u64,
    /// The user the tokens were minted for (`POST /tokens` only).
    pub user: Value,
}

/// Body of `POST /api/channels`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewChannel {
    /// `messaging` (a DM of exactly two), `group`, `team`, `livestream`, `public`, `private`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Other members; the creator is always one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub member_ids: Vec<String>,
    /// Makes the create idempotent: a replay answers the first channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

impl NewChannel {
    /// A channel of `kind` with `name` and the given other members.
    pub fn new(kind: &str, name: &str, member_ids: &[&str]) -> NewChannel {
        NewChannel {
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            member_ids: member_ids.iter().map(|m| m.to_string()).collect(),
            ..NewChannel::default()
        }
    }
}

/// A channel as the Client API renders it (the caller's membership fields are `None` for a
/// non-member).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Channel {
    pub id: String,
    pub cid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub member_count: u64,
    pub created_by: Option<String>,
    pub created_at: String,
    pub workspace_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub last_read_seq: Option<u64>,
    pub unread_count: Option<u64>,
    pub role: Option<String>,
}

/// Answer of `POST /api/channels/:id/members` (Client API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AddedMembers {
    pub success: bool,
    pub added_count: u64,
}

/// A message as the Client API renders it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub channel_id: String,
    pub user_id: String,
    /// `regular` or `deleted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `None` once deleted.
    pub text: Option<String>,
    /// The channel's sequence number of this message.
    pub seq: u64,
    pub client_msg_id: Option<String>,
    pub parent_id: Option<String>,
    pub reply_to_id: Option<String>,
    pub reply_count: u64,
    pub attachments: Value,
    pub user: Value,
    pub created_at: String,
    pub updated_at: String,
    pub edited_at: Option<String>,
    pub deleted_at: Option<String>,
    /// True when a repeated `clientMsgId` returned the first message instead of a new one.
    pub duplicate: bool,
}

/// Answer of `GET /api/channels/:id/messages`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MessagePage {
    /// Ascending by `seq` for `since_seq` queries.
    pub messages: Vec<Message>,
    /// The channel's highest sequence number.
    pub max_seq: u64,
    pub has_more: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateToken<'a> {
    pub(super) user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AddMembers<'a> {
    pub(super) user_ids: &'a [&'a str],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SendMessage<'a> {
    pub(super) text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client_msg_id: Option<&'a str>,
}

/// `{"error": {...}}`, the one error shape of the REST API.
#[derive(Deserialize)]
pub(super) struct ErrorEnvelope {
    pub(super) error: ErrorBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorBody {
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) request_id: Option<String>,
}
