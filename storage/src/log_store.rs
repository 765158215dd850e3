//! openraft's log storage for one group, on the node's write-ahead log ([`crate::wal`]).
//!
//! Every group of a node appends to the same log; this is one group's view of it. Appends,
//! votes and truncations are acknowledged only after the log's syncer has made them durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError, Vote};

use crate::store::Store;
use crate::types::{Entry, LogId, RaftStorageError};
use crate::{GroupId, NodeId, StoreError, TypeConfig};

/// The log of one group. Cloning gives a reader over the same log.
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    store: Store,
}

impl LogStore {
    /// Opens the log of `group`.
    pub fn open(store: &Store, group: GroupId) -> Result<LogStore, StoreError> {
        Ok(LogStore {
            group,
            store: store.clone(),
        })
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }
}

fn read_err(e: StoreError) -> RaftStorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: StoreError) -> RaftStorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// `[start, end)` of a range of indexes.
fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let (start, end) = bounds(&range);
        self.store
            .wal()
            .read(self.group, start, end)
            .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let state = self.store.wal().group_state(self.group).map_err(read_err)?;
        Ok(LogState {
            last_purged_log_id: state.purged,
            last_log_id: state.last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let to_io = |e: StoreError| -> RaftStorageError {
            StorageIOError::write_vote(AnyError::new(&e)).into()
        };
        self.store
            .wal()
            .save_vote(self.group, *vote)
            .map_err(to_io)?;
        self.store.wal().sync().await.map_err(to_io)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.store
            .wal()
            .group_state(self.group)
            .map(|s| s.vote)
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        // Neither written nor synced on its own: it rides on the next append's write and that
        // append's sync. A stale committed id after a crash only means re-applying less on
        // restart; Raft re-learns the commit index from the leader.
        self.store
            .wal()
            .save_committed(self.group, committed)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        self.store
            .wal()
            .group_state(self.group)
            .map(|s| s.committed)
            .map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.store
            .wal()
            .append(self.group, entries)
            .map_err(write_err)?;
        self.store
            .wal()
            .sync_then(Box::new(move |res| callback.log_io_completed(res)))
            .await
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        self.store
            .wal()
            .truncate(self.group, log_id.index)
            .map_err(write_err)?;
        // Conflicting entries must not come back after a crash.
        self.store.wal().sync().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        self.store
            .wal()
            .purge(self.group, log_id)
            .map_err(write_err)
    }
}
