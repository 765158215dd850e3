//! The address book and the outgoing state kept per peer: cached connection, reconnect
//! backoff, in-flight bound and the lock that makes dialing single-flight.
//!
//! This is bookkeeping only; dialing itself lives in `client.rs`. The table's mutex is a std
//! mutex held for map operations only, never across an await.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use quinn::Connection;
use tokio::sync::Semaphore;

use super::{NodeId, TransportError};

/// Reconnect backoff bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackoffPolicy {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

/// The delay after the `failures`-th consecutive failed dial: `min * 2^(failures-1)` capped
/// at `max`, with "equal jitter" (a uniformly random point in the upper half) so that nodes
/// that lost a peer at the same moment do not redial in lockstep. `jitter` is in `[0, 1]`.
pub(crate) fn backoff_delay(policy: BackoffPolicy, failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let base = policy.min.saturating_mul(1u32 << exponent).min(policy.max);
    let half = base / 2;
    let delay = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    delay.max(policy.min).min(policy.max)
}

/// Consecutive dial failures and when the next dial is allowed.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

/// What a caller should do to reach a peer.
pub(crate) enum Route {
    /// A cached, still open connection.
    Ready(Connection),
    /// No connection: dial `addr`; report the outcome with `epoch`.
    Dial { addr: SocketAddr, epoch: u64 },
}

struct Peer {
    addr: Option<SocketAddr>,
    conn: Option<Connection>,
    /// Bumped whenever the address changes, so a dial started before the change is discarded.
    epoch: u64,
    backoff: Backoff,
    in_flight: Arc<Semaphore>,
    dial_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Peer {
    fn new(max_in_flight: usize) -> Self {
        Peer {
            addr: None,
            conn: None,
            epoch: 0,
            backoff: Backoff::default(),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            dial_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// Per-peer outgoing state of one node.
pub(crate) struct PeerTable {
    peers: Mutex<HashMap<NodeId, Peer>>,
    max_in_flight: usize,
}

impl PeerTable {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        PeerTable {
            peers: Mutex::new(HashMap::new()),
            max_in_flight,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Peer>> {
        // Every update below leaves the map consistent, so a poisoned lock is still usable.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_peer<R>(&self, node: NodeId, f: impl FnOnce(&mut Peer) -> R) -> R {
        let mut peers = self.lock();
        let peer = peers
            .entry(node)
            .or_insert_with(|| Peer::new(self.max_in_flight));
        f(peer)
    }

    /// Records `node`'s address. A changed address drops the cached connection (it leads to
    /// whoever used to live there) and forgets the backoff (the new address deserves a dial).
    pub(crate) fn set_addr(&self, node: NodeId, addr: SocketAddr) {
        let old = self.with_peer(node, |peer| {
            if peer.addr == Some(addr) {
                return None;
            }
            peer.addr = Some(addr);
            peer.epoch += 1;
            peer.backoff = Backoff::default();
            peer.conn.take()
        });
        // Dropping our handle lets quinn close the connection once in-flight streams on it
        // are done; requests already using it are not cut short.
        drop(old);
    }

    pub(crate) fn addr(&self, node: NodeId) -> Option<SocketAddr> {
        self.lock().get(&node).and_then(|peer| peer.addr)
    }

    /// The semaphore bounding outstanding requests to `node`.
    pub(crate) fn in_flight(&self, node: NodeId) -> Arc<Semaphore> {
        self.with_peer(node, |peer| peer.in_flight.clone())
    }

    /// The lock that serialises dials to `node`.
    pub(crate) fn dial_lock(&self, node: NodeId) -> Arc<tokio::sync::Mutex<()>> {
        self.with_peer(node, |peer| peer.dial_lock.clone())
    }

    /// A cached open connection, or the address to dial, or `Unreachable` when there is no
    /// address or the peer is in backoff.
    pub(crate) fn route(&self, node: NodeId, now: Instant) -> Result<Route, TransportError> {
        self.with_peer(node, |peer| {
            if let Some(conn) = &peer.conn {
                if conn.close_reason().is_none() {
                    return Ok(Route::Ready(conn.clone()));
                }
                peer.conn = None;
            }
            if peer.backoff.retry_at.is_some_and(|at| now < at) {
                return Err(TransportError::Unreachable { peer: node });
            }
            match peer.addr {
                Some(addr) => Ok(Route::Dial {
                    addr,
                    epoch: peer.epoch,
                }),
                None => Err(TransportError::Unreachable { peer: node }),
            }
        })
    }

    /// Caches a freshly dialed connection unless the address changed meanwhile; returns
    /// whether it was kept.
    pub(crate) fn dial_succeeded(&self, node: NodeId, epoch: u64, conn: &Connection) -> bool {
        self.with_peer(node, |peer| {
            if peer.epoch != epoch {
                return false;
            }
            peer.conn = Some(conn.clone());
            peer.backoff = Backoff::default();
            true
        })
    }

    /// Starts or extends the backoff after a failed dial; returns the delay chosen.
    pub(crate) fn dial_failed(
        &self,
        node: NodeId,
        epoch: u64,
        now: Instant,
        policy: BackoffPolicy,
        jitter: f64,
    ) -> Duration {
        self.with_peer(node, |peer| {
            if peer.epoch != epoch {
                return Duration::ZERO;
            }
            peer.backoff.failures = peer.backoff.failures.saturating_add(1);
            let delay = backoff_delay(policy, peer.backoff.failures, jitter);
            peer.backoff.retry_at = Some(now + delay);
            delay
        })
    }

    /// Forgets `conn` if it is still the cached connection of `node`.
    pub(crate) fn evict(&self, node: NodeId, conn: &Connection) {
        let evicted = self.with_peer(node, |peer| {
            if peer
                .conn
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
            {
                peer.conn.take()
            } else {
                None
            }
        });
        drop(evicted);
    }

    /// Drops every cached connection (shutdown).
    pub(crate) fn clear_connections(&self) {
        let conns: Vec<Connection> = self
            .lock()
            .values_mut()
            .filter_map(|peer| peer.conn.take())
            .collect();
        drop(conns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BackoffPolicy = BackoffPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_secs(2),
    };

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        assert_eq!(backoff_delay(POLICY, 1, 1.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(POLICY, 2, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(POLICY, 3, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(POLICY, 3, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(POLICY, 40, 1.0), Duration::from_secs(2));
        assert_eq!(
            backoff_delay(POLICY, u32::MAX, 0.5),
            Duration::from_millis(1500)
        );
        // Never below the minimum, whatever the jitter.
        assert_eq!(backoff_delay(POLICY, 1, 0.0), Duration::from_millis(50));
    }

    #[test]
    fn route_without_address_is_unreachable_and_backoff_blocks() {
        let table = PeerTable::new(4);
        assert!(matches!(
            table.route(1, Instant::now()),
            Err(TransportError::Unreachable { peer: 1 })
        ));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        table.set_addr(1, addr);
        let now = Instant::now();
        let Ok(Route::Dial { addr: got, epoch }) = table.route(1, now) else {
            panic!("expected a dial route");
        };
        assert_eq!(got, addr);
        let delay = table.dial_failed(1, epoch, now, POLICY, 0.0);
        assert!(matches!(
            table.route(1, now),
            Err(TransportError::Unreachable { peer: 1 })
        ));
        assert!(matches!(
            table.route(1, now + delay),
            Ok(Route::Dial { .. })
        ));
        // A new address clears the backoff at once.
        table.set_addr(1, "127.0.0.1:10".parse().unwrap());
        assert!(matches!(table.route(1, now), Ok(Route::Dial { .. })));
        // A failure reported for the old epoch is ignored.
        assert_eq!(
            table.dial_failed(1, epoch, now, POLICY, 0.0),
            Duration::ZERO
        );
        assert!(matches!(table.route(1, now), Ok(Route::Dial { .. })));
    }
}
