//! The node's Raft log: one append-only write-ahead log that every group of the node writes to,
//! made durable with `fdatasync` by one group-commit thread.
//!
//! Why not sled: sled makes data durable with `sync_file_range`, which flushes neither the
//! file's metadata nor the disk's write cache, so an acknowledged write could be lost with the
//! power. Every log entry also cost a B-tree insert (a copy of its leaf, a node split every few
//! entries) and every group commit sealed one of sled's I/O buffers. A log is only ever appended
//! at its end, truncated at its end and purged at its start: a file does that with one `pwrite`
//! per append and one `fdatasync` per group commit, however many groups wrote.
//!
//! Layout: `<data dir>/raft-log/<segment id>.wal`, each a sequence of
//! `[length: u32 LE][CRC32 of the length][record]` where the record is a [`WalRecord`] framed
//! by [`crate::record`] (format byte, CRC32, bincode 2), then zeros (the segment is filled ahead
//! of its end). Replay on open rebuilds each group's index (where each entry is, its vote,
//! committed and purged ids). A torn record at the end of the newest segment (a crash in the
//! middle of an append that was never acknowledged) is cut off; any other bad record is
//! corruption and refuses to open (see `unfinished`).
//!
//! A segment is rotated at [`SEGMENT_BYTES`]; the new one starts with each group's vote,
//! committed and purge point, so older segments only matter for their entries. Segments are
//! deleted oldest first once every entry in them is purged (after a sync, so the purge that
//! allowed it is durable before the entries go).
//!
//! Failure: a write or `fdatasync` error stops the log for good (every later call fails): after
//! a failed `fdatasync` the page cache can no longer be trusted to match the disk.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::{RaftLogId, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::{FlushCallback, FlushStats, FLUSH_BUSY_WINDOW};
use crate::types::{Entry, LogId};
use crate::{record, GroupId, NodeId, StoreError};

/// A segment is closed and a new one started once it is this large. A segment is deleted only
/// whole, so this is the grain of the log's disk use: a group's few unpurged entries can keep
/// one segment's worth. (64 MiB kept a soak run's log at 162 MB for about 40 MB of live
/// entries.)
pub(crate) const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
/// Capacity of the syncer's request queue; appenders wait when it is full (back-pressure).
const SYNC_QUEUE: usize = 4096;
/// The active segment is zero-filled this far ahead of its end, so that an `fdatasync` after an
/// append only writes data: appending to the end of a file changes its size, and syncing that
/// costs a second write (the inode) and, measured here, ~30 µs more CPU and ~70 µs more latency
/// per sync.
const PREALLOC_CHUNK: u64 = 1024 * 1024;
/// How long a purge waits for a snapshot install that does not finish.
const INSTALL_WAIT: Duration = Duration::from_secs(60);
/// Largest record replay accepts (an entry holds at most one batch of commands).
const MAX_RECORD: u32 = 64 * 1024 * 1024;
/// The sub-directory of the data directory that holds the segments.
pub(crate) const DIR: &str = "raft-log";
/// Most entries of a group kept decoded in memory after they are written (see
/// [`GroupLog::recent`]), and most bytes of them (their encoded size).
const RECENT_ENTRIES: usize = 1024;
const RECENT_BYTES: usize = 1024 * 1024;

/// One record of the log.
#[derive(Serialize, Deserialize)]
enum WalRecord {
    Entry {
        group: GroupId,
        entry: Entry,
    },
    Vote {
        group: GroupId,
        vote: Vote<NodeId>,
    },
    Committed {
        group: GroupId,
        committed: Option<LogId>,
    },
    /// Entries from `since` on are gone (a conflicting suffix).
    Truncate {
        group: GroupId,
        since: u64,
    },
    /// Entries up to and including `upto` are gone (covered by a snapshot).
    Purge {
        group: GroupId,
        upto: LogId,
    },
    /// The group left this node: forget it.
    Reset {
        group: GroupId,
    },
}

/// An entry's location and the segment file holding it (`None`: the segment is gone).
type Located = (Option<Arc<File>>, Loc);

/// Where one entry is.
#[derive(Clone, Copy)]
struct Loc {
    log_id: LogId,
    segment: u64,
    offset: u64,
    len: u32,
}

/// What the log knows of one group.
#[derive(Default)]
struct GroupLog {
    /// Entries, contiguous by index.
    entries: VecDeque<Loc>,
    purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    /// A snapshot is being received for this group since then: see [`Wal::purge`].
    installing: Option<Instant>,
    /// A purge asked for while a snapshot was being installed, done once it is durable.
    pending_purge: Option<LogId>,
    /// The newest entries as written, contiguous and ending at the last one: the state machine
    /// applies and the leader replicates an entry right after it is written, and they read it
    /// from here instead of reading the file back and decoding it. Bounded by
    /// [`RECENT_ENTRIES`] and [`RECENT_BYTES`]; empty after a restart.
    recent: VecDeque<(Entry, usize)>,
    /// Encoded bytes of `recent` (each entry's record length is kept beside it).
    recent_bytes: usize,
}

impl GroupLog {
    fn next_index(&self) -> u64 {
        match (self.entries.back(), &self.purged) {
            (Some(l), _) => l.log_id.index + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 0,
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|l| l.log_id).or(self.purged)
    }

    fn truncate(&mut self, since: u64) {
        while self.entries.back().is_some_and(|l| l.log_id.index >= since) {
            self.entries.pop_back();
        }
        while self
            .recent
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= since)
        {
            self.drop_recent(false);
        }
    }

    /// Drops the first (or the last) recent entry.
    fn drop_recent(&mut self, first: bool) {
        let dropped = if first {
            self.recent.pop_front()
        } else {
            self.recent.pop_back()
        };
        if let Some((_, len)) = dropped {
            self.recent_bytes -= len;
        }
    }

    fn purge(&mut self, upto: LogId) {
        while self
            .entries
            .front()
            .is_some_and(|l| l.log_id.index <= upto.index)
        {
            self.entries.pop_front();
        }
        while self
            .recent
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= upto.index)
        {
            self.drop_recent(true);
        }
        if self.purged.is_none_or(|p| p.index < upto.index) {
            self.purged = Some(upto);
        }
    }

    fn push(&mut self, loc: Loc) {
        // Written over a conflicting suffix (openraft may append over one without truncating
        // first; `Wal::append` refuses gaps): the newer one wins.
        self.truncate(loc.log_id.index);
        if self
            .recent
            .back()
            .is_some_and(|(e, _)| e.log_id.index + 1 != loc.log_id.index)
        {
            self.recent.clear();
            self.recent_bytes = 0;
        }
        self.entries.push_back(loc);
    }

    /// [`GroupLog::push`], keeping the entry itself among the recent ones.
    fn push_written(&mut self, loc: Loc, entry: Entry) {
        self.push(loc);
        self.recent.push_back((entry, loc.len as usize));
        self.recent_bytes += loc.len as usize;
        while self.recent.len() > RECENT_ENTRIES || self.recent_bytes > RECENT_BYTES {
            self.drop_recent(true);
        }
    }

    /// Index of the first recent entry.
    fn first_recent(&self) -> u64 {
        self.recent
            .front()
            .map_or(u64::MAX, |(e, _)| e.log_id.index)
    }

    /// Replays an entry record. Older segments may have been deleted once their entries were
    /// purged, and the purge point carried into a newer segment may predate that purge (it is
    /// the one at rotation time); the purge record itself comes later. So a gap is tolerated
    /// here and checked once everything is replayed ([`GroupLog::check_replayed`]).
    fn replay(&mut self, loc: Loc) {
        if loc.log_id.index > self.next_index() {
            // Nothing before it can be used: it starts the group's entries.
            self.entries.clear();
        }
        self.push(loc);
    }

    /// After replay: the entries must follow the purge point without a hole.
    fn check_replayed(&self) -> Result<(), String> {
        let Some(first) = self.entries.front().map(|l| l.log_id.index) else {
            return Ok(());
        };
        let expected = self.purged.map_or(0, |p| p.index + 1);
        if first > expected.max(1) {
            return Err(format!(
                "the log starts at entry {first} but only entries up to {} were purged",
                expected.saturating_sub(1)
            ));
        }
        Ok(())
    }

    fn position(&self, index: u64) -> Option<usize> {
        let first = self.entries.front()?.log_id.index;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        (pos < self.entries.len()).then_some(pos)
    }
}

struct Segment {
    file: Arc<File>,
    /// Highest entry index of each group written in this segment.
    max_index: HashMap<GroupId, u64>,
}

struct State {
    groups: HashMap<GroupId, GroupLog>,
    segments: BTreeMap<u64, Segment>,
    active: u64,
    active_len: u64,
    /// How far the active segment is zero-filled (its length on disk).
    allocated: u64,
    /// Set after a write or sync failure: nothing is accepted any more.
    failed: Option<String>,
    /// A purge or reset happened since the last collection of old segments.
    collect: bool,
    /// Groups whose committed id changed since it was last written: it is written with the
    /// next append (see [`Wal::save_committed`]).
    unwritten_committed: BTreeSet<GroupId>,
}

impl State {
    /// Applies a record about a group's state (not an entry), as written or as replayed.
    fn apply_note(&mut self, record: &WalRecord) {
        fn group_log(groups: &mut HashMap<GroupId, GroupLog>, group: GroupId) -> &mut GroupLog {
            groups.entry(group).or_default()
        }
        let groups = &mut self.groups;
        match record {
            WalRecord::Vote { group, vote } => group_log(groups, *group).vote = Some(*vote),
            WalRecord::Committed { group, committed } => {
                group_log(groups, *group).committed = *committed
            }
            WalRecord::Truncate { group, since } => {
                group_log(groups, *group).truncate(*since);
                forget_truncated(self.segments.values_mut(), *group, *since);
            }
            WalRecord::Purge { group, upto } => {
                group_log(groups, *group).purge(*upto);
                self.collect = true;
            }
            WalRecord::Reset { group } => {
                self.groups.remove(group);
                self.unwritten_committed.remove(group);
                for segment in self.segments.values_mut() {
                    segment.max_index.remove(group);
                }
                self.collect = true;
            }
            WalRecord::Entry { .. } => {}
        }
    }
}

/// The write-ahead log of a node. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Wal {
    inner: Arc<Inner>,
}

/// The handle's side: dropping the last [`Wal`] closes the syncer's queue and joins it, so that
/// nothing of this log runs once the handle is gone (the directory may be reopened at once).
struct Inner {
    shared: Arc<Shared>,
    sync_tx: Mutex<Option<mpsc::Sender<FlushCallback>>>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the syncer shares with the handle (the syncer never holds the handle itself).
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    stats: FlushStats,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.sync_tx.lock() {
            tx.take();
        }
        let thread = self.syncer.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("raft log syncer thread panicked");
            }
        }
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn io_err(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Wal(format!("{what} {}: {e}", path.display()))
}

impl Wal {
    /// Opens (or creates) the log under `data_dir` and replays it.
    /// `existing` says the data directory held data before: its log must be there too (a
    /// missing log would lose votes and entries, so it is refused rather than recreated).
    pub(crate) fn open(
        data_dir: &Path,
        linger: Duration,
        existing: bool,
    ) -> Result<Wal, StoreError> {
        let dir = data_dir.join(DIR);
        if !dir.is_dir() {
            if existing {
                return Err(StoreError::Wal(format!(
                    "{} is missing: the data directory has state but no raft log",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
            File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("sync", data_dir, e))?;
        }
        let mut ids = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))? {
            let item = item.map_err(|e| io_err("list", &dir, e))?;
            let name = item.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let mut state = State {
            groups: HashMap::new(),
            segments: BTreeMap::new(),
            active: 0,
            active_len: 0,
            allocated: 0,
            failed: None,
            collect: false,
            unwritten_committed: BTreeSet::new(),
        };
        for (n, id) in ids.iter().enumerate() {
            let last = n + 1 == ids.len();
            let len = replay_segment(&dir, *id, last, &mut state)?;
            if last {
                state.active = *id;
                state.active_len = len;
                state.allocated = state
                    .segments
                    .get(id)
                    .and_then(|s| s.file.metadata().ok())
                    .map_or(len, |m| m.len().max(len));
            }
        }
        if ids.is_empty() {
            let file = create_segment(&dir, 0)?;
            state.segments.insert(
                0,
                Segment {
                    file: Arc::new(file),
                    max_index: HashMap::new(),
                },
            );
        }
        for (group, g) in &state.groups {
            g.check_replayed()
                .map_err(|why| StoreError::Wal(format!("group {group}: {why}")))?;
        }
        let (sync_tx, sync_rx) = mpsc::channel(SYNC_QUEUE);
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(state),
            stats: FlushStats::default(),
        });
        let for_syncer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run_syncer(for_syncer, sync_rx, linger))
            .map_err(|e| StoreError::Wal(format!("start syncer: {e}")))?;
        Ok(Wal {
            inner: Arc::new(Inner {
                shared,
                sync_tx: Mutex::new(Some(sync_tx)),
                syncer: Mutex::new(Some(thread)),
            }),
        })
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self
            .inner
            .shared
            .state
            .lock()
            .map_err(|_| StoreError::Wal("raft log state poisoned".into()))?;
        match &state.failed {
            Some(why) => Err(StoreError::Wal(format!("raft log stopped: {why}"))),
            None => Ok(state),
        }
    }

    /// Group-commit counters.
    pub(crate) fn stats(&self) -> &FlushStats {
        &self.inner.shared.stats
    }

    /// Appends entries of one group (written, not yet durable: see [`Wal::sync_then`]).
    pub(crate) fn append(
        &self,
        group: GroupId,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut pending = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            let start = buf.len();
            let record = WalRecord::Entry { group, entry };
            push_record(&mut buf, &record)?;
            let WalRecord::Entry { entry, .. } = record else {
                unreachable!("built as an entry just above")
            };
            pending.push((log_id, start, buf.len() - start, entry));
        }
        if pending.is_empty() {
            return Ok(());
        }
        let mut state = self.state()?;
        // A batch that does not continue the group's log is refused before anything is written
        // (openraft truncates first; anything else would make the log unreadable at replay).
        let mut expect = match state.groups.get(&group) {
            Some(g) if !g.entries.is_empty() || g.purged.is_some() => Some(g.next_index()),
            _ => None,
        };
        for (n, (log_id, _, _, _)) in pending.iter().enumerate() {
            if let Some(next) = expect {
                // The first entry may overwrite a conflicting suffix; none may leave a gap.
                if log_id.index > next || (n > 0 && log_id.index != next) {
                    return Err(StoreError::Wal(format!(
                        "group {group}: entry {} does not follow {}",
                        log_id.index,
                        next.saturating_sub(1)
                    )));
                }
            }
            expect = Some(log_id.index + 1);
        }
        // Committed ids saved since the last append ride on this write, after the entries.
        for g in std::mem::take(&mut state.unwritten_committed) {
            if let Some(log) = state.groups.get(&g) {
                let record = WalRecord::Committed {
                    group: g,
                    committed: log.committed,
                };
                push_record(&mut buf, &record)?;
            }
        }
        let base = self.write(&mut state, &buf)?;
        let segment = state.active;
        for (log_id, start, len, entry) in pending {
            let loc = Loc {
                log_id,
                segment,
                offset: base + start as u64,
                len: len as u32,
            };
            state
                .groups
                .entry(group)
                .or_default()
                .push_written(loc, entry);
            let max = state
                .segments
                .get_mut(&segment)
                .map(|s| s.max_index.entry(group).or_insert(0));
            if let Some(max) = max {
                *max = (*max).max(log_id.index);
            }
        }
        Ok(())
    }

    /// Writes one record about a group's state.
    fn note(&self, record: &WalRecord) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        push_record(&mut buf, record)?;
        let mut state = self.state()?;
        self.write(&mut state, &buf)?;
        state.apply_note(record);
        Ok(())
    }

    pub(crate) fn save_vote(&self, group: GroupId, vote: Vote<NodeId>) -> Result<(), StoreError> {
        self.note(&WalRecord::Vote { group, vote })
    }

    /// Records the committed id in memory; the record reaches the file with the next append
    /// (of any group) or segment rotation, so a commit costs no write of its own. A crash may
    /// therefore lose the newest committed ids, which openraft allows: it re-applies less at
    /// restart and the rest once the entries are committed again.
    pub(crate) fn save_committed(
        &self,
        group: GroupId,
        committed: Option<LogId>,
    ) -> Result<(), StoreError> {
        let mut state = self.state()?;
        state.apply_note(&WalRecord::Committed { group, committed });
        state.unwritten_committed.insert(group);
        Ok(())
    }

    pub(crate) fn truncate(&self, group: GroupId, since: u64) -> Result<(), StoreError> {
        self.note(&WalRecord::Truncate { group, since })
    }

    /// Purges entries up to `upto`. While a snapshot is being installed the purge waits for
    /// the install to be durable ([`Wal::end_install`]): openraft asks for it as soon as it
    /// hands the snapshot to the state machine, and a purge that reached the disk before the
    /// installed state would leave, after a crash, a state machine behind a log without the
    /// entries to catch up. An install that never finishes stops deferring after a minute.
    pub(crate) fn purge(&self, group: GroupId, upto: LogId) -> Result<(), StoreError> {
        {
            let mut state = self.state()?;
            let g = state.groups.entry(group).or_default();
            if g.installing.is_some_and(|t| t.elapsed() < INSTALL_WAIT) {
                if g.pending_purge.is_none_or(|p| p.index < upto.index) {
                    g.pending_purge = Some(upto);
                }
                return Ok(());
            }
            g.installing = None;
        }
        self.note(&WalRecord::Purge { group, upto })
    }

    /// A snapshot for `group` started to arrive.
    pub(crate) fn begin_install(&self, group: GroupId) -> Result<(), StoreError> {
        let mut state = self.state()?;
        state.groups.entry(group).or_default().installing = Some(Instant::now());
        Ok(())
    }

    /// The snapshot being installed for `group` is durable (or the install ended): do the
    /// purge it held back.
    pub(crate) fn end_install(&self, group: GroupId) -> Result<(), StoreError> {
        let pending = {
            let mut state = self.state()?;
            let g = state.groups.entry(group).or_default();
            g.installing = None;
            g.pending_purge.take()
        };
        match pending {
            Some(upto) => self.purge(group, upto),
            None => Ok(()),
        }
    }

    /// Forgets a group (its replica left this node).
    pub(crate) fn reset(&self, group: GroupId) -> Result<(), StoreError> {
        self.note(&WalRecord::Reset { group })
    }

    /// The vote, committed id, last purged and last log id of a group.
    pub(crate) fn group_state(&self, group: GroupId) -> Result<GroupSummary, StoreError> {
        let state = self.state()?;
        Ok(match state.groups.get(&group) {
            Some(g) => GroupSummary {
                vote: g.vote,
                committed: g.committed,
                purged: g.purged,
                last: g.last_log_id(),
            },
            None => GroupSummary::default(),
        })
    }

    /// Groups with any state in the log.
    pub(crate) fn groups(&self) -> Result<Vec<GroupId>, StoreError> {
        Ok(self.state()?.groups.keys().copied().collect())
    }

    /// Groups whose live entries keep segments older than the newest `keep` from being deleted,
    /// each with the highest index that would have to be purged to release them. A quiet group
    /// snapshots rarely (by entry count), so without help its few entries would keep every
    /// segment written since its oldest one.
    pub(crate) fn groups_pinning(&self, keep: u64) -> Result<Vec<(GroupId, u64)>, StoreError> {
        let state = self.state()?;
        let horizon = state.active.saturating_sub(keep);
        let mut pins: HashMap<GroupId, u64> = HashMap::new();
        for (_, segment) in state.segments.range(..horizon) {
            for (group, max) in &segment.max_index {
                let live = state
                    .groups
                    .get(group)
                    .is_some_and(|g| g.purged.is_none_or(|p| p.index < *max));
                if live {
                    let pin = pins.entry(*group).or_insert(0);
                    *pin = (*pin).max(*max);
                }
            }
        }
        let mut out: Vec<_> = pins.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Entries of a group with `start <= index < end` that the log holds, in order.
    pub(crate) fn read(
        &self,
        group: GroupId,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        // Entries before the recent ones are read from their segments; the rest are copied.
        let (locs, cached): (Vec<Located>, Vec<Entry>) = {
            let state = self.state()?;
            let Some(g) = state.groups.get(&group) else {
                return Ok(Vec::new());
            };
            let first = g.entries.front().map_or(u64::MAX, |l| l.log_id.index);
            let from = g.position(start.max(first)).unwrap_or(g.entries.len());
            let first_recent = g.first_recent();
            let locs = g
                .entries
                .iter()
                .skip(from)
                .take_while(|l| l.log_id.index < end.min(first_recent))
                .map(|l| (state.segments.get(&l.segment).map(|s| s.file.clone()), *l))
                .collect();
            // The recent entries have consecutive indexes: the first wanted one is found by
            // its distance from the front, not by a scan (reads are one per apply).
            let skip = usize::try_from(start.saturating_sub(first_recent)).unwrap_or(usize::MAX);
            let cached = g
                .recent
                .range(skip.min(g.recent.len())..)
                .map(|(e, _)| e)
                .take_while(|e| e.log_id.index < end)
                .cloned()
                .collect();
            (locs, cached)
        };
        let mut out = Vec::with_capacity(locs.len() + cached.len());
        let mut raw = Vec::new();
        for (file, loc) in locs {
            let file = file.ok_or_else(|| {
                StoreError::Wal(format!(
                    "segment {} of entry {} is missing",
                    loc.segment, loc.log_id.index
                ))
            })?;
            raw.resize(loc.len as usize, 0);
            file.read_exact_at(&mut raw, loc.offset)
                .map_err(|e| StoreError::Wal(format!("read segment {}: {e}", loc.segment)))?;
            match record::decode::<WalRecord>(&raw[HEADER..])? {
                WalRecord::Entry { entry, .. } if entry.log_id == loc.log_id => out.push(entry),
                _ => {
                    return Err(StoreError::Wal(format!(
                        "segment {} offset {}: not entry {}",
                        loc.segment, loc.offset, loc.log_id.index
                    )))
                }
            }
        }
        out.extend(cached);
        Ok(out)
    }

    /// Queues `done` to run once everything written before this call is durable.
    pub(crate) async fn sync_then(&self, done: FlushCallback) -> Result<(), StoreError> {
        let tx = self
            .inner
            .sync_tx
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .ok_or(StoreError::FlusherStopped)?;
        tx.send(done).await.map_err(|_| StoreError::FlusherStopped)
    }

    /// Makes everything written so far durable on the calling thread (for blocking callers;
    /// the write path goes through the syncer).
    pub(crate) fn sync_now(&self) -> Result<(), StoreError> {
        let doomed = sync_active(&self.inner.shared).map_err(StoreError::Wal)?;
        delete_segments(&self.inner.shared, doomed);
        Ok(())
    }

    /// Waits until everything written before this call is durable.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sync_then(Box::new(move |res| {
            let _ignored_if_caller_gone = tx.send(res);
        }))
        .await?;
        match rx.await {
            Ok(res) => res.map_err(|e| StoreError::Wal(format!("sync: {e}"))),
            Err(_) => Err(StoreError::FlusherStopped),
        }
    }

    /// Writes `buf` at the end of the active segment (rotating first when it is full) and
    /// returns the offset it was written at.
    fn write(&self, state: &mut State, buf: &[u8]) -> Result<u64, StoreError> {
        if state.active_len > 0 && state.active_len + buf.len() as u64 > SEGMENT_BYTES {
            self.rotate(state)?;
        }
        let offset = state.active_len;
        let file = match state.segments.get(&state.active) {
            Some(s) => s.file.clone(),
            None => return Err(StoreError::Wal("active segment missing".into())),
        };
        let end = offset + buf.len() as u64;
        if end > state.allocated {
            // The syncer did not get ahead (a burst, or a new segment): fill here.
            let target = end.div_ceil(PREALLOC_CHUNK) * PREALLOC_CHUNK;
            extend(state, &file, target).inspect_err(|e| crate::fatal::failed(&e.to_string()))?;
        }
        if let Err(e) = file.write_all_at(buf, offset) {
            let why = format!("write segment {}: {e}", state.active);
            tracing::error!(error = %why, "raft log write failed; the log stops");
            state.failed = Some(why.clone());
            crate::fatal::failed(&why);
            return Err(StoreError::Wal(why));
        }
        state.active_len += buf.len() as u64;
        Ok(offset)
    }

    /// Closes the active segment (synced, so that only the newest segment can have a torn tail)
    /// and starts the next with every group's vote, committed id and purge point.
    fn rotate(&self, state: &mut State) -> Result<(), StoreError> {
        // Any failure half-way stops the log: a half-made next segment must not sit behind
        // records still written to this one.
        self.try_rotate(state).inspect_err(|e| {
            tracing::error!(error = %e, "raft log rotation failed; the log stops");
            state.failed = Some(e.to_string());
            crate::fatal::failed(&e.to_string());
        })
    }

    fn try_rotate(&self, state: &mut State) -> Result<(), StoreError> {
        if let Some(current) = state.segments.get(&state.active) {
            current
                .file
                .sync_data()
                .map_err(|e| StoreError::Wal(format!("sync segment {}: {e}", state.active)))?;
        }
        let next = state.active + 1;
        let file = create_segment(&self.inner.shared.dir, next)?;
        let mut buf = Vec::new();
        for (group, g) in &state.groups {
            let group = *group;
            if let Some(vote) = g.vote {
                push_record(&mut buf, &WalRecord::Vote { group, vote })?;
            }
            if g.committed.is_some() {
                push_record(
                    &mut buf,
                    &WalRecord::Committed {
                        group,
                        committed: g.committed,
                    },
                )?;
            }
            if let Some(upto) = g.purged {
                push_record(&mut buf, &WalRecord::Purge { group, upto })?;
            }
        }
        file.write_all_at(&buf, 0)
            .map_err(|e| StoreError::Wal(format!("write segment {next}: {e}")))?;
        state.segments.insert(
            next,
            Segment {
                file: Arc::new(file),
                max_index: HashMap::new(),
            },
        );
        state.active = next;
        state.active_len = buf.len() as u64;
        state.allocated = buf.len() as u64;
        state.collect = true;
        Ok(())
    }
}

/// A group's log state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GroupSummary {
    pub(crate) vote: Option<Vote<NodeId>>,
    pub(crate) committed: Option<LogId>,
    pub(crate) purged: Option<LogId>,
    pub(crate) last: Option<LogId>,
}

/// Zero-fills the active segment from `state.allocated` to `target`. A failure stops the log.
fn extend(state: &mut State, file: &File, target: u64) -> Result<(), StoreError> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut at = state.allocated;
    while at < target {
        let n = (target - at).min(ZEROS.len() as u64) as usize;
        if let Err(e) = file.write_all_at(&ZEROS[..n], at) {
            let why = format!("preallocate segment {}: {e}", state.active);
            tracing::error!(error = %why, "raft log write failed; the log stops");
            state.failed = Some(why.clone());
            return Err(StoreError::Wal(why));
        }
        at += n as u64;
    }
    state.allocated = target;
    Ok(())
}

/// After a sync: zero-fill the next chunk of the active segment when appends are getting close
/// to the end of what is filled, so that they keep overwriting instead of extending the file.
/// The fill is written under the log's lock (no append can race it) and made durable by the
/// next sync.
fn prepare_ahead(inner: &Shared) {
    let Ok(mut state) = inner.state.lock() else {
        return;
    };
    if state.failed.is_some()
        || state.allocated.saturating_sub(state.active_len) >= PREALLOC_CHUNK / 2
    {
        return;
    }
    let Some(file) = state.segments.get(&state.active).map(|s| s.file.clone()) else {
        return;
    };
    let target = (state.active_len.div_ceil(PREALLOC_CHUNK) + 1) * PREALLOC_CHUNK;
    if target.saturating_sub(state.active_len) > SEGMENT_BYTES {
        return;
    }
    // Nothing acknowledged depends on this fill: a failure only means the next append fills.
    let before = state.failed.clone();
    if let Err(e) = extend(&mut state, &file, target) {
        tracing::warn!(error = %e, "cannot zero-fill the raft log ahead; appends will");
        state.failed = before;
    }
}

/// Entries of `group` from `since` on are gone: segments no longer hold live entries of it
/// beyond `since - 1` (their highest index is lowered, so a truncated suffix does not keep a
/// segment, or make a quiet group look as if it pinned one).
fn forget_truncated<'a>(
    segments: impl Iterator<Item = &'a mut Segment>,
    group: GroupId,
    since: u64,
) {
    for segment in segments {
        if let Some(max) = segment.max_index.get_mut(&group) {
            if *max >= since {
                match since.checked_sub(1) {
                    Some(last) => *max = last,
                    None => {
                        segment.max_index.remove(&group);
                    }
                }
            }
        }
    }
}

/// Bytes in front of each record: its length and the length's CRC32 (so a damaged length is
/// never mistaken for a record that runs past the end of the file).
const HEADER: usize = 8;

fn push_record(buf: &mut Vec<u8>, record: &WalRecord) -> Result<(), StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    let framed = match record::encode_into(buf, record) {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    };
    let len = (framed as u32).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + HEADER].copy_from_slice(&crc32fast::hash(&len).to_le_bytes());
    Ok(())
}

/// The length a record header at `at` announces, if the header is whole and its CRC matches.
fn header_len(data: &[u8], at: usize) -> Option<u32> {
    let h = data.get(at..at + HEADER)?;
    let len = [h[0], h[1], h[2], h[3]];
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (crc32fast::hash(&len) == crc).then(|| u32::from_le_bytes(len))
}

fn create_segment(dir: &Path, id: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io_err("create", &path, e))?;
    // The new name must survive a crash as well as the data written into it.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync", dir, e))?;
    Ok(file)
}

/// Replays one segment into `state`; returns the length of its valid prefix.
fn replay_segment(dir: &Path, id: u64, last: bool, state: &mut State) -> Result<u64, StoreError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("open", &path, e))?;
    let data = std::fs::read(&path).map_err(|e| io_err("read", &path, e))?;
    let file = Arc::new(file);
    state.segments.insert(
        id,
        Segment {
            file: file.clone(),
            max_index: HashMap::new(),
        },
    );
    let mut at = 0usize;
    let torn = loop {
        if at == data.len() {
            break None;
        }
        if data[at..].iter().all(|b| *b == 0) {
            // The zero-filled space ahead of the last append.
            break None;
        }
        let Some(len) = header_len(&data, at) else {
            break Some("a damaged or truncated record header".to_string());
        };
        if len == 0 || len > MAX_RECORD {
            break Some(format!("a record length of {len}"));
        }
        let Some(raw) = data.get(at + HEADER..at + HEADER + len as usize) else {
            break Some("a truncated record".to_string());
        };
        let record = match record::decode::<WalRecord>(raw) {
            Ok(r) => r,
            Err(e) => break Some(e.to_string()),
        };
        let total = HEADER as u32 + len;
        if let WalRecord::Entry { group, entry } = &record {
            let loc = Loc {
                log_id: entry.log_id,
                segment: id,
                offset: at as u64,
                len: total,
            };
            state.groups.entry(*group).or_default().replay(loc);
            if let Some(segment) = state.segments.get_mut(&id) {
                let max = segment.max_index.entry(*group).or_insert(0);
                *max = (*max).max(entry.log_id.index);
            }
        } else {
            state.apply_note(&record);
        }
        at += total as usize;
    };
    if let Some(why) = torn {
        if !last || !unfinished(&data, at) {
            return Err(StoreError::Wal(format!(
                "{} is corrupt at offset {at} ({why}): not an interrupted last append",
                path.display()
            )));
        }
        // An append that was interrupted before it was acknowledged: cut it off.
        tracing::warn!(
            segment = %path.display(),
            offset = at,
            why,
            "raft log ends in a torn record; truncating it"
        );
        file.set_len(at as u64)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_err("truncate", &path, e))?;
    }
    Ok(at as u64)
}

/// Whether the bad record at `at` (in the newest segment) is an append the crash interrupted
/// rather than damage. A write that never completed leaves whole disk sectors unwritten, and
/// the segment is zero-filled ahead of its end, so such a record runs past the end of the file
/// or has an unwritten sector: its first piece (up to a sector boundary) all zeros, or a later
/// sector of it zero from its start to the end of that sector. Bit rot does neither (and the
/// length is checksummed, so a damaged length cannot make a record look longer than the file):
/// a record damaged otherwise may have been acknowledged, and the node refuses to start. (This
/// is etcd's rule for torn WAL entries.)
fn unfinished(data: &[u8], at: usize) -> bool {
    const SECTOR: usize = 512;
    if data.len() < at + HEADER {
        return true;
    }
    let end = match header_len(data, at) {
        Some(len) if len > 0 && len <= MAX_RECORD => at + HEADER + len as usize,
        // A header that does not check: only its own piece can tell.
        _ => at + HEADER,
    };
    if end > data.len() {
        return true;
    }
    let mut start = at;
    while start < end {
        let sector_end = (start / SECTOR + 1) * SECTOR;
        // The first piece may share its sector with the record before it; later pieces start
        // a sector and are checked to its end, which nothing else can have written.
        let stop = if start == at {
            sector_end.min(end)
        } else {
            sector_end.min(data.len())
        };
        if data[start..stop].iter().all(|b| *b == 0) {
            return true;
        }
        start = sector_end;
    }
    false
}

/// The oldest segments whose entries are all purged (or belong to groups that left), never
/// the active one: a prefix of the segments, so that replay never meets a hole.
fn dead_segments(state: &State) -> Vec<u64> {
    let mut dead = Vec::new();
    for (id, segment) in &state.segments {
        if *id >= state.active {
            break;
        }
        let purged = segment.max_index.iter().all(|(group, max)| {
            state
                .groups
                .get(group)
                .is_none_or(|g| g.purged.is_some_and(|p| p.index >= *max))
        });
        if !purged {
            break;
        }
        dead.push(*id);
    }
    dead
}

/// Deletes segments found dead before a sync that has since completed (so the purges and resets
/// that made them dead are durable), oldest first, stopping at the first that cannot be deleted.
fn delete_segments(shared: &Shared, doomed: Vec<u64>) {
    let mut deleted = Vec::new();
    for id in doomed {
        let path = segment_path(&shared.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => deleted.push(id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => deleted.push(id),
            Err(e) => {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete a purged raft log segment");
                break;
            }
        }
    }
    if let Ok(mut state) = shared.state.lock() {
        for id in &deleted {
            state.segments.remove(id);
        }
    }
}

/// The syncer thread: one `fdatasync` of the active segment covers every request queued while
/// the previous one ran (and, under load, during a short linger).
fn run_syncer(shared: Arc<Shared>, mut rx: mpsc::Receiver<FlushCallback>, linger: Duration) {
    let mut last_sync: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        if !linger.is_zero() && last_sync.is_some_and(|t| t.elapsed() < FLUSH_BUSY_WINDOW) {
            std::thread::sleep(linger);
        }
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let started = Instant::now();
        let result = sync_active(&shared);
        last_sync = Some(Instant::now());
        shared
            .stats
            .sync_seconds
            .observe(started.elapsed().as_secs_f64());
        shared.stats.flushes.fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for done in batch {
            done(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| io::Error::other(e.clone())),
            );
        }
        if let Ok(doomed) = result {
            prepare_ahead(&shared);
            if !doomed.is_empty() {
                delete_segments(&shared, doomed);
            }
        }
    }
}

/// `fdatasync` of the active segment; a failure stops the log. Returns the segments that were
/// dead before the sync started: everything that made them dead was written before it, so it
/// is durable once the sync returns (segments before the active one were synced when closed).
fn sync_active(shared: &Shared) -> Result<Vec<u64>, String> {
    let (file, id, doomed) = {
        let mut state = shared
            .state
            .lock()
            .map_err(|_| "raft log state poisoned".to_string())?;
        if let Some(why) = &state.failed {
            return Err(format!("raft log stopped: {why}"));
        }
        let doomed = if std::mem::take(&mut state.collect) {
            dead_segments(&state)
        } else {
            Vec::new()
        };
        match state.segments.get(&state.active) {
            Some(s) => (s.file.clone(), state.active, doomed),
            None => return Err("active segment missing".into()),
        }
    };
    if let Err(e) = file.sync_data() {
        let why = format!("fdatasync of segment {id}: {e}");
        tracing::error!(error = %why, "raft log sync failed; the log stops");
        if let Ok(mut state) = shared.state.lock() {
            state.failed = Some(why.clone());
        }
        crate::fatal::failed(&why);
        return Err(why);
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64, body: &str) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(crate::Command(body.as_bytes().to_vec().into())),
        }
    }

    /// Segments are deleted by the syncer just after it acknowledges a sync.
    fn wait_gone(path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while path.exists() {
            assert!(Instant::now() < deadline, "{} still exists", path.display());
            std::thread::yield_now();
        }
    }

    fn indexes(wal: &Wal, group: GroupId) -> Vec<u64> {
        wal.read(group, 0, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn groups_share_one_log_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=3).map(|i| entry(1, i, "a"))).unwrap();
            wal.append(2, (1..=2).map(|i| entry(1, i, "b"))).unwrap();
            wal.append(1, [entry(1, 4, "a")]).unwrap();
            wal.save_vote(1, Vote::new(3, 1)).unwrap();
            wal.save_committed(2, Some(LogId::new(CommittedLeaderId::new(1, 1), 2)))
                .unwrap();
            assert_eq!(
                wal.group_state(2).unwrap().committed.map(|l| l.index),
                Some(2)
            );
            // The committed id reaches the file with the next append, of any group.
            wal.append(1, [entry(1, 5, "a")]).unwrap();
            // One saved after the last append is not written (openraft re-applies less).
            wal.save_committed(1, Some(LogId::new(CommittedLeaderId::new(1, 1), 5)))
                .unwrap();
            wal.sync().await.unwrap();
        }
        // Appends overwrite zero-filled space instead of growing the file.
        let len = std::fs::metadata(segment_path(&dir.path().join(DIR), 0))
            .unwrap()
            .len();
        assert!(len >= PREALLOC_CHUNK && len % PREALLOC_CHUNK == 0, "{len}");
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(indexes(&wal, 1), vec![1, 2, 3, 4, 5]);
        assert_eq!(indexes(&wal, 2), vec![1, 2]);
        assert_eq!(wal.read(1, 2, 4).unwrap().len(), 2);
        let one = wal.group_state(1).unwrap();
        assert_eq!(one.vote, Some(Vote::new(3, 1)));
        assert_eq!(one.last.map(|l| l.index), Some(5));
        assert_eq!(one.committed, None);
        assert_eq!(
            wal.group_state(2).unwrap().committed.map(|l| l.index),
            Some(2)
        );
    }

    /// What a read answers from the recent entries is what the file holds: the same entries
    /// through appends, a truncated and rewritten suffix, a purge and more entries than the
    /// cache keeps, read before and after a reopen (which starts with no recent entries).
    #[tokio::test]
    async fn recent_entries_read_as_the_file_does() {
        fn bodies(wal: &Wal, start: u64, end: u64) -> Vec<(u64, u64, Vec<u8>)> {
            wal.read(1, start, end)
                .unwrap()
                .into_iter()
                .map(|e| match e.payload {
                    EntryPayload::Normal(c) => {
                        (e.log_id.leader_id.term, e.log_id.index, c.0.to_vec())
                    }
                    _ => panic!("not a normal entry"),
                })
                .collect()
        }
        let dir = tempfile::tempdir().unwrap();
        let total = RECENT_ENTRIES as u64 + 300;
        let ranges = [(0, u64::MAX), (1, 3), (250, 260), (total - 5, total + 5)];
        let before: Vec<_> = {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=8).map(|i| entry(1, i, &format!("a{i}"))))
                .unwrap();
            wal.truncate(1, 6).unwrap();
            wal.append(1, (6..=total).map(|i| entry(2, i, &format!("b{i}"))))
                .unwrap();
            wal.purge(1, LogId::new(CommittedLeaderId::new(1, 1), 2))
                .unwrap();
            {
                let state = wal.state().unwrap();
                let g = &state.groups[&1];
                assert_eq!(g.recent.len(), RECENT_ENTRIES);
                assert_eq!(
                    g.recent_bytes,
                    g.recent.iter().map(|(_, n)| n).sum::<usize>()
                );
                assert_eq!(g.first_recent(), total - RECENT_ENTRIES as u64 + 1);
            }
            wal.sync().await.unwrap();
            ranges.iter().map(|&(a, b)| bodies(&wal, a, b)).collect()
        };
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert!(wal.state().unwrap().groups[&1].recent.is_empty());
        let after: Vec<_> = ranges.iter().map(|&(a, b)| bodies(&wal, a, b)).collect();
        assert_eq!(before, after);
        assert_eq!(before[0].len() as u64, total - 2);
        assert_eq!(before[1], vec![]);
        assert_eq!(before[0][2], (1, 5, b"a5".to_vec()));
        assert_eq!(before[0][3], (2, 6, b"b6".to_vec()));
    }

    #[tokio::test]
    async fn truncate_purge_and_reset_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=6).map(|i| entry(1, i, "x"))).unwrap();
            wal.truncate(1, 5).unwrap();
            wal.append(1, [entry(2, 5, "y")]).unwrap();
            wal.purge(1, LogId::new(CommittedLeaderId::new(1, 1), 2))
                .unwrap();
            wal.append(3, [entry(1, 1, "z")]).unwrap();
            wal.reset(3).unwrap();
            wal.sync().await.unwrap();
        }
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(indexes(&wal, 1), vec![3, 4, 5]);
        let read = wal.read(1, 5, 6).unwrap();
        assert_eq!(read[0].log_id.leader_id.term, 2);
        let state = wal.group_state(1).unwrap();
        assert_eq!(state.purged.map(|l| l.index), Some(2));
        assert!(!wal.groups().unwrap().contains(&3));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_corruption_elsewhere_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(4000);
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=2).map(|i| entry(1, i, "abc"))).unwrap();
            wal.append(1, [entry(1, 3, &big)]).unwrap();
            wal.sync().await.unwrap();
        }
        let seg = segment_path(&dir.path().join(DIR), 0);
        let mut data = std::fs::read(&seg).unwrap();
        // The third record starts after the first two.
        let mut at = 0;
        for _ in 0..2 {
            at += HEADER + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        }
        // A crash while writing it: one of its sectors never reached the disk.
        let sector = (at / 512 + 2) * 512;
        data[sector..sector + 512].fill(0);
        std::fs::write(&seg, &data).unwrap();
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            assert_eq!(indexes(&wal, 1), vec![1, 2]);
            // Appends continue where the valid prefix ends.
            wal.append(1, [entry(1, 3, "again")]).unwrap();
            wal.sync().await.unwrap();
        }
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(indexes(&wal, 1), vec![1, 2, 3]);
        drop(wal);

        // A flipped byte in a segment that is not the newest: refused, not skipped.
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        std::fs::write(segment_path(&dir.path().join(DIR), 1), b"").unwrap();
        let err = Wal::open(dir.path(), Duration::ZERO, false).err().unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    /// A damaged length that would make a record run past the end of the file must not pass
    /// for a torn append: the records after it were acknowledged.
    #[tokio::test]
    async fn a_damaged_length_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=3).map(|i| entry(1, i, "abc"))).unwrap();
            wal.sync().await.unwrap();
        }
        let seg = segment_path(&dir.path().join(DIR), 0);
        let mut data = std::fs::read(&seg).unwrap();
        let second = HEADER + u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
        data[second + 2] ^= 0x10; // the length now claims about a megabyte
        std::fs::write(&seg, &data).unwrap();
        let err = Wal::open(dir.path(), Duration::ZERO, true).err().unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[tokio::test]
    async fn purged_segments_are_deleted_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        wal.append(1, (1..=2).map(|i| entry(1, i, "a"))).unwrap();
        wal.save_vote(1, Vote::new(2, 1)).unwrap();
        {
            let mut state = wal.state().unwrap();
            wal.rotate(&mut state).unwrap();
        }
        wal.append(1, [entry(1, 3, "b")]).unwrap();
        wal.purge(1, LogId::new(CommittedLeaderId::new(1, 1), 2))
            .unwrap();
        wal.sync().await.unwrap();
        wait_gone(&segment_path(&dir.path().join(DIR), 0));
        drop(wal);
        // The vote was carried into the new segment.
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(wal.group_state(1).unwrap().vote, Some(Vote::new(2, 1)));
        assert_eq!(indexes(&wal, 1), vec![3]);
    }

    /// The purge point carried into a segment at rotation is older than the purge that later
    /// lets the previous segment go: replay must accept the gap the purge record then covers.
    #[tokio::test]
    async fn reopen_after_old_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let id = |i| LogId::new(CommittedLeaderId::new(1, 1), i);
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=4).map(|i| entry(1, i, "a"))).unwrap();
            wal.purge(1, id(1)).unwrap();
            {
                let mut state = wal.state().unwrap();
                wal.rotate(&mut state).unwrap();
            }
            wal.append(1, [entry(1, 5, "b")]).unwrap();
            wal.purge(1, id(4)).unwrap();
            wal.sync().await.unwrap();
            wait_gone(&segment_path(&dir.path().join(DIR), 0));
        }
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(indexes(&wal, 1), vec![5]);
        assert_eq!(wal.group_state(1).unwrap().purged, Some(id(4)));
        wal.append(1, [entry(1, 6, "c")]).unwrap();
    }

    #[tokio::test]
    async fn a_batch_that_does_not_follow_is_refused_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        {
            let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
            wal.append(1, (1..=2).map(|i| entry(1, i, "a"))).unwrap();
            assert!(wal.append(1, [entry(1, 4, "gap")]).is_err());
            assert!(wal
                .append(1, [entry(1, 3, "ok"), entry(1, 5, "gap")])
                .is_err());
            wal.sync().await.unwrap();
        }
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(indexes(&wal, 1), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_purge_waits_for_the_snapshot_being_installed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        wal.append(1, (1..=4).map(|i| entry(1, i, "a"))).unwrap();
        wal.begin_install(1).unwrap();
        wal.purge(1, LogId::new(CommittedLeaderId::new(1, 1), 3))
            .unwrap();
        assert_eq!(indexes(&wal, 1), vec![1, 2, 3, 4]);
        assert_eq!(wal.group_state(1).unwrap().purged, None);
        wal.end_install(1).unwrap();
        assert_eq!(indexes(&wal, 1), vec![4]);
        assert_eq!(wal.group_state(1).unwrap().purged.map(|l| l.index), Some(3));
    }

    #[tokio::test]
    async fn a_truncated_suffix_does_not_keep_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        wal.append(1, (1..=5).map(|i| entry(1, i, "a"))).unwrap();
        {
            let mut state = wal.state().unwrap();
            wal.rotate(&mut state).unwrap();
        }
        wal.truncate(1, 3).unwrap();
        wal.append(1, [entry(2, 3, "b")]).unwrap();
        assert_eq!(wal.groups_pinning(0).unwrap(), vec![(1, 2)]);
        wal.purge(1, LogId::new(CommittedLeaderId::new(1, 1), 2))
            .unwrap();
        wal.sync().await.unwrap();
        wait_gone(&segment_path(&dir.path().join(DIR), 0));
        drop(wal);
        let wal = Wal::open(dir.path(), Duration::ZERO, true).unwrap();
        assert_eq!(indexes(&wal, 1), vec![3]);
    }

    #[tokio::test]
    async fn quiet_groups_that_pin_old_segments_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), Duration::ZERO, false).unwrap();
        // Group 1 is busy and purges; group 2 wrote two entries long ago.
        wal.append(2, (1..=2).map(|i| entry(1, i, "quiet")))
            .unwrap();
        for round in 0..3u64 {
            wal.append(1, [entry(1, round + 1, "busy")]).unwrap();
            let mut state = wal.state().unwrap();
            wal.rotate(&mut state).unwrap();
        }
        wal.purge(1, LogId::new(CommittedLeaderId::new(1, 1), 3))
            .unwrap();
        wal.sync().await.unwrap();
        assert!(
            segment_path(&dir.path().join(DIR), 0).exists(),
            "pinned by group 2"
        );
        assert_eq!(wal.groups_pinning(1).unwrap(), vec![(2, 2)]);
        assert_eq!(wal.groups_pinning(10).unwrap(), vec![]);
        // Once group 2 purges (after a snapshot), everything old goes.
        wal.purge(2, LogId::new(CommittedLeaderId::new(1, 1), 2))
            .unwrap();
        wal.sync().await.unwrap();
        assert!(wal.groups_pinning(0).unwrap().is_empty());
        wait_gone(&segment_path(&dir.path().join(DIR), 0));
    }
}
