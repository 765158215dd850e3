//! Numbered records kept [`CHUNK`] to a stored value: a stream's events (by offset) and its
//! messages (by seq).
//!
//! Why: the store's cost is per key, not per byte. sled splits a leaf once it holds 16 entries
//! and rewrites the leaf and its parent to do it, so a key per message and a key per event made
//! every send pay for two inserts and, every few sends, a split (the largest single cost of a
//! send in the profiles of `docs/benchmarks.md`). Records numbered in order fill their chunk
//! from the end; an apply rewrites the chunk in the state machine's pending writes, and sled
//! sees one write of it per flush.
//!
//! A chunk is a version byte followed by items in ascending number: the number (u64), the
//! record's length (u32), both big-endian, and the record (itself framed as
//! [`crate::codec`] says). A chunk that does not parse is an error naming its key, never a
//! missing record.

use chatsdk_cluster::StoreError;

/// Records per chunk: item `n` is in chunk `n / CHUNK`.
pub(crate) const CHUNK: u64 = 16;

/// The framing of a chunk's items.
const VERSION: u8 = 1;

/// Bytes before an item's record: its number and its length.
const ITEM_HEADER: usize = 12;

/// The chunk that holds item `n`.
pub(crate) fn chunk_of(n: u64) -> u64 {
    n / CHUNK
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> StoreError {
    crate::keys::unreadable(key, "chunk", reason)
}

/// The items of the chunk stored at `key`, in ascending number.
pub(crate) fn items<'a>(key: &'a [u8], value: &'a [u8]) -> Result<Items<'a>, StoreError> {
    match value.split_first() {
        Some((&VERSION, rest)) => Ok(Items { key, rest }),
        Some((v, _)) => Err(corrupt(key, format!("chunk framing version {v}"))),
        None => Err(corrupt(key, "empty chunk")),
    }
}

/// An iterator over a chunk's items: `(number, record)`.
pub(crate) struct Items<'a> {
    key: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<(u64, &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let header = self.rest.get(..ITEM_HEADER)?;
            let n = u64::from_be_bytes(header[..8].try_into().ok()?);
            let len = u32::from_be_bytes(header[8..].try_into().ok()?) as usize;
            let record = self.rest.get(ITEM_HEADER..ITEM_HEADER.checked_add(len)?)?;
            Some((n, record, ITEM_HEADER + len))
        })();
        match parsed {
            Some((n, record, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok((n, record)))
            }
            None => {
                self.rest = &[];
                Some(Err(corrupt(self.key, "truncated chunk item")))
            }
        }
    }
}

/// The record of item `n` in a chunk, if present.
pub(crate) fn find<'a>(
    key: &'a [u8],
    value: &'a [u8],
    n: u64,
) -> Result<Option<&'a [u8]>, StoreError> {
    for item in items(key, value)? {
        let (m, record) = item?;
        if m == n {
            return Ok(Some(record));
        }
        if m > n {
            break;
        }
    }
    Ok(None)
}

fn push_item(out: &mut Vec<u8>, n: u64, record: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(record.len()).map_err(|_| StoreError::Corrupt {
        key: "chunk item".into(),
        reason: format!("record of {} bytes", record.len()),
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(record);
    Ok(())
}

/// The chunk `value` (none: a new chunk) with item `n` set to `record`, replacing an item of
/// that number or inserted in order. Appending past the last item copies the chunk once.
pub(crate) fn with_item(
    key: &[u8],
    value: Option<&[u8]>,
    n: u64,
    record: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let Some(value) = value else {
        let mut out = Vec::with_capacity(1 + ITEM_HEADER + record.len());
        out.push(VERSION);
        push_item(&mut out, n, record)?;
        return Ok(out);
    };
    let mut last = None;
    for item in items(key, value)? {
        last = Some(item?.0);
    }
    let mut out = Vec::with_capacity(value.len() + ITEM_HEADER + record.len());
    if last.is_none_or(|last| last < n) {
        out.extend_from_slice(value);
        push_item(&mut out, n, record)?;
        return Ok(out);
    }
    out.push(VERSION);
    let mut placed = false;
    for item in items(key, value)? {
        let (m, old) = item?;
        if !placed && m >= n {
            push_item(&mut out, n, record)?;
            placed = true;
            if m == n {
                continue;
            }
        }
        push_item(&mut out, m, old)?;
    }
    Ok(out)
}

/// The chunk `value` without item `n`: `None` when nothing is left of it.
pub(crate) fn without_item(
    key: &[u8],
    value: &[u8],
    n: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut out = Vec::with_capacity(value.len());
    out.push(VERSION);
    for item in items(key, value)? {
        let (m, record) = item?;
        if m != n {
            push_item(&mut out, m, record)?;
        }
    }
    Ok((out.len() > 1).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(value: &[u8]) -> Vec<(u64, Vec<u8>)> {
        items(b"k", value)
            .unwrap()
            .map(|i| i.map(|(n, r)| (n, r.to_vec())).unwrap())
            .collect()
    }

    #[test]
    fn items_stay_in_order_whatever_the_order_of_writes() {
        let mut v = with_item(b"k", None, 5, b"five").unwrap();
        v = with_item(b"k", Some(&v), 7, b"seven").unwrap();
        v = with_item(b"k", Some(&v), 2, b"two").unwrap();
        v = with_item(b"k", Some(&v), 6, b"six").unwrap();
        v = with_item(b"k", Some(&v), 5, b"FIVE").unwrap();
        assert_eq!(
            all(&v),
            vec![
                (2, b"two".to_vec()),
                (5, b"FIVE".to_vec()),
                (6, b"six".to_vec()),
                (7, b"seven".to_vec())
            ]
        );
        assert_eq!(find(b"k", &v, 6).unwrap(), Some(&b"six"[..]));
        assert_eq!(find(b"k", &v, 3).unwrap(), None);
        let v = without_item(b"k", &v, 6).unwrap().unwrap();
        assert_eq!(all(&v).len(), 3);
        let one = with_item(b"k", None, 1, b"").unwrap();
        assert_eq!(without_item(b"k", &one, 1).unwrap(), None);
    }

    #[test]
    fn a_damaged_chunk_is_an_error_not_a_missing_record() {
        let v = with_item(b"k", None, 3, b"three").unwrap();
        let truncated = &v[..v.len() - 1];
        assert!(matches!(
            find(b"k", truncated, 3),
            Err(StoreError::Corrupt { .. })
        ));
        let mut other = v.clone();
        other[0] = 9;
        assert!(matches!(
            find(b"k", &other, 3),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            find(b"k", &[], 3),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
