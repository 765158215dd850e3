//! The cluster crate's error type.

use chatsdk_storage::{GroupId, StoreError};

use crate::tls::TlsError;
use crate::transport::TransportError;
use crate::wire::Refusal;

/// What can go wrong in the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node's storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Talking to a peer failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// Certificates or keys could not be made or read.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// A message could not be encoded or decoded.
    #[error("codec: {reason}")]
    Codec { reason: String },
    /// Forwarding a proposal to the leader's node failed (transport or decoding).
    #[error("forwarding: {reason}")]
    Forward { reason: String },
    /// A peer refused the request.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// No replica of the group on this node.
    #[error("no replica of group {group} on this node")]
    NoSuchGroup { group: GroupId },
    /// The group is not known to the cluster.
    #[error("unknown group {group}")]
    UnknownGroup { group: GroupId },
    /// No leader could carry out the request before the deadline.
    #[error("group {group}: gave up after {after_ms} ms ({last})")]
    Timeout {
        group: GroupId,
        after_ms: u64,
        last: String,
    },
    /// openraft reported an error it cannot recover from here.
    #[error("raft: {reason}")]
    Raft { reason: String },
    /// Joining a cluster failed.
    #[error("join: {reason}")]
    Join { reason: String },
    /// The configuration is invalid.
    #[error("config: {reason}")]
    Config { reason: String },
    /// A proposed command is larger than `ClusterConfig::max_command_bytes`.
    #[error("command of {len} bytes exceeds the limit of {max}")]
    CommandTooLarge { len: usize, max: usize },
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl ClusterError {
    /// True when retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClusterError::Transport(e) => e.is_retryable(),
            ClusterError::Refused(r) => matches!(
                r,
                Refusal::NotLeader { .. }
                    | Refusal::NoSuchGroup { .. }
                    | Refusal::Unavailable { .. }
            ),
            ClusterError::NoSuchGroup { .. }
            | ClusterError::Timeout { .. }
            | ClusterError::Forward { .. } => true,
            _ => false,
        }
    }
}
