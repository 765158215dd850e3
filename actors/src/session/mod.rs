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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatsdk_proto::realtime::{self, Command, CommandError, Method};
use chatsdk_proto::ErrorCode;
use serde_json::{json, Value};

use crate::chat::{split_stream, Chat};
use crate::error::ChatError;
use crate::fanout::{ClientInfo, Subscription};
use crate::outbound::{CloseReason, Outbound};

mod calls;

/// Who a connection is, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub app: String,
    pub user: String,
    /// Token expiry, seconds since the epoch (0: never).
    pub expires_at: u64,
    /// When the token was issued (ms), compared with the user's revocation instant.
    /// The user's token generation the connection's token was minted at.
    pub token_generation: u64,
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
    /// The token's user is banned from the app.
    Banned,
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
    /// Commands a connection may send per second on average ...
    pub commands_per_sec: f64,
    /// ... and in a burst; beyond that it is closed with 3013.
    pub command_burst: f64,
}

/// What a session is made with.
pub struct SessionArgs {
    pub chat: Chat,
    pub auth: Arc<dyn Authenticator>,
    pub out: Arc<Outbound>,
    pub config: Arc<SessionConfig>,
    pub client_id: String,
    /// Whether the client connected and until when its token holds, shared with the
    /// connection's task (which closes connections that never connect, and with 3005 after
    /// the expiry).
    pub standing: Arc<Standing>,
}

/// A session's standing as its connection's task sees it: one word, so a connection pays one
/// small allocation for it.
#[derive(Debug)]
pub struct Standing(AtomicU64);

impl Standing {
    /// Not connected yet.
    const NOT_CONNECTED: u64 = u64::MAX;

    pub fn new() -> Standing {
        Standing(AtomicU64::new(Self::NOT_CONNECTED))
    }

    /// Connected (or refreshed) with a token that expires at `expires_at` (seconds since the
    /// epoch; 0: never).
    pub fn connected(&self, expires_at: u64) {
        self.0
            .store(expires_at.min(Self::NOT_CONNECTED - 1), Ordering::Relaxed);
    }

    /// Whether `connect` succeeded.
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Relaxed) != Self::NOT_CONNECTED
    }

    /// When the token expires (seconds since the epoch), if connected with one that does.
    pub fn expires_at(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 | Self::NOT_CONNECTED => None,
            at => Some(at),
        }
    }
}

impl Default for Standing {
    fn default() -> Self {
        Standing::new()
    }
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
    subs: HashMap<Arc<str>, Arc<Subscription>>,
    /// Who this session is in presence: made on its first subscribe, shared by all of them.
    info: Option<Arc<ClientInfo>>,
    /// The connection's command budget (token bucket).
    budget: f64,
    budget_at: std::time::Instant,
}

impl Session {
    pub fn new(args: SessionArgs) -> Session {
        let budget = args.config.command_burst;
        Session {
            args,
            principal: None,
            subs: HashMap::new(),
            info: None,
            budget,
            budget_at: std::time::Instant::now(),
        }
    }

    /// Takes one of the client's commands: answers it at once when it can, or says how it
    /// runs (see [`Step`]). Every command spends one from the connection's budget; past it the
    /// connection closes with 3013.
    pub fn dispatch(&mut self, command: Result<Command, CommandError>) -> Step {
        if self.args.out.closed().is_some() {
            return Step::Stop;
        }
        if !self.spend() {
            self.args.out.close(CloseReason::TOO_MANY_REQUESTS);
            return Step::Stop;
        }
        let c = match command {
            Ok(c) => c,
            Err(e) => match e.reply_id() {
                Some(id) => {
                    self.reply_error(id, e.code(), &e.to_string());
                    return Step::Done;
                }
                None => {
                    self.args.out.close(CloseReason::BAD_REQUEST);
                    return Step::Stop;
                }
            },
        };
        let id = c.id;
        if let Method::Connect(req) = &c.method {
            self.connect(id, &req.token);
            return Step::Done;
        }
        let Some(principal) = &self.principal else {
            // Everything but connect needs a connected client.
            if matches!(c.method, Method::Pong) {
                return Step::Done;
            }
            self.args.out.close(CloseReason::BAD_REQUEST);
            return Step::Stop;
        };
        if !matches!(
            c.method,
            Method::Pong | Method::Send(_) | Method::Unsubscribe(_)
        ) && !self.still_valid()
        {
            return Step::Stop;
        }
        match c.method {
            Method::Connect(_) | Method::Pong | Method::Send(_) => Step::Done,
            Method::Subscribe(_) => Step::Exclusive(c),
            Method::Unsubscribe(req) => {
                if let Some(sub) = self.subs.remove(req.channel.as_str()) {
                    self.args.chat.fanout().unsubscribe(&sub);
                }
                self.push(realtime::reply(id, "unsubscribe", &json!({})));
                Step::Done
            }
            Method::Refresh(req) => {
                self.refresh(id, &req.token);
                Step::Done
            }
            Method::SubRefresh(_) => {
                self.push(realtime::reply(id, "sub_refresh", &json!({})));
                Step::Done
            }
            // The rest run beside the session's other commands, with a copy of what they need
            // (made only for them).
            method => calls::Ctx {
                chat: self.args.chat.clone(),
                out: self.args.out.clone(),
                config: self.args.config.clone(),
                principal: principal.clone(),
            }
            .step(id, method),
        }
    }

    /// Runs a command that [`Session::dispatch`] returned as [`Step::Exclusive`]: nothing else
    /// of this session's may be dispatched until it is done.
    pub async fn exclusive(&mut self, c: Command) {
        if let Method::Subscribe(req) = c.method {
            // Boxed: the subscribe future nests every chat call; inline, it would size the
            // connection's (long-lived) task for every connection, busy or idle.
            Box::pin(self.subscribe(c.id, req)).await;
        }
    }

    /// Handles one client frame's commands one after the other, writing every reply into the
    /// connection's queue (what a connection without pipelining does).
    pub async fn frame(&mut self, commands: Vec<Result<Command, CommandError>>) {
        for command in commands {
            match self.dispatch(command) {
                Step::Done => {}
                Step::Stop => break,
                Step::Exclusive(c) => self.exclusive(c).await,
                Step::Call { call, .. } => call.await,
            }
        }
    }
}

/// How a command [`Session::dispatch`] took runs.
pub enum Step {
    /// Answered (or refused) already.
    Done,
    /// The connection is closing: take no more commands.
    Stop,
    /// It changes the session: run it with [`Session::exclusive`], dispatching nothing else of
    /// this session's until it is done.
    Exclusive(Command),
    /// It runs alongside the session's other commands without touching the session
    /// ([`calls`]). `ordered` calls (writes) run one at a time in the order dispatched; the
    /// others as they come.
    Call { ordered: bool, call: Call },
}

/// A command running alongside its session's others; it answers into the connection's queue.
pub type Call = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn reply_error(out: &Outbound, id: u32, code: ErrorCode, message: &str) {
    out.push(frame(realtime::error_reply(
        id,
        code.protocol_code(),
        message,
        code.temporary(),
    )));
}

fn reply_chat_error(out: &Outbound, id: u32, e: &ChatError) {
    reply_error(out, id, e.code(), &e.to_string());
}

impl Drop for Session {
    fn drop(&mut self) {
        for sub in self.subs.values() {
            self.args.chat.fanout().unsubscribe(sub);
        }
        self.subs.clear();
        if let Some(p) = &self.principal {
            let name = p.name();
            if self.args.chat.fanout().session_ended(&name, &self.args.out) {
                self.args.chat.presence_changed(&name, false);
            }
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
            + now.duration_since(self.budget_at).as_secs_f64() * self.args.config.commands_per_sec)
            .min(self.args.config.command_burst);
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
            Ok(Some(u)) if !u.deleted && u.tokens_valid_after <= p.token_generation => {
                if self.args.chat.check_not_banned(&p.app, &p.user).is_ok() {
                    return true;
                }
                self.args.out.close(CloseReason::BANNED);
                false
            }
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
        reply_error(&self.args.out, id, code, message);
    }

    fn refresh(&mut self, id: u32, token: &str) {
        match self.args.auth.connect(token) {
            Ok(p)
                if Some(&p.user) == self.principal.as_ref().map(|x| &x.user)
                    && Some(&p.app) == self.principal.as_ref().map(|x| &x.app) =>
            {
                self.args.standing.connected(p.expires_at);
                let ttl = p.expires_at.saturating_sub(epoch_secs());
                self.push(realtime::reply(id, "refresh", &json!({"client": self.args.client_id, "version": self.args.config.version, "expires": p.expires_at > 0, "ttl": ttl})));
            }
            Err(TokenRefusal::Expired) => {
                self.reply_error(id, ErrorCode::TokenExpired, "token expired")
            }
            _ => self.args.out.close(CloseReason::INVALID_TOKEN),
        }
    }

    fn connect(&mut self, id: u32, token: &str) {
        if self.principal.is_some() {
            return self.reply_error(id, ErrorCode::BadRequest, "already connected");
        }
        match self.args.auth.connect(token) {
            Ok(p) => {
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
                let name = p.name();
                if self
                    .args
                    .chat
                    .fanout()
                    .session_connected(&name, &self.args.out)
                {
                    self.args.chat.presence_changed(&name, true);
                }
                self.args.standing.connected(p.expires_at);
                self.principal = Some(p);
                self.push(realtime::reply(id, "connect", &result));
            }
            Err(TokenRefusal::Expired) => {
                self.reply_error(id, ErrorCode::TokenExpired, "token expired")
            }
            Err(TokenRefusal::Invalid) => self.args.out.close(CloseReason::INVALID_TOKEN),
            Err(TokenRefusal::Banned) => self.args.out.close(CloseReason::BANNED),
        }
    }

    async fn subscribe(&mut self, id: u32, req: chatsdk_proto::realtime::SubscribeRequest) {
        let Some(p) = self.principal.clone() else {
            return;
        };
        if self
            .subs
            .get(req.channel.as_str())
            .is_some_and(|s| s.is_closed())
        {
            // Ended by the server (membership removed): the client may subscribe again.
            self.subs.remove(req.channel.as_str());
        }
        if self.subs.contains_key(req.channel.as_str()) {
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
                Err(TokenRefusal::Invalid | TokenRefusal::Banned) => {
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
        let info = self
            .info
            .get_or_insert_with(|| {
                Arc::new(ClientInfo {
                    client: self.args.client_id.clone(),
                    user: p.name(),
                })
            })
            .clone();
        // The authors this user blocks: their events are left out of what the channel sends.
        let blocked = (req.channel.starts_with("chat:") || req.channel.starts_with("user:"))
            .then(|| self.args.chat.block_set(&p.app, &p.user))
            .flatten();
        // Registered before asking for the position, so nothing emitted meanwhile is missed.
        let sub = self.args.chat.fanout().subscribe(
            &req.channel,
            info,
            self.args.out.clone(),
            blocked.clone(),
        );
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
                    .filter(|e| !blocks_author(&blocked, e))
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
                self.subs.insert(sub.channel.clone(), sub);
            }
            Err(e) => {
                self.args.chat.fanout().unsubscribe(&sub);
                reply_chat_error(&self.args.out, id, &e);
            }
        }
    }
}

/// Whether a subscriber blocking `blocked` leaves out publication `e`.
pub(super) fn blocks_author(
    blocked: &Option<crate::fanout::BlockSet>,
    e: &crate::model::Publication,
) -> bool {
    match (blocked, &e.author) {
        (Some(b), Some(a)) => b.contains(a),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Standing;

    #[test]
    fn standing_tells_connected_and_expiry_apart() {
        let s = Standing::new();
        assert!(!s.is_connected());
        assert_eq!(s.expires_at(), None);
        s.connected(0);
        assert!(s.is_connected());
        assert_eq!(s.expires_at(), None, "0 is a token that never expires");
        s.connected(1_800_000_000);
        assert_eq!(s.expires_at(), Some(1_800_000_000));
        s.connected(u64::MAX);
        assert!(s.is_connected(), "no expiry can read as not connected");
    }
}
