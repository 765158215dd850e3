//! A node's sled database, the tree layout of its Raft groups, and group commit.
//!
//! Layout: one sled directory per node. Group `g` owns four trees, `g{g}.log` (entries keyed by
//! big-endian index), `g{g}.logmeta` (vote, committed, last purged), `g{g}.sm` (applied state,
//! membership and the application's keys) and `g{g}.snap` (the current snapshot). Other trees
//! (node identity, ...) are named by the cluster layer through [`Store::tree`].
//!
//! Durability: sled only promises durability after `flush`. A log append is acknowledged to
//! openraft only once a flush that started after the append's write has completed. All groups
//! hand their flush requests to one flusher thread, which drains every request queued while the
//! previous flush ran and covers them with a single `flush` (group commit).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{GroupId, StoreError};

/// Capacity of the flusher's request queue. Appenders wait (asynchronously) when it is full,
/// which bounds memory and applies back-pressure to Raft's log I/O.
const FLUSH_QUEUE: usize = 4096;

/// A completion to run once the data written before it is durable.
pub(crate) type FlushCallback = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Settings of a node's store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The node's data directory.
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// Under load, how long the flusher waits for more requests before it flushes (see
    /// [`FLUSH_BUSY_WINDOW`]); zero flushes at once.
    pub flush_linger: std::time::Duration,
}

impl StoreConfig {
    /// Defaults for a data directory: a 64 MiB page cache.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            cache_capacity: 64 * 1024 * 1024,
            flush_linger: DEFAULT_FLUSH_LINGER,
        }
    }
}

/// Counters of the group-commit flusher, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Flushes performed.
    pub flushes: AtomicU64,
    /// Flush requests served (appends, votes, snapshot writes).
    pub requests: AtomicU64,
}

/// A node's open sled database. Cheap to clone; the directory is released (and its lock freed)
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    flush_tx: Option<mpsc::Sender<FlushCallback>>,
    flusher: Option<std::thread::JoinHandle<()>>,
    stats: Arc<FlushStats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the flusher after its last flush; joining it releases its
        // handle on the database, so the directory can be reopened as soon as we return.
        self.flush_tx.take();
        if let Some(thread) = self.flusher.take() {
            if thread.join().is_err() {
                tracing::error!("sled flusher thread panicked");
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the data directory and starts the flusher thread.
    ///
    /// sled locks the directory. A previous incarnation in this process (a restart after a
    /// stop) may still be releasing it from one of sled's background threads, so a held lock
    /// is retried for up to ten seconds before giving up.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
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
        check_data_format(&db, &config.path)?;
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_QUEUE);
        let stats = Arc::new(FlushStats::default());
        let thread_db = db.clone();
        let thread_stats = stats.clone();
        let linger = config.flush_linger;
        let flusher = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || run_flusher(thread_db, flush_rx, thread_stats, linger))
            .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                flush_tx: Some(flush_tx),
                flusher: Some(flusher),
                stats,
            }),
        })
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
                (kind == "log").then(|| id.parse().ok()).flatten()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Deletes every tree of a group (after the group moved away from this node).
    pub fn drop_group(&self, group: GroupId) -> Result<(), StoreError> {
        for kind in GROUP_TREES {
            self.inner.db.drop_tree(group_tree_name(group, kind))?;
        }
        Ok(())
    }

    /// Waits until everything written before this call is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.flush_then(Box::new(move |res| {
            let _ignored_if_caller_gone = tx.send(res);
        }))
        .await?;
        match rx.await {
            Ok(res) => res.map_err(|e| StoreError::Sled(sled::Error::Io(e))),
            Err(_) => Err(StoreError::FlusherStopped),
        }
    }

    /// Queues `done` to run after the next flush that starts after this call.
    pub(crate) async fn flush_then(&self, done: FlushCallback) -> Result<(), StoreError> {
        let tx = self
            .inner
            .flush_tx
            .as_ref()
            .ok_or(StoreError::FlusherStopped)?;
        tx.send(done).await.map_err(|_| StoreError::FlusherStopped)
    }

    /// Group-commit counters.
    pub fn flush_stats(&self) -> &FlushStats {
        &self.inner.stats
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }
}

/// The format of a data directory written by this build. Format 1 (no marker) held the
/// first builds' JSON records and commands; format 2 holds typed binary ones (bincode behind a
/// format byte). Raft logs carry commands of their format, so a directory is never upgraded in
/// place: an older one is refused with a message that says so.
pub const DATA_FORMAT: u32 = 2;
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

const GROUP_TREES: [&str; 4] = ["log", "logmeta", "sm", "snap"];

fn group_tree_name(group: GroupId, kind: &str) -> String {
    format!("g{group}.{kind}")
}

/// The default [`StoreConfig::flush_linger`].
pub const DEFAULT_FLUSH_LINGER: std::time::Duration = std::time::Duration::from_micros(300);
/// A request that arrives within this long of the previous flush finds the store busy: the
/// flusher lingers before flushing so that one flush covers more requests. An idle store
/// flushes at once, so a lone write pays no extra latency.
pub const FLUSH_BUSY_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// The flusher thread: one `flush` covers every request that queued up while the last one ran
/// (and, under load, during a short linger).
///
/// Each flush is a write and a `sync_file_range` of sled's log buffer, plus a wake-up of every
/// waiter: under a steady stream of small appends from many Raft groups, flushing as soon as
/// one request arrives made about one flush per two sends, and the per-flush cost dominated.
fn run_flusher(
    db: sled::Db,
    mut rx: mpsc::Receiver<FlushCallback>,
    stats: Arc<FlushStats>,
    linger: std::time::Duration,
) {
    let mut last_flush: Option<std::time::Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        if !linger.is_zero() && last_flush.is_some_and(|t| t.elapsed() < FLUSH_BUSY_WINDOW) {
            std::thread::sleep(linger);
        }
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = db.flush().map(|_| ());
        last_flush = Some(std::time::Instant::now());
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "sled flush failed");
        }
        for done in batch {
            done(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| io::Error::other(e.to_string())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_flushes_share_one_sled_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let tree = store.tree("t").unwrap();
        let mut waits = Vec::new();
        for i in 0u32..200 {
            tree.insert(i.to_be_bytes(), &[0u8; 64][..]).unwrap();
            let s = store.clone();
            waits.push(tokio::spawn(async move { s.flush().await }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        let flushes = store.flush_stats().flushes.load(Ordering::Relaxed);
        let requests = store.flush_stats().requests.load(Ordering::Relaxed);
        assert_eq!(requests, 200);
        // Appends queued while a flush runs share the next one: at least one flush served several.
        assert!(
            flushes < requests,
            "{flushes} flushes for {requests} requests"
        );
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
            text.contains("format 1") && text.contains("format 2"),
            "{text}"
        );

        // A directory marked by a newer build.
        let newer = tempfile::tempdir().unwrap();
        {
            let db = sled::open(newer.path()).unwrap();
            db.insert(FORMAT_KEY, &9u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(&StoreConfig::new(newer.path())).err().unwrap();
        assert!(
            matches!(err, StoreError::DataFormat { found: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn groups_are_listed_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        for g in [3, 0, 12] {
            store.group_tree(g, "log").unwrap();
        }
        store.tree("identity").unwrap();
        assert_eq!(store.groups(), vec![0, 3, 12]);
        store.drop_group(3).unwrap();
        assert_eq!(store.groups(), vec![0, 12]);
    }
}
