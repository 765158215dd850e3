//! The key-value view of a group's state machine.
//!
//! An [`Applier`](crate::Applier) reads and writes through a [`KvBatch`]: the writes of one
//! `apply` call are buffered in an overlay (its reads see them). When the call ends they join the
//! group's [`Pending`] writes: applied, visible to every reader, not yet in sled. The state machine
//! moves pending writes into sled in one atomic batch together with the applied log id every so
//! often (see `StateMachineStore`), so sled never holds part of an apply, and a send costs no sled
//! write of its own on the apply path. Readers outside Raft use a [`GroupReader`], which sees the
//! pending writes over the tree. Application keys live under the `d` prefix of the group's `sm`
//! tree; values are framed by [`crate::record`] and checked on every read.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::record;
use crate::StoreError;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A buffered write: the new value, or `None` for a delete.
type Write = Option<Vec<u8>>;

/// Prefix of application keys in a group's `sm` tree.
pub(crate) const DATA_PREFIX: u8 = b'd';

pub(crate) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

/// Applied writes of a group that are not in sled yet, by application key (unframed values).
///
/// The state machine is its only writer; readers take the read lock for one lookup or one range
/// copy. After a crash these writes are gone, and so is the applied position that covers them:
/// openraft applies the same entries again from the log.
#[derive(Default)]
pub(crate) struct Pending {
    writes: RwLock<BTreeMap<Vec<u8>, Write>>,
    /// Counts the changes readers can see (applies that wrote, installed snapshots): a cache of
    /// what was read stays valid while it does not move (see [`GroupReader::version`]).
    version: AtomicU64,
}

impl Pending {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Vec<u8>, Write>> {
        self.writes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Write>> {
        self.writes.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The pending write of `key`, if there is one.
    fn lookup(&self, key: &[u8]) -> Option<Write> {
        self.read().get(key).cloned()
    }

    /// The pending writes with `from <= key < to` (`to` unbounded when `None`), in key order.
    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Vec<(Vec<u8>, Write)> {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        self.read()
            .range::<[u8], _>((Bound::Included(from), upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Adds the writes of one finished `apply` call.
    pub(crate) fn absorb(&self, overlay: BTreeMap<Vec<u8>, Write>) {
        if overlay.is_empty() {
            return;
        }
        {
            let mut writes = self.write();
            if writes.is_empty() {
                *writes = overlay;
            } else {
                writes.extend(overlay);
            }
        }
        self.changed();
    }

    /// Records that readers may now see different values (after they became visible).
    pub(crate) fn changed(&self) {
        self.version.fetch_add(1, AtomicOrdering::Release);
    }

    /// How many keys are pending.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// Every pending write as `(tree key, framed value or None for a delete)`.
    pub(crate) fn tree_writes(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.read()
            .iter()
            .map(|(k, v)| (data_key(k), v.as_deref().map(record::frame)))
            .collect()
    }

    /// Forgets every pending write (they are in sled now, or replaced by a snapshot).
    pub(crate) fn clear(&self) {
        self.write().clear();
    }
}

/// What a group's readers read: its tree, with the pending writes over it.
#[derive(Clone)]
pub(crate) struct View {
    pub(crate) tree: sled::Tree,
    pub(crate) pending: Arc<Pending>,
}

impl View {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        View {
            tree,
            pending: Arc::new(Pending::default()),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(write) = self.pending.lookup(key) {
            return Ok(write);
        }
        match self.tree.get(data_key(key))? {
            Some(raw) => Ok(Some(record::unframe(&raw)?.to_vec())),
            None => Ok(None),
        }
    }

    /// At most `limit` live keys `k` with `from <= k < to` (`to` unbounded when `None`), in key
    /// order, or from the largest when `reverse` is set.
    fn range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let upper = to.map_or(Bound::Unbounded, |t| Bound::Excluded(data_key(t)));
        let iter = self
            .tree
            .range::<Vec<u8>, _>((Bound::Included(data_key(from)), upper))
            .map(|item| -> Result<KeyValue, StoreError> {
                let (k, v) = item?;
                Ok((k[1..].to_vec(), record::unframe(&v)?.to_vec()))
            });
        let mut pending = self.pending.range(from, to);
        if reverse {
            pending.reverse();
            merge(iter.rev(), pending, true, limit)
        } else {
            merge(iter, pending, false, limit)
        }
    }
}

/// Merges stored items with pending writes over the same range, both in the same order
/// (descending when `reverse`): a pending write replaces the stored value of its key, a pending
/// delete hides it. At most `limit` items.
fn merge(
    stored: impl Iterator<Item = Result<KeyValue, StoreError>>,
    pending: Vec<(Vec<u8>, Write)>,
    reverse: bool,
    limit: usize,
) -> Result<Vec<KeyValue>, StoreError> {
    let order = |a: &[u8], b: &[u8]| if reverse { b.cmp(a) } else { a.cmp(b) };
    let mut stored: Peekable<_> = stored.peekable();
    let mut pending = pending.into_iter().peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        let next_stored = match stored.peek() {
            Some(Ok((k, _))) => Some(k.as_slice()),
            Some(Err(_)) => {
                if let Some(Err(e)) = stored.next() {
                    return Err(e);
                }
                None
            }
            None => None,
        };
        let take_pending = match (next_stored, pending.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(s), Some((p, _))) => match order(p, s) {
                Ordering::Less => true,
                Ordering::Equal => {
                    // The pending write replaces the stored value.
                    stored.next();
                    true
                }
                Ordering::Greater => false,
            },
        };
        if take_pending {
            if let Some((k, Some(v))) = pending.next() {
                out.push((k, v));
            }
        } else if let Some(item) = stored.next() {
            out.push(item?);
        }
    }
    Ok(out)
}

/// Buffered writes of one `apply` call, layered over the group's pending writes and tree.
pub struct KvBatch<'a> {
    view: &'a View,
    overlay: BTreeMap<Vec<u8>, Write>,
}

impl<'a> KvBatch<'a> {
    pub(crate) fn new(view: &'a View) -> Self {
        Self {
            view,
            overlay: BTreeMap::new(),
        }
    }

    /// Reads a key, seeing this batch's own writes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.get(key),
        }
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
        let upper = prefix_upper_bound(prefix);
        let stored = self
            .view
            .range(prefix, upper.as_deref(), false, usize::MAX)?;
        let upper = upper.map_or(Bound::Unbounded, Bound::Excluded);
        let own: Vec<(Vec<u8>, Write)> = self
            .overlay
            .range((Bound::Included(prefix.to_vec()), upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        merge(stored.into_iter().map(Ok), own, false, usize::MAX)
    }

    /// This call's writes, for [`Pending::absorb`].
    pub(crate) fn into_overlay(self) -> BTreeMap<Vec<u8>, Write> {
        self.overlay
    }
}

/// Read access to a group's application keys, for the layers above Raft.
///
/// Reads see whatever this replica has applied; for a linearizable read, first wait for the
/// group's read barrier in the cluster layer.
#[derive(Clone)]
pub struct GroupReader {
    view: View,
}

impl GroupReader {
    pub(crate) fn new(view: View) -> Self {
        Self { view }
    }

    /// Reads a key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.view.get(key)
    }

    /// A number that moves whenever what this reader reads may have changed. A value read after
    /// `version()` returned `v` may be kept for as long as `version()` still returns `v` (check
    /// it again after the read: a change during the read may or may not be in it).
    pub fn version(&self) -> u64 {
        self.view.pending.version.load(AtomicOrdering::Acquire)
    }

    /// Every key with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let upper = prefix_upper_bound(prefix);
        self.view.range(prefix, upper.as_deref(), false, usize::MAX)
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
        self.view.range(from, Some(to), reverse, limit)
    }
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

    fn stored(tree: &sled::Tree, pairs: &[(&[u8], &[u8])]) {
        for (k, v) in pairs {
            tree.insert(data_key(k), record::frame(v)).unwrap();
        }
    }

    fn keys(items: Vec<KeyValue>) -> Vec<Vec<u8>> {
        items.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn batch_reads_its_own_writes_and_merges_scans() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        stored(
            &tree,
            &[(b"a/1", b"one"), (b"a/2", b"two"), (b"b/1", b"other")],
        );
        let view = View::new(tree);

        let mut batch = KvBatch::new(&view);
        batch.put(b"a/3", b"three");
        batch.delete(b"a/1");
        assert_eq!(batch.get(b"a/3").unwrap(), Some(b"three".to_vec()));
        assert_eq!(batch.get(b"a/1").unwrap(), None);
        let scanned = batch.scan_prefix(b"a/").unwrap();
        assert_eq!(keys(scanned), vec![b"a/2".to_vec(), b"a/3".to_vec()]);

        let reader = GroupReader::new(view.clone());
        let before = reader.version();
        view.pending.absorb(batch.into_overlay());
        assert_ne!(reader.version(), before);
        assert_eq!(reader.get(b"a/3").unwrap(), Some(b"three".to_vec()));
        assert_eq!(reader.get(b"a/1").unwrap(), None);
        assert_eq!(reader.scan_prefix(b"a/").unwrap().len(), 2);
        let newest = reader.range(b"a/", b"a0", true, 1).unwrap();
        assert_eq!(newest, vec![(b"a/3".to_vec(), b"three".to_vec())]);
        let from_2 = reader.range(b"a/2", b"a0", false, 10).unwrap();
        assert_eq!(from_2.len(), 2);

        // A later batch reads the pending writes as it reads sled.
        let mut next = KvBatch::new(&view);
        assert_eq!(next.get(b"a/3").unwrap(), Some(b"three".to_vec()));
        next.put(b"a/0", b"zero");
        let scanned = next.scan_prefix(b"a/").unwrap();
        assert_eq!(
            keys(scanned),
            vec![b"a/0".to_vec(), b"a/2".to_vec(), b"a/3".to_vec()]
        );
    }

    /// Pending writes and deletes merge with the tree in both directions and within limits.
    #[test]
    fn ranges_merge_pending_writes_over_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        stored(
            &tree,
            &[
                (b"k1", b"1"),
                (b"k3", b"3"),
                (b"k5", b"5"),
                (b"k7", b"7"),
                (b"z", b"z"),
            ],
        );
        let view = View::new(tree);
        let mut batch = KvBatch::new(&view);
        batch.put(b"k2", b"2");
        batch.put(b"k5", b"five");
        batch.delete(b"k7");
        batch.put(b"k8", b"8");
        view.pending.absorb(batch.into_overlay());
        let reader = GroupReader::new(view);

        let all = reader.range(b"k", b"l", false, 100).unwrap();
        let expect: Vec<KeyValue> = [
            ("k1", "1"),
            ("k2", "2"),
            ("k3", "3"),
            ("k5", "five"),
            ("k8", "8"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(all, expect);
        let mut reversed = expect.clone();
        reversed.reverse();
        assert_eq!(reader.range(b"k", b"l", true, 100).unwrap(), reversed);
        assert_eq!(
            reader.range(b"k", b"l", true, 2).unwrap(),
            reversed[..2].to_vec()
        );
        assert_eq!(
            reader.range(b"k2", b"k6", false, 2).unwrap(),
            expect[1..3].to_vec()
        );
        assert_eq!(reader.scan_prefix(b"k").unwrap(), expect);
        assert_eq!(reader.scan_prefix(b"").unwrap().len(), 6);
    }

    #[test]
    fn corrupted_value_is_an_error_not_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut bad = record::frame(b"value");
        bad[6] ^= 0x40;
        tree.insert(data_key(b"k"), bad).unwrap();
        let reader = GroupReader::new(View::new(tree));
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
