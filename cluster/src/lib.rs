//! The ChatSDK cluster: multi-Raft groups over a mutually authenticated QUIC transport.
//!
//! Every write in ChatSDK goes through here. A node runs one Raft group for the cluster's meta
//! data (group 0, replicated on every node) and a replica of each data shard (groups 1..=S) that
//! placement gives it; a single node is simply a one-node cluster. Commands are opaque bytes: the
//! layer above supplies the [`chatsdk_storage::Applier`] that gives them meaning. This crate knows
//! nothing of HTTP or client protocols.
//!
//! Module map:
//! - [`node`]: a running node ([`ClusterNode`]): start (bootstrap, join, restart), local groups,
//!   leadership watch, shutdown.
//! - [`routing`]: `propose`, linearizable reads and upper-layer requests that find a group's
//!   leader wherever it is and retry across leader changes.
//! - [`meta`]: group 0's state (nodes, shard map, settings) and its applier.
//! - [`placement`]: the pure function deciding replicas and preferred leaders.
//! - [`reconcile`]: the meta leader's loop that carries placement out one shard at a time.
//! - [`transport`] and [`tls`]: QUIC between nodes, the cluster CA, fault injection for tests.
//! - `batch`: packs the commands waiting on a group's leader into one Raft entry; `forward`:
//!   packs the proposals a node forwards to the same leader node into one request.
//! - `network`: openraft's network over the transport; [`wire`]: the messages nodes exchange.
//! - [`join`]: join tokens, node identity and the admission handshake.
//! - [`shard`]: the stable `shard_for(app, channel)` mapping.
//! - [`testkit`]: a key-value state machine for tests, the benchmark and the node tool.

pub mod backup;
pub mod config;
pub mod fuzzing;
pub mod join;
pub mod meta;
pub mod node;
pub mod placement;
pub mod reconcile;
pub mod routing;
pub mod shard;
pub mod stats;
pub mod testkit;
pub mod tls;
pub mod transport;
pub mod trust;
pub mod wire;

mod batch;
mod batching;
mod codec;
mod compaction;
mod error;
mod forward;
mod groups;
mod handler;
mod network;
mod renewal;
mod snapshot_stream;

pub use chatsdk_storage::{
    Applier, ApplyContext, GroupId, GroupReader, KvBatch, NodeId, StoreError,
};
pub use config::{ClusterConfig, StartMode};
pub use error::ClusterError;
pub use meta::{MetaCommand, MetaReply, MetaState, NodeState, META_GROUP};
pub use node::{ClusterNode, UpperHandler};
pub use shard::shard_for;
pub use wire::Refusal;
