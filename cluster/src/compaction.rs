//! Keeps the node's Raft log from growing without bound because of quiet groups.
//!
//! Every group of a node appends to one write-ahead log, and a log segment can be deleted only
//! once every entry in it is purged. Groups purge after a snapshot, and they snapshot by entry
//! count, so a quiet group's few entries could keep every segment written since its oldest one
//! on disk. This task asks such groups to snapshot and then to purge up to what keeps the old
//! segments, after which the log deletes them. A group whose entries are in the log but whose
//! replica this node no longer holds (removed while the node was down) is dropped instead.

use std::sync::Weak;
use std::time::Duration;

use chatsdk_storage::GroupId;

use crate::meta::META_GROUP;
use crate::node::NodeInner;

/// How often the log is checked.
const INTERVAL: Duration = Duration::from_secs(30);
/// Segments (32 MiB each) a quiet group may keep behind the one being written: the log's disk
/// use beyond the entries busy groups still need is bounded by this many segments. Snapshotting
/// a quiet group is cheap (it holds little), so the slack only spares it from snapshotting
/// at every pass.
const KEEP_SEGMENTS: u64 = 2;

pub(crate) async fn run(weak: Weak<NodeInner>) {
    let Some(inner) = weak.upgrade() else { return };
    let token = inner.shutdown.clone();
    drop(inner);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        pass(&inner).await;
    }
}

/// One check: a group that pins old segments snapshots first (the purge needs a snapshot that
/// covers the entries) and purges at a later pass.
async fn pass(inner: &NodeInner) {
    let pinning = match inner.store.groups_pinning_log(KEEP_SEGMENTS) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the raft log for quiet groups");
            return;
        }
    };
    for (group, upto) in pinning {
        let Some(local) = inner.group(group) else {
            forget_if_gone(inner, group).await;
            continue;
        };
        let snapshot = local.raft.metrics().borrow().snapshot.map(|s| s.index);
        let outcome = if snapshot.is_some_and(|s| s >= upto) {
            tracing::info!(
                group,
                upto,
                "purging a quiet group's log to release old segments"
            );
            local.raft.trigger().purge_log(upto).await
        } else {
            tracing::info!(
                group,
                upto,
                "snapshotting a quiet group to release old log segments"
            );
            local.raft.trigger().snapshot().await
        };
        if let Err(e) = outcome {
            tracing::warn!(group, error = %e, "log compaction request failed");
        }
    }
}

/// A group with entries in the log but no replica open here, that the cluster no longer places
/// on this node (its replica was removed while the node was down, say): nothing will ever purge
/// its entries, so its log and trees are dropped. Done under the lock that creates and removes
/// replicas, so it cannot race a replica being created.
async fn forget_if_gone(inner: &NodeInner, group: GroupId) {
    if group == META_GROUP {
        return;
    }
    let _lifecycle = inner.lifecycle.lock().await;
    if inner.group(group).is_some() {
        return;
    }
    let state = inner.meta.current();
    let placed_here = state
        .shard_map
        .get(&group)
        .map(|r| !r.settled || r.placement.replicas.contains(&inner.id))
        .unwrap_or(true);
    if placed_here {
        return;
    }
    let store = inner.store.clone();
    match tokio::task::spawn_blocking(move || store.drop_group(group)).await {
        Ok(Ok(())) => tracing::info!(
            group,
            "dropped the log of a replica this node no longer holds"
        ),
        Ok(Err(e)) => tracing::warn!(group, error = %e, "cannot drop a stale replica's log"),
        Err(e) => tracing::warn!(group, error = %e, "stale replica drop task failed"),
    }
}
