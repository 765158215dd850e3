//! openraft's state machine for one group, on sled, applying opaque commands through an
//! [`Applier`] that the layer owning the group supplies.
//!
//! Each `apply` call writes the application's changes, the applied log id and the membership
//! through a redo record (see `Redo`), so they survive a crash together. Snapshots are a copy of the group's application keys taken on the state
//! machine task (so it is consistent with the applied log id) and encoded off that task, so the
//! group keeps applying while a snapshot is built. Installing a snapshot replaces the keys in one
//! batch and is flushed before openraft is told it is done.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{AnyError, BasicNode, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::kv::{GroupReader, KeyValue, KvBatch, DATA_PREFIX};
use crate::record;
use crate::store::Store;
use crate::types::{Entry, LogId, RaftStorageError, StoredMembership};
use crate::{GroupId, NodeId, Reply, StoreError, TypeConfig};

const KEY_APPLIED: &[u8] = b"s/applied";
const KEY_MEMBERSHIP: &[u8] = b"s/membership";
const KEY_SNAPSHOT: &[u8] = b"current";
const KEY_REDO: &[u8] = b"s/redo";

/// Everything one `apply` call writes, recorded before it is written.
///
/// sled's atomic batches take a global write lock and write out its I/O buffer on every call,
/// which capped the whole node at a few thousand applies per second. Instead, `apply` records its
/// writes and the applied position in this one redo record, then performs the writes as plain
/// inserts. sled recovers a prefix of its log, so after a crash either none of an apply's writes
/// survived, or its redo record did too. [`StateMachineStore::open`] performs the last redo
/// record again (its writes are absolute values, so performing them twice is performing them
/// once) and takes the applied position from it: `s/applied` itself is only written when a
/// snapshot replaces the keys (which also removes the redo record), one insert less per apply.
#[derive(Serialize, Deserialize)]
struct Redo {
    applied: Option<LogId>,
    /// The membership, when this apply changed it (most applies do not: one write less).
    membership: Option<StoredMembership>,
    /// `(tree key, framed value or None for a delete)`.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Redo {
    /// Performs the recorded writes, the membership last (the applied position is the record's).
    fn perform(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (key, value) in &self.writes {
            match value {
                Some(v) => tree.insert(key.as_slice(), v.as_slice())?,
                None => tree.remove(key.as_slice())?,
            };
        }
        if let Some(membership) = &self.membership {
            tree.insert(KEY_MEMBERSHIP, record::encode(membership)?)?;
        }
        Ok(())
    }
}

/// Where an entry being applied sits.
#[derive(Clone, Copy, Debug)]
pub struct ApplyContext {
    /// The group the entry belongs to.
    pub group: GroupId,
    /// The entry's log index (unique and increasing within the group).
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// Position of the command within its entry, when the layer that proposes packs several
    /// commands into one entry (0 otherwise). `(index, position)` is unique within a group.
    pub position: u32,
}

/// The layer above gives commands meaning by implementing this.
///
/// `apply` must be deterministic: every replica applies the same commands in the same order and
/// must reach the same state. Reads and writes go through `kv`, which commits atomically with the
/// applied position. An error is a storage failure (for example a corrupted record) and stops the
/// group; domain-level refusals belong in the reply bytes.
pub trait Applier: Send + Sync + 'static {
    /// Applies one committed command and returns the reply for the proposer.
    fn apply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError>;

    /// Called after an `apply` batch is written (not yet necessarily flushed), with the last
    /// applied index. Use it to publish events; it must not block.
    fn applied(&self, _group: GroupId, _last_index: u64) {}

    /// Called after a snapshot replaced the group's keys, so caches can be rebuilt.
    fn snapshot_installed(&self, _group: GroupId) {}
}

/// The persisted form of a snapshot.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// A framed [`SnapshotBody`].
    data: Vec<u8>,
}

/// What a snapshot carries: the application's keys and their raw (framed) values.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    entries: Vec<KeyValue>,
}

/// The state machine of one group.
pub struct StateMachineStore {
    group: GroupId,
    store: Store,
    tree: sled::Tree,
    snap: sled::Tree,
    applier: Arc<dyn Applier>,
    applied: Option<LogId>,
    membership: StoredMembership,
}

impl StateMachineStore {
    /// Opens the state machine trees of `group`.
    pub fn open(
        store: &Store,
        group: GroupId,
        applier: Arc<dyn Applier>,
    ) -> Result<StateMachineStore, StoreError> {
        let tree = store.group_tree(group, "sm")?;
        let snap = store.group_tree(group, "snap")?;
        let mut applied: Option<LogId> = match tree.get(KEY_APPLIED)? {
            Some(raw) => record::decode(&raw)?,
            None => None,
        };
        let mut membership = match tree.get(KEY_MEMBERSHIP)? {
            Some(raw) => record::decode(&raw)?,
            None => StoredMembership::default(),
        };
        if let Some(raw) = tree.get(KEY_REDO)? {
            let redo: Redo = record::decode(&raw)?;
            if redo.applied > applied {
                // The last apply since the last snapshot: perform it again, in case a crash
                // interrupted it.
                redo.perform(&tree)?;
                applied = redo.applied;
                if let Some(m) = redo.membership {
                    membership = m;
                }
            }
        }
        Ok(StateMachineStore {
            group,
            store: store.clone(),
            tree,
            snap,
            applier,
            applied,
            membership,
        })
    }

    /// A reader of this group's application keys.
    pub fn reader(&self) -> GroupReader {
        GroupReader::new(self.tree.clone())
    }

    fn system_batch(&self, batch: &mut sled::Batch) -> Result<(), StoreError> {
        batch.insert(KEY_APPLIED, record::encode(&self.applied)?);
        batch.insert(KEY_MEMBERSHIP, record::encode(&self.membership)?);
        Ok(())
    }

    fn copy_data(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.tree
            .scan_prefix([DATA_PREFIX])
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        match self.snap.get(KEY_SNAPSHOT)? {
            Some(raw) => Ok(Some(record::decode(&raw)?)),
            None => Ok(None),
        }
    }
}

fn sm_write_err(e: StoreError) -> RaftStorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn sm_read_err(e: StoreError) -> RaftStorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn snapshot_err(meta: Option<&SnapshotMeta<NodeId, BasicNode>>, e: StoreError) -> RaftStorageError {
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut kv = KvBatch::new(&self.tree);
        let mut replies = Vec::new();
        let mut membership_changed = false;
        for entry in entries {
            let log_id = entry.log_id;
            self.applied = Some(log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(cmd) => {
                    let ctx = ApplyContext {
                        group: self.group,
                        index: log_id.index,
                        term: log_id.leader_id.term,
                        position: 0,
                    };
                    let out = self.applier.apply(&ctx, &mut kv, &cmd.0).map_err(|e| {
                        RaftStorageError::from(StorageIOError::apply(log_id, AnyError::new(&e)))
                    })?;
                    Reply(out)
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    membership_changed = true;
                    Reply::default()
                }
            };
            replies.push(reply);
        }
        let redo = Redo {
            applied: self.applied,
            membership: membership_changed.then(|| self.membership.clone()),
            writes: kv.into_writes(),
        };
        let raw = record::encode(&redo).map_err(sm_write_err)?;
        self.tree
            .insert(KEY_REDO, raw)
            .map_err(|e| sm_write_err(e.into()))?;
        redo.perform(&self.tree).map_err(sm_write_err)?;
        if let Some(applied) = self.applied {
            self.applier.applied(self.group, applied.index);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Copying here, on the state machine task, makes the copy consistent with `applied`.
        SnapshotBuilder {
            store: self.store.clone(),
            snap: self.snap.clone(),
            applied: self.applied,
            membership: self.membership.clone(),
            data: self.copy_data(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        // The log holds back purges until the snapshot is installed and durable.
        self.store
            .wal()
            .begin_install(self.group)
            .map_err(sm_write_err)?;
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = record::decode(&data).map_err(|e| snapshot_err(Some(meta), e))?;
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix([DATA_PREFIX]) {
            let (k, _) = item.map_err(|e| snapshot_err(Some(meta), e.into()))?;
            batch.remove(k);
        }
        for (k, v) in body.entries {
            // Values keep the framing they had on the leader; check them before accepting.
            record::unframe(&v).map_err(|e| snapshot_err(Some(meta), e))?;
            batch.insert(k, v);
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.system_batch(&mut batch)
            .map_err(|e| snapshot_err(Some(meta), e))?;
        // A redo record of an apply the snapshot supersedes must never be replayed over it.
        batch.remove(KEY_REDO);
        self.tree
            .apply_batch(batch)
            .map_err(|e| snapshot_err(Some(meta), e.into()))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let raw = record::encode(&stored).map_err(|e| snapshot_err(Some(meta), e))?;
        self.snap
            .insert(KEY_SNAPSHOT, raw)
            .map_err(|e| snapshot_err(Some(meta), e.into()))?;
        self.store
            .flush()
            .await
            .map_err(|e| snapshot_err(Some(meta), e))?;
        self.store
            .wal()
            .end_install(self.group)
            .map_err(|e| snapshot_err(Some(meta), e))?;
        self.applier.snapshot_installed(self.group);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let stored = self.read_snapshot().map_err(sm_read_err)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Encodes and persists a snapshot from a copy taken on the state machine task.
pub struct SnapshotBuilder {
    store: Store,
    snap: sled::Tree,
    applied: Option<LogId>,
    membership: StoredMembership,
    data: Result<Vec<KeyValue>, StoreError>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let entries = std::mem::replace(&mut self.data, Ok(Vec::new())).map_err(sm_read_err)?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let snapshot_id = match self.applied {
            Some(id) => format!("{}-{}-{millis}", id.leader_id.term, id.index),
            None => format!("0-0-{millis}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let data =
            record::encode(&SnapshotBody { entries }).map_err(|e| snapshot_err(Some(&meta), e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let raw = record::encode(&stored).map_err(|e| snapshot_err(Some(&meta), e))?;
        self.snap
            .insert(KEY_SNAPSHOT, raw)
            .map_err(|e| snapshot_err(Some(&meta), e.into()))?;
        // openraft purges the log up to the snapshot once this returns: the state machine writes
        // it covers must be durable first.
        self.store
            .flush()
            .await
            .map_err(|e| snapshot_err(Some(&meta), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::data_key;
    use crate::StoreConfig;
    use openraft::{CommittedLeaderId, Membership};

    struct Nothing;

    impl Applier for Nothing {
        fn apply(
            &self,
            _ctx: &ApplyContext,
            _kv: &mut KvBatch<'_>,
            _command: &[u8],
        ) -> Result<Vec<u8>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn membership() -> StoredMembership {
        StoredMembership::new(
            Some(log_id(1)),
            Membership::new(vec![[1u64].into_iter().collect()], None),
        )
    }

    /// A crash after the redo record but before (some of) its writes: reopening finishes them.
    #[test]
    fn interrupted_apply_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let tree = store.group_tree(4, "sm").unwrap();
            tree.insert(data_key(b"gone"), record::frame(b"old"))
                .unwrap();
            let redo = Redo {
                applied: Some(log_id(7)),
                membership: Some(membership()),
                writes: vec![
                    (data_key(b"a"), Some(record::frame(b"1"))),
                    (data_key(b"gone"), None),
                ],
            };
            tree.insert(KEY_REDO, record::encode(&redo).unwrap())
                .unwrap();
            // Only the first write made it before the "crash".
            tree.insert(data_key(b"a"), record::frame(b"1")).unwrap();
        }
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let sm = StateMachineStore::open(&store, 4, Arc::new(Nothing)).unwrap();
        assert_eq!(sm.applied, Some(log_id(7)));
        assert_eq!(sm.membership, membership());
        assert_eq!(sm.reader().get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(sm.reader().get(b"gone").unwrap(), None);
    }

    /// Writes the command as the value of its own key.
    struct Echo;

    impl Applier for Echo {
        fn apply(
            &self,
            _ctx: &ApplyContext,
            kv: &mut KvBatch<'_>,
            command: &[u8],
        ) -> Result<Vec<u8>, StoreError> {
            kv.put(command, command);
            Ok(Vec::new())
        }
    }

    /// Applies leave `s/applied` alone: the applied position of a reopened state machine comes
    /// from its last redo record, with that apply's writes (performed again) and the earlier
    /// ones.
    #[tokio::test]
    async fn reopened_state_machine_is_at_its_last_apply() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
            for (i, key) in [b"one".as_slice(), b"two", b"six"].iter().enumerate() {
                let entry = Entry {
                    log_id: log_id(i as u64 + 1),
                    payload: EntryPayload::Normal(crate::Command(key.to_vec())),
                };
                sm.apply([entry]).await.unwrap();
            }
            assert!(sm.tree.get(KEY_APPLIED).unwrap().is_none());
            store.flush().await.unwrap();
        }
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(3)));
        for key in [b"one".as_slice(), b"two", b"six"] {
            assert_eq!(sm.reader().get(key).unwrap(), Some(key.to_vec()));
        }
    }

    /// A redo record older than the applied position (a snapshot's, which also removes the
    /// record) is not replayed.
    #[test]
    fn completed_redo_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let tree = store.group_tree(4, "sm").unwrap();
            let redo = Redo {
                applied: Some(log_id(3)),
                membership: Some(membership()),
                writes: vec![(data_key(b"k"), Some(record::frame(b"old")))],
            };
            tree.insert(KEY_REDO, record::encode(&redo).unwrap())
                .unwrap();
            tree.insert(data_key(b"k"), record::frame(b"newer"))
                .unwrap();
            tree.insert(KEY_APPLIED, record::encode(&Some(log_id(5))).unwrap())
                .unwrap();
        }
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let sm = StateMachineStore::open(&store, 4, Arc::new(Nothing)).unwrap();
        assert_eq!(sm.applied, Some(log_id(5)));
        assert_eq!(sm.reader().get(b"k").unwrap(), Some(b"newer".to_vec()));
    }
}
