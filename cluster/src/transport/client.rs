//! The dialing side: getting a connection to a peer (cached, single-flight, with backoff and
//! the hello exchange) and running one request or one message over it.

use std::time::Instant;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, RecvStream, SendStream, WriteError};

use super::frame::{self, FrameError, Response};
use super::peers::Route;
use super::{duration_ms, peer_leaf, Inner, NodeId, TransportError};
use crate::tls::{self, NODE_SERVER_NAME};

impl Inner {
    /// The client configuration (with this node's current certificate) of new connections.
    fn client_config(&self) -> quinn::ClientConfig {
        self.client_config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The cached connection to `to`, dialing it if needed. Concurrent callers share one dial;
    /// after a failed dial they fail fast with `Unreachable` until the backoff expires.
    async fn connection(&self, to: NodeId) -> Result<Connection, TransportError> {
        if let Route::Ready(conn) = self.peers.route(to, Instant::now())? {
            return Ok(conn);
        }
        let dial_lock = self.peers.dial_lock(to);
        let _dialing = dial_lock.lock().await;
        // Whoever held the lock before us may have connected, or failed and set a backoff.
        let (addr, epoch) = match self.peers.route(to, Instant::now())? {
            Route::Ready(conn) => return Ok(conn),
            Route::Dial { addr, epoch } => (addr, epoch),
        };
        let dialed = match tokio::time::timeout(self.connect_timeout, self.dial(to, addr)).await {
            Ok(dialed) => dialed,
            Err(_) => Err(TransportError::Connect {
                addr,
                reason: format!("timed out after {} ms", duration_ms(self.connect_timeout)),
            }),
        };
        match dialed {
            Ok(conn) => {
                if self.peers.dial_succeeded(to, epoch, &conn) {
                    tracing::debug!(peer = to, %addr, "connected");
                    Ok(conn)
                } else {
                    conn.close(frame::CLOSE_NORMAL, b"peer address changed");
                    Err(TransportError::Connect {
                        addr,
                        reason: format!("address of node {to} changed while dialing"),
                    })
                }
            }
            Err(e) => {
                let delay = self.peers.dial_failed(
                    to,
                    epoch,
                    Instant::now(),
                    self.backoff,
                    rand::random::<f64>(),
                );
                tracing::warn!(peer = to, %addr, error = %e, backoff_ms = duration_ms(delay), "dial failed");
                Err(e)
            }
        }
    }

    /// QUIC + TLS handshake, server certificate name check, then the hello exchange.
    async fn dial(
        &self,
        to: NodeId,
        addr: std::net::SocketAddr,
    ) -> Result<Connection, TransportError> {
        let fail = |reason: String| TransportError::Connect { addr, reason };
        let conn = self
            .endpoint
            .connect_with(self.client_config(), addr, NODE_SERVER_NAME)
            .map_err(|e| fail(e.to_string()))?
            .await
            .map_err(|e| fail(e.to_string()))?;
        // TLS proved the certificate comes from the cluster CA; check it names the node we
        // meant to reach, so a stale address book entry cannot route to someone else.
        let checked = match peer_leaf(&conn) {
            None => Err("server presented no certificate".to_owned()),
            Some(leaf) => tls::verify_node_cert_name(&leaf, to)
                .map_err(|e| format!("server certificate is not issued to node {to}: {e}")),
        };
        let checked = match checked {
            Ok(()) => hello(&conn, self.shared.node_id).await.and_then(|id| {
                if id == to {
                    Ok(())
                } else {
                    Err(format!("server says it is node {id}, expected node {to}"))
                }
            }),
            Err(reason) => Err(reason),
        };
        match checked {
            Ok(()) => Ok(conn),
            Err(reason) => {
                conn.close(frame::CLOSE_BAD_HELLO, reason.as_bytes());
                Err(fail(reason))
            }
        }
    }

    async fn open_bi(&self, to: NodeId) -> Result<(SendStream, RecvStream), TransportError> {
        let conn = self.connection(to).await?;
        match conn.open_bi().await {
            Ok(streams) => Ok(streams),
            Err(e) => {
                // The cached connection died since its last use: one fresh dial, not a loop.
                tracing::debug!(peer = to, error = %e, "cached connection is dead, redialing");
                self.peers.evict(to, &conn);
                let conn = self.connection(to).await?;
                conn.open_bi().await.map_err(|e| self.lost(to, e))
            }
        }
    }

    async fn open_uni(&self, to: NodeId) -> Result<SendStream, TransportError> {
        let conn = self.connection(to).await?;
        match conn.open_uni().await {
            Ok(stream) => Ok(stream),
            Err(e) => {
                tracing::debug!(peer = to, error = %e, "cached connection is dead, redialing");
                self.peers.evict(to, &conn);
                let conn = self.connection(to).await?;
                conn.open_uni().await.map_err(|e| self.lost(to, e))
            }
        }
    }

    /// One request: a bidi stream carrying one frame each way.
    pub(super) async fn round_trip(
        &self,
        to: NodeId,
        body: Bytes,
    ) -> Result<Bytes, TransportError> {
        let (mut send, mut recv) = self.open_bi(to).await?;
        match frame::write_frame(&mut send, body).await {
            Ok(()) => {
                // Fails only if the stream is already closed; the response read reports why.
                send.finish().ok();
            }
            // The server stopped reading (e.g. the frame is over its limit); its response
            // says why.
            Err(WriteError::Stopped(_)) => {}
            Err(e) => return Err(self.write_failed(to, e)),
        }
        match frame::read_response(&mut recv, self.shared.max_frame_bytes).await {
            Ok(Response::Ok(body)) => Ok(body),
            Ok(Response::Error(reason)) => Err(TransportError::Remote { reason }),
            Ok(Response::Refused(reason)) => Err(TransportError::Refused { peer: to, reason }),
            Ok(Response::TooLarge { len, max }) => Err(TransportError::FrameTooLarge { len, max }),
            Err(e) => Err(self.read_failed(to, e)),
        }
    }

    /// One one-way message: a uni stream carrying one frame.
    pub(super) async fn send_message(&self, to: NodeId, body: Bytes) -> Result<(), TransportError> {
        let mut send = self.open_uni(to).await?;
        frame::write_frame(&mut send, body)
            .await
            .map_err(|e| self.write_failed(to, e))?;
        send.finish().map_err(|_| TransportError::ConnectionLost {
            peer: to,
            reason: "stream closed before it was finished".to_owned(),
        })
    }

    fn lost(&self, to: NodeId, e: ConnectionError) -> TransportError {
        if self.shared.is_closing() {
            return TransportError::Closed;
        }
        TransportError::ConnectionLost {
            peer: to,
            reason: e.to_string(),
        }
    }

    fn write_failed(&self, to: NodeId, e: WriteError) -> TransportError {
        match e {
            WriteError::ConnectionLost(e) => self.lost(to, e),
            other => TransportError::ConnectionLost {
                peer: to,
                reason: other.to_string(),
            },
        }
    }

    fn read_failed(&self, to: NodeId, e: FrameError) -> TransportError {
        match e {
            FrameError::TooLarge { len, max } => TransportError::FrameTooLarge { len, max },
            FrameError::Reset { code } if code == frame::RESET_DROPPED => {
                TransportError::Dropped { peer: to }
            }
            FrameError::Reset { code } if code == frame::RESET_SHUTDOWN => {
                TransportError::ConnectionLost {
                    peer: to,
                    reason: "peer is shutting down".to_owned(),
                }
            }
            FrameError::ConnectionLost(e) => self.lost(to, e),
            // Most often the peer went away mid-request (its task ended with the stream).
            e @ (FrameError::Reset { .. } | FrameError::FinishedEarly) => {
                TransportError::ConnectionLost {
                    peer: to,
                    reason: e.to_string(),
                }
            }
            e @ FrameError::Malformed(_) => TransportError::Protocol {
                reason: format!("node {to}: {e}"),
            },
        }
    }
}

/// The dialer's hello: sends our node id, returns the server's.
async fn hello(conn: &Connection, me: NodeId) -> Result<NodeId, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    frame::write_frame(&mut send, frame::encode_hello(me))
        .await
        .map_err(|e| format!("hello not sent: {e}"))?;
    send.finish().map_err(|e| format!("hello not sent: {e}"))?;
    match frame::read_response(&mut recv, frame::MAX_HELLO_RESPONSE_BYTES).await {
        Ok(Response::Ok(payload)) => frame::decode_hello(&payload).map_err(|e| e.to_string()),
        Ok(Response::Refused(reason)) => Err(format!("hello refused: {reason}")),
        Ok(other) => Err(format!("unexpected hello response {other:?}")),
        Err(e) => Err(format!("no hello response: {e}")),
    }
}
