//! The realtime WebSocket endpoint (`/connection/websocket`), speaking the Centrifugo client
//! protocol (JSON).
//!
//! Per connection: the axum handler task reads frames and hands each one to the connection's
//! session actor (waiting for it, which bounds the actor's mailbox); a writer task drains the
//! connection's [`Outbound`] queue, batching queued frames into one WebSocket message
//! (newline-separated, as the protocol allows), sends the server pings and enforces pongs and
//! token expiry. Buffers are small: a 4 KiB read buffer and no preallocated write buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use chatsdk_actors::outbound::{CloseReason, Next, Outbound};
use chatsdk_actors::session::{
    Authenticator, Principal, SessionActor, SessionArgs, SessionConfig, SessionMsg, TokenRefusal,
};
use chatsdk_proto::realtime::{self, Method};
use futures::{SinkExt, StreamExt};
use ractor::{Actor, RpcReplyPort};

use crate::auth::jwt::JwtError;
use crate::state::GatewayState;

/// Most bytes written in one WebSocket message when several frames are queued.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// A connection that has not connected (authenticated) by then is closed as stale.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const STALE: CloseReason = CloseReason {
    code: 3501,
    reason: "stale",
};

/// Verifies realtime tokens for sessions.
struct TokenAuth(GatewayState);

impl Authenticator for TokenAuth {
    fn connect(&self, token: &str) -> Result<Principal, TokenRefusal> {
        let claims = self.0.tokens.connection(token).map_err(refusal)?;
        if let Some(sid) = &claims.sid {
            if self
                .0
                .chat
                .session_revoked(&claims.app_id, &claims.user_id, sid)
                .unwrap_or(true)
            {
                return Err(TokenRefusal::Invalid);
            }
        }
        match self.0.chat.user_record(&claims.app_id, &claims.user_id) {
            Ok(Some(u)) if !u.deleted && claims.iat_ms >= u.tokens_valid_after => Ok(Principal {
                app: claims.app_id,
                user: claims.user_id,
                expires_at: claims.exp,
                issued_at_ms: claims.iat_ms,
            }),
            _ => Err(TokenRefusal::Invalid),
        }
    }

    fn subscription(
        &self,
        token: &str,
        principal: &Principal,
        channel: &str,
    ) -> Result<(), TokenRefusal> {
        let claims = self
            .0
            .tokens
            .subscription_claims(token, channel)
            .map_err(refusal)?;
        if claims.app_id == principal.app && claims.user_id == principal.user {
            Ok(())
        } else {
            Err(TokenRefusal::Invalid)
        }
    }
}

fn refusal(e: JwtError) -> TokenRefusal {
    match e {
        JwtError::Expired => TokenRefusal::Expired,
        _ => TokenRefusal::Invalid,
    }
}

/// `GET /connection/websocket`.
pub async fn upgrade(State(state): State<GatewayState>, ws: WebSocketUpgrade) -> Response {
    let c = &state.config;
    ws.read_buffer_size(c.ws_read_buffer)
        .write_buffer_size(0)
        .max_message_size(c.ws_message_bytes)
        .max_frame_size(c.ws_frame_bytes)
        .on_upgrade(move |socket| connection(state, socket))
}

/// Counts a live connection; released on drop.
struct ConnectionSlot(GatewayState);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(state: GatewayState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let n = state.ws_connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = ConnectionSlot(state.clone());
    if n > state.config.max_connections || state.draining.is_cancelled() {
        let reason = if state.draining.is_cancelled() {
            CloseReason::SHUTDOWN
        } else {
            CloseReason::CONNECTION_LIMIT
        };
        let _ = sink.send(close_message(reason)).await;
        return;
    }
    let out = Arc::new(Outbound::new(state.config.outbound_queue_bytes));
    let expires_at = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last_pong = Arc::new(AtomicU64::new(0));
    let client_id = chatsdk_actors::new_id();
    let config = Arc::new(SessionConfig {
        ping_interval: state.config.ping_interval,
        max_subscriptions: state.config.max_subscriptions,
        recover_limit: state.config.recover_limit,
        node: state.chat.cluster().id().to_string(),
        version: concat!("chatsdk ", env!("CARGO_PKG_VERSION")).to_string(),
    });
    let args = SessionArgs {
        chat: state.chat.clone(),
        auth: Arc::new(TokenAuth(state.clone())),
        out: out.clone(),
        config,
        client_id,
        expires_at: expires_at.clone(),
        connected: connected.clone(),
        send_limiter: state.limiter.clone(),
    };
    // Boxed: the spawn future is large and would otherwise size this task's state for the
    // connection's whole life.
    let Ok((session, _)) = Box::pin(Actor::spawn(None, SessionActor, args)).await else {
        let _ = sink.send(close_message(CloseReason::INTERNAL)).await;
        return;
    };
    let started = Instant::now();
    let writer = tokio::spawn(write_loop(
        state.clone(),
        sink,
        out.clone(),
        expires_at,
        last_pong.clone(),
        started,
    ));
    let connect_deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let stale = async {
            if connected.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(connect_deadline).await;
        };
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = state.draining.cancelled() => { out.close(CloseReason::SHUTDOWN); break; }
            _ = stale => { out.close(STALE); break; }
        };
        let Some(msg) = msg else { break };
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                // The JSON encoding is the contract; binary (protobuf) frames are refused.
                out.close(CloseReason::BAD_REQUEST);
                break;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "websocket read failed");
                out.close(CloseReason::BAD_REQUEST);
                break;
            }
        };
        let commands = realtime::parse_frame(text.as_str());
        let pongs = commands
            .iter()
            .filter(|c| matches!(c, Ok(c) if matches!(c.method, Method::Pong)))
            .count();
        if pongs > 0 {
            last_pong.store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        }
        if pongs == commands.len() {
            // Only pongs (or nothing): the session has nothing to do.
            continue;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if session
            .send_message(SessionMsg::Frame(commands, RpcReplyPort::from(tx)))
            .is_err()
        {
            break;
        }
        let _ = rx.await;
        if out.closed().is_some() {
            break;
        }
    }
    if out.closed().is_none() {
        out.close(CloseReason {
            code: 1000,
            reason: "",
        });
    }
    session.stop(None);
    let _ = writer.await;
}

fn close_message(reason: CloseReason) -> Message {
    Message::Close(Some(CloseFrame {
        code: reason.code,
        reason: Utf8Bytes::from_static(reason.reason),
    }))
}

fn text_message(frames: Vec<Bytes>) -> Message {
    let bytes = if frames.len() == 1 {
        frames.into_iter().next().unwrap_or_default()
    } else {
        let mut buf = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 1).sum());
        for (i, f) in frames.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b'\n');
            }
            buf.put_slice(f);
        }
        buf.freeze()
    };
    // Every frame is JSON we produced, so valid UTF-8; anything else is dropped, not sent.
    match Utf8Bytes::try_from(bytes) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Text(Utf8Bytes::from_static("")),
    }
}

async fn write_loop(
    state: GatewayState,
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    out: Arc<Outbound>,
    expires_at: Arc<AtomicU64>,
    last_pong: Arc<AtomicU64>,
    started: Instant,
) {
    let ping_every = state.config.ping_interval;
    let pong_timeout = state.config.pong_timeout;
    let mut next_ping = tokio::time::Instant::now() + ping_every;
    // When the last ping went out (ms since start), while its pong is awaited.
    let mut awaiting: Option<u64> = None;
    loop {
        let deadline = match awaiting {
            Some(sent) => {
                tokio::time::Instant::from_std(started + Duration::from_millis(sent)) + pong_timeout
            }
            None => next_ping,
        };
        tokio::select! {
            next = out.next(MAX_BATCH_BYTES) => match next {
                Next::Frames(frames) => {
                    if sink.send(text_message(frames)).await.is_err() {
                        out.close(CloseReason::INTERNAL);
                        return;
                    }
                }
                Next::Close(reason) => {
                    let _ = sink.send(close_message(reason)).await;
                    let _ = sink.close().await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let now_ms = started.elapsed().as_millis() as u64;
                if let Some(sent) = awaiting {
                    if last_pong.load(Ordering::Relaxed) <= sent {
                        out.close(CloseReason::NO_PONG);
                        continue;
                    }
                    awaiting = None;
                    continue;
                }
                let exp = expires_at.load(Ordering::Relaxed);
                if exp > 0 && chatsdk_actors::time::now_ms() / 1000 > exp {
                    out.close(CloseReason::EXPIRED);
                    continue;
                }
                next_ping = tokio::time::Instant::now() + ping_every;
                out.push(Bytes::from_static(realtime::ping().as_bytes()));
                awaiting = Some(now_ms.max(1));
            }
        }
    }
}
