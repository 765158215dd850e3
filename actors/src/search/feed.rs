//! The search feed of a data shard: which messages changed, in the order the shard applied
//! the changes, so every replica's index follows its own copy of the shard.
//!
//! The applier writes one entry per send, edit, delete and purge of a chat message (and one per
//! dropped channel) in the same batch as the change. Entries are numbered; entry `n` lives in
//! slot `n % RING`, so the feed is a ring that never needs trimming: an index that fell more
//! than [`RING`] entries behind (a new replica, a node down for long) sees the gap and rebuilds
//! its part from the shard's messages instead.
//!
//! Slots are kept [`PER_KEY`] to a stored value, like messages (`crate::chunk`): the store's
//! cost is per key, and a key per entry made sled's background work per send three times what
//! it was (measured with `chatsdk-bench durable`).

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use crate::keys::{self, get_record as get, put_record as put};
use crate::kv::{Kv, KvRead};

/// Entries the ring holds.
pub const RING: u64 = 32_768;
/// Entries per stored value.
pub const PER_KEY: u64 = 16;

/// One change: a message of a stream (or, with an empty id, the whole stream dropped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub n: u64,
    pub stream: String,
    pub id: String,
}

fn head_key() -> Vec<u8> {
    keys::key(&[b"q", b"h"])
}

/// The key of the value that holds entry `n`.
fn slot_key(n: u64) -> Vec<u8> {
    keys::key(&[b"q", b"r", &((n % RING) / PER_KEY).to_be_bytes()])
}

/// Records a change (applier side).
pub(crate) fn record(kv: &mut impl Kv, stream: &str, id: &str) -> Result<(), StoreError> {
    let n = get::<u64>(kv, &head_key())?.unwrap_or(0);
    let entry = FeedEntry {
        n,
        stream: stream.to_string(),
        id: id.to_string(),
    };
    let key = slot_key(n);
    // The first entry of a value starts it afresh (what it held is a lap behind).
    let mut entries: Vec<FeedEntry> = if n % PER_KEY == 0 {
        Vec::new()
    } else {
        get(kv, &key)?.unwrap_or_default()
    };
    entries.push(entry);
    put(kv, &key, &entries)?;
    put(kv, &head_key(), &(n + 1))
}

/// The number of the next entry (entries are `0..head`).
pub fn head(reader: &impl KvRead) -> Result<u64, StoreError> {
    match reader.get(&head_key())? {
        Some(raw) => keys::decode_at(&head_key(), &raw),
        None => Ok(0),
    }
}

/// Entries `from..to` (at most [`RING`] back from the head), or None when some of them were
/// overwritten already (the reader must rebuild).
pub fn read(
    reader: &impl KvRead,
    from: u64,
    to: u64,
) -> Result<Option<Vec<FeedEntry>>, StoreError> {
    let mut out = Vec::with_capacity((to - from) as usize);
    let mut held: Option<(Vec<u8>, Vec<FeedEntry>)> = None;
    for n in from..to {
        let key = slot_key(n);
        if held.as_ref().is_none_or(|(k, _)| *k != key) {
            let Some(raw) = reader.get(&key)? else {
                return Ok(None);
            };
            let entries: Vec<FeedEntry> = keys::decode_at(&key, &raw)?;
            held = Some((key, entries));
        }
        let found = held
            .as_ref()
            .and_then(|(_, entries)| entries.iter().find(|e| e.n == n).cloned());
        match found {
            Some(e) => out.push(e),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_ring_keeps_the_newest_entries_and_reports_gaps() {
        let mut kv: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for i in 0..RING + 10 {
            record(&mut kv, "chat:a:c", &format!("m{i}")).unwrap();
        }
        assert_eq!(head(&kv).unwrap(), RING + 10);
        let tail = read(&kv, RING + 5, RING + 10).unwrap().unwrap();
        assert_eq!(tail.len(), 5);
        assert_eq!(tail[0].id, format!("m{}", RING + 5));
        // Entries 0..16 share a value, which entry RING started afresh.
        assert_eq!(read(&kv, 3, 5).unwrap(), None);
        assert_eq!(read(&kv, 10, 12).unwrap(), None);
        let kept = read(&kv, 16, 40).unwrap().unwrap();
        assert_eq!((kept.len(), kept[0].id.as_str()), (24, "m16"));
    }
}
