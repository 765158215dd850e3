//! openraft's log storage for one group, on sled.
//!
//! Entries live in the group's `log` tree keyed by big-endian index, so sled's order is log
//! order. The vote, the committed log id and the last purged log id live in `logmeta`. Appends
//! and votes are acknowledged only after the store's group-commit flusher has made them durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogId, RaftLogReader, StorageIOError, Vote};

use crate::record;
use crate::store::Store;
use crate::types::{Entry, LogId, RaftStorageError};
use crate::{GroupId, NodeId, StoreError, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// The log of one group. Cloning gives a reader over the same trees.
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    store: Store,
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    /// Opens the log trees of `group`.
    pub fn open(store: &Store, group: GroupId) -> Result<LogStore, StoreError> {
        Ok(LogStore {
            group,
            store: store.clone(),
            log: store.group_tree(group, "log")?,
            meta: store.group_tree(group, "logmeta")?,
        })
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.meta.get(key)? {
            Some(raw) => Ok(Some(record::decode(&raw)?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.meta.insert(key, record::encode(value)?)?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StoreError> {
        match self.log.last()? {
            Some((_, raw)) => {
                let entry: Entry = record::decode(&raw)?;
                Ok(Some(*entry.get_log_id()))
            }
            None => Ok(None),
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: StoreError) -> RaftStorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: StoreError) -> RaftStorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn range_keys<RB: RangeBounds<u64>>(range: &RB) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let start = match range.start_bound() {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let mut entries = Vec::new();
        for item in self.log.range(range_keys(&range)) {
            let (_, raw) = item.map_err(|e| read_err(e.into()))?;
            entries.push(record::decode::<Entry>(&raw).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_PURGED).map_err(read_err)?;
        let last = self.last_entry_log_id().map_err(read_err)?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let to_io = |e: StoreError| -> RaftStorageError {
            StorageIOError::write_vote(AnyError::new(&e)).into()
        };
        self.write_meta(KEY_VOTE, vote).map_err(to_io)?;
        self.store.flush().await.map_err(to_io)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.read_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        // Not flushed on its own: it rides on the next flush. A stale committed id after a crash
        // only means re-applying less on restart; Raft re-learns the commit index from the leader.
        self.write_meta(KEY_COMMITTED, &committed)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(KEY_COMMITTED)
            .map_err(read_err)?
            .flatten())
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
        // Plain inserts, not a sled batch: `Tree::apply_batch` takes sled's global write lock and
        // writes its I/O buffer out on every call, which serialises all groups and costs two
        // synchronous writes per append. Atomicity is not needed here: entries are inserted in
        // index order, sled recovers a prefix of its log, and nothing is acknowledged before the
        // flush below.
        for entry in entries {
            let raw = record::encode(&entry).map_err(write_err)?;
            self.log
                .insert(index_key(entry.get_log_id().index), raw)
                .map_err(|e| write_err(e.into()))?;
        }
        self.store
            .flush_then(Box::new(move |res| callback.log_io_completed(res)))
            .await
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (k, _) = item.map_err(|e| write_err(e.into()))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| write_err(e.into()))?;
        // Conflicting entries must not come back after a crash.
        self.store.flush().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        // Record the purge point first: a crash half-way leaves entries below it, never a gap
        // the log state would not account for.
        self.write_meta(KEY_PURGED, &log_id).map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = item.map_err(|e| write_err(e.into()))?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(|e| write_err(e.into()))
    }
}
