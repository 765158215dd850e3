//! The result of each command and the records inside results and pushes.
//!
//! Empty fields are left out the way the `centrifugal/protocol` JSON encoder leaves them out;
//! the fields that encoder always writes are always written here too. Payloads are raw JSON
//! values and [`Value::Null`] leaves them out. Results also deserialise, for the client SDK and
//! for tests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who a publication, join or leave is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    /// User id; always written, even when empty.
    pub user: String,
    /// Connection (client) id; always written.
    pub client: String,
    /// Connection info (raw JSON; `Null` leaves it out).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub conn_info: Value,
    /// Channel info (raw JSON; `Null` leaves it out).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub chan_info: Value,
}

/// One publication of a channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Publication {
    /// The payload, a ChatSDK event envelope (raw JSON; `Null` leaves it out).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// The publisher, for client-side publications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Stream offset; 0 (left out) for ephemeral events.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    /// Optional tags; `None` and an empty map are both left out.
    #[serde(skip_serializing_if = "no_tags")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// Result of `connect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    /// The connection id the server assigned.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Server version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Whether the connection expires and must be refreshed.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry, when `expires`.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// Custom connect data (raw JSON; `Null` leaves it out).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// Results for the subscriptions asked for in the connect, by channel.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, SubscribeResult>,
    /// Server ping interval in seconds.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ping: u32,
    /// Whether the client must answer pings with `{}`.
    #[serde(skip_serializing_if = "is_false")]
    pub pong: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// The node that holds the connection.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// Result of `subscribe` (and of each subscription in [`ConnectResult::subs`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// Whether the channel has a stream the client can recover from.
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Recovered publications, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// Whether every missed publication is in `publications`.
    #[serde(skip_serializing_if = "is_false")]
    pub recovered: bool,
    /// The stream's current top offset.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    /// Custom subscribe data (raw JSON; `Null` leaves it out).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// Whether the client asked to recover.
    #[serde(skip_serializing_if = "is_false")]
    pub was_recovering: bool,
}

/// Result of `history`; all three fields are always written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryResult {
    pub publications: Vec<Publication>,
    pub epoch: String,
    pub offset: u64,
}

/// Result of `presence`: connections by client id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceResult {
    pub presence: BTreeMap<String, ClientInfo>,
}

/// Result of `presence_stats`; both counts are always written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsResult {
    pub num_clients: u32,
    pub num_users: u32,
}

/// Result of `rpc`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcResult {
    /// The answer (raw JSON; `Null` leaves it out).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// Result of `publish`: `{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {}

/// Result of `unsubscribe`: `{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeResult {}

/// Result of `refresh`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

/// Result of `sub_refresh`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshResult {
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

pub(super) fn is_false(value: &bool) -> bool {
    !*value
}

pub(super) fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}

pub(super) fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

pub(super) fn no_tags(tags: &Option<BTreeMap<String, String>>) -> bool {
    tags.as_ref().is_none_or(BTreeMap::is_empty)
}
