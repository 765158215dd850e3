//! Storage for a ChatSDK node: one data directory per node, holding every Raft group's log (in
//! one write-ahead log) and state machine (in sled).
//!
//! This crate owns the on-disk layout and the encoding of everything written there. It knows
//! nothing about sockets, actors or HTTP; the cluster layer builds Raft groups on top of it and the
//! upper layers read their state through [`GroupReader`].
//!
//! Module map:
//! - [`record`]: the framing of every stored value (version byte + CRC32 + bincode 2 payload), so
//!   a corrupted record is refused with an error instead of being served or panicked on.
//! - [`store`]: a node's data directory: the sled database, tree names per group, the format
//!   marker, and the write-ahead log.
//! - `wal`: the Raft log of every group in one append-only file set, made durable with one
//!   `fdatasync` per batch of concurrent appends (group commit).
//! - [`log_store`]: openraft's `RaftLogStorage` for one group, a view of the write-ahead log.
//! - [`state_machine`]: openraft's `RaftStateMachine` for one group, which applies opaque commands
//!   through an [`Applier`] supplied by the layer above and builds/installs snapshots.
//! - [`absent`]: a filter of the keys an applier mostly reads when they do not exist, so those
//!   reads skip sled.
//! - [`kv`]: the key-value view an [`Applier`] writes through ([`KvBatch`]) and readers read
//!   through ([`GroupReader`]).
//! - `background`: low-priority threads for the work no reply waits for (moving applied writes
//!   into sled).
//! - [`media`]: uploaded files on local disk, content-addressed, outside the Raft log.
//! - [`fatal`]: what a failed write or fsync of the Raft log does to the process (fail-stop).
//! - [`private`]: the data directory and key files, readable by the node's user only.
//! - [`types`]: the openraft type configuration shared by every group.

pub mod absent;
mod background;
pub mod kv;
pub mod log_store;
pub mod media;
pub mod private;
pub mod record;
pub mod snapshot_file;
pub mod state_machine;
pub mod store;
pub mod types;
mod wal;

mod error;
pub mod fatal;
pub mod fuzzing;

pub use error::StoreError;
pub use kv::{GroupReader, KeyValue, KvBatch};
pub use log_store::LogStore;
pub use state_machine::{restore_snapshot, Applier, ApplyContext, StateMachineStore, FLUSH_KEYS};
pub use store::{reads_data_format, FlushStats, Store, StoreConfig, DATA_FORMAT, RESTORE_MARKER};
pub use types::{Command, GroupId, NodeId, Reply, ReplyValue, TypeConfig};
