//! Link faults between real processes, for the fault suite on machines without network
//! namespaces. When `CHATSDK_FAULT_FILE` names a file, the node reads it every
//! [`READ_EVERY`] and loses its cluster traffic (requests, messages and responses) to the node
//! ids listed there, one per line, through the transport's fault hooks; ids no longer listed
//! are healed. A missing file lists none. Nothing else sets the variable: a node without it
//! never looks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatsdk_actors::Chat;
use tokio_util::sync::CancellationToken;

/// The environment variable that names the file.
pub(crate) const FAULT_FILE_VAR: &str = "CHATSDK_FAULT_FILE";
/// How often the file is read.
const READ_EVERY: Duration = Duration::from_millis(100);

/// Starts watching the file named by [`FAULT_FILE_VAR`], if it is set, until `stop`.
pub(crate) fn watch_if_asked(chat: &Chat, stop: CancellationToken) {
    let Some(path) = std::env::var_os(FAULT_FILE_VAR).map(PathBuf::from) else {
        return;
    };
    tracing::warn!(file = %path.display(), "link fault injection on: cluster traffic to the node ids listed in this file is dropped");
    let chat = chat.clone();
    tokio::spawn(async move {
        let mut dropped = BTreeSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(READ_EVERY) => {}
            }
            let Some(wanted) = read(&path) else { continue };
            let faults = chat.cluster().faults();
            for healed in dropped.difference(&wanted) {
                faults.heal(*healed);
            }
            for cut in wanted.difference(&dropped) {
                faults.drop_to(*cut);
            }
            if wanted != dropped {
                tracing::warn!(dropped = ?wanted, "link faults changed");
            }
            dropped = wanted;
        }
    });
}

/// The ids the file lists (none when it does not exist); `None` when it cannot be read or a
/// line is not an id (a file caught half written: read again at the next tick).
fn read(path: &Path) -> Option<BTreeSet<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(BTreeSet::new()),
        Err(_) => return None,
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lists_ids_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cuts");
        assert_eq!(read(&path), Some(BTreeSet::new()));
        std::fs::write(&path, "2\n\n 3 \n").unwrap();
        assert_eq!(read(&path), Some(BTreeSet::from([2, 3])));
        std::fs::write(&path, "2\nthree\n").unwrap();
        assert_eq!(read(&path), None);
    }
}
