//! One open connection: resubscribe, flush the calls that waited, then read frames and serve
//! handle requests until the connection ends, and say how it ended.
//!
//! Commands get ids from 2 up (1 is `connect`); the pending map matches replies to them.
//! Entries whose caller has given up are swept at each server ping, so the map stays as
//! small as the calls actually in flight.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::driver::{Driver, Ended, Reply, Request};
use super::handshake::{Opened, CONNECT_ID};
use super::policy::codes;
use super::{ClientError, Event};
use crate::protocol::{
    self, ChannelParams, Command, Push, PushBody, ReplyError, ServerMessage, SubscribeResult, PONG,
};
use crate::wire::{ConnWriter, Frame, WireError};

/// Time allowed for our close to reach a peer that has stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a reply answers.
enum Pending {
    Subscribe {
        channel: String,
    },
    Call {
        reply: Reply<Value>,
    },
    /// A `refresh`: on success its token replaces the one used to reconnect.
    Refresh {
        token: String,
        reply: Reply<Value>,
    },
}

impl Pending {
    fn fail(self, error: ClientError) {
        match self {
            Pending::Call { reply } | Pending::Refresh { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            // The subscription stays wanted; it is retried on the next connection.
            Pending::Subscribe { .. } => {}
        }
    }

    fn abandoned(&self) -> bool {
        match self {
            Pending::Call { reply } | Pending::Refresh { reply, .. } => reply.is_closed(),
            Pending::Subscribe { .. } => false,
        }
    }
}

enum Step {
    Continue,
    /// A server ping arrived: the silence deadline moves.
    Pinged,
    End(Ended),
}

struct Session {
    writer: ConnWriter,
    pending: HashMap<u32, Pending>,
    next_id: u32,
    /// Answer pings (the connect result's `pong`).
    pong: bool,
    /// Longest silence between server pings before the connection is given up.
    silence: Option<Duration>,
}

/// Runs an authenticated connection to its end.
pub(super) async fn run(d: &mut Driver, opened: Opened) -> Ended {
    let Opened { conn, result } = opened;
    let (mut reader, writer) = conn.split();
    let mut s = Session {
        writer,
        pending: HashMap::new(),
        next_id: CONNECT_ID + 1,
        pong: result.pong,
        silence: (result.ping > 0)
            .then(|| Duration::from_secs(result.ping.into()).saturating_add(d.config.ping_grace)),
    };
    tracing::debug!(client = %result.client, node = %result.node, "connected");
    d.emit(Event::Connected {
        client: result.client,
        node: result.node,
    })
    .await;
    if let Err(ended) = s.start(d).await {
        return s.end(d, ended).await;
    }
    let mut deadline = s.silence.and_then(|t| Instant::now().checked_add(t));
    let ended = loop {
        let silence = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            frame = reader.recv() => s.frame(d, frame).await,
            request = d.requests.recv() => s.request(d, request).await,
            () = silence => Step::End(Ended::new(codes::NO_PING, "no ping from the server")),
        };
        match step {
            Step::Continue => {}
            Step::Pinged => deadline = s.silence.and_then(|t| Instant::now().checked_add(t)),
            Step::End(ended) => break ended,
        }
    };
    s.end(d, ended).await
}

impl Session {
    /// Resubscribes every wanted channel (recovering from its position) and sends the calls
    /// that waited for a connection.
    async fn start(&mut self, d: &mut Driver) -> Result<(), Ended> {
        for params in d.subs.pending() {
            let channel = params.channel.clone();
            self.send(Command::Subscribe(params), Pending::Subscribe { channel })
                .await?;
        }
        while let Some((command, reply)) = d.waiting.pop_front() {
            if !reply.is_closed() {
                self.send(command, Pending::Call { reply }).await?;
            }
        }
        Ok(())
    }

    /// Writes a command and records what its reply answers.
    async fn send(&mut self, command: Command, entry: Pending) -> Result<(), Ended> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(CONNECT_ID + 1);
        let frame = match command.encode(id) {
            Ok(frame) => frame,
            Err(e) => {
                entry.fail(ClientError::Encode(e));
                return Ok(());
            }
        };
        match self.writer.send(&frame).await {
            Ok(()) => {
                self.pending.insert(id, entry);
                Ok(())
            }
            Err(e) => {
                let ended = Ended::transport(&e);
                entry.fail(ClientError::Transport(e));
                Err(ended)
            }
        }
    }

    async fn frame(&mut self, d: &mut Driver, frame: Result<Frame, WireError>) -> Step {
        let bytes = match frame {
            Err(e) => return Step::End(Ended::transport(&e)),
            Ok(Frame::Close { code, reason }) => return Step::End(d.closed(code, reason)),
            Ok(Frame::Data(bytes)) => bytes,
        };
        let message = match protocol::decode(&bytes) {
            Ok(message) => message,
            Err(e) => return Step::End(Ended::new(codes::BAD_PROTOCOL, e.to_string())),
        };
        match message {
            ServerMessage::Ping => {
                if self.pong {
                    if let Err(e) = self.writer.send(PONG).await {
                        return Step::End(Ended::transport(&e));
                    }
                }
                self.pending.retain(|_, p| !p.abandoned());
                Step::Pinged
            }
            ServerMessage::Reply(reply) => match self.pending.remove(&reply.id) {
                Some(Pending::Subscribe { channel }) => {
                    self.subscribed(d, channel, reply.result).await
                }
                Some(Pending::Call { reply: to }) => {
                    let _ = to.send(reply.result.map_err(ClientError::from));
                    Step::Continue
                }
                Some(Pending::Refresh { token, reply: to }) => {
                    if reply.result.is_ok() {
                        d.token = token;
                    }
                    let _ = to.send(reply.result.map_err(ClientError::from));
                    Step::Continue
                }
                None => {
                    tracing::debug!(id = reply.id, "reply to no pending command");
                    Step::Continue
                }
            },
            ServerMessage::Push(push) => self.push(d, push).await,
        }
    }

    async fn subscribed(
        &mut self,
        d: &mut Driver,
        channel: String,
        result: Result<Value, ReplyError>,
    ) -> Step {
        let error = match result {
            Ok(value) => {
                let result: SubscribeResult = match serde_json::from_value(value) {
                    Ok(result) => result,
                    Err(e) => {
                        let reason = format!("subscribe reply: {e}");
                        return Step::End(Ended::new(codes::BAD_PROTOCOL, reason));
                    }
                };
                if d.subs.subscribed(&channel, &result) {
                    if let Some(waiter) = d.sub_waiters.remove(&channel) {
                        let _ = waiter.send(Ok(()));
                    }
                    self.announce(d, channel, result).await;
                }
                return Step::Continue;
            }
            Err(error) => error,
        };
        if !d.subs.contains(&channel) {
            return Step::Continue;
        }
        match d.sub_waiters.remove(&channel) {
            Some(waiter) => {
                d.subs.remove(&channel);
                let _ = waiter.send(Err(error.into()));
            }
            None if error.temporary => {
                let reason = format!("resubscribing {channel} failed: {}", error.message);
                return Step::End(Ended::new(codes::RESUBSCRIBE_FAILED, reason));
            }
            None => {
                d.subs.remove(&channel);
                d.emit(Event::Unsubscribed {
                    channel,
                    code: error.code,
                    reason: error.message,
                })
                .await;
            }
        }
        Step::Continue
    }

    /// Reports a subscription, then the publications it recovered, in order.
    async fn announce(&self, d: &Driver, channel: String, result: SubscribeResult) {
        d.emit(Event::Subscribed {
            channel: channel.clone(),
            recovered: result.recovered,
            was_recovering: result.was_recovering,
            epoch: result.epoch,
            offset: result.offset,
        })
        .await;
        for publication in result.publications {
            d.emit(Event::Publication {
                channel: channel.clone(),
                offset: publication.offset,
                data: publication.data,
                info: publication.info,
            })
            .await;
        }
    }

    async fn push(&mut self, d: &mut Driver, push: Push) -> Step {
        let Push { channel, body } = push;
        match body {
            PushBody::Publication(p) => {
                if d.subs.published(&channel, p.offset) {
                    d.emit(Event::Publication {
                        channel,
                        offset: p.offset,
                        data: p.data,
                        info: p.info,
                    })
                    .await;
                } else {
                    tracing::debug!(%channel, "publication for no active subscription");
                }
            }
            PushBody::Join(info) => d.emit(Event::Join { channel, info }).await,
            PushBody::Leave(info) => d.emit(Event::Leave { channel, info }).await,
            PushBody::Unsubscribe { code, reason } if d.subs.contains(&channel) => {
                if (2500..3000).contains(&code) {
                    // The server asks for a resubscribe (insufficient state): recover.
                    d.subs.deactivate(&channel);
                    let params = d.subs.params(&channel);
                    let entry = Pending::Subscribe { channel };
                    if let Err(ended) = self.send(Command::Subscribe(params), entry).await {
                        return Step::End(ended);
                    }
                } else {
                    d.subs.remove(&channel);
                    d.emit(Event::Unsubscribed {
                        channel,
                        code,
                        reason,
                    })
                    .await;
                }
            }
            PushBody::Unsubscribe { .. } => {}
            PushBody::Disconnect { code, reason, .. } => {
                let code = u16::try_from(code).unwrap_or(u16::MAX);
                return Step::End(d.closed(code, reason));
            }
            PushBody::Message(data) => d.emit(Event::Message { data }).await,
            PushBody::Other(kind) => tracing::debug!(%kind, "push kind not handled"),
        }
        Step::Continue
    }

    async fn request(&mut self, d: &mut Driver, request: Option<Request>) -> Step {
        let Some(request) = request else {
            return Step::End(Ended::new(codes::CLOSE_CALLED, "every handle was dropped"));
        };
        let sent = match request {
            Request::Subscribe { channel, reply } => {
                if !d.subs.add(&channel) {
                    let _ = reply.send(Err(ClientError::AlreadySubscribed { channel }));
                    return Step::Continue;
                }
                d.sub_waiters.insert(channel.clone(), reply);
                let params = d.subs.params(&channel);
                self.send(Command::Subscribe(params), Pending::Subscribe { channel })
                    .await
            }
            Request::Unsubscribe { channel, reply } => {
                d.sub_waiters.remove(&channel);
                if !d.subs.remove(&channel) {
                    let _ = reply.send(Ok(json!({})));
                    return Step::Continue;
                }
                let command = Command::Unsubscribe(ChannelParams { channel });
                self.send(command, Pending::Call { reply }).await
            }
            Request::Call { command, reply } => {
                let entry = match &command {
                    Command::Refresh(p) => Pending::Refresh {
                        token: p.token.clone(),
                        reply,
                    },
                    _ => Pending::Call { reply },
                };
                self.send(command, entry).await
            }
            Request::Reconnect { gate, reply } => {
                d.gate = Some(gate);
                d.reconnect_ack = Some(reply);
                return Step::End(Ended::new(codes::RECONNECT_CALLED, "reconnect requested"));
            }
            Request::Close { done } => {
                d.close_done = Some(done);
                return Step::End(Ended::new(codes::CLOSE_CALLED, "client closed"));
            }
        };
        match sent {
            Ok(()) => Step::Continue,
            Err(ended) => Step::End(ended),
        }
    }

    /// Closes the transport (harmless if the server already did), fails the calls in flight
    /// and marks every subscription for recovery.
    async fn end(mut self, d: &mut Driver, ended: Ended) -> Ended {
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, self.writer.close(1000, "client closing")).await;
        for (_, entry) in self.pending.drain() {
            entry.fail(ClientError::Disconnected);
        }
        d.subs.reset();
        ended
    }
}
