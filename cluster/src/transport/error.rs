//! The one error type of the transport, split into failures worth retrying (the peer may be
//! back, the partition may heal) and ones that will fail the same way again.

use std::net::SocketAddr;

use super::NodeId;
use crate::tls::TlsError;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No usable connection: no address is known, or the peer is in reconnect backoff after a
    /// failed dial (requests fail fast instead of queueing behind a dead peer).
    #[error("node {peer} is unreachable")]
    Unreachable { peer: NodeId },
    /// A fault injected with [`super::Faults::drop_to`] (on either side) discarded the traffic.
    #[error("traffic with node {peer} is dropped by fault injection")]
    Dropped { peer: NodeId },
    /// The request got no response in time (the wait for an in-flight slot counts).
    #[error("request to node {peer} timed out after {after_ms} ms")]
    Timeout { peer: NodeId, after_ms: u64 },
    /// The join exchange did not complete in time.
    #[error("join request to {addr} timed out after {after_ms} ms")]
    JoinTimeout { addr: SocketAddr, after_ms: u64 },
    /// A frame exceeded the limit of whichever side refused it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// This transport is shut down.
    #[error("transport is shut down")]
    Closed,
    /// The peer answered with a refusal instead of calling its handler.
    #[error("node {peer} refused the request: {reason}")]
    Refused { peer: NodeId, reason: String },
    /// The remote handler returned an error (the join handler's `Err(text)`).
    #[error("remote handler failed: {reason}")]
    Remote { reason: String },
    /// An established connection died while the request was outstanding.
    #[error("connection to node {peer} lost: {reason}")]
    ConnectionLost { peer: NodeId, reason: String },
    /// Dialing, the TLS handshake or the hello exchange failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The peer sent something the protocol does not allow.
    #[error("transport protocol violation: {reason}")]
    Protocol { reason: String },
    /// The configuration was rejected before any socket was bound.
    #[error("invalid transport config: {reason}")]
    InvalidConfig { reason: String },
    #[error("tls configuration failed: {0}")]
    Tls(#[from] TlsError),
    /// The node-to-node UDP address could not be bound (in use, not local, no permission).
    #[error("cannot bind the node-to-node address udp {addr} (change cluster.addr or --cluster-addr): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl TransportError {
    /// True when the same call may succeed later: the peer may come back, the partition may
    /// heal, the backoff may expire. False for errors that would repeat (bad input, bad
    /// config, a handler's verdict, a protocol violation).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Unreachable { .. }
            | TransportError::Dropped { .. }
            | TransportError::Timeout { .. }
            | TransportError::JoinTimeout { .. }
            | TransportError::Closed
            | TransportError::ConnectionLost { .. }
            | TransportError::Connect { .. } => true,
            TransportError::FrameTooLarge { .. }
            | TransportError::Refused { .. }
            | TransportError::Remote { .. }
            | TransportError::Protocol { .. }
            | TransportError::InvalidConfig { .. }
            | TransportError::Tls(_)
            | TransportError::Bind { .. }
            | TransportError::Io(_) => false,
        }
    }
}
