//! openraft's state machine for one group, on sled, applying opaque commands through an
//! [`Applier`] that the layer owning the group supplies.
//!
//! An `apply` call leaves its writes in the group's pending writes (`kv::Pending`), which every
//! reader sees at once; the state machine moves them into sled in one atomic batch together with
//! the applied log id and the membership when enough keys are pending or the oldest has waited
//! long enough (see [`FLUSH_KEYS`], [`FLUSH_AFTER`]), before a snapshot is taken, and when the
//! group closes. sled therefore never holds part of an apply, a key written by many applies in a
//! row (a stream's head) reaches sled once, and applying costs no sled write of its own. The
//! flushes that `apply` starts run on the store's low-priority background threads (`background`)
//! while the group goes on applying (the pending writes are frozen for them and stay readable
//! until sled has them; one flush per group at a time), so a flush of many keys does not hold up
//! the group's writers nor, on a busy core, the requests queued behind it. After a
//! crash the applied position is the last batch's and openraft applies the entries after it
//! again from the log, which the node fsyncs before anything is acknowledged (it purges entries
//! only behind a snapshot, and a snapshot is taken after a flush).
//!
//! sled already holds the state machine, so building a snapshot copies nothing: it moves the
//! pending writes into sled, makes sled durable and records the snapshot's metadata (its
//! *mark*), which is all openraft keeps of a snapshot it built and all it needs to purge the
//! log behind it. The keys are copied only when a snapshot is read
//! (`get_current_snapshot`: a follower that needs one, a node that starts), on the state
//! machine task so that the copy is consistent with the applied log id, and at the applied log
//! id of that moment. A copy at every build (as this module once made) held the node's
//! core for as long as the group's data took to copy, encode and write (60–150 ms at a few
//! hundred thousand messages, every 20,000 entries per group, growing with the data). Installing
//! A snapshot's bytes are a file, written and read a piece at a time (see
//! [`crate::snapshot_file`]): neither the copy nor its install holds the group's state in memory.
//! Installing one fills a new tree (the group's next *generation*) from the file, makes it
//! durable, and only then makes it the group's tree, with the snapshot's mark, in one write of
//! the `snap` tree; the old tree is dropped after. A crash during an install leaves the group as
//! it was before it (opening drops the partly filled tree).

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{AnyError, BasicNode, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::kv::{GroupReader, KvBatch, View, DATA_PREFIX};
use crate::record;
use crate::snapshot_file::{self, SnapshotFile};
use crate::store::Store;
use crate::types::{Entry, LogId, RaftStorageError, StoredMembership};
use crate::{GroupId, NodeId, Reply, StoreError, TypeConfig};

const KEY_APPLIED: &[u8] = b"s/applied";
const KEY_MEMBERSHIP: &[u8] = b"s/membership";
/// The current snapshot's metadata (see the module docs), in the group's `snap` tree.
const KEY_MARK: &[u8] = b"mark";
/// Which generation of the group's state machine tree is current (a `u64`, big-endian; none:
/// generation 0), in the `snap` tree.
const KEY_GENERATION: &[u8] = b"generation";
/// Where earlier builds kept the current snapshot whole (a [`StoredSnapshot`]); opening
/// keeps its metadata as the mark and removes it.
const KEY_LEGACY_SNAPSHOT: &[u8] = b"current";
/// Where builds before pending writes kept their last apply (see [`LegacyRedo`]).
const KEY_REDO: &[u8] = b"s/redo";

/// Pending keys that make the next `apply` start moving them into sled. A flush holds sled's
/// batch lock, so it is kept to a couple of milliseconds.
pub const FLUSH_KEYS: usize = 512;
/// Pending keys at which an `apply` waits for the group's flush in flight before going on (the
/// bound on a group's pending writes while sled is slower than the applies).
const PENDING_KEYS_MAX: usize = 8 * FLUSH_KEYS;
/// How long a group's pending writes may wait for the next `apply` to move them into sled (the
/// first of them waits between half of this and all of it, by group, see `flush_delay`). Longer
/// waits write a hot key (a stream's head) to sled fewer times and flush fewer, larger batches
/// (measured at 3,000 sends/s: flushing after every apply cost ~310 µs of CPU per send, after
/// 100 ms ~200–240, after a second ~170–200 but with flushes of every group at the same moment
/// stalling the node for p99 over 100 ms). A group that stops applying keeps its pending writes
/// until it snapshots or closes (or, after a crash, until openraft applies them again).
pub const FLUSH_AFTER: Duration = Duration::from_millis(500);

/// The record of one `apply` that earlier builds wrote before performing its writes. A directory
/// last written by such a build may hold one that a crash interrupted: opening performs it again
/// (its writes are absolute values) and removes it.
#[derive(Serialize, Deserialize)]
struct LegacyRedo {
    applied: Option<LogId>,
    membership: Option<StoredMembership>,
    /// `(tree key, framed value or None for a delete)`.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
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

    /// [`Applier::apply`], answering with a typed value where the applier has one: it is
    /// encoded only if the reply leaves the node (see [`crate::Reply`]). The default answers
    /// `apply`'s bytes.
    fn apply_reply(
        &self,
        ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<crate::Reply, StoreError> {
        self.apply(ctx, kv, command).map(crate::Reply::Bytes)
    }

    /// Called after an `apply` batch is written (not yet necessarily flushed), with the last
    /// applied index. Use it to publish events; it must not block.
    fn applied(&self, _group: GroupId, _last_index: u64) {}

    /// Called after a snapshot replaced the group's keys, so caches can be rebuilt.
    fn snapshot_installed(&self, _group: GroupId) {}

    /// The keys this applier mostly reads when they do not exist (an index probed before a
    /// write), stored keys or logical ones packed in values. The group keeps a filter of them
    /// so that such reads skip sled (see [`crate::absent`]); `None` (the default) keeps none.
    fn absent_keys(&self) -> Option<crate::absent::Tracked> {
        None
    }
}

/// The persisted form of a snapshot in earlier builds (read once, see
/// [`KEY_LEGACY_SNAPSHOT`]).
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// A framed [`SnapshotBody`].
    data: Vec<u8>,
}

/// The state machine of one group.
pub struct StateMachineStore {
    group: GroupId,
    store: Store,
    view: View,
    snap: sled::Tree,
    /// The generation of the tree `view` reads (see the module docs).
    generation: u64,
    applier: Arc<dyn Applier>,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// When the pending writes go to sled at the latest (`None`: nothing pending).
    flush_by: Option<Instant>,
    /// The store's count of drops of this group's trees when they were opened: pending writes
    /// are never written into trees dropped since.
    incarnation: u64,
    /// The outcome of the flush running off this task, if one is (in a mutex only to make the
    /// receiver `Sync`; this task is its only user).
    in_flight: Option<Mutex<mpsc::Receiver<Result<(), StoreError>>>>,
}

/// What finishing a flush in flight does when it is still running.
#[derive(Clone, Copy)]
enum Wait {
    Yes,
    No,
}

/// Runs blocking sled work from the state machine's task. On a multi-threaded runtime the
/// worker first hands its other tasks to another thread ([`tokio::task::block_in_place`]), so a
/// flush of many keys (milliseconds) does not hold up the node's connections and other groups;
/// on a current-thread runtime (tests) or outside a runtime it runs in place.
fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match multi_threaded_runtime() {
        Some(_) => tokio::task::block_in_place(work),
        None => work(),
    }
}

/// The current runtime when it is multi-threaded: blocking work may leave its workers (tests
/// on a current-thread runtime, and callers outside a runtime, run it in place).
fn multi_threaded_runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl StateMachineStore {
    /// Opens the state machine trees of `group`.
    pub fn open(
        store: &Store,
        group: GroupId,
        applier: Arc<dyn Applier>,
    ) -> Result<StateMachineStore, StoreError> {
        let incarnation = store.incarnation(group);
        let snap = store.group_tree(group, "snap")?;
        let generation = match snap.get(KEY_GENERATION)? {
            Some(raw) => {
                u64::from_be_bytes(raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: "snap/generation".into(),
                    reason: format!("{} bytes", raw.len()),
                })?)
            }
            None => 0,
        };
        // A tree of another generation is one an install did not finish, or one it replaced.
        store.drop_group_trees(group, |kind| {
            generation_of(kind).is_some_and(|g| g != generation)
        })?;
        let tree = store.group_tree(group, &tree_kind(generation))?;
        let mut applied: Option<LogId> = match tree.get(KEY_APPLIED)? {
            Some(raw) => record::decode(&raw)?,
            None => None,
        };
        let mut membership = match tree.get(KEY_MEMBERSHIP)? {
            Some(raw) => record::decode(&raw)?,
            None => StoredMembership::default(),
        };
        if let Some(raw) = tree.get(KEY_REDO)? {
            let redo: LegacyRedo = record::decode(&raw)?;
            let mut batch = sled::Batch::default();
            if redo.applied > applied {
                for (key, value) in redo.writes {
                    match value {
                        Some(v) => batch.insert(key, v),
                        None => batch.remove(key),
                    }
                }
                applied = redo.applied;
                if let Some(m) = redo.membership {
                    membership = m;
                }
            }
            system_entries(&mut batch, &applied, &membership)?;
            batch.remove(KEY_REDO);
            tree.apply_batch(batch)?;
        }
        if let Some(raw) = snap.get(KEY_LEGACY_SNAPSHOT)? {
            let legacy: StoredSnapshot = record::decode(&raw)?;
            let mut batch = sled::Batch::default();
            batch.insert(KEY_MARK, record::encode(&legacy.meta)?);
            batch.remove(KEY_LEGACY_SNAPSHOT);
            snap.apply_batch(batch)?;
        }
        Ok(StateMachineStore {
            group,
            store: store.clone(),
            view: View::tracking(tree, applier.absent_keys()),
            snap,
            generation,
            applier,
            applied,
            membership,
            flush_by: None,
            incarnation,
            in_flight: None,
        })
    }

    /// A reader of this group's application keys.
    pub fn reader(&self) -> GroupReader {
        GroupReader::new(self.view.clone())
    }

    fn system_batch(&self, batch: &mut sled::Batch) -> Result<(), StoreError> {
        system_entries(batch, &self.applied, &self.membership)
    }

    /// Freezes the pending writes and returns the work that moves them into sled, with the
    /// applied position and the membership, in one atomic batch (`None`: nothing to move, or a
    /// flush still in flight). Run the work on any thread; the frozen writes stay readable until
    /// it has written them.
    fn flush_work(
        &mut self,
    ) -> Result<Option<impl FnOnce() -> Result<(), StoreError> + Send + 'static>, StoreError> {
        if self.flush_by.is_none() {
            return Ok(None);
        }
        let Some(frozen) = self.view.pending.freeze() else {
            return Ok(None);
        };
        let mut batch = sled::Batch::default();
        for (key, value) in frozen.tree_writes() {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        self.system_batch(&mut batch)?;
        self.flush_by = None;
        let (store, tree, pending) = (
            self.store.clone(),
            self.view.tree(),
            self.view.pending.clone(),
        );
        let (group, incarnation) = (self.group, self.incarnation);
        Ok(Some(move || {
            let written = store.write_group(group, incarnation, || tree.apply_batch(batch));
            match written {
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(())) => {}
                // The group was dropped from this node (it moved away): nothing to keep.
                None => tracing::debug!(group, "pending writes of a dropped group discarded"),
            }
            pending.thaw(&frozen);
            Ok(())
        }))
    }

    /// Starts moving the pending writes into sled on the store's background threads (in place
    /// on a current-thread runtime or outside one). At most one flush per group is in flight.
    fn start_flush(&mut self) -> Result<(), StoreError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let Some(work) = self.flush_work()? else {
            return Ok(());
        };
        let (done, outcome) = mpsc::sync_channel(1);
        let job: crate::background::Job = Box::new(move || {
            let _receiver_may_wait_or_be_gone = done.send(work());
        });
        // Off the runtime, at low priority (see `background`); in place on a current-thread
        // runtime (tests) or when the background queue is full.
        if multi_threaded_runtime().is_some() {
            if let Err(job) = self.store.spawn_background(job) {
                job();
            }
        } else {
            job();
        }
        self.in_flight = Some(Mutex::new(outcome));
        Ok(())
    }

    /// Collects the flush in flight if it is done (or, with [`Wait::Yes`], once it is),
    /// returning its failure.
    fn finish_flush(&mut self, wait: Wait) -> Result<(), StoreError> {
        let Some(outcome) = &self.in_flight else {
            return Ok(());
        };
        let outcome = outcome.lock().unwrap_or_else(PoisonError::into_inner);
        let got = match wait {
            Wait::Yes => off_the_workers(|| outcome.recv()).map_err(|_| StoreError::FlusherStopped),
            Wait::No => match outcome.try_recv() {
                Ok(result) => Ok(result),
                Err(mpsc::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::TryRecvError::Disconnected) => Err(StoreError::FlusherStopped),
            },
        };
        drop(outcome);
        self.in_flight = None;
        got?
    }

    /// Moves every pending write into sled before returning (snapshots, close).
    fn flush_pending(&mut self) -> Result<(), StoreError> {
        self.finish_flush(Wait::Yes)?;
        match self.flush_work()? {
            Some(work) => off_the_workers(work),
            None => Ok(()),
        }
    }

    /// Writes the group's keys as they are in sled into a new snapshot file, a piece at a time,
    /// and returns it positioned at its start.
    fn write_snapshot(&self) -> Result<std::fs::File, StoreError> {
        let file = snapshot_file::anonymous(&self.store.snapshot_dir())
            .map_err(StoreError::SnapshotFile)?;
        let mut writer = snapshot_file::Writer::new(BufWriter::new(file))?;
        for item in self.view.tree().scan_prefix([DATA_PREFIX]) {
            let (k, v) = item?;
            writer.push(k.to_vec(), v.to_vec())?;
        }
        let mut file = writer
            .finish()?
            .into_inner()
            .map_err(|e| StoreError::SnapshotFile(e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(StoreError::SnapshotFile)?;
        Ok(file)
    }

    /// Fills the tree of `generation` with a snapshot's keys from `file`, a piece at a time, and
    /// the applied position and membership of `meta`. The group's current tree is untouched.
    fn fill_generation(
        &self,
        generation: u64,
        mut file: std::fs::File,
        meta: &SnapshotMeta<NodeId, BasicNode>,
    ) -> Result<sled::Tree, StoreError> {
        let tree = self.store.group_tree(self.group, &tree_kind(generation))?;
        // What an install that failed before left.
        tree.clear()?;
        file.seek(SeekFrom::Start(0))
            .map_err(StoreError::SnapshotFile)?;
        snapshot_file::read(BufReader::new(file), |entries| {
            let count = entries.len() as u64;
            let mut batch = sled::Batch::default();
            for (k, v) in entries {
                batch.insert(k, v);
            }
            tree.apply_batch(batch)?;
            self.store.note_installed(self.group, count);
            Ok(())
        })?;
        let mut batch = sled::Batch::default();
        system_entries(&mut batch, &meta.last_log_id, &meta.last_membership)?;
        tree.apply_batch(batch)?;
        Ok(tree)
    }

    /// The metadata of a snapshot of the state as applied now, with an id unique to the node
    /// (the log id it covers and the time).
    fn snapshot_meta(&self) -> SnapshotMeta<NodeId, BasicNode> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let snapshot_id = match self.applied {
            Some(id) => format!("{}-{}-{millis}", id.leader_id.term, id.index),
            None => format!("0-0-{millis}"),
        };
        SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        }
    }

    fn read_mark(&self) -> Result<Option<SnapshotMeta<NodeId, BasicNode>>, StoreError> {
        match self.snap.get(KEY_MARK)? {
            Some(raw) => Ok(Some(record::decode(&raw)?)),
            None => Ok(None),
        }
    }
}

/// How long a group's first pending write may wait for the flush: between half of and all of
/// [`FLUSH_AFTER`], by group, so that groups written at the same rate do not all flush (and stall
/// the node) at the same moment.
fn flush_delay(group: GroupId) -> Duration {
    let spread = u64::from(group).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    FLUSH_AFTER * (1024 + spread as u32) / 2048
}

impl Drop for StateMachineStore {
    /// A group that closes leaves nothing for openraft to apply again when it reopens.
    fn drop(&mut self) {
        if let Err(e) = self.flush_pending() {
            tracing::warn!(group = self.group, error = %e, "pending writes not moved into sled at close; they will be applied again from the log");
        }
    }
}

/// A failed write of the state machine (sled's flush) is a failed disk, as for the log: the
/// group's Raft stops on it for good, so the node stops (fail-stop, see [`crate::fatal`])
/// rather than serve on with a dead replica, and restarts from disk.
fn sm_write_err(e: StoreError) -> RaftStorageError {
    crate::fatal::failed(&format!("state machine write failed: {e}"));
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn sm_read_err(e: StoreError) -> RaftStorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

/// A snapshot that cannot be written or installed stops the group for good, as a failed
/// state machine write does: the node stops too when the cause is the disk.
fn snapshot_err(meta: Option<&SnapshotMeta<NodeId, BasicNode>>, e: StoreError) -> RaftStorageError {
    if matches!(e, StoreError::Sled(_) | StoreError::Wal(_)) {
        crate::fatal::failed(&format!("snapshot write failed: {e}"));
    }
    if let StoreError::SnapshotFile(io) = &e {
        // The node's own file: its disk failed.
        crate::fatal::failed(&format!("snapshot file failed: {io}"));
    }
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e)).into()
}

/// Turns a snapshot's failure into openraft's error: one of this node's disk stops the node
/// ([`snapshot_err`]), but not the failure of work on a group that was dropped from this node
/// meanwhile (its replica moved away: sled no longer finds its trees).
#[derive(Clone)]
struct SnapshotFailure {
    store: Store,
    group: GroupId,
    /// The group's incarnation when the work started (see [`Store::write_group`]).
    incarnation: u64,
}

impl SnapshotFailure {
    fn dropped(&self) -> bool {
        self.store.incarnation(self.group) != self.incarnation
    }

    fn err(
        &self,
        meta: Option<&SnapshotMeta<NodeId, BasicNode>>,
        e: StoreError,
    ) -> RaftStorageError {
        if self.dropped() {
            tracing::debug!(group = self.group, error = %e, "snapshot work of a group dropped from this node stopped");
            return StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e))
                .into();
        }
        snapshot_err(meta, e)
    }
}

impl StateMachineStore {
    fn failure(&self) -> SnapshotFailure {
        SnapshotFailure {
            store: self.store.clone(),
            group: self.group,
            incarnation: self.incarnation,
        }
    }
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
        let mut kv = KvBatch::new(&self.view);
        let mut replies = Vec::new();
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
                    self.applier
                        .apply_reply(&ctx, &mut kv, &cmd.0)
                        .map_err(|e| {
                            RaftStorageError::from(StorageIOError::apply(log_id, AnyError::new(&e)))
                        })?
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    Reply::default()
                }
            };
            replies.push(reply);
        }
        self.view.absorb(kv.into_overlay());
        // The applied position moved even when nothing was written: it reaches sled with the
        // next flush.
        let group = self.group;
        let flush_by = *self
            .flush_by
            .get_or_insert_with(|| Instant::now() + flush_delay(group));
        self.finish_flush(Wait::No).map_err(sm_write_err)?;
        let pending = self.view.pending.len();
        if pending >= FLUSH_KEYS || Instant::now() >= flush_by {
            if self.in_flight.is_some() && pending >= PENDING_KEYS_MAX {
                self.finish_flush(Wait::Yes).map_err(sm_write_err)?;
            }
            self.start_flush().map_err(sm_write_err)?;
        }
        if let Some(applied) = self.applied {
            self.applier.applied(self.group, applied.index);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The pending writes go to sled here, on the state machine task, so that sled holds
        // the state at `applied` (or later) when the builder makes it durable.
        let flushed = self.flush_pending();
        SnapshotBuilder {
            store: self.store.clone(),
            snap: self.snap.clone(),
            meta: self.snapshot_meta(),
            flushed,
            failure: self.failure(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, RaftStorageError> {
        // The log holds back purges until the snapshot is installed and durable.
        self.store
            .wal()
            .begin_install(self.group)
            .map_err(sm_write_err)?;
        let file = snapshot_file::anonymous(&self.store.snapshot_dir())
            .map_err(|e| self.failure().err(None, StoreError::SnapshotFile(e)))?;
        Ok(Box::new(SnapshotFile::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), RaftStorageError> {
        let failure = self.failure();
        let fail = |e| failure.err(Some(meta), e);
        let file = snapshot.into_std().await;
        // No flush may land in the tree being replaced once it is replaced.
        self.finish_flush(Wait::Yes).map_err(fail)?;
        let generation = self.generation + 1;
        let tree =
            off_the_workers(|| self.fill_generation(generation, file, meta)).map_err(fail)?;
        self.store.flush().await.map_err(fail)?;
        if failure.dropped() {
            // The replica moved away while it filled: what it wrote goes too.
            let _gone_or_going = self.store.drop_tree(&tree.name());
            return Err(fail(StoreError::Restore {
                group: self.group,
                reason: "the group left this node during the install".into(),
            }));
        }
        // The switch: the new tree and the snapshot's mark, in one write.
        let mut switch = sled::Batch::default();
        switch.insert(KEY_GENERATION, &generation.to_be_bytes());
        switch.insert(KEY_MARK, record::encode(meta).map_err(fail)?);
        self.snap.apply_batch(switch).map_err(|e| fail(e.into()))?;
        self.store.flush().await.map_err(fail)?;
        // The snapshot replaces everything, including what was still pending. The absent-key
        // filter learns the new tree first, so that it never calls absent a key the new tree
        // holds.
        self.view.absent.rebuild(tree.clone());
        let old = self.view.replace_tree(tree);
        self.view.pending.clear();
        self.flush_by = None;
        self.generation = generation;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.view.pending.changed();
        off_the_workers(|| self.store.drop_tree(&old.name())).map_err(fail)?;
        self.store.wal().end_install(self.group).map_err(fail)?;
        self.applier.snapshot_installed(self.group);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        // No snapshot was ever built or installed: none to hand out (openraft builds one when
        // it has purged the log and finds none).
        let Some(mark) = self.read_mark().map_err(sm_read_err)? else {
            return Ok(None);
        };
        self.flush_pending().map_err(sm_read_err)?;
        // The copy is of the keys as they are now: the snapshot is at the applied log id of
        // this moment, the mark's if nothing was applied since.
        let meta = if mark.last_log_id == self.applied {
            mark
        } else {
            let meta = self.snapshot_meta();
            // Whoever gets it may act on it as on a built snapshot: it must be durable here.
            let failure = self.failure();
            write_mark(&self.snap, &meta).map_err(|e| failure.err(Some(&meta), e))?;
            self.store
                .flush()
                .await
                .map_err(|e| failure.err(Some(&meta), e))?;
            meta
        };
        let failure = self.failure();
        let file =
            off_the_workers(|| self.write_snapshot()).map_err(|e| failure.err(Some(&meta), e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::from_std(file)),
        }))
    }
}

/// Writes the state a snapshot carries (its data as [`RaftStateMachine::get_current_snapshot`]
/// hands it out) into a store where `group` holds nothing yet, with `vote` as the group's vote:
/// the restore of a backup. When the group starts, openraft finds the state applied up to the
/// snapshot, an empty log behind it, and a current snapshot to send to followers.
///
/// Refuses a group that already has state, and values whose framing is damaged.
pub async fn restore_snapshot(
    store: &Store,
    group: GroupId,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    vote: Option<openraft::Vote<NodeId>>,
    data: impl Read,
) -> Result<(), StoreError> {
    let tree = store.group_tree(group, &tree_kind(0))?;
    let snap = store.group_tree(group, "snap")?;
    if !tree.is_empty() || !snap.is_empty() {
        return Err(StoreError::Restore {
            group,
            reason: "it already has state here: restore into an empty data directory".into(),
        });
    }
    snapshot_file::read(data, |entries| {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k, v);
        }
        Ok(tree.apply_batch(batch)?)
    })
    .map_err(|e| match e {
        StoreError::SnapshotFormat(reason) => StoreError::Restore { group, reason },
        e => e,
    })?;
    let mut batch = sled::Batch::default();
    system_entries(&mut batch, &meta.last_log_id, &meta.last_membership)?;
    tree.apply_batch(batch)?;
    write_mark(&snap, meta)?;
    if let Some(vote) = vote {
        store.wal().save_vote(group, vote)?;
        store.wal().sync().await?;
    }
    store.flush().await
}

/// The kind (name suffix) of the group's state machine tree of `generation`.
fn tree_kind(generation: u64) -> String {
    match generation {
        0 => "sm".to_string(),
        g => format!("sm{g}"),
    }
}

/// The generation a tree kind names, if it is a state machine tree.
pub(crate) fn generation_of(kind: &str) -> Option<u64> {
    match kind.strip_prefix("sm")? {
        "" => Some(0),
        g if g.starts_with('0') => None,
        g => g.parse().ok(),
    }
}

/// The applied position and membership, written with the keys they describe.
fn system_entries(
    batch: &mut sled::Batch,
    applied: &Option<LogId>,
    membership: &StoredMembership,
) -> Result<(), StoreError> {
    batch.insert(KEY_APPLIED, record::encode(applied)?);
    batch.insert(KEY_MEMBERSHIP, record::encode(membership)?);
    Ok(())
}

fn write_mark(snap: &sled::Tree, meta: &SnapshotMeta<NodeId, BasicNode>) -> Result<(), StoreError> {
    snap.insert(KEY_MARK, record::encode(meta)?)?;
    Ok(())
}

/// Makes the state at a snapshot's log id durable and records the snapshot's metadata (see
/// the module docs: the keys are copied when the snapshot is read).
pub struct SnapshotBuilder {
    store: Store,
    snap: sled::Tree,
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// Whether the pending writes reached sled when the builder was made.
    flushed: Result<(), StoreError>,
    failure: SnapshotFailure,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// The snapshot returned carries no data: openraft keeps the metadata of a snapshot it
    /// built and drops the rest, and [`RaftStateMachine::get_current_snapshot`] copies the
    /// keys when a snapshot is read. (Installing the empty data fails to decode.)
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let meta = self.meta.clone();
        std::mem::replace(&mut self.flushed, Ok(()))
            .map_err(|e| self.failure.err(Some(&meta), e))?;
        write_mark(&self.snap, &meta).map_err(|e| self.failure.err(Some(&meta), e))?;
        // openraft purges the log up to the snapshot once this returns: the state machine writes
        // it covers must be durable first.
        self.store
            .flush()
            .await
            .map_err(|e| self.failure.err(Some(&meta), e))?;
        // An empty file: openraft keeps only the metadata of a snapshot it built.
        let empty = snapshot_file::anonymous(&self.store.snapshot_dir())
            .map_err(|e| self.failure.err(Some(&meta), StoreError::SnapshotFile(e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::from_std(empty)),
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

    /// A directory from a build that wrote redo records, crashed after the record but before
    /// (some of) its writes: reopening finishes them and removes the record.
    #[test]
    fn interrupted_apply_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let tree = store.group_tree(4, "sm").unwrap();
            tree.insert(data_key(b"gone"), record::frame(b"old"))
                .unwrap();
            let redo = LegacyRedo {
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
        assert!(sm.view.tree().get(KEY_REDO).unwrap().is_none());
        drop(sm);
        let sm = StateMachineStore::open(&store, 4, Arc::new(Nothing)).unwrap();
        assert_eq!(sm.applied, Some(log_id(7)));
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

    fn entry(index: u64, key: &[u8]) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(crate::Command(key.to_vec().into())),
        }
    }

    /// Applied writes are read at once but reach sled only in a batch with the applied position:
    /// a state machine that closes writes them, one that crashes leaves sled where the last
    /// batch left it (openraft then applies the entries again from the log).
    #[tokio::test]
    async fn pending_writes_reach_sled_with_the_applied_position() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [b"one".as_slice(), b"two", b"six"];
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
            for (i, key) in keys.iter().enumerate() {
                sm.apply([entry(i as u64 + 1, key)]).await.unwrap();
            }
            for key in keys {
                assert_eq!(sm.reader().get(key).unwrap(), Some(key.to_vec()));
                assert!(sm.view.tree().get(data_key(key)).unwrap().is_none());
            }
            assert!(sm.view.tree().get(KEY_APPLIED).unwrap().is_none());

            // A "crash": another state machine opens the same trees while this one still has
            // its writes pending.
            let crashed = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
            assert_eq!(crashed.applied, None);
            assert_eq!(crashed.reader().get(b"one").unwrap(), None);
            // (It applied nothing, so closing it writes nothing.)
            drop(crashed);
            drop(sm);
            store.flush().await.unwrap();
        }
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(3)));
        for key in keys {
            assert_eq!(sm.reader().get(key).unwrap(), Some(key.to_vec()));
        }
    }

    /// Enough pending keys go to sled without waiting for a snapshot or the close.
    #[tokio::test]
    async fn many_pending_keys_are_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        for i in 0..FLUSH_KEYS as u64 {
            sm.apply([entry(i + 1, &i.to_be_bytes())]).await.unwrap();
        }
        assert_eq!(sm.view.pending.len(), 0);
        let applied: Option<LogId> =
            record::decode(&sm.view.tree().get(KEY_APPLIED).unwrap().unwrap()).unwrap();
        assert_eq!(applied, Some(log_id(FLUSH_KEYS as u64)));
        assert!(sm
            .view
            .tree()
            .get(data_key(&7u64.to_be_bytes()))
            .unwrap()
            .is_some());
    }

    /// A state machine that closes after its group was dropped from the node (it moved away)
    /// writes nothing into the dropped trees.
    #[tokio::test]
    async fn pending_writes_of_a_dropped_group_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        sm.apply([entry(1, b"k")]).await.unwrap();
        store.drop_group(4).unwrap();
        drop(sm);
        assert!(!store.groups().contains(&4));
        let sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        assert_eq!(sm.applied, None);
        assert_eq!(sm.reader().get(b"k").unwrap(), None);
    }

    /// A snapshot taken while writes are pending has them, and so has sled afterwards.
    #[tokio::test]
    async fn snapshot_flushes_pending_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        sm.apply([entry(1, b"k")]).await.unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1)));
        assert!(sm.view.tree().get(data_key(b"k")).unwrap().is_some());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(entries_of(current.snapshot).await.len(), 1);
    }

    /// The keys a snapshot's file carries.
    async fn entries_of(file: Box<SnapshotFile>) -> Vec<crate::KeyValue> {
        let mut file = file.into_std().await;
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        snapshot_file::read(file, |piece| {
            all.extend(piece);
            Ok(())
        })
        .unwrap();
        all
    }

    /// A snapshot of several pieces installs into a new generation of the group's tree, which
    /// replaces the old one (dropped) and is the one the group opens with afterwards.
    #[tokio::test]
    async fn a_snapshot_installs_into_a_new_generation() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src_store = Store::open(&StoreConfig::new(src_dir.path())).unwrap();
        let dst_store = Store::open(&StoreConfig::new(dst_dir.path())).unwrap();
        let mut src = StateMachineStore::open(&src_store, 4, Arc::new(Echo)).unwrap();
        let mut dst = StateMachineStore::open(&dst_store, 4, Arc::new(Echo)).unwrap();
        // 3,000 keys of 1 KiB: three pieces.
        let big = vec![b'x'; 1024];
        for i in 0..3_000u64 {
            let mut key = i.to_be_bytes().to_vec();
            key.extend_from_slice(&big);
            src.apply([entry(i + 1, &key)]).await.unwrap();
        }
        dst.apply([entry(1, b"only-here")]).await.unwrap();
        src.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let snapshot = src.get_current_snapshot().await.unwrap().unwrap();
        let mut copy = dst.begin_receiving_snapshot().await.unwrap();
        let mut from = snapshot.snapshot.into_std().await;
        from.seek(SeekFrom::Start(0)).unwrap();
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes).unwrap();
        assert!(bytes.len() > 2 * snapshot_file::PIECE_BYTES);
        tokio::io::AsyncWriteExt::write_all(&mut copy, &bytes)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut copy).await.unwrap();
        dst.install_snapshot(&snapshot.meta, copy).await.unwrap();
        assert_eq!(dst.generation, 1);
        let reader = dst.reader();
        assert_eq!(reader.get(b"only-here").unwrap(), None);
        let mut probe = 2_999u64.to_be_bytes().to_vec();
        probe.extend_from_slice(&big);
        assert_eq!(reader.get(&probe).unwrap(), Some(probe.clone()));
        assert!(!dst_store.group_tree_exists(4, &tree_kind(0)));
        drop(dst);
        let dst = StateMachineStore::open(&dst_store, 4, Arc::new(Echo)).unwrap();
        assert_eq!(dst.generation, 1);
        assert_eq!(dst.applied, Some(log_id(3_000)));
        assert_eq!(dst.reader().get(&probe).unwrap(), Some(probe));
        assert_eq!(dst_store.groups(), vec![4]);
    }

    /// An install that stopped half way (a crash while the new generation filled) leaves the
    /// group as it was: opening drops the partly filled tree.
    #[tokio::test]
    async fn an_interrupted_install_leaves_the_group_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        sm.apply([entry(1, b"kept")]).await.unwrap();
        drop(sm);
        let partial = store.group_tree(4, &tree_kind(1)).unwrap();
        partial
            .insert(data_key(b"half"), record::frame(b"half"))
            .unwrap();
        let sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        assert_eq!(sm.generation, 0);
        assert_eq!(sm.reader().get(b"kept").unwrap(), Some(b"kept".to_vec()));
        assert_eq!(sm.reader().get(b"half").unwrap(), None);
        assert!(!store.group_tree_exists(4, &tree_kind(1)));
    }

    /// A snapshot stored whole by an earlier build becomes the mark when the group opens: its
    /// metadata is kept and its copy of the keys removed.
    #[tokio::test]
    async fn legacy_snapshot_becomes_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        sm.apply([entry(1, b"k")]).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let mut meta = sm.read_mark().unwrap().unwrap();
        meta.snapshot_id = "legacy".into();
        let legacy = StoredSnapshot {
            meta: meta.clone(),
            data: Vec::new(),
        };
        sm.snap.remove(KEY_MARK).unwrap();
        sm.snap
            .insert(KEY_LEGACY_SNAPSHOT, record::encode(&legacy).unwrap())
            .unwrap();
        drop(sm);
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(Echo)).unwrap();
        assert_eq!(sm.snap.get(KEY_LEGACY_SNAPSHOT).unwrap(), None);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
        assert_eq!(entries_of(current.snapshot).await.len(), 1);
    }

    /// Echo, with every key tracked by the group's absent-key filter.
    struct TrackedEcho;

    impl Applier for TrackedEcho {
        fn apply(
            &self,
            ctx: &ApplyContext,
            kv: &mut KvBatch<'_>,
            command: &[u8],
        ) -> Result<Vec<u8>, StoreError> {
            Echo.apply(ctx, kv, command)
        }

        fn absent_keys(&self) -> Option<crate::absent::Tracked> {
            Some(crate::absent::Tracked {
                keys: |_| true,
                logical: None,
            })
        }
    }

    fn keys_of(prefix: &str, n: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{prefix}{i}").into_bytes())
            .collect()
    }

    async fn apply_all(sm: &mut StateMachineStore, first_index: u64, keys: &[Vec<u8>]) {
        for (i, key) in keys.iter().enumerate() {
            sm.apply([entry(first_index + i as u64, key)])
                .await
                .unwrap();
        }
    }

    fn reads_exactly(sm: &StateMachineStore, present: &[Vec<u8>], absent: &[Vec<u8>]) {
        let reader = sm.reader();
        for key in present {
            assert_eq!(reader.get(key).unwrap().as_deref(), Some(key.as_slice()));
        }
        for key in absent {
            assert_eq!(reader.get(key).unwrap(), None);
        }
    }

    fn filter_complete(sm: &StateMachineStore) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sm.view.absent.absent(b"never written") {
            assert!(
                std::time::Instant::now() < deadline,
                "the filter's scan never ended"
            );
            std::thread::yield_now();
        }
    }

    /// Tracked keys are read as stored whether they are pending, in sled, in sled when the
    /// group reopens (while its filter is still scanning and after), or brought by a snapshot.
    #[tokio::test]
    async fn tracked_keys_are_never_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let written = keys_of("k", 2 * FLUSH_KEYS as u64);
        let never = keys_of("never", 100);
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let mut sm = StateMachineStore::open(&store, 4, Arc::new(TrackedEcho)).unwrap();
            filter_complete(&sm);
            apply_all(&mut sm, 1, &written).await;
            reads_exactly(&sm, &written, &never);
            drop(sm);
            store.flush().await.unwrap();
        }
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut sm = StateMachineStore::open(&store, 4, Arc::new(TrackedEcho)).unwrap();
        reads_exactly(&sm, &written, &never);
        filter_complete(&sm);
        reads_exactly(&sm, &written, &never);
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();

        // Another replica, with keys of its own, installs the snapshot: it reads the snapshot's
        // keys, and its own are gone.
        let other_dir = tempfile::tempdir().unwrap();
        let other_store = Store::open(&StoreConfig::new(other_dir.path())).unwrap();
        let mut other = StateMachineStore::open(&other_store, 4, Arc::new(TrackedEcho)).unwrap();
        let own = keys_of("own", 50);
        apply_all(&mut other, 1, &own).await;
        other.begin_receiving_snapshot().await.unwrap();
        other
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        reads_exactly(&other, &written, &own);
        filter_complete(&other);
        reads_exactly(&other, &written, &own);
        let after = keys_of("after", 10);
        apply_all(&mut other, 10_000, &after).await;
        reads_exactly(&other, &after, &never);
    }

    /// A redo record older than the applied position (a snapshot's, which also removes the
    /// record) is not replayed.
    #[test]
    fn completed_redo_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let tree = store.group_tree(4, "sm").unwrap();
            let redo = LegacyRedo {
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
