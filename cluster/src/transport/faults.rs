//! Fault injection for tests: lose or slow down the traffic *this* node sends to chosen peers.
//!
//! Faults model one direction of packets, the way a real one-way partition behaves. Calling
//! [`Faults::drop_to`]`(B)` on node A loses everything A sends to B:
//!
//! * A's requests and one-way messages to B fail at once with
//!   [`TransportError::Dropped`](super::TransportError::Dropped) and never reach B;
//! * requests B sends to A still arrive (B→A is not cut) and A's handler still runs, but A
//!   does not send the response: it resets the stream instead, so B's request fails with
//!   `Dropped` as soon as A's handler has answered. B's one-way messages to A are still
//!   delivered.
//!
//! So with a one-way drop neither side gets a successful *request* through, while messages
//! still flow B→A. Cutting both directions means calling `drop_to` on both nodes.
//!
//! [`Faults::delay_to`]`(B, d)` delays by `d` everything A sends to B: its requests and
//! messages to B (before they are sent, counted inside the request timeout) and its responses
//! to B's requests.
//!
//! Faults apply to request and message traffic, not to connection set-up (the TLS handshake
//! and the hello), and never to join connections. The lock is held only to copy state out,
//! never across an await.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::NodeId;

/// The fault switches of one node. See the module docs for the exact semantics.
#[derive(Debug, Default)]
pub struct Faults {
    state: RwLock<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    dropped: HashSet<NodeId>,
    delays: HashMap<NodeId, Duration>,
}

impl Faults {
    /// Loses all traffic from this node to `peer` (requests, messages and responses).
    pub fn drop_to(&self, peer: NodeId) {
        self.write().dropped.insert(peer);
    }

    /// Delays all traffic from this node to `peer` by `delay`; a zero delay removes it.
    pub fn delay_to(&self, peer: NodeId, delay: Duration) {
        let mut state = self.write();
        if delay.is_zero() {
            state.delays.remove(&peer);
        } else {
            state.delays.insert(peer, delay);
        }
    }

    /// Removes the drop and delay faults towards `peer`.
    pub fn heal(&self, peer: NodeId) {
        let mut state = self.write();
        state.dropped.remove(&peer);
        state.delays.remove(&peer);
    }

    /// Removes every fault.
    pub fn heal_all(&self) {
        let mut state = self.write();
        state.dropped.clear();
        state.delays.clear();
    }

    /// Whether traffic to `peer` is currently dropped.
    pub fn is_dropped(&self, peer: NodeId) -> bool {
        self.read().dropped.contains(&peer)
    }

    /// The delay currently applied to traffic to `peer`, if any.
    pub fn delay_of(&self, peer: NodeId) -> Option<Duration> {
        self.read().delays.get(&peer).copied()
    }

    // A panic while holding the lock cannot leave the sets half-updated, so poisoning is
    // ignored rather than propagated.
    fn read(&self) -> RwLockReadGuard<'_, FaultState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, FaultState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_delay_and_heal() {
        let faults = Faults::default();
        faults.drop_to(2);
        faults.delay_to(3, Duration::from_millis(5));
        assert!(faults.is_dropped(2));
        assert!(!faults.is_dropped(3));
        assert_eq!(faults.delay_of(3), Some(Duration::from_millis(5)));
        faults.heal(2);
        assert!(!faults.is_dropped(2));
        faults.delay_to(3, Duration::ZERO);
        assert_eq!(faults.delay_of(3), None);
        faults.drop_to(4);
        faults.delay_to(4, Duration::from_millis(1));
        faults.heal_all();
        assert!(!faults.is_dropped(4));
        assert_eq!(faults.delay_of(4), None);
    }
}
