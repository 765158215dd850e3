//! A membership filter over the keys a group's applier reads mostly when they do not exist.
//!
//! Why: an index probed before every write (a message's id, looked up in case the send is a
//! retry before the message is stored) almost never holds the key, and a miss costs a descent of
//! sled's tree: 5 % of a durable send's CPU in `perf` at 7,000 sends/s, plus the node splits the
//! descent helps with. The filter answers "certainly absent" for most of those reads without
//! touching sled.
//!
//! It never calls a present key absent. The applier names the keys it tracks
//! ([`crate::Applier::absent_keys`]); every tracked key a group writes is added when its apply's
//! writes join the pending writes, before sled can hold it, and the keys already in sled are
//! added by a scan on a thread of its own when the group opens or installs a snapshot. Until
//! that scan has ended the filter answers "maybe" for every key. Deletes are not removed (a
//! deleted key costs a false "maybe", nothing else).
//!
//! An applier may also track *logical* keys: names of entries it packs many to a stored value
//! (a stream's message-id index, see `chatsdk_actors`' `id_index`). It adds them itself during
//! an apply ([`crate::KvBatch::track`]) and asks about them ([`crate::KvBatch::surely_absent`]);
//! the opening scan finds them in the stored values through [`Tracked::logical`]. Logical keys
//! share the stages with stored keys, so they must not collide with them as byte strings.
//!
//! A Bloom filter in stages: each holds [`BITS_PER_KEY`] bits for its capacity of keys (a false
//! "maybe" for ~0.1 % of absent keys), and a full stage gets a successor twice its size, so
//! memory follows the number of tracked keys (16 bits each, 2 MB per million) and a lookup
//! checks a handful of stages. A group with more than [`MAX_KEYS`] tracked keys drops its filter
//! and reads them all from sled again, so the filter's memory stays bounded (8 MiB a group).

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use crate::kv::DATA_PREFIX;

/// Which keys a group's filter tracks.
#[derive(Clone, Copy)]
pub struct Tracked {
    /// The stored application keys whose reads the filter answers (a pure function of the key:
    /// the same answer on every call).
    pub keys: fn(&[u8]) -> bool,
    /// The logical keys held in a stored value: called by the opening scan with every stored
    /// key and its value, it passes each logical key the value holds to `add`.
    pub logical: Option<Logical>,
}

/// See [`Tracked::logical`]: `(key, value, add)`.
pub type Logical = fn(&[u8], &[u8], &mut dyn FnMut(&[u8]));

/// Bits per key of a stage's capacity (stages and capacities are powers of two).
const BITS_PER_KEY: usize = 16;
/// Bits set and checked per key (the best count for 16 bits per key is 11; 6 costs about half
/// as much per lookup, for a false "maybe" of ~0.1 % instead of ~0.05 %).
const PROBES: u64 = 6;
/// Keys the first stage holds.
const FIRST_CAPACITY: usize = 1 << 14;
/// Tracked keys past which a group gives its filter up (its stages would hold 8 MiB).
pub const MAX_KEYS: usize = 1 << 22;
/// Keys the opening scan adds between checks that the group is still open.
const SCAN_CHECK_EVERY: usize = 4096;

/// The filter of one group's tracked keys (see the module documentation).
pub(crate) struct AbsentFilter {
    tracks: Option<Tracked>,
    state: RwLock<State>,
}

struct State {
    /// Moves on every rebuild, so that a scan that was overtaken does not mark the new filter
    /// complete.
    generation: u64,
    /// The scan of the keys in sled has ended: "absent" answers may be given.
    complete: bool,
    /// Never empty, unless more than [`MAX_KEYS`] keys were tracked: then every answer is
    /// "maybe" until the next rebuild.
    stages: Vec<Stage>,
}

struct Stage {
    words: Box<[AtomicU64]>,
    /// `bits - 1`; `bits` is a power of two.
    mask: u64,
    capacity: usize,
    keys: AtomicUsize,
}

impl Stage {
    fn new(capacity: usize) -> Stage {
        let bits = (capacity * BITS_PER_KEY).next_power_of_two().max(64);
        Stage {
            words: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits as u64 - 1,
            capacity,
            keys: AtomicUsize::new(0),
        }
    }

    /// The bit positions of a key's hash (double hashing).
    fn bits(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let step = hash.rotate_left(32) | 1;
        (0..PROBES).map(move |i| hash.wrapping_add(i.wrapping_mul(step)) & self.mask)
    }

    fn insert(&self, hash: u64) {
        for bit in self.bits(hash) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
        self.keys.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.bits(hash).all(|bit| {
            self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
        })
    }

    fn full(&self) -> bool {
        self.keys.load(Ordering::Relaxed) >= self.capacity
    }
}

/// The key's hash: FxHash (eight bytes a step), which is enough for keys that end in random ids
/// and costs a tenth of SipHash on keys of ~90 bytes.
fn hash(key: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    h.finish()
}

impl AbsentFilter {
    /// A filter of the keys `tracks` names (none: every lookup answers "maybe"). It answers
    /// "maybe" until [`AbsentFilter::rebuild`] has scanned the tree.
    pub(crate) fn new(tracks: Option<Tracked>) -> Arc<AbsentFilter> {
        Arc::new(AbsentFilter {
            tracks,
            state: RwLock::new(State {
                generation: 0,
                complete: false,
                stages: vec![Stage::new(FIRST_CAPACITY)],
            }),
        })
    }

    fn tracked(&self, key: &[u8]) -> bool {
        self.tracks.is_some_and(|t| (t.keys)(key))
    }

    /// Whether `key` is certainly not stored (`false`: it may be).
    pub(crate) fn absent(&self, key: &[u8]) -> bool {
        self.tracked(key) && self.unseen(key)
    }

    /// Whether the logical key `key` was certainly never added (`false`: it may have been).
    pub(crate) fn absent_logical(&self, key: &[u8]) -> bool {
        self.tracks.is_some_and(|t| t.logical.is_some()) && self.unseen(key)
    }

    /// Adds the logical key `key`. Call before anything that holds it becomes readable.
    pub(crate) fn insert_logical(&self, key: &[u8]) {
        if self.tracks.is_some_and(|t| t.logical.is_some()) {
            self.insert_hash(hash(key));
        }
    }

    fn unseen(&self, key: &[u8]) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if !state.complete || state.stages.is_empty() {
            return false;
        }
        let h = hash(key);
        !state.stages.iter().any(|s| s.may_contain(h))
    }

    /// Adds `key` if it is tracked. Call before the key becomes readable anywhere.
    pub(crate) fn insert(&self, key: &[u8]) {
        if self.tracked(key) {
            self.insert_hash(hash(key));
        }
    }

    fn insert_hash(&self, h: u64) {
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            match state.stages.last() {
                None => return, // overflowed
                Some(last) if !last.full() => {
                    last.insert(h);
                    return;
                }
                Some(_) => {}
            }
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let Some(last) = state.stages.last() else {
            return;
        };
        if last.full() {
            let capacity = last.capacity * 2;
            let held: usize = state.stages.iter().map(|s| s.capacity).sum();
            if held + capacity > MAX_KEYS {
                state.stages = Vec::new();
                tracing::info!(
                    keys = held,
                    "a group tracks more keys than its absent-key filter holds; reading them from sled"
                );
                return;
            }
            state.stages.push(Stage::new(capacity));
        }
        if let Some(last) = state.stages.last() {
            last.insert(h);
        }
    }

    /// Starts over from the keys in `tree` (the group's `sm` tree): forgets every key, answers
    /// "maybe" until a scan of the tree on a thread of its own has added them. Keys inserted
    /// meanwhile are kept. The scan stops early if the filter is dropped.
    pub(crate) fn rebuild(self: &Arc<Self>, tree: sled::Tree) {
        let Some(tracks) = self.tracks else {
            return;
        };
        let generation = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.generation += 1;
            state.complete = false;
            state.stages = vec![Stage::new(FIRST_CAPACITY)];
            state.generation
        };
        let filter = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("absent-scan".into())
            .spawn(move || scan(filter, tree, tracks, generation));
        if let Err(e) = spawned {
            // Without the scan the filter only ever answers "maybe": slower, still correct.
            tracing::warn!(error = %e, "could not start the scan of a group's absent-key filter");
        }
    }
}

/// Adds the tracked keys of `tree` to the filter and marks it complete, unless it was dropped or
/// rebuilt meanwhile.
fn scan(filter: Weak<AbsentFilter>, tree: sled::Tree, tracks: Tracked, generation: u64) {
    let mut since_check = 0;
    let mut strong = match filter.upgrade() {
        Some(f) => f,
        None => return,
    };
    for item in tree.scan_prefix([DATA_PREFIX]) {
        let (key, value) = match item {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(error = %e, "the scan of a group's absent-key filter failed; it answers \"maybe\"");
                return;
            }
        };
        let app_key = &key[1..];
        if (tracks.keys)(app_key) {
            strong.insert_hash(hash(app_key));
        }
        if let Some(logical) = tracks.logical {
            match crate::record::unframe(&value) {
                Ok(value) => logical(app_key, value, &mut |k| strong.insert_hash(hash(k))),
                Err(e) => {
                    // Its logical keys are unknown: the filter must not answer "absent".
                    tracing::warn!(error = %e, "the scan of a group's absent-key filter met an unreadable record; it answers \"maybe\"");
                    return;
                }
            }
        }
        since_check += 1;
        if since_check == SCAN_CHECK_EVERY {
            since_check = 0;
            // Do not keep a closed group's filter (and its tree) alive.
            drop(strong);
            strong = match filter.upgrade() {
                Some(f) => f,
                None => return,
            };
        }
    }
    let mut state = strong.state.write().unwrap_or_else(|p| p.into_inner());
    if state.generation == generation {
        state.complete = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::data_key;
    use std::time::{Duration, Instant};

    fn ids(key: &[u8]) -> bool {
        key.starts_with(b"id/")
    }

    const IDS: Tracked = Tracked {
        keys: ids,
        logical: None,
    };

    /// A value under `pack/` holds logical keys separated by commas.
    fn packed(key: &[u8], value: &[u8], add: &mut dyn FnMut(&[u8])) {
        if key.starts_with(b"pack/") {
            value.split(|b| *b == b',').for_each(add);
        }
    }

    fn complete(f: &AbsentFilter) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if f.state.read().unwrap().complete {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn never_calls_a_stored_or_inserted_key_absent() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("sm").unwrap();
        for i in 0..50_000u32 {
            tree.insert(data_key(format!("id/{i}").as_bytes()), b"x".to_vec())
                .unwrap();
        }
        let f = AbsentFilter::new(Some(IDS));
        assert!(!f.absent(b"id/new"), "maybe until the scan ends");
        f.rebuild(tree.clone());
        for i in 50_000..120_000u32 {
            // Writes made while the scan runs.
            f.insert(format!("id/{i}").as_bytes());
        }
        assert!(complete(&f));
        for i in 0..120_000u32 {
            assert!(!f.absent(format!("id/{i}").as_bytes()), "id/{i}");
        }
        // Grew past its first stage, and still says absent for nearly every other key.
        assert!(f.state.read().unwrap().stages.len() > 1);
        let misses = (0..10_000u32)
            .filter(|i| !f.absent(format!("id/other-{i}").as_bytes()))
            .count();
        assert!(misses < 300, "{misses} false maybes of 10,000");
        // Keys it does not track are never called absent.
        assert!(!f.absent(b"head/1"));
    }

    #[test]
    fn a_rebuild_forgets_and_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("sm").unwrap();
        let f = AbsentFilter::new(Some(IDS));
        f.rebuild(tree.clone());
        assert!(complete(&f));
        f.insert(b"id/gone");
        assert!(!f.absent(b"id/gone"));
        // A snapshot replaced the keys: only what the tree holds now counts.
        tree.insert(data_key(b"id/from-snapshot"), b"x".to_vec())
            .unwrap();
        f.rebuild(tree.clone());
        assert!(complete(&f));
        assert!(!f.absent(b"id/from-snapshot"));
        assert!(f.absent(b"id/gone"));
    }

    #[test]
    fn past_its_bound_it_gives_up_and_says_maybe() {
        let f = AbsentFilter::new(Some(IDS));
        f.state.write().unwrap().complete = true;
        let overflowed = || f.state.read().unwrap().stages.is_empty();
        let mut inserted = 0usize;
        while !overflowed() {
            assert!(f.absent(b"id/x"), "within the bound, after {inserted} keys");
            for _ in 0..1024 {
                f.insert_hash(hash(&inserted.to_le_bytes()));
                inserted += 1;
            }
            assert!(inserted <= MAX_KEYS + 1024, "never gave up");
        }
        assert!(inserted > MAX_KEYS / 2, "gave up at {inserted} keys");
        assert!(!f.absent(b"id/x"));
        f.insert(b"id/one-more");
        assert!(!f.absent(b"id/one-more"));
    }

    #[test]
    fn logical_keys_are_found_in_stored_values_and_added_by_appliers() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("sm").unwrap();
        for i in 0..2_000u32 {
            let value = format!("L{i}a,L{i}b");
            tree.insert(
                data_key(format!("pack/{i}").as_bytes()),
                crate::record::frame(value.as_bytes()),
            )
            .unwrap();
        }
        let f = AbsentFilter::new(Some(Tracked {
            keys: ids,
            logical: Some(packed),
        }));
        f.rebuild(tree.clone());
        f.insert_logical(b"added");
        assert!(complete(&f));
        for i in 0..2_000u32 {
            assert!(!f.absent_logical(format!("L{i}a").as_bytes()));
            assert!(!f.absent_logical(format!("L{i}b").as_bytes()));
        }
        assert!(!f.absent_logical(b"added"));
        let misses = (0..10_000u32)
            .filter(|i| !f.absent_logical(format!("other-{i}").as_bytes()))
            .count();
        assert!(misses < 300, "{misses} false maybes of 10,000");
        // The stored keys themselves are not tracked.
        assert!(!f.absent(b"pack/1"));
        assert!(!f.absent(b"pack/new"));
        // A filter without a logical extractor never answers for logical keys.
        let plain = AbsentFilter::new(Some(IDS));
        plain.rebuild(tree);
        assert!(complete(&plain));
        plain.insert_logical(b"x");
        assert!(!plain.absent_logical(b"y"));
    }

    #[test]
    fn without_tracked_keys_it_always_says_maybe() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let f = AbsentFilter::new(None);
        f.rebuild(db.open_tree("sm").unwrap());
        assert!(!f.absent(b"id/anything"));
    }
}
