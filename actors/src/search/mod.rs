//! Full-text search over chat messages with tantivy.
//!
//! Each node indexes the messages of the data shards it replicates, following each shard's
//! search feed ([`feed`]) from its own copy of the shard, so an index is built from the applied
//! log and nothing else: a restarted node continues from the position its last commit recorded,
//! a new replica (or one more than [`feed::RING`] changes behind) rebuilds its part from the
//! shard's messages. One tantivy index per node holds every local shard's part (a `group`
//! field tells them apart): one writer and its memory arena per node, not per shard.
//!
//! - [`index`]: the index, its schema, updates (by message) and queries (blocking; callers run
//!   them on the blocking pool).
//! - [`indexer`]: the loop that follows the feeds of the local shards.
//! - [`feed`]: the per-shard change feed the applier writes.
//!
//! Permission is not the index's business: queries name the streams the caller may read
//! (checked at query time by the chat layer) and the authors they block.

pub mod feed;
pub mod index;
pub mod indexer;

pub use index::{Hit, SearchError, SearchIndex, SearchRequest};
