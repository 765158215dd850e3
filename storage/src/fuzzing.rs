//! Entry points for fuzzing the decoders of this crate, shared by the `fuzz_` property tests
//! and the coverage-guided fuzzer (`fuzz/`, run by `scripts/fuzz`). Each takes bytes as they
//! come off a disk or from a peer's snapshot; the verdict is ignored, a panic, a hang or an
//! outsized allocation is the finding.

use std::collections::BTreeMap;

use crate::{record, snapshot_file};

/// A record shape with every kind of length prefix bincode reads (string, sequence, map,
/// option), so a corrupt prefix meets each of them.
type Shape = (
    String,
    Vec<u64>,
    BTreeMap<String, Vec<u8>>,
    Option<Vec<String>>,
);

/// One stored record: as read (version byte, CRC, bincode) and with a valid frame around it,
/// so that arbitrary bytes also reach the bincode decoder past the CRC.
pub fn record(data: &[u8]) {
    let _ = record::decode::<Shape>(data);
    let _ = record::decode::<Shape>(&record::frame(data));
}

/// The bytes of a snapshot file, as a follower installs it or a backup restores it. So that the
/// fuzzer need not find the file's magic and each piece's CRC first, the first byte may ask for
/// help: odd puts the magic in its place; 3 (mod 4) also cuts the rest into pieces (a length
/// byte, then that many bytes) and frames each one validly, so their contents reach the piece
/// decoder and the checks behind it.
pub fn snapshot(data: &[u8]) {
    let _ = snapshot_file::read(data, |_| Ok(()));
    let Some((first, mut rest)) = data.split_first() else {
        return;
    };
    if first % 2 == 0 {
        return;
    }
    let mut file = snapshot_file::MAGIC.to_vec();
    if first % 4 == 1 {
        file.extend_from_slice(rest);
    } else {
        while let Some((&len, tail)) = rest.split_first() {
            let (payload, after) = tail.split_at(usize::from(len).min(tail.len()));
            let framed = record::frame(payload);
            let framed_len = u32::try_from(framed.len()).unwrap_or(u32::MAX);
            file.extend_from_slice(&framed_len.to_le_bytes());
            file.extend_from_slice(&framed);
            rest = after;
        }
    }
    let _ = snapshot_file::read(&file[..], |_| Ok(()));
}
