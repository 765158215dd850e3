//! A node's data directory: the sled database that holds every group's state machine and
//! snapshot metadata, and the write-ahead log ([`crate::wal`]) that holds every group's Raft log.
//!
//! Layout: sled trees `g{g}.sm` (applied state, membership and the application's keys) and
//! `g{g}.snap` (the current snapshot's metadata) per group `g`, other trees (node identity,
//! ...) named by the cluster layer through [`Store::tree`], and the log's segments under `raft-log/`.
//!
//! Durability: a log append, vote or truncation is acknowledged only after the log's syncer has
//! `fdatasync`ed it; one sync covers every group's appends that queued while the previous one
//! ran (group commit). The state machines are not synced on each apply: after a crash they come
//! back at an earlier applied position (each apply is atomic, see `state_machine`) and openraft
//! applies the rest again from the log. A snapshot flushes sled before the log is purged.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::background::{Background, Job};
use crate::wal::Wal;
use crate::{GroupId, StoreError};

/// A completion to run once the data written before it is durable.
pub(crate) type FlushCallback = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Settings of a node's store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The node's data directory.
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// Under load, how long the log's syncer waits for more requests before it syncs (see
    /// [`FLUSH_BUSY_WINDOW`]); zero syncs at once.
    pub flush_linger: std::time::Duration,
    /// Nice value (0..=19) of the threads that move applied writes into sled, and of sled's
    /// I/O threads (see `background`); 0 runs them at the process's priority.
    pub background_nice: i32,
}

/// The default of [`StoreConfig::background_nice`]: the lowest priority. Measured on one core
/// at 10,000 WebSocket sends/s: p99 17–70 ms against 34–187 ms at the process's priority in
/// eight interleaved pairs, for 0–6 % more CPU per send (more preemptions; `docs/benchmarks.md`).
pub const DEFAULT_BACKGROUND_NICE: i32 = 19;

impl StoreConfig {
    /// Defaults for a data directory: a 64 MiB page cache.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            cache_capacity: 64 * 1024 * 1024,
            flush_linger: DEFAULT_FLUSH_LINGER,
            background_nice: DEFAULT_BACKGROUND_NICE,
        }
    }
}

/// Counters of the log's group commit, for benchmarks and metrics.
#[derive(Debug)]
pub struct FlushStats {
    /// `fdatasync` calls made.
    pub flushes: AtomicU64,
    /// Sync requests served (appends, votes, truncations).
    pub requests: AtomicU64,
    /// Time of each `fdatasync` of the log, in seconds.
    pub sync_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for FlushStats {
    fn default() -> Self {
        FlushStats {
            flushes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            // 50 µs .. ~1.6 s.
            sync_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16),
            ),
        }
    }
}

/// A file a restore writes into the data directory before anything else and removes once all
/// is written and durable: while it exists the directory is refused (see [`Store::open`]).
pub const RESTORE_MARKER: &str = "RESTORE-INCOMPLETE";

/// A node's open sled database. Cheap to clone; the directory is released (and its lock freed)
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Dropped first: the log's syncer is joined before sled (and its directory lock) goes.
    wal: Wal,
    /// Low-priority threads for flushes; a queued job holds a clone of the store, so they are
    /// idle by the time this drops.
    background: Background,
    db: sled::Db,
    path: PathBuf,
    /// How many times each group's trees were dropped. Dropping holds this lock, and so does
    /// every write of a state machine's pending writes ([`Store::write_group`]), so a state
    /// machine that closes after its group was dropped cannot write into the dropped trees.
    drops: Mutex<HashMap<GroupId, u64>>,
    /// Entries installed from snapshots, by group, over the store's life (see
    /// [`Store::installed_entries`]).
    installed: Mutex<HashMap<GroupId, u64>>,
}

impl Store {
    /// Opens (or creates) the data directory, replays the Raft log and starts its syncer.
    ///
    /// sled locks the directory. A previous incarnation in this process (a restart after a
    /// stop) may still be releasing it from one of sled's background threads, so a held lock
    /// is retried for up to ten seconds before giving up.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        if config.path.join(RESTORE_MARKER).exists() {
            return Err(StoreError::RestoreIncomplete {
                path: config.path.display().to_string(),
            });
        }
        crate::private::private_dir(&config.path).map_err(|source| StoreError::DataDir {
            path: config.path.display().to_string(),
            source,
        })?;
        let started = std::time::Instant::now();
        let db = loop {
            let attempt = sled::Config::new()
                .path(&config.path)
                .cache_capacity(config.cache_capacity)
                // Our acknowledgements never rely on background flushes; keep them infrequent.
                .flush_every_ms(Some(1000))
                .open();
            match attempt {
                Err(sled::Error::Io(e)) if is_lock_held(&e) && started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        // A new directory gets its log before its format marker, so that a marked directory
        // without a log is never the result of a crash during the first start.
        let fresh = db.get(FORMAT_KEY)?.is_none() && db.tree_names().len() <= 1 && db.is_empty();
        if !fresh {
            check_data_format(&db, &config.path)?;
        }
        let wal = Wal::open(&config.path, config.flush_linger, !fresh)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let background = Background::start(threads, config.background_nice.clamp(0, 19))
            .map_err(StoreError::Thread)?;
        if fresh {
            check_data_format(&db, &config.path)?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                wal,
                background,
                db,
                path: config.path.clone(),
                drops: Mutex::default(),
                installed: Mutex::default(),
            }),
        })
    }

    /// The node's Raft log.
    pub(crate) fn wal(&self) -> &Wal {
        &self.inner.wal
    }

    /// Runs `job` on the store's low-priority background threads, or gives it back when their
    /// queue is full (the caller then runs it).
    pub(crate) fn spawn_background(&self, job: Job) -> Result<(), Job> {
        self.inner.background.spawn(job)
    }

    /// A named tree outside the per-group layout (identity, settings, ...).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.inner.db.open_tree(name)?)
    }

    pub(crate) fn group_tree(&self, group: GroupId, kind: &str) -> Result<sled::Tree, StoreError> {
        self.tree(&group_tree_name(group, kind))
    }

    /// Ids of the groups that have data in this store.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self
            .inner
            .db
            .tree_names()
            .iter()
            .filter_map(|name| {
                let name = std::str::from_utf8(name).ok()?;
                let rest = name.strip_prefix('g')?;
                let (id, kind) = rest.split_once('.')?;
                crate::state_machine::generation_of(kind).and_then(|_| id.parse().ok())
            })
            .chain(self.inner.wal.groups().unwrap_or_default())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Deletes every tree and the log of a group (after the group moved away from this node).
    /// The log forgets the group durably before the trees go: the other order could bring the
    /// group's log back after a crash without its state machine.
    pub fn drop_group(&self, group: GroupId) -> Result<(), StoreError> {
        self.inner.wal.reset(group)?;
        self.inner.wal.sync_now()?;
        let mut drops = self.drops();
        *drops.entry(group).or_default() += 1;
        self.drop_group_trees_locked(group, |_| true)
    }

    /// Drops the trees of `group` whose kind (`sm`, `snap`, ...) `which` names.
    pub(crate) fn drop_group_trees(
        &self,
        group: GroupId,
        which: impl Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let _drops = self.drops();
        self.drop_group_trees_locked(group, which)
    }

    fn drop_group_trees_locked(
        &self,
        group: GroupId,
        which: impl Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let prefix = group_tree_name(group, "");
        for name in self.inner.db.tree_names() {
            let kind = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix(prefix.as_str()));
            if kind.is_some_and(&which) {
                self.inner.db.drop_tree(&name)?;
            }
        }
        Ok(())
    }

    /// Whether `group` has a tree of `kind` (tests).
    #[cfg(test)]
    pub(crate) fn group_tree_exists(&self, group: GroupId, kind: &str) -> bool {
        let name = group_tree_name(group, kind);
        self.inner
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes())
    }

    /// How many entries of `group` this store has installed from snapshots since it opened: a
    /// count that moves while an install goes on (leaders watch it, see the cluster's
    /// `snapshot_stream`).
    pub fn installed_entries(&self, group: GroupId) -> u64 {
        let installed = self.inner.installed.lock();
        let installed = installed.unwrap_or_else(|p| p.into_inner());
        installed.get(&group).copied().unwrap_or(0)
    }

    pub(crate) fn note_installed(&self, group: GroupId, entries: u64) {
        let mut installed = self
            .inner
            .installed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *installed.entry(group).or_default() += entries;
    }

    /// Drops one tree by name (a state machine tree a snapshot replaced).
    pub(crate) fn drop_tree(&self, name: &[u8]) -> Result<(), StoreError> {
        self.inner.db.drop_tree(name)?;
        Ok(())
    }

    /// A snapshot for `group` has arrived whole and is about to be installed: the log holds
    /// back its purges until the install is durable (see the log's `begin_install`). Called
    /// when the last chunk arrives, so the hold covers however long the transfer took.
    pub fn hold_purges_for_install(&self, group: GroupId) -> Result<(), StoreError> {
        self.inner.wal.begin_install(group)
    }

    /// Where snapshot files are made (they are unlinked at once: see
    /// [`crate::snapshot_file`]).
    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.inner.path.join("snapshots")
    }

    fn drops(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, u64>> {
        self.inner.drops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many times `group`'s trees were dropped so far (see [`Store::write_group`]).
    pub(crate) fn incarnation(&self, group: GroupId) -> u64 {
        self.drops().get(&group).copied().unwrap_or(0)
    }

    /// Runs `write` unless `group`'s trees were dropped since `incarnation` (then `None`); no
    /// drop of the group can happen while it runs.
    pub(crate) fn write_group<R>(
        &self,
        group: GroupId,
        incarnation: u64,
        write: impl FnOnce() -> R,
    ) -> Option<R> {
        let drops = self.drops();
        (drops.get(&group).copied().unwrap_or(0) == incarnation).then(write)
    }

    /// Waits until everything written to sled before this call is durable (snapshots, the
    /// node identity; the log has its own syncer). Rare, and done off the async workers.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.inner.db.clone();
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || sync_sled(&db, &path))
            .await
            .map_err(|_| StoreError::FlusherStopped)?
    }

    /// Groups whose unpurged log entries keep log segments older than the newest `keep` on
    /// disk, with the index up to which each would have to purge (see
    /// `chatsdk_cluster`'s log compaction task).
    pub fn groups_pinning_log(&self, keep: u64) -> Result<Vec<(GroupId, u64)>, StoreError> {
        self.inner.wal.groups_pinning(keep)
    }

    /// Group-commit counters of the log.
    pub fn flush_stats(&self) -> &FlushStats {
        self.inner.wal.stats()
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }
}

/// sled's `flush` writes its log and calls `sync_file_range`, which flushes neither the file's
/// metadata nor the disk's write cache, and never syncs the separate files it keeps large
/// values in (`blobs/`). After it, `fsync` sled's files so that what was flushed survives a
/// power loss too: a snapshot is followed by a purge of the log it replaces.
fn sync_sled(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    db.flush()?;
    let fail = |what: &Path, e: io::Error| {
        StoreError::Sled(sled::Error::Io(io::Error::new(
            e.kind(),
            format!("fsync {}: {e}", what.display()),
        )))
    };
    let data = path.join("db");
    std::fs::File::open(&data)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(&data, e))?;
    let blobs = path.join("blobs");
    if let Ok(items) = std::fs::read_dir(&blobs) {
        for item in items.flatten() {
            let blob = item.path();
            // A blob sled deleted meanwhile needs no syncing.
            match std::fs::File::open(&blob).and_then(|f| f.sync_all()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(&blob, e)),
                _ => {}
            }
        }
        std::fs::File::open(&blobs)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(&blobs, e))?;
    }
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(path, e))
}

/// The format of a data directory written by this build. Format 1 (no marker) held the
/// first builds' JSON records and commands; format 2 held typed binary ones (bincode behind a
/// format byte) with the Raft logs in sled; format 3 moves the logs to `raft-log/`; format 4
/// gives stream appends an id (so an append applied twice appends once); format 5 stores a new
/// message's event as a reference to the message record instead of a second copy; format 6
/// stores a stream's events and messages sixteen to a value (chunks); format 7 names each Raft
/// entry's batch (`chatsdk_cluster`'s batch ids, so the replica that applies an entry answers
/// its proposers); format 8 packs a stream's message-id index many entries to a value
/// (`chatsdk_actors`' `id_index`) instead of one key per message. Raft logs carry commands of
/// their format, so a directory is not upgraded in place (an older one is refused with a
/// message that says so), except formats 6 and 7: their entries are this build's (format 6's
/// without a batch id, which this build still reads) and their per-message index keys are
/// still read, so they are marked when opened (and the older builds, which cannot read what
/// this one writes, refuse them from then on). Format 9 may keep a group's state machine in a
/// tree of a later generation (`g<id>.sm<n>`, after a snapshot install) that format 8 builds
/// would not see; format 8 directories are marked 9 in place.
pub const DATA_FORMAT: u32 = 9;
/// The older formats [`check_data_format`] upgrades in place (see [`DATA_FORMAT`]).
const UPGRADED_IN_PLACE: std::ops::RangeInclusive<u32> = 6..=8;

/// Whether this build reads a data directory (or a backup of one) of `format`.
pub fn reads_data_format(format: u32) -> bool {
    format == DATA_FORMAT || UPGRADED_IN_PLACE.contains(&format)
}
/// Where the format is recorded, in sled's default tree.
const FORMAT_KEY: &[u8] = b"chatsdk.data_format";

/// Records the format in a new directory; refuses one written in another format.
fn check_data_format(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    let found = match db.get(FORMAT_KEY)? {
        Some(raw) => match <[u8; 4]>::try_from(raw.as_ref()) {
            Ok(b) => u32::from_be_bytes(b),
            Err(_) => 0,
        },
        // No marker: a new directory, or one written before markers existed (format 1).
        None if db.tree_names().len() <= 1 && db.is_empty() => {
            db.insert(FORMAT_KEY, &DATA_FORMAT.to_be_bytes())?;
            db.flush()?;
            return Ok(());
        }
        None => 1,
    };
    if found == DATA_FORMAT {
        return Ok(());
    }
    if UPGRADED_IN_PLACE.contains(&found) {
        db.insert(FORMAT_KEY, &DATA_FORMAT.to_be_bytes())?;
        db.flush()?;
        tracing::info!(
            path = %path.display(),
            from = found,
            to = DATA_FORMAT,
            "data directory marked with the new format (its log is read as it is)"
        );
        return Ok(());
    }
    Err(StoreError::DataFormat {
        path: path.display().to_string(),
        found,
        supported: DATA_FORMAT,
        hint: if found < DATA_FORMAT {
            "it was written by an older chatsdk and is not migrated in place; start this node \
             with an empty data directory (it catches up from the cluster's other nodes when it \
             rejoins) or keep running the older build on it"
        } else {
            "it was written by a newer chatsdk; run that build"
        },
    })
}

/// How long [`Store::open`] waits for a directory lock held by a previous incarnation.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// sled reports a held directory lock as an `Other` error wrapping `WouldBlock`.
fn is_lock_held(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// The name of `group`'s tree of `kind` (`sm` or `sm<generation>`, `snap`; `log` and `logmeta`
/// held the Raft log in format 2).
fn group_tree_name(group: GroupId, kind: &str) -> String {
    format!("g{group}.{kind}")
}

/// The default [`StoreConfig::flush_linger`]. A sync costs the kernel 40–75 µs of CPU on the
/// machines measured (`docs/benchmarks.md`), whatever it covers: lingering 1 ms under load
/// instead of 300 µs cut the CPU of a send by 10–12 % at 4,000–6,000 sends/s and adds under a
/// millisecond to an acknowledgement; an idle store does not linger.
pub const DEFAULT_FLUSH_LINGER: std::time::Duration = std::time::Duration::from_micros(1000);
/// A request that arrives within this long of the previous flush finds the store busy: the
/// flusher lingers before flushing so that one flush covers more requests. An idle store
/// flushes at once, so a lone write pays no extra latency.
pub const FLUSH_BUSY_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn concurrent_appends_share_one_sync() {
        use openraft::{CommittedLeaderId, EntryPayload};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let mut waits = Vec::new();
        for i in 0u64..200 {
            let entry = crate::types::Entry {
                log_id: crate::types::LogId::new(CommittedLeaderId::new(1, 1), i + 1),
                payload: EntryPayload::Normal(crate::Command(vec![0u8; 64].into())),
            };
            // Every append to its own group, as Raft groups of one node do.
            store.wal().append(i as GroupId, [entry]).unwrap();
            let s = store.clone();
            waits.push(tokio::spawn(async move { s.wal().sync().await }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        let flushes = store.flush_stats().flushes.load(Ordering::Relaxed);
        let requests = store.flush_stats().requests.load(Ordering::Relaxed);
        assert_eq!(requests, 200);
        // Requests queued while a sync runs share the next one.
        assert!(
            flushes < requests,
            "{flushes} syncs for {requests} requests"
        );
    }

    /// A sled directory carrying only the format marker `format`.
    fn marked(format: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        db.insert(FORMAT_KEY, &format.to_be_bytes()).unwrap();
        db.flush().unwrap();
        dir
    }

    #[test]
    fn new_directories_are_marked_and_older_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(&StoreConfig::new(dir.path())).unwrap());
        // Reopening a directory of this format works.
        drop(Store::open(&StoreConfig::new(dir.path())).unwrap());

        // A directory of the first builds: data, and no marker.
        let old = tempfile::tempdir().unwrap();
        {
            let db = sled::open(old.path()).unwrap();
            db.open_tree("g0.sm")
                .unwrap()
                .insert(b"dx", &b"{}"[..])
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(&StoreConfig::new(old.path())).err().unwrap();
        assert!(
            matches!(
                err,
                StoreError::DataFormat {
                    found: 1,
                    supported: DATA_FORMAT,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("format 1") && text.contains("format 9"),
            "{text}"
        );

        // Directories of formats 2 (the Raft logs in sled), 3 (appends without ids), 4
        // (messages stored twice) and 5 (a key per event and per message).
        for format in [2, 3, 4, 5] {
            let dir = marked(format);
            let err = Store::open(&StoreConfig::new(dir.path())).err().unwrap();
            assert!(
                matches!(err, StoreError::DataFormat { found, .. } if found == format),
                "{err}"
            );
        }

        // Formats 6 (entries without batch ids), 7 (an index key per message) and 8 (no tree
        // generations) are marked 9 in place, their logs kept.
        for format in [6u32, 7, 8] {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
                store
                    .inner
                    .db
                    .insert(FORMAT_KEY, &format.to_be_bytes())
                    .unwrap();
                store.inner.db.flush().unwrap();
            }
            drop(Store::open(&StoreConfig::new(dir.path())).unwrap());
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            assert_eq!(
                store.inner.db.get(FORMAT_KEY).unwrap().as_deref(),
                Some(&9u32.to_be_bytes()[..]),
                "format {format}"
            );
            drop(store);
        }

        // A directory marked by a newer build.
        let newer = marked(10);
        let err = Store::open(&StoreConfig::new(newer.path())).err().unwrap();
        assert!(
            matches!(err, StoreError::DataFormat { found: 10, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn flush_syncs_sled_files_including_blobs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
            let tree = store.tree("t").unwrap();
            // Large enough for sled to keep it in a separate blob file.
            tree.insert(b"big", vec![7u8; 1 << 20]).unwrap();
            tree.insert(b"small", &b"v"[..]).unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let tree = store.tree("t").unwrap();
        assert_eq!(tree.get(b"big").unwrap().map(|v| v.len()), Some(1 << 20));
        assert_eq!(tree.get(b"small").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_directory_whose_raft_log_is_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(&StoreConfig::new(dir.path())).unwrap());
        std::fs::remove_dir_all(dir.path().join(crate::wal::DIR)).unwrap();
        let err = Store::open(&StoreConfig::new(dir.path())).err().unwrap();
        assert!(err.to_string().contains("no raft log"), "{err}");
    }

    #[test]
    fn groups_are_listed_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        for g in [3, 0, 12] {
            store.group_tree(g, "sm").unwrap();
        }
        store.tree("identity").unwrap();
        assert_eq!(store.groups(), vec![0, 3, 12]);
        store.drop_group(3).unwrap();
        assert_eq!(store.groups(), vec![0, 12]);
    }
}
