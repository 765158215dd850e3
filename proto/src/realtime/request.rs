//! The params of each client command, as `client.proto` names them.
//!
//! Every field is optional on the wire (`#[serde(default)]`), a `null` field reads as absent (as
//! in the Go decoder; [`nullable`]) and unknown fields are ignored. Payloads (`data`) are JSON
//! values; [`Value::Null`] means the client sent none. An RPC's arguments stay raw JSON text
//! ([`RpcRequest::data`]): the method decides their type, so they are parsed once, by it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// `connect`: must be the connection's first command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    /// Connection JWT.
    #[serde(deserialize_with = "nullable")]
    pub token: String,
    /// Custom connect data (raw JSON; `Null` when absent).
    #[serde(deserialize_with = "nullable")]
    pub data: Value,
    /// Subscriptions to recover together with the connect, by channel.
    #[serde(deserialize_with = "nullable")]
    pub subs: BTreeMap<String, ConnectSubscription>,
    /// Client name, e.g. `"js"`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Client version.
    #[serde(deserialize_with = "nullable")]
    pub version: String,
}

/// A subscription named in [`ConnectRequest::subs`]: where the client's stream position is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectSubscription {
    #[serde(deserialize_with = "nullable")]
    pub recover: bool,
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
}

/// `subscribe`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// Subscription JWT, if the client has one (`""` otherwise).
    #[serde(deserialize_with = "nullable")]
    pub token: String,
    /// Asks for the publications after (`epoch`, `offset`).
    #[serde(deserialize_with = "nullable")]
    pub recover: bool,
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    /// Custom subscribe data (raw JSON; `Null` when absent).
    #[serde(deserialize_with = "nullable")]
    pub data: Value,
    #[serde(deserialize_with = "nullable")]
    pub positioned: bool,
    #[serde(deserialize_with = "nullable")]
    pub recoverable: bool,
    #[serde(deserialize_with = "nullable")]
    pub join_leave: bool,
}

/// `unsubscribe`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
}

/// `publish`: an ephemeral client-to-channel event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// The payload (raw JSON; `Null` when absent).
    #[serde(deserialize_with = "nullable")]
    pub data: Value,
}

/// `presence`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
}

/// `presence_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
}

/// A position in a channel's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
}

/// `history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// How many publications at most; 0 asks only for the stream position.
    #[serde(deserialize_with = "nullable")]
    pub limit: i32,
    /// Return publications after this position (before it when `reverse`).
    #[serde(deserialize_with = "nullable")]
    pub since: Option<StreamPosition>,
    #[serde(deserialize_with = "nullable")]
    pub reverse: bool,
}

/// `send`: an asynchronous message; the server never replies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    /// The payload (raw JSON; `Null` when absent).
    #[serde(deserialize_with = "nullable")]
    pub data: Value,
}

/// `rpc`: ChatSDK's socket-native commands (`message.send`, `typing`, ...).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    #[serde(deserialize_with = "nullable")]
    pub method: String,
    /// The arguments as the client wrote them (`None` when absent or `null`), for the method
    /// to parse into its own type. A raw JSON value: only a JSON (de)serializer can carry it.
    pub data: Option<Box<RawValue>>,
}

impl RpcRequest {
    /// The arguments' JSON text (`null` when absent).
    pub fn data_json(&self) -> &str {
        self.data.as_deref().map_or("null", RawValue::get)
    }
}

impl PartialEq for RpcRequest {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method && self.data_json() == other.data_json()
    }
}

/// `refresh`: a new connection token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    #[serde(deserialize_with = "nullable")]
    pub token: String,
}

/// `sub_refresh`: a new subscription token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    #[serde(deserialize_with = "nullable")]
    pub token: String,
}

/// Reads a field whose `null` means "absent": its default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
