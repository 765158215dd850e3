//! One realtime connection, whatever carries it: WebSocket ([`crate::ws`]) and QUIC
//! ([`crate::quic`]) both end here, so both feed the same session with the same rules.
//!
//! A transport supplies a [`FrameSource`] (what the client sent, already framed and checked to
//! be UTF-8) and a [`FrameSink`] (how a batch of frames or a close reaches the client). [`run`]
//! then does the rest: the connection cap and drain check, the session (driven by this task),
//! the connect deadline, pong bookkeeping, and a writer task that drains the connection's
//! [`Outbound`] queue, sends server pings, enforces pongs and token expiry.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatsdk_actors::outbound::{CloseReason, Next, Outbound};
use chatsdk_actors::session::{
    Authenticator, Principal, Session, SessionArgs, SessionConfig, TokenRefusal,
};
use chatsdk_proto::realtime::{self, Method};

use crate::auth::jwt::JwtError;
use crate::state::GatewayState;

/// Most bytes written at once when several frames are queued.
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024;
/// A connection that has not connected (authenticated) by then is closed as stale.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const STALE: CloseReason = CloseReason {
    code: 3501,
    reason: "stale",
};
/// A normal close once the client went away.
const NORMAL: CloseReason = CloseReason {
    code: 1000,
    reason: "",
};

/// What a transport read from its client.
pub(crate) enum Inbound<T> {
    /// One transport message holding one or more protocol frames (UTF-8 JSON).
    Text(T),
    /// Something that is not part of the protocol (control frames); ignored.
    Skip,
    /// The client broke the transport's rules; the connection closes with this reason.
    Violation(CloseReason),
    /// The client closed or the transport failed.
    End,
}

/// The read half of a realtime transport.
pub(crate) trait FrameSource: Send + 'static {
    type Text: std::ops::Deref<Target = str> + Send;
    fn next(&mut self) -> impl Future<Output = Inbound<Self::Text>> + Send;
}

/// The write half of a realtime transport.
pub(crate) trait FrameSink: Send + 'static {
    /// Writes queued frames, coalesced into as few writes as the transport allows.
    fn send(&mut self, frames: Vec<Bytes>) -> impl Future<Output = Result<(), ()>> + Send;
    /// Tells the client why the connection ends, then closes it.
    fn close(self, reason: CloseReason) -> impl Future<Output = ()> + Send;
}

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

/// Counts a live connection; released on drop.
struct ConnectionSlot(GatewayState);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.realtime_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one realtime connection until either side ends it.
pub(crate) async fn run<S: FrameSource, W: FrameSink>(state: GatewayState, mut source: S, sink: W) {
    let n = state.realtime_connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = ConnectionSlot(state.clone());
    if state.draining.is_cancelled() {
        sink.close(CloseReason::SHUTDOWN).await;
        return;
    }
    if n > state.config.max_connections {
        sink.close(CloseReason::CONNECTION_LIMIT).await;
        return;
    }
    let out = Arc::new(Outbound::new(state.config.outbound_queue_bytes));
    let expires_at = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicBool::new(false));
    let last_pong = Arc::new(AtomicU64::new(0));
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
        client_id: chatsdk_actors::new_id(),
        expires_at: expires_at.clone(),
        connected: connected.clone(),
    };
    let mut session = Session::new(args);
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
        let inbound = tokio::select! {
            m = source.next() => m,
            _ = state.draining.cancelled() => { out.close(CloseReason::SHUTDOWN); break; }
            _ = stale => { out.close(STALE); break; }
        };
        let text = match inbound {
            Inbound::Text(t) => t,
            Inbound::Skip => continue,
            Inbound::Violation(reason) => {
                out.close(reason);
                break;
            }
            Inbound::End => break,
        };
        let commands = realtime::parse_frame(&text);
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
        session.frame(commands).await;
        if out.closed().is_some() {
            break;
        }
    }
    if out.closed().is_none() {
        out.close(NORMAL);
    }
    drop(session);
    let _ = writer.await;
}

async fn write_loop<W: FrameSink>(
    state: GatewayState,
    mut sink: W,
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
                    if sink.send(frames).await.is_err() {
                        out.close(CloseReason::INTERNAL);
                        return;
                    }
                }
                Next::Close(reason) => {
                    sink.close(reason).await;
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
