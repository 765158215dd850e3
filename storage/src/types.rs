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

/// The state machine's reply to a command: its bytes, or the typed value an applier answered
/// with ([`crate::Applier::apply_reply`]), encoded only if the reply has to leave the node. A
/// proposer on the node that applied the command takes the value as it is, and a follower's
/// replies, which nobody reads, are never encoded. Encodes as the byte string it stands for.
pub enum Reply {
    Bytes(Vec<u8>),
    Value(Box<dyn ReplyValue>),
}

/// A typed reply (see [`Reply`]).
pub trait ReplyValue: std::any::Any + Send + Sync {
    /// The reply's bytes, as the applier's `apply` would have answered.
    fn encode(&self) -> Result<Vec<u8>, crate::StoreError>;
}

impl Default for Reply {
    fn default() -> Self {
        Reply::Bytes(Vec::new())
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Bytes(b) => write!(f, "Reply({} bytes)", b.len()),
            Reply::Value(_) => f.write_str("Reply(value)"),
        }
    }
}

impl Reply {
    /// The reply as bytes (a value is encoded).
    pub fn into_bytes(self) -> Result<Vec<u8>, crate::StoreError> {
        match self {
            Reply::Bytes(b) => Ok(b),
            Reply::Value(v) => v.encode(),
        }
    }

    /// The reply's bytes, leaving it as it is.
    pub fn encoded(&self) -> Result<Vec<u8>, crate::StoreError> {
        match self {
            Reply::Bytes(b) => Ok(b.clone()),
            Reply::Value(v) => v.encode(),
        }
    }

    /// The typed value if the reply is a `T`, else the reply unchanged.
    pub fn downcast<T: ReplyValue>(self) -> Result<Box<T>, Reply> {
        match self {
            Reply::Value(v) if (&*v as &dyn std::any::Any).is::<T>() => {
                let any: Box<dyn std::any::Any + Send + Sync> = v;
                // Checked just above: this cannot fail.
                any.downcast::<T>().map_err(|_| Reply::Bytes(Vec::new()))
            }
            other => Err(other),
        }
    }
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Bytes(b) => serializer.serialize_bytes(b),
            Reply::Value(v) => {
                let b = v.encode().map_err(serde::ser::Error::custom)?;
                serializer.serialize_bytes(&b)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_bytes::ByteBuf::deserialize(deserializer).map(|b| Reply::Bytes(b.into_vec()))
    }
}

openraft::declare_raft_types!(
    /// Type configuration of every ChatSDK Raft group.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = crate::snapshot_file::SnapshotFile,
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

    struct Typed(u32);

    impl ReplyValue for Typed {
        fn encode(&self) -> Result<Vec<u8>, crate::StoreError> {
            Ok(self.0.to_be_bytes().to_vec())
        }
    }

    /// A typed reply is taken as it is, or encoded to the bytes it stands for (as the byte
    /// string the replies of earlier builds were).
    #[test]
    fn a_typed_reply_is_taken_or_encoded() {
        let value = || Reply::Value(Box::new(Typed(7)));
        assert_eq!(value().downcast::<Typed>().map(|t| t.0).ok(), Some(7));
        let bytes = Reply::Bytes(vec![1, 2]);
        assert!(matches!(bytes.downcast::<Typed>(), Err(Reply::Bytes(b)) if b == [1, 2]));
        let encoded = crate::record::encode(&value()).unwrap();
        assert_eq!(
            encoded,
            crate::record::encode(&Before(vec![0, 0, 0, 7])).unwrap()
        );
        let read: Reply = crate::record::decode(&encoded).unwrap();
        assert_eq!(read.into_bytes().unwrap(), vec![0, 0, 0, 7]);
    }

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
