//! What the cluster layer reports about itself: leader changes (counted as they happen), and
//! on request where each local Raft replica stands.
//!
//! [`GroupReport`] is also what a node tells the admin API about its replicas, so it is a
//! plain serializable value. Group kinds are the only label: `directory` (group 0, the
//! cluster's metadata and the apps' directory) and `shard` (the data shards).

use openraft::{BasicNode, RaftMetrics, ServerState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::meta::META_GROUP;
use crate::transport::NodeId;
use chatsdk_storage::GroupId;

/// A group-kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// The kind of `group`: `directory` or `shard`.
pub fn kind_of(group: GroupId) -> &'static str {
    if group == META_GROUP {
        "directory"
    } else {
        "shard"
    }
}

/// Counters kept by the cluster layer (clones share them).
#[derive(Clone)]
pub struct ClusterStats {
    leader_changes: Family<Kind, Counter>,
}

impl Default for ClusterStats {
    fn default() -> Self {
        let leader_changes = Family::<Kind, Counter>::default();
        for kind in ["directory", "shard"] {
            let _ = leader_changes.get_or_create(&Kind { kind });
        }
        ClusterStats { leader_changes }
    }
}

impl ClusterStats {
    /// Adds the counters to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chatsdk_raft_leader_changes",
            "Leader changes this node saw in its replicas, by group kind",
            self.leader_changes.clone(),
        );
    }

    pub(crate) fn leader_changed(&self, group: GroupId) {
        self.leader_changes
            .get_or_create(&Kind {
                kind: kind_of(group),
            })
            .inc();
    }
}

/// One local replica, as its Raft metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    pub group: GroupId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Index of the last entry in this replica's log.
    pub last_log: Option<u64>,
    /// Index of the last entry applied to its state machine.
    pub applied: Option<u64>,
    /// Entries before this index are compacted away (behind a snapshot).
    pub purged: Option<u64>,
    /// On a leader: how far each replica has replicated (matched index).
    pub matched: Vec<(NodeId, Option<u64>)>,
}

impl GroupReport {
    /// The report of `group` from its metrics.
    pub fn of(group: GroupId, m: &RaftMetrics<NodeId, BasicNode>) -> GroupReport {
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        GroupReport {
            group,
            role: role.to_string(),
            leader: m.current_leader,
            term: m.current_term,
            last_log: m.last_log_index,
            applied: m.last_applied.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(n, l)| (*n, l.map(|l| l.index))).collect())
                .unwrap_or_default(),
        }
    }

    /// Entries written to the log and not applied yet.
    pub fn apply_lag(&self) -> u64 {
        self.last_log
            .unwrap_or(0)
            .saturating_sub(self.applied.unwrap_or(0))
    }

    /// Entries in the log (not yet compacted).
    pub fn log_entries(&self) -> u64 {
        match (self.last_log, self.purged) {
            (Some(last), Some(purged)) => last.saturating_sub(purged),
            (Some(last), None) => last + 1,
            _ => 0,
        }
    }
}

/// The local replicas of one kind, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindSummary {
    pub kind: &'static str,
    pub replicas: u64,
    pub led: u64,
    /// The largest apply lag among them.
    pub max_apply_lag: u64,
    /// Log entries held, all replicas together.
    pub log_entries: u64,
}

/// Sums `reports` by kind (both kinds always present).
pub fn summarize(reports: &[GroupReport]) -> Vec<KindSummary> {
    ["directory", "shard"]
        .into_iter()
        .map(|kind| {
            let mut s = KindSummary {
                kind,
                ..KindSummary::default()
            };
            for r in reports.iter().filter(|r| kind_of(r.group) == kind) {
                s.replicas += 1;
                s.led += u64::from(r.role == "leader");
                s.max_apply_lag = s.max_apply_lag.max(r.apply_lag());
                s.log_entries += r.log_entries();
            }
            s
        })
        .collect()
}

/// How full the node's bounded queues are at one moment: a queue that stays near its limit is
/// where the node is saturated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Proposals this node originated that wait for their commit.
    pub proposals_in_flight: usize,
    pub proposals_limit: usize,
    /// One-way messages from peers (deliveries, hand-offs) being handled.
    pub peer_messages_in_progress: usize,
    pub peer_messages_limit: usize,
    /// Proposals waiting to be forwarded to the leaders on other nodes, over every peer.
    pub forwards_queued: usize,
}
