//! Server → client: replies, pushes and pings as JSON text.
//!
//! Each builder returns one JSON object without a trailing newline; [`join_frame`] batches them.
//! A reply is `{"id":N,"<method>":{...}}` or `{"id":N,"error":{...}}`; a push has no id:
//! `{"push":{"channel":"...","<kind>":{...}}}`. Empty fields are omitted the way the
//! `centrifugal/protocol` JSON encoder omits them, so the `centrifuge` clients see what they
//! would see from Centrifugo.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::result::{is_false, is_zero_u32, ClientInfo, Publication};
use crate::error::ErrorCode;

/// A successful reply: `{"id":1,"<method>":<result>}`, where `method` is the command's key
/// ([`super::Method::name`]). `send` and pongs get no reply.
///
/// Our result types always serialise; should a caller's type fail (a map with non-string
/// keys), the client gets error 100 (internal) for that id instead of silence.
pub fn reply(id: u32, method: &str, result: &impl Serialize) -> String {
    let entry = Entry {
        id,
        key: method,
        value: result,
    };
    serde_json::to_string(&entry).unwrap_or_else(|_| {
        let code = ErrorCode::Internal;
        error_reply(
            id,
            code.protocol_code(),
            "internal server error",
            code.temporary(),
        )
    })
}

/// The reply to an `rpc` command whose result data is JSON the server already holds:
/// `{"id":1,"rpc":{"data":<data_json>}}`, spliced in as is (neither parsed nor validated: pass
/// only JSON the server produced). The same bytes as [`reply`] of `{"data": ...}`.
pub fn rpc_reply_raw(id: u32, data_json: &str) -> String {
    let mut out = String::with_capacity(data_json.len() + 32);
    out.push_str("{\"id\":");
    out.push_str(&id.to_string());
    out.push_str(",\"rpc\":{\"data\":");
    out.push_str(data_json);
    out.push_str("}}");
    out
}

/// An error reply: `{"id":1,"error":{"code":103,"message":"permission denied"}}`, with
/// `"temporary":true` only when the client may retry.
pub fn error_reply(id: u32, code: u32, message: &str, temporary: bool) -> String {
    let body = ErrorBody {
        code,
        message,
        temporary,
    };
    encode(&Entry {
        id,
        key: "error",
        value: &body,
    })
}

/// A publication push: `{"push":{"channel":"chat:a:b","pub":{"data":{...},"offset":5}}}`.
pub fn push_publication(channel: &str, publication: &Publication) -> String {
    push(channel, "pub", publication)
}

/// The same push as [`push_publication`], with `data_json` (already-serialised JSON, or `""`
/// for no data) spliced in as is. The payload is neither parsed nor validated: pass only JSON
/// the server produced. The channel is escaped. Fields come in the same order, so for equal
/// inputs the bytes equal those of [`push_publication`].
pub fn push_publication_raw(
    channel: &str,
    offset: u64,
    data_json: &str,
    info: Option<&ClientInfo>,
) -> String {
    let info = info.map(encode);
    let capacity = 64 + channel.len() + data_json.len() + info.as_ref().map_or(0, String::len);
    let mut out = String::with_capacity(capacity);
    out.push_str("{\"push\":{");
    if !channel.is_empty() {
        out.push_str("\"channel\":");
        out.push_str(&encode(channel));
        out.push(',');
    }
    out.push_str("\"pub\":{");
    let mut separator = "";
    if !data_json.is_empty() {
        out.push_str("\"data\":");
        out.push_str(data_json);
        separator = ",";
    }
    if let Some(info) = &info {
        out.push_str(separator);
        out.push_str("\"info\":");
        out.push_str(info);
        separator = ",";
    }
    if offset != 0 {
        out.push_str(separator);
        out.push_str("\"offset\":");
        out.push_str(&offset.to_string());
    }
    out.push_str("}}}");
    out
}

/// A join push: `{"push":{"channel":"...","join":{"info":{...}}}}`.
pub fn push_join(channel: &str, info: &ClientInfo) -> String {
    push(channel, "join", &InfoBody { info })
}

/// A leave push: `{"push":{"channel":"...","leave":{"info":{...}}}}`.
pub fn push_leave(channel: &str, info: &ClientInfo) -> String {
    push(channel, "leave", &InfoBody { info })
}

/// The server ended a subscription: `{"push":{"channel":"...","unsubscribe":{"code":..,
/// "reason":".."}}}`. The `centrifuge` clients resubscribe for codes 2500–2999 and stay
/// unsubscribed below that.
pub fn push_unsubscribe(channel: &str, code: u32, reason: &str) -> String {
    push(channel, "unsubscribe", &CodeReason { code, reason })
}

/// The server is closing the connection: `{"push":{"disconnect":{"code":3001,
/// "reason":"shutdown","reconnect":true}}}` (`reconnect` left out when false). Clients decide
/// whether to reconnect from the code range; `reconnect` is informational.
pub fn push_disconnect(code: u32, reason: &str, reconnect: bool) -> String {
    let body = Disconnect {
        code,
        reason,
        reconnect,
    };
    push("", "disconnect", &body)
}

/// The server ping: an empty object, answered by the client with `{}` when the connect result
/// said `pong: true`.
pub fn ping() -> &'static str {
    "{}"
}

/// Batches replies and pushes into one frame, separated by `\n`.
pub fn join_frame(objects: &[String]) -> String {
    objects.join("\n")
}

fn push(channel: &str, kind: &'static str, body: &impl Serialize) -> String {
    let push = PushBody {
        channel,
        kind,
        body,
    };
    encode(&Entry {
        id: 0,
        key: "push",
        value: &push,
    })
}

/// Serialises one of our own types. They only hold strings, numbers, string-keyed maps and
/// `Value`s, for which serde_json cannot fail; the fallback is never taken.
fn encode<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

/// `{"id":id,"<key>":value}`, the id left out when 0 (pushes), as the Go encoder does.
struct Entry<'a, T: ?Sized> {
    id: u32,
    key: &'a str,
    value: &'a T,
}

impl<T: Serialize + ?Sized> Serialize for Entry<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if self.id != 0 {
            map.serialize_entry("id", &self.id)?;
        }
        map.serialize_entry(self.key, self.value)?;
        map.end()
    }
}

/// `{"channel":"...","<kind>":body}`, the channel left out when empty.
struct PushBody<'a, T: ?Sized> {
    channel: &'a str,
    kind: &'static str,
    body: &'a T,
}

impl<T: Serialize + ?Sized> Serialize for PushBody<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.channel.is_empty() {
            map.serialize_entry("channel", self.channel)?;
        }
        map.serialize_entry(self.kind, self.body)?;
        map.end()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u32,
    message: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    temporary: bool,
}

#[derive(Serialize)]
struct InfoBody<'a> {
    info: &'a ClientInfo,
}

#[derive(Serialize)]
struct CodeReason<'a> {
    #[serde(skip_serializing_if = "is_zero_u32")]
    code: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
}

#[derive(Serialize)]
struct Disconnect<'a> {
    #[serde(skip_serializing_if = "is_zero_u32")]
    code: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    reconnect: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::{
        ConnectResult, HistoryResult, PresenceResult, PresenceStatsResult, PublishResult,
        RefreshResult, RpcResult, SubscribeResult, UnsubscribeResult,
    };
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::collections::HashMap;

    #[test]
    fn raw_rpc_reply_equals_the_serialized_one() {
        let data = json!({"id": "m\"1", "text": "a\nb", "seq": 3});
        let raw = serde_json::to_string(&data).unwrap();
        assert_eq!(
            rpc_reply_raw(42, &raw),
            reply(42, "rpc", &json!({ "data": data }))
        );
    }

    fn parsed(text: &str) -> Value {
        assert!(!text.ends_with('\n'), "{text}");
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn alice() -> ClientInfo {
        ClientInfo {
            user: "u1".into(),
            client: "c1".into(),
            ..ClientInfo::default()
        }
    }

    #[test]
    fn replies_carry_the_method_name_as_key() {
        let result = SubscribeResult {
            recoverable: true,
            epoch: "ep".into(),
            publications: vec![Publication {
                data: json!({"type": "message.new"}),
                offset: 4,
                ..Publication::default()
            }],
            recovered: true,
            offset: 4,
            was_recovering: true,
            ..SubscribeResult::default()
        };
        assert_eq!(
            parsed(&reply(1, "subscribe", &result)),
            json!({"id": 1, "subscribe": {"recoverable": true, "epoch": "ep",
                "publications": [{"data": {"type": "message.new"}, "offset": 4}],
                "recovered": true, "offset": 4, "was_recovering": true}})
        );
        assert_eq!(
            reply(2, "subscribe", &SubscribeResult::default()),
            r#"{"id":2,"subscribe":{}}"#
        );
        assert_eq!(
            reply(3, "publish", &PublishResult {}),
            r#"{"id":3,"publish":{}}"#
        );
        assert_eq!(
            reply(4, "unsubscribe", &UnsubscribeResult {}),
            r#"{"id":4,"unsubscribe":{}}"#
        );
        let rpc = RpcResult {
            data: json!({"ok": true}),
        };
        assert_eq!(
            reply(5, "rpc", &rpc),
            r#"{"id":5,"rpc":{"data":{"ok":true}}}"#
        );
    }

    #[test]
    fn connect_result_omits_empty_fields() {
        let mut result = ConnectResult {
            client: "c1".into(),
            version: "0.1.0".into(),
            ping: 25,
            pong: true,
            node: "n1".into(),
            ..ConnectResult::default()
        };
        assert_eq!(
            parsed(&reply(1, "connect", &result)),
            json!({"id": 1, "connect": {"client": "c1", "version": "0.1.0", "ping": 25,
                "pong": true, "node": "n1"}})
        );
        result.expires = true;
        result.ttl = 3600;
        result.subs.insert(
            "user:a:u1".into(),
            SubscribeResult {
                recoverable: true,
                epoch: "e".into(),
                ..SubscribeResult::default()
            },
        );
        let value = parsed(&reply(1, "connect", &result));
        assert_eq!(value["connect"]["ttl"], 3600);
        assert_eq!(
            value["connect"]["subs"]["user:a:u1"],
            json!({"recoverable": true, "epoch": "e"})
        );
        let refresh = RefreshResult {
            client: "c1".into(),
            expires: true,
            ttl: 60,
            ..RefreshResult::default()
        };
        assert_eq!(
            parsed(&reply(6, "refresh", &refresh)),
            json!({"id": 6, "refresh": {"client": "c1", "expires": true, "ttl": 60}})
        );
    }

    #[test]
    fn history_and_presence_always_write_their_fields() {
        assert_eq!(
            reply(1, "history", &HistoryResult::default()),
            r#"{"id":1,"history":{"publications":[],"epoch":"","offset":0}}"#
        );
        assert_eq!(
            reply(2, "presence", &PresenceResult::default()),
            r#"{"id":2,"presence":{"presence":{}}}"#
        );
        assert_eq!(
            reply(3, "presence_stats", &PresenceStatsResult::default()),
            r#"{"id":3,"presence_stats":{"num_clients":0,"num_users":0}}"#
        );
        let presence = PresenceResult {
            presence: BTreeMap::from([("c1".to_string(), alice())]),
        };
        assert_eq!(
            parsed(&reply(4, "presence", &presence)),
            json!({"id": 4, "presence": {"presence": {"c1": {"user": "u1", "client": "c1"}}}})
        );
    }

    #[test]
    fn results_round_trip() {
        let result = ConnectResult {
            client: "c".into(),
            data: json!([1, {"a": null}]),
            subs: BTreeMap::from([(
                "chat:a:b".to_string(),
                SubscribeResult {
                    publications: vec![Publication {
                        data: json!("x"),
                        info: Some(alice()),
                        offset: 1,
                        tags: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
                    }],
                    ..SubscribeResult::default()
                },
            )]),
            ..ConnectResult::default()
        };
        let text = serde_json::to_string(&result).unwrap_or_default();
        let back: ConnectResult = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, result);
    }

    #[test]
    fn error_replies_omit_temporary_when_false() {
        assert_eq!(
            error_reply(1, 103, "permission denied", false),
            r#"{"id":1,"error":{"code":103,"message":"permission denied"}}"#
        );
        assert_eq!(
            parsed(&error_reply(9, 111, "too many requests", true)),
            json!({"id": 9, "error": {"code": 111, "message": "too many requests", "temporary": true}})
        );
    }

    #[test]
    fn a_result_that_fails_to_serialise_becomes_an_internal_error() {
        let broken: HashMap<Vec<u8>, u8> = HashMap::from([(vec![1], 1)]);
        assert_eq!(
            parsed(&reply(7, "rpc", &broken)),
            json!({"id": 7, "error": {"code": 100, "message": "internal server error", "temporary": true}})
        );
    }

    #[test]
    fn pushes_have_no_id() {
        let publication = Publication {
            data: json!({"type": "message.new", "payload": {"text": "hi"}}),
            offset: 5,
            ..Publication::default()
        };
        assert_eq!(
            parsed(&push_publication("chat:a:b", &publication)),
            json!({"push": {"channel": "chat:a:b", "pub": {"data": {"type": "message.new",
                "payload": {"text": "hi"}}, "offset": 5}}})
        );
        assert_eq!(
            parsed(&push_join("chat:a:b", &alice())),
            json!({"push": {"channel": "chat:a:b", "join": {"info": {"user": "u1", "client": "c1"}}}})
        );
        assert_eq!(
            parsed(&push_leave("chat:a:b", &alice())),
            json!({"push": {"channel": "chat:a:b", "leave": {"info": {"user": "u1", "client": "c1"}}}})
        );
        assert_eq!(
            parsed(&push_unsubscribe("chat:a:b", 2000, "server unsubscribe")),
            json!({"push": {"channel": "chat:a:b", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}})
        );
        assert_eq!(
            push_disconnect(3001, "shutdown", true),
            r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}"#
        );
        assert_eq!(
            push_disconnect(3503, "force disconnect", false),
            r#"{"push":{"disconnect":{"code":3503,"reason":"force disconnect"}}}"#
        );
    }

    #[test]
    fn channel_names_are_escaped() {
        let channel = "chat:\"a\":b\\c\n\u{1}</script>";
        let publication = Publication {
            data: json!(1),
            ..Publication::default()
        };
        for text in [
            push_publication(channel, &publication),
            push_publication_raw(channel, 0, "1", None),
            push_join(channel, &alice()),
            push_unsubscribe(channel, 2500, "insufficient state"),
        ] {
            assert_eq!(parsed(&text)["push"]["channel"], channel, "{text}");
        }
    }

    #[test]
    fn raw_publication_push_equals_the_value_based_one() {
        let data =
            json!({"type": "message.new", "payload": {"text": "a \"quoted\" é", "n": [1, 2.5]}});
        let data_json = serde_json::to_string(&data).unwrap_or_default();
        let info = alice();
        for (offset, info) in [
            (0, None),
            (9, None),
            (0, Some(&info)),
            (u64::MAX, Some(&info)),
        ] {
            let publication = Publication {
                data: data.clone(),
                info: info.cloned(),
                offset,
                tags: None,
            };
            let expected = push_publication("chat:a:\"b\"", &publication);
            assert_eq!(
                push_publication_raw("chat:a:\"b\"", offset, &data_json, info),
                expected
            );
        }
        let empty = push_publication_raw("", 3, "", None);
        assert_eq!(
            empty,
            push_publication(
                "",
                &Publication {
                    offset: 3,
                    ..Default::default()
                }
            )
        );
        assert_eq!(empty, r#"{"push":{"pub":{"offset":3}}}"#);
    }

    #[test]
    fn ping_and_batching() {
        assert_eq!(ping(), "{}");
        let frame = join_frame(&[reply(1, "publish", &PublishResult {}), ping().to_string()]);
        assert_eq!(frame, "{\"id\":1,\"publish\":{}}\n{}");
        assert_eq!(join_frame(&[]), "");
    }
}
