//! Test harness: real in-process nodes on 127.0.0.1 with temp sled directories, a small
//! key-value state machine, and waits on conditions with deadlines (never sleeps).

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_cluster::placement::place;
use chatsdk_cluster::{
    ClusterConfig, ClusterNode, GroupId, MetaState, NodeId, NodeState, StartMode,
};

/// How long any cluster condition may take to hold in a test.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub use chatsdk_cluster::testkit::KvApplier;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,openraft=error".to_string()),
        )
        .with_test_writer()
        .try_init();
}

pub fn config(dir: &std::path::Path, shards: u32) -> ClusterConfig {
    let mut c = ClusterConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    c.shards = shards;
    // Raft's append timeout is the heartbeat interval: keep it well above scheduling hiccups of
    // a loaded 2-core machine running several clusters at once.
    c.heartbeat = Duration::from_millis(200);
    c.election_timeout = (Duration::from_millis(800), Duration::from_millis(1600));
    c.reconcile_interval = Duration::from_millis(200);
    c.propose_timeout = Duration::from_secs(20);
    c.cache_capacity = 8 * 1024 * 1024;
    c
}

/// Polls `cond` until it holds or the deadline passes.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        // Polling interval of a condition check, not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct TestCluster {
    pub shards: u32,
    pub nodes: BTreeMap<NodeId, ClusterNode>,
    pub dirs: BTreeMap<NodeId, tempfile::TempDir>,
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    pub token: String,
    pub tweak: fn(&mut ClusterConfig),
}

fn no_tweak(_: &mut ClusterConfig) {}

impl TestCluster {
    pub async fn start(n: usize, shards: u32) -> TestCluster {
        Self::start_with(n, shards, no_tweak).await
    }

    pub async fn start_with(n: usize, shards: u32, tweak: fn(&mut ClusterConfig)) -> TestCluster {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), shards);
        tweak(&mut cfg);
        let first = ClusterNode::start(cfg, StartMode::Bootstrap, Arc::new(KvApplier), None)
            .await
            .expect("bootstrap");
        let (token, _) = first
            .mint_join_token(Duration::from_secs(3600), false)
            .await
            .expect("join token");
        let mut cluster = TestCluster {
            shards,
            nodes: BTreeMap::from([(first.id(), first.clone())]),
            dirs: BTreeMap::from([(first.id(), dir)]),
            addrs: BTreeMap::from([(first.id(), first.addr())]),
            token,
            tweak,
        };
        for _ in 1..n {
            cluster.join().await;
        }
        cluster.wait_balanced().await;
        cluster
    }

    pub fn node(&self, id: NodeId) -> &ClusterNode {
        &self.nodes[&id]
    }

    pub fn any(&self) -> &ClusterNode {
        self.nodes.values().next().expect("a running node")
    }

    /// Joins a new node through the first running node.
    pub async fn join(&mut self) -> NodeId {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), self.shards);
        (self.tweak)(&mut cfg);
        let via = self.any().addr();
        let node = ClusterNode::start(
            cfg,
            StartMode::Join {
                addr: via,
                token: self.token.clone(),
            },
            Arc::new(KvApplier),
            None,
        )
        .await
        .expect("join");
        let id = node.id();
        self.addrs.insert(id, node.addr());
        self.nodes.insert(id, node);
        self.dirs.insert(id, dir);
        id
    }

    /// Stops a node (its directory stays for a restart).
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("running node");
        node.shutdown().await;
    }

    /// Restarts a stopped node from its directory. It gets a new port (its old one may have been
    /// taken by a parallel test meanwhile), as a restarted container would get a new address:
    /// it tells the cluster through the meta group.
    pub async fn restart(&mut self, id: NodeId) {
        let mut cfg = config(self.dirs[&id].path(), self.shards);
        (self.tweak)(&mut cfg);
        let node = ClusterNode::start(cfg, StartMode::Existing, Arc::new(KvApplier), None)
            .await
            .expect("restart");
        assert_eq!(node.id(), id);
        self.addrs.insert(id, node.addr());
        self.nodes.insert(id, node);
    }

    /// Cuts traffic between the two sides both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                if let Some(n) = self.nodes.get(x) {
                    n.faults().drop_to(*y);
                }
                if let Some(n) = self.nodes.get(y) {
                    n.faults().drop_to(*x);
                }
            }
        }
    }

    pub fn heal(&self) {
        for n in self.nodes.values() {
            n.faults().heal_all();
        }
    }

    /// The node that leads `group` now, as its own metrics say.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        let all: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.leader_among(group, &all)
    }

    /// A node of `among` that leads `group` by its own metrics (an isolated old leader may still
    /// believe it leads, so partition tests look only at one side).
    pub fn leader_among(&self, group: GroupId, among: &[NodeId]) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, _)| among.contains(id))
            .find_map(|(id, n)| {
                let m = n.group_metrics(group)?.borrow().clone();
                (m.state == openraft::ServerState::Leader && m.current_leader == Some(*id))
                    .then_some(*id)
            })
    }

    pub async fn wait_leader(&self, group: GroupId) -> NodeId {
        let mut found = None;
        wait_until(&format!("a leader for group {group}"), || {
            found = self.leader_of(group);
            let ok = found.is_some();
            async move { ok }
        })
        .await;
        found.unwrap()
    }

    /// Waits until every running node is active, placement is carried out and each shard is led
    /// by its preferred leader.
    pub async fn wait_balanced(&self) {
        let running: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        wait_until("placement carried out", || {
            let ok = self
                .nodes
                .values()
                .all(|n| is_balanced(&n.meta_state(), &running))
                && (1..=self.shards).all(|s| {
                    let preferred = self.any().meta_state().shard_map[&s].placement.leader;
                    preferred.is_some() && self.leader_of(s) == preferred
                });
            async move { ok }
        })
        .await;
    }

    /// Waits until every running replica of `group` has applied everything any of them has in
    /// its log. (Equal applied indexes alone are not enough: a leader answers a proposal before
    /// its metrics show the entry applied.)
    pub async fn wait_converged(&self, group: GroupId) {
        wait_until(&format!("replicas of group {group} converge"), || {
            let metrics: Vec<_> = self
                .nodes
                .values()
                .filter_map(|n| n.group_metrics(group))
                .map(|m| m.borrow().clone())
                .collect();
            let last_log = metrics.iter().filter_map(|m| m.last_log_index).max();
            let ok = metrics
                .iter()
                .all(|m| m.last_applied.map(|l| l.index) == last_log);
            async move { ok }
        })
        .await;
    }

    /// Nodes with a replica of `group`.
    pub fn replicas(&self, group: GroupId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.local_groups().contains(&group))
            .map(|(id, _)| *id)
            .collect()
    }
}

pub fn is_balanced(state: &MetaState, running: &BTreeSet<NodeId>) -> bool {
    let active: BTreeSet<NodeId> = state.active_nodes().into_iter().collect();
    if !running.is_subset(&active) || !state.nodes_in(NodeState::Joining).is_empty() {
        return false;
    }
    let active_list: Vec<NodeId> = active.iter().copied().collect();
    let map = state.placement_map();
    state.shard_map.values().all(|r| r.settled)
        && place(&active_list, &map, state.replication) == map
}

/// Value stored under `key` on `node`'s replica of `group`.
pub fn local_value(node: &ClusterNode, group: GroupId, key: &str) -> Option<String> {
    let reader = node.local_reader(group)?;
    reader
        .get(key.as_bytes())
        .expect("readable")
        .map(|v| String::from_utf8(v).expect("utf8"))
}
