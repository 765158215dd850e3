//! The cluster as an operator sees it: every node's own report (version, uptime, clients,
//! replicas), gathered over the cluster transport, and the shards with their leaders and log
//! positions. The admin API (`/admin/cluster`) and `chatsdk status` show it; drain requests
//! travel the same way.
//!
//! Each node answers for itself ([`TOPIC_NODE_REPORT`]): only it knows its connections and
//! where its replicas stand. The node that serves the request asks all others at once, with a
//! short deadline, so one dead node shows as unreachable instead of stalling the page.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chatsdk_actors::codec;
use chatsdk_cluster::meta::{MetaCommand, MetaReply, NodeState};
use chatsdk_cluster::node::UpperHandler;
use chatsdk_cluster::stats::{kind_of, GroupReport};
use chatsdk_cluster::transport::NodeId;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::state::{GatewayState, Inner};

/// A node's report about itself.
pub const TOPIC_NODE_REPORT: u16 = 0x4310;
/// Asks a node to drain (stop taking clients, close its realtime sessions).
pub const TOPIC_NODE_DRAIN: u16 = 0x4311;

/// How long the serving node waits for the others' reports.
const REPORT_DEADLINE: Duration = Duration::from_secs(2);

/// What a node says about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub version: String,
    pub uptime_s: u64,
    /// The bound REST/WebSocket address.
    pub http: Option<String>,
    pub websocket_connections: u64,
    pub quic_connections: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    pub channel_actors: u64,
    pub draining: bool,
    pub groups: Vec<GroupReport>,
}

/// This node's report.
pub fn local_report(state: &Inner) -> NodeReport {
    let fanout = state.chat.fanout();
    NodeReport {
        id: state.chat.cluster().id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: state.started.elapsed().as_secs(),
        http: state.http_addr.get().map(ToString::to_string),
        websocket_connections: state.metrics.connections("websocket").get().max(0) as u64,
        quic_connections: state.metrics.connections("quic").get().max(0) as u64,
        sessions: fanout.session_count() as u64,
        subscriptions: fanout.subscription_count() as u64,
        channel_actors: state.chat.running_actors() as u64,
        draining: state.draining.is_cancelled(),
        groups: state.chat.cluster().group_reports(),
    }
}

/// Registers this node's answers to reports and drain requests.
pub fn register(state: &GatewayState) {
    let cluster = state.chat.cluster();
    let weak = Arc::downgrade(&state.0);
    cluster.register_handler(TOPIC_NODE_REPORT, Arc::new(ReportHandler(weak.clone())));
    cluster.register_handler(TOPIC_NODE_DRAIN, Arc::new(DrainHandler(weak)));
}

struct ReportHandler(Weak<Inner>);

impl UpperHandler for ReportHandler {
    fn handle(&self, _from: NodeId, _body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let state = self.0.upgrade();
        Box::pin(async move {
            let state = state.ok_or("node is stopping")?;
            codec::encode(&local_report(&state)).map_err(|e| e.to_string())
        })
    }
}

struct DrainHandler(Weak<Inner>);

impl UpperHandler for DrainHandler {
    fn handle(&self, from: NodeId, _body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let state = self.0.upgrade();
        Box::pin(async move {
            let state = state.ok_or("node is stopping")?;
            drain_here(&state, from);
            codec::encode(&true).map_err(|e| e.to_string())
        })
    }
}

/// Drains this node: readiness turns 503 (a load balancer stops sending clients), new realtime
/// connections are refused and open ones closed with 3001 so their clients reconnect
/// elsewhere. REST keeps answering. Lasts until the node restarts.
fn drain_here(state: &Inner, asked_by: NodeId) {
    if !state.draining.is_cancelled() {
        tracing::info!(
            asked_by,
            "draining: readiness off, realtime sessions closed"
        );
        state.draining.cancel();
    }
    if let Err(e) = state.chat.cluster().note_drained() {
        tracing::warn!(error = %e, "could not remember the drain: a restart keeps it draining");
    }
}

/// Why a cluster request failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(NodeId),
    #[error("node {node} did not answer: {reason}")]
    Unreachable { node: NodeId, reason: String },
}

/// Asks node `id` to drain (this node included), then records it as draining in the cluster's
/// metadata, so that its shards' leadership moves to other replicas (the reconciler keeps
/// leaders off draining nodes) until it restarts.
pub async fn drain(state: &GatewayState, id: NodeId) -> Result<(), ViewError> {
    let cluster = state.chat.cluster();
    if !cluster.meta_state().nodes.contains_key(&id) {
        return Err(ViewError::UnknownNode(id));
    }
    if id == cluster.id() {
        drain_here(&state.0, id);
    } else {
        ask_to_drain(state, id).await?;
    }
    let marked = cluster
        .propose_meta(MetaCommand::SetNodeState {
            id,
            state: NodeState::Draining,
        })
        .await;
    match marked {
        Ok(MetaReply::Refused(reason)) => {
            tracing::warn!(node = id, %reason, "drained, but its shards keep their leaders");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(node = id, error = %e, "drained, but its shards keep their leaders");
        }
    }
    Ok(())
}

async fn ask_to_drain(state: &GatewayState, id: NodeId) -> Result<(), ViewError> {
    let cluster = state.chat.cluster();
    let asked = tokio::time::timeout(
        REPORT_DEADLINE,
        cluster.request_upper(id, TOPIC_NODE_DRAIN, Vec::new()),
    )
    .await;
    match asked {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ViewError::Unreachable {
            node: id,
            reason: e.to_string(),
        }),
        Err(_) => Err(ViewError::Unreachable {
            node: id,
            reason: format!("no answer within {} ms", REPORT_DEADLINE.as_millis()),
        }),
    }
}

/// The cluster, as the admin API renders it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub cluster_id: String,
    pub answered_by: NodeId,
    pub shards: u32,
    pub replication: usize,
    pub nodes: Vec<NodeView>,
    pub groups: Vec<GroupView>,
    pub ca: CaView,
}

/// The cluster CA and its rotation (docs/reliability.md, "Rotating the cluster CA").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaView {
    /// SHA-256 of the CA that issues certificates (what join tokens pin).
    pub fingerprint: Option<String>,
    /// A new CA every node is being asked to trust before it issues anything.
    pub staged: Option<String>,
    /// Replaced CAs still trusted until every node has renewed under the current one.
    pub retiring: Vec<String>,
    /// Nodes the rotation waits for at its current step.
    pub waiting_for: Vec<NodeId>,
    /// Rotations completed (a node removal starts one).
    pub rotations: u64,
}

fn ca_view(meta: &chatsdk_cluster::meta::MetaState) -> CaView {
    let fp = |pem: &str| chatsdk_cluster::tls::ca_fingerprint_of_pem(pem).ok();
    CaView {
        fingerprint: meta.authority.as_ref().and_then(|a| fp(&a.ca_cert_pem)),
        staged: meta.trust.staged.as_ref().and_then(|a| fp(&a.ca_cert_pem)),
        retiring: meta.trust.retiring.iter().filter_map(|p| fp(p)).collect(),
        waiting_for: meta.trust.waiting_for(meta),
        rotations: meta.trust.rotations,
    }
}

/// One node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: NodeId,
    /// `joining`, `active`, `leaving` or `removed` (the cluster's record).
    pub state: &'static str,
    pub cluster_addr: String,
    /// Whether it answered this request.
    pub reachable: bool,
    /// How long the answering node's requests to it have failed for want of an answer
    /// (seconds; absent while they go through). A node down for long is a candidate for
    /// `chatsdk node remove` (docs/reliability.md, "Replacing a dead node").
    pub unreachable_for_s: Option<u64>,
    pub http_addr: Option<String>,
    pub version: Option<String>,
    pub uptime_s: Option<u64>,
    pub connections: Option<Connections>,
    pub sessions: Option<u64>,
    pub subscriptions: Option<u64>,
    pub channel_actors: Option<u64>,
    pub draining: Option<bool>,
    /// Raft replicas it holds, and how many of them it leads.
    pub replicas: Option<usize>,
    pub leads: Option<usize>,
}

/// Realtime connections by transport.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Connections {
    pub websocket: u64,
    pub quic: u64,
}

/// One Raft group: the directory (group 0) or a data shard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub id: u32,
    /// `directory` or `shard`.
    pub kind: &'static str,
    /// Nodes holding a replica (the placement's for shards, the reporting nodes' for the
    /// directory).
    pub replicas: Vec<NodeId>,
    /// The placement's preferred leader (shards).
    pub preferred_leader: Option<NodeId>,
    /// False while a shard's membership is being changed.
    pub settled: bool,
    /// The leader as the best-informed replica reports it.
    pub leader: Option<NodeId>,
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Entries up to here are compacted behind a snapshot: a replica further behind is caught
    /// up by a snapshot, not by the log.
    pub purged_index: Option<u64>,
    /// From the leader: each replica's replicated position.
    pub matched: BTreeMap<String, Option<u64>>,
}

fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Joining => "joining",
        NodeState::Active => "active",
        NodeState::Leaving => "leaving",
        NodeState::Removed => "removed",
        NodeState::Draining => "draining",
    }
}

/// Gathers every member's report (all at once, each within the deadline) and builds the view.
pub async fn gather(state: &GatewayState) -> ClusterView {
    let cluster = state.chat.cluster();
    let meta = cluster.meta_state();
    let me = cluster.id();
    let asks = meta
        .nodes
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .map(|n| {
            let id = n.id;
            async move {
                if id == me {
                    return (id, Some(local_report(&state.0)));
                }
                let asked = tokio::time::timeout(
                    REPORT_DEADLINE,
                    cluster.request_upper(id, TOPIC_NODE_REPORT, Vec::new()),
                )
                .await;
                let report = match asked {
                    Ok(Ok(raw)) => codec::decode::<NodeReport>(&raw).ok(),
                    _ => None,
                };
                (id, report)
            }
        });
    let reports: BTreeMap<NodeId, Option<NodeReport>> =
        futures::future::join_all(asks).await.into_iter().collect();
    let nodes = meta
        .nodes
        .values()
        .map(|n| {
            let r = reports.get(&n.id).and_then(Option::as_ref);
            NodeView {
                id: n.id,
                state: state_name(n.state),
                cluster_addr: n.addr.clone(),
                reachable: r.is_some(),
                unreachable_for_s: (n.id != me)
                    .then(|| cluster.peer_down_for(n.id))
                    .flatten()
                    .map(|d| d.as_secs()),
                http_addr: r.and_then(|r| r.http.clone()),
                version: r.map(|r| r.version.clone()),
                uptime_s: r.map(|r| r.uptime_s),
                connections: r.map(|r| Connections {
                    websocket: r.websocket_connections,
                    quic: r.quic_connections,
                }),
                sessions: r.map(|r| r.sessions),
                subscriptions: r.map(|r| r.subscriptions),
                channel_actors: r.map(|r| r.channel_actors),
                draining: r.map(|r| r.draining),
                replicas: r.map(|r| r.groups.len()),
                leads: r.map(|r| r.groups.iter().filter(|g| g.role == "leader").count()),
            }
        })
        .collect();
    ClusterView {
        cluster_id: meta.cluster_id.clone(),
        answered_by: me,
        shards: meta.shards,
        replication: meta.replication,
        nodes,
        groups: groups(&meta, &reports),
        ca: ca_view(&meta),
    }
}

/// Every group, described by its best-informed report: a leader's (highest term), else the
/// replica with the longest log.
fn groups(
    meta: &chatsdk_cluster::meta::MetaState,
    reports: &BTreeMap<NodeId, Option<NodeReport>>,
) -> Vec<GroupView> {
    let mut by_group: BTreeMap<u32, Vec<(NodeId, &GroupReport)>> = BTreeMap::new();
    for (node, report) in reports {
        for g in report.iter().flat_map(|r| &r.groups) {
            by_group.entry(g.group).or_default().push((*node, g));
        }
    }
    let mut ids: Vec<u32> = meta.shard_map.keys().copied().collect();
    ids.push(chatsdk_cluster::meta::META_GROUP);
    ids.extend(by_group.keys().copied());
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let seen = by_group.get(&id).map(Vec::as_slice).unwrap_or_default();
            let best = seen
                .iter()
                .max_by_key(|(_, g)| (g.role == "leader", g.term, g.last_log))
                .map(|(_, g)| *g);
            let record = meta.shard_map.get(&id);
            let replicas = match record {
                Some(r) => r.placement.replicas.clone(),
                None => seen.iter().map(|(n, _)| *n).collect(),
            };
            GroupView {
                id,
                kind: kind_of(id),
                replicas,
                preferred_leader: record.and_then(|r| r.placement.leader),
                settled: record.is_none_or(|r| r.settled),
                leader: best.and_then(|g| g.leader),
                term: best.map(|g| g.term),
                last_log_index: best.and_then(|g| g.last_log),
                applied_index: best.and_then(|g| g.applied),
                purged_index: best.and_then(|g| g.purged),
                matched: best
                    .filter(|g| g.role == "leader")
                    .map(|g| g.matched.iter().map(|(n, i)| (n.to_string(), *i)).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}
