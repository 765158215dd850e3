//! Client → server: decoding commands out of text frames.
//!
//! A frame holds one or more JSON objects separated by `\n`; each is
//! `{"id": <u32>, "<method>": {...params}}`, and `{}` is the client's pong. Decoding checks
//! shape only (types, ids, exactly one method); whether a channel exists or a token is valid
//! is the gateway's business. Rules taken from `centrifugal/centrifuge`:
//!
//! * unknown keys, at the top level and inside params, are ignored (newer clients send more);
//! * a `null` value counts as absent, as in the Go decoder, at any depth of the params;
//! * a repeated key counts once, with its last value (as a JSON map reads it);
//! * values under keys this server does not know are skipped, not checked, and an RPC's
//!   `data` is checked when its method parses it;
//! * an object without a method and without an id (or with `"id": 0`) is a pong;
//! * every method needs a non-zero id except `send`, which is fire-and-forget and which the
//!   `centrifuge` clients send without one.

use std::fmt;

use serde_json::value::RawValue;

use super::request::{
    ConnectRequest, HistoryRequest, PresenceRequest, PresenceStatsRequest, PublishRequest,
    RefreshRequest, RpcRequest, SendRequest, SubRefreshRequest, SubscribeRequest,
    UnsubscribeRequest,
};
use crate::error::ErrorCode;

/// One decoded client command.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The id the reply carries. Zero only for [`Method::Pong`] and [`Method::Send`], which get
    /// no reply.
    pub id: u32,
    /// What the client asks for, with its params.
    pub method: Method,
}

/// The method of a [`Command`] and its params.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    Connect(ConnectRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    Publish(PublishRequest),
    Presence(PresenceRequest),
    PresenceStats(PresenceStatsRequest),
    History(HistoryRequest),
    /// An asynchronous message to the server; never answered.
    Send(SendRequest),
    Rpc(RpcRequest),
    Refresh(RefreshRequest),
    SubRefresh(SubRefreshRequest),
    /// The client's answer (`{}`) to a server ping.
    Pong,
}

impl Method {
    /// The method's key in the command, which is also the key of the reply's result
    /// (`"presence_stats"`, ...). [`Method::Pong`] has no key on the wire; it is named `"pong"`
    /// for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Connect(_) => "connect",
            Method::Subscribe(_) => "subscribe",
            Method::Unsubscribe(_) => "unsubscribe",
            Method::Publish(_) => "publish",
            Method::Presence(_) => "presence",
            Method::PresenceStats(_) => "presence_stats",
            Method::History(_) => "history",
            Method::Send(_) => "send",
            Method::Rpc(_) => "rpc",
            Method::Refresh(_) => "refresh",
            Method::SubRefresh(_) => "sub_refresh",
            Method::Pong => "pong",
        }
    }
}

/// Why one object of a frame is not a usable command, and so how the connection reacts.
///
/// [`CommandError::reply_id`] says whether the connection survives with an error reply or must
/// be closed with 3501 (bad request); [`CommandError::code`] gives the reply's error code.
/// No variant carries the client's text: messages from serde are stripped of quoted values so
/// a token or message body never reaches a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Not JSON, not a JSON object, or an `id` that is not an integer in `0..=u32::MAX`. There
    /// is no id to answer: close the connection with 3501.
    Malformed { reason: String },
    /// A method other than `send` with no id (or id 0): nothing to answer, close with 3501.
    /// (Centrifuge closes the connection in this case too.)
    MissingId { method: &'static str },
    /// A JSON object with an id but no method this server knows: reply 104 (method not found).
    UnknownMethod { id: u32 },
    /// A known method whose params do not decode, or more than one method in one object:
    /// reply 107 (bad request). With id 0 (a `send`, or several methods and no id) there is
    /// nothing to reply to: close with 3501, as for [`CommandError::Malformed`].
    InvalidParams {
        id: u32,
        method: &'static str,
        reason: String,
    },
}

impl CommandError {
    /// The id to send an error reply to, or `None` when the connection must be closed instead.
    pub fn reply_id(&self) -> Option<u32> {
        match self {
            CommandError::UnknownMethod { id } | CommandError::InvalidParams { id, .. }
                if *id != 0 =>
            {
                Some(*id)
            }
            _ => None,
        }
    }

    /// The error vocabulary entry: `MethodNotFound` (104) for an unknown method, `BadRequest`
    /// (107, close code 3501) for everything else.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::UnknownMethod { .. } => ErrorCode::MethodNotFound,
            _ => ErrorCode::BadRequest,
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Malformed { reason } => write!(f, "malformed command: {reason}"),
            CommandError::MissingId { method } => write!(f, "{method} command without an id"),
            CommandError::UnknownMethod { id } => write!(f, "unknown method in command {id}"),
            CommandError::InvalidParams { id, method, reason } => {
                write!(f, "invalid {method} params in command {id}: {reason}")
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// Decodes a text frame: one command result per non-blank `\n`-separated line, in order.
/// A frame of only blank lines yields nothing.
pub fn parse_frame(text: &str) -> Vec<Result<Command, CommandError>> {
    text.split('\n')
        .filter(|line| !line.trim().is_empty())
        .map(parse_command)
        .collect()
}

/// Decodes one JSON object (one line of a WebSocket frame, or one QUIC frame).
///
/// The object is read once: its top level borrows each method's params as raw text, and only
/// the params of the one method present are parsed, straight into their type.
pub fn parse_command(json: &str) -> Result<Command, CommandError> {
    if !json.trim_start().starts_with('{') {
        // Checked first: a derived struct would also accept a JSON array.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(json) {
            Err(e) => malformed(&e),
            Ok(_) => CommandError::Malformed {
                reason: String::from("a command must be a json object"),
            },
        });
    }
    match serde_json::from_str::<Envelope<'_>>(json) {
        Ok(envelope) => from_envelope(envelope),
        // A repeated key is valid JSON (the last one counts) but refused by a derived struct:
        // such a command is read once more with its repeats dropped.
        Err(e) if is_duplicate_field(&e) => {
            let text = without_repeated_keys(json).ok_or_else(|| malformed(&e))?;
            let envelope =
                serde_json::from_str::<Envelope<'_>>(&text).map_err(|e| malformed(&e))?;
            from_envelope(envelope)
        }
        Err(e) => Err(malformed(&e)),
    }
}

/// A command that is not JSON, with serde's reason (client text redacted).
fn malformed(e: &serde_json::Error) -> CommandError {
    CommandError::Malformed {
        reason: redact(&e.to_string()),
    }
}

/// Whether serde refused an object for a key it saw twice.
fn is_duplicate_field(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("duplicate field")
}

/// `json` written again with each object's repeated keys dropped, the last value kept (as a
/// JSON map reads them); `None` when it is not JSON.
fn without_repeated_keys(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .map(|v| v.to_string())
}

/// The command an envelope holds: its id, its one method and that method's params.
fn from_envelope(envelope: Envelope<'_>) -> Result<Command, CommandError> {
    let id = match envelope.id {
        None => 0,
        Some(id) => serde_json::from_str::<u64>(id.get())
            .ok()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| CommandError::Malformed {
                reason: String::from("id must be an integer from 0 to 4294967295"),
            })?,
    };

    let params = envelope.params();
    let mut present = METHODS
        .iter()
        .zip(params)
        .filter_map(|(method, params)| Some((method, params?)));
    let Some((&(method, decode), params)) = present.next() else {
        return match id {
            0 => Ok(Command {
                id,
                method: Method::Pong,
            }),
            id => Err(CommandError::UnknownMethod { id }),
        };
    };
    if let Some(((other, _), _)) = present.next() {
        return Err(CommandError::InvalidParams {
            id,
            method,
            reason: format!("more than one method in one command ({method}, {other})"),
        });
    }

    if id == 0 && method != "send" {
        return Err(CommandError::MissingId { method });
    }

    let decoded = match decode(params.get()) {
        Err(e) if is_duplicate_field(&e) => match without_repeated_keys(params.get()) {
            Some(text) => decode(&text),
            None => Err(e),
        },
        other => other,
    };
    let method = decoded.map_err(|e| CommandError::InvalidParams {
        id,
        method,
        reason: redact(&e.to_string()),
    })?;
    Ok(Command { id, method })
}

/// The top level of a command, borrowed from its text: the id and each method's params
/// unparsed. `null` reads as absent (serde's `Option`); unknown keys are ignored.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    connect: Option<&'a RawValue>,
    #[serde(borrow, default)]
    subscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unsubscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    publish: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence_stats: Option<&'a RawValue>,
    #[serde(borrow, default)]
    history: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    send: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refresh: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sub_refresh: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Each method's params, in the order of [`METHODS`].
    fn params(&self) -> [Option<&'a RawValue>; 11] {
        [
            self.connect,
            self.subscribe,
            self.unsubscribe,
            self.publish,
            self.presence,
            self.presence_stats,
            self.history,
            self.rpc,
            self.send,
            self.refresh,
            self.sub_refresh,
        ]
    }
}

type Decoder = fn(&str) -> serde_json::Result<Method>;

/// Every method a client may send, in the order `centrifuge` checks them.
const METHODS: [(&str, Decoder); 11] = [
    ("connect", |p| serde_json::from_str(p).map(Method::Connect)),
    ("subscribe", |p| {
        serde_json::from_str(p).map(Method::Subscribe)
    }),
    ("unsubscribe", |p| {
        serde_json::from_str(p).map(Method::Unsubscribe)
    }),
    ("publish", |p| serde_json::from_str(p).map(Method::Publish)),
    ("presence", |p| {
        serde_json::from_str(p).map(Method::Presence)
    }),
    ("presence_stats", |p| {
        serde_json::from_str(p).map(Method::PresenceStats)
    }),
    ("history", |p| serde_json::from_str(p).map(Method::History)),
    ("rpc", |p| serde_json::from_str(p).map(Method::Rpc)),
    ("send", |p| serde_json::from_str(p).map(Method::Send)),
    ("refresh", |p| serde_json::from_str(p).map(Method::Refresh)),
    ("sub_refresh", |p| {
        serde_json::from_str(p).map(Method::SubRefresh)
    }),
];

/// Replaces quoted text in a serde message with `"…"`: serde quotes the client's strings
/// (`invalid type: string "<token>", expected u64`), and those must not reach logs.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') => {
                out.push_str("\"…\"");
                quoted = true;
            }
            (false, c) => out.push(c),
            (true, '"') => quoted = false,
            (true, '\\') => {
                chars.next();
            }
            (true, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::{ConnectSubscription, StreamPosition};
    use serde_json::json;

    fn one(line: &str) -> Result<Command, CommandError> {
        let mut all = parse_frame(line);
        assert_eq!(all.len(), 1, "{line}");
        all.remove(0)
    }

    fn ok(line: &str) -> Command {
        match one(line) {
            Ok(command) => command,
            Err(e) => panic!("{line}: {e}"),
        }
    }

    #[test]
    fn every_method_decodes_with_its_params() {
        let frame = [
            r#"{"id":1,"connect":{"token":"t","name":"js","version":"5.0","data":{"a":1},"subs":{"chat:a:b":{"recover":true,"epoch":"e","offset":7}}}}"#,
            r#"{"id":2,"subscribe":{"channel":"chat:a:b","recover":true,"epoch":"e","offset":18446744073709551615,"positioned":true,"recoverable":true,"join_leave":true,"data":[1]}}"#,
            r#"{"id":3,"unsubscribe":{"channel":"chat:a:b"}}"#,
            r#"{"id":4,"publish":{"channel":"chat:a:b","data":{"type":"typing"}}}"#,
            r#"{"id":5,"presence":{"channel":"chat:a:b"}}"#,
            r#"{"id":6,"presence_stats":{"channel":"chat:a:b"}}"#,
            r#"{"id":7,"history":{"channel":"chat:a:b","limit":-1,"since":{"offset":3,"epoch":"e"},"reverse":true}}"#,
            r#"{"send":{"data":"hi"}}"#,
            r#"{"id":9,"rpc":{"method":"message.send","data":{"text":"x"}}}"#,
            r#"{"id":10,"refresh":{"token":"t2"}}"#,
            r#"{"id":11,"sub_refresh":{"channel":"chat:a:b","token":"t3"}}"#,
        ]
        .join("\n");
        let commands: Vec<Command> = parse_frame(&frame).into_iter().flatten().collect();
        let names: Vec<&str> = commands.iter().map(|c| c.method.name()).collect();
        assert_eq!(
            names,
            [
                "connect",
                "subscribe",
                "unsubscribe",
                "publish",
                "presence",
                "presence_stats",
                "history",
                "send",
                "rpc",
                "refresh",
                "sub_refresh"
            ]
        );
        let Method::Connect(connect) = &commands[0].method else {
            panic!("{:?}", commands[0])
        };
        assert_eq!((connect.token.as_str(), connect.name.as_str()), ("t", "js"));
        assert_eq!(connect.data, json!({"a": 1}));
        assert_eq!(
            connect.subs["chat:a:b"],
            ConnectSubscription {
                recover: true,
                epoch: "e".into(),
                offset: 7
            }
        );
        let expected = SubscribeRequest {
            channel: "chat:a:b".into(),
            token: String::new(),
            recover: true,
            epoch: "e".into(),
            offset: u64::MAX,
            data: json!([1]),
            positioned: true,
            recoverable: true,
            join_leave: true,
        };
        assert_eq!(commands[1].method, Method::Subscribe(expected));
        let Method::History(history) = &commands[6].method else {
            panic!("{:?}", commands[6])
        };
        assert_eq!((history.limit, history.reverse), (-1, true));
        assert_eq!(
            history.since,
            Some(StreamPosition {
                offset: 3,
                epoch: "e".into()
            })
        );
        assert_eq!(commands[7].id, 0, "send needs no id");
        assert_eq!(
            commands[7].method,
            Method::Send(SendRequest { data: json!("hi") })
        );
        let Method::Rpc(rpc) = &commands[8].method else {
            panic!("{:?}", commands[8])
        };
        assert_eq!(rpc.method, "message.send");
        assert_eq!(
            rpc.data_json(),
            r#"{"text":"x"}"#,
            "rpc data is kept as written"
        );
        assert_eq!(commands[10].id, 11);
    }

    #[test]
    fn frames_split_on_newlines_and_skip_blank_lines() {
        let frame = "{\"id\":1,\"presence\":{\"channel\":\"a\"}}\r\n\n  \n{}\nnope\n{\"id\":2,\"unsubscribe\":{}}\n";
        let results = parse_frame(frame);
        assert_eq!(results.len(), 4);
        assert_eq!(results[0].as_ref().map(|c| c.id), Ok(1));
        assert_eq!(results[1].as_ref().map(|c| &c.method), Ok(&Method::Pong));
        assert!(matches!(results[2], Err(CommandError::Malformed { .. })));
        assert_eq!(results[3].as_ref().map(|c| c.id), Ok(2));
        assert!(parse_frame("").is_empty());
        assert!(parse_frame("\n\n").is_empty());
    }

    #[test]
    fn an_object_without_method_and_id_is_a_pong() {
        for pong in [
            "{}",
            r#"{"id":0}"#,
            r#"{"id":null}"#,
            r#"{"future_field":1}"#,
        ] {
            assert_eq!(ok(pong).method, Method::Pong, "{pong}");
        }
    }

    #[test]
    fn unknown_method_is_answered_with_104() {
        let err = one(r#"{"id":7,"ping":{}}"#).unwrap_err();
        assert_eq!(err, CommandError::UnknownMethod { id: 7 });
        assert_eq!(err.reply_id(), Some(7));
        assert_eq!(err.code().protocol_code(), 104);
        // A method key whose value is null counts as absent, as in the Go decoder.
        assert_eq!(
            one(r#"{"id":8,"subscribe":null}"#),
            Err(CommandError::UnknownMethod { id: 8 })
        );
    }

    #[test]
    fn invalid_params_are_answered_with_107() {
        for line in [
            r#"{"id":3,"subscribe":"chat:a:b"}"#,
            r#"{"id":3,"subscribe":{"channel":{"nested":true}}}"#,
            r#"{"id":3,"subscribe":{"offset":-1}}"#,
            r#"{"id":3,"history":{"limit":"ten"}}"#,
            r#"{"id":3,"connect":{"subs":{"a":{"offset":"x"}}}}"#,
            r#"{"id":3,"rpc":{"method":1}}"#,
            r#"{"id":3,"subscribe":{},"unsubscribe":{}}"#,
        ] {
            let err = one(line).unwrap_err();
            assert!(
                matches!(err, CommandError::InvalidParams { id: 3, .. }),
                "{line}: {err:?}"
            );
            assert_eq!(err.reply_id(), Some(3));
            assert_eq!(err.code().protocol_code(), 107);
        }
    }

    #[test]
    fn error_messages_never_echo_client_strings() {
        let err = one(r#"{"id":3,"subscribe":{"offset":"secret-token-\"x"}}"#).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.starts_with("invalid subscribe params in command 3: "),
            "{text}"
        );
        assert!(text.contains("u64"), "{text}");
    }

    #[test]
    fn malformed_input_closes_the_connection() {
        let deep = "[".repeat(100_000);
        let deep_params = format!(r#"{{"id":1,"rpc":{{"data":{}}}}}"#, "[".repeat(10_000));
        for line in [
            "not json",
            "{",
            r#"{"id":1,"subscribe":{}} trailing"#,
            "[1,2]",
            r#""string""#,
            "42",
            "null",
            deep.as_str(),
            deep_params.as_str(),
        ] {
            let err = one(line).unwrap_err();
            assert!(matches!(err, CommandError::Malformed { .. }), "{err:?}");
            assert_eq!(err.reply_id(), None);
            assert_eq!(err.code().close_code(), Some(3501));
        }
    }

    #[test]
    fn ids_must_fit_in_u32() {
        for line in [
            r#"{"id":4294967296,"subscribe":{}}"#,
            r#"{"id":18446744073709551616,"subscribe":{}}"#,
            r#"{"id":-1,"subscribe":{}}"#,
            r#"{"id":1.5,"subscribe":{}}"#,
            r#"{"id":"1","subscribe":{}}"#,
            r#"{"id":{},"subscribe":{}}"#,
        ] {
            assert!(
                matches!(one(line), Err(CommandError::Malformed { .. })),
                "{line}"
            );
        }
        assert_eq!(ok(r#"{"id":4294967295,"presence":{}}"#).id, u32::MAX);
    }

    #[test]
    fn methods_other_than_send_need_an_id() {
        for line in [r#"{"subscribe":{"channel":"a"}}"#, r#"{"id":0,"rpc":{}}"#] {
            let err = one(line).unwrap_err();
            assert!(matches!(err, CommandError::MissingId { .. }), "{err:?}");
            assert_eq!(err.reply_id(), None);
        }
        assert_eq!(ok(r#"{"id":5,"send":{}}"#).id, 5);
        let err = one(r#"{"send":{"data":1},"rpc":{}}"#).unwrap_err();
        assert!(matches!(err, CommandError::InvalidParams { id: 0, .. }));
        assert_eq!(err.reply_id(), None, "nothing to answer for a send");
    }

    #[test]
    fn newer_fields_and_nulls_are_tolerated() {
        let command = ok(
            r#"{"id":2,"future":{"x":1},"subscribe":{"channel":"a","delta":"fossil","tf":{"op":"and"},"token":null,"offset":null,"data":null}}"#,
        );
        assert_eq!(
            command.method,
            Method::Subscribe(SubscribeRequest {
                channel: "a".into(),
                ..SubscribeRequest::default()
            })
        );
        let Method::History(nested) =
            ok(r#"{"id":1,"history":{"since":{"offset":null,"epoch":"e"}}}"#).method
        else {
            panic!("not a history command")
        };
        assert_eq!(
            nested.since,
            Some(StreamPosition {
                offset: 0,
                epoch: "e".into()
            }),
            "a null inside a position reads as absent too"
        );
        let Method::Rpc(rpc) = ok(r#"{"id":1,"rpc":{"method":"typing","data":null}}"#).method
        else {
            panic!("not an rpc command")
        };
        assert_eq!(rpc.data_json(), "null");
        let Method::History(history) = ok(r#"{"id":1,"history":{"since":null}}"#).method else {
            panic!()
        };
        assert_eq!(history.since, None);
    }

    #[test]
    fn a_repeated_key_counts_once_with_its_last_value() {
        let c = ok(r#"{"id":1,"id":2,"presence":{"channel":"a"}}"#);
        assert_eq!(c.id, 2);
        let Method::Presence(p) = ok(r#"{"id":1,"presence":{"channel":"a","channel":"b"}}"#).method
        else {
            panic!("not a presence command")
        };
        assert_eq!(p.channel, "b");
        let Method::Subscribe(s) =
            ok(r#"{"id":1,"subscribe":null,"subscribe":{"channel":"c"}}"#).method
        else {
            panic!("not a subscribe command")
        };
        assert_eq!(s.channel, "c");
    }

    #[test]
    fn errors_display_lowercase() {
        let errors = [
            CommandError::Malformed { reason: "x".into() },
            CommandError::MissingId { method: "rpc" },
            CommandError::UnknownMethod { id: 1 },
            CommandError::InvalidParams {
                id: 1,
                method: "rpc",
                reason: "x".into(),
            },
        ];
        for err in errors {
            let text = err.to_string();
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
            let _: &dyn std::error::Error = &err;
        }
    }
}

/// The client protocol's frame parser fed arbitrary text and mutated valid frames (`fuzz_`
/// tests; `PROPTEST_CASES=...` for longer runs): every command is parsed or refused, never a
/// panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    const VALID: &str = concat!(
        r#"{"id":1,"connect":{"token":"t","name":"js"}}"#,
        "\n",
        r#"{"id":2,"subscribe":{"channel":"chat:a:b","recover":true,"epoch":"e","offset":7}}"#,
        "\n",
        r#"{"id":3,"publish":{"channel":"chat:a:b","data":{"text":"hi"}}}"#,
        "\n{}\n",
        r#"{"id":4,"history":{"channel":"chat:a:b","limit":10,"since":{"offset":1,"epoch":"e"}}}"#,
    );

    proptest! {
        #[test]
        fn fuzz_arbitrary_text_never_panics(text in any::<String>()) {
            crate::fuzzing::client_frame(text.as_bytes());
        }

        #[test]
        fn fuzz_quic_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            crate::fuzzing::quic_stream(&bytes);
        }

        #[test]
        fn fuzz_mutated_frames_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..12),
        ) {
            let mut text: Vec<char> = VALID.chars().collect();
            for (at, c, op) in edits {
                let i = at.index(text.len() + 1);
                match op {
                    0 => text.insert(i, c),
                    1 if i < text.len() => {
                        text.remove(i);
                    }
                    _ if i < text.len() => text[i] = c,
                    _ => {}
                }
            }
            let text: String = text.into_iter().collect();
            crate::fuzzing::client_frame(text.as_bytes());
        }
    }
}
