//! A chat stream's message-id index: which seqs may hold the message with a given id.
//!
//! Why: every send looks its id up (a retry of a client message id must find the first send,
//! for as long as the message exists) and then adds it; edits, deletes, purges, thread replies
//! and reads by id find a message through it. Until data format 7 the index was one stored key
//! per message, which sled inserts in hash order, one leaf update each: a sixth of a busy
//! node's CPU (`docs/benchmarks.md`, "what the message-id index costs"). Here entries are
//! packed many to a value, log-structured, so that sled sees one write per stream per flush:
//!
//! - the **tail** holds the newest entries, unsorted, at most [`TAIL`]; every send rewrites it
//!   in the apply's pending writes, and sled stores its latest value once per flush;
//! - a full tail becomes a **run**: entries sorted, stored as pages of [`PAGE`] entries; once
//!   [`FANOUT`] runs share a level they merge into one run of the next level, up to
//!   [`TOP_LEVEL`], whose runs stay as they are (so a merge never rewrites more than
//!   `TAIL × FANOUT^TOP_LEVEL` entries: 2 MiB, once per 131,072 messages of a stream);
//! - the **directory** lists the runs with their pages' first hashes, so a lookup reads the
//!   tail, the directory and one page per run (two when equal hashes straddle pages).
//!
//! An entry is `(hash, seq)`: the first eight bytes of the id's SHA-256 and the message's seq,
//! both big-endian (16 bytes). The index answers *candidates*; the caller keeps the one whose
//! stored message has the id, so two ids with one hash, and the entries of purged messages
//! (left in place: seqs are never reused), cost a read and nothing else. A send's lookup
//! usually ends before reading anything: every entry is also a logical key of the group's
//! absent-key filter ([`crate::keys::StreamKeys::id_probe`]), added by [`insert`] and found in
//! the stored values by [`logical_keys`] when the group opens.
//!
//! Merges happen inside the apply that fills a tail, in the same order on every replica: the
//! index is part of the replicated state and snapshots carry it like any other key.
//!
//! **Retention.** A purge (a hard delete, or the retention pass) takes its message's entry out
//! ([`forget`]): out of the tail at once; in a run, by counting the run's entries down (the
//! *live* counts, stored apart from the directory). A run whose entries all point to purged
//! messages is dropped whole, pages and all. Runs hold the entries of consecutive messages
//! (a top-level run, 131,072 of them), so a channel whose oldest messages age out loses its
//! oldest runs with them, and the index stays the size of what the channel keeps. Runs written
//! before the counts existed have none and are kept.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use crate::keys::{self, get_record, put_record, StreamKeys};
use crate::kv::Kv;

/// Entries the tail holds before it becomes a run (4 KiB).
pub(crate) const TAIL: usize = 256;
/// Entries per stored page of a run (8 KiB).
pub(crate) const PAGE: usize = 512;
/// Runs of one level that merge into one run of the next.
pub(crate) const FANOUT: usize = 8;
/// The level whose runs are never merged.
pub(crate) const TOP_LEVEL: u8 = 3;

/// The framing of tail and page values.
const VERSION: u8 = 1;
/// Bytes of one entry.
const ENTRY: usize = 16;

/// `(hash, seq)`.
type Entry = (u64, u64);

/// The index's hash of a message id.
pub(crate) fn hash(id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The runs of a stream's index (stored at [`StreamKeys::id_runs`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Directory {
    /// The id the next run gets (ids are never reused, so page keys never are either).
    next_run: u64,
    /// Oldest first.
    runs: Vec<Run>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Run {
    id: u64,
    level: u8,
    /// The hash of each page's first entry, in page order.
    firsts: Vec<u64>,
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> StoreError {
    keys::unreadable(key, "message-id index value", reason)
}

/// The entries of a tail or page value (checked: a value that does not parse is an error
/// naming its key).
fn entries<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], StoreError> {
    match value.split_first() {
        Some((&VERSION, rest)) if rest.len() % ENTRY == 0 => Ok(rest),
        Some((&VERSION, rest)) => Err(corrupt(key, format!("{} bytes of entries", rest.len()))),
        Some((v, _)) => Err(corrupt(key, format!("framing version {v}"))),
        None => Err(corrupt(key, "empty value")),
    }
}

fn entry_at(raw: &[u8], i: usize) -> Entry {
    let at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[o..o + 8]);
        u64::from_be_bytes(b)
    };
    (at(i * ENTRY), at(i * ENTRY + 8))
}

fn all_entries(raw: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    (0..raw.len() / ENTRY).map(|i| entry_at(raw, i))
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY);
    out.push(VERSION);
    for (h, seq) in entries {
        out.extend_from_slice(&h.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

/// How many entries of each run point to messages that still exist, by run id (a run missing
/// here was written before the counts were kept: never dropped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Live {
    runs: std::collections::BTreeMap<u64, u64>,
}

/// Adds the message `seq` with id hash `h`, in an apply.
pub(crate) fn insert(
    kv: &mut impl Kv,
    sk: &StreamKeys<'_>,
    h: u64,
    seq: u64,
) -> Result<(), StoreError> {
    kv.track(&sk.id_probe(h));
    let key = sk.id_tail();
    let mut tail = match kv.get(&key)? {
        Some(value) => {
            entries(&key, &value)?;
            value
        }
        None => vec![VERSION],
    };
    tail.extend_from_slice(&h.to_be_bytes());
    tail.extend_from_slice(&seq.to_be_bytes());
    if (tail.len() - 1) / ENTRY < TAIL {
        kv.put(&key, &tail);
        return Ok(());
    }
    kv.delete(&key);
    let mut run: Vec<Entry> = all_entries(&tail[1..]).collect();
    run.sort_unstable();
    let dir_key = sk.id_runs();
    let mut dir = get_record::<Directory>(kv, &dir_key)?.unwrap_or_default();
    let mut live = get_record::<Live>(kv, &sk.id_live())?.unwrap_or_default();
    let id = add_run(kv, sk, &mut dir, 0, &run);
    // The tail holds no entry of a purged message (`forget` takes them out of it).
    live.runs.insert(id, run.len() as u64);
    compact(kv, sk, &mut dir, &mut live)?;
    put_record(kv, &sk.id_live(), &live)?;
    put_record(kv, &dir_key, &dir)
}

/// Takes the entry of message `seq` (id hash `h`), which was just purged, out of the index,
/// in an apply (see the module docs). An entry it does not find (a message indexed before
/// the index existed) changes nothing.
pub(crate) fn forget(
    kv: &mut impl Kv,
    sk: &StreamKeys<'_>,
    h: u64,
    seq: u64,
) -> Result<(), StoreError> {
    let tail_key = sk.id_tail();
    if let Some(value) = kv.get(&tail_key)? {
        let tail: Vec<Entry> = all_entries(entries(&tail_key, &value)?).collect();
        if let Some(at) = tail.iter().position(|e| *e == (h, seq)) {
            let mut kept = tail;
            kept.remove(at);
            if kept.is_empty() {
                kv.delete(&tail_key);
            } else {
                kv.put(&tail_key, &encode(&kept));
            }
            return Ok(());
        }
    }
    let dir_key = sk.id_runs();
    let Some(mut dir) = get_record::<Directory>(kv, &dir_key)? else {
        return Ok(());
    };
    let mut holder = None;
    for (i, run) in dir.runs.iter().enumerate() {
        if run_holds(|k| kv.get(k), sk, run, (h, seq))? {
            holder = Some(i);
            break;
        }
    }
    let Some(i) = holder else {
        return Ok(());
    };
    let mut live = get_record::<Live>(kv, &sk.id_live())?.unwrap_or_default();
    let run_id = dir.runs[i].id;
    let Some(count) = live.runs.get_mut(&run_id) else {
        return Ok(()); // a run of before the counts: kept
    };
    *count = count.saturating_sub(1);
    if *count == 0 {
        live.runs.remove(&run_id);
        let run = dir.runs.remove(i);
        for n in 0..run.firsts.len() {
            kv.delete(&sk.id_page(run.id, n as u32));
        }
        put_record(kv, &dir_key, &dir)?;
    }
    put_record(kv, &sk.id_live(), &live)
}

/// Whether `run` holds exactly `entry` (read in an apply: a missing page is corruption).
fn run_holds(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    sk: &StreamKeys<'_>,
    run: &Run,
    (h, seq): Entry,
) -> Result<bool, StoreError> {
    let mut seqs = Vec::new();
    if let Some(missing) = run_seqs(&get, sk, run, h, &mut seqs)? {
        return Err(corrupt(&missing, "a page of a listed run is missing"));
    }
    Ok(seqs.contains(&seq))
}

/// Adds the seqs `run` holds for `h` to `out`; returns the key of a page it lacks, if one is
/// missing.
fn run_seqs(
    get: &impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    sk: &StreamKeys<'_>,
    run: &Run,
    h: u64,
    out: &mut Vec<u64>,
) -> Result<Option<Vec<u8>>, StoreError> {
    let start = run.firsts.partition_point(|f| *f < h).saturating_sub(1);
    for n in start..run.firsts.len() {
        if run.firsts[n] > h {
            break;
        }
        let key = sk.id_page(run.id, n as u32);
        let Some(value) = get(&key)? else {
            return Ok(Some(key));
        };
        let page = entries(&key, &value)?;
        let count = page.len() / ENTRY;
        let lo = first_at_least(page, count, h);
        out.extend(
            (lo..count)
                .map(|i| entry_at(page, i))
                .take_while(|e| e.0 == h)
                .map(|e| e.1),
        );
    }
    Ok(None)
}

/// The first position in a sorted page of `count` entries whose hash is at least `h`.
fn first_at_least(page: &[u8], count: usize, h: u64) -> usize {
    let mut lo = 0;
    let mut hi = count;
    while lo < hi {
        let mid = (lo + hi) / 2;
        if entry_at(page, mid).0 < h {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Stores sorted `entries` as a new run of `level`; returns its id.
fn add_run(
    kv: &mut impl Kv,
    sk: &StreamKeys<'_>,
    dir: &mut Directory,
    level: u8,
    run: &[Entry],
) -> u64 {
    let id = dir.next_run;
    dir.next_run += 1;
    let mut firsts = Vec::with_capacity(run.len().div_ceil(PAGE));
    for (n, page) in run.chunks(PAGE).enumerate() {
        kv.put(&sk.id_page(id, n as u32), &encode(page));
        firsts.push(page[0].0);
    }
    dir.runs.push(Run { id, level, firsts });
    id
}

/// Merges the runs of every level below the top that holds [`FANOUT`] of them, lowest first
/// (a merge can fill the next level). The merged run's live count is the sum of its parts'
/// (none when one of them has none).
fn compact(
    kv: &mut impl Kv,
    sk: &StreamKeys<'_>,
    dir: &mut Directory,
    live: &mut Live,
) -> Result<(), StoreError> {
    for level in 0..TOP_LEVEL {
        if dir.runs.iter().filter(|r| r.level == level).count() < FANOUT {
            continue;
        }
        let (merging, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut dir.runs)
            .into_iter()
            .partition(|r| r.level == level);
        dir.runs = kept;
        let mut merged = Vec::new();
        for run in &merging {
            for n in 0..run.firsts.len() {
                let key = sk.id_page(run.id, n as u32);
                let Some(value) = kv.get(&key)? else {
                    return Err(corrupt(&key, "a page of a listed run is missing"));
                };
                merged.extend(all_entries(entries(&key, &value)?));
                kv.delete(&key);
            }
        }
        merged.sort_unstable();
        // Every part's count leaves the map (a lazy sum would stop at the first missing one).
        let parts: Vec<Option<u64>> = merging.iter().map(|r| live.runs.remove(&r.id)).collect();
        let counts: Option<u64> = parts.into_iter().sum();
        let id = add_run(kv, sk, dir, level + 1, &merged);
        if let Some(count) = counts {
            live.runs.insert(id, count);
        }
    }
    Ok(())
}

/// The seqs the index holds for id hash `h`, through `get` (an apply's view or a replica's
/// reader). Some may not hold a message with the id: the caller checks each.
///
/// A replica's reader reads the directory and then pages, while applies go on: a merge or a
/// retention drop may delete a listed run's pages in between. A missing page is therefore read
/// again with the directory as it is now, a few times; only a page missing from a directory
/// that did not change is corruption (an apply's view never changes under it).
pub(crate) fn candidates(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    sk: &StreamKeys<'_>,
    h: u64,
) -> Result<Vec<u64>, StoreError> {
    let tail_key = sk.id_tail();
    let dir_key = sk.id_runs();
    let mut attempts = 0;
    loop {
        let mut out = Vec::new();
        if let Some(value) = get(&tail_key)? {
            out.extend(
                all_entries(entries(&tail_key, &value)?)
                    .filter(|e| e.0 == h)
                    .map(|e| e.1),
            );
        }
        let Some(raw) = get(&dir_key)? else {
            return Ok(out);
        };
        let dir: Directory = keys::decode_at(&dir_key, &raw)?;
        match in_runs(&get, sk, &dir, h, &mut out)? {
            None => return Ok(out),
            Some(missing) => {
                attempts += 1;
                let moved = get(&dir_key)?.as_deref() != Some(raw.as_slice());
                if !moved || attempts >= 8 {
                    return Err(corrupt(&missing, "a page of a listed run is missing"));
                }
            }
        }
    }
}

/// Adds the seqs the runs of `dir` hold for `h` to `out`, newest run first (a message sent
/// again after a purge is in a newer run than its first send). Returns the key of a listed
/// page that is missing, if one is.
fn in_runs(
    get: &impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    sk: &StreamKeys<'_>,
    dir: &Directory,
    h: u64,
    out: &mut Vec<u64>,
) -> Result<Option<Vec<u8>>, StoreError> {
    for run in dir.runs.iter().rev() {
        if let Some(missing) = run_seqs(get, sk, run, h, out)? {
            return Ok(Some(missing));
        }
    }
    Ok(None)
}

/// The logical keys of the index entries a stored value holds, for the absent-key filter's
/// scan of a group ([`chatsdk_storage::absent::Tracked::logical`]). A value that does not parse
/// adds nothing here; reading it in an apply reports it.
pub(crate) fn logical_keys(key: &[u8], value: &[u8], add: &mut dyn FnMut(&[u8])) {
    let Some(stream) = keys::id_entries_stream(key) else {
        return;
    };
    let Ok(raw) = entries(key, value) else {
        return;
    };
    let sk = StreamKeys(stream);
    for (h, _) in all_entries(raw) {
        add(&sk.id_probe(h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    type Map = BTreeMap<Vec<u8>, Vec<u8>>;

    const SK: StreamKeys<'static> = StreamKeys("chat:app:c1");

    fn lookup(kv: &Map, h: u64) -> Vec<u64> {
        let mut found = candidates(|k| Ok(kv.get(k).cloned()), &SK, h).unwrap();
        found.sort_unstable();
        found
    }

    fn dir(kv: &Map) -> Directory {
        get_record(kv, &SK.id_runs()).unwrap().unwrap_or_default()
    }

    #[test]
    fn every_entry_is_found_through_tail_runs_and_merges() {
        let mut kv = Map::new();
        // Enough for merges into level 2, so runs of three levels and a tail coexist.
        let n = (TAIL * FANOUT * FANOUT + TAIL * FANOUT + TAIL + 17) as u64;
        for seq in 1..=n {
            insert(&mut kv, &SK, hash(&format!("m{seq}")), seq).unwrap();
        }
        for seq in 1..=n {
            assert_eq!(lookup(&kv, hash(&format!("m{seq}"))), vec![seq], "m{seq}");
        }
        assert!(lookup(&kv, hash("never")).is_empty());
        let d = dir(&kv);
        let levels: Vec<u8> = d.runs.iter().map(|r| r.level).collect();
        assert_eq!(levels, vec![2, 1, 0], "one run per level");
        // Merged runs' pages are gone: only listed runs' pages (and the tail, the directory,
        // the live counts).
        let pages: usize = d.runs.iter().map(|r| r.firsts.len()).sum();
        assert_eq!(kv.len(), pages + 3);
    }

    /// Retention: purged messages' entries leave the tail at once, and a run whose entries
    /// were all purged is dropped, pages and all; the others are still found.
    #[test]
    fn purged_messages_leave_the_index_and_dead_runs_are_dropped() {
        let mut kv = Map::new();
        let id = |seq: u64| hash(&format!("m{seq}"));
        // Runs of levels 1 and 0, and a tail.
        let n = (TAIL * FANOUT + 2 * TAIL + 10) as u64;
        for seq in 1..=n {
            insert(&mut kv, &SK, id(seq), seq).unwrap();
        }
        let before = dir(&kv).runs.len();
        assert_eq!(before, 3);
        // The oldest messages age out: the level-1 run's and the first level-0 run's.
        let aged = (TAIL * FANOUT + TAIL) as u64;
        for seq in 1..=aged {
            forget(&mut kv, &SK, id(seq), seq).unwrap();
        }
        let d = dir(&kv);
        assert_eq!(d.runs.len(), 1, "{d:?}");
        for seq in [1, aged] {
            assert!(lookup(&kv, id(seq)).is_empty(), "m{seq}");
        }
        // A newer message in the tail leaves it; the others are all still found.
        forget(&mut kv, &SK, id(n), n).unwrap();
        assert!(lookup(&kv, id(n)).is_empty());
        for seq in aged + 1..n {
            assert_eq!(lookup(&kv, id(seq)), vec![seq], "m{seq}");
        }
        // Forgetting twice, or what was never indexed, changes nothing.
        let snapshot = kv.clone();
        forget(&mut kv, &SK, id(1), 1).unwrap();
        forget(&mut kv, &SK, 12345, n + 99).unwrap();
        assert_eq!(kv, snapshot);
        // Everything purged: no page, no tail, and the runs list is empty.
        for seq in aged + 1..n {
            forget(&mut kv, &SK, id(seq), seq).unwrap();
        }
        assert!(dir(&kv).runs.is_empty());
        let pages = kv
            .keys()
            .filter(|k| keys::id_entries_stream(k).is_some())
            .count();
        assert_eq!(pages, 0, "{:?}", kv.keys().collect::<Vec<_>>());
    }

    /// A reader that read the directory before an apply dropped a run (its pages gone) reads
    /// again with the directory as it is now; a page missing from an unchanged directory is
    /// corruption.
    #[test]
    fn a_reader_racing_a_dropped_run_reads_again() {
        let mut kv = Map::new();
        let id = |seq: u64| hash(&format!("m{seq}"));
        let n = (2 * TAIL + 5) as u64;
        for seq in 1..=n {
            insert(&mut kv, &SK, id(seq), seq).unwrap();
        }
        let before = kv.get(&SK.id_runs()).cloned().unwrap();
        // The first run's messages all age out: it is dropped.
        for seq in 1..=TAIL as u64 {
            forget(&mut kv, &SK, id(seq), seq).unwrap();
        }
        assert_eq!(dir(&kv).runs.len(), 1);
        let reads = std::cell::Cell::new(0);
        let racing = |k: &[u8]| {
            if k == SK.id_runs().as_slice() {
                reads.set(reads.get() + 1);
                if reads.get() == 1 {
                    return Ok(Some(before.clone()));
                }
            }
            Ok(kv.get(k).cloned())
        };
        // Every hash of the dropped run's pages: at least one read needs a page now gone.
        for seq in 1..=TAIL as u64 {
            reads.set(0);
            assert!(candidates(racing, &SK, id(seq)).unwrap().is_empty());
        }
        let stale = |k: &[u8]| {
            if k == SK.id_runs().as_slice() {
                return Ok(Some(before.clone()));
            }
            Ok(kv.get(k).cloned())
        };
        let refused = (1..=TAIL as u64).any(|seq| candidates(stale, &SK, id(seq)).is_err());
        assert!(
            refused,
            "a page missing from an unchanged directory was not refused"
        );
    }

    /// Every run the directory lists has all its pages.
    fn pages_of_listed_runs_exist(kv: &Map) {
        for run in dir(kv).runs {
            for n in 0..run.firsts.len() {
                assert!(
                    kv.contains_key(&SK.id_page(run.id, n as u32)),
                    "run {} (level {}) lacks page {n}",
                    run.id,
                    run.level
                );
            }
        }
    }

    /// Retention under load: new messages indexed while the oldest age out, through merges of
    /// every level; the directory never lists a run without its pages, and what is kept is
    /// found.
    #[test]
    fn sends_and_retention_interleaved_keep_the_index_whole() {
        let mut kv = Map::new();
        let id = |seq: u64| hash(&format!("m{seq}"));
        let window = 3_000u64;
        let n = (TAIL * FANOUT * FANOUT * 3) as u64;
        for seq in 1..=n {
            insert(&mut kv, &SK, id(seq), seq).unwrap();
            if seq > window {
                let old = seq - window;
                forget(&mut kv, &SK, id(old), old).unwrap();
            }
            if seq % 997 == 0 {
                pages_of_listed_runs_exist(&kv);
                assert_eq!(lookup(&kv, id(seq - 1)), vec![seq - 1]);
            }
        }
        pages_of_listed_runs_exist(&kv);
        for seq in n - window + 1..=n {
            assert_eq!(lookup(&kv, id(seq)), vec![seq], "m{seq}");
        }
    }

    #[test]
    fn equal_hashes_are_all_found_even_across_pages() {
        let mut kv = Map::new();
        // One hash repeated past a page boundary, between others.
        let mut seq = 0;
        for i in 0..(TAIL * FANOUT) as u64 {
            seq += 1;
            let h = if i % 3 == 0 { 77 } else { i * 1000 };
            insert(&mut kv, &SK, h, seq).unwrap();
        }
        let found = lookup(&kv, 77);
        let expected: Vec<u64> = (0..(TAIL * FANOUT) as u64)
            .filter(|i| i % 3 == 0)
            .map(|i| i + 1)
            .collect();
        assert!(expected.len() > PAGE, "straddles pages");
        assert_eq!(found, expected);
    }

    #[test]
    fn top_level_runs_are_never_merged() {
        let mut kv = Map::new();
        let top = TAIL * FANOUT.pow(TOP_LEVEL as u32);
        // A small run and a half-full tail beyond the second top-level run.
        let n = (2 * top + TAIL + 5) as u64;
        for seq in 1..=n {
            insert(&mut kv, &SK, seq.wrapping_mul(0x9e37_79b9_7f4a_7c15), seq).unwrap();
        }
        let levels: Vec<u8> = dir(&kv).runs.iter().map(|r| r.level).collect();
        assert_eq!(levels, vec![TOP_LEVEL, TOP_LEVEL, 0]);
        for seq in [1, top as u64, top as u64 + 1, n - 3, n] {
            assert_eq!(
                lookup(&kv, seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                vec![seq]
            );
        }
    }

    #[test]
    fn stored_values_name_their_logical_keys() {
        let mut kv = Map::new();
        for seq in 1..=(TAIL + 3) as u64 {
            insert(&mut kv, &SK, seq, seq).unwrap();
        }
        let mut named = Vec::new();
        for (k, v) in &kv {
            logical_keys(k, v, &mut |l| named.push(l.to_vec()));
        }
        named.sort();
        let mut expected: Vec<Vec<u8>> = (1..=(TAIL + 3) as u64).map(|h| SK.id_probe(h)).collect();
        expected.sort();
        assert_eq!(named, expected);
    }

    #[test]
    fn a_damaged_value_is_an_error_naming_its_key() {
        let mut kv = Map::new();
        insert(&mut kv, &SK, 1, 1).unwrap();
        kv.insert(SK.id_tail(), vec![VERSION, 1, 2, 3]);
        let err = candidates(|k| Ok(kv.get(k).cloned()), &SK, 1).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { ref key, .. } if key.contains("xt")),
            "{err:?}"
        );
        assert!(insert(&mut kv, &SK, 2, 2).is_err());
    }

    proptest! {
        /// Whatever the hashes (few distinct ones, so collisions are common), a lookup returns
        /// exactly the seqs inserted with the hash, and inserting the same sequence into two
        /// stores leaves the same keys and values (replicas agree).
        #[test]
        fn lookups_match_a_model(hashes in proptest::collection::vec(0u64..64, 0..3000)) {
            let mut kv = Map::new();
            let mut model: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for (i, h) in hashes.iter().enumerate() {
                let seq = i as u64 + 1;
                insert(&mut kv, &SK, *h, seq).unwrap();
                model.entry(*h).or_default().push(seq);
            }
            for h in 0..64 {
                prop_assert_eq!(lookup(&kv, h), model.get(&h).cloned().unwrap_or_default());
            }
            let mut again = Map::new();
            for (i, h) in hashes.iter().enumerate() {
                insert(&mut again, &SK, *h, i as u64 + 1).unwrap();
            }
            prop_assert_eq!(kv, again);
        }
    }
}
