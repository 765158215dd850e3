//! Online backup of a node and its restore into a new data directory.
//!
//! A backup is taken while the node serves. Each Raft group on the node contributes its current
//! snapshot, which openraft reads from the state machine's own task between two applies: every
//! group is consistent at one applied log position, with the membership and vote it had then.
//! Groups are read one after another, so two groups may be a few writes apart, exactly as two
//! replicas on different nodes can be; each shard is whole. The node's identity (its id, cluster
//! certificate and key) and the files the caller names (uploaded media) travel with it.
//!
//! Restoring writes each group's state into an empty data directory with its log behind the
//! snapshot; the node started on that directory is the node that was backed up, at the backup's
//! positions. A single node simply resumes. A cluster is restored whole (every node from its own
//! backup): each group elects among the restored replicas. A restored member must not rejoin a
//! cluster that went on without it: it would have forgotten entries it had acknowledged, which
//! Raft counts on; a lost member is replaced by an empty node joining instead (see
//! `docs/operations.md`). Until a restore has finished, a marker file makes the data directory
//! refuse to start, so a restore cut short by a failing disk is never served.
//!
//! The file is `MAGIC`, then frames: a little-endian `u32` length followed by one framed record
//! (version byte, CRC32, bincode 2) of an [`Item`]. A `Header` comes first and an `End` with the
//! counts last, so a truncated file is refused rather than restored in part. A group's snapshot
//! and a file travel the same way: an item that announces the length, then `Chunk`s, so that
//! neither the backup nor the restore holds a whole group in memory (format 1 carried a group in
//! one item; it is still read).

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chatsdk_storage::{
    record, GroupId, KeyValue, NodeId, Store, StoreConfig, DATA_FORMAT, RESTORE_MARKER,
};
use openraft::storage::SnapshotMeta;
use openraft::{BasicNode, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::join::now_ms;
use crate::node::ClusterNode;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 15] = b"chatsdk-backup\n";
/// The layout of the items below; a later build reads older ones or says why not.
const BACKUP_FORMAT: u32 = 2;
/// The oldest layout this build reads (format 1: a group's snapshot in one `Group` item).
const OLDEST_BACKUP_FORMAT: u32 = 1;
/// Files are sent in pieces of this size.
const CHUNK: usize = 1 << 20;
/// How long a group may take to build its first snapshot for a backup.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
/// Non-group trees a node keeps (identity, join state).
const TREES: &[&str] = &["identity"];

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("storage: {0}")]
    Store(#[from] chatsdk_storage::StoreError),
    #[error("not a usable backup: {0}")]
    Format(String),
    #[error("group {group}: {reason}")]
    Group { group: GroupId, reason: String },
    #[error("{0} is not empty: restore into a new data directory")]
    NotEmpty(PathBuf),
    #[error("the receiver of the backup went away")]
    Closed,
}

/// What a backup is made of.
#[derive(Serialize, Deserialize)]
enum Item {
    Header(Header),
    /// A node-level sled tree, whole.
    Tree {
        name: String,
        entries: Vec<KeyValue>,
    },
    /// One Raft group, whole (format 1): its snapshot's metadata and data, and its vote.
    Group {
        group: GroupId,
        meta: SnapshotMeta<NodeId, BasicNode>,
        vote: Option<Vote<NodeId>>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A file under the data directory; its bytes follow as `Chunk`s.
    File {
        path: String,
        len: u64,
    },
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    End(Totals),
    /// One Raft group: its snapshot's metadata and its vote; the snapshot's `len` bytes (see
    /// `chatsdk_storage::snapshot_file`) follow as `Chunk`s.
    GroupStart {
        group: GroupId,
        meta: SnapshotMeta<NodeId, BasicNode>,
        vote: Option<Vote<NodeId>>,
        len: u64,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Header {
    backup_format: u32,
    data_format: u32,
    node_id: NodeId,
    cluster_id: String,
    created_ms: u64,
    version: String,
}

/// What a backup holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub groups: u32,
    pub files: u32,
    pub file_bytes: u64,
}

/// What a restore wrote.
#[derive(Clone, Debug)]
pub struct Restored {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub created_ms: u64,
    pub totals: Totals,
}

fn frame(item: &Item) -> Result<Vec<u8>, BackupError> {
    let body = record::encode(item)?;
    let len = u32::try_from(body.len())
        .map_err(|_| BackupError::Format(format!("an item of {} bytes", body.len())))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Sends the backup's bytes, one frame at a time, into a bounded queue.
struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Sink {
    async fn send(&self, item: &Item) -> Result<(), BackupError> {
        let bytes = frame(item)?;
        self.tx.send(bytes).await.map_err(|_| BackupError::Closed)
    }
}

impl ClusterNode {
    /// Streams a backup of this node into `tx` (see the module docs), with the files under
    /// each of `dirs` (paths relative to the data directory; directories named `tmp` are
    /// skipped: they hold files still being written).
    pub async fn backup(
        &self,
        dirs: &[&str],
        tx: mpsc::Sender<Vec<u8>>,
    ) -> Result<Totals, BackupError> {
        let sink = Sink { tx };
        sink.tx
            .send(MAGIC.to_vec())
            .await
            .map_err(|_| BackupError::Closed)?;
        let header = Header {
            backup_format: BACKUP_FORMAT,
            data_format: DATA_FORMAT,
            node_id: self.id(),
            cluster_id: self.cluster_id().to_string(),
            created_ms: now_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        sink.send(&Item::Header(header)).await?;
        let store = &self.inner.store;
        for name in TREES {
            let entries = store
                .tree(name)?
                .iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(chatsdk_storage::StoreError::from)?;
            sink.send(&Item::Tree {
                name: (*name).to_string(),
                entries,
            })
            .await?;
        }
        let mut totals = Totals::default();
        for group in self.local_groups() {
            let Some(handle) = self.inner.group(group) else {
                continue; // moved away meanwhile
            };
            let Some((meta, file)) = group_snapshot(group, &handle.raft).await? else {
                continue;
            };
            let vote = Some(handle.raft.metrics().borrow().vote);
            let len = file.metadata()?.len();
            sink.send(&Item::GroupStart {
                group,
                meta,
                vote,
                len,
            })
            .await?;
            send_chunks(&sink, file, len).await?;
            totals.groups += 1;
        }
        let root = self.inner.config.data_dir.clone();
        for dir in dirs {
            for path in files_under(&root.join(dir))? {
                let Ok(rel) = path.strip_prefix(&root) else {
                    continue;
                };
                let rel = rel.to_string_lossy().into_owned();
                let Some(sent) = send_file(&sink, &path, rel).await? else {
                    continue; // deleted meanwhile
                };
                totals.files += 1;
                totals.file_bytes += sent;
            }
        }
        sink.send(&Item::End(totals.clone())).await?;
        Ok(totals)
    }
}

/// The group's current snapshot (its file, at its start), building its first one when it
/// never had one.
async fn group_snapshot(
    group: GroupId,
    raft: &openraft::Raft<chatsdk_storage::TypeConfig>,
) -> Result<Option<(SnapshotMeta<NodeId, BasicNode>, std::fs::File)>, BackupError> {
    let fail = |reason: String| BackupError::Group { group, reason };
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    let mut triggered = false;
    loop {
        match raft.get_snapshot().await {
            Ok(Some(s)) => {
                let mut file = s.snapshot.into_std().await;
                file.seek(io::SeekFrom::Start(0))?;
                return Ok(Some((s.meta, file)));
            }
            Ok(None) if Instant::now() < deadline => {
                if !triggered {
                    raft.trigger()
                        .snapshot()
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    triggered = true;
                }
                let mut metrics = raft.metrics();
                let wait = deadline.saturating_duration_since(Instant::now());
                // The snapshot is built off openraft's task; its metrics say when it exists.
                let _ = tokio::time::timeout(
                    wait,
                    metrics.wait_for(|m| m.snapshot.is_some() || m.last_applied.is_none()),
                )
                .await;
                if raft.metrics().borrow().last_applied.is_none() {
                    return Ok(None); // nothing applied yet: nothing to keep
                }
            }
            Ok(None) => return Err(fail("no snapshot could be built in time".into())),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

async fn send_file(sink: &Sink, path: &Path, rel: String) -> Result<Option<u64>, BackupError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    sink.send(&Item::File { path: rel, len }).await?;
    // Media files are immutable once in place: `len` bytes is the whole file.
    send_chunks(sink, file, len).await?;
    Ok(Some(len))
}

/// Sends `len` bytes of `file` from where it stands, as `Chunk`s.
async fn send_chunks(sink: &Sink, mut file: std::fs::File, len: u64) -> Result<(), BackupError> {
    let mut left = len;
    while left > 0 {
        let mut buf = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        let (read, buf) = tokio::task::spawn_blocking(move || {
            let read = file.read_exact(&mut buf);
            (read.map(|()| file), buf)
        })
        .await
        .map_err(|e| BackupError::Io(io::Error::other(e)))?;
        file = read?;
        left -= buf.len() as u64;
        sink.send(&Item::Chunk(buf)).await?;
    }
    Ok(())
}

/// Regular files under `dir` (recursively), skipping directories named `tmp`.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if entry.file_name() != "tmp" {
                    todo.push(entry.path());
                }
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads frames of a backup.
struct Frames<R> {
    input: R,
}

impl<R: Read> Frames<R> {
    fn next(&mut self) -> Result<Item, BackupError> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|e| truncated(e, "an item's length"))?;
        let len = u64::from(u32::from_le_bytes(len));
        // Grows with what arrives: a damaged length cannot make us allocate gigabytes.
        let mut body = Vec::new();
        (&mut self.input).take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(BackupError::Format("the file ends inside an item".into()));
        }
        Ok(record::decode(&body)?)
    }
}

fn truncated(e: io::Error, what: &str) -> BackupError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        BackupError::Format(format!("the file ends before {what}: is it complete?"))
    } else {
        BackupError::Io(e)
    }
}

/// What [`inspect`] read off a backup.
#[derive(Clone, Debug)]
pub struct Summary {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub created_ms: u64,
    pub version: String,
    pub totals: Totals,
}

/// Reads a whole backup without writing anything: every item's checksum, the file sizes and the
/// closing counts. `chatsdk backup` runs it on what it received before keeping the file.
pub fn inspect(input: impl Read) -> Result<Summary, BackupError> {
    let (header, mut items) = open(input)?;
    while items.next()?.is_some() {}
    Ok(Summary {
        node_id: header.node_id,
        cluster_id: header.cluster_id,
        created_ms: header.created_ms,
        version: header.version,
        totals: items.totals,
    })
}

/// The items of a backup after its header, with its structure checked as they are read: one
/// header, each file's chunks adding up to its length, and closing counts that match what came.
struct Items<R> {
    frames: Frames<R>,
    totals: Totals,
    /// Bytes the current file or group still expects (`None`: none is open).
    left: Option<u64>,
}

impl<R: Read> Items<R> {
    /// The next item, or `None` once the closing item matched.
    fn next(&mut self) -> Result<Option<Item>, BackupError> {
        let item = self.frames.next()?;
        // Any other item closes the current file, which must be whole by then.
        if !matches!(item, Item::Chunk(_)) && self.left.take().is_some_and(|left| left != 0) {
            return Err(BackupError::Format(
                "a file or group is missing its end".into(),
            ));
        }
        match &item {
            Item::Header(_) => return Err(BackupError::Format("a second header".into())),
            Item::Tree { .. } => {}
            Item::Group { .. } => self.totals.groups += 1,
            Item::GroupStart { len, .. } => {
                self.totals.groups += 1;
                self.left = Some(*len);
            }
            Item::File { len, .. } => {
                self.totals.files += 1;
                self.totals.file_bytes = self.totals.file_bytes.saturating_add(*len);
                self.left = Some(*len);
            }
            Item::Chunk(bytes) => {
                let Some(left) = self.left.as_mut() else {
                    return Err(BackupError::Format("data outside a file or group".into()));
                };
                *left = left.checked_sub(bytes.len() as u64).ok_or_else(|| {
                    BackupError::Format("a file or group holds more bytes than announced".into())
                })?;
            }
            Item::End(expected) if *expected == self.totals => return Ok(None),
            Item::End(expected) => {
                return Err(BackupError::Format(format!(
                    "it announces {expected:?} but holds {:?}",
                    self.totals
                )))
            }
        }
        Ok(Some(item))
    }
}

/// Checks the magic and the header of a backup and returns its items after the header.
fn open<R: Read>(input: R) -> Result<(Header, Items<io::BufReader<R>>), BackupError> {
    let mut input = io::BufReader::new(input);
    let mut magic = [0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|e| truncated(e, "its header"))?;
    if &magic != MAGIC {
        return Err(BackupError::Format(
            "it does not start like a chatsdk backup".into(),
        ));
    }
    let mut frames = Frames { input };
    let Item::Header(header) = frames.next()? else {
        return Err(BackupError::Format("the header is missing".into()));
    };
    if !(OLDEST_BACKUP_FORMAT..=BACKUP_FORMAT).contains(&header.backup_format)
        || !chatsdk_storage::reads_data_format(header.data_format)
    {
        return Err(BackupError::Format(format!(
            "written by chatsdk {} (backup format {}, data format {}); this build reads backup formats {OLDEST_BACKUP_FORMAT}-{BACKUP_FORMAT}, data format {DATA_FORMAT}",
            header.version, header.backup_format, header.data_format
        )));
    }
    let items = Items {
        frames,
        totals: Totals::default(),
        left: None,
    };
    Ok((header, items))
}

/// Restores a backup into `data_dir`, which must not exist or be empty, accepting files only
/// under `dirs` (those [`ClusterNode::backup`] was given). On failure `data_dir` keeps a marker
/// that makes it refuse to start: delete it and try again.
pub async fn restore(
    input: impl Read,
    data_dir: &Path,
    dirs: &[&str],
) -> Result<Restored, BackupError> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
    }
    let (header, mut items) = open(input)?;
    chatsdk_storage::private::private_dir(data_dir)?;
    let store = Store::open(&StoreConfig::new(data_dir))?;
    let marker = data_dir.join(RESTORE_MARKER);
    std::fs::File::create(&marker)?.sync_all()?;
    sync_dir(data_dir)?;
    let mut file: Option<std::fs::File> = None;
    // The group whose snapshot's chunks are arriving, into an unlinked file.
    let mut group_data: Option<(GroupStarted, std::fs::File)> = None;
    loop {
        let item = items.next()?;
        if !matches!(item, Some(Item::Chunk(_))) {
            if let Some(f) = file.take() {
                f.sync_all()?;
            }
            if let Some((started, mut data)) = group_data.take() {
                data.seek(io::SeekFrom::Start(0))?;
                restore_group(&store, started, io::BufReader::new(data)).await?;
            }
        }
        let Some(item) = item else { break };
        match item {
            Item::Tree { name, entries } => {
                if !TREES.contains(&name.as_str()) {
                    return Err(BackupError::Format(format!("an unknown tree {name}")));
                }
                let tree = store.tree(&name)?;
                let mut batch = sled::Batch::default();
                for (k, v) in entries {
                    batch.insert(k, v);
                }
                tree.apply_batch(batch)
                    .map_err(chatsdk_storage::StoreError::from)?;
            }
            Item::Group {
                group,
                meta,
                vote,
                data,
            } => {
                let started = GroupStarted { group, meta, vote };
                restore_group(&store, started, &data[..]).await?;
            }
            Item::GroupStart {
                group, meta, vote, ..
            } => {
                let data = chatsdk_storage::snapshot_file::anonymous(data_dir)?;
                group_data = Some((GroupStarted { group, meta, vote }, data));
            }
            Item::File { path, .. } => {
                let target = safe_join(data_dir, &path, dirs)?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                file = Some(std::fs::File::create(&target)?);
            }
            Item::Chunk(bytes) => {
                if let Some(f) = file.as_mut() {
                    f.write_all(&bytes)?;
                } else if let Some((_, data)) = group_data.as_mut() {
                    data.write_all(&bytes)?;
                }
            }
            // `Items` answers these itself.
            Item::Header(_) | Item::End(_) => {}
        }
    }
    store.flush().await?;
    drop(store);
    std::fs::remove_file(&marker)?;
    sync_dir(data_dir)?;
    Ok(Restored {
        node_id: header.node_id,
        cluster_id: header.cluster_id,
        created_ms: header.created_ms,
        totals: items.totals,
    })
}

/// What a backup says of a group before its data.
struct GroupStarted {
    group: GroupId,
    meta: SnapshotMeta<NodeId, BasicNode>,
    vote: Option<Vote<NodeId>>,
}

async fn restore_group(
    store: &Store,
    started: GroupStarted,
    data: impl Read,
) -> Result<(), BackupError> {
    // Uncommitted: a node that starts with a committed vote for itself resumes as leader in the
    // same term without an election, and could hand out log ids that its peers already hold
    // with other entries. An uncommitted vote makes it elect (in a later term) like any node
    // after a restart.
    let vote = started.vote.map(|v| Vote {
        committed: false,
        ..v
    });
    chatsdk_storage::restore_snapshot(store, started.group, &started.meta, vote, data).await?;
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `root/rel` for a relative path of plain names (no `..`, no absolute path) inside one of the
/// directories backups carry files of.
fn safe_join(root: &Path, rel: &str, dirs: &[&str]) -> Result<PathBuf, BackupError> {
    let rel = Path::new(rel);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let inside = rel
        .components()
        .next()
        .is_some_and(|first| dirs.iter().any(|d| first.as_os_str() == *d));
    if !plain || !inside || rel.components().count() < 2 {
        return Err(BackupError::Format(format!(
            "a file path outside the data directory: {}",
            rel.display()
        )));
    }
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_of(items: &[Item]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let header = Item::Header(Header {
            backup_format: BACKUP_FORMAT,
            data_format: DATA_FORMAT,
            node_id: 1,
            cluster_id: "c".into(),
            created_ms: 0,
            version: "test".into(),
        });
        for item in std::iter::once(&header).chain(items) {
            out.extend(frame(item).unwrap());
        }
        out
    }

    fn file(len: u64) -> Item {
        Item::File {
            path: "media/ab/cd".into(),
            len,
        }
    }

    fn end(files: u32, file_bytes: u64) -> Item {
        Item::End(Totals {
            groups: 0,
            files,
            file_bytes,
        })
    }

    fn refusal(items: &[Item]) -> String {
        match inspect(&backup_of(items)[..]) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_backup_is_read_whole_or_refused_with_the_reason() {
        let whole = [
            file(3),
            Item::Chunk(vec![1, 2]),
            Item::Chunk(vec![3]),
            end(1, 3),
        ];
        let summary = inspect(&backup_of(&whole)[..]).unwrap();
        assert_eq!(summary.totals.file_bytes, 3);
        assert_eq!(summary.node_id, 1);

        let short = [file(3), Item::Chunk(vec![1, 2]), end(1, 3)];
        assert!(refusal(&short).contains("missing its end"));
        let long = [file(1), Item::Chunk(vec![1, 2]), end(1, 1)];
        assert!(refusal(&long).contains("more bytes than announced"));
        let stray = [Item::Chunk(vec![1]), end(0, 0)];
        assert!(refusal(&stray).contains("outside a file or group"));
        let miscounted = [file(0), end(2, 0)];
        assert!(refusal(&miscounted).contains("announces"));
        let cut = backup_of(&whole);
        let cut = &cut[..cut.len() - 3];
        assert!(inspect(cut).unwrap_err().to_string().contains("ends"));
    }

    struct Nothing;

    impl chatsdk_storage::Applier for Nothing {
        fn apply(
            &self,
            _: &chatsdk_storage::ApplyContext,
            _: &mut chatsdk_storage::KvBatch<'_>,
            _: &[u8],
        ) -> Result<Vec<u8>, chatsdk_storage::StoreError> {
            Ok(Vec::new())
        }
    }

    /// What a format-1 backup carried as a group's data: one record of every key.
    #[derive(Serialize)]
    struct WholeGroup {
        entries: Vec<KeyValue>,
    }

    fn meta(index: u64) -> SnapshotMeta<NodeId, BasicNode> {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Default::default(),
            snapshot_id: format!("1-{index}-0"),
        }
    }

    /// A backup's groups restore, whether whole in one item (format 1) or in chunks (format
    /// 2, the snapshot's own file layout), and a chunked group is counted and checked as a
    /// file is.
    #[tokio::test]
    async fn groups_restore_whole_or_in_chunks() {
        let key = |k: &str| [b"d", k.as_bytes()].concat();
        let whole = record::encode(&WholeGroup {
            entries: vec![(key("old"), record::frame(b"1"))],
        })
        .unwrap();
        // A chunked group's bytes as a node writes them, taken from a real store's snapshot.
        let source = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(source.path())).unwrap();
        chatsdk_storage::restore_snapshot(&store, 3, &meta(5), None, &whole[..])
            .await
            .unwrap();
        let mut sm =
            chatsdk_storage::StateMachineStore::open(&store, 3, std::sync::Arc::new(Nothing))
                .unwrap();
        let snapshot = openraft::storage::RaftStateMachine::get_current_snapshot(&mut sm)
            .await
            .unwrap()
            .unwrap();
        let mut file = snapshot.snapshot.into_std().await;
        file.seek(io::SeekFrom::Start(0)).unwrap();
        let mut chunked = Vec::new();
        file.read_to_end(&mut chunked).unwrap();
        drop((sm, store));

        let (half, rest) = chunked.split_at(chunked.len() / 2);
        let group_start = |group, len| Item::GroupStart {
            group,
            meta: meta(5),
            vote: None,
            len,
        };
        let backup = backup_of(&[
            Item::Group {
                group: 1,
                meta: meta(5),
                vote: None,
                data: whole.clone(),
            },
            group_start(2, chunked.len() as u64),
            Item::Chunk(half.to_vec()),
            Item::Chunk(rest.to_vec()),
            Item::End(Totals {
                groups: 2,
                ..Totals::default()
            }),
        ]);
        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("node");
        let restored = restore(&backup[..], &dir, &["media"]).await.unwrap();
        assert_eq!(restored.totals.groups, 2);
        let store = Store::open(&StoreConfig::new(&dir)).unwrap();
        for group in [1, 2] {
            let sm = chatsdk_storage::StateMachineStore::open(
                &store,
                group,
                std::sync::Arc::new(Nothing),
            )
            .unwrap();
            assert_eq!(
                sm.reader().get(b"old").unwrap(),
                Some(b"1".to_vec()),
                "group {group}"
            );
        }

        let short = [
            group_start(2, chunked.len() as u64),
            Item::Chunk(half.to_vec()),
            end(0, 0),
        ];
        assert!(refusal(&short).contains("missing its end"));
    }

    #[test]
    fn restored_files_stay_inside_the_directories_backups_carry() {
        let root = Path::new("/data");
        assert!(safe_join(root, "media/ab/cd", &["media"]).is_ok());
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "db",
            "raft-log/0",
            "media",
            "",
        ] {
            assert!(safe_join(root, bad, &["media"]).is_err(), "{bad}");
        }
    }
}
