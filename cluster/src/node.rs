//! A running cluster node: its store, transport, Raft groups and background tasks. The local
//! replicas themselves are managed in `groups`; identity and joining in [`crate::join`].
//!
//! [`ClusterNode::start`] bootstraps a new cluster, joins an existing one or restarts from the
//! data directory. The node then keeps its local groups in step with the meta state's shard map
//! (creating replicas it is given, dropping those it lost), keeps the transport's address book
//! current, and, while it leads the meta group, carries out placement (see [`crate::reconcile`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use chatsdk_storage::{Applier, GroupId, GroupReader, NodeId, Store, StoreConfig};
use openraft::{BasicNode, ServerState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ClusterConfig, StartMode};
use crate::groups::Group;
use crate::join::{
    self, join_cluster, new_cluster_identity, probe_udp_port, JoinToken, StoredIdentity,
};
use crate::meta::{
    JoinAuthority, MetaApplier, MetaCommand, MetaReply, MetaState, NodeState, META_GROUP,
};
use crate::tls::ClusterCa;
use crate::transport::{self, Faults, Transport, TransportConfig};
use crate::{codec, handler, reconcile, ClusterError};

/// One-way upper-layer messages handled at once; more are dropped.
const MAX_ONE_WAY_IN_PROGRESS: usize = 1024;
/// Proposals a node originates at once; further `propose` calls wait. Kept well under the
/// transport's per-peer request limit so forwarded proposals never crowd out Raft's own RPCs.
const MAX_PROPOSALS_IN_FLIGHT: usize = 1024;
/// Requests in flight to one peer (Raft RPCs of every group plus forwarded proposals).
const MAX_REQUESTS_PER_PEER: usize = 4096;

/// A handler for requests of an upper layer, registered under a topic.
pub trait UpperHandler: Send + Sync + 'static {
    /// Handles a request from `from`; an `Err` reaches the caller as a refusal.
    fn handle(
        &self,
        from: NodeId,
        body: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, String>>;
}

pub(crate) struct NodeInner {
    pub(crate) id: NodeId,
    pub(crate) cluster_id: String,
    pub(crate) config: ClusterConfig,
    pub(crate) raft_config: Arc<openraft::Config>,
    pub(crate) store: Store,
    pub(crate) transport: Transport,
    pub(crate) meta: Arc<MetaApplier>,
    pub(crate) data_applier: Arc<dyn Applier>,
    pub(crate) groups: RwLock<HashMap<GroupId, Arc<Group>>>,
    /// Serialises creating and removing groups.
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    pub(crate) leading: watch::Sender<BTreeSet<GroupId>>,
    pub(crate) stats: crate::stats::ClusterStats,
    pub(crate) leader_hints: Mutex<HashMap<GroupId, NodeId>>,
    pub(crate) upper: RwLock<HashMap<u16, Arc<dyn UpperHandler>>>,
    /// Campaigns scheduled by leaders handing a group over to this node (one per group).
    pub(crate) campaigns: Mutex<HashMap<GroupId, CancellationToken>>,
    /// Forwarding queues towards other nodes, created on first use.
    pub(crate) forwarders: Mutex<HashMap<NodeId, crate::forward::Forwarder>>,
    /// One-way upper-layer messages being handled.
    message_slots: Arc<tokio::sync::Semaphore>,
    /// Proposals this node has outstanding (its own and those it serves as a leader for
    /// others count separately: this bounds the ones it originates).
    pub(crate) proposal_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Snapshots being installed here, for their leaders' questions.
    pub(crate) installs: crate::snapshot_stream::Installs,
}

/// A handle on a running node. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    pub(crate) inner: Arc<NodeInner>,
}

/// The transport handler: forwards to the node once it exists.
pub(crate) struct HandlerSlot(pub(crate) OnceLock<Weak<NodeInner>>);

impl ClusterNode {
    /// Starts a node. `data` applies the commands of every data shard; `meta_upper` applies the
    /// upper layer's commands on the meta group.
    pub async fn start(
        config: ClusterConfig,
        mode: StartMode,
        data: Arc<dyn Applier>,
        meta_upper: Option<Arc<dyn Applier>>,
    ) -> Result<ClusterNode, ClusterError> {
        let mut config = config;
        config.validate()?;
        if config.listen.port() == 0 && matches!(mode, StartMode::Join { .. }) {
            // A joining node announces its address before its endpoint exists: settle the port
            // now so the announced address is the one the endpoint binds.
            config.listen = probe_udp_port(config.listen)?;
        }
        let raft_config = Arc::new(config.raft_config()?);
        let mut store_config = StoreConfig::new(&config.data_dir);
        store_config.cache_capacity = config.cache_capacity;
        store_config.flush_linger = config.flush_linger;
        store_config.background_nice = config.background_nice;
        // Opening may wait for a directory lock and replays sled's log: keep it off the runtime.
        let store = tokio::task::spawn_blocking(move || Store::open(&store_config))
            .await
            .map_err(|e| ClusterError::Raft {
                reason: format!("store open task failed: {e}"),
            })??;

        let slot = Arc::new(HandlerSlot(OnceLock::new()));
        let (identity, fresh_join) = match join::load_identity(&store)? {
            Some(identity) => (identity, None),
            None => match &mode {
                StartMode::Bootstrap => (
                    new_cluster_identity(&store, config.node_cert_lifetime).await?,
                    None,
                ),
                StartMode::Join { addr, token } => {
                    let (identity, peers) = join_cluster(&config, *addr, token).await?;
                    join::save_identity(&store, &identity).await?;
                    (identity, Some(peers))
                }
                StartMode::Existing => {
                    return Err(ClusterError::Config {
                        reason: format!(
                            "{} holds no cluster identity: bootstrap or join first",
                            config.data_dir.display()
                        ),
                    })
                }
            },
        };

        let mut transport_config =
            TransportConfig::new(identity.node_id, config.listen, identity.tls());
        transport_config.max_in_flight_per_peer = MAX_REQUESTS_PER_PEER;
        let transport = Transport::bind(transport_config, slot.clone()).await?;
        let meta = MetaApplier::new(meta_upper);
        let (leading, _) = watch::channel(BTreeSet::new());
        let inner = Arc::new(NodeInner {
            id: identity.node_id,
            cluster_id: identity.cluster_id.clone(),
            config,
            raft_config,
            store,
            transport,
            meta,
            data_applier: data,
            groups: RwLock::new(HashMap::new()),
            lifecycle: tokio::sync::Mutex::new(()),
            leading,
            stats: crate::stats::ClusterStats::default(),
            leader_hints: Mutex::new(HashMap::new()),
            upper: RwLock::new(HashMap::new()),
            campaigns: Mutex::new(HashMap::new()),
            forwarders: Mutex::new(HashMap::new()),
            message_slots: Arc::new(tokio::sync::Semaphore::new(MAX_ONE_WAY_IN_PROGRESS)),
            proposal_slots: Arc::new(tokio::sync::Semaphore::new(MAX_PROPOSALS_IN_FLIGHT)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            installs: crate::snapshot_stream::Installs::default(),
        });
        let _only_set_here = slot.0.set(Arc::downgrade(&inner));
        let node = ClusterNode { inner };
        if let Some(peers) = fresh_join {
            for (id, addr) in peers {
                node.inner.set_peer(id, &addr);
            }
        }

        node.inner.create_group(META_GROUP).await?;
        if identity.bootstrap_pending {
            node.finish_bootstrap(identity).await?;
        }
        node.inner.sync_address_book(&node.inner.meta.current());
        node.inner.sync_groups(&node.inner.meta.current()).await;
        node.spawn_background();
        Ok(node)
    }

    /// Initialises group 0 and every shard on this, the first, node.
    async fn finish_bootstrap(&self, mut identity: StoredIdentity) -> Result<(), ClusterError> {
        let inner = &self.inner;
        let me = BTreeMap::from([(inner.id, inner.basic_node())]);
        let meta = inner
            .group(META_GROUP)
            .ok_or(ClusterError::NoSuchGroup { group: META_GROUP })?;
        if !meta.raft.is_initialized().await.map_err(raft_err)? {
            meta.raft.initialize(me.clone()).await.map_err(raft_err)?;
        }
        meta.raft
            .wait(Some(inner.config.propose_timeout))
            .state(ServerState::Leader, "bootstrap: meta leader")
            .await
            .map_err(raft_err)?;
        if inner.meta.current().bootstrapped_by == 0 {
            let ca = join::load_pending_authority(&inner.store)?;
            let reply = self
                .propose_meta(MetaCommand::Bootstrap {
                    cluster_id: identity.cluster_id.clone(),
                    node: inner.id,
                    addr: inner.advertised().to_string(),
                    shards: inner.config.shards,
                    replication: inner.config.replication,
                    authority: ca,
                })
                .await?;
            if let MetaReply::Refused(why) = reply {
                tracing::warn!(%why, "bootstrap command refused");
            }
        }
        for shard in inner.meta.current().shards_of(inner.id) {
            let group = inner.create_group(shard).await?;
            if !group.raft.is_initialized().await.map_err(raft_err)? {
                group.raft.initialize(me.clone()).await.map_err(raft_err)?;
            }
        }
        identity.bootstrap_pending = false;
        join::save_identity(&inner.store, &identity).await?;
        join::clear_pending_authority(&inner.store)?;
        Ok(())
    }

    fn spawn_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let token = self.inner.shutdown.clone();
        let mut meta_rx = self.inner.meta.subscribe();
        self.inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    changed = meta_rx.changed() => if changed.is_err() { return },
                }
                let state = meta_rx.borrow_and_update().clone();
                let Some(inner) = weak.upgrade() else { return };
                inner.sync_address_book(&state);
                inner.sync_groups(&state).await;
            }
        });
        self.inner
            .tasks
            .spawn(reconcile::run(Arc::downgrade(&self.inner)));
        self.inner
            .tasks
            .spawn(announce_address(Arc::downgrade(&self.inner)));
        self.inner
            .tasks
            .spawn(resume_after_drain(Arc::downgrade(&self.inner)));
        self.inner
            .tasks
            .spawn(crate::compaction::run(Arc::downgrade(&self.inner)));
        self.inner
            .tasks
            .spawn(crate::renewal::run(Arc::downgrade(&self.inner)));
    }

    /// When this node's certificate expires (it renews it before, see `renewal`).
    pub fn cert_valid_until(&self) -> Result<std::time::SystemTime, ClusterError> {
        let identity = join::load_identity(&self.inner.store)?.ok_or(ClusterError::Config {
            reason: "this node has no identity".into(),
        })?;
        Ok(crate::tls::cert_not_after(&identity.cert_pem)?)
    }

    /// Fingerprints of the CAs this node trusts, the issuer of its own certificate first (more
    /// than one while the cluster CA is rotated).
    pub fn trusted_cas(&self) -> Result<Vec<String>, ClusterError> {
        let identity = join::load_identity(&self.inner.store)?.ok_or(ClusterError::Config {
            reason: "this node has no identity".into(),
        })?;
        Ok(crate::tls::bundle_fingerprints(&identity.ca_cert_pem)?)
    }

    /// Remembers that this node was drained, so that it turns active again when it restarts.
    pub fn note_drained(&self) -> Result<(), ClusterError> {
        join::save_drained(&self.inner.store, true)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// The address other nodes reach this one at.
    pub fn addr(&self) -> SocketAddr {
        self.inner.advertised()
    }

    /// Mints a join token that admits nodes for `ttl` (one node only when `single_use`): its
    /// text and when it expires (ms since the epoch). The cluster keeps only the SHA-256 of its
    /// secret; the text is shown once, to whoever asked.
    pub async fn mint_join_token(
        &self,
        ttl: Duration,
        single_use: bool,
    ) -> Result<(String, u64), ClusterError> {
        let state = self.inner.meta.current();
        let authority = state.authority.as_ref().ok_or(ClusterError::Join {
            reason: "cluster not bootstrapped yet".into(),
        })?;
        let ca = ClusterCa {
            cert_pem: authority.ca_cert_pem.clone(),
            key_pem: authority.ca_key_pem.clone(),
        };
        let secret = join::random_hex(24);
        let now_ms = join::now_ms();
        let expires_at_ms = now_ms.saturating_add(ttl.as_millis() as u64);
        let reply = self
            .propose_meta(MetaCommand::MintJoinToken {
                secret_sha256: join::secret_digest(&secret),
                expires_at_ms,
                single_use,
                now_ms,
            })
            .await?;
        if let MetaReply::Refused(reason) = reply {
            return Err(ClusterError::Join { reason });
        }
        let token = JoinToken {
            cluster_id: state.cluster_id.clone(),
            ca_fingerprint: ca.fingerprint()?,
            secret,
        };
        Ok((token.render(), expires_at_ms))
    }

    /// Starts a rotation of the cluster CA (see [`crate::trust`]): a new CA is staged, issues
    /// certificates once every member trusts it, and the old one is trusted no more once every
    /// member has renewed. Returns the new CA's fingerprint (what join tokens pin from then on).
    pub async fn rotate_ca(&self) -> Result<String, ClusterError> {
        let state = self.inner.meta.current();
        if state.authority.is_none() {
            return Err(ClusterError::Join {
                reason: "cluster not bootstrapped yet".into(),
            });
        }
        let ca = ClusterCa::generate(&state.cluster_id)?;
        let fingerprint = ca.fingerprint()?;
        let reply = self
            .propose_meta(MetaCommand::RotateCa {
                authority: JoinAuthority {
                    ca_cert_pem: ca.cert_pem,
                    ca_key_pem: ca.key_pem,
                    join_secret_sha256: String::new(),
                },
            })
            .await?;
        if let MetaReply::Refused(reason) = reply {
            return Err(ClusterError::Refused(crate::wire::Refusal::Failed {
                reason,
            }));
        }
        Ok(fingerprint)
    }

    /// The latest meta state this node has applied.
    pub fn meta_state(&self) -> Arc<MetaState> {
        self.inner.meta.current()
    }

    /// The active nodes other than this one.
    pub fn other_active_nodes(&self) -> Vec<NodeId> {
        let me = self.id();
        self.meta_state()
            .active_nodes()
            .into_iter()
            .filter(|n| *n != me)
            .collect()
    }

    /// Follows the meta state.
    pub fn watch_meta(&self) -> watch::Receiver<Arc<MetaState>> {
        self.inner.meta.subscribe()
    }

    /// Follows the set of data shards this node currently leads (the actor layer starts channel
    /// actors from it).
    pub fn watch_leadership(&self) -> watch::Receiver<BTreeSet<GroupId>> {
        self.inner.leading.subscribe()
    }

    /// Groups with a replica on this node.
    pub fn local_groups(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self.inner.read_groups().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// openraft metrics of a local group.
    pub fn group_metrics(
        &self,
        group: GroupId,
    ) -> Option<watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>> {
        self.inner.group(group).map(|g| g.raft.metrics())
    }

    /// Reads a local replica's state without any consistency guarantee (what this node applied).
    pub fn local_reader(&self, group: GroupId) -> Option<GroupReader> {
        self.inner.group(group).map(|g| g.reader.clone())
    }

    /// How long this node's requests to `peer` have failed for want of an answer (`None`: its
    /// last request went through): the failure detector behind the cluster view's
    /// `unreachableForS`.
    pub fn peer_down_for(&self, peer: NodeId) -> Option<std::time::Duration> {
        self.inner.transport.peer_down_for(peer)
    }

    /// Snapshot installs on this node: started since the node started, and under way now.
    pub fn snapshot_installs(&self) -> (u64, u64) {
        let installs = &self.inner.installs;
        (installs.started(), installs.running())
    }

    /// Peers this node currently cannot reach.
    pub fn unreachable_peers(&self) -> usize {
        self.inner.transport.unreachable_peers()
    }

    /// Requests to peers that failed because the peer could not be reached, since start.
    pub fn peer_failures(&self) -> prometheus_client::metrics::counter::Counter {
        self.inner.transport.peer_failures()
    }

    /// Group-commit counters and fsync times of this node's Raft log.
    pub fn flush_stats(&self) -> &chatsdk_storage::FlushStats {
        self.inner.store.flush_stats()
    }

    /// Leader changes this node saw, by group kind.
    pub fn stats(&self) -> &crate::stats::ClusterStats {
        &self.inner.stats
    }

    /// How full the node's bounded queues are now (see [`crate::stats::QueueDepths`]).
    pub fn queue_depths(&self) -> crate::stats::QueueDepths {
        let forwards_queued = self
            .inner
            .forwarders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(crate::forward::Forwarder::queued)
            .sum();
        crate::stats::QueueDepths {
            proposals_in_flight: MAX_PROPOSALS_IN_FLIGHT
                - self.inner.proposal_slots.available_permits(),
            proposals_limit: MAX_PROPOSALS_IN_FLIGHT,
            peer_messages_in_progress: MAX_ONE_WAY_IN_PROGRESS
                - self.inner.message_slots.available_permits(),
            peer_messages_limit: MAX_ONE_WAY_IN_PROGRESS,
            forwards_queued,
        }
    }

    /// Where the local replicas stand, summed by group kind (the directory, data shards).
    pub fn raft_summary(&self) -> Vec<crate::stats::KindSummary> {
        crate::stats::summarize(&self.group_reports())
    }

    /// Where each local replica stands (role, leader, log and apply positions; on a leader,
    /// how far each follower has replicated), by group id.
    pub fn group_reports(&self) -> Vec<crate::stats::GroupReport> {
        let metrics: Vec<_> = self
            .inner
            .read_groups()
            .iter()
            .map(|(id, g)| (*id, g.raft.metrics()))
            .collect();
        let mut reports: Vec<_> = metrics
            .into_iter()
            .map(|(id, m)| crate::stats::GroupReport::of(id, &m.borrow()))
            .collect();
        reports.sort_by_key(|r| r.group);
        reports
    }

    /// The fault-injection hook of this node's transport (tests).
    pub fn faults(&self) -> &Faults {
        self.inner.transport.faults()
    }

    /// Registers the handler of an upper layer's requests under `topic`.
    pub fn register_handler(&self, topic: u16, handler: Arc<dyn UpperHandler>) {
        if let Ok(mut map) = self.inner.upper.write() {
            map.insert(topic, handler);
        }
    }

    /// Proposes a meta command and decodes its reply.
    pub async fn propose_meta(&self, command: MetaCommand) -> Result<MetaReply, ClusterError> {
        let raw = self.propose(META_GROUP, codec::encode(&command)?).await?;
        codec::decode(&raw)
    }

    /// Asks the cluster to move every replica off `node` and then remove it. Works for a live
    /// node (a graceful leave) and for a dead one (removal), as long as a majority of each of its
    /// groups survives.
    pub async fn remove_node(&self, node: NodeId) -> Result<(), ClusterError> {
        let state = self.inner.meta.current();
        if state.active_nodes() == [node] {
            return Err(ClusterError::Refused(crate::wire::Refusal::Failed {
                reason: format!("node {node} is the last active node: its data has nowhere to go"),
            }));
        }
        match self
            .propose_meta(MetaCommand::SetNodeState {
                id: node,
                state: crate::meta::NodeState::Leaving,
            })
            .await?
        {
            MetaReply::Refused(reason) => {
                Err(ClusterError::Refused(crate::wire::Refusal::Failed {
                    reason,
                }))
            }
            _ => Ok(()),
        }
    }

    /// This node leaves the cluster (see [`ClusterNode::remove_node`]).
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.remove_node(self.inner.id).await
    }

    /// Stops every group and task and closes the transport and the store. After this returns
    /// the data directory can be opened again.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        // No group is being created or dropped while we take them all down.
        let _lifecycle = self.inner.lifecycle.lock().await;
        let groups: Vec<Arc<Group>> = match self.inner.groups.write() {
            Ok(mut map) => map.drain().map(|(_, g)| g).collect(),
            Err(_) => Vec::new(),
        };
        for group in groups {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(error = %e, "raft task ended abnormally");
            }
        }
        self.inner.transport.shutdown().await;
        self.inner.tasks.wait().await;
    }
}

impl NodeInner {
    /// The forwarding queue towards `peer`.
    pub(crate) fn forwarder(&self, peer: NodeId) -> crate::forward::Forwarder {
        let mut map = self.forwarders.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(peer)
            .or_insert_with(|| {
                crate::forward::Forwarder::start(
                    self.transport.clone(),
                    peer,
                    self.config.propose_timeout,
                    self.shutdown.child_token(),
                )
            })
            .clone()
    }

    /// Spawns a task that shutdown waits for.
    pub(crate) fn tasks_spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    pub(crate) fn advertised(&self) -> SocketAddr {
        self.config
            .advertise
            .unwrap_or_else(|| self.transport.local_addr())
    }

    pub(crate) fn basic_node(&self) -> BasicNode {
        BasicNode {
            addr: self.advertised().to_string(),
        }
    }

    pub(crate) fn set_peer(&self, id: NodeId, addr: &str) {
        if id == self.id {
            return;
        }
        if let Ok(addr) = addr.parse::<SocketAddr>() {
            if self.transport.peer_addr(id) != Some(addr) {
                self.transport.set_peer_addr(id, addr);
            }
        }
    }

    fn sync_address_book(&self, state: &MetaState) {
        for node in state.nodes.values() {
            self.set_peer(node.id, &node.addr);
        }
    }
}

/// Proposes what `next` asks for (`None`: nothing left to do) until the meta group accepts it,
/// backing off between attempts; false when the node stops first.
async fn propose_until_done(
    weak: Weak<NodeInner>,
    next: impl Fn(&NodeInner) -> Option<MetaCommand>,
) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        let Some(command) = next(&inner) else {
            return true;
        };
        let token = inner.shutdown.clone();
        let node = ClusterNode { inner };
        if node.propose_meta(command).await.is_ok() {
            return true;
        }
        drop(node);
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A node drained before it stopped is active again once it runs: it takes its share of shard
/// leaders back (the drain lasts until the restart it was for). The node itself remembers the
/// drain ([`ClusterNode::note_drained`]): the cluster's mark may reach its replica of the meta
/// state only after the start, and a drain asked just after the start must stand.
async fn resume_after_drain(weak: Weak<NodeInner>) {
    let Some(store) = weak.upgrade().map(|inner| inner.store.clone()) else {
        return;
    };
    match join::load_drained(&store) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the drain mark");
            return;
        }
    }
    let active = |inner: &NodeInner| {
        Some(MetaCommand::SetNodeState {
            id: inner.id,
            state: NodeState::Active,
        })
    };
    if propose_until_done(weak, active).await {
        tracing::info!("active again after a drain");
        if let Err(e) = join::save_drained(&store, false) {
            tracing::warn!(error = %e, "clearing the drain mark");
        }
    }
}

/// A node whose address changed since the meta state recorded it (a restart on another port or
/// host) announces the new one.
async fn announce_address(weak: Weak<NodeInner>) {
    propose_until_done(weak, |inner| {
        let advertised = inner.advertised().to_string();
        let known = inner
            .meta
            .current()
            .nodes
            .get(&inner.id)
            .map(|n| n.addr.clone())?;
        (known != advertised).then_some(MetaCommand::SetNodeAddr {
            id: inner.id,
            addr: advertised,
        })
    })
    .await;
}

pub(crate) fn raft_err<E: std::fmt::Display>(e: E) -> ClusterError {
    ClusterError::Raft {
        reason: e.to_string(),
    }
}

impl transport::Handler for HandlerSlot {
    fn admits(&self, peer: NodeId) -> bool {
        // Node ids are never reused, so refusing a removed id revokes its certificate.
        self.0.get().and_then(Weak::upgrade).is_none_or(|node| {
            node.meta
                .current()
                .nodes
                .get(&peer)
                .is_none_or(|n| n.state != NodeState::Removed)
        })
    }

    fn request(
        &self,
        from: NodeId,
        body: bytes::Bytes,
    ) -> futures::future::BoxFuture<'static, Vec<u8>> {
        let node = self.0.get().and_then(Weak::upgrade);
        Box::pin(async move {
            match node {
                Some(node) => handler::handle_raw(&node, from, &body).await,
                None => handler::unavailable(),
            }
        })
    }

    fn message(&self, from: NodeId, body: bytes::Bytes) {
        if let Some(node) = self.0.get().and_then(Weak::upgrade) {
            // One-way messages are fire-and-forget for the sender, so a full node drops them
            // rather than queueing without bound.
            let Ok(permit) = node.message_slots.clone().try_acquire_owned() else {
                tracing::warn!(from, "one-way message dropped: too many in progress");
                return;
            };
            let tasks = node.tasks.clone();
            tasks.spawn(async move {
                let _reply_unused = handler::handle_raw(&node, from, &body).await;
                drop(permit);
            });
        }
    }

    fn join(
        &self,
        body: bytes::Bytes,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, String>> {
        let node = self.0.get().and_then(Weak::upgrade);
        Box::pin(async move {
            match node {
                Some(node) => handler::admit(node, &body).await,
                None => Err("node is starting".to_string()),
            }
        })
    }
}
