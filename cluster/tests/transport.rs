//! Integration tests of the node-to-node QUIC transport, through its public API only.
//!
//! Every node binds 127.0.0.1:0; nothing waits on time except where a short pause proves that
//! something does *not* happen.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatsdk_cluster::tls::{self, ClusterCa, ALPN_CLUSTER, NODE_SERVER_NAME};
use chatsdk_cluster::transport::{
    join_request, Handler, NodeId, Transport, TransportConfig, TransportError,
};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, Semaphore};

/// Upper bound for anything a test waits for; far above what any step needs.
const DEADLINE: Duration = Duration::from_secs(10);
/// Capacity of the channels through which handlers report to the test.
const EVENTS: usize = 1024;

struct TestHandler {
    tag: &'static str,
    /// Peers refused at their hello (as the cluster refuses removed nodes).
    refused: std::sync::Mutex<Vec<NodeId>>,
    requests: AtomicUsize,
    /// When set, each request waits for one permit before answering.
    gate: Option<Arc<Semaphore>>,
    entered: mpsc::Sender<NodeId>,
    messages: mpsc::Sender<(NodeId, Bytes)>,
    joins: mpsc::Sender<Bytes>,
}

impl Handler for TestHandler {
    fn request(&self, from: NodeId, body: Bytes) -> BoxFuture<'static, Vec<u8>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.entered.try_send(from).expect("entered channel full");
        let gate = self.gate.clone();
        let mut response = format!("{}<-{}:", self.tag, from).into_bytes();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("gate closed").forget();
            }
            response.extend_from_slice(&body);
            response
        })
    }

    fn message(&self, from: NodeId, body: Bytes) {
        self.messages
            .try_send((from, body))
            .expect("message channel full");
    }

    fn admits(&self, peer: NodeId) -> bool {
        !self.refused.lock().unwrap().contains(&peer)
    }

    fn join(&self, body: Bytes) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.joins
            .try_send(body.clone())
            .expect("join channel full");
        Box::pin(async move {
            if body.as_ref() == b"bad token" {
                Err("unknown join token".to_owned())
            } else {
                let mut response = b"welcome ".to_vec();
                response.extend_from_slice(&body);
                Ok(response)
            }
        })
    }
}

struct Node {
    transport: Transport,
    handler: Arc<TestHandler>,
    entered: mpsc::Receiver<NodeId>,
    messages: mpsc::Receiver<(NodeId, Bytes)>,
    joins: mpsc::Receiver<Bytes>,
}

impl Node {
    fn id(&self) -> NodeId {
        self.transport.node_id()
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn start(
    ca: &ClusterCa,
    id: NodeId,
    tag: &'static str,
    gate: Option<Arc<Semaphore>>,
    tweak: impl FnOnce(&mut TransportConfig),
) -> Node {
    init_tracing();
    let identity = ca.issue_node_cert(id).expect("issue node cert");
    let mut cfg = TransportConfig::new(id, "127.0.0.1:0".parse().unwrap(), identity);
    tweak(&mut cfg);
    let (entered_tx, entered) = mpsc::channel(EVENTS);
    let (messages_tx, messages) = mpsc::channel(EVENTS);
    let (joins_tx, joins) = mpsc::channel(EVENTS);
    let handler = Arc::new(TestHandler {
        tag,
        refused: std::sync::Mutex::new(Vec::new()),
        requests: AtomicUsize::new(0),
        gate,
        entered: entered_tx,
        messages: messages_tx,
        joins: joins_tx,
    });
    let transport = Transport::bind(cfg, handler.clone())
        .await
        .expect("bind transport");
    Node {
        transport,
        handler,
        entered,
        messages,
        joins,
    }
}

async fn node(ca: &ClusterCa, id: NodeId, tag: &'static str) -> Node {
    start(ca, id, tag, None, |_| {}).await
}

fn introduce(a: &Node, b: &Node) {
    a.transport.set_peer_addr(b.id(), b.addr());
    b.transport.set_peer_addr(a.id(), a.addr());
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn request_response_roundtrip_both_ways() {
    let ca = ClusterCa::generate("roundtrip").unwrap();
    let a = node(&ca, 1, "a").await;
    let b = node(&ca, 2, "b").await;
    introduce(&a, &b);

    let got = a.transport.request(2, b"ping".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"b<-1:ping");
    let got = b.transport.request(1, b"pong".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"a<-2:pong");
    // An empty body is a valid request too.
    let got = a.transport.request(2, Vec::new()).await.unwrap();
    assert_eq!(got.as_ref(), b"b<-1:");
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 2);
    assert_eq!(a.transport.peer_addr(2), Some(b.addr()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_are_all_answered() {
    let ca = ClusterCa::generate("concurrent").unwrap();
    let a = node(&ca, 1, "a").await;
    let b = node(&ca, 2, "b").await;
    introduce(&a, &b);

    let requests = (0..200u32).map(|i| {
        let t = a.transport.clone();
        async move { (i, t.request(2, i.to_be_bytes().to_vec()).await) }
    });
    let results = within("200 responses", futures::future::join_all(requests)).await;
    for (i, result) in results {
        let body = result.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        let mut want = b"b<-1:".to_vec();
        want.extend_from_slice(&i.to_be_bytes());
        assert_eq!(body.as_ref(), want.as_slice());
    }
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 200);
}

#[tokio::test]
async fn one_way_message_is_delivered() {
    let ca = ClusterCa::generate("message").unwrap();
    let a = node(&ca, 1, "a").await;
    let mut b = node(&ca, 2, "b").await;
    introduce(&a, &b);

    a.transport.send(2, b"hello b".to_vec()).await.unwrap();
    let (from, body) = within("message", b.messages.recv()).await.unwrap();
    assert_eq!(from, 1);
    assert_eq!(body.as_ref(), b"hello b");
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn oversized_frame_is_refused_and_node_keeps_serving() {
    let ca = ClusterCa::generate("frames").unwrap();
    let a = node(&ca, 1, "a").await;
    let b = start(&ca, 2, "b", None, |cfg| cfg.max_frame_bytes = 1024).await;
    introduce(&a, &b);

    // The receiver refuses a frame over its limit...
    let err = a.transport.request(2, vec![7; 4096]).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::FrameTooLarge {
                len: 4096,
                max: 1024
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 0);
    // ...and keeps serving, on the same connection.
    let got = a.transport.request(2, vec![1; 1000]).await.unwrap();
    assert_eq!(got.len(), "b<-1:".len() + 1000);
    // A request at the limit is accepted, but a response over the limit is refused too.
    let err = a.transport.request(2, vec![1; 1024]).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::FrameTooLarge {
                len: 1029,
                max: 1024
            }
        ),
        "{err:?}"
    );
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 2);

    // The sender refuses to send a frame over its own limit.
    let err = b.transport.request(1, vec![0; 2048]).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::FrameTooLarge {
                len: 2048,
                max: 1024
            }
        ),
        "{err:?}"
    );
    let err = b.transport.send(1, vec![0; 2048]).await.unwrap_err();
    assert!(
        matches!(err, TransportError::FrameTooLarge { .. }),
        "{err:?}"
    );
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn node_from_another_ca_cannot_talk_to_the_cluster() {
    let ca = ClusterCa::generate("cluster").unwrap();
    let rogue_ca = ClusterCa::generate("cluster").unwrap();
    let a = node(&ca, 1, "a").await;
    let b = node(&ca, 2, "b").await;
    let rogue = node(&rogue_ca, 3, "rogue").await;
    introduce(&a, &b);
    introduce(&a, &rogue);

    let err = rogue
        .transport
        .request(1, b"let me in".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    let err = rogue.transport.send(1, b"psst".to_vec()).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Unreachable { peer: 1 } | TransportError::Connect { .. }
        ),
        "{err:?}"
    );
    // Nor can the cluster reach it (the rogue's server certificate is not trusted).
    let err = a
        .transport
        .request(3, b"who are you".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");

    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
    assert_eq!(rogue.handler.requests.load(Ordering::SeqCst), 0);
    // The cluster is unaffected.
    let got = a
        .transport
        .request(2, b"still here".to_vec())
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"b<-1:still here");
    let got = b.transport.request(1, b"me too".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"a<-2:me too");
}

/// A QUIC client that negotiates the cluster ALPN without a client certificate.
#[tokio::test]
async fn cluster_alpn_without_client_certificate_is_closed() {
    let ca = ClusterCa::generate("no-cert").unwrap();
    let mut a = node(&ca, 1, "a").await;

    let mut rustls_config = tls::join_rustls_client_config(&ca.fingerprint().unwrap()).unwrap();
    rustls_config.alpn_protocols = vec![ALPN_CLUSTER.to_vec()];
    let client_config = tls::quic_client_config(rustls_config).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = within(
        "handshake",
        endpoint
            .connect_with(client_config, a.addr(), NODE_SERVER_NAME)
            .unwrap(),
    )
    .await
    .expect("the TLS handshake itself succeeds: client certificates are optional");
    let outcome = within("the server to close the connection", async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let mut hello = 8u32.to_be_bytes().to_vec();
        hello.extend_from_slice(&1u64.to_be_bytes());
        send.write_all(&hello).await?;
        send.finish()?;
        let response = recv.read_to_end(1024).await?;
        Ok::<_, Box<dyn std::error::Error>>(response)
    })
    .await;
    assert!(outcome.is_err(), "got a response: {outcome:?}");
    let reason = within("close reason", conn.closed()).await;
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
    assert!(a.messages.try_recv().is_err());
    assert!(a.joins.try_recv().is_err());
}

/// Dials `addr` with a cluster client certificate and sends a hello claiming `claimed`.
async fn raw_hello(
    endpoint: &quinn::Endpoint,
    identity: &tls::NodeIdentity,
    addr: SocketAddr,
    claimed: u64,
) -> (Result<Vec<u8>, quinn::ReadToEndError>, quinn::Connection) {
    let client_config = tls::cluster_client_config(identity).unwrap();
    let conn = endpoint
        .connect_with(client_config, addr, NODE_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut frame = 8u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&claimed.to_be_bytes());
    send.write_all(&frame).await.unwrap();
    send.finish().unwrap();
    (recv.read_to_end(1024).await, conn)
}

/// A hello the server refused: a refusal status (when one arrived) and the connection closed.
async fn assert_refused(response: Result<Vec<u8>, quinn::ReadToEndError>, conn: quinn::Connection) {
    if let Ok(response) = response {
        assert_eq!(response[0], 2, "status refused");
    }
    let reason = within("close", conn.closed()).await;
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );
}

/// The node id in the hello must be one the dialer's certificate was issued to.
#[tokio::test]
async fn hello_claiming_another_node_is_rejected() {
    let ca = ClusterCa::generate("hello").unwrap();
    let a = node(&ca, 1, "a").await;
    let identity = ca.issue_node_cert(3).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();

    // The id the certificate names: the server answers with its own id.
    let (response, conn) =
        within("honest hello", raw_hello(&endpoint, &identity, a.addr(), 3)).await;
    let mut want = vec![0u8];
    want.extend_from_slice(&8u32.to_be_bytes());
    want.extend_from_slice(&1u64.to_be_bytes());
    assert_eq!(response.unwrap(), want);
    assert!(conn.close_reason().is_none());

    // Another id: refused and the connection is closed.
    let (response, conn) =
        within("lying hello", raw_hello(&endpoint, &identity, a.addr(), 4)).await;
    assert_refused(response, conn).await;
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
}

/// A peer the handler no longer admits (a removed node) is refused at its hello, with a
/// certificate the cluster's CA signed.
#[tokio::test]
async fn a_peer_the_handler_refuses_cannot_connect() {
    let ca = ClusterCa::generate("revoked").unwrap();
    let a = node(&ca, 1, "a").await;
    a.handler.refused.lock().unwrap().push(3);
    let identity = ca.issue_node_cert(3).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let (response, conn) = within("hello", raw_hello(&endpoint, &identity, a.addr(), 3)).await;
    assert_refused(response, conn).await;
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
}

/// A stale address book entry that now leads to another node does not route to it.
#[tokio::test]
async fn address_of_the_wrong_node_fails_to_connect() {
    let ca = ClusterCa::generate("wrong-node").unwrap();
    let a = node(&ca, 1, "a").await;
    let c = node(&ca, 3, "c").await;
    a.transport.set_peer_addr(2, c.addr());
    let err = a
        .transport
        .request(2, b"for node 2".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert_eq!(c.handler.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn join_with_pinned_fingerprint_reaches_the_join_handler() {
    let ca = ClusterCa::generate("join").unwrap();
    let mut a = node(&ca, 1, "a").await;
    let fingerprint = ca.fingerprint().unwrap();

    let got = join_request(a.addr(), &fingerprint, b"token-1".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"welcome token-1");
    assert_eq!(
        within("join", a.joins.recv()).await.unwrap().as_ref(),
        b"token-1"
    );

    // The fingerprint is accepted in upper case too.
    let upper = fingerprint.to_uppercase();
    let got = join_request(a.addr(), &upper, b"token-2".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"welcome token-2");

    // The handler's error comes back as Remote.
    let err = join_request(a.addr(), &fingerprint, b"bad token".to_vec(), DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Remote { reason } if reason == "unknown join token"),
        "{err:?}"
    );
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn join_with_wrong_fingerprint_fails() {
    let ca = ClusterCa::generate("join").unwrap();
    let other = ClusterCa::generate("join").unwrap();
    let mut a = node(&ca, 1, "a").await;

    let err = join_request(
        a.addr(),
        &other.fingerprint().unwrap(),
        b"t".to_vec(),
        DEADLINE,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("mint a new token"), "{err}");
    let err = join_request(a.addr(), "not-a-fingerprint", b"t".to_vec(), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Tls(_)), "{err:?}");
    assert!(a.joins.try_recv().is_err());
}

/// Whatever a join connection sends, it only ever reaches `Handler::join`.
#[tokio::test]
async fn join_connection_never_reaches_cluster_handlers() {
    let ca = ClusterCa::generate("join-only").unwrap();
    let mut a = node(&ca, 1, "a").await;

    let client_config = tls::join_client_config(&ca.fingerprint().unwrap()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = within(
        "handshake",
        endpoint
            .connect_with(client_config, a.addr(), NODE_SERVER_NAME)
            .unwrap(),
    )
    .await
    .unwrap();

    // A cluster hello followed by a request, as a cluster dialer would send them.
    for payload in [1u64.to_be_bytes().to_vec(), b"raft append".to_vec()] {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        send.write_all(&frame).await.unwrap();
        send.finish().unwrap();
        let response = within("join response", recv.read_to_end(1024))
            .await
            .unwrap();
        assert_eq!(response[0], 0, "status ok");
        assert!(response[5..].starts_with(b"welcome "));
        let seen = within("join handler", a.joins.recv()).await.unwrap();
        assert_eq!(seen.as_ref(), payload.as_slice());
    }

    // A one-way message stream is a protocol violation on a join connection.
    let mut uni = conn.open_uni().await.unwrap();
    uni.write_all(&[0, 0, 0, 1, 42]).await.unwrap();
    uni.finish().unwrap();
    let reason = within("close", conn.closed()).await;
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
    assert!(a.messages.try_recv().is_err());
}

#[tokio::test]
async fn drop_to_fails_requests_until_healed() {
    let ca = ClusterCa::generate("drop").unwrap();
    let a = node(&ca, 1, "a").await;
    let mut b = node(&ca, 2, "b").await;
    introduce(&a, &b);
    a.transport.request(2, b"warm up".to_vec()).await.unwrap();

    a.transport.faults().drop_to(2);
    let err = a.transport.request(2, b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Dropped { peer: 2 }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let err = a.transport.send(2, b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Dropped { peer: 2 }),
        "{err:?}"
    );
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 1);

    a.transport.faults().heal(2);
    let got = a.transport.request(2, b"back".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"b<-1:back");
    a.transport.send(2, b"msg".to_vec()).await.unwrap();
    let (from, body) = within("message after heal", b.messages.recv())
        .await
        .unwrap();
    assert_eq!((from, body.as_ref()), (1, &b"msg"[..]));
}

/// `A.drop_to(B)` loses what A sends to B: A's requests, and A's responses to B's requests.
/// B's requests still reach A's handler; B's one-way messages are still delivered.
#[tokio::test]
async fn one_way_drop_also_loses_responses_to_the_peer() {
    let ca = ClusterCa::generate("one-way").unwrap();
    let mut a = node(&ca, 1, "a").await;
    let b = node(&ca, 2, "b").await;
    introduce(&a, &b);

    a.transport.faults().drop_to(2);
    let err = a
        .transport
        .request(2, b"a to b".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Dropped { peer: 2 }),
        "{err:?}"
    );

    let err = b
        .transport
        .request(1, b"b to a".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Dropped { peer: 1 }),
        "{err:?}"
    );
    assert_eq!(within("request reached a", a.entered.recv()).await, Some(2));
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 1);

    b.transport.send(1, b"b to a".to_vec()).await.unwrap();
    let (from, _) = within("message b to a", a.messages.recv()).await.unwrap();
    assert_eq!(from, 2);

    a.transport.faults().heal_all();
    let got = b.transport.request(1, b"healed".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"a<-2:healed");
}

#[tokio::test]
async fn delay_to_delays_requests_and_responses() {
    let ca = ClusterCa::generate("delay").unwrap();
    let a = node(&ca, 1, "a").await;
    let b = node(&ca, 2, "b").await;
    introduce(&a, &b);
    a.transport.request(2, b"warm up".to_vec()).await.unwrap();
    b.transport.request(1, b"warm up".to_vec()).await.unwrap();

    let delay = Duration::from_millis(150);
    a.transport.faults().delay_to(2, delay);
    let started = Instant::now();
    a.transport.request(2, b"slow".to_vec()).await.unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    // A's responses to B are delayed as well.
    let started = Instant::now();
    b.transport
        .request(1, b"slow reply".to_vec())
        .await
        .unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());

    // A delay longer than the timeout is a timeout.
    let err = a
        .transport
        .request_with_timeout(2, b"late".to_vec(), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Timeout {
                peer: 2,
                after_ms: 50
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_on_a_new_port_is_reached_after_set_peer_addr() {
    let ca = ClusterCa::generate("restart").unwrap();
    let a = node(&ca, 1, "a").await;
    let b = node(&ca, 2, "b1").await;
    introduce(&a, &b);
    assert_eq!(
        a.transport
            .request(2, b"1".to_vec())
            .await
            .unwrap()
            .as_ref(),
        b"b1<-1:1"
    );

    b.transport.shutdown().await;
    b.transport.shutdown().await; // idempotent
    let err = b
        .transport
        .request(1, b"after shutdown".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Closed), "{err:?}");

    let b2 = node(&ca, 2, "b2").await;
    assert_ne!(b2.addr(), b.addr());
    a.transport.set_peer_addr(2, b2.addr());
    let got = a.transport.request(2, b"2".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"b2<-1:2");
}

#[tokio::test]
async fn unknown_or_unreachable_peer_fails_fast_during_backoff() {
    let ca = ClusterCa::generate("backoff").unwrap();
    let a = start(&ca, 1, "a", None, |cfg| {
        cfg.connect_timeout = Duration::from_millis(200);
        cfg.backoff_min = Duration::from_secs(60);
        cfg.backoff_max = Duration::from_secs(60);
    })
    .await;
    let err = a.transport.request(9, b"?".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { peer: 9 }),
        "{err:?}"
    );

    // A UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.transport.set_peer_addr(2, silent.local_addr().unwrap());
    let err = a.transport.request(2, b"?".to_vec()).await.unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let started = Instant::now();
    let err = a.transport.request(2, b"?".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { peer: 2 }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(200));

    // A new address ends the backoff at once.
    let b = node(&ca, 2, "b").await;
    a.transport.set_peer_addr(2, b.addr());
    let got = a.transport.request(2, b"now".to_vec()).await.unwrap();
    assert_eq!(got.as_ref(), b"b<-1:now");
}

#[tokio::test]
async fn in_flight_bound_makes_extra_requests_wait() {
    let ca = ClusterCa::generate("in-flight").unwrap();
    let a = start(&ca, 1, "a", None, |cfg| cfg.max_in_flight_per_peer = 2).await;
    let gate = Arc::new(Semaphore::new(0));
    let mut b = start(&ca, 2, "b", Some(gate.clone()), |_| {}).await;
    introduce(&a, &b);

    let spawn = |i: u8| {
        let t = a.transport.clone();
        tokio::spawn(async move { t.request_with_timeout(2, vec![i], DEADLINE).await })
    };
    let first = spawn(1);
    let second = spawn(2);
    within("first request", b.entered.recv()).await;
    within("second request", b.entered.recv()).await;
    let third = spawn(3);
    // Proves a negative, so it has to be a pause: the third request neither reaches the
    // handler nor fails while the first two hold both slots.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.entered.try_recv().is_err());
    assert!(!third.is_finished());
    assert_eq!(b.handler.requests.load(Ordering::SeqCst), 2);

    gate.add_permits(3);
    for (i, handle) in [(1u8, first), (2, second), (3, third)] {
        let got = within("response", handle).await.unwrap().unwrap();
        assert_eq!(
            got.as_ref(),
            [b"b<-1:".as_slice(), &[i]].concat().as_slice()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_pending_requests() {
    let ca = ClusterCa::generate("shutdown").unwrap();
    let a = node(&ca, 1, "a").await;
    let gate = Arc::new(Semaphore::new(0));
    let mut b = start(&ca, 2, "b", Some(gate), |_| {}).await;
    introduce(&a, &b);

    let t = a.transport.clone();
    let pending =
        tokio::spawn(async move { t.request_with_timeout(2, b"stuck".to_vec(), DEADLINE).await });
    within("request reached b", b.entered.recv()).await;
    a.transport.shutdown().await;
    let err = within("pending request", pending)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, TransportError::Closed), "{err:?}");

    // B's own pending handler task is ended by its shutdown, which returns.
    within("b shutdown", b.transport.shutdown()).await;
}

#[tokio::test]
async fn bind_rejects_an_identity_of_another_node() {
    let ca = ClusterCa::generate("config").unwrap();
    let identity = ca.issue_node_cert(5).unwrap();
    let cfg = TransportConfig::new(6, "127.0.0.1:0".parse().unwrap(), identity);
    let (entered, _) = mpsc::channel(1);
    let (messages, _) = mpsc::channel(1);
    let (joins, _) = mpsc::channel(1);
    let handler = Arc::new(TestHandler {
        tag: "x",
        refused: std::sync::Mutex::new(Vec::new()),
        requests: AtomicUsize::new(0),
        gate: None,
        entered,
        messages,
        joins,
    });
    let err = Transport::bind(cfg, handler)
        .await
        .expect_err("bind must fail");
    assert!(
        matches!(err, TransportError::InvalidConfig { .. }),
        "{err:?}"
    );
    assert!(!format!("{:?}", ca).contains("PRIVATE KEY"));
}
