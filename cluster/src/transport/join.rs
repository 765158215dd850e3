//! Client side of the join handshake: a node with no identity yet asks a cluster member to let
//! it in. The server is authenticated by the pinned CA fingerprint (see
//! [`crate::tls::PinnedCaVerifier`]); the client is not authenticated at the TLS layer, so the
//! server routes everything on such a connection to [`super::Handler::join`] only, with the
//! small limits below.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use quinn::WriteError;

use super::frame::{self, Response};
use super::{duration_ms, TransportError};
use crate::tls::{self, NODE_SERVER_NAME};

/// Largest join request accepted: joins come from unauthenticated clients, so the limit is
/// small and independent of `max_frame_bytes`.
pub const MAX_JOIN_FRAME_BYTES: usize = 64 * 1024;
/// Largest join response accepted (the joiner's identity and cluster description).
pub const MAX_JOIN_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Sends one join request to the node at `addr` and returns the bytes its join handler
/// produced. `ca_fingerprint` is the lowercase hex SHA-256 of the cluster CA certificate
/// ([`crate::tls::ClusterCa::fingerprint`]); a server whose chain does not end in that CA is
/// rejected during the handshake. `timeout` bounds the whole exchange.
pub async fn join_request(
    addr: SocketAddr,
    ca_fingerprint: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, TransportError> {
    if body.len() > MAX_JOIN_FRAME_BYTES {
        return Err(TransportError::FrameTooLarge {
            len: body.len(),
            max: MAX_JOIN_FRAME_BYTES,
        });
    }
    let client_config = tls::join_client_config(ca_fingerprint)?;
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = quinn::Endpoint::client(bind)?;
    let outcome = tokio::time::timeout(timeout, exchange(&endpoint, client_config, addr, body))
        .await
        .unwrap_or_else(|_| {
            Err(TransportError::JoinTimeout {
                addr,
                after_ms: duration_ms(timeout),
            })
        });
    endpoint.close(frame::CLOSE_NORMAL, b"join done");
    outcome
}

async fn exchange(
    endpoint: &quinn::Endpoint,
    client_config: quinn::ClientConfig,
    addr: SocketAddr,
    body: Vec<u8>,
) -> Result<Bytes, TransportError> {
    let fail = |reason: String| TransportError::Connect { addr, reason };
    let conn = endpoint
        .connect_with(client_config, addr, NODE_SERVER_NAME)
        .map_err(|e| fail(e.to_string()))?
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
    match frame::write_frame(&mut send, Bytes::from(body)).await {
        Ok(()) => {
            // Fails only if the stream is already closed; the response read reports why.
            send.finish().ok();
        }
        // The server stopped reading; its response says why.
        Err(WriteError::Stopped(_)) => {}
        Err(e) => return Err(fail(format!("join request not sent: {e}"))),
    }
    let response = frame::read_response(&mut recv, MAX_JOIN_RESPONSE_BYTES).await;
    conn.close(frame::CLOSE_NORMAL, b"join done");
    match response {
        Ok(Response::Ok(bytes)) => Ok(bytes),
        Ok(Response::Error(reason)) => Err(TransportError::Remote { reason }),
        Ok(Response::Refused(reason)) => Err(TransportError::Remote {
            reason: format!("refused: {reason}"),
        }),
        Ok(Response::TooLarge { len, max }) => Err(TransportError::FrameTooLarge { len, max }),
        Err(e) => Err(fail(format!("no join response: {e}"))),
    }
}
