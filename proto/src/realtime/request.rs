//! The params of each client command, as `client.proto` names them.
//!
//! Every field is optional on the wire (`#[serde(default)]`) and unknown fields are ignored.
//! Payloads (`data`) are raw JSON values; [`Value::Null`] means the client sent none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `connect`: must be the connection's first command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    /// Connection JWT.
    pub token: String,
    /// Custom connect data (raw JSON; `Null` when absent).
    pub data: Value,
    /// Subscriptions to recover together with the connect, by channel.
    pub subs: BTreeMap<String, ConnectSubscription>,
    /// Client name, e.g. `"js"`.
    pub name: String,
    /// Client version.
    pub version: String,
}

/// A subscription named in [`ConnectRequest::subs`]: where the client's stream position is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectSubscription {
    pub recover: bool,
    pub epoch: String,
    pub offset: u64,
}

/// `subscribe`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    pub channel: String,
    /// Subscription JWT, if the client has one (`""` otherwise).
    pub token: String,
    /// Asks for the publications after (`epoch`, `offset`).
    pub recover: bool,
    pub epoch: String,
    pub offset: u64,
    /// Custom subscribe data (raw JSON; `Null` when absent).
    pub data: Value,
    pub positioned: bool,
    pub recoverable: bool,
    pub join_leave: bool,
}

/// `unsubscribe`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    pub channel: String,
}

/// `publish`: an ephemeral client-to-channel event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    pub channel: String,
    /// The payload (raw JSON; `Null` when absent).
    pub data: Value,
}

/// `presence`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    pub channel: String,
}

/// `presence_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsRequest {
    pub channel: String,
}

/// A position in a channel's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// `history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    pub channel: String,
    /// How many publications at most; 0 asks only for the stream position.
    pub limit: i32,
    /// Return publications after this position (before it when `reverse`).
    pub since: Option<StreamPosition>,
    pub reverse: bool,
}

/// `send`: an asynchronous message; the server never replies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    /// The payload (raw JSON; `Null` when absent).
    pub data: Value,
}

/// `rpc`: ChatSDK's socket-native commands (`message.send`, `typing`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    pub method: String,
    /// The arguments (raw JSON; `Null` when absent).
    pub data: Value,
}

/// `refresh`: a new connection token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    pub token: String,
}

/// `sub_refresh`: a new subscription token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    pub channel: String,
    pub token: String,
}
