//! The bytes of a group's snapshot as they travel and rest: a file, read and written a piece at
//! a time, so that neither the node that sends a snapshot, nor the one that installs it, nor a
//! backup ever holds a group's whole state in memory.
//!
//! A snapshot is written by scanning the group's keys straight into an anonymous file (created
//! unlinked, so a crash leaves nothing behind), which openraft sends to a follower in chunks.
//! The follower writes the chunks into an anonymous file of its own and installs from it one
//! piece at a time (see [`crate::state_machine`]).
//!
//! Layout: [`MAGIC`], then frames: a little-endian `u32` length followed by one record (version
//! byte, CRC32, bincode 2) of a [`Piece`]. `Entries` pieces hold up to [`PIECE_BYTES`] of keys and
//! values each; an `End` with the number of entries comes last, so a truncated file is refused
//! rather than installed in part. Snapshots of builds before this layout are one record of all
//! the entries; [`read`] still takes them (a node upgraded in a running cluster may be sent one).

use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kv::{KeyValue, DATA_PREFIX};
use crate::record;
use crate::StoreError;

/// The first bytes of a snapshot in this layout. Its first byte is not a record version, which
/// is how a snapshot of an earlier build (one record) is told apart.
pub(crate) const MAGIC: &[u8; 8] = b"\xC5chsnap2";
/// Keys and values per piece, about (a single larger entry makes a piece of its own).
pub(crate) const PIECE_BYTES: usize = 1 << 20;
/// The largest frame a reader accepts: the bound on what one piece may make it allocate.
const MAX_FRAME: usize = 64 << 20;
/// The largest snapshot of an earlier build (one record, read whole) a reader accepts.
const MAX_LEGACY: u64 = 256 << 20;

/// The data openraft moves for a snapshot (see the module docs).
pub type SnapshotFile = tokio::fs::File;

/// One frame of a snapshot.
#[derive(Serialize, Deserialize)]
enum Piece {
    Entries(Vec<KeyValue>),
    End { entries: u64 },
}

/// What snapshots of earlier builds carry: every key and its framed value, in one record.
#[derive(Serialize, Deserialize)]
struct LegacyBody {
    entries: Vec<KeyValue>,
}

/// An unlinked file in `dir` (created if missing, owner-only like the rest of the data
/// directory): it is gone with its last handle, even after a crash.
pub fn anonymous(dir: &Path) -> io::Result<std::fs::File> {
    crate::private::private_dir(dir)?;
    tempfile::tempfile_in(dir)
}

/// Writes a snapshot's entries to `out` in pieces.
pub(crate) struct Writer<W: Write> {
    out: W,
    piece: Vec<KeyValue>,
    bytes: usize,
    entries: u64,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(mut out: W) -> Result<Self, StoreError> {
        out.write_all(MAGIC).map_err(StoreError::SnapshotFile)?;
        Ok(Writer {
            out,
            piece: Vec::new(),
            bytes: 0,
            entries: 0,
        })
    }

    /// Adds one key (as stored, with its prefix) and its framed value.
    pub(crate) fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        let size = key.len() + value.len();
        if size + 64 > MAX_FRAME {
            return Err(StoreError::SnapshotFormat(format!(
                "an entry of {size} bytes is larger than a snapshot piece may be"
            )));
        }
        if !self.piece.is_empty() && self.bytes + size > PIECE_BYTES {
            self.write_piece()?;
        }
        self.bytes += size;
        self.entries += 1;
        self.piece.push((key, value));
        Ok(())
    }

    fn write_piece(&mut self) -> Result<(), StoreError> {
        let piece = Piece::Entries(std::mem::take(&mut self.piece));
        self.bytes = 0;
        write_frame(&mut self.out, &piece)
    }

    /// Writes what is left and the end mark; returns the output.
    pub(crate) fn finish(mut self) -> Result<W, StoreError> {
        if !self.piece.is_empty() {
            self.write_piece()?;
        }
        let end = Piece::End {
            entries: self.entries,
        };
        write_frame(&mut self.out, &end)?;
        self.out.flush().map_err(StoreError::SnapshotFile)?;
        Ok(self.out)
    }
}

fn write_frame(out: &mut impl Write, piece: &Piece) -> Result<(), StoreError> {
    let body = record::encode(piece)?;
    let len = u32::try_from(body.len())
        .map_err(|_| StoreError::SnapshotFormat(format!("a piece of {} bytes", body.len())))?;
    out.write_all(&len.to_le_bytes())
        .and_then(|()| out.write_all(&body))
        .map_err(StoreError::SnapshotFile)
}

/// Reads a snapshot from `input`, handing its entries to `each` a piece at a time, after
/// checking that every key is an application key and every value's framing is intact. Returns
/// the number of entries. A snapshot cut short, damaged, or followed by stray bytes is an
/// error (after `each` saw the pieces before the damage: install into a place the snapshot
/// replaces only once it was read whole).
pub(crate) fn read(
    mut input: impl Read,
    mut each: impl FnMut(Vec<KeyValue>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut magic = [0u8; MAGIC.len()];
    let got = read_full(&mut input, &mut magic)?;
    if got < MAGIC.len() || &magic != MAGIC {
        // One record of all the entries (earlier builds), or not a snapshot at all.
        let mut whole = magic[..got].to_vec();
        input
            .take(MAX_LEGACY)
            .read_to_end(&mut whole)
            .map_err(StoreError::SnapshotFile)?;
        if whole.len() as u64 >= MAX_LEGACY {
            return Err(StoreError::SnapshotFormat(format!(
                "not a snapshot of this build, and too large ({MAX_LEGACY} bytes or more) for one of an earlier build"
            )));
        }
        let body: LegacyBody = record::decode(&whole)?;
        let count = body.entries.len() as u64;
        check(&body.entries)?;
        each(body.entries)?;
        return Ok(count);
    }
    let mut seen = 0u64;
    loop {
        let mut len = [0u8; 4];
        if read_full(&mut input, &mut len)? < len.len() {
            return Err(StoreError::SnapshotFormat(format!(
                "cut short after {seen} entries (no end mark)"
            )));
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(StoreError::SnapshotFormat(format!(
                "a piece of {len} bytes (at most {MAX_FRAME})"
            )));
        }
        let mut body = vec![0u8; len];
        if read_full(&mut input, &mut body)? < len {
            return Err(StoreError::SnapshotFormat(format!(
                "cut short inside a piece after {seen} entries"
            )));
        }
        match record::decode::<Piece>(&body)? {
            Piece::Entries(entries) => {
                check(&entries)?;
                seen += entries.len() as u64;
                each(entries)?;
            }
            Piece::End { entries } if entries == seen => {
                let mut rest = [0u8; 1];
                if read_full(&mut input, &mut rest)? > 0 {
                    return Err(StoreError::SnapshotFormat(
                        "bytes after the end mark".into(),
                    ));
                }
                return Ok(seen);
            }
            Piece::End { entries } => {
                return Err(StoreError::SnapshotFormat(format!(
                    "the end mark counts {entries} entries, the pieces held {seen}"
                )))
            }
        }
    }
}

/// Only application keys, with intact values (they keep the framing they had where the
/// snapshot was taken): a snapshot must not overwrite the applied position or membership.
fn check(entries: &[KeyValue]) -> Result<(), StoreError> {
    for (key, value) in entries {
        if key.first() != Some(&DATA_PREFIX) {
            return Err(StoreError::SnapshotFormat(
                "a key outside the data range".into(),
            ));
        }
        record::unframe(value)?;
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::SnapshotFile(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(i: u32, size: usize) -> KeyValue {
        let mut key = vec![DATA_PREFIX];
        key.extend_from_slice(&i.to_be_bytes());
        (key, record::frame(&vec![i as u8; size]))
    }

    fn written(entries: &[KeyValue]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        for (k, v) in entries {
            w.push(k.clone(), v.clone()).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<KeyValue>, usize), StoreError> {
        let mut out = Vec::new();
        let mut pieces = 0;
        read(bytes, |piece| {
            pieces += 1;
            out.extend(piece);
            Ok(())
        })?;
        Ok((out, pieces))
    }

    /// Entries come back as written, in pieces of about `PIECE_BYTES`, never all at once.
    #[test]
    fn a_snapshot_is_read_back_in_pieces() {
        let entries: Vec<_> = (0..600).map(|i| entry(i, 5_000)).collect();
        let bytes = written(&entries);
        let (back, pieces) = read_all(&bytes).unwrap();
        assert_eq!(back, entries);
        assert!(pieces >= 3, "{pieces} pieces for 3 MB");
        let (none, _) = read_all(&written(&[])).unwrap();
        assert!(none.is_empty());
    }

    /// A snapshot in the layout of earlier builds (one record) is still read.
    #[test]
    fn a_snapshot_of_an_earlier_build_is_read() {
        let entries: Vec<_> = (0..10).map(|i| entry(i, 10)).collect();
        let legacy = record::encode(&LegacyBody {
            entries: entries.clone(),
        })
        .unwrap();
        assert_eq!(read_all(&legacy).unwrap().0, entries);
    }

    /// Cut short anywhere, or with a damaged byte anywhere, a snapshot is refused.
    #[test]
    fn a_truncated_or_damaged_snapshot_is_refused() {
        let entries: Vec<_> = (0..300).map(|i| entry(i, 5_000)).collect();
        let bytes = written(&entries);
        for cut in [
            0,
            3,
            MAGIC.len(),
            MAGIC.len() + 2,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut} was read");
        }
        for at in [MAGIC.len() + 10, bytes.len() / 2, bytes.len() - 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(read_all(&bad).is_err(), "damage at {at} was read");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
    }

    /// Keys outside the data range (the applied position, the membership) are refused.
    #[test]
    fn a_snapshot_may_not_carry_system_keys() {
        let bytes = written(&[(b"s/applied".to_vec(), record::frame(b"x"))]);
        assert!(matches!(
            read_all(&bytes),
            Err(StoreError::SnapshotFormat(_))
        ));
    }

    proptest! {
        /// Arbitrary bytes, alone or after the magic, are refused or read without a panic.
        #[test]
        fn fuzz_snapshot_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
            let mut bytes = if magic { MAGIC.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&tail);
            crate::fuzzing::snapshot(&bytes);
        }
    }
}
