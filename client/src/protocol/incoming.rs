//! Server → client: decoding one JSON object into a ping, a reply or a push.
//!
//! A reply is `{"id": n, "<method>": {...}}` or `{"id": n, "error": {code, message,
//! temporary}}`; a push has no id: `{"push": {"channel": "...", "pub" | "join" | "leave" |
//! "unsubscribe" | "disconnect" | "message": {...}}}`; the server ping is `{}`. The reply's
//! result stays a [`Value`]: the caller knows which command it answers and decodes it into the
//! matching result type. Unknown fields are ignored; nothing here panics on server input.

use chatsdk_proto::realtime::{ClientInfo, Publication};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One object from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// `{}`: answer with [`super::PONG`].
    Ping,
    Reply(Reply),
    Push(Push),
}

/// The answer to the command with the same id.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub id: u32,
    /// The method's result (an empty object when the server sent none), or the error.
    pub result: Result<Value, ReplyError>,
}

/// `{"code", "message", "temporary"}` of an error reply (codes in `docs/protocol.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ReplyError {
    pub code: u32,
    pub message: String,
    /// Whether the same command may succeed if retried later.
    pub temporary: bool,
}

/// Something the server sends without being asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Push {
    /// The channel it concerns (empty for connection-level pushes such as `disconnect`).
    pub channel: String,
    pub body: PushBody,
}

/// What a push carries.
#[derive(Clone, Debug, PartialEq)]
pub enum PushBody {
    /// A channel publication; `data` is a ChatSDK envelope `{"type", "payload"}`.
    Publication(Publication),
    Join(ClientInfo),
    Leave(ClientInfo),
    /// The server ended the subscription (`code` 2500–2999: the client may resubscribe).
    Unsubscribe {
        code: u32,
        reason: String,
    },
    /// The server is closing the connection; the transport close follows.
    Disconnect {
        code: u32,
        reason: String,
        reconnect: bool,
    },
    /// An asynchronous message to this connection.
    Message(Value),
    /// A push kind this client does not handle, by its key.
    Other(String),
}

/// A server object that is not valid JSON or not of a known shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed server frame: {reason}")]
pub struct DecodeError {
    pub reason: String,
}

impl DecodeError {
    fn new(reason: impl Into<String>) -> DecodeError {
        DecodeError {
            reason: reason.into(),
        }
    }
}

/// Whether a raw frame is the server ping `{}` (a cheap check that parses nothing).
pub fn is_ping(frame: &[u8]) -> bool {
    frame.trim_ascii() == b"{}"
}

/// Decodes one object.
pub fn decode(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    let mut object: Map<String, Value> =
        serde_json::from_slice(frame).map_err(|e| DecodeError::new(e.to_string()))?;
    if let Some(push) = object.remove("push") {
        return decode_push(push).map(ServerMessage::Push);
    }
    let id = match object.remove("id") {
        None | Some(Value::Null) => 0,
        Some(id) => id
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| DecodeError::new("reply id is not a u32"))?,
    };
    if id == 0 {
        return if object.is_empty() {
            Ok(ServerMessage::Ping)
        } else {
            Err(DecodeError::new(
                "object is neither a reply, a push nor a ping",
            ))
        };
    }
    let result = match object.remove("error") {
        Some(error) => Err(from_value::<ReplyError>(error, "error")?),
        // The remaining key is the method's name; an absent result is an empty one.
        None => Ok(object
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_else(|| Value::Object(Map::new()))),
    };
    Ok(ServerMessage::Reply(Reply { id, result }))
}

fn decode_push(push: Value) -> Result<Push, DecodeError> {
    let Value::Object(mut push) = push else {
        return Err(DecodeError::new("push is not an object"));
    };
    let channel = match push.remove("channel") {
        Some(Value::String(channel)) => channel,
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(DecodeError::new("push channel is not a string")),
    };
    let Some((kind, value)) = push.into_iter().find(|(_, v)| !v.is_null()) else {
        return Err(DecodeError::new("push without a body"));
    };
    let body = match kind.as_str() {
        "pub" => PushBody::Publication(from_value(value, "pub")?),
        "join" => PushBody::Join(from_value::<InfoBody>(value, "join")?.info),
        "leave" => PushBody::Leave(from_value::<InfoBody>(value, "leave")?.info),
        "unsubscribe" => {
            let b: CodeReason = from_value(value, "unsubscribe")?;
            PushBody::Unsubscribe {
                code: b.code,
                reason: b.reason,
            }
        }
        "disconnect" => {
            let b: CodeReason = from_value(value, "disconnect")?;
            PushBody::Disconnect {
                code: b.code,
                reason: b.reason,
                reconnect: b.reconnect,
            }
        }
        "message" => PushBody::Message(from_value::<DataBody>(value, "message")?.data),
        _ => PushBody::Other(kind),
    };
    Ok(Push { channel, body })
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|e| DecodeError::new(format!("{what}: {e}")))
}

#[derive(Deserialize)]
struct InfoBody {
    #[serde(default)]
    info: ClientInfo,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CodeReason {
    code: u32,
    reason: String,
    reconnect: bool,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DataBody {
    data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatsdk_proto::realtime as server;
    use serde_json::json;

    fn push(text: &str) -> Push {
        match decode(text.as_bytes()) {
            Ok(ServerMessage::Push(p)) => p,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn pings_replies_and_errors() {
        assert_eq!(decode(b"{}"), Ok(ServerMessage::Ping));
        assert!(is_ping(b" {}\r"));
        assert!(!is_ping(b"{\"id\":1}"));
        let reply = server::reply(7, "publish", &json!({}));
        assert_eq!(
            decode(reply.as_bytes()),
            Ok(ServerMessage::Reply(Reply {
                id: 7,
                result: Ok(json!({}))
            }))
        );
        let error = server::error_reply(8, 111, "too many requests", true);
        assert_eq!(
            decode(error.as_bytes()),
            Ok(ServerMessage::Reply(Reply {
                id: 8,
                result: Err(ReplyError {
                    code: 111,
                    message: "too many requests".into(),
                    temporary: true
                })
            }))
        );
        assert_eq!(
            decode(br#"{"id":9}"#),
            Ok(ServerMessage::Reply(Reply {
                id: 9,
                result: Ok(json!({}))
            }))
        );
    }

    #[test]
    fn every_push_the_server_builds_decodes() {
        let publication = server::Publication {
            data: json!({"type": "message.new", "payload": {"text": "hi"}}),
            offset: 5,
            ..server::Publication::default()
        };
        let p = push(&server::push_publication("chat:a:b", &publication));
        assert_eq!(p.channel, "chat:a:b");
        assert_eq!(p.body, PushBody::Publication(publication));
        let raw = push(&server::push_publication_raw(
            "chat:a:b",
            6,
            "{\"x\":1}",
            None,
        ));
        let PushBody::Publication(raw) = raw.body else {
            panic!()
        };
        assert_eq!((raw.offset, raw.data), (6, json!({"x": 1})));
        let info = server::ClientInfo {
            user: "app:u".into(),
            client: "c".into(),
            ..server::ClientInfo::default()
        };
        assert_eq!(
            push(&server::push_join("ch", &info)).body,
            PushBody::Join(info.clone())
        );
        assert_eq!(
            push(&server::push_leave("ch", &info)).body,
            PushBody::Leave(info)
        );
        assert_eq!(
            push(&server::push_unsubscribe("ch", 2000, "unsubscribed")).body,
            PushBody::Unsubscribe {
                code: 2000,
                reason: "unsubscribed".into()
            }
        );
        let d = push(&server::push_disconnect(3001, "shutdown", true));
        assert_eq!(d.channel, "");
        assert_eq!(
            d.body,
            PushBody::Disconnect {
                code: 3001,
                reason: "shutdown".into(),
                reconnect: true
            }
        );
        assert_eq!(
            push(r#"{"push":{"message":{"data":[1]}}}"#).body,
            PushBody::Message(json!([1]))
        );
        assert_eq!(
            push(r#"{"push":{"channel":"c","refresh":{}}}"#).body,
            PushBody::Other("refresh".into())
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b"not json"[..],
            b"[1]",
            b"{\"id\":-1,\"rpc\":{}}",
            b"{\"id\":4294967296}",
            b"{\"push\":1}",
            b"{\"push\":{}}",
            b"{\"push\":{\"channel\":5,\"pub\":{}}}",
            b"{\"push\":{\"pub\":{\"offset\":\"x\"}}}",
            b"{\"id\":1,\"error\":\"x\"}",
            b"{\"surprise\":true}",
            b"",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
