//! openraft's network for any group, carried by the cluster transport.
//!
//! Each group gets a [`GroupNetwork`] factory; its clients wrap Raft RPCs in [`PeerRequest`]s
//! tagged with the group id. Transport failures become `Unreachable` (openraft backs off), and a
//! peer that has no replica of the group yet (it is still creating it) is treated the same way.

use std::net::SocketAddr;
use std::time::Duration;

use chatsdk_storage::{GroupId, NodeId, TypeConfig};
use std::future::Future;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::SnapshotResponse;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::Snapshot;
use openraft::BasicNode;
use openraft::Vote;

use crate::codec;
use crate::transport::Transport;
use crate::wire::{PeerRequest, PeerResponse};

/// Builds RPC clients of one group.
pub(crate) struct GroupNetwork {
    pub(crate) group: GroupId,
    pub(crate) transport: Transport,
    /// See [`crate::ClusterConfig::snapshot_stall_timeout`].
    pub(crate) snapshot_stall_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerLink {
        // The meta state's address book is authoritative; the membership's address is a
        // fallback for peers we have not heard of yet.
        if self.transport.peer_addr(target).is_none() {
            if let Ok(addr) = node.addr.parse::<SocketAddr>() {
                self.transport.set_peer_addr(target, addr);
            }
        }
        PeerLink {
            group: self.group,
            target,
            transport: self.transport.clone(),
            snapshot_stall_timeout: self.snapshot_stall_timeout,
        }
    }
}

/// Sends one group's RPCs to one peer.
pub(crate) struct PeerLink {
    group: GroupId,
    target: NodeId,
    transport: Transport,
    snapshot_stall_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Text(String);

impl PeerLink {
    async fn call<E: std::error::Error>(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, RPCError<NodeId, BasicNode, E>> {
        let body = codec::encode(&request)
            .map_err(|e| RPCError::Network(NetworkError::new(&Text(e.to_string()))))?;
        let raw = self
            .transport
            .request_with_timeout(self.target, body, timeout)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let response: PeerResponse = codec::decode(&raw)
            .map_err(|e| RPCError::Network(NetworkError::new(&Text(e.to_string()))))?;
        if let PeerResponse::NoSuchGroup = response {
            return Err(RPCError::Unreachable(Unreachable::new(&Text(format!(
                "node {} has no replica of group {} yet",
                self.target, self.group
            )))));
        }
        Ok(response)
    }

    fn unexpected<E: std::error::Error>(
        &self,
        got: &PeerResponse,
    ) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&Text(format!(
            "unexpected response from node {}: {got:?}",
            self.target
        ))))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    /// Exponential backoff towards an unreachable peer: 50 ms doubling up to 1 s, so a restarted
    /// node is picked up quickly and a dead one costs little.
    fn backoff(&self) -> Backoff {
        Backoff::new(
            (0u32..).map(|attempt| Duration::from_millis((50u64 << attempt.min(5)).min(1000))),
        )
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let request = PeerRequest::AppendEntries {
            group: self.group,
            rpc,
        };
        match self.call(request, option.hard_ttl()).await? {
            PeerResponse::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let request = PeerRequest::InstallSnapshot {
            group: self.group,
            rpc,
        };
        match self.call(request, option.hard_ttl()).await? {
            PeerResponse::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends a whole snapshot chunk by chunk, then follows the follower's install for as long as
    /// it makes progress (see [`crate::snapshot_stream`]).
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let link = crate::snapshot_stream::Link {
            group: self.group,
            target: self.target,
            transport: &self.transport,
            chunk_timeout: option.hard_ttl(),
            stall_timeout: self.snapshot_stall_timeout,
        };
        link.send(vote, snapshot, cancel).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let request = PeerRequest::Vote {
            group: self.group,
            rpc,
        };
        match self.call(request, option.hard_ttl()).await? {
            PeerResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }
}
