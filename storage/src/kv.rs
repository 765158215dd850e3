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

use crate::absent::{AbsentFilter, Tracked};
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

/// Pending writes by application key (unframed values).
type Writes = BTreeMap<Vec<u8>, Write>;

/// Applied writes of a group that are not in sled yet, by application key (unframed values).
///
/// Two layers: `active` takes the writes of new applies, and `frozen`, when set, holds the
/// writes a flush is moving into sled off the state machine's task; readers see `active` over
/// `frozen` over the tree, and the flush drops `frozen` only once sled has it, so no write is
/// ever out of sight. The state machine is the only writer; readers take the read lock for one
/// lookup or one range copy. After a crash these writes are gone, and so is the applied position
/// that covers them: openraft applies the same entries again from the log.
#[derive(Default)]
pub(crate) struct Pending {
    layers: RwLock<Layers>,
    /// Counts the changes readers can see (applies that wrote, installed snapshots): a cache of
    /// what was read stays valid while it does not move (see [`GroupReader::version`]).
    version: AtomicU64,
}

#[derive(Default)]
struct Layers {
    active: Writes,
    frozen: Option<Arc<Writes>>,
}

/// Pending writes taken out of the active layer for one flush (see [`Pending::freeze`]).
pub(crate) struct Frozen(Arc<Writes>);

impl Frozen {
    /// Its writes as `(tree key, framed value or None for a delete)`.
    pub(crate) fn tree_writes(&self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> + '_ {
        self.0
            .iter()
            .map(|(k, v)| (data_key(k), v.as_deref().map(record::frame)))
    }
}

impl Pending {
    fn read(&self) -> RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The pending write of `key`, if there is one.
    fn lookup(&self, key: &[u8]) -> Option<Write> {
        let layers = self.read();
        match layers.active.get(key) {
            Some(w) => Some(w.clone()),
            None => layers.frozen.as_ref().and_then(|f| f.get(key).cloned()),
        }
    }

    /// The pending writes with `from <= key < to` (`to` unbounded when `None`), in key order.
    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Vec<(Vec<u8>, Write)> {
        let bounds = || {
            (
                Bound::Included(from),
                to.map_or(Bound::Unbounded, Bound::Excluded),
            )
        };
        let layers = self.read();
        let active = layers.active.range::<[u8], _>(bounds());
        match &layers.frozen {
            None => active.map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(frozen) => {
                let mut merged: BTreeMap<&Vec<u8>, &Write> =
                    frozen.range::<[u8], _>(bounds()).collect();
                merged.extend(active);
                merged
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
        }
    }

    /// Adds the writes of one finished `apply` call (through [`View::absorb`]).
    fn absorb(&self, overlay: Writes) {
        if overlay.is_empty() {
            return;
        }
        {
            let mut layers = self.write();
            if layers.active.is_empty() {
                layers.active = overlay;
            } else {
                layers.active.extend(overlay);
            }
        }
        self.changed();
    }

    /// Records that readers may now see different values (after they became visible).
    pub(crate) fn changed(&self) {
        self.version.fetch_add(1, AtomicOrdering::Release);
    }

    /// How many keys the active layer holds.
    pub(crate) fn len(&self) -> usize {
        self.read().active.len()
    }

    /// Moves the active writes into the frozen layer for a flush, or `None` while an earlier
    /// flush still holds it. Readers keep seeing the writes there until [`Pending::thaw`].
    pub(crate) fn freeze(&self) -> Option<Frozen> {
        let mut layers = self.write();
        if layers.frozen.is_some() {
            return None;
        }
        let frozen = Arc::new(std::mem::take(&mut layers.active));
        layers.frozen = Some(frozen.clone());
        Some(Frozen(frozen))
    }

    /// Drops the frozen layer once sled holds its writes (or they were discarded).
    pub(crate) fn thaw(&self, done: &Frozen) {
        let mut layers = self.write();
        if layers
            .frozen
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &done.0))
        {
            layers.frozen = None;
        }
    }

    /// Forgets every pending write (replaced by a snapshot).
    pub(crate) fn clear(&self) {
        let mut layers = self.write();
        layers.active.clear();
        layers.frozen = None;
    }
}

/// What a group's readers read: its tree, with the pending writes over it.
#[derive(Clone)]
pub(crate) struct View {
    /// Replaced whole when a snapshot is installed (into a new tree, see
    /// [`crate::state_machine`]); readers take the current one per read.
    tree: Arc<RwLock<sled::Tree>>,
    pub(crate) pending: Arc<Pending>,
    /// Answers "not stored" for most reads of tracked keys that do not exist.
    pub(crate) absent: Arc<AbsentFilter>,
}

impl View {
    /// A view that tracks no keys.
    #[cfg(test)]
    pub(crate) fn new(tree: sled::Tree) -> Self {
        View::tracking(tree, None)
    }

    /// A view whose reads of the keys `tracks` names skip sled when the group's filter knows
    /// them absent (see [`crate::absent`]). Starts the filter's scan of the tree.
    pub(crate) fn tracking(tree: sled::Tree, tracks: Option<Tracked>) -> Self {
        let absent = AbsentFilter::new(tracks);
        absent.rebuild(tree.clone());
        View {
            tree: Arc::new(RwLock::new(tree)),
            pending: Arc::new(Pending::default()),
            absent,
        }
    }

    /// The group's tree as it is now.
    pub(crate) fn tree(&self) -> sled::Tree {
        self.tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `tree` the group's tree for every reader; returns the one it replaces.
    pub(crate) fn replace_tree(&self, tree: sled::Tree) -> sled::Tree {
        let mut current = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *current, tree)
    }

    /// Adds the writes of one finished `apply` call to the pending writes (and their tracked
    /// keys to the filter first, so that no reader finds a key the filter calls absent).
    pub(crate) fn absorb(&self, overlay: Writes) {
        for (key, write) in &overlay {
            if write.is_some() {
                self.absent.insert(key);
            }
        }
        self.pending.absorb(overlay);
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(write) = self.pending.lookup(key) {
            return Ok(write);
        }
        if self.absent.absent(key) {
            return Ok(None);
        }
        match self.tree().get(data_key(key))? {
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
            .tree()
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

    /// Adds a logical key to the group's absent-key filter (see [`crate::absent`]): call it for
    /// every entry the applier packs into a value and later asks about with
    /// [`KvBatch::surely_absent`]. It takes effect at once (a filter only ever gains keys, so a
    /// batch that is not committed costs a false "maybe", nothing else).
    pub fn track(&mut self, logical: &[u8]) {
        self.view.absent.insert_logical(logical);
    }

    /// Whether the logical key was certainly never [`KvBatch::track`]ed nor found by the
    /// filter's scan of the stored values (`false`: it may have been, look it up).
    pub fn surely_absent(&self, logical: &[u8]) -> bool {
        self.view.absent.absent_logical(logical)
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
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
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

    /// Frozen writes (a flush in flight) stay visible under newer active writes until thawed,
    /// and only then does the tree answer for them.
    #[test]
    fn frozen_writes_stay_visible_until_thawed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        stored(&tree, &[(b"a", b"old-a"), (b"d", b"old-d")]);
        let view = View::new(tree.clone());
        let mut first = KvBatch::new(&view);
        first.put(b"a", b"a1");
        first.put(b"b", b"b1");
        first.delete(b"d");
        view.pending.absorb(first.into_overlay());
        let frozen = view.pending.freeze().unwrap();
        assert!(view.pending.freeze().is_none(), "one flush at a time");
        assert_eq!(view.pending.len(), 0);
        let mut second = KvBatch::new(&view);
        assert_eq!(second.get(b"a").unwrap(), Some(b"a1".to_vec()));
        second.put(b"b", b"b2");
        second.put(b"c", b"c2");
        view.pending.absorb(second.into_overlay());
        let reader = GroupReader::new(view.clone());
        let expect = |b: &[u8]| -> Vec<KeyValue> {
            vec![
                (b"a".to_vec(), b"a1".to_vec()),
                (b"b".to_vec(), b.to_vec()),
                (b"c".to_vec(), b"c2".to_vec()),
            ]
        };
        assert_eq!(reader.scan_prefix(b"").unwrap(), expect(b"b2"));
        assert_eq!(reader.get(b"d").unwrap(), None);
        // The flush: sled gets the frozen writes, then the layer goes.
        for (k, v) in frozen.tree_writes() {
            match v {
                Some(v) => tree.insert(k, v).unwrap(),
                None => tree.remove(k).unwrap(),
            };
        }
        assert_eq!(reader.scan_prefix(b"").unwrap(), expect(b"b2"));
        view.pending.thaw(&frozen);
        assert_eq!(reader.scan_prefix(b"").unwrap(), expect(b"b2"));
        assert_eq!(reader.range(b"a", b"z", true, 2).unwrap().len(), 2);
        assert_eq!(reader.get(b"d").unwrap(), None);
        assert!(view.pending.freeze().is_some());
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
