//! The realtime client: one connection kept open, subscriptions recovered across reconnects,
//! typed events out, commands answered by id.
//!
//! [`Realtime::connect`] spawns a background task that owns the connection and returns a
//! cheap, cloneable handle plus a bounded receiver of [`Event`]s. The task sends `connect`,
//! answers server pings and closes the connection itself when they stop, matches replies to
//! commands by id, and reconnects with jittered exponential backoff when the close code asks
//! for it ([`policy`]). Each subscription's last `(epoch, offset)` is tracked (`subs`) so a
//! reconnect resubscribes with `recover: true`; the recovered publications are delivered as
//! [`Event::Publication`]s, in order, before any later one.
//!
//! Backpressure is deliberate: when the event receiver is full the task waits, stops reading,
//! and a server whose queue for us overflows closes with 3008 ("slow"); the client then
//! reconnects and recovers. Keep draining events, including while awaiting a call.
//!
//! The handle holds the task's request queue: when every handle is dropped the task closes
//! the connection and ends, and the event receiver then yields `None`.

mod driver;
mod error;
mod handshake;
pub mod policy;
mod session;
mod subs;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::protocol::{
    ChannelParams, ClientInfo, Command, HistoryParams, HistoryResult, PresenceResult,
    PresenceStatsResult, PublishParams, RefreshParams, RefreshResult, RpcParams, RpcResult,
    StreamPosition,
};
use crate::rest::Message;
use crate::wire::{Endpoint, WireOptions};
use driver::Request;
pub use error::ClientError;
pub use policy::{codes, Backoff};

/// Requests a handle may queue for the task before callers wait: callers are few and each
/// waits for its answer, so this only absorbs bursts.
const REQUEST_QUEUE: usize = 256;
/// Default event queue: enough for a burst of publications between two reads of the receiver.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default largest incoming frame. Larger than the wire default because one subscribe or
/// history reply may carry many recovered publications: the server bounds a reply by half
/// its per-connection queue (512 KiB by default), and refusing it would fail every recovery.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// The error a token refresher reports.
pub type RefreshError = Box<dyn std::error::Error + Send + Sync>;

/// Fetches a fresh realtime token (e.g. through [`crate::RestClient::refresh`]).
pub type TokenRefresher =
    Arc<dyn Fn() -> BoxFuture<'static, Result<String, RefreshError>> + Send + Sync>;

/// How to connect and how patient to be.
#[derive(Clone)]
pub struct RealtimeConfig {
    pub endpoint: Endpoint,
    /// The realtime token (`wsToken`) sent in `connect`.
    pub token: String,
    /// Asked for a new token before reconnecting when the server said the token expired
    /// (close 3005, or a `connect` refused with 109). Without one, that ends the client.
    pub token_refresher: Option<TokenRefresher>,
    /// Client name and version sent in `connect`.
    pub name: String,
    pub version: String,
    pub backoff: Backoff,
    /// How long a call waits for its reply (and `connect` for its own).
    pub request_timeout: Duration,
    /// Extra time after the announced ping interval before a silent server is given up on.
    pub ping_grace: Duration,
    /// Capacity of the event queue.
    pub event_capacity: usize,
    /// Transport limits; `max_frame_bytes` defaults to [`DEFAULT_MAX_FRAME_BYTES`].
    pub wire: WireOptions,
}

impl RealtimeConfig {
    /// Defaults for `endpoint` and `token`.
    pub fn new(endpoint: Endpoint, token: impl Into<String>) -> RealtimeConfig {
        RealtimeConfig {
            endpoint,
            token: token.into(),
            token_refresher: None,
            name: String::from("chatsdk-rust"),
            version: String::from(env!("CARGO_PKG_VERSION")),
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(10),
            ping_grace: Duration::from_secs(10),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            wire: WireOptions {
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
                ..WireOptions::default()
            },
        }
    }

    /// Sets the token refresher from an async closure.
    pub fn with_token_refresher<F, Fut>(mut self, refresher: F) -> RealtimeConfig
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, RefreshError>> + Send + 'static,
    {
        self.token_refresher = Some(Arc::new(move || Box::pin(refresher())));
        self
    }
}

/// What happened on the connection, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A connection is open and authenticated.
    Connected {
        client: String,
        node: String,
    },
    /// The connection ended. `code` is the server's close code (1000 and up), the reply code
    /// of a refused `connect` (100–199), or one of [`codes`] (below 100).
    Disconnected {
        code: u16,
        reason: String,
        will_reconnect: bool,
    },
    /// A subscription is (re)established. After a reconnect `was_recovering` is true and
    /// `recovered` says whether every missed publication follows; when false, refetch the
    /// gap through REST.
    Subscribed {
        channel: String,
        recovered: bool,
        was_recovering: bool,
        epoch: String,
        offset: u64,
    },
    /// A publication: `data` is a ChatSDK envelope `{"type", "payload"}`; `offset` is 0 for
    /// ephemeral events (typing).
    Publication {
        channel: String,
        offset: u64,
        data: Value,
        info: Option<ClientInfo>,
    },
    /// The server ended a subscription (or refused to restore it); it is not retried.
    Unsubscribed {
        channel: String,
        code: u32,
        reason: String,
    },
    Join {
        channel: String,
        info: ClientInfo,
    },
    Leave {
        channel: String,
        info: ClientInfo,
    },
    /// An asynchronous message to this connection.
    Message {
        data: Value,
    },
}

/// A handle on a realtime client; clones share the connection.
#[derive(Clone)]
pub struct Realtime {
    requests: mpsc::Sender<Request>,
    timeout: Duration,
}

/// Holds back the reconnect started by [`Realtime::reconnect_now`] until dropped.
#[doc(hidden)]
pub struct ReconnectGate {
    _release: oneshot::Sender<()>,
}

impl Realtime {
    /// Starts the client's task (on the current tokio runtime) and returns the handle and the
    /// events. The first connection is opened right away.
    pub fn connect(config: RealtimeConfig) -> (Realtime, mpsc::Receiver<Event>) {
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let (events, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let timeout = config.request_timeout;
        let span = tracing::debug_span!("realtime", endpoint = %config.endpoint);
        tokio::spawn(driver::run(config, requests_rx, events).instrument(span));
        (Realtime { requests, timeout }, events_rx)
    }

    /// Subscribes to `channel` (`chat:<app>:<channel id>`, `user:<app>:<user id>`, ...).
    /// Answers once the server has; publications come as events. Made while disconnected, it
    /// completes after the next connect. On timeout the subscription stays wanted.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        let channel = channel.to_string();
        self.ask(|reply| Request::Subscribe { channel, reply })
            .await
    }

    /// Ends the subscription to `channel` (a no-op for a channel not subscribed).
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        let channel = channel.to_string();
        self.ask(|reply| Request::Unsubscribe { channel, reply })
            .await
            .map(drop)
    }

    /// Retained publications of `channel`: at most `limit` (-1: all retained), after `since`
    /// (before it when `reverse`).
    pub async fn history(
        &self,
        channel: &str,
        limit: i32,
        since: Option<StreamPosition>,
        reverse: bool,
    ) -> Result<HistoryResult, ClientError> {
        let command = Command::History(HistoryParams {
            channel: channel.to_string(),
            limit,
            since,
            reverse,
        });
        self.call_typed(command, "history").await
    }

    /// The connections subscribed to `channel`, by client id.
    pub async fn presence(&self, channel: &str) -> Result<PresenceResult, ClientError> {
        let params = ChannelParams {
            channel: channel.to_string(),
        };
        self.call_typed(Command::Presence(params), "presence").await
    }

    /// How many connections and users are subscribed to `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStatsResult, ClientError> {
        let params = ChannelParams {
            channel: channel.to_string(),
        };
        self.call_typed(Command::PresenceStats(params), "presence_stats")
            .await
    }

    /// Publishes an ephemeral event (the server accepts `{"type": "typing.start"}` and
    /// `typing.stop` on `chat:` channels only).
    pub async fn publish(&self, channel: &str, data: Value) -> Result<(), ClientError> {
        let params = PublishParams {
            channel: channel.to_string(),
            data,
        };
        self.call(Command::Publish(params)).await.map(drop)
    }

    /// Calls a socket-native method (`message.send`, `message.edit`, `message.delete`,
    /// `typing`, `read`) and returns its `data`.
    pub async fn rpc(&self, method: &str, data: Value) -> Result<Value, ClientError> {
        let params = RpcParams {
            method: method.to_string(),
            data,
        };
        let result: RpcResult = self.call_typed(Command::Rpc(params), "rpc").await?;
        Ok(result.data)
    }

    /// Sends a message through the `message.send` RPC; answered like the REST send.
    pub async fn send_message(
        &self,
        channel_id: &str,
        text: &str,
        client_msg_id: Option<&str>,
    ) -> Result<Message, ClientError> {
        let mut data = json!({"channelId": channel_id, "text": text});
        if let Some(id) = client_msg_id {
            data["clientMsgId"] = json!(id);
        }
        let value = self.rpc("message.send", data).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Decode {
            method: "rpc",
            reason: e.to_string(),
        })
    }

    /// Extends the connection with a new token, also used for later reconnects.
    pub async fn refresh(&self, token: &str) -> Result<RefreshResult, ClientError> {
        let params = RefreshParams {
            token: token.to_string(),
        };
        self.call_typed(Command::Refresh(params), "refresh").await
    }

    /// Closes the connection and stops the client; other handles then get
    /// [`ClientError::Closed`]. Returns once the task has ended.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.requests.send(Request::Close { done }).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Drops the transport now, as a network failure would, and reconnects (recovering every
    /// subscription) once the returned gate is dropped. Returns after the
    /// [`Event::Disconnected`] is queued. For tests of recovery.
    #[doc(hidden)]
    pub async fn reconnect_now(&self) -> Result<ReconnectGate, ClientError> {
        let (release, gate) = oneshot::channel();
        self.ask(|reply| Request::Reconnect { gate, reply }).await?;
        Ok(ReconnectGate { _release: release })
    }

    async fn call(&self, command: Command) -> Result<Value, ClientError> {
        self.ask(|reply| Request::Call { command, reply }).await
    }

    async fn call_typed<T: DeserializeOwned>(
        &self,
        command: Command,
        method: &'static str,
    ) -> Result<T, ClientError> {
        let value = self.call(command).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Decode {
            method,
            reason: e.to_string(),
        })
    }

    /// Queues a request and waits for its answer, both within the request timeout.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Request,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.requests
                .send(request(reply))
                .await
                .map_err(|_| ClientError::Closed)?;
            answer.await.map_err(|_| ClientError::Closed)?
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }
}
