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

/// The bytes of a snapshot file, as a follower installs it or a backup restores it; an input
/// whose first byte is odd gets the file's magic in its place, so that the pieces behind it are
/// reached without the fuzzer having to find the magic first.
pub fn snapshot(data: &[u8]) {
    let _ = snapshot_file::read(data, |_| Ok(()));
    if let Some((first, rest)) = data.split_first() {
        if first % 2 == 1 {
            let mut file = snapshot_file::MAGIC.to_vec();
            file.extend_from_slice(rest);
            let _ = snapshot_file::read(&file[..], |_| Ok(()));
        }
    }
}
