//! The meta leader's reconciler: carries out what placement decides, one step at a time.
//!
//! Every node runs the loop; only the meta group's leader acts. A pass performs at most one
//! step, in this order: start a rotation of the cluster CA after a node was removed, admit a joining node to the meta group (learner, then voter), fix the meta
//! voter set, finish a shard change left half-way (after a meta leader change), move one shard
//! towards the target of [`crate::placement::place`], with no shard led by a draining node
//! ([`crate::placement::keep_leaders_off`]) (record the new placement, add the new
//! replicas as learners, switch the voters, mark it settled, hand leadership to the preferred
//! leader), remove a leaving node that holds nothing any more, or check one shard's leader
//! against its preferred leader (round robin). Each step changes the meta state, which wakes the
//! loop again at once, so a rebalance runs shard after shard without waiting for the interval.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

use chatsdk_storage::{GroupId, NodeId};
use openraft::{BasicNode, ChangeMembers, ServerState};

use crate::meta::{MetaCommand, MetaReply, MetaState, NodeState, ShardRecord, META_GROUP};
use crate::node::{raft_err, ClusterNode, NodeInner};
use crate::placement::{keep_leaders_off, place, ShardPlacement};
use crate::routing::{call_leader, unexpected};
use crate::wire::{PeerRequest, PeerResponse};
use crate::ClusterError;

/// Voters of the meta group; further nodes replicate it as learners.
const MAX_META_VOTERS: usize = 5;
/// How long removal waits for a leaving node to receive the final shard map.
const LEAVING_CATCH_UP: Duration = Duration::from_secs(5);
/// How long one membership step may take (a learner may need a snapshot first).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The reconciliation loop of a node.
pub(crate) async fn run(weak: Weak<NodeInner>) {
    let Some(inner) = weak.upgrade() else { return };
    let token = inner.shutdown.clone();
    let interval = inner.config.reconcile_interval;
    let mut meta_rx = inner.meta.subscribe();
    drop(inner);
    let mut cursor: u32 = 0;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = meta_rx.changed() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        if !leads_meta(&inner) {
            continue;
        }
        let node = ClusterNode { inner };
        let step = tokio::select! {
            _ = token.cancelled() => return,
            step = pass(&node, &mut cursor) => step,
        };
        if let Err(e) = step {
            tracing::debug!(error = %e, "reconcile step failed; retrying");
        }
    }
}

fn leads_meta(inner: &NodeInner) -> bool {
    inner.group(META_GROUP).is_some_and(|g| {
        let m = g.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(inner.id)
    })
}

fn addr_of(state: &MetaState, id: NodeId) -> BasicNode {
    BasicNode {
        addr: state
            .nodes
            .get(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default(),
    }
}

fn expect_ok(reply: MetaReply) -> Result<(), ClusterError> {
    match reply {
        MetaReply::Refused(reason) => Err(ClusterError::Refused(crate::wire::Refusal::Failed {
            reason,
        })),
        _ => Ok(()),
    }
}

/// One reconciliation step; returns after doing at most one thing.
async fn pass(node: &ClusterNode, cursor: &mut u32) -> Result<(), ClusterError> {
    let inner = &node.inner;
    let state = inner.meta.current();
    if state.bootstrapped_by == 0 {
        return Ok(());
    }
    // 0. A node was removed: it held the CA key, so the CA is replaced (see `crate::trust`).
    if state.trust.rotation_due {
        let fingerprint = node.rotate_ca().await?;
        tracing::info!(ca = %fingerprint, "cluster CA rotation started after a node removal");
        return Ok(());
    }
    let meta = inner
        .group(META_GROUP)
        .ok_or(ClusterError::NoSuchGroup { group: META_GROUP })?;
    let membership = meta.raft.metrics().borrow().membership_config.clone();
    let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();

    // 1. Admit joining nodes: make each a meta learner, and activate those that caught up.
    //    A joiner that never shows up stays Joining (an operator removes it) and blocks nothing.
    let metrics = meta.raft.metrics().borrow().clone();
    for joining in state.nodes_in(NodeState::Joining) {
        if !members.contains(&joining) {
            meta.raft
                .add_learner(joining, addr_of(&state, joining), false)
                .await
                .map_err(raft_err)?;
            return Ok(());
        }
        if caught_up(&metrics, joining) {
            let reply = node
                .propose_meta(MetaCommand::SetNodeState {
                    id: joining,
                    state: NodeState::Active,
                })
                .await?;
            tracing::info!(node = joining, "node active");
            return expect_ok(reply);
        }
    }

    // 2. Meta voters: the first active nodes by id.
    let desired: BTreeSet<NodeId> = state
        .active_nodes()
        .into_iter()
        .take(MAX_META_VOTERS)
        .collect();
    if !desired.is_empty() && desired != voters {
        for id in desired.difference(&members) {
            tokio::time::timeout(
                STEP_TIMEOUT,
                meta.raft.add_learner(*id, addr_of(&state, *id), true),
            )
            .await
            .map_err(|_| step_timeout(META_GROUP))?
            .map_err(raft_err)?;
        }
        meta.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(desired.clone()), true)
            .await
            .map_err(raft_err)?;
        tracing::info!(voters = ?desired, "meta voters changed");
        return Ok(());
    }

    // 3. A shard change left half-way.
    if let Some((&shard, rec)) = state.shard_map.iter().find(|(_, r)| !r.settled) {
        return move_shard(node, &state, shard, rec.placement.clone()).await;
    }

    // 4. Placement; draining nodes keep their replicas but lead nothing.
    let mut target = place(
        &state.active_nodes(),
        &state.placement_map(),
        state.replication,
    );
    keep_leaders_off(
        &mut target,
        &state.nodes_in(NodeState::Draining).into_iter().collect(),
    );
    for (&shard, want) in &target.shards {
        let Some(have) = state.shard_map.get(&shard) else {
            continue;
        };
        if have.placement.replicas != want.replicas {
            return move_shard(node, &state, shard, want.clone()).await;
        }
        if have.placement.leader != want.leader {
            set_shard(node, shard, want.clone(), true).await?;
            return hand_over(node, shard, want.leader).await;
        }
    }

    // 5. Leaving nodes that hold nothing any more.
    for leaving in state.nodes_in(NodeState::Leaving) {
        if !state.shards_of(leaving).is_empty() {
            continue;
        }
        if members.contains(&leaving) {
            // Let a live leaving node see the settled shard map first, so it drops its copies;
            // once removed it hears nothing more. A dead one never catches up: go on after a
            // while.
            let target = meta.raft.metrics().borrow().last_log_index.unwrap_or(0);
            let _caught_up_or_dead = meta
                .raft
                .wait(Some(LEAVING_CATCH_UP))
                .metrics(
                    |m| {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&leaving).cloned().flatten())
                            .is_some_and(|l| l.index >= target)
                    },
                    "leaving node saw the final shard map",
                )
                .await;
            meta.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([leaving])), false)
                .await
                .map_err(raft_err)?;
        }
        let reply = node
            .propose_meta(MetaCommand::SetNodeState {
                id: leaving,
                state: NodeState::Removed,
            })
            .await?;
        tracing::info!(node = leaving, "node removed");
        return expect_ok(reply);
    }

    // 6. A draining meta leader (this node) hands the directory to an active voter, so that its
    //    stop interrupts no directory write either.
    let draining = |id: &NodeId| {
        state
            .nodes
            .get(id)
            .is_some_and(|n| n.state == NodeState::Draining)
    };
    if draining(&inner.id) {
        let active_voter = voters.iter().copied().find(|v| {
            *v != inner.id
                && state
                    .nodes
                    .get(v)
                    .is_some_and(|n| n.state == NodeState::Active)
        });
        if let Some(to) = active_voter {
            return hand_over(node, META_GROUP, Some(to)).await;
        }
    }

    // 7. Round robin: is one shard led by its preferred leader?
    if state.shards > 0 {
        let shard = *cursor % state.shards + 1;
        *cursor = cursor.wrapping_add(1);
        if let Some(rec) = state.shard_map.get(&shard) {
            return hand_over(node, shard, rec.placement.leader).await;
        }
    }
    Ok(())
}

/// Whether the meta leader has replicated its whole log to `node` (within a small lag).
fn caught_up(metrics: &openraft::RaftMetrics<NodeId, BasicNode>, node: NodeId) -> bool {
    /// Entries a learner may still be missing when it is promoted.
    const MAX_LAG: u64 = 16;
    let last = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&node).cloned().flatten())
        .is_some_and(|matched| matched.index + MAX_LAG >= last)
}

fn step_timeout(group: GroupId) -> ClusterError {
    ClusterError::Timeout {
        group,
        after_ms: STEP_TIMEOUT.as_millis() as u64,
        last: "membership step".into(),
    }
}

async fn set_shard(
    node: &ClusterNode,
    shard: GroupId,
    placement: ShardPlacement,
    settled: bool,
) -> Result<(), ClusterError> {
    let reply = node
        .propose_meta(MetaCommand::SetShard {
            shard,
            record: ShardRecord { placement, settled },
        })
        .await?;
    expect_ok(reply)
}

/// Moves one shard to `want`: record it (unsettled, so new replicas open the group), change the
/// shard's voters through its leader, mark it settled (old replicas drop their copy), then hand
/// leadership to the preferred replica.
async fn move_shard(
    node: &ClusterNode,
    state: &MetaState,
    shard: GroupId,
    want: ShardPlacement,
) -> Result<(), ClusterError> {
    let recorded = state.shard_map.get(&shard);
    if recorded.map(|r| (&r.placement, r.settled)) != Some((&want, false)) {
        set_shard(node, shard, want.clone(), false).await?;
    }
    let voters: BTreeMap<NodeId, BasicNode> = want
        .replicas
        .iter()
        .map(|id| (*id, addr_of(state, *id)))
        .collect();
    let response = call_leader(&node.inner, shard, STEP_TIMEOUT, || {
        PeerRequest::Reconfigure {
            group: shard,
            voters: voters.clone(),
        }
    })
    .await?;
    if !matches!(response, PeerResponse::Done(Ok(()))) {
        return Err(unexpected(response));
    }
    set_shard(node, shard, want.clone(), true).await?;
    tracing::info!(shard, replicas = ?want.replicas, "shard moved");
    hand_over(node, shard, want.leader).await
}

/// Asks the shard's leader to hand leadership to `to` (a no-op if it already leads).
async fn hand_over(
    node: &ClusterNode,
    shard: GroupId,
    to: Option<NodeId>,
) -> Result<(), ClusterError> {
    let Some(to) = to else { return Ok(()) };
    let response = call_leader(&node.inner, shard, STEP_TIMEOUT, || {
        PeerRequest::TransferLeader { group: shard, to }
    })
    .await?;
    match response {
        PeerResponse::Done(Ok(())) => Ok(()),
        other => Err(unexpected(other)),
    }
}
