//! Serving requests from other nodes (and from this node's own routing, which calls the same
//! functions when the target is local): Raft RPCs, forwarded proposals and reads, the
//! reconfiguration steps of placement, upper-layer requests, and joins.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chatsdk_storage::{GroupId, NodeId, TypeConfig};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft};

use crate::codec;
use crate::join::{self, JoinRequest, JoinResponse};
use crate::meta::{MetaCommand, MetaReply, NodeState};
use crate::node::{ClusterNode, NodeInner};
use crate::tls::ClusterCa;
use crate::wire::{PeerRequest, PeerResponse, Refusal};

/// Decodes, serves and encodes one request.
pub(crate) async fn handle_raw(node: &Arc<NodeInner>, from: NodeId, body: &[u8]) -> Vec<u8> {
    let response = match codec::decode::<PeerRequest>(body) {
        Ok(request) => handle(node, from, request).await,
        Err(e) => PeerResponse::Done(Err(Refusal::Failed {
            reason: format!("undecodable request: {e}"),
        })),
    };
    codec::encode(&response).unwrap_or_default()
}

/// The encoded answer of a node that is not ready to serve.
pub(crate) fn unavailable() -> Vec<u8> {
    codec::encode(&PeerResponse::Done(Err(Refusal::Unavailable {
        reason: "node starting or stopping".into(),
    })))
    .unwrap_or_default()
}

fn raft_of(node: &NodeInner, group: GroupId) -> Option<Raft<TypeConfig>> {
    node.group(group).map(|g| g.raft.clone())
}

/// The node a Raft RPC speaks for (its leader or candidate), which must be its sender.
fn raft_sender(request: &PeerRequest) -> Option<NodeId> {
    let vote = match request {
        PeerRequest::AppendEntries { rpc, .. } => &rpc.vote,
        PeerRequest::Vote { rpc, .. } => &rpc.vote,
        PeerRequest::InstallSnapshot { rpc, .. } => &rpc.vote,
        _ => return None,
    };
    vote.leader_id().voted_for()
}

/// Serves one request.
pub(crate) async fn handle(
    node: &Arc<NodeInner>,
    from: NodeId,
    request: PeerRequest,
) -> PeerResponse {
    if node.shutdown.is_cancelled() {
        return PeerResponse::Done(Err(Refusal::Unavailable {
            reason: "shutting down".into(),
        }));
    }
    let removed = node
        .meta
        .current()
        .nodes
        .get(&from)
        .is_some_and(|n| n.state == NodeState::Removed);
    if removed && from != node.id {
        // Its certificate is still valid, but a removed node has no say in any group any more.
        return PeerResponse::Done(Err(Refusal::Failed {
            reason: format!("node {from} was removed from the cluster"),
        }));
    }
    if let Some(claimed) = raft_sender(&request) {
        if claimed != from {
            return PeerResponse::Done(Err(Refusal::Failed {
                reason: format!("node {from} sent a raft message on behalf of node {claimed}"),
            }));
        }
    }
    match request {
        PeerRequest::AppendEntries { group, rpc } => match raft_of(node, group) {
            Some(raft) => PeerResponse::AppendEntries(raft.append_entries(rpc).await),
            None => PeerResponse::NoSuchGroup,
        },
        PeerRequest::Vote { group, rpc } => match raft_of(node, group) {
            Some(raft) => PeerResponse::Vote(raft.vote(rpc).await),
            None => PeerResponse::NoSuchGroup,
        },
        PeerRequest::InstallSnapshot { group, rpc } => match raft_of(node, group) {
            Some(raft) if rpc.done => {
                crate::snapshot_stream::install_last(node, group, raft, rpc).await
            }
            Some(raft) => PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await),
            None => PeerResponse::NoSuchGroup,
        },
        PeerRequest::InstallProgress { group, snapshot_id } => {
            crate::snapshot_stream::progress(node, group, &snapshot_id).await
        }
        PeerRequest::Propose { group, command } => {
            PeerResponse::Proposed(propose_here(node, group, command).await)
        }
        PeerRequest::ProposeMany { items } => {
            let proposals = items
                .into_iter()
                .map(|(group, command)| propose_here(node, group, command.into_vec()));
            let results = futures::future::join_all(proposals).await;
            PeerResponse::ProposedMany(
                results
                    .into_iter()
                    .map(|r| r.map(serde_bytes::ByteBuf::from))
                    .collect(),
            )
        }
        PeerRequest::ReadIndex { group } => {
            PeerResponse::ReadIndex(read_index_here(node, group).await)
        }
        PeerRequest::Reconfigure { group, voters } => {
            PeerResponse::Done(reconfigure_here(node, group, voters).await)
        }
        PeerRequest::TransferLeader { group, to } => {
            PeerResponse::Done(transfer_here(node, group, to).await)
        }
        PeerRequest::Campaign {
            group,
            leader,
            term,
            after_ms,
        } => PeerResponse::Done(campaign_here(node, group, leader, term, after_ms)),
        PeerRequest::CancelCampaign { group } => {
            cancel_campaign(node, group);
            PeerResponse::Done(Ok(()))
        }
        PeerRequest::Upper { topic, body } => {
            PeerResponse::Upper(handle_upper(node, from, topic, body).await)
        }
        PeerRequest::UpperAtLeader { group, topic, body } => {
            let Some(raft) = raft_of(node, group) else {
                return PeerResponse::NoSuchGroup;
            };
            PeerResponse::Upper(match check_leader(node, &raft) {
                Ok(()) => handle_upper(node, from, topic, body).await,
                Err(refusal) => Err(refusal),
            })
        }
    }
}

async fn handle_upper(
    node: &NodeInner,
    from: NodeId,
    topic: u16,
    body: Vec<u8>,
) -> Result<Vec<u8>, Refusal> {
    let handler = node.upper.read().ok().and_then(|m| m.get(&topic).cloned());
    match handler {
        Some(h) => h
            .handle(from, body)
            .await
            .map_err(|reason| Refusal::Failed { reason }),
        None => Err(Refusal::Failed {
            reason: format!("no handler for topic {topic}"),
        }),
    }
}

pub(crate) fn write_refusal(
    e: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
) -> Refusal {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Refusal::NotLeader {
            leader: f.leader_id,
        },
        RaftError::Fatal(f) => Refusal::Unavailable {
            reason: f.to_string(),
        },
        other => Refusal::Failed {
            reason: other.to_string(),
        },
    }
}

/// Proposes on the local replica, which must lead the group (through its batcher).
pub(crate) async fn propose_here(
    node: &NodeInner,
    group: GroupId,
    command: Vec<u8>,
) -> Result<Vec<u8>, Refusal> {
    let batcher = node
        .group(group)
        .map(|g| g.batcher.clone())
        .ok_or(Refusal::NoSuchGroup { group })?;
    batcher.propose(command).await
}

/// The index a linearizable read must wait for, from the leader.
pub(crate) async fn read_index_here(node: &NodeInner, group: GroupId) -> Result<u64, Refusal> {
    let raft = raft_of(node, group).ok_or(Refusal::NoSuchGroup { group })?;
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map(|l| l.index).unwrap_or(0)),
        Err(RaftError::APIError(e)) => match e {
            openraft::error::CheckIsLeaderError::ForwardToLeader(f) => Err(Refusal::NotLeader {
                leader: f.leader_id,
            }),
            other => Err(Refusal::Unavailable {
                reason: other.to_string(),
            }),
        },
        Err(RaftError::Fatal(f)) => Err(Refusal::Unavailable {
            reason: f.to_string(),
        }),
    }
}

fn check_leader(node: &NodeInner, raft: &Raft<TypeConfig>) -> Result<(), Refusal> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader == Some(node.id) && m.state == openraft::ServerState::Leader {
        Ok(())
    } else {
        Err(Refusal::NotLeader {
            leader: m.current_leader,
        })
    }
}

/// Makes the group's voters exactly `voters`: new nodes join as learners and catch up first.
async fn reconfigure_here(
    node: &NodeInner,
    group: GroupId,
    voters: std::collections::BTreeMap<NodeId, openraft::BasicNode>,
) -> Result<(), Refusal> {
    let raft = raft_of(node, group).ok_or(Refusal::NoSuchGroup { group })?;
    check_leader(node, &raft)?;
    let members = |raft: &Raft<TypeConfig>| -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let m = raft.metrics().borrow().membership_config.clone();
        (
            m.nodes().map(|(id, _)| *id).collect(),
            m.membership().voter_ids().collect(),
        )
    };
    let (current_nodes, _) = members(&raft);
    for (id, info) in &voters {
        if !current_nodes.contains(id) {
            raft.add_learner(*id, info.clone(), false)
                .await
                .map_err(write_refusal)?;
        }
    }
    // New replicas become voters only once they hold the log: a retried reconfiguration must
    // not promote a learner that is still catching up (by snapshot, say).
    let caught_up = raft
        .wait(Some(LEARNER_CATCH_UP))
        .metrics(
            |m| {
                let last = m.last_log_index.unwrap_or(0);
                voters.keys().filter(|id| **id != m.id).all(|id| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .is_some_and(|l| l.index + MAX_PROMOTION_LAG >= last)
                })
            },
            "new replicas caught up",
        )
        .await;
    if caught_up.is_err() {
        return Err(Refusal::Unavailable {
            reason: "new replicas are still catching up".into(),
        });
    }
    let wanted: BTreeSet<NodeId> = voters.keys().copied().collect();
    if !wanted.contains(&node.id) {
        // Removing the leader itself would leave the group leaderless for an election timeout.
        // Make the new replicas voters while we still lead, hand leadership to one of them and
        // let it finish the change (the caller follows the redirect). If the hand-over does not
        // happen (writes keep followers' leases alive), fall through and pay the election.
        let mut interim = wanted.clone();
        interim.insert(node.id);
        let (_, current_voters) = members(&raft);
        if current_voters != interim {
            raft.change_membership(ChangeMembers::ReplaceAllVoters(interim), true)
                .await
                .map_err(write_refusal)?;
        }
        for candidate in &wanted {
            if transfer_here(node, group, *candidate).await.is_ok() {
                return Err(Refusal::NotLeader {
                    leader: Some(*candidate),
                });
            }
        }
    }
    let (_, current_voters) = members(&raft);
    if current_voters != wanted {
        raft.change_membership(ChangeMembers::ReplaceAllVoters(wanted.clone()), false)
            .await
            .map_err(write_refusal)?;
    }
    // `retain = false` drops only former voters; learners left over from an interrupted or
    // interim change must go too, or leaders keep replicating to nodes that dropped the group.
    let (all_now, _) = members(&raft);
    let stale: BTreeSet<NodeId> = all_now.difference(&wanted).copied().collect();
    if !stale.is_empty() {
        raft.change_membership(ChangeMembers::RemoveNodes(stale), false)
            .await
            .map_err(write_refusal)?;
    }
    Ok(())
}

/// How long a reconfiguration waits for new replicas to catch up before it gives up (the
/// reconciler retries it).
const LEARNER_CATCH_UP: Duration = Duration::from_secs(20);
/// Entries a new replica may still miss when it is made a voter.
const MAX_PROMOTION_LAG: u64 = 16;

/// Pauses a leader's heartbeats and new proposals for a hand-over; undone when dropped, on
/// every path (errors, timeouts, a cancelled caller).
struct HandOverPause<'a> {
    raft: &'a Raft<TypeConfig>,
    group: &'a crate::groups::Group,
}

impl<'a> HandOverPause<'a> {
    fn start(raft: &'a Raft<TypeConfig>, group: &'a crate::groups::Group) -> Self {
        raft.runtime_config().heartbeat(false);
        group.batcher.set_paused(true);
        HandOverPause { raft, group }
    }
}

impl Drop for HandOverPause<'_> {
    fn drop(&mut self) {
        self.raft.runtime_config().heartbeat(true);
        self.group.batcher.set_paused(false);
    }
}

/// Hands leadership to `to`. openraft 0.9 has no leader-transfer message, so the leader stops
/// heartbeats and new proposals until its followers' leader leases lapse, and `to`, which must
/// be caught up, campaigns just after. Writes queue meanwhile (up to about a lease). If anything
/// goes wrong the pause ends and the scheduled campaign is cancelled. Every failure is a
/// `Failed` refusal: routing must not retry a hand-over on its own.
async fn transfer_here(node: &NodeInner, group: GroupId, to: NodeId) -> Result<(), Refusal> {
    let handle = node.group(group).ok_or(Refusal::NoSuchGroup { group })?;
    let raft = handle.raft.clone();
    check_leader(node, &raft)?;
    if to == node.id {
        return Ok(());
    }
    let Ok(_one_at_a_time) = handle.handover.try_lock() else {
        return Err(Refusal::Failed {
            reason: "a hand-over of this group is already running".into(),
        });
    };
    let metrics = raft.metrics().borrow().clone();
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&to).cloned().flatten())
        .map(|l| l.index);
    if matched != Some(last) {
        return Err(Refusal::Failed {
            reason: format!("node {to} is not caught up ({matched:?} of {last})"),
        });
    }
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    let heartbeat = Duration::from_millis(raft.config().heartbeat_interval);
    let pause = HandOverPause::start(&raft, &handle);
    let campaign = PeerRequest::Campaign {
        group,
        leader: node.id,
        term: metrics.current_term,
        after_ms: (lease + heartbeat).as_millis() as u64,
    };
    let outcome = match codec::encode(&campaign) {
        Ok(body) => match node
            .transport
            .request_with_timeout(to, body, lease / 2)
            .await
        {
            Ok(_) => raft
                .wait(Some(lease * 3))
                .metrics(|m| m.current_leader == Some(to), "leadership handed over")
                .await
                .map(|_| ())
                .map_err(|e| format!("transfer to {to} did not complete: {e}")),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    drop(pause);
    if outcome.is_err() {
        // The target may have scheduled its campaign even if we did not hear back.
        if let Ok(body) = codec::encode(&PeerRequest::CancelCampaign { group }) {
            let _best_effort = node
                .transport
                .request_with_timeout(to, body, heartbeat)
                .await;
        }
    }
    outcome.map_err(|reason| Refusal::Failed { reason })
}

/// Schedules this node's campaign for `group` (at most one per group; a newer one replaces it).
/// When it fires, it only runs if `leader` still leads in `term` as far as this node knows.
fn campaign_here(
    node: &Arc<NodeInner>,
    group: GroupId,
    leader: NodeId,
    term: u64,
    after_ms: u64,
) -> Result<(), Refusal> {
    let raft = raft_of(node, group).ok_or(Refusal::NoSuchGroup { group })?;
    let cancel = node.shutdown.child_token();
    if let Ok(mut pending) = node.campaigns.lock() {
        if let Some(previous) = pending.insert(group, cancel.clone()) {
            previous.cancel();
        }
    }
    let after = Duration::from_millis(after_ms.min(60_000));
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(after) => {
                let m = raft.metrics().borrow().clone();
                if m.current_leader == Some(leader) && m.current_term == term {
                    if let Err(e) = raft.trigger().elect().await {
                        tracing::warn!(group, error = %e, "campaign failed");
                    }
                }
            }
        }
    });
    Ok(())
}

fn cancel_campaign(node: &NodeInner, group: GroupId) {
    if let Ok(mut pending) = node.campaigns.lock() {
        if let Some(token) = pending.remove(&group) {
            token.cancel();
        }
    }
}

/// Why a dev node refuses a join.
pub(crate) const DEV_REFUSES_JOINS: &str = "join refused: the node runs in dev mode, which is for one node (anyone may create apps and keys); restart it without --dev to let nodes join";

/// Admits a joining node: checks its secret, allocates its id and issues its certificate.
pub(crate) async fn admit(node: Arc<NodeInner>, body: &[u8]) -> Result<Vec<u8>, String> {
    let request: JoinRequest = codec::decode(body).map_err(|e| e.to_string())?;
    if !node.config.admits_joins {
        return Err(DEV_REFUSES_JOINS.into());
    }
    let state = node.meta.current();
    let authority = state
        .authority
        .clone()
        .ok_or_else(|| "cluster not bootstrapped".to_string())?;
    if request.cluster_id != state.cluster_id {
        return Err("join refused: the token is of another cluster".into());
    }
    if request.addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(format!("join refused: bad address {:?}", request.addr));
    }
    let handle = ClusterNode {
        inner: node.clone(),
    };
    // The state machine checks the token (live, unspent) and admits in one step, so a
    // single-use token admits one node even when two present it at once.
    let reply = handle
        .propose_meta(MetaCommand::JoinWithToken {
            addr: request.addr.clone(),
            secret_sha256: join::secret_digest(&request.secret),
            now_ms: join::now_ms(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let node_id = match reply {
        MetaReply::NodeId(id) => id,
        MetaReply::Refused(why) => return Err(why),
        other => return Err(format!("join refused: {other:?}")),
    };
    let ca = ClusterCa {
        cert_pem: authority.ca_cert_pem,
        key_pem: authority.ca_key_pem,
    };
    let mut identity = ca
        .issue_node_cert_for(node_id, node.config.node_cert_lifetime)
        .map_err(|e| e.to_string())?;
    // During a CA rotation the new node trusts every CA its peers' certificates may be under.
    let latest = node.meta.current();
    identity.ca_cert_pem = crate::trust::bundle(&ca.cert_pem, &latest.trust.trusted(&latest));
    let peers = node
        .meta
        .current()
        .nodes
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    tracing::info!(node_id, addr = %request.addr, "node admitted");
    codec::encode(&JoinResponse {
        node_id,
        cluster_id: state.cluster_id.clone(),
        ca_cert_pem: identity.ca_cert_pem,
        cert_pem: identity.cert_pem,
        key_pem: identity.key_pem,
        peers,
    })
    .map_err(|e| e.to_string())
}
