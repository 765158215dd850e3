//! The realtime endpoint over QUIC (ALPN `chatsdk`): one bidirectional stream per connection,
//! each frame a varint length followed by one JSON object of the same protocol the WebSocket
//! speaks. Closes use QUIC application close codes with the protocol's numbers (3001, 3008, …).
//!
//! The endpoint only accepts and frames; [`crate::connection::run`] drives each connection, so
//! QUIC and WebSocket clients meet the same sessions, limits and close rules.

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use chatsdk_actors::outbound::CloseReason;
use chatsdk_proto::framing;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use tokio_util::task::TaskTracker;

use crate::connection::{self, FrameSink, FrameSource, Inbound};
use crate::state::GatewayState;
pub use tls::{CertSource, Identity, QuicError, ALPN};

/// Time a client has to finish the handshake and open its stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close waits for the client to read the last frames before the connection is
/// closed with its code.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 16 * 1024;

/// A bound QUIC realtime endpoint.
pub struct QuicServer {
    endpoint: Endpoint,
    tracker: TaskTracker,
    accept: tokio::task::JoinHandle<()>,
    /// DER of the certificate the endpoint presents (clients of a dev node pin it).
    pub certificate: Option<Vec<u8>>,
}

impl QuicServer {
    /// Binds `addr` and starts accepting connections for `state`'s sessions.
    pub fn bind(
        addr: SocketAddr,
        certs: &Arc<crate::tls::CertStore>,
        state: GatewayState,
    ) -> Result<QuicServer, QuicError> {
        let crypto = tls::server_crypto(certs.clone())?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(transport_config(&state)));
        let endpoint =
            Endpoint::server(config, addr).map_err(|source| QuicError::Bind { addr, source })?;
        let tracker = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(endpoint.clone(), state, tracker.clone()));
        Ok(QuicServer {
            endpoint,
            tracker,
            accept,
            certificate: certs.leaf(),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Stops accepting, waits up to `grace` for connections to finish (the gateway's drain
    /// closes them with 3001), then closes the endpoint.
    pub async fn shutdown(self, grace: Duration) {
        self.accept.abort();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        self.endpoint.close(
            VarInt::from_u32(u32::from(CloseReason::SHUTDOWN.code)),
            b"shutdown",
        );
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
    }
}

fn transport_config(state: &GatewayState) -> quinn::TransportConfig {
    let c = &state.config;
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        // Protocol pings keep a healthy connection busy; silence beyond a missed pong is dead.
        .max_idle_timeout(
            quinn::IdleTimeout::try_from(c.ping_interval + c.pong_timeout + Duration::from_secs(5))
                .ok(),
        )
        // Small windows keep an idle connection cheap; a frame is at most ws_message_bytes.
        .stream_receive_window(VarInt::from_u32(
            (c.ws_message_bytes as u32).saturating_mul(2).max(16 * 1024),
        ))
        .receive_window(VarInt::from_u32(
            (c.ws_message_bytes as u32).saturating_mul(4).max(64 * 1024),
        ))
        .send_window(c.outbound_queue_bytes as u64);
    t
}

async fn accept_loop(endpoint: Endpoint, state: GatewayState, tracker: TaskTracker) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = state.draining.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        tracker.spawn(serve(incoming, state.clone()));
    }
}

async fn serve(incoming: quinn::Incoming, state: GatewayState) {
    let open = async {
        let conn = incoming.await?;
        let (send, recv) = conn.accept_bi().await?;
        Ok::<_, quinn::ConnectionError>((conn, send, recv))
    };
    let (conn, send, recv) = match tokio::time::timeout(OPEN_TIMEOUT, open).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "quic connection failed before its stream opened");
            return;
        }
        Err(_) => return,
    };
    let source = QuicSource {
        recv,
        buf: BytesMut::new(),
        max: state.config.ws_message_bytes,
    };
    let closer = conn.clone();
    if connection::run(state, source, QuicSink { conn, send }).await == connection::Ended::Stalled {
        // The stream is stuck behind the client's flow control, the connection is not.
        closer.close(
            VarInt::from_u32(u32::from(CloseReason::SLOW.code)),
            CloseReason::SLOW.reason.as_bytes(),
        );
    }
}

struct QuicSource {
    recv: RecvStream,
    buf: BytesMut,
    max: usize,
}

impl FrameSource for QuicSource {
    const TRANSPORT: &'static str = "quic";
    type Text = Utf8Bytes;

    async fn next(&mut self) -> Inbound<Utf8Bytes> {
        loop {
            match framing::take_frame(&mut self.buf, self.max) {
                Ok(Some(frame)) => {
                    return match Utf8Bytes::try_from(frame) {
                        Ok(t) => Inbound::Text(t),
                        Err(_) => Inbound::Violation(CloseReason::BAD_REQUEST),
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "bad quic frame");
                    return Inbound::Violation(CloseReason::BAD_REQUEST);
                }
            }
            if self.buf.is_empty() {
                // Every frame taken: drop the allocation, so an idle connection keeps none.
                self.buf = BytesMut::new();
            }
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => return Inbound::End,
                Err(e) => {
                    tracing::debug!(error = %e, "quic read failed");
                    return Inbound::End;
                }
            }
        }
    }
}

struct QuicSink {
    conn: Connection,
    send: SendStream,
}

impl FrameSink for QuicSink {
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), ()> {
        self.send.write_chunk(encode(&frames)).await.map_err(|_| ())
    }

    async fn close(mut self, reason: CloseReason) {
        // Let the client read what was written before the close, then close with the code.
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(CLOSE_LINGER, self.send.stopped()).await;
        }
        self.conn.close(
            VarInt::from_u32(u32::from(reason.code)),
            reason.reason.as_bytes(),
        );
    }
}

/// Frames back to back, each with its length prefix, for one write.
fn encode(frames: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 3).sum());
    for f in frames {
        framing::put_frame(&mut buf, f);
    }
    buf.freeze()
}
