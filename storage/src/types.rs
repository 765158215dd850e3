//! The openraft type configuration shared by every Raft group of a node.
//!
//! Commands and replies are opaque bytes (encoded as byte strings, not as sequences of numbers,
//! so bincode copies them in one go): the cluster layer treats them as such and the layer
//! that owns a group's state machine (see [`crate::Applier`]) gives them meaning.

use serde::{Deserialize, Serialize};

/// A node's identity in the cluster.
pub type NodeId = u64;
/// A Raft group: 0 is the meta group, 1..=S are data shards.
pub type GroupId = u32;

/// An opaque command proposed to a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// The state machine's opaque reply to a command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(#[serde(with = "serde_bytes")] pub Vec<u8>);

openraft::declare_raft_types!(
    /// Type configuration of every ChatSDK Raft group.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// A log entry of any group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of any group.
pub type LogId = openraft::LogId<NodeId>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// openraft's storage error for our node id.
pub type RaftStorageError = openraft::StorageError<NodeId>;
