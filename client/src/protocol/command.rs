//! Client → server: the commands this client sends, encoded as `{"id": n, "<method>": {...}}`.
//!
//! Params leave out empty fields (the server reads absent and zero the same way), so a
//! command costs no more bytes than it needs.

use chatsdk_proto::realtime::StreamPosition;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

/// The client's answer to a server ping.
pub const PONG: &[u8] = b"{}";

/// A command and its params.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Connect(ConnectParams),
    Subscribe(SubscribeParams),
    Unsubscribe(ChannelParams),
    Publish(PublishParams),
    History(HistoryParams),
    Presence(ChannelParams),
    PresenceStats(ChannelParams),
    Rpc(RpcParams),
    Refresh(RefreshParams),
}

impl Command {
    /// The method's key in the command (and in its reply).
    pub fn method(&self) -> &'static str {
        match self {
            Command::Connect(_) => "connect",
            Command::Subscribe(_) => "subscribe",
            Command::Unsubscribe(_) => "unsubscribe",
            Command::Publish(_) => "publish",
            Command::History(_) => "history",
            Command::Presence(_) => "presence",
            Command::PresenceStats(_) => "presence_stats",
            Command::Rpc(_) => "rpc",
            Command::Refresh(_) => "refresh",
        }
    }

    /// The command as one JSON object with id `id` (non-zero: the reply carries it back).
    pub fn encode(&self, id: u32) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Envelope { id, command: self })
    }
}

struct Envelope<'a> {
    id: u32,
    command: &'a Command,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("id", &self.id)?;
        let key = self.command.method();
        match self.command {
            Command::Connect(p) => map.serialize_entry(key, p)?,
            Command::Subscribe(p) => map.serialize_entry(key, p)?,
            Command::Unsubscribe(p) | Command::Presence(p) | Command::PresenceStats(p) => {
                map.serialize_entry(key, p)?
            }
            Command::Publish(p) => map.serialize_entry(key, p)?,
            Command::History(p) => map.serialize_entry(key, p)?,
            Command::Rpc(p) => map.serialize_entry(key, p)?,
            Command::Refresh(p) => map.serialize_entry(key, p)?,
        }
        map.end()
    }
}

/// `connect`: the first command of every connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectParams {
    /// The realtime token (`wsToken` of `POST /tokens`).
    pub token: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// `subscribe`, with the position to recover from when resubscribing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SubscribeParams {
    pub channel: String,
    #[serde(skip_serializing_if = "is_false")]
    pub recover: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
}

/// Params naming only a channel (`unsubscribe`, `presence`, `presence_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChannelParams {
    pub channel: String,
}

/// `publish`: an ephemeral event (the server allows typing events only).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishParams {
    pub channel: String,
    pub data: Value,
}

/// `history`: retained publications of a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HistoryParams {
    pub channel: String,
    /// At most this many; 0 asks only for the stream position, -1 for all retained.
    pub limit: i32,
    /// After this position (before it when `reverse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
    #[serde(skip_serializing_if = "is_false")]
    pub reverse: bool,
}

/// `rpc`: ChatSDK's socket-native calls (`message.send`, `message.edit`, `typing`, `read`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RpcParams {
    pub method: String,
    pub data: Value,
}

/// `refresh`: a new token for the same user, extending the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RefreshParams {
    pub token: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(id: u32, command: &Command) -> Value {
        let bytes = command.encode(id).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn commands_carry_id_and_method_key_and_skip_empty_fields() {
        let connect = Command::Connect(ConnectParams {
            token: "t".into(),
            name: "rust".into(),
            ..ConnectParams::default()
        });
        assert_eq!(
            encoded(1, &connect),
            json!({"id": 1, "connect": {"token": "t", "name": "rust"}})
        );
        let fresh = Command::Subscribe(SubscribeParams {
            channel: "chat:a:b".into(),
            ..SubscribeParams::default()
        });
        assert_eq!(
            encoded(2, &fresh),
            json!({"id": 2, "subscribe": {"channel": "chat:a:b"}})
        );
        let recover = Command::Subscribe(SubscribeParams {
            channel: "chat:a:b".into(),
            recover: true,
            epoch: "e".into(),
            offset: 7,
        });
        assert_eq!(
            encoded(3, &recover),
            json!({"id": 3, "subscribe": {"channel": "chat:a:b", "recover": true, "epoch": "e", "offset": 7}})
        );
        let stats = Command::PresenceStats(ChannelParams {
            channel: "c".into(),
        });
        assert_eq!(
            encoded(4, &stats),
            json!({"id": 4, "presence_stats": {"channel": "c"}})
        );
        let history = Command::History(HistoryParams {
            channel: "c".into(),
            limit: 10,
            since: Some(StreamPosition {
                offset: 3,
                epoch: "e".into(),
            }),
            reverse: false,
        });
        assert_eq!(
            encoded(5, &history),
            json!({"id": 5, "history": {"channel": "c", "limit": 10, "since": {"offset": 3, "epoch": "e"}}})
        );
        let rpc = Command::Rpc(RpcParams {
            method: "message.send".into(),
            data: json!({"channelId": "x", "text": "hi"}),
        });
        assert_eq!(
            encoded(6, &rpc),
            json!({"id": 6, "rpc": {"method": "message.send", "data": {"channelId": "x", "text": "hi"}}})
        );
    }

    #[test]
    fn the_server_decodes_what_we_encode() {
        use chatsdk_proto::realtime::{parse_command, Method};
        let command = Command::Subscribe(SubscribeParams {
            channel: "chat:a:b".into(),
            recover: true,
            epoch: "e".into(),
            offset: 9,
        });
        let bytes = command.encode(42).unwrap();
        let parsed = parse_command(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(parsed.id, 42);
        let Method::Subscribe(sub) = parsed.method else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            (
                sub.channel.as_str(),
                sub.recover,
                sub.epoch.as_str(),
                sub.offset
            ),
            ("chat:a:b", true, "e", 9)
        );
        assert_eq!(parse_command("{}").unwrap().method, Method::Pong);
        assert_eq!(PONG, b"{}");
    }
}
