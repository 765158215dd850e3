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

/// An opaque command proposed to a group. Shared, not copied, when an entry is cloned: the log
/// keeps its newest entries decoded and hands out clones of them to the state machine and to
/// replication (encoded as `serde_bytes` encodes a `Vec<u8>`, so the log's format is unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub bytes::Bytes);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// What builds that held a command as a `serde_bytes` `Vec<u8>` wrote.
    #[derive(Serialize, Deserialize)]
    struct Before(#[serde(with = "serde_bytes")] Vec<u8>);

    /// A shared command encodes to the same bytes as the `Vec<u8>` it replaced, so logs written
    /// before read the same.
    #[test]
    fn a_command_is_encoded_as_before() {
        let body = b"\x00\x01 a command \xff".to_vec();
        let now = crate::record::encode(&Command(body.clone().into())).unwrap();
        assert_eq!(now, crate::record::encode(&Before(body.clone())).unwrap());
        let read: Command = crate::record::decode(&now).unwrap();
        assert_eq!(&read.0[..], &body[..]);
    }
}
