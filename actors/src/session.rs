//! The realtime session: one per connection, on the node that terminates it.
//!
//! It holds the connection's authentication and subscriptions and answers the client's commands
//! (already parsed by the gateway) in order, writing every reply into the connection's bounded
//! [`Outbound`] queue. Publications do not pass through it: the node's [`Fanout`] puts them in
//! the same queue directly, so a busy channel never waits on a session.
//!
//! A session is an actor in the actor-model sense (one owner, private state, one message at a
//! time) without a task of its own: the connection's task owns it and hands it one frame at a
//! time (`../shared/design.md`). A ractor actor per connection cost a task, a mailbox and a
//! message, a wake-up and a reply per command, which every command paid and idle connections
//! could not afford.
//!
//! [`Fanout`]: crate::fanout::Fanout

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatsdk_proto::realtime::{self, Command, CommandError, Method};
use chatsdk_proto::ErrorCode;
use serde_json::{json, Value};

use crate::chat::{split_stream, Caller, Chat, NewMessage};
use crate::error::ChatError;
use crate::fanout::{ClientInfo, Subscription};
use crate::model::Message;
use crate::outbound::{CloseReason, Outbound};

/// Commands a connection may send per second on average, and in a burst; beyond that it is
/// closed with 3013.
const COMMANDS_PER_SEC: f64 = 100.0;
const COMMAND_BURST: f64 = 500.0;

/// Who a connection is, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub app: String,
    pub user: String,
    /// Token expiry, seconds since the epoch (0: never).
    pub expires_at: u64,
    /// When the token was issued (ms), compared with the user's revocation instant.
    pub issued_at_ms: u64,
}

impl Principal {
    /// `app:user`, the principal's name in presence and fanout.
    pub fn name(&self) -> String {
        crate::chat::colon_joined(&[&self.app, &self.user])
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Invalid,
    Expired,
}

/// Token checks the session needs; the gateway implements them.
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies a connection token.
    fn connect(&self, token: &str) -> Result<Principal, TokenRefusal>;
    /// Verifies a subscription token for `channel`.
    fn subscription(
        &self,
        token: &str,
        principal: &Principal,
        channel: &str,
    ) -> Result<(), TokenRefusal>;
}

/// Settings of realtime sessions.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Server ping interval announced to clients.
    pub ping_interval: Duration,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most publications one recovery returns.
    pub recover_limit: usize,
    /// This node's name, shown in connect replies.
    pub node: String,
    pub version: String,
}

/// What a session is made with.
pub struct SessionArgs {
    pub chat: Chat,
    pub auth: Arc<dyn Authenticator>,
    pub out: Arc<Outbound>,
    pub config: Arc<SessionConfig>,
    pub client_id: String,
    /// Token expiry shared with the connection's writer, which closes with 3005 after it.
    pub expires_at: Arc<AtomicU64>,
    /// Set once `connect` succeeded (the gateway closes connections that never connect).
    pub connected: Arc<AtomicBool>,
}

/// One realtime session: the connection's authentication, subscriptions and command budget.
///
/// Owned and driven by its connection's task (no task or mailbox of its own): the connection
/// hands it one frame's commands at a time and waits for them, so its state needs no lock and
/// its "mailbox" is the socket, bounded by the transport. Dropping it ends the session: its
/// subscriptions and presence go with it.
pub struct Session {
    args: SessionArgs,
    principal: Option<Principal>,
    subs: HashMap<String, Arc<Subscription>>,
    /// The connection's command budget (token bucket).
    budget: f64,
    budget_at: std::time::Instant,
}

impl Session {
    pub fn new(args: SessionArgs) -> Session {
        Session {
            args,
            principal: None,
            subs: HashMap::new(),
            budget: COMMAND_BURST,
            budget_at: std::time::Instant::now(),
        }
    }

    /// Handles one client frame's commands in order, writing every reply into the
    /// connection's queue.
    pub async fn frame(&mut self, commands: Vec<Result<Command, CommandError>>) {
        for command in commands {
            if self.args.out.closed().is_some() {
                break;
            }
            if !self.spend() {
                self.args.out.close(CloseReason::TOO_MANY_REQUESTS);
                break;
            }
            match command {
                // Boxed: the command future nests every chat call; inline, it would size the
                // connection's (long-lived) task for every connection, busy or idle.
                Ok(c) => Box::pin(self.command(c)).await,
                Err(e) => match e.reply_id() {
                    Some(id) => self.reply_error(id, e.code(), &e.to_string()),
                    None => self.args.out.close(CloseReason::BAD_REQUEST),
                },
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for sub in self.subs.values() {
            self.args.chat.fanout().unsubscribe(sub);
        }
        self.subs.clear();
        if let Some(p) = &self.principal {
            self.args
                .chat
                .fanout()
                .session_ended(&p.name(), &self.args.out);
        }
    }
}

fn frame(s: String) -> Bytes {
    Bytes::from(s)
}

fn epoch_secs() -> u64 {
    crate::time::now_ms() / 1000
}

impl Session {
    /// Takes one command from the connection's budget.
    fn spend(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.budget = (self.budget
            + now.duration_since(self.budget_at).as_secs_f64() * COMMANDS_PER_SEC)
            .min(COMMAND_BURST);
        self.budget_at = now;
        if self.budget >= 1.0 {
            self.budget -= 1.0;
            true
        } else {
            false
        }
    }

    /// False (and the connection closed) when the user was revoked or deleted after the
    /// connection's token was issued.
    fn still_valid(&self) -> bool {
        let Some(p) = &self.principal else {
            return false;
        };
        match self.args.chat.user_record(&p.app, &p.user) {
            Ok(Some(u)) if !u.deleted && u.tokens_valid_after <= p.issued_at_ms => true,
            _ => {
                self.args.out.close(CloseReason::FORCE_DISCONNECT);
                false
            }
        }
    }

    fn push(&self, s: String) {
        self.args.out.push(frame(s));
    }

    fn reply_error(&self, id: u32, code: ErrorCode, message: &str) {
        self.push(realtime::error_reply(
            id,
            code.protocol_code(),
            message,
            code.temporary(),
        ));
    }

    fn reply_chat_error(&self, id: u32, e: &ChatError) {
        self.reply_error(id, e.code(), &e.to_string());
    }

    fn caller(&self) -> Option<Caller> {
        self.principal.as_ref().map(|p| Caller {
            app: p.app.clone(),
            user: Some(p.user.clone()),
            server: false,
        })
    }

    async fn command(&mut self, c: Command) {
        let id = c.id;
        if let Method::Connect(req) = c.method {
            return self.connect(id, &req.token);
        }
        if self.principal.is_none() {
            // Everything but connect needs a connected client.
            if !matches!(c.method, Method::Pong) {
                self.args.out.close(CloseReason::BAD_REQUEST);
            }
            return;
        }
        if !matches!(
            c.method,
            Method::Pong | Method::Send(_) | Method::Unsubscribe(_)
        ) && !self.still_valid()
        {
            return;
        }
        match c.method {
            Method::Connect(_) | Method::Pong | Method::Send(_) => {}
            Method::Subscribe(req) => self.subscribe(id, req).await,
            Method::Unsubscribe(req) => {
                if let Some(sub) = self.subs.remove(&req.channel) {
                    self.args.chat.fanout().unsubscribe(&sub);
                }
                self.push(realtime::reply(id, "unsubscribe", &json!({})));
            }
            Method::Publish(req) => self.publish(id, &req.channel, &req.data).await,
            Method::History(req) => self.history(id, req).await,
            Method::Presence(req) => self.presence(id, &req.channel, false).await,
            Method::PresenceStats(req) => self.presence(id, &req.channel, true).await,
            Method::Rpc(req) => self.rpc(id, &req.method, req.data_json()).await,
            Method::Refresh(req) => match self.args.auth.connect(&req.token) {
                Ok(p)
                    if Some(&p.user) == self.principal.as_ref().map(|x| &x.user)
                        && Some(&p.app) == self.principal.as_ref().map(|x| &x.app) =>
                {
                    self.args.expires_at.store(p.expires_at, Ordering::Relaxed);
                    let ttl = p.expires_at.saturating_sub(epoch_secs());
                    self.push(realtime::reply(id, "refresh", &json!({"client": self.args.client_id, "version": self.args.config.version, "expires": p.expires_at > 0, "ttl": ttl})));
                }
                Err(TokenRefusal::Expired) => {
                    self.reply_error(id, ErrorCode::TokenExpired, "token expired")
                }
                _ => self.args.out.close(CloseReason::INVALID_TOKEN),
            },
            Method::SubRefresh(_) => self.push(realtime::reply(id, "sub_refresh", &json!({}))),
        }
    }

    fn connect(&mut self, id: u32, token: &str) {
        if self.principal.is_some() {
            return self.reply_error(id, ErrorCode::BadRequest, "already connected");
        }
        match self.args.auth.connect(token) {
            Ok(p) => {
                self.args.expires_at.store(p.expires_at, Ordering::Relaxed);
                let ttl = p.expires_at.saturating_sub(epoch_secs());
                let result = json!({
                    "client": self.args.client_id,
                    "version": self.args.config.version,
                    "expires": p.expires_at > 0,
                    "ttl": ttl,
                    "ping": self.args.config.ping_interval.as_secs(),
                    "pong": true,
                    "node": self.args.config.node,
                });
                self.args
                    .chat
                    .fanout()
                    .session_connected(&p.name(), &self.args.out);
                self.principal = Some(p);
                self.args.connected.store(true, Ordering::Relaxed);
                self.push(realtime::reply(id, "connect", &result));
            }
            Err(TokenRefusal::Expired) => {
                self.reply_error(id, ErrorCode::TokenExpired, "token expired")
            }
            Err(TokenRefusal::Invalid) => self.args.out.close(CloseReason::INVALID_TOKEN),
        }
    }

    async fn subscribe(&mut self, id: u32, req: chatsdk_proto::realtime::SubscribeRequest) {
        let Some(p) = self.principal.clone() else {
            return;
        };
        if self.subs.get(&req.channel).is_some_and(|s| s.is_closed()) {
            // Ended by the server (membership removed): the client may subscribe again.
            self.subs.remove(&req.channel);
        }
        if self.subs.contains_key(&req.channel) {
            return self.reply_error(id, ErrorCode::AlreadySubscribed, "already subscribed");
        }
        if self.subs.len() >= self.args.config.max_subscriptions {
            return self.reply_error(id, ErrorCode::LimitExceeded, "too many subscriptions");
        }
        if split_stream(&req.channel).is_none() {
            return self.reply_error(id, ErrorCode::UnknownChannel, "unknown channel");
        }
        if !req.token.is_empty() {
            match self.args.auth.subscription(&req.token, &p, &req.channel) {
                Ok(()) => {}
                Err(TokenRefusal::Expired) => {
                    return self.reply_error(
                        id,
                        ErrorCode::TokenExpired,
                        "subscription token expired",
                    )
                }
                Err(TokenRefusal::Invalid) => {
                    return self.reply_error(id, ErrorCode::Forbidden, "invalid subscription token")
                }
            }
        }
        if let Err(e) = self
            .args
            .chat
            .may_subscribe(&p.app, &p.user, &req.channel)
            .await
        {
            let code = match e.code() {
                ErrorCode::NotFound => ErrorCode::UnknownChannel,
                other => other,
            };
            return self.reply_error(id, code, &e.to_string());
        }
        let info = ClientInfo {
            client: self.args.client_id.clone(),
            user: format!("{}:{}", p.app, p.user),
        };
        // Registered before asking for the position, so nothing emitted meanwhile is missed.
        let sub = self
            .args
            .chat
            .fanout()
            .subscribe(&req.channel, info, self.args.out.clone());
        let since = req.recover.then(|| (req.epoch.clone(), req.offset));
        match self
            .args
            .chat
            .recover(&req.channel, since, self.args.config.recover_limit)
            .await
        {
            Ok(pos) => {
                let publications: Vec<Value> = pos
                    .publications
                    .iter()
                    .map(|e| json!({"data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null), "offset": e.offset}))
                    .collect();
                let result = |publications: Vec<Value>, recovered: bool| {
                    json!({
                        "recoverable": true,
                        "epoch": pos.epoch,
                        "offset": pos.offset,
                        "publications": publications,
                        "recovered": recovered,
                        "was_recovering": req.recover,
                        "positioned": true,
                    })
                };
                let mut reply =
                    realtime::reply(id, "subscribe", &result(publications, pos.recovered));
                if reply.len() > self.args.out.limit() / 2 {
                    // Too much to send in one reply: the client refetches through REST instead
                    // of being closed as slow (and retrying the same recovery) forever.
                    reply = realtime::reply(id, "subscribe", &result(Vec::new(), false));
                }
                sub.activate(frame(reply), pos.offset);
                self.subs.insert(req.channel, sub);
            }
            Err(e) => {
                self.args.chat.fanout().unsubscribe(&sub);
                self.reply_chat_error(id, &e);
            }
        }
    }

    async fn publish(&mut self, id: u32, channel: &str, data: &Value) {
        let Some(caller) = self.caller() else { return };
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
        match self.args.chat.typing(&caller, ch, typing).await {
            Ok(()) => self.push(realtime::reply(id, "publish", &json!({}))),
            Err(e) => self.reply_chat_error(id, &e),
        }
    }

    async fn history(&mut self, id: u32, req: chatsdk_proto::realtime::HistoryRequest) {
        let Some(p) = self.principal.clone() else {
            return;
        };
        if let Err(e) = self
            .args
            .chat
            .may_subscribe(&p.app, &p.user, &req.channel)
            .await
        {
            return self.reply_chat_error(id, &e);
        }
        // A negative limit asks for everything retained (bounded by the recovery limit).
        let limit = if req.limit < 0 {
            self.args.config.recover_limit
        } else {
            usize::try_from(req.limit)
                .unwrap_or(0)
                .min(self.args.config.recover_limit)
        };
        let since = req.since.map(|s| (s.epoch, s.offset));
        match self
            .args
            .chat
            .history(&req.channel, since, limit, req.reverse)
            .await
        {
            Ok(pos) => {
                let mut publications: Vec<Value> = pos
                    .publications
                    .iter()
                    .map(|e| json!({"data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null), "offset": e.offset}))
                    .collect();
                let mut reply = realtime::reply(
                    id,
                    "history",
                    &json!({"publications": publications, "epoch": pos.epoch, "offset": pos.offset}),
                );
                // Keep one reply within the connection's queue: drop the tail of the page.
                while reply.len() > self.args.out.limit() / 2 && !publications.is_empty() {
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

    async fn presence(&mut self, id: u32, channel: &str, stats: bool) {
        let Some(p) = self.principal.clone() else {
            return;
        };
        if let Err(e) = self.args.chat.may_subscribe(&p.app, &p.user, channel).await {
            return self.reply_chat_error(id, &e);
        }
        let clients = self.args.chat.presence(channel).await;
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

    async fn rpc(&mut self, id: u32, method: &str, data: &str) {
        let Some(caller) = self.caller() else { return };
        match rpc_call(&self.args.chat, &caller, method, data).await {
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
