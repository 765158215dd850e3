//! The key-value view of a group's state machine.
//!
//! An [`Applier`](crate::Applier) reads and writes through a [`KvBatch`]: writes are buffered in
//! an overlay (reads see them) and reach sled together with the group's
//! applied log id, so a crash never leaves the application's keys and the applied position out of
//! step. Readers outside Raft use a [`GroupReader`]. Application keys live under the `d` prefix of
//! the group's `sm` tree; values are framed by [`crate::record`] and checked on every read.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::record;
use crate::StoreError;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Prefix of application keys in a group's `sm` tree.
pub(crate) const DATA_PREFIX: u8 = b'd';

pub(crate) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

/// Buffered writes of one `apply` call, layered over the group's tree.
pub struct KvBatch<'a> {
    tree: &'a sled::Tree,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> KvBatch<'a> {
    pub(crate) fn new(tree: &'a sled::Tree) -> Self {
        Self {
            tree,
            overlay: BTreeMap::new(),
        }
    }

    /// Reads a key, seeing this batch's own writes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        read_value(self.tree, key)
    }

    /// Writes a key.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.overlay.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: &[u8]) {
        self.overlay.insert(key.to_vec(), None);
    }

    /// Every live key with `prefix`, in key order, merged with this batch's writes.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = scan(self.tree, prefix)?.into_iter().collect();
        let upper = prefix_upper_bound(prefix);
        let range = (
            Bound::Included(prefix.to_vec()),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
        );
        for (k, v) in self.overlay.range(range) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// The buffered writes as `(tree key, framed value or None for a delete)`.
    pub(crate) fn into_writes(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.overlay
            .into_iter()
            .map(|(k, v)| (data_key(&k), v.map(|v| record::frame(&v))))
            .collect()
    }
}

/// Read access to a group's application keys, for the layers above Raft.
///
/// Reads see whatever this replica has applied; for a linearizable read, first wait for the
/// group's read barrier in the cluster layer.
#[derive(Clone)]
pub struct GroupReader {
    tree: sled::Tree,
}

impl GroupReader {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Reads a key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        read_value(&self.tree, key)
    }

    /// Every key with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        scan(&self.tree, prefix)
    }

    /// At most `limit` keys `k` with `from <= k < to`, in key order, or in reverse order (from the
    /// largest) when `reverse` is set. Keys are returned without any prefix removed.
    pub fn range(
        &self,
        from: &[u8],
        to: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let iter = self.tree.range(data_key(from)..data_key(to));
        let decode =
            |item: Result<(sled::IVec, sled::IVec), sled::Error>| -> Result<KeyValue, StoreError> {
                let (k, v) = item?;
                Ok((k[1..].to_vec(), record::unframe(&v)?.to_vec()))
            };
        if reverse {
            iter.rev().take(limit).map(decode).collect()
        } else {
            iter.take(limit).map(decode).collect()
        }
    }
}

fn read_value(tree: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match tree.get(data_key(key))? {
        Some(raw) => Ok(Some(record::unframe(&raw)?.to_vec())),
        None => Ok(None),
    }
}

fn scan(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
    tree.scan_prefix(data_key(prefix))
        .map(|item| {
            let (k, v) = item?;
            Ok((k[1..].to_vec(), record::unframe(&v)?.to_vec()))
        })
        .collect()
}

/// The smallest key greater than every key starting with `prefix` (None if there is none).
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_reads_its_own_writes_and_merges_scans() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(data_key(b"a/1"), record::frame(b"one"))
            .unwrap();
        tree.insert(data_key(b"a/2"), record::frame(b"two"))
            .unwrap();
        tree.insert(data_key(b"b/1"), record::frame(b"other"))
            .unwrap();

        let mut batch = KvBatch::new(&tree);
        batch.put(b"a/3", b"three");
        batch.delete(b"a/1");
        assert_eq!(batch.get(b"a/3").unwrap(), Some(b"three".to_vec()));
        assert_eq!(batch.get(b"a/1").unwrap(), None);
        let keys: Vec<Vec<u8>> = batch
            .scan_prefix(b"a/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a/2".to_vec(), b"a/3".to_vec()]);

        for (key, value) in batch.into_writes() {
            match value {
                Some(v) => tree.insert(key, v).unwrap(),
                None => tree.remove(key).unwrap(),
            };
        }
        let reader = GroupReader::new(tree.clone());
        assert_eq!(reader.get(b"a/3").unwrap(), Some(b"three".to_vec()));
        assert_eq!(reader.scan_prefix(b"a/").unwrap().len(), 2);
        let newest = reader.range(b"a/", b"a0", true, 1).unwrap();
        assert_eq!(newest, vec![(b"a/3".to_vec(), b"three".to_vec())]);
        let from_2 = reader.range(b"a/2", b"a0", false, 10).unwrap();
        assert_eq!(from_2.len(), 2);
    }

    #[test]
    fn corrupted_value_is_an_error_not_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut bad = record::frame(b"value");
        bad[6] ^= 0x40;
        tree.insert(data_key(b"k"), bad).unwrap();
        let reader = GroupReader::new(tree);
        assert!(matches!(reader.get(b"k"), Err(StoreError::Checksum { .. })));
        assert!(reader.scan_prefix(b"").is_err());
    }

    #[test]
    fn upper_bound_of_prefixes() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff, 0xff]), None);
        assert_eq!(prefix_upper_bound(b""), None);
    }
}
