//! The background task's outer loop: open a connection, run it ([`super::session`]), decide
//! from how it ended whether to come back and how soon, and serve the handle's requests while
//! no connection is open (subscriptions are remembered, calls wait in a bounded queue).

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::handshake::{self, Dial, HandshakeError};
use super::policy::{codes, should_reconnect, CONNECTION_EXPIRED, TOKEN_EXPIRED};
use super::subs::Subscriptions;
use super::{session, ClientError, Event, RealtimeConfig};
use crate::protocol::{Command, ConnectParams};
use crate::wire::{Endpoint, QuicConnector, WireError};

/// Calls made while disconnected, sent once a connection is open. Each caller waits for its
/// answer within the request timeout, so this only absorbs a burst during a reconnect.
const MAX_WAITING: usize = 1024;

pub(super) type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// What a handle asks of the task.
pub(super) enum Request {
    Subscribe {
        channel: String,
        reply: Reply<()>,
    },
    Unsubscribe {
        channel: String,
        reply: Reply<Value>,
    },
    Call {
        command: Command,
        reply: Reply<Value>,
    },
    Reconnect {
        gate: oneshot::Receiver<()>,
        reply: Reply<()>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// How a connection (or an attempt at one) ended.
pub(super) struct Ended {
    pub(super) code: u16,
    pub(super) reason: String,
    pub(super) reconnect: bool,
}

impl Ended {
    pub(super) fn new(code: u16, reason: impl Into<String>) -> Ended {
        Ended {
            code,
            reason: reason.into(),
            reconnect: should_reconnect(code),
        }
    }

    /// A transport failure: reconnect, except when the server's frame was over our limit
    /// (reported as 1009, "message too big", which a reconnect would repeat).
    pub(super) fn transport(e: &WireError) -> Ended {
        match e {
            WireError::Frame(_) => Ended::new(1009, e.to_string()),
            _ => Ended::new(codes::TRANSPORT_CLOSED, e.to_string()),
        }
    }
}

/// The task's state across connections.
pub(super) struct Driver {
    pub(super) config: RealtimeConfig,
    pub(super) token: String,
    pub(super) requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<Event>,
    pub(super) subs: Subscriptions,
    /// Callers of `subscribe` waiting for the server's answer, by channel.
    pub(super) sub_waiters: HashMap<String, Reply<()>>,
    /// Calls made while disconnected.
    pub(super) waiting: VecDeque<(Command, Reply<Value>)>,
    /// Holds the next connect back while `reconnect_now`'s gate is up.
    pub(super) gate: Option<oneshot::Receiver<()>>,
    /// Answered once the `Disconnected` of a `reconnect_now` is queued.
    pub(super) reconnect_ack: Option<Reply<()>>,
    pub(super) close_done: Option<oneshot::Sender<()>>,
    /// Ask the refresher for a token before the next connect.
    token_expired: bool,
    /// Failed attempts since the last successful connect.
    attempt: u32,
    connector: Option<QuicConnector>,
}

/// The task: runs until the client is closed or told not to reconnect.
pub(super) async fn run(
    config: RealtimeConfig,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<Event>,
) {
    let mut driver = Driver {
        token: config.token.clone(),
        config,
        requests,
        events,
        subs: Subscriptions::default(),
        sub_waiters: HashMap::new(),
        waiting: VecDeque::new(),
        gate: None,
        reconnect_ack: None,
        close_done: None,
        token_expired: false,
        attempt: 0,
        connector: None,
    };
    let last = driver.connect_loop().await;
    driver.finish(last).await;
}

impl Driver {
    /// Queues an event; waits while the queue is full (the backpressure described in the
    /// module docs). A dropped receiver only means nobody listens.
    pub(super) async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// The decision for a connection the server closed with `code`.
    pub(super) fn closed(&mut self, code: u16, reason: String) -> Ended {
        let mut ended = Ended::new(code, reason);
        if code == CONNECTION_EXPIRED {
            // Coming back with the same token would be refused.
            self.token_expired = true;
            ended.reconnect = self.config.token_refresher.is_some();
        }
        ended
    }

    /// Connects, runs, and reconnects until told to stop; returns the final ending.
    async fn connect_loop(&mut self) -> Ended {
        loop {
            while let Some(gate) = self.gate.take() {
                // Either outcome (released or dropped) lets the reconnect go.
                if self.offline(gate).await.is_none() {
                    return self.stopped();
                }
            }
            let ended = match self.attempt_once().await {
                None => return self.stopped(),
                Some(ended) => ended,
            };
            tracing::debug!(
                code = ended.code,
                reason = %ended.reason,
                reconnect = ended.reconnect,
                attempt = self.attempt,
                "connection ended"
            );
            if !ended.reconnect {
                return ended;
            }
            self.emit(Event::Disconnected {
                code: ended.code,
                reason: ended.reason,
                will_reconnect: true,
            })
            .await;
            if let Some(ack) = self.reconnect_ack.take() {
                let _ = ack.send(Ok(()));
            }
            if self.gate.is_none() {
                let delay = self.config.backoff.jittered(self.attempt);
                self.attempt = self.attempt.saturating_add(1);
                if self.offline(tokio::time::sleep(delay)).await.is_none() {
                    return self.stopped();
                }
            }
        }
    }

    /// One attempt: refresh the token if needed, open, run. `None`: stop requested.
    async fn attempt_once(&mut self) -> Option<Ended> {
        if self.token_expired {
            if let Some(refresher) = self.config.token_refresher.clone() {
                match self.offline(refresher()).await? {
                    Ok(token) => {
                        self.token = token;
                        self.token_expired = false;
                    }
                    Err(e) => {
                        let reason = format!("token refresh failed: {e}");
                        return Some(Ended::new(codes::TOKEN_REFRESH_FAILED, reason));
                    }
                }
            }
        }
        let dial = match self.dial() {
            Ok(dial) => dial,
            Err(e) => return Some(Ended::new(codes::BAD_CONFIG, e.to_string())),
        };
        let params = ConnectParams {
            token: self.token.clone(),
            name: self.config.name.clone(),
            version: self.config.version.clone(),
        };
        let opening = handshake::open(dial, params, self.config.request_timeout);
        match self.offline(opening).await? {
            Ok(opened) => {
                self.attempt = 0;
                Some(session::run(self, opened).await)
            }
            Err(e) => Some(self.refused(e)),
        }
    }

    fn dial(&mut self) -> Result<Dial, WireError> {
        match &self.config.endpoint {
            Endpoint::WebSocket(url) => Ok(Dial::WebSocket {
                url: url.clone(),
                options: self.config.wire.clone(),
            }),
            Endpoint::Quic {
                addr,
                server_name,
                trust,
            } => {
                let connector = match &self.connector {
                    Some(c) => c.clone(),
                    None => {
                        let c = QuicConnector::for_peer(*addr, trust, &self.config.wire)?;
                        self.connector = Some(c.clone());
                        c
                    }
                };
                Ok(Dial::Quic {
                    connector,
                    addr: *addr,
                    server_name: server_name.clone(),
                })
            }
        }
    }

    fn refused(&mut self, e: HandshakeError) -> Ended {
        match e {
            HandshakeError::Wire(e) if e.is_config_error() => {
                Ended::new(codes::BAD_CONFIG, e.to_string())
            }
            HandshakeError::Wire(e) => Ended::transport(&e),
            HandshakeError::Closed { code, reason } => self.closed(code, reason),
            HandshakeError::Refused(e) => {
                let code = u16::try_from(e.code).unwrap_or(u16::MAX);
                let reconnect = if e.code == TOKEN_EXPIRED {
                    self.token_expired = true;
                    self.config.token_refresher.is_some()
                } else {
                    e.temporary
                };
                Ended {
                    code,
                    reason: e.message,
                    reconnect,
                }
            }
            HandshakeError::Timeout => Ended::new(
                codes::CONNECT_TIMEOUT,
                format!("no connect reply within {:?}", self.config.request_timeout),
            ),
            HandshakeError::Protocol(reason) => Ended::new(codes::BAD_PROTOCOL, reason),
        }
    }

    /// Runs `work` while serving handle requests as a disconnected client does. `None` when
    /// the client is to stop (closed, or every handle dropped).
    pub(super) async fn offline<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                request = self.requests.recv() => {
                    if !self.offline_request(request?) {
                        return None;
                    }
                }
            }
        }
    }

    /// Serves one request without a connection; false when it asks the client to stop.
    /// (A failed `send` on a reply channel means that caller gave up waiting: nothing to do.)
    fn offline_request(&mut self, request: Request) -> bool {
        match request {
            Request::Subscribe { channel, reply } => {
                if self.subs.add(&channel) {
                    self.sub_waiters.insert(channel, reply);
                } else {
                    let _ = reply.send(Err(ClientError::AlreadySubscribed { channel }));
                }
            }
            Request::Unsubscribe { channel, reply } => {
                // Nothing to tell the server: the next connection will not subscribe.
                self.subs.remove(&channel);
                self.sub_waiters.remove(&channel);
                let _ = reply.send(Ok(json!({})));
            }
            Request::Call { command, reply } => {
                if self.waiting.len() < MAX_WAITING {
                    self.waiting.push_back((command, reply));
                } else {
                    let _ = reply.send(Err(ClientError::Busy { limit: MAX_WAITING }));
                }
            }
            Request::Reconnect { gate, reply } => {
                self.gate = Some(gate);
                let _ = reply.send(Ok(()));
            }
            Request::Close { done } => {
                self.close_done = Some(done);
                return false;
            }
        }
        true
    }

    /// The ending reported when the client stops on request.
    fn stopped(&self) -> Ended {
        let reason = if self.close_done.is_some() {
            "client closed"
        } else {
            "every handle was dropped"
        };
        Ended {
            code: codes::CLOSE_CALLED,
            reason: reason.into(),
            reconnect: false,
        }
    }

    /// Fails whatever still waits, lets `close` return, then reports the final disconnect.
    async fn finish(&mut self, last: Ended) {
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            if let Request::Close { done } = request {
                let _ = done.send(());
            }
            // Other requests are dropped with their reply channels: callers see `Closed`.
        }
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(ClientError::Closed));
        }
        self.sub_waiters.clear();
        if let Some(ack) = self.reconnect_ack.take() {
            let _ = ack.send(Err(ClientError::Closed));
        }
        if let Some(done) = self.close_done.take() {
            let _ = done.send(());
        }
        self.emit(Event::Disconnected {
            code: last.code,
            reason: last.reason,
            will_reconnect: false,
        })
        .await;
    }
}
