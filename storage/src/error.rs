//! The storage crate's error type.

/// Everything that can go wrong reading or writing a node's sled directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled itself failed (I/O error, corruption detected by sled, ...).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A record is shorter than its header.
    #[error("record truncated: {len} bytes")]
    Truncated { len: usize },
    /// A record was written by a format version this build does not read.
    #[error("unsupported record version {version}")]
    Version { version: u8 },
    /// A record's payload does not match its checksum.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    /// A record's payload is not a valid encoding of the expected type.
    #[error("record decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// A value could not be encoded.
    #[error("record encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The group-commit flusher has stopped (the store is shutting down).
    #[error("flusher stopped")]
    FlusherStopped,
    /// A record of the layer above did not decode (another format, or corrupted).
    #[error("corrupt record at key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The data directory was written in a format this build does not read.
    #[error(
        "data directory {path} is in format {found}, this build reads format {supported}: {hint}"
    )]
    DataFormat {
        path: String,
        found: u32,
        supported: u32,
        hint: &'static str,
    },
    /// The data directory could not be created or made owner-only.
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A thread of the store could not be started.
    #[error("starting storage thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A restore was asked to write into a group that already holds state, or was handed data
    /// that is not a snapshot of ours.
    #[error("restore of group {group}: {reason}")]
    Restore { group: u32, reason: String },
    /// A restore into this directory did not finish (its marker file is still there).
    #[error(
        "data directory {path} holds a restore that did not finish: delete it and restore again"
    )]
    RestoreIncomplete { path: String },
    /// A snapshot's file could not be written or read.
    #[error("snapshot file: {0}")]
    SnapshotFile(#[source] std::io::Error),
    /// A snapshot's bytes are not a whole snapshot of ours (cut short, damaged, foreign keys).
    #[error("snapshot: {0}")]
    SnapshotFormat(String),
    /// The Raft log's files failed (I/O, corruption, or the log stopped after a failure).
    #[error("raft log: {0}")]
    Wal(String),
}
