//! Settings of a cluster node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ClusterError;

/// How a node starts.
#[derive(Clone, Debug)]
pub enum StartMode {
    /// Create a new cluster with this node as its first member. If the data directory already
    /// holds a cluster identity, the node restarts from it instead (so `serve` can always pass
    /// this mode: the first start creates the cluster, later starts resume it).
    Bootstrap,
    /// Join the cluster that the node at `addr` belongs to, with a join token from it. Like
    /// `Bootstrap`, a data directory that already holds an identity is simply restarted.
    Join { addr: SocketAddr, token: String },
    /// Restart from the data directory, which must already hold a cluster identity.
    Existing,
}

/// Settings of a cluster node.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The node's sled directory.
    pub data_dir: PathBuf,
    /// UDP address of the node's QUIC endpoint (port 0 picks one).
    pub listen: SocketAddr,
    /// Address other nodes use; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// Number of data shards, fixed when the cluster is created.
    pub shards: u32,
    /// Replicas per shard (capped by the number of nodes).
    pub replication: usize,
    /// Raft heartbeat interval. Every group's leader sends one per follower per interval, so
    /// this is the main cost of an idle cluster.
    pub heartbeat: Duration,
    /// Raft election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_logs: u64,
    /// Entries kept in the log behind a snapshot, for lagging followers.
    pub logs_kept_after_snapshot: u64,
    /// How long one chunk of a snapshot sent to a follower may take.
    pub snapshot_chunk_timeout: Duration,
    /// How long a node certificate is valid; a node renews its own when a third is left.
    pub node_cert_lifetime: Duration,
    /// How long a follower's install of a snapshot may go without progress (entries installed)
    /// before its leader gives up and sends it again later. An install as such has no time
    /// limit: a large group takes as long as it takes.
    pub snapshot_stall_timeout: Duration,
    /// How long a proposal may search for a leader and wait for commit.
    pub propose_timeout: Duration,
    /// Interval of the meta leader's reconciliation pass (it also runs on every meta change).
    pub reconcile_interval: Duration,
    /// sled page cache per node, bytes.
    pub cache_capacity: u64,
    /// How long the storage flusher lingers under load so one flush covers more writes.
    pub flush_linger: Duration,
    /// Nice value of the storage's background threads (see `chatsdk_storage::StoreConfig`).
    pub background_nice: i32,
    /// Largest command `propose` accepts. Raft entries must fit the transport's frames with
    /// room to spare, so one command may never wedge a group.
    pub max_command_bytes: usize,
    /// Whether this node admits other nodes. Off for a dev node: dev mode opens app and key
    /// creation to anyone, which must never reach a cluster of several nodes.
    pub admits_joins: bool,
}

impl ClusterConfig {
    /// The default of [`ClusterConfig::flush_linger`] (the storage's).
    pub const DEFAULT_FLUSH_LINGER: Duration = chatsdk_storage::store::DEFAULT_FLUSH_LINGER;
    /// The default of [`ClusterConfig::background_nice`] (the storage's).
    pub const DEFAULT_BACKGROUND_NICE: i32 = chatsdk_storage::store::DEFAULT_BACKGROUND_NICE;

    /// Production defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            shards: 16,
            replication: 3,
            heartbeat: Duration::from_millis(300),
            election_timeout: (Duration::from_millis(1200), Duration::from_millis(2400)),
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 1_000,
            snapshot_chunk_timeout: Duration::from_secs(5),
            node_cert_lifetime: crate::tls::DEFAULT_NODE_CERT_LIFETIME,
            snapshot_stall_timeout: Duration::from_secs(60),
            propose_timeout: Duration::from_secs(10),
            reconcile_interval: Duration::from_millis(500),
            cache_capacity: 64 * 1024 * 1024,
            flush_linger: Self::DEFAULT_FLUSH_LINGER,
            background_nice: Self::DEFAULT_BACKGROUND_NICE,
            admits_joins: true,
            max_command_bytes: 1024 * 1024,
        }
    }

    /// Checks the settings before anything is opened or bound.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let fail = |reason: &str| {
            Err(ClusterError::Config {
                reason: reason.to_string(),
            })
        };
        if self.shards == 0 || self.shards > 4096 {
            return fail("shards must be in 1..=4096");
        }
        if self.replication == 0 || self.replication > 7 {
            return fail("replication must be in 1..=7");
        }
        let (min, max) = self.election_timeout;
        if self.heartbeat.is_zero() || min <= self.heartbeat * 2 || max <= min {
            return fail("need 0 < 2 * heartbeat < election_timeout.0 < election_timeout.1");
        }
        if self.snapshot_after_logs == 0 {
            return fail("snapshot_after_logs must be positive");
        }
        if self.listen.ip().is_unspecified() && self.advertise.is_none() {
            return fail("listening on a wildcard address needs an advertise address");
        }
        if self.max_command_bytes == 0 || self.max_command_bytes > 4 * 1024 * 1024 {
            return fail("max_command_bytes must be in 1..=4 MiB");
        }
        if self.snapshot_chunk_timeout.is_zero() || self.snapshot_stall_timeout.is_zero() {
            return fail("snapshot_chunk_timeout and snapshot_stall_timeout must be positive");
        }
        if self.node_cert_lifetime < Duration::from_secs(3) {
            return fail("node_cert_lifetime must be at least 3 s");
        }
        if self.propose_timeout.is_zero() {
            return fail("propose_timeout must be positive");
        }
        Ok(())
    }

    /// The openraft settings every group of this node uses.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let config = openraft::Config {
            cluster_name: "chatsdk".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_timeout.0.as_millis() as u64,
            election_timeout_max: self.election_timeout.1.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            install_snapshot_timeout: self.snapshot_chunk_timeout.as_millis() as u64,
            snapshot_max_chunk_size: crate::snapshot_stream::CHUNK_BYTES as u64,
            // Entries carry up to `batch::MAX_BATCH_BYTES` of commands; bound what one
            // AppendEntries frame can hold.
            // At most 256 KiB of batched commands plus one command of up to 4 MiB per entry.
            max_payload_entries: 8,
            ..Default::default()
        };
        config.validate().map_err(|e| ClusterError::Config {
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        let base = ClusterConfig::new("/tmp/x", "127.0.0.1:0".parse().unwrap());
        assert!(base.validate().is_ok());
        assert!(base.raft_config().is_ok());
        let mut c = base.clone();
        c.shards = 0;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.election_timeout = (Duration::from_millis(100), Duration::from_millis(50));
        assert!(c.validate().is_err());
        let mut c = base;
        c.heartbeat = Duration::from_secs(5);
        assert!(c.validate().is_err());
    }
}
