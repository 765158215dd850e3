//! Per-peer reachability, as the requests to each peer find it.
//!
//! While a peer is down, every group's Raft RPCs to it fail, several times a second each:
//! logging each failure drowns the log. This module turns that stream into two lines per
//! outage (one when the peer becomes unreachable, one when it answers again) and counters that
//! metrics read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{NodeId, TransportError};

/// What this node last saw of each peer.
#[derive(Default)]
pub(super) struct PeerHealth {
    /// Peers whose last request failed at the transport, with when the outage began.
    down: Mutex<HashMap<NodeId, Instant>>,
    /// Requests that failed because the peer could not be reached or did not answer.
    failures: prometheus_client::metrics::counter::Counter,
}

impl PeerHealth {
    /// Records the outcome of one request to `peer`.
    pub(super) fn record<T>(&self, peer: NodeId, outcome: &Result<T, TransportError>) {
        match outcome {
            Ok(_) => self.reachable(peer),
            Err(e) if counts_as_unreachable(e) => self.unreachable(peer, e),
            Err(_) => {}
        }
    }

    fn reachable(&self, peer: NodeId) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = down.remove(&peer) {
            tracing::info!(
                peer,
                down_for_ms = since.elapsed().as_millis() as u64,
                "peer reachable again"
            );
        }
    }

    fn unreachable(&self, peer: NodeId, error: &TransportError) {
        self.failures.inc();
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::hash_map::Entry::Vacant(slot) = down.entry(peer) {
            slot.insert(Instant::now());
            tracing::warn!(
                peer,
                error = %error,
                "peer unreachable (requests to it fail until it answers again; counted in chatsdk_cluster_peer_failures_total)"
            );
        }
    }

    /// How long `peer` has been unreachable (since the first failed request of this outage),
    /// or `None` when its last request went through.
    pub(super) fn down_for(&self, peer: NodeId) -> Option<std::time::Duration> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .map(Instant::elapsed)
    }

    /// Peers currently unreachable.
    pub(super) fn unreachable_peers(&self) -> usize {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Requests failed for reachability since start (a handle on the counter, for metrics).
    pub(super) fn failures(&self) -> prometheus_client::metrics::counter::Counter {
        self.failures.clone()
    }
}

/// Failures that say the peer is down or cut off (not a refusal, a local limit, or shutdown).
fn counts_as_unreachable(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::Unreachable { .. }
            | TransportError::Dropped { .. }
            | TransportError::Timeout { .. }
            | TransportError::ConnectionLost { .. }
            | TransportError::Connect { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_transition_each_way_and_every_failure_counts() {
        let h = PeerHealth::default();
        let lost: Result<(), TransportError> = Err(TransportError::Unreachable { peer: 2 });
        for _ in 0..5 {
            h.record(2, &lost);
        }
        assert_eq!(h.unreachable_peers(), 1);
        assert_eq!(h.failures().get(), 5);
        h.record(2, &Err::<(), _>(TransportError::Closed));
        assert_eq!(h.failures().get(), 5, "shutdown is not the peer's fault");
        assert!(h.down_for(2).is_some());
        assert!(h.down_for(3).is_none());
        h.record(2, &Ok::<(), TransportError>(()));
        assert_eq!(h.unreachable_peers(), 0);
        assert!(h.down_for(2).is_none());
    }
}
