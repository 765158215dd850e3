//! The commands that run alongside a session's others: they read who the client is and the
//! connection's queue, and change nothing of the session's own (subscriptions, token, budget),
//! so the connection can have several in flight (`crate::session::Step::Call`). Writes
//! (`publish` of typing events, every RPC) run one at a time in the order the client sent them,
//! so one client's messages are never reordered; reads (`history`, `presence`,
//! `presence_stats`) run side by side and may be answered before an earlier slow write.

use std::borrow::Cow;
use std::sync::Arc;

use chatsdk_proto::realtime::{self, Method};
use chatsdk_proto::ErrorCode;
use serde_json::{json, Value};

use super::{reply_chat_error, reply_error, Principal, SessionConfig, Step};
use crate::chat::{split_stream, Caller, Chat, NewMessage};
use crate::error::ChatError;
use crate::model::Message;
use crate::outbound::Outbound;

/// What a command running alongside the session needs, cloned from it.
pub(super) struct Ctx {
    pub(super) chat: Chat,
    pub(super) out: Arc<Outbound>,
    pub(super) config: Arc<SessionConfig>,
    pub(super) principal: Principal,
}

impl Ctx {
    /// The command as a call: writes ordered, reads not (see the module docs). The session
    /// answers every other method itself and never hands one here.
    pub(super) fn step(self, id: u32, method: Method) -> Step {
        let (ordered, call): (bool, super::Call) = match method {
            Method::Publish(req) => (
                true,
                Box::pin(async move { self.publish(id, &req.channel, &req.data).await }),
            ),
            Method::Rpc(req) => (
                true,
                Box::pin(async move { self.rpc(id, &req.method, req.data_json()).await }),
            ),
            Method::History(req) => (false, Box::pin(async move { self.history(id, req).await })),
            Method::Presence(req) => (
                false,
                Box::pin(async move { self.presence(id, &req.channel, false).await }),
            ),
            Method::PresenceStats(req) => (
                false,
                Box::pin(async move { self.presence(id, &req.channel, true).await }),
            ),
            // Answered by the session itself (listed, so that a new method must be placed).
            Method::Connect(_)
            | Method::Pong
            | Method::Send(_)
            | Method::Subscribe(_)
            | Method::Unsubscribe(_)
            | Method::Refresh(_)
            | Method::SubRefresh(_) => return Step::Done,
        };
        Step::Call { ordered, call }
    }

    fn caller(&self) -> Caller {
        Caller {
            app: self.principal.app.clone(),
            user: Some(self.principal.user.clone()),
            server: false,
        }
    }

    fn push(&self, s: String) {
        self.out.push(bytes::Bytes::from(s));
    }

    fn reply_error(&self, id: u32, code: ErrorCode, message: &str) {
        reply_error(&self.out, id, code, message);
    }

    fn reply_chat_error(&self, id: u32, e: &ChatError) {
        reply_chat_error(&self.out, id, e);
    }

    pub(super) async fn publish(&self, id: u32, channel: &str, data: &Value) {
        let caller = self.caller();
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        let typing =
            match kind {
                "typing.start" => true,
                "typing.stop" => false,
                _ => return self.reply_error(
                    id,
                    ErrorCode::Forbidden,
                    "only typing events may be published; send messages with the message.send rpc",
                ),
            };
        let Some(("chat", app, ch)) = split_stream(channel) else {
            return self.reply_error(
                id,
                ErrorCode::Forbidden,
                "publish is allowed on chat channels only",
            );
        };
        if app != caller.app {
            return self.reply_error(id, ErrorCode::Forbidden, "channel of another app");
        }
        match self.chat.typing(&caller, ch, typing).await {
            Ok(()) => self.push(realtime::reply(id, "publish", &json!({}))),
            Err(e) => self.reply_chat_error(id, &e),
        }
    }

    pub(super) async fn history(&self, id: u32, req: chatsdk_proto::realtime::HistoryRequest) {
        let p = &self.principal;
        if let Err(e) = self.chat.may_subscribe(&p.app, &p.user, &req.channel).await {
            return self.reply_chat_error(id, &e);
        }
        // A negative limit asks for everything retained (bounded by the recovery limit).
        let limit = if req.limit < 0 {
            self.config.recover_limit
        } else {
            usize::try_from(req.limit)
                .unwrap_or(0)
                .min(self.config.recover_limit)
        };
        let since = req.since.map(|s| (s.epoch, s.offset));
        match self
            .chat
            .history(&req.channel, since, limit, req.reverse)
            .await
        {
            Ok(pos) => {
                let blocked = (req.channel.starts_with("chat:")
                    || req.channel.starts_with("user:"))
                .then(|| self.chat.block_set(&p.app, &p.user))
                .flatten();
                let mut publications: Vec<Value> = pos
                    .publications
                    .iter()
                    .filter(|e| !super::blocks_author(&blocked, e))
                    .map(|e| json!({"data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null), "offset": e.offset}))
                    .collect();
                let mut reply = realtime::reply(
                    id,
                    "history",
                    &json!({"publications": publications, "epoch": pos.epoch, "offset": pos.offset}),
                );
                // Keep one reply within the connection's queue: drop the tail of the page.
                while reply.len() > self.out.limit() / 2 && !publications.is_empty() {
                    let keep = publications.len() / 2;
                    publications.truncate(keep);
                    reply = realtime::reply(
                        id,
                        "history",
                        &json!({"publications": publications, "epoch": pos.epoch, "offset": pos.offset}),
                    );
                }
                self.push(reply);
            }
            Err(ChatError::Conflict(_)) => self.reply_error(
                id,
                ErrorCode::UnrecoverablePosition,
                "unrecoverable position",
            ),
            Err(e) => self.reply_chat_error(id, &e),
        }
    }

    pub(super) async fn presence(&self, id: u32, channel: &str, stats: bool) {
        let p = &self.principal;
        if let Err(e) = self.chat.may_subscribe(&p.app, &p.user, channel).await {
            return self.reply_chat_error(id, &e);
        }
        let clients = self.chat.presence(channel).await;
        if stats {
            let users: std::collections::BTreeSet<&str> =
                clients.iter().map(|c| c.user.as_str()).collect();
            self.push(realtime::reply(
                id,
                "presence_stats",
                &json!({"num_clients": clients.len(), "num_users": users.len()}),
            ));
        } else {
            let map: serde_json::Map<String, Value> = clients
                .iter()
                .map(|c| {
                    (
                        c.client.clone(),
                        json!({"user": c.user, "client": c.client}),
                    )
                })
                .collect();
            self.push(realtime::reply(id, "presence", &json!({"presence": map})));
        }
    }

    pub(super) async fn rpc(&self, id: u32, method: &str, data: &str) {
        let caller = self.caller();
        match rpc_call(&self.chat, &caller, method, data).await {
            Ok(answer) => match answer.json() {
                Ok(data) => self.push(realtime::rpc_reply_raw(id, &data)),
                Err(e) => {
                    tracing::error!(error = %e, "rpc answer did not serialize");
                    self.reply_error(id, ErrorCode::Internal, "internal server error")
                }
            },
            Err(RpcError::Chat(e)) => self.reply_chat_error(id, &e),
            Err(RpcError::UnknownMethod) => {
                self.reply_error(id, ErrorCode::MethodNotFound, "unknown rpc method")
            }
        }
    }
}

/// Why an RPC was not served.
enum RpcError {
    UnknownMethod,
    Chat(ChatError),
}

impl From<ChatError> for RpcError {
    fn from(e: ChatError) -> Self {
        RpcError::Chat(e)
    }
}

/// What an RPC answers, in the Client API's camelCase (as REST answers a bearer token).
enum RpcAnswer {
    Sent(Box<Message>, bool),
    /// A new message, already rendered for its event: its JSON is the answer as is.
    Rendered(Arc<str>),
    Message(Box<Message>),
    Success,
    Read(u64),
}

impl RpcAnswer {
    /// The answer's `data` as JSON text, spliced into the reply frame: a rendered message as
    /// it is, anything else serialized now.
    fn json(&self) -> Result<Cow<'_, str>, serde_json::Error> {
        use crate::render::camel;
        let text = match self {
            RpcAnswer::Rendered(json) => return Ok(Cow::Borrowed(json)),
            RpcAnswer::Sent(m, duplicate) => {
                serde_json::to_string(&camel::SentView::new(m, *duplicate))
            }
            RpcAnswer::Message(m) => serde_json::to_string(&camel::MessageView::from(&**m)),
            RpcAnswer::Success => serde_json::to_string(&Success {
                success: true,
                last_read_seq: None,
            }),
            RpcAnswer::Read(seq) => serde_json::to_string(&Success {
                success: true,
                last_read_seq: Some(*seq),
            }),
        };
        text.map(Cow::Owned)
    }
}

/// `{"success": true}`, with the read position for `read`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Success {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_read_seq: Option<u64>,
}

/// One RPC through the command layer, answered as the REST API would answer.
async fn rpc_call(
    chat: &Chat,
    caller: &Caller,
    method: &str,
    data: &str,
) -> Result<RpcAnswer, RpcError> {
    Ok(match method {
        "message.send" => {
            let (channel_id, message) = rpc_args::<SendArgs>(data)?.split();
            let sent = chat.send_message(caller, &channel_id, message).await?;
            match sent.rendered {
                Some(json) if !sent.duplicate => RpcAnswer::Rendered(json),
                _ => RpcAnswer::Sent(Box::new(sent.message), sent.duplicate),
            }
        }
        "message.edit" => {
            let a: EditArgs = rpc_args(data)?;
            let m = chat
                .edit_message(caller, &a.channel_id, &a.message_id, a.text)
                .await?;
            RpcAnswer::Message(Box::new(m))
        }
        "message.delete" => {
            let a: MessageArgs = rpc_args(data)?;
            chat.delete_message(caller, &a.channel_id, &a.message_id, false)
                .await?;
            RpcAnswer::Success
        }
        "typing" => {
            let a: TypingArgs = rpc_args(data)?;
            let typing = a.typing != Some(Value::Bool(false));
            chat.typing(caller, &a.channel_id, typing).await?;
            RpcAnswer::Success
        }
        "read" => {
            let a: ChannelArgs = rpc_args(data)?;
            RpcAnswer::Read(chat.mark_read(caller, &a.channel_id).await?)
        }
        _ => return Err(RpcError::UnknownMethod),
    })
}

/// Decodes an RPC's `data` (its JSON text) into its typed arguments; a wrong shape is a bad
/// request that says which field.
fn rpc_args<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, ChatError> {
    serde_json::from_str(data).map_err(|e| ChatError::BadRequest(format!("invalid rpc data: {e}")))
}

/// `message.send`: the channel and the message, as the REST body spells it ([`NewMessage`]'s
/// fields beside `channelId`; spelled out rather than `#[serde(flatten)]`, which would buffer
/// the arguments into an intermediate tree first).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendArgs {
    #[serde(alias = "channel_id")]
    channel_id: String,
    text: String,
    #[serde(default, alias = "client_msg_id")]
    client_msg_id: Option<String>,
    #[serde(default)]
    attachments: Option<Value>,
    #[serde(default, alias = "parent_id")]
    parent_id: Option<String>,
    #[serde(default, alias = "reply_to_id")]
    reply_to_id: Option<String>,
}

impl SendArgs {
    /// The channel and the message.
    fn split(self) -> (String, NewMessage) {
        let message = NewMessage {
            text: self.text,
            client_msg_id: self.client_msg_id,
            attachments: self.attachments,
            parent_id: self.parent_id,
            reply_to_id: self.reply_to_id,
        };
        (self.channel_id, message)
    }
}

/// `message.edit`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditArgs {
    #[serde(alias = "channel_id")]
    channel_id: String,
    #[serde(alias = "message_id")]
    message_id: String,
    text: String,
}

/// `message.delete`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageArgs {
    #[serde(alias = "channel_id")]
    channel_id: String,
    #[serde(alias = "message_id")]
    message_id: String,
}

/// `typing`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingArgs {
    #[serde(alias = "channel_id")]
    channel_id: String,
    /// Absent, null or anything but `false` means "started typing", as before.
    #[serde(default)]
    typing: Option<Value>,
}

/// `read`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelArgs {
    #[serde(alias = "channel_id")]
    channel_id: String,
}
