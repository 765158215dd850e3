//! Storage tests: openraft's conformance suite on our sled stores, plus what the suite does not
//! cover (normal entries through an applier, restart, snapshots between stores, corruption).

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use chatsdk_storage::types::{Entry, LogId};
use chatsdk_storage::{
    Applier, ApplyContext, Command, KvBatch, LogStore, StateMachineStore, Store, StoreConfig,
    StoreError, TypeConfig,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageError};

/// Test applier: `put k v` as "k=v" stores v under k and replies with the previous value.
struct PutApplier;

impl Applier for PutApplier {
    fn apply(
        &self,
        _ctx: &ApplyContext,
        kv: &mut KvBatch<'_>,
        command: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let text = std::str::from_utf8(command).unwrap_or_default();
        let (k, v) = text.split_once('=').unwrap_or((text, ""));
        let previous = kv.get(k.as_bytes())?.unwrap_or_default();
        kv.put(k.as_bytes(), v.as_bytes());
        Ok(previous)
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&StoreConfig::new(dir.path())).expect("open store");
        let log = LogStore::open(&store, 1).expect("log store");
        let sm = StateMachineStore::open(&store, 1, Arc::new(PutApplier)).expect("sm store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_conformance_suite() {
    Suite::test_all(SledBuilder).expect("openraft storage suite");
}

fn normal(term: u64, index: u64, cmd: &str) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Command(cmd.as_bytes().to_vec().into())),
    }
}

fn open(dir: &std::path::Path, group: u32) -> (Store, LogStore, StateMachineStore) {
    let store = Store::open(&StoreConfig::new(dir)).unwrap();
    let log = LogStore::open(&store, group).unwrap();
    let sm = StateMachineStore::open(&store, group, Arc::new(PutApplier)).unwrap();
    (store, log, sm)
}

#[tokio::test]
async fn applied_commands_and_log_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, mut log, mut sm) = open(dir.path(), 7);
        let entries: Vec<Entry> = (1..=3)
            .map(|i| normal(1, i, &format!("k{i}=v{i}")))
            .collect();
        log.blocking_append(entries.clone()).await.unwrap();
        let replies = sm.apply(entries).await.unwrap();
        assert_eq!(replies.len(), 3);
        let mut replies = sm.apply([normal(1, 4, "k1=again")]).await.unwrap();
        assert_eq!(replies.remove(0).into_bytes().unwrap(), b"v1");
    }
    let (_store, mut log, mut sm) = open(dir.path(), 7);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(4));
    assert_eq!(sm.reader().get(b"k1").unwrap(), Some(b"again".to_vec()));
    assert_eq!(sm.reader().get(b"k3").unwrap(), Some(b"v3".to_vec()));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
    assert_eq!(log.try_get_log_entries(1..=3).await.unwrap().len(), 3);
}

/// On a multi-threaded runtime the flushes that applies start run on the blocking pool while
/// applying goes on: every value stays readable throughout (from the pending writes, the frozen
/// ones being flushed, or sled), and a reopened store has all of them and the applied id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_go_on_while_earlier_writes_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = 6 * chatsdk_storage::FLUSH_KEYS as u64;
    {
        let (_store, _log, mut sm) = open(dir.path(), 3);
        let reader = sm.reader();
        for i in 1..=keys {
            sm.apply([normal(1, i, &format!("k{i}=v{i}"))])
                .await
                .unwrap();
            // The newest write and one from several flushes ago, whichever layer holds them.
            assert_eq!(
                reader.get(format!("k{i}").as_bytes()).unwrap(),
                Some(format!("v{i}").into_bytes())
            );
            let old = i
                .saturating_sub(3 * chatsdk_storage::FLUSH_KEYS as u64)
                .max(1);
            assert_eq!(
                reader.get(format!("k{old}").as_bytes()).unwrap(),
                Some(format!("v{old}").into_bytes())
            );
        }
        let all = reader.scan_prefix(b"k").unwrap();
        assert_eq!(all.len() as u64, keys);
        // Overwrites and deletes reach sled in order too.
        sm.apply([normal(1, keys + 1, "k1=again")]).await.unwrap();
    }
    let (_store, _log, mut sm) = open(dir.path(), 3);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(keys + 1));
    let reader = sm.reader();
    assert_eq!(reader.scan_prefix(b"k").unwrap().len() as u64, keys);
    assert_eq!(reader.get(b"k1").unwrap(), Some(b"again".to_vec()));
    assert_eq!(
        reader.get(format!("k{keys}").as_bytes()).unwrap(),
        Some(format!("v{keys}").into_bytes())
    );
}

#[tokio::test]
async fn groups_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
    let mut a = StateMachineStore::open(&store, 1, Arc::new(PutApplier)).unwrap();
    let b = StateMachineStore::open(&store, 2, Arc::new(PutApplier)).unwrap();
    a.apply([normal(1, 1, "x=1")]).await.unwrap();
    assert_eq!(a.reader().get(b"x").unwrap(), Some(b"1".to_vec()));
    assert_eq!(b.reader().get(b"x").unwrap(), None);
}

#[tokio::test]
async fn snapshot_moves_state_to_another_node() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let (_s1, _l1, mut src) = open(src_dir.path(), 3);
    let (_s2, _l2, mut dst) = open(dst_dir.path(), 3);
    src.apply((1..=50).map(|i| normal(2, i, &format!("key{i:03}=value{i}"))))
        .await
        .unwrap();
    // Stale keys on the receiver must be gone after the install.
    dst.apply([normal(1, 1, "stale=yes")]).await.unwrap();

    let mut builder = src.get_snapshot_builder().await;
    // The source keeps applying while the snapshot is built; the built snapshot is at index 50.
    src.apply([normal(2, 51, "late=1")]).await.unwrap();
    let built = builder.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(50));

    // Read now, the snapshot is of the state now: index 51, with the late key.
    let snapshot = src.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(51));
    dst.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    let (applied, _) = dst.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(51));
    let reader = dst.reader();
    assert_eq!(reader.scan_prefix(b"key").unwrap().len(), 50);
    assert_eq!(reader.get(b"stale").unwrap(), None);
    assert_eq!(reader.get(b"late").unwrap(), Some(b"1".to_vec()));
    let current = dst.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);

    // Nothing applied since: the same snapshot again, and after a restart of the source.
    let again = src.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(again.meta, snapshot.meta);
    drop((builder, _s1, _l1, src));
    let (_s1, _l1, mut src) = open(src_dir.path(), 3);
    let reopened = src.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(reopened.meta, snapshot.meta);
    assert_eq!(
        bytes_of(reopened.snapshot).await,
        bytes_of(again.snapshot).await
    );
}

/// The bytes of a snapshot's file.
async fn bytes_of(file: Box<tokio::fs::File>) -> Vec<u8> {
    let mut file = file.into_std().await;
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

/// A file holding `bytes`, as a snapshot's data.
fn file_of(bytes: &[u8]) -> Box<tokio::fs::File> {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    Box::new(tokio::fs::File::from_std(file))
}

/// A built snapshot carries no data (the keys are copied when it is read): installing it fails
/// instead of emptying the receiver.
#[tokio::test]
async fn built_snapshot_data_is_not_installable() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let (_s1, _l1, mut src) = open(src_dir.path(), 3);
    let (_s2, _l2, mut dst) = open(dst_dir.path(), 3);
    src.apply([normal(1, 1, "a=1")]).await.unwrap();
    dst.apply([normal(1, 1, "b=2")]).await.unwrap();
    let built = src
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert!(dst
        .install_snapshot(&built.meta, built.snapshot)
        .await
        .is_err());
    assert_eq!(dst.reader().get(b"b").unwrap(), Some(b"2".to_vec()));
}

#[tokio::test]
async fn corrupted_snapshot_is_refused() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let (_s1, _l1, mut src) = open(src_dir.path(), 3);
    let (_s2, _l2, mut dst) = open(dst_dir.path(), 3);
    src.apply([normal(1, 1, "a=1")]).await.unwrap();
    src.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let snapshot = src.get_current_snapshot().await.unwrap().unwrap();
    let mut bytes = bytes_of(snapshot.snapshot).await;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let res = dst.install_snapshot(&snapshot.meta, file_of(&bytes)).await;
    assert!(res.is_err(), "a corrupted snapshot was installed");
    let (applied, _) = dst.applied_state().await.unwrap();
    assert_eq!(applied, None);
}

/// The Raft log's segment files and the offsets of their records.
fn log_records(dir: &std::path::Path) -> (std::path::PathBuf, Vec<(usize, usize)>) {
    let seg_dir = dir.join("raft-log");
    let mut segments: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let path = segments.pop().unwrap();
    let data = std::fs::read(&path).unwrap();
    let mut at = 0;
    let mut records = Vec::new();
    while at < data.len() {
        // `[len u32][crc32 of len u32][record]`.
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            // The zero-filled space after the last record.
            break;
        }
        records.push((at, 8 + len));
        at += 8 + len;
    }
    (path, records)
}

fn flip_byte_of_record(dir: &std::path::Path, n: usize) {
    let (path, records) = log_records(dir);
    let (at, len) = records[n];
    let mut data = std::fs::read(&path).unwrap();
    data[at + len / 2 + 2] ^= 0x01;
    std::fs::write(&path, data).unwrap();
}

#[tokio::test]
async fn corrupted_log_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, mut log, _sm) = open(dir.path(), 5);
        log.blocking_append([
            normal(1, 1, "a=1"),
            normal(1, 2, "b=2"),
            normal(1, 3, "c=3"),
        ])
        .await
        .unwrap();
    }
    {
        // Damaged while the node runs: the read that meets it fails, the others work.
        let (_store, mut log, _sm) = open(dir.path(), 5);
        flip_byte_of_record(dir.path(), 1);
        assert_eq!(log.try_get_log_entries(1..2).await.unwrap().len(), 1);
        assert!(log.try_get_log_entries(1..=3).await.is_err());
    }
    // Damaged before a start, with acknowledged records after it: opening is refused instead of
    // dropping them as if they had never been written.
    let err = Store::open(&StoreConfig::new(dir.path())).err().unwrap();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn a_torn_last_append_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, mut log, _sm) = open(dir.path(), 5);
        log.blocking_append([normal(1, 1, "a=1"), normal(1, 2, "b=2")])
            .await
            .unwrap();
    }
    let (path, records) = log_records(dir.path());
    let (at, len) = *records.last().unwrap();
    let data = std::fs::read(&path).unwrap();
    // The crash came half-way through writing the last entry.
    std::fs::write(&path, &data[..at + len / 2]).unwrap();
    let (_store, mut log, _sm) = open(dir.path(), 5);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), Some(1));
    log.blocking_append([normal(2, 2, "b=3")]).await.unwrap();
    let entries = log.try_get_log_entries(1..=2).await.unwrap();
    assert_eq!(entries[1].log_id.leader_id.term, 2);
}
