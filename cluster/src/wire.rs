//! The requests and responses nodes exchange over the cluster transport.
//!
//! The transport moves opaque frames; this module gives them meaning: Raft RPCs of any group,
//! proposals and read-index requests forwarded to a group's leader, the reconfiguration steps the
//! meta leader asks shard leaders to carry out, and messages of the layers above.

use std::collections::BTreeMap;

use chatsdk_storage::{GroupId, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerRequest {
    AppendEntries {
        group: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
    },
    Vote {
        group: GroupId,
        rpc: VoteRequest<NodeId>,
    },
    InstallSnapshot {
        group: GroupId,
        rpc: InstallSnapshotRequest<TypeConfig>,
    },
    /// Propose a command on the receiver, which must lead the group.
    Propose {
        group: GroupId,
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    },
    /// Several proposals, each for a group the receiver leads (forwarded in one request).
    ProposeMany {
        items: Vec<(GroupId, serde_bytes::ByteBuf)>,
    },
    /// Ask the group's leader for an index that a linearizable read must wait for.
    ReadIndex { group: GroupId },
    /// Make the voters of a group exactly `voters` (the receiver must lead it).
    Reconfigure {
        group: GroupId,
        voters: BTreeMap<NodeId, BasicNode>,
    },
    /// Hand leadership of a group to `to` (the receiver must lead it).
    TransferLeader { group: GroupId, to: NodeId },
    /// Start an election for a group after `after_ms`, if the sender still leads it in `term`
    /// then (sent by a leader handing over, which has paused its heartbeats and writes).
    Campaign {
        group: GroupId,
        leader: NodeId,
        term: u64,
        after_ms: u64,
    },
    /// Forget a scheduled campaign (the hand-over was abandoned).
    CancelCampaign { group: GroupId },
    /// A request of an upper layer, routed by topic to the handler it registered.
    Upper {
        topic: u16,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// A request of an upper layer for whichever node leads `group` (refused with
    /// [`Refusal::NotLeader`] elsewhere, so the sender follows the leader).
    UpperAtLeader {
        group: GroupId,
        topic: u16,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// How far the install of a snapshot the sender sent has got (see `snapshot_stream`).
    InstallProgress { group: GroupId, snapshot_id: String },
}

/// Why a request was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The receiver does not lead the group; `leader` is its best guess.
    #[error("not the leader (leader hint {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The receiver holds no replica of the group.
    #[error("no replica of group {group} here")]
    NoSuchGroup { group: GroupId },
    /// The receiver is shutting down or the group stopped.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String },
    /// The request was refused for a reason retrying will not fix.
    #[error("failed: {reason}")]
    Failed { reason: String },
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Proposed(Result<Vec<u8>, Refusal>),
    /// One result per item of a `ProposeMany`, in order.
    ProposedMany(Vec<Result<serde_bytes::ByteBuf, Refusal>>),
    ReadIndex(Result<u64, Refusal>),
    Done(Result<(), Refusal>),
    Upper(Result<Vec<u8>, Refusal>),
    /// The request named a group this node holds no replica of.
    NoSuchGroup,
    /// A snapshot's install goes on; `installed` counts the entries of the group this node has
    /// installed from snapshots so far, so that the sender sees it move.
    Installing {
        installed: u64,
    },
}
