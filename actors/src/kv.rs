//! The key-value view the state machines of this crate apply commands through.
//!
//! In a node it is the storage layer's [`KvBatch`] (writes buffered and committed with the
//! applied log position); in unit and property tests it is an in-memory map, so the
//! transitions can be driven directly, without sled or Raft.

use chatsdk_cluster::{GroupReader, KvBatch, StoreError};

/// A key and its value.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

/// Reads and writes of one apply.
pub(crate) trait Kv {
    /// Reads a key, seeing this apply's own writes.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a key.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Deletes a key.
    fn delete(&mut self, key: &[u8]);
    /// Every key with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;
    /// Adds a logical key to the group's absent-key filter ([`KvBatch::track`]).
    fn track(&mut self, _logical: &[u8]) {}
    /// Whether a logical key was certainly never tracked ([`KvBatch::surely_absent`]); without
    /// a filter, never.
    fn surely_absent(&self, _logical: &[u8]) -> bool {
        false
    }
}

/// Reads of a replica's state outside an apply (a [`GroupReader`]; an in-memory map in tests).
pub trait KvRead {
    /// Reads a key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keys in `from..to`, in key order (descending when `reverse`), at most `limit`.
    fn range(
        &self,
        from: &[u8],
        to: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;
    /// Every key with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;
    /// The first `limit` keys with `prefix`, in key order: reads no more than it returns.
    fn scan_prefix_limit(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        match chatsdk_storage::kv::prefix_upper_bound(prefix) {
            Some(end) => self.range(prefix, &end, false, limit),
            None => Ok(self.scan_prefix(prefix)?.into_iter().take(limit).collect()),
        }
    }
}

impl KvRead for GroupReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        GroupReader::get(self, key)
    }
    fn range(
        &self,
        from: &[u8],
        to: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        GroupReader::range(self, from, to, reverse, limit)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        GroupReader::scan_prefix(self, prefix)
    }
}

impl Kv for KvBatch<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        KvBatch::get(self, key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        KvBatch::put(self, key, value)
    }
    fn delete(&mut self, key: &[u8]) {
        KvBatch::delete(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        KvBatch::scan_prefix(self, prefix)
    }
    fn track(&mut self, logical: &[u8]) {
        KvBatch::track(self, logical)
    }
    fn surely_absent(&self, logical: &[u8]) -> bool {
        KvBatch::surely_absent(self, logical)
    }
}

/// An in-memory state, for tests of the reads.
#[cfg(test)]
impl KvRead for std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(std::collections::BTreeMap::get(self, key).cloned())
    }
    fn range(
        &self,
        from: &[u8],
        to: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let rows = std::collections::BTreeMap::range(self, from.to_vec()..to.to_vec());
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            rows.rev().take(limit).map(clone).collect()
        } else {
            rows.take(limit).map(clone).collect()
        })
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Kv::scan_prefix(self, prefix)
    }
}

/// An in-memory view, for tests of the transitions.
#[cfg(test)]
impl Kv for std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(std::collections::BTreeMap::get(self, key).cloned())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.insert(key.to_vec(), value.to_vec());
    }
    fn delete(&mut self, key: &[u8]) {
        self.remove(key);
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_limited_prefix_scan_returns_the_first_keys_of_the_prefix_only() {
        let mut kv: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for k in [
            &b"a\x01"[..],
            b"a\x02",
            b"a\xff",
            b"a\xff\xff",
            b"b",
            b"\xff\x01",
            b"\xff\x02",
        ] {
            Kv::put(&mut kv, k, b"v");
        }
        let keys = |v: Vec<KeyValue>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(kv.scan_prefix_limit(b"a", 2).unwrap()),
            vec![b"a\x01".to_vec(), b"a\x02".to_vec()]
        );
        assert_eq!(keys(kv.scan_prefix_limit(b"a", 10).unwrap()).len(), 4);
        assert_eq!(
            keys(kv.scan_prefix_limit(b"\xff", 1).unwrap()),
            vec![b"\xff\x01".to_vec()],
            "a prefix with no end key"
        );
        assert!(kv.scan_prefix_limit(b"c", 5).unwrap().is_empty());
    }
}
