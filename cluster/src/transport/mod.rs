//! Node-to-node transport: opaque byte payloads between cluster nodes over QUIC with mutual
//! TLS under the cluster CA (see [`crate::tls`]).
//!
//! Upper layers (Raft RPCs of many groups, forwarded proposals, admin requests) hand this
//! module already-encoded bytes; the transport frames them, routes them to a node id, bounds
//! them (frame size, in-flight requests per peer, QUIC stream limits) and reports failures as
//! [`TransportError`]s that say whether a retry makes sense. It does not encode payloads, retry
//! requests, or decide who talks to whom.
//!
//! Connections: each node dials the peers *it* needs, so there is one QUIC connection per
//! peer pair and direction, cached by peer id; a closed one is dropped and redialed, and after
//! a failed dial the peer is in exponential backoff during which requests fail fast with
//! [`TransportError::Unreachable`]. Wire format: see `frame.rs`. Fault injection for tests:
//! see [`Faults`].
//!
//! Authentication: a connection that negotiated [`ALPN_CLUSTER`](crate::tls::ALPN_CLUSTER)
//! must carry a client certificate verified against the cluster CA, and its first stream is a
//! hello giving the dialer's node id. The id is trusted because the certificate must carry
//! the SAN `node-<id>` — only the holder of the CA key can mint that. Symmetrically the dialer
//! checks that the server's certificate names the node it meant to reach.
//! [`ALPN_JOIN`](crate::tls::ALPN_JOIN) connections are unauthenticated and every request on
//! them goes to [`Handler::join`], never to `request` or `message`.

mod client;
mod error;
mod faults;
pub(crate) mod frame;
mod health;
mod join;
mod peers;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::TransportError;
pub use faults::Faults;
pub use join::{join_request, MAX_JOIN_FRAME_BYTES, MAX_JOIN_RESPONSE_BYTES};

use crate::tls::{self, NodeIdentity};
use peers::{BackoffPolicy, PeerTable};

/// Identifier of a cluster node.
pub type NodeId = u64;

/// Default frame limit: big enough for snapshot chunks and large appends.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Default bound on outstanding outgoing requests (and sends) per peer.
pub const DEFAULT_MAX_IN_FLIGHT_PER_PEER: usize = 256;
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on dialing a peer (QUIC + TLS handshake + hello).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default first reconnect backoff.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Default reconnect backoff cap.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Settings of one node's transport.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node_id: NodeId,
    /// Address to bind (`127.0.0.1:0` in tests).
    pub listen: SocketAddr,
    /// This node's certificate, key and cluster CA; must be issued to `node_id`.
    pub identity: NodeIdentity,
    /// Largest request, response or message payload accepted or sent.
    pub max_frame_bytes: usize,
    /// Outstanding requests and sends per peer; more wait for a slot (within their timeout).
    pub max_in_flight_per_peer: usize,
    /// Timeout of [`Transport::request`] and [`Transport::send`].
    pub request_timeout: Duration,
    /// Bound on dialing a peer.
    pub connect_timeout: Duration,
    /// Reconnect backoff after a failed dial, doubling from `backoff_min` up to `backoff_max`,
    /// with jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl TransportConfig {
    /// A config with the default limits and timeouts.
    pub fn new(node_id: NodeId, listen: SocketAddr, identity: NodeIdentity) -> Self {
        TransportConfig {
            node_id,
            listen,
            identity,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight_per_peer: DEFAULT_MAX_IN_FLIGHT_PER_PEER,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }

    /// Checks the config; [`Transport::bind`] calls this before binding anything.
    pub fn validate(&self) -> Result<(), TransportError> {
        let invalid = |reason: String| Err(TransportError::InvalidConfig { reason });
        if self.identity.node_id != self.node_id {
            return invalid(format!(
                "identity is issued to node {} but node_id is {}",
                self.identity.node_id, self.node_id
            ));
        }
        if self.max_frame_bytes == 0 || u32::try_from(self.max_frame_bytes).is_err() {
            return invalid(format!(
                "max_frame_bytes must be in 1..={}, got {}",
                u32::MAX,
                self.max_frame_bytes
            ));
        }
        if self.max_in_flight_per_peer == 0
            || self.max_in_flight_per_peer > tokio::sync::Semaphore::MAX_PERMITS
        {
            return invalid(format!(
                "max_in_flight_per_peer must be positive and at most {}, got {}",
                tokio::sync::Semaphore::MAX_PERMITS,
                self.max_in_flight_per_peer
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("request_timeout and connect_timeout must be positive".to_owned());
        }
        if self.backoff_min > self.backoff_max {
            return invalid(format!(
                "backoff_min ({:?}) exceeds backoff_max ({:?})",
                self.backoff_min, self.backoff_max
            ));
        }
        Ok(())
    }
}

/// What the layer above plugs in. Futures are boxed so the trait is object safe.
pub trait Handler: Send + Sync + 'static {
    /// A request from an authenticated cluster peer; the returned bytes are the response.
    fn request(&self, from: NodeId, body: Bytes) -> BoxFuture<'static, Vec<u8>>;
    /// A one-way message from an authenticated cluster peer.
    fn message(&self, from: NodeId, body: Bytes);
    /// A join request on an unauthenticated ALPN_JOIN connection; `Err(text)` is sent back as
    /// an error ([`TransportError::Remote`] at the caller).
    fn join(&self, body: Bytes) -> BoxFuture<'static, Result<Vec<u8>, String>>;
    /// Whether `peer` may connect at all: a node removed from the cluster is refused at its
    /// hello, although its certificate is still signed by the cluster's CA.
    fn admits(&self, peer: NodeId) -> bool {
        let _ = peer;
        true
    }
}

/// What the server side (accept loop and its tasks) shares with the transport handle.
struct Shared {
    node_id: NodeId,
    max_frame_bytes: usize,
    handler: Arc<dyn Handler>,
    faults: Faults,
    /// Cancelled by [`Transport::shutdown`] or when the last handle is dropped; every task
    /// the transport spawns ends when it fires.
    cancel: CancellationToken,
    /// Set by [`Transport::shutdown`] before it closes the endpoint, so a request failing on
    /// that close (before `cancel` fires) reports `Closed`, not a lost connection.
    closing: std::sync::atomic::AtomicBool,
    /// The CAs this node trusts now: a cluster connection whose peer certificate no longer
    /// chains to one of them (its CA was retired) is closed.
    trust: tokio::sync::watch::Sender<Arc<tls::TrustCheck>>,
}

impl Shared {
    /// Whether this transport is shutting down (or shut down).
    fn is_closing(&self) -> bool {
        self.cancel.is_cancelled() || self.closing.load(std::sync::atomic::Ordering::Acquire)
    }
}

struct Inner {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    /// Replaced when the node's certificate is renewed ([`Transport::set_identity`]).
    client_config: std::sync::RwLock<quinn::ClientConfig>,
    local_addr: SocketAddr,
    peers: PeerTable,
    request_timeout: Duration,
    connect_timeout: Duration,
    backoff: BackoffPolicy,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    health: health::PeerHealth,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.endpoint
            .close(frame::CLOSE_NORMAL, b"transport dropped");
        self.shared.cancel.cancel();
    }
}

/// A node's transport: serves incoming connections and sends requests to peers. Cheap to
/// clone; all clones share one endpoint. Call [`Transport::shutdown`] to stop it (dropping
/// the last clone also stops it, without waiting).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.inner.shared.node_id)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Validates `cfg`, binds the QUIC endpoint and starts the accept loop.
    pub async fn bind(
        cfg: TransportConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Transport, TransportError> {
        cfg.validate()?;
        let server_config = tls::server_config(&cfg.identity)?;
        let client_config = tls::cluster_client_config(&cfg.identity)?;
        let endpoint = quinn::Endpoint::server(server_config, cfg.listen).map_err(|source| {
            TransportError::Bind {
                addr: cfg.listen,
                source,
            }
        })?;
        let local_addr = endpoint.local_addr()?;
        let shared = Arc::new(Shared {
            node_id: cfg.node_id,
            max_frame_bytes: cfg.max_frame_bytes,
            handler,
            faults: Faults::default(),
            cancel: CancellationToken::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            trust: tokio::sync::watch::Sender::new(Arc::new(tls::TrustCheck::new(
                &cfg.identity.ca_cert_pem,
            )?)),
        });
        let accept_task = tokio::spawn(server::accept_loop(shared.clone(), endpoint.clone()));
        tracing::info!(node_id = cfg.node_id, %local_addr, "transport listening");
        Ok(Transport {
            inner: Arc::new(Inner {
                shared,
                endpoint,
                client_config: std::sync::RwLock::new(client_config),
                local_addr,
                peers: PeerTable::new(cfg.max_in_flight_per_peer),
                request_timeout: cfg.request_timeout,
                connect_timeout: cfg.connect_timeout,
                backoff: BackoffPolicy {
                    min: cfg.backoff_min,
                    max: cfg.backoff_max,
                },
                accept_task: Mutex::new(Some(accept_task)),
                health: health::PeerHealth::default(),
            }),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.shared.node_id
    }

    /// The bound address (with the real port when bound to port 0).
    /// Presents `identity` (a renewed certificate of this node) and trusts the CAs of its
    /// bundle from now on: to connections this node accepts and to those it opens. Connections
    /// already open keep theirs (TLS checks certificates at the handshake only), except those
    /// of peers whose certificate no longer chains to a trusted CA: accepted ones are closed,
    /// and the cached ones this node opened are dropped when a CA leaves the bundle (the next
    /// request dials again, under the new trust).
    pub fn set_identity(&self, identity: &NodeIdentity) -> Result<(), TransportError> {
        if identity.node_id != self.inner.shared.node_id {
            return Err(TransportError::InvalidConfig {
                reason: format!(
                    "identity is issued to node {} but this is node {}",
                    identity.node_id, self.inner.shared.node_id
                ),
            });
        }
        let server = tls::server_config(identity)?;
        let client = tls::cluster_client_config(identity)?;
        let check = Arc::new(tls::TrustCheck::new(&identity.ca_cert_pem)?);
        self.inner.endpoint.set_server_config(Some(server));
        *self
            .inner
            .client_config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
        // Open connections are looked at again only when the trusted CAs changed (a renewal
        // alone changes nothing for them).
        let before = self.inner.shared.trust.borrow().roots().to_vec();
        if before != check.roots() {
            let dropped = before.iter().any(|fp| !check.roots().contains(fp));
            self.inner.shared.trust.send_replace(check);
            if dropped {
                self.inner.peers.clear_connections();
            }
        }
        Ok(())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Records where `node` listens. Changing the address drops the cached connection to the
    /// old one and clears any reconnect backoff.
    pub fn set_peer_addr(&self, node: NodeId, addr: SocketAddr) {
        self.inner.peers.set_addr(node, addr);
    }

    pub fn peer_addr(&self, node: NodeId) -> Option<SocketAddr> {
        self.inner.peers.addr(node)
    }

    /// Sends a request to `to` and waits for its response, with the configured timeout.
    pub async fn request(&self, to: NodeId, body: Vec<u8>) -> Result<Bytes, TransportError> {
        self.request_with_timeout(to, body, self.inner.request_timeout)
            .await
    }

    /// Sends a request to `to` and waits for its response. `timeout` covers everything:
    /// waiting for an in-flight slot, injected delay, dialing, and the round trip.
    pub async fn request_with_timeout(
        &self,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let inner = &self.inner;
        let work = async {
            inner.admit(to, body.len())?;
            let _slot = inner.in_flight_slot(to).await?;
            inner.injected_delay(to).await?;
            inner.round_trip(to, Bytes::from(body)).await
        };
        let outcome = inner.bounded(to, timeout, work).await;
        inner.health.record(to, &outcome);
        outcome
    }

    /// How long `peer` has been unreachable from here (`None`: its last request went through).
    pub fn peer_down_for(&self, peer: NodeId) -> Option<std::time::Duration> {
        self.inner.health.down_for(peer)
    }

    /// Peers whose last request failed because they could not be reached.
    pub fn unreachable_peers(&self) -> usize {
        self.inner.health.unreachable_peers()
    }

    /// Requests that failed because their peer could not be reached, since start.
    pub fn peer_failures(&self) -> prometheus_client::metrics::counter::Counter {
        self.inner.health.failures()
    }

    /// Sends a one-way message to `to` on its own stream. Success means the message was handed
    /// to QUIC, not that the peer processed it.
    pub async fn send(&self, to: NodeId, body: Vec<u8>) -> Result<(), TransportError> {
        let inner = &self.inner;
        inner.admit(to, body.len())?;
        let work = async {
            let _slot = inner.in_flight_slot(to).await?;
            inner.injected_delay(to).await?;
            inner.send_message(to, Bytes::from(body)).await
        };
        inner.bounded(to, inner.request_timeout, work).await
    }

    /// The fault switches of this node (tests).
    pub fn faults(&self) -> &Faults {
        &self.inner.shared.faults
    }

    /// Closes the endpoint (peers see the connections close), fails pending requests with
    /// [`TransportError::Closed`], and waits for the accept loop and every task it spawned to
    /// end. Idempotent.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        // Close first so peers see a connection close rather than streams cut short.
        inner
            .shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        inner.endpoint.close(frame::CLOSE_NORMAL, b"shutdown");
        inner.shared.cancel.cancel();
        let task = inner
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "transport accept loop failed");
            }
        }
        inner.peers.clear_connections();
    }
}

impl Inner {
    /// Checks made before anything waits: open, size, drop fault.
    fn admit(&self, to: NodeId, len: usize) -> Result<(), TransportError> {
        if self.shared.is_closing() {
            return Err(TransportError::Closed);
        }
        if len > self.shared.max_frame_bytes {
            return Err(TransportError::FrameTooLarge {
                len,
                max: self.shared.max_frame_bytes,
            });
        }
        if self.shared.faults.is_dropped(to) {
            return Err(TransportError::Dropped { peer: to });
        }
        Ok(())
    }

    /// Waits for one of the per-peer in-flight slots.
    async fn in_flight_slot(
        &self,
        to: NodeId,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, TransportError> {
        self.peers
            .in_flight(to)
            .acquire_owned()
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Applies a `delay_to` fault, then re-checks `drop_to` (it may have been set meanwhile).
    async fn injected_delay(&self, to: NodeId) -> Result<(), TransportError> {
        if let Some(delay) = self.shared.faults.delay_of(to) {
            tokio::time::sleep(delay).await;
        }
        if self.shared.faults.is_dropped(to) {
            return Err(TransportError::Dropped { peer: to });
        }
        Ok(())
    }

    /// Runs `work` under `timeout`, failing with `Closed` as soon as the transport shuts down.
    async fn bounded<T>(
        &self,
        to: NodeId,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        tokio::select! {
            _ = self.shared.cancel.cancelled() => Err(TransportError::Closed),
            outcome = tokio::time::timeout(timeout, work) => outcome.unwrap_or_else(|_| {
                Err(TransportError::Timeout {
                    peer: to,
                    after_ms: duration_ms(timeout),
                })
            }),
        }
    }
}

/// The leaf certificate the peer presented, if any (TLS has already verified it).
fn peer_leaf(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
