//! A node's local Raft replicas: opening and dropping them as the shard map changes, and
//! publishing which of them this node leads.
//!
//! The node follows the meta state: it opens a replica of every shard placed on it and drops a
//! replica once the shard's move away from it is settled. Each replica gets a task that keeps the
//! node's leadership watch current.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chatsdk_storage::{
    Applier, GroupId, GroupReader, LogStore, NodeId, StateMachineStore, TypeConfig,
};
use openraft::metrics::RaftServerMetrics;
use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchApplier, Batcher, Waiting};
use crate::meta::{MetaState, META_GROUP};
use crate::network::GroupNetwork;
use crate::node::{raft_err, NodeInner};
use crate::ClusterError;

/// One local replica of a group.
pub(crate) struct Group {
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) reader: GroupReader,
    pub(crate) batcher: Batcher,
    /// Held while this node hands leadership of the group over.
    pub(crate) handover: tokio::sync::Mutex<()>,
    /// Stops the batcher when the replica goes away.
    stop: CancellationToken,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl NodeInner {
    pub(crate) fn read_groups(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, Arc<Group>>> {
        self.groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    pub(crate) fn group(&self, id: GroupId) -> Option<Arc<Group>> {
        self.read_groups().get(&id).cloned()
    }
    /// Creates the local replicas the shard map gives this node and drops those it took away.
    pub(crate) async fn sync_groups(&self, state: &MetaState) {
        if self.shutdown.is_cancelled() {
            return;
        }
        for shard in state.shards_of(self.id) {
            if self.group(shard).is_none() {
                if let Err(e) = self.create_group(shard).await {
                    tracing::error!(shard, error = %e, "cannot create shard replica");
                }
            }
        }
        let local: Vec<GroupId> = self.read_groups().keys().copied().collect();
        for group in local {
            if group == META_GROUP {
                continue;
            }
            let placed_here = state
                .shard_map
                .get(&group)
                .map(|r| !r.settled || r.placement.replicas.contains(&self.id))
                .unwrap_or(true);
            if !placed_here {
                if let Err(e) = self.remove_group(group).await {
                    tracing::error!(group, error = %e, "cannot drop shard replica");
                }
            }
        }
    }
    pub(crate) async fn create_group(&self, id: GroupId) -> Result<Arc<Group>, ClusterError> {
        let _guard = self.lifecycle.lock().await;
        if self.shutdown.is_cancelled() {
            return Err(ClusterError::ShuttingDown);
        }
        if let Some(existing) = self.group(id) {
            return Ok(existing);
        }
        let waiting = Arc::new(Waiting::default());
        let applier: Arc<dyn Applier> = if id == META_GROUP {
            BatchApplier::wrap(self.meta.clone(), waiting.clone())
        } else {
            BatchApplier::wrap(self.data_applier.clone(), waiting.clone())
        };
        let log = LogStore::open(&self.store, id)?;
        let sm = StateMachineStore::open(&self.store, id, applier)?;
        let reader = sm.reader();
        if id == META_GROUP {
            self.meta.attach(reader.clone())?;
        }
        let network = GroupNetwork {
            group: id,
            transport: self.transport.clone(),
            snapshot_stall_timeout: self.config.snapshot_stall_timeout,
        };
        let raft = Raft::new(self.id, self.raft_config.clone(), network, log, sm)
            .await
            .map_err(raft_err)?;
        let stop = self.shutdown.child_token();
        let group = Arc::new(Group {
            raft: raft.clone(),
            reader,
            batcher: Batcher::start(
                raft.clone(),
                waiting,
                stop.clone(),
                self.config.propose_timeout,
            ),
            handover: tokio::sync::Mutex::new(()),
            stop,
        });
        if let Ok(mut map) = self.groups.write() {
            map.insert(id, group.clone());
        }
        self.tasks.spawn(watch_group(
            id,
            self.id,
            raft.server_metrics(),
            self.leading.clone(),
            self.stats.clone(),
            self.shutdown.clone(),
        ));
        tracing::debug!(group = id, "replica opened");
        Ok(group)
    }
    async fn remove_group(&self, id: GroupId) -> Result<(), ClusterError> {
        let _guard = self.lifecycle.lock().await;
        let removed = match self.groups.write() {
            Ok(mut map) => map.remove(&id),
            Err(_) => None,
        };
        if let Some(group) = removed {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(group = id, error = %e, "raft task ended abnormally");
            }
            drop(group);
            self.leading.send_if_modified(|set| set.remove(&id));
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.drop_group(id))
                .await
                .map_err(|e| ClusterError::Raft {
                    reason: format!("drop task failed: {e}"),
                })??;
            tracing::debug!(group = id, "replica dropped");
        }
        Ok(())
    }
}

/// Publishes whether this node leads `group`. It watches the server metrics (role, leader,
/// membership), which change only on elections and membership changes: the full metrics change
/// with every append, commit and apply and would wake this task several times per entry.
async fn watch_group(
    group: GroupId,
    me: NodeId,
    mut metrics: watch::Receiver<RaftServerMetrics<NodeId, BasicNode>>,
    leading: watch::Sender<BTreeSet<GroupId>>,
    stats: crate::stats::ClusterStats,
    token: CancellationToken,
) {
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    let mut last_leader = None;
    loop {
        let (is_leader, leader) = {
            let m = metrics.borrow_and_update();
            (
                m.state == ServerState::Leader && m.current_leader == Some(me),
                m.current_leader,
            )
        };
        if leader.is_some() && leader != last_leader {
            stats.leader_changed(group);
            last_leader = leader;
        }
        if group != META_GROUP {
            leading.send_if_modified(|set| {
                if is_leader {
                    set.insert(group)
                } else {
                    set.remove(&group)
                }
            });
        }
        tokio::select! {
            () = &mut cancelled => break,
            changed = metrics.changed() => if changed.is_err() { break },
        }
    }
    if group != META_GROUP {
        leading.send_if_modified(|set| set.remove(&group));
    }
}
