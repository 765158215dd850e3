//! One realtime connection, whatever carries it: WebSocket ([`crate::ws`]) and QUIC
//! ([`crate::quic`]) both end here, so both feed the same session with the same rules.
//!
//! A transport supplies a [`FrameSource`] (what the client sent, already framed and checked to
//! be UTF-8) and a [`FrameSink`] (how a batch of frames or a close reaches the client). [`run`]
//! then does the rest on the connection's one task: the connection cap and drain check, the
//! session, the writes of the connection's [`Outbound`] queue (no writer task of its own), the
//! connect deadline, server pings, pongs, token expiry and the write deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatsdk_actors::outbound::{CloseReason, Next, Outbound};
use chatsdk_actors::session::{
    Authenticator, Principal, Session, SessionArgs, Standing, TokenRefusal,
};
use chatsdk_proto::realtime::{self, Method};

use crate::auth::jwt::JwtError;
use crate::pipeline::Pipeline;
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
    /// The transport's name in metrics (`websocket`, `quic`).
    const TRANSPORT: &'static str;
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

/// Verifies realtime tokens for sessions: the node's gateway state itself, so a connection
/// holds a reference to it, not an allocation of its own.
impl Authenticator for crate::state::Inner {
    fn connect(&self, token: &str) -> Result<Principal, TokenRefusal> {
        let claims = self.tokens.connection(token).map_err(refusal)?;
        if let Some(sid) = &claims.sid {
            if self
                .chat
                .session_revoked(&claims.app_id, &claims.user_id, sid)
                .unwrap_or(true)
            {
                return Err(TokenRefusal::Invalid);
            }
        }
        if self
            .chat
            .check_not_banned(&claims.app_id, &claims.user_id)
            .is_err()
        {
            return Err(TokenRefusal::Banned);
        }
        match self.chat.user_record(&claims.app_id, &claims.user_id) {
            Ok(Some(u)) if !u.deleted && claims.gen >= u.tokens_valid_after => Ok(Principal {
                app: claims.app_id,
                user: claims.user_id,
                expires_at: claims.exp,
                token_generation: claims.gen,
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

/// Counts a live connection (in the cap and in its transport's gauge); released on drop.
struct ConnectionSlot(GatewayState, prometheus_client::metrics::gauge::Gauge);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.realtime_connections.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
    }
}

/// A write in flight: it owns the sink and hands it back with the outcome.
type Writing<W> = Pin<Box<dyn Future<Output = (W, Result<(), ()>)> + Send>>;

/// How a connection ended, for what the transport can still do about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The close (if any) was written through the sink.
    Closed,
    /// The client stopped reading and a write stalled past its deadline: the sink is gone with
    /// the write. A transport that can close without its write half (QUIC's CONNECTION_CLOSE)
    /// tells the client 3008 (slow); a WebSocket can only drop the socket.
    Stalled,
}

/// How the connection's loop ended.
enum Ending {
    /// Tell the client why, then close.
    Close(CloseReason),
    /// The client stopped reading: a write did not finish in time. Nothing more can reach it.
    Abandon,
}

/// Serves one realtime connection until either side ends it.
///
/// One task does everything: it reads the client's frames and hands their commands to the
/// session's [`Pipeline`] (several in flight, see there), writes what the connection's
/// [`Outbound`] queue holds meanwhile, and keeps one timer for pings, pongs, token expiry, the
/// connect deadline and the write deadline. Reading goes on while commands run: pongs are
/// taken at once (a command slower than the pong timeout does not close a client that
/// answered); when the pipeline is full, reading pauses, and a pong deadline that falls then
/// runs again from that moment (the pong may be in what is not read yet). The end of the
/// client's input, or a breach of the transport's rules, waits for the commands in flight,
/// which are never cut off halfway. A write that does not finish within the pong timeout (a
/// client that stopped reading) ends the connection at once, its session and subscriptions
/// with it, and [`Ended::Stalled`] lets the transport say so if it still can.
pub(crate) async fn run<S: FrameSource, W: FrameSink>(
    state: GatewayState,
    mut source: S,
    sink: W,
) -> Ended {
    let n = state.realtime_connections.fetch_add(1, Ordering::Relaxed) + 1;
    let gauge = state.metrics.connections(S::TRANSPORT);
    gauge.inc();
    let _slot = ConnectionSlot(state.clone(), gauge);
    if state.draining.is_cancelled() {
        state.metrics.closed(CloseReason::SHUTDOWN.code);
        sink.close(CloseReason::SHUTDOWN).await;
        return Ended::Closed;
    }
    if n > state.config.max_connections {
        state.metrics.closed(CloseReason::CONNECTION_LIMIT.code);
        sink.close(CloseReason::CONNECTION_LIMIT).await;
        return Ended::Closed;
    }
    let out = Arc::new(Outbound::new(state.config.outbound_queue_bytes));
    let standing = Arc::new(Standing::new());
    let config = state.session.clone();
    let args = SessionArgs {
        chat: state.chat.clone(),
        auth: state.0.clone(),
        out: out.clone(),
        config,
        client_id: chatsdk_actors::new_id(),
        standing: standing.clone(),
    };
    let ping_every = state.config.ping_interval;
    let pong_timeout = state.config.pong_timeout;
    let connect_deadline = Instant::now() + CONNECT_TIMEOUT;

    let mut pipeline = Pipeline::new(Session::new(args), state.config.commands_in_flight);
    // A close the client asked for (or earned): made once no command is in flight.
    let mut close_after: Option<CloseReason> = None;
    let mut idle_sink = Some(sink);
    let mut writing: Option<Writing<W>> = None;
    let mut write_deadline = connect_deadline;
    let mut reading = true;
    let mut draining = false;
    // A deadline of the timer's own (connect, pong, expiry) closed the queue: from then on only
    // the write in flight is timed, so a deadline already past does not fire on every turn.
    let mut timed_out = false;
    let mut next_ping = Instant::now() + ping_every;
    // When the last ping went out, while its pong is awaited.
    let mut awaiting: Option<Instant> = None;
    let mut last_pong: Option<Instant> = None;
    let timer = tokio::time::sleep_until(next_ping.into());
    tokio::pin!(timer);
    // Registered with the token once: a `cancelled()` made afresh on every turn of the loop
    // locks the token and its waiter list three times per turn, several turns per command.
    let drain = state.draining.cancelled();
    tokio::pin!(drain);
    // The queue's next batch, likewise kept across turns (made again only once it is taken):
    // made afresh each turn it registered with the queue's `Notify` and left it again.
    let next_frames = out.next(MAX_BATCH_BYTES);
    tokio::pin!(next_frames);

    let ending = loop {
        // A close asked for while commands ran is made once they have all ended.
        if pipeline.idle() {
            if let Some(reason) = close_after.take() {
                out.close(reason);
            }
        }
        let deadline = if timed_out {
            // Nothing else is due: the queue's close ends the loop once no write is in flight.
            if writing.is_some() {
                write_deadline
            } else {
                Instant::now() + pong_timeout
            }
        } else {
            let mut d = awaiting.map_or(next_ping, |sent| sent + pong_timeout);
            if !standing.is_connected() {
                d = d.min(connect_deadline);
            }
            if writing.is_some() {
                d = d.min(write_deadline);
            }
            d
        };
        if timer.deadline() != deadline.into() {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            biased;
            () = &mut drain, if !draining => {
                draining = true;
                out.close(CloseReason::SHUTDOWN);
            }
            () = pipeline.progress(), if pipeline.busy() => {}
            (sink, sent) = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                writing = None;
                if sent.is_err() {
                    break Ending::Abandon;
                }
                idle_sink = Some(sink);
            }
            next = &mut next_frames, if idle_sink.is_some() => match next {
                Next::Frames(frames) => {
                    next_frames.set(out.next(MAX_BATCH_BYTES));
                    let Some(mut sink) = idle_sink.take() else { break Ending::Abandon };
                    write_deadline = Instant::now() + pong_timeout;
                    writing = Some(Box::pin(async move {
                        let sent = sink.send(frames).await;
                        (sink, sent)
                    }));
                }
                Next::Close(reason) => break Ending::Close(reason),
            },
            inbound = source.next(), if reading && pipeline.ready_for_more() => match inbound {
                Inbound::Text(text) => {
                    let commands = realtime::parse_frame(&text);
                    let pongs = commands
                        .iter()
                        .filter(|c| matches!(c, Ok(c) if matches!(c.method, Method::Pong)))
                        .count();
                    if pongs > 0 {
                        last_pong = Some(Instant::now());
                    }
                    if pongs < commands.len() {
                        pipeline.push(commands);
                    }
                }
                Inbound::Skip => {}
                Inbound::Violation(reason) => {
                    reading = false;
                    close_after = Some(reason);
                }
                Inbound::End => {
                    reading = false;
                    close_after = Some(NORMAL);
                }
            },
            () = &mut timer => {
                let now = Instant::now();
                if writing.is_some() && now >= write_deadline {
                    break Ending::Abandon;
                }
                if !standing.is_connected() && now >= connect_deadline {
                    out.close(STALE);
                    timed_out = true;
                    continue;
                }
                match awaiting {
                    Some(sent) if now >= sent + pong_timeout => {
                        let answered = last_pong.is_some_and(|p| p > sent);
                        if !answered && !pipeline.ready_for_more() {
                            // Reading is paused behind a full pipeline: the pong may be in what
                            // is not read yet. Its deadline runs again from now.
                            awaiting = Some(now);
                            continue;
                        }
                        if !answered {
                            out.close(CloseReason::NO_PONG);
                            timed_out = true;
                            continue;
                        }
                        awaiting = None;
                    }
                    Some(_) => {}
                    None if now >= next_ping => {
                        let expired = standing
                            .expires_at()
                            .is_some_and(|exp| chatsdk_actors::time::now_ms() / 1000 > exp);
                        if expired {
                            out.close(CloseReason::EXPIRED);
                            timed_out = true;
                            continue;
                        }
                        next_ping = now + ping_every;
                        out.push(Bytes::from_static(realtime::ping().as_bytes()));
                        awaiting = Some(now);
                    }
                    None => {}
                }
            }
        }
    };
    // The session (in flight or idle) ends its subscriptions and presence before the close.
    drop(pipeline);
    match ending {
        Ending::Close(reason) => {
            state.metrics.closed(reason.code);
            if let Some(sink) = idle_sink {
                // A client that stopped reading cannot take the close frame either.
                let _ = tokio::time::timeout(pong_timeout, sink.close(reason)).await;
            }
            Ended::Closed
        }
        Ending::Abandon => {
            state.metrics.closed(CloseReason::SLOW.code);
            Ended::Stalled
        }
    }
}
